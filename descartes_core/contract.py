"""The model contract: the six property axes and the validation of a candidate's PROPERTIES.

A candidate is one Python source file holding ``PROPERTIES`` (a dict: ``family``
plus one value per axis) and ``class Model(nn.Module)`` with
``__init__(self, n_inputs, n_outputs, latent_dim)`` and
``forward(x, state=None) -> (y, latents, state)`` (``shared/DESIGN.md``).
A candidate may declare its latent width with a top-level ``LATENT_DIM = <int>`` of at
most ``MAX_LATENT_DIM``; without one it is built at the run's width (64).
"""

from __future__ import annotations

import ast
import sys
import types
from enum import Enum, StrEnum
from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"


class TimeHandling(StrEnum):
    STANDARD_ODE = "standard_ode"
    LTC = "ltc"
    NEURAL_CDE = "neural_cde"
    GRU_ODE = "gru_ode"
    COUPLED_OSCILLATOR = "coupled_oscillator"
    STATE_SPACE = "state_space"
    CUSTOM = "custom"


class GradientStrategy(StrEnum):
    ADJOINT = "adjoint"
    DIRECT = "direct"
    SEGMENTED = "segmented"
    DISTILLATION = "distillation"
    SHOOTING = "shooting"


class LatentStructure(StrEnum):
    UNCONSTRAINED = "unconstrained"
    BIOPHYSICAL = "biophysical"
    OSCILLATORY = "oscillatory"
    HIERARCHICAL = "hierarchical"
    SPARSE = "sparse"


class InputCoupling(StrEnum):
    ADDITIVE = "additive"
    MULTIPLICATIVE = "multiplicative"
    CONTROLLED = "controlled"
    GATED = "gated"
    CONCATENATED = "concatenated"


class SolverChoice(StrEnum):
    DOPRI5 = "dopri5"
    EULER = "euler"
    MIDPOINT = "midpoint"
    RK4 = "rk4"
    TSIT5 = "tsit5"
    IMPLICIT_ADAMS = "implicit_adams"


class LossChoice(StrEnum):
    """What training fits (descartes_core.losses). The count losses read the model's output
    as a log-rate of the TC spike counts per bin, so a model can commit to a burst."""

    MSE_RATE = "mse_rate"
    POISSON_COUNTS = "poisson_counts"
    EVENT_MULTISCALE = "event_multiscale"


COUNT_LOSSES = (LossChoice.POISSON_COUNTS.value, LossChoice.EVENT_MULTISCALE.value)
"""The losses that train on spike counts (the sandbox gets the counts only for these)."""

AXES: dict[str, type[Enum]] = {
    "time_handling": TimeHandling,
    "gradient_strategy": GradientStrategy,
    "latent_structure": LatentStructure,
    "input_coupling": InputCoupling,
    "solver": SolverChoice,
    "loss": LossChoice,
}
DEFAULTS = {"loss": LossChoice.MSE_RATE.value}
"""Axes a PROPERTIES may leave out (sources written before the axis existed), and the value
they then have."""
REQUIRED_KEYS = ("family", *(a for a in AXES if a not in DEFAULTS))
VALID_KEYS = ("family", *AXES)
MAX_LATENT_DIM = 320
"""The widest latent a candidate may declare (LATENT_DIM); its controls are built as wide."""
DEFAULT_LATENT_DIM = 64


def complete(properties: dict) -> dict:
    """A valid PROPERTIES with every defaulted axis filled in."""
    return {**properties, **{k: v for k, v in DEFAULTS.items() if k not in properties}}


def declared_width(tree: ast.Module) -> tuple[int | None, str | None]:
    """(LATENT_DIM, None) of a parsed source, (None, None) when it declares none, or
    (None, fault) when the declaration is not a plain int literal in 1 … MAX_LATENT_DIM."""
    width = None
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "LATENT_DIM" for t in stmt.targets):
            v = stmt.value
            if not (isinstance(v, ast.Constant) and type(v.value) is int
                    and 1 <= v.value <= MAX_LATENT_DIM):
                return None, (f"LATENT_DIM must be an integer literal in 1 … {MAX_LATENT_DIM} "
                              "(the controls are built at the same width)")
            width = v.value
    return width, None


def source_width(source: str, default: int = DEFAULT_LATENT_DIM) -> int:
    """The latent width a source is built with: its valid LATENT_DIM, else `default`."""
    try:
        width, _ = declared_width(ast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        width = None
    return width or default


def property_errors(properties: object) -> list[str]:
    """Every fault of a PROPERTIES value, one line each; empty when it is valid."""
    if not isinstance(properties, dict):
        return [f"PROPERTIES must be a dict, got {type(properties).__name__}"]
    errors = []
    for key in REQUIRED_KEYS:
        if key not in properties:
            errors.append(f"PROPERTIES is missing '{key}'")
    for key in properties:
        if key not in VALID_KEYS:
            errors.append(f"PROPERTIES has an unknown key '{key}' "
                          f"(valid keys: {', '.join(VALID_KEYS)})")
    family = properties.get("family")
    if "family" in properties and (not isinstance(family, str) or not family.strip()):
        errors.append("PROPERTIES['family'] must be a non-empty string")
    for key, enum in AXES.items():
        if key in properties:
            value = properties[key]
            valid = [e.value for e in enum]
            if value not in valid:
                errors.append(f"PROPERTIES['{key}'] = {value!r} is not valid "
                              f"(valid: {', '.join(valid)})")
    return errors


def validate_properties(properties: object) -> dict[str, str]:
    """The PROPERTIES dict, defaults filled in, if valid; ValueError listing every fault
    otherwise."""
    errors = property_errors(properties)
    if errors:
        raise ValueError("; ".join(errors))
    return complete(properties)  # type: ignore[arg-type]


def template_sources() -> dict[str, str]:
    """The hand-written templates T0–T9 as source text, keyed 'T0' … 'T9'."""
    return {p.name[:2].upper(): p.read_text() for p in sorted(TEMPLATE_DIR.glob("t[0-9]_*.py"))}


def register_library(blocks: dict[str, str]) -> None:
    """Make ``from library import NAME`` give each block of `blocks` (name → its file).

    A block runs, as its own module ``library.NAME`` (two blocks may each carry a constant
    of the same name), only when something imports it: a block offered but not imported
    never runs, whatever its file does (a block is untrusted code). A block that imports
    another loads it then; one that imports itself back is an ImportError. Runs the
    imported blocks: inside the sandbox only."""
    package = types.ModuleType("library")
    package.__path__ = []  # a package: `library.NAME` modules may be imported from it
    loading: set[str] = set()

    def load(name: str):  # the package's __getattr__: `from library import NAME` asks it
        if name not in blocks:
            raise AttributeError(f"module 'library' has no attribute {name!r}")
        if name in loading:
            raise ImportError(f"library block {name!r} imports itself (a cycle)")
        loading.add(name)
        try:
            module = types.ModuleType(f"library.{name}")
            sys.modules[module.__name__] = module
            exec(compile(blocks[name], f"library/{name}.py", "exec"), module.__dict__)
        finally:
            loading.discard(name)
        if name not in module.__dict__:
            raise ImportError(f"library block {name!r}: its file defines no {name}")
        setattr(package, name, module.__dict__[name])  # loaded once: found here from now on
        return module.__dict__[name]

    package.__getattr__ = load
    sys.modules["library"] = package


def load_candidate(source: str, filename: str = "<candidate>",
                   library: dict[str, str] | None = None):
    """(PROPERTIES, Model) of a candidate's source, executed in a fresh namespace, with the
    library blocks `library` importable.

    Runs the source: only for trusted code (the templates) or inside the sandbox. The
    source becomes a real module, registered as ``candidate``, because ``dataclasses``
    and pickling look classes up by their module.
    """
    if library:
        register_library(library)
    module = types.ModuleType("candidate")
    sys.modules["candidate"] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return validate_properties(getattr(module, "PROPERTIES", None)), module.Model


def calls_odeint_adjoint(source: str) -> bool:
    """Whether the module calls torchdiffeq's odeint_adjoint, read from its AST (never run).

    True iff some call's function is the name ``odeint_adjoint``, an attribute
    ``….odeint_adjoint`` (``torchdiffeq.odeint_adjoint(…)``) or a name imported as an
    alias of it (``from torchdiffeq import odeint_adjoint as oa`` … ``oa(…)``). A comment,
    a string or an uncalled mention does not count, nor another function imported under
    that name; a source that does not parse calls nothing."""
    try:
        tree = ast.parse(source if isinstance(source, str) else str(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    names = {"odeint_adjoint"}
    for node in ast.walk(tree):
        for a in node.names if isinstance(node, ast.ImportFrom) else ():
            if a.name == "odeint_adjoint" and a.asname:
                names.add(a.asname)
            elif a.asname == "odeint_adjoint":  # `import odeint as odeint_adjoint` is odeint
                names.discard("odeint_adjoint")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if ((isinstance(f, ast.Name) and f.id in names)
                    or (isinstance(f, ast.Attribute) and f.attr == "odeint_adjoint")):
                return True
    return False
