"""The offline architect: a deterministic program synthesiser, no network, no key.

It writes a complete model file by composing code blocks — a cell (the vector
field), an input coupling, a latent structure (how the state is divided into
populations with their own time constants and nonlinearities), a fixed-step
solver and a loss — with sizes and time-constant ranges. The gap analysis steers the draw:

- nRt state missed → a second population with gate-like, bounded units that only
  the first population drives (the nRt "sees" TC activity, not the inputs);
- synaptic missed → a conductance-like (LTC) cell with gated input;
- TC gating (slow inactivation) missed → a slow population with learned time
  constants up to 2 s;
- a missed timescale class widens the time-constant range toward it;
- nRt state or synaptic missed → a loss on the spike counts (poisson_counts or
  event_multiscale): that state lives in the TC bursts a rate-MSE model hedges away;
  and, for nRt state, often the circuit's own per-cell layout (``_circuit_source``).

The DreamCoder patterns then narrow the draw: a property value that helps the
category missed most is kept, one that hurts it is left out.

Same seed and history give the same source; a source whose normalised hash was
tried before is never proposed.
"""

from __future__ import annotations

import dataclasses
import json
import random
import textwrap
from dataclasses import dataclass

from agent.dedup import source_hash
from agent.prompt import Brief, Proposal, source_properties
from descartes_core.contract import LossChoice

CELLS = {
    # name: (time_handling, field body returning dz/dt from z, pre, tau and target)
    "leaky": ("standard_ode", "return (target - z) / tau"),
    "relaxation": ("gru_ode", "rate = torch.sigmoid(self.rate(z)) / tau\n"
                              "return rate * (target - z)"),
    "ltc": ("ltc", "f = torch.sigmoid(pre)\n"
                   "return -(1.0 / tau + f) * z + f * self.reversal"),
}
COUPLINGS = ("additive", "multiplicative", "gated", "concatenated", "controlled")
STRUCTURES = ("unconstrained", "hierarchical", "sparse", "biophysical")
SOLVERS = ("euler", "midpoint", "rk4")
STRATEGIES = ("direct", "segmented")
LOSSES = tuple(e.value for e in LossChoice)
LAYOUTS = ("pooled", "per_cell")
"""pooled: one population (or two) of units that each hear every input. per_cell: the
circuit's own layout, one block of units per TC cell driven only by its own channel and
emitting events, an nRt block driven only by those events, and G-scaled inhibitory
conductances among the latents (``_circuit_source``)."""
OPTIONS = {"cell": tuple(CELLS), "coupling": COUPLINGS, "structure": STRUCTURES,
           "solver": SOLVERS, "strategy": STRATEGIES, "loss": LOSSES, "layout": LAYOUTS}
# The design axis each declared property names; a value outside this architect's
# options (a template's dopri5, say) steers nothing.
AXIS_OF = {"solver": "solver", "input_coupling": "coupling", "latent_structure": "structure",
           "gradient_strategy": "strategy", "time_handling": "cell", "loss": "loss"}
CELL_OF = {handling: cell for cell, (handling, _) in CELLS.items()}


@dataclass(frozen=True)
class Design:
    cell: str
    coupling: str
    structure: str
    solver: str
    strategy: str
    tau_lo: float
    tau_hi: float
    second_fraction: float
    reasons: tuple[str, ...]
    loss: str = "mse_rate"
    layout: str = "pooled"
    tc_states: int = 3
    """per_cell: units per TC cell (the first one emits the events)."""
    rt_states: int = 2
    """per_cell: units per nRt cell."""
    library: tuple[str, ...] = ()
    """Library blocks the source imports instead of writing them."""

    @property
    def family(self) -> str:
        if self.layout == "per_cell":
            return f"offline-circuit-{self.tc_states}x{self.rt_states}"
        return f"offline-{self.structure}-{self.cell}"

    @property
    def name(self) -> str:
        if self.layout == "per_cell":
            return f"circuit-{self.tc_states}x{self.rt_states}-{self.loss}-{self.strategy}"
        return f"{self.structure}-{self.cell}-{self.coupling}-{self.solver}" + (
            f"-{self.loss}" if self.loss != "mse_rate" else "")


def _steer(gap: dict | None, patterns=()) -> tuple[dict, list[str]]:
    """Biases of the draw from the gap analysis, and why."""
    bias: dict = {}
    why: list[str] = []
    if not gap:
        return bias, ["no scored iteration yet: a broad first draw"]
    direction = gap.get("direction")
    if direction in ("nrt_state", "synaptic"):
        bias["loss"] = ["poisson_counts", "event_multiscale"]
        why.append(f"{direction.replace('_', ' ')} is missed most, and that state lives in "
                   "the TC bursts a rate-MSE model hedges away: a loss on the spike counts")
    if direction == "nrt_state":
        bias["structure"] = ["biophysical", "hierarchical"]
        bias["layout"] = ["per_cell", "pooled"]
        why.append("nRt state is the category missed most: a second population of bounded, "
                   "gate-like units driven only by the first, as nRt is driven by TC")
    elif direction == "synaptic":
        bias["cell"], bias["coupling"] = ["ltc"], ["gated", "multiplicative"]
        why.append("synaptic conductances are missed most: a conductance-like LTC cell with "
                   "gated input")
    elif direction == "tc_gating":
        bias["structure"], bias["tau_hi"] = ["hierarchical"], 2000.0
        why.append("TC gating is missed most (slow T-current inactivation, I_h): a slow "
                   "population with learned time constants up to 2 s")
    ts = gap.get("timescale_profile") or {}
    rates = {k: v["rate"] for k, v in ts.items()}
    if rates and min(rates, key=rates.get) == "fast":
        bias["tau_lo"] = 0.5
        why.append("fast variables are recovered least: time constants down to 0.5 ms")
    elif rates and min(rates, key=rates.get) == "slow":
        bias.setdefault("tau_hi", 2000.0)
        why.append("slow variables are recovered least: time constants up to 2 s")
    _narrow(bias, why, direction, patterns)
    return bias, why


def _narrow(bias: dict, why: list[str], category, patterns) -> None:
    """Keep what the patterns say helps `category`, drop what they say hurts it.

    The strongest effect is applied first; a later one only narrows what is left.
    """
    relevant = [p for p in patterns if p.get("type") == "property_correlation"
                and p["evidence"].get("category") == category]
    for p in sorted(relevant, key=lambda p: -abs(p["evidence"]["with"] - p["evidence"]["without"])):
        ev = p["evidence"]
        axis = AXIS_OF.get(ev.get("property"))
        if axis is None:
            continue
        value = CELL_OF.get(ev["value"]) if axis == "cell" else ev["value"]
        options = bias.get(axis) or list(OPTIONS[axis])
        if value not in options or len(options) < 2:
            continue
        if ev["with"] > ev["without"]:
            bias[axis] = [value]
            why.append(f"pattern: {p['description']}, so {axis} {value}")
        else:
            bias[axis] = [o for o in options if o != value]
            why.append(f"pattern: {p['description']}, so no {value} {axis}")


def parse_name(name: str) -> dict | None:
    """The design axes a pooled design's name spells (structure-cell-coupling-solver[-loss]),
    or None (a template's, the circuit layout's, an LLM's)."""
    parts = name.split("-")
    if len(parts) not in (4, 5):
        return None
    axes = dict(zip(("structure", "cell", "coupling", "solver", "loss"),
                    [*parts, "mse_rate"][:5], strict=True))
    return axes if all(v in OPTIONS[k] for k, v in axes.items()) else None


def _inherit(bias: dict, why: list[str], parent: str, rng: random.Random) -> None:
    """Breed from the parent: keep its design but for two axes, which are drawn afresh
    (the gap's and the patterns' biases win where they speak)."""
    axes = parse_name(parent)
    if axes is None:
        return
    redrawn = rng.sample(sorted(axes), 2)
    kept = [a for a in sorted(axes) if a not in redrawn and a not in bias]
    for axis in kept:
        bias[axis] = [axes[axis]]
    why.append(f"from the parent {parent}: keeps its {', '.join(kept) or 'nothing'}, draws "
               f"{' and '.join(redrawn)} afresh")


def _draw(rng: random.Random, bias: dict, why: list[str]) -> Design:
    def pick(key):
        return rng.choice(bias.get(key) or list(OPTIONS[key]))

    cell = pick("cell")
    structure = pick("structure")
    # the per-cell layout is a leaky, multiplicative, Euler design: only where the gap and
    # the patterns leave those open
    fits = all(v in bias.get(k, [v]) for k, v in (("cell", "leaky"), ("solver", "euler"),
                                                   ("coupling", "multiplicative")))
    design = Design(
        cell=cell, coupling=pick("coupling"), structure=structure,
        solver=pick("solver"), strategy=pick("strategy"),
        tau_lo=bias.get("tau_lo", rng.choice([1.0, 2.0])),
        tau_hi=bias.get("tau_hi", rng.choice([300.0, 1000.0])),
        second_fraction=rng.choice([0.25, 0.5]),
        reasons=tuple(why), loss=pick("loss"),
        layout=pick("layout") if fits and structure in ("biophysical", "hierarchical")
        else "pooled",
        tc_states=rng.choice([2, 3, 4]), rt_states=rng.choice([1, 2]),
    )
    if design.layout == "per_cell":  # its blocks step by exponential Euler: one solver
        design = dataclasses.replace(design, cell="leaky", coupling="multiplicative",
                                     solver="euler")
    return design


def _with_library(d: Design, rng: random.Random, library: tuple[dict, ...],
                  bias: dict) -> Design:
    """The draw with library blocks where they fit: a vector field of the library in place
    of the drawn one, half the time (the strongest most often), among those the gap and
    the patterns leave open; a solver step or the ring the library holds, always (the
    same code, imported)."""
    names = {b["name"] for b in library}
    use, why = [], list(d.reasons)
    if d.layout == "pooled":
        fits = [b for b in library if b["name"] in FIELDS and all(
            v in bias.get(axis, [v]) for axis, v in zip(("cell", "coupling", "structure"),
                                                        FIELDS[b["name"]], strict=True))]
        if fits and rng.random() < 0.5:
            pick = rng.choices(fits, weights=[1.0 / (k + 1) for k in range(len(fits))])[0]
            cell, coupling, structure = FIELDS[pick["name"]]
            d = dataclasses.replace(d, cell=cell, coupling=coupling, structure=structure)
            use.append(pick["name"])
            why.append(f"library: {pick['name']}, {pick['evidence']}")
        if step_name(d.solver) in names:
            use.append(step_name(d.solver))
    elif "ring" in names:
        use.append("ring")
    return dataclasses.replace(d, library=tuple(use), reasons=tuple(why))


def _props(d: Design) -> dict:
    return {"family": d.family, "time_handling": CELLS[d.cell][0],
            "gradient_strategy": d.strategy, "latent_structure": d.structure,
            "input_coupling": d.coupling, "solver": d.solver, "loss": d.loss}


RING = '''

def ring(reach):
    """Each cell's neighbours within `reach` on the ring of cells, rows summing to 1."""
    i = torch.arange(CELLS)
    gap = (i[:, None] - i[None, :]).abs()
    w = (torch.minimum(gap, CELLS - gap) <= reach).float()
    return w / w.sum(1, keepdim=True)
'''
STEPS = {
    "euler": "return z + field(z, u)",
    "midpoint": "return z + field(z + 0.5 * field(z, u), u)",
    "rk4": ("k1 = field(z, u)\nk2 = field(z + 0.5 * k1, u)\nk3 = field(z + 0.5 * k2, u)\n"
            "k4 = field(z + k3, u)\nreturn z + (k1 + 2 * k2 + 2 * k3 + k4) / 6.0"),
}
"""The fixed-step solvers, each a top-level function of (field, z, u): a 1-ms step."""


def step_name(solver: str) -> str:
    return f"{solver}_step"


def field_name(cell: str, coupling: str, structure: str) -> str:
    return f"{cell.capitalize()}{coupling.capitalize()}{structure.capitalize()}Field"


FIELDS = {field_name(c, cp, st): (c, cp, st)
          for c in CELLS for cp in COUPLINGS for st in STRUCTURES}
"""The vector fields this architect writes, by class name: what a library block of that
name stands for in a design."""


def _imports(d: Design) -> str:
    return "".join(f"from library import {name}\n" for name in d.library)


def _circuit_source(d: Design) -> str:
    """The per-cell layout: TC blocks that hear their own channel and emit events, nRt
    blocks that hear only those events, GABA_A/GABA_B conductances scaled by G, every
    block relaxing by exponential Euler, the latent as wide as the circuit's states."""
    width = 20 * (d.tc_states + d.rt_states + 2)
    doc = "; ".join(d.reasons) or "a broad draw"
    ring = "" if "ring" in d.library else RING
    return f'''"""Offline architect: {d.name}.

{textwrap.fill(doc, 88)}
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from descartes_core.stiff import guard
{_imports(d)}
PROPERTIES = {json.dumps(_props(d), indent=4)}
LATENT_DIM = {width}
CELLS = 20
K_TC, K_RT = {d.tc_states}, {d.rt_states}
{ring}


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        lo, hi = math.log({d.tau_lo}), math.log({d.tau_hi})
        self.tc_in = nn.Parameter(torch.randn(K_TC, CELLS) * 0.5)  # own channel only
        self.tc_bias = nn.Parameter(torch.zeros(K_TC, CELLS))
        self.tc_mix = nn.Parameter(torch.randn(K_TC, K_TC) * 0.3)  # within a cell
        self.tc_log_tau = nn.Parameter(torch.empty(K_TC, 1).uniform_(lo, hi).repeat(1, CELLS))
        self.theta = nn.Parameter(torch.zeros(CELLS))  # event threshold of each TC cell
        self.rt_from_tc = nn.Parameter(ring(1))  # nRt hears TC events, nothing else
        self.rt_in = nn.Parameter(torch.rand(K_RT, 1) + 0.5)
        self.rt_mix = nn.Parameter(torch.randn(K_RT, K_RT) * 0.3)
        self.rt_log_tau = nn.Parameter(torch.empty(K_RT, 1).uniform_(lo, hi).repeat(1, CELLS))
        self.tc_from_rt = nn.Parameter(ring(2))
        self.syn_log_tau = nn.Parameter(torch.tensor([[math.log(10.0)], [math.log(150.0)]]))
        self.inhibition = nn.Parameter(torch.tensor([[1.0], [0.5]]))
        self.readout = nn.Linear(LATENT_DIM, n_outputs)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        if state is None:
            tc = x.new_zeros(batch, K_TC, CELLS)
            rt = x.new_zeros(batch, K_RT, CELLS)
            syn = x.new_zeros(batch, 2, CELLS)
        else:
            tc, rt, syn = state.split([K_TC * CELLS, K_RT * CELLS, 2 * CELLS], dim=-1)
            tc = tc.reshape(batch, K_TC, CELLS)
            rt = rt.reshape(batch, K_RT, CELLS)
            syn = syn.reshape(batch, 2, CELLS)
        gain = F.softplus(x[..., CELLS] + 1.0)  # G ≥ 0 scales the inhibition
        decay_tc = torch.exp(-torch.exp(-self.tc_log_tau))
        decay_rt = torch.exp(-torch.exp(-self.rt_log_tau))
        decay_syn = torch.exp(-torch.exp(-self.syn_log_tau))
        inhibition = F.softplus(self.inhibition)
        out = []
        for t in range(steps):
            events = torch.sigmoid(4.0 * (tc[:, 0] - self.theta))  # the TC cells' output
            shunt = (inhibition * syn).sum(1, keepdim=True)
            pre = (self.tc_in * x[:, t, None, :CELLS] + self.tc_bias
                   + torch.einsum("jk,bkc->bjc", self.tc_mix, tc))
            tc_target = torch.tanh(pre) / (1.0 + shunt)  # inhibition shunts the drive
            tc = tc_target + (tc - tc_target) * decay_tc
            heard = events @ F.relu(self.rt_from_tc).T
            rt_target = torch.sigmoid(self.rt_in * heard[:, None]
                                      + torch.einsum("jk,bkc->bjc", self.rt_mix, rt))
            rt = rt_target + (rt - rt_target) * decay_rt
            fired = torch.sigmoid(4.0 * (rt[:, 0] - 0.5)) @ F.relu(self.tc_from_rt).T
            syn_target = gain[:, t, None, None] * fired[:, None]  # G-scaled conductances
            syn = syn_target + (syn - syn_target) * decay_syn
            tc, syn = guard(tc, t), guard(syn, t)
            out.append(torch.cat([tc.flatten(1), rt.flatten(1), syn.flatten(1)], dim=-1))
        latents = torch.stack(out, dim=1)
        return self.readout(latents), latents, latents[:, -1]
'''


def _source(d: Design) -> str:
    if d.layout == "per_cell":
        return _circuit_source(d)
    props = _props(d)
    two = d.structure in ("hierarchical", "biophysical")
    init = [
        "n2 = int(latent_dim * second_fraction)" if two else "n2 = 0",
        "self.sizes = (latent_dim - n2, n2)",
        "self.latent_dim = latent_dim",
        "lo, hi = math.log(tau_lo), math.log(tau_hi)",
    ]
    if d.structure == "hierarchical":  # a fast first population, a slow second one
        init.append("log_tau = torch.cat([torch.empty(latent_dim - n2).uniform_(lo, lo + 2.3), "
                    "torch.empty(n2).uniform_(hi - 3.0, hi)])")
    else:
        init.append("log_tau = torch.empty(latent_dim).uniform_(lo, hi)")
    init.append("self.log_tau = nn.Parameter(log_tau)")
    width = {"gated": "2 * latent_dim"}.get(d.coupling, "latent_dim")
    if d.coupling == "concatenated":
        init.append("self.rec = nn.Linear(latent_dim + n_inputs, latent_dim)")
    else:
        init.append(f"self.inp = nn.Linear(n_inputs, {width})")
        init.append("self.rec = nn.Linear(latent_dim, latent_dim, bias=False)")
    if d.coupling == "multiplicative":
        init.append("self.mod = nn.Linear(latent_dim, latent_dim)")
    if d.cell == "relaxation":
        init.append("self.rate = nn.Linear(latent_dim, latent_dim)")
    if d.cell == "ltc":
        init.append("self.reversal = nn.Parameter(torch.randn(latent_dim))")
    mask = "torch.ones(latent_dim, latent_dim)"
    if d.structure == "sparse":
        mask = "(torch.rand(latent_dim, latent_dim) < 0.2).float()"
    elif two:  # the second population hears only the first: no input, no self-drive from it
        mask = ("torch.ones(latent_dim, latent_dim)\n"
                "mask[latent_dim - n2:, latent_dim - n2:] = 0.0")
    init.append(f"mask = {mask}")
    init.append('self.register_buffer("mask", mask)')
    input_mask = "torch.ones(latent_dim)"
    if two:
        input_mask = "torch.cat([torch.ones(latent_dim - n2), torch.zeros(n2)])"
    init.append(f"input_mask = {input_mask}")
    init.append('self.register_buffer("input_mask", input_mask)')

    coupling = {
        "additive": "u_in = u",
        "multiplicative": "u_in = u * (1.0 + torch.tanh(self.mod(z)))",
        "gated": "a, b = u.chunk(2, dim=-1)\nu_in = a * torch.sigmoid(b)",
        "concatenated": "u_in = 0.0",
        "controlled": "u_in = u",
    }[d.coupling]
    if d.coupling == "concatenated":
        pre = "pre = F.linear(torch.cat([z, u], dim=-1), self.rec.weight * self.cat_mask, " \
              "self.rec.bias)"
        init.append("self.register_buffer(\"cat_mask\", torch.cat([mask, "
                    "input_mask[:, None].expand(-1, n_inputs)], dim=1))")
    else:
        pre = "pre = F.linear(z, self.rec.weight * self.mask) + u_in * self.input_mask"
    if d.structure == "biophysical":
        target = ("n1 = self.sizes[0]\n"
                  "target = torch.cat([torch.tanh(pre[..., :n1]), torch.sigmoid(pre[..., n1:])], "
                  "dim=-1)")
    else:
        target = "target = torch.tanh(pre)"
    field = "\n".join(["tau = torch.exp(self.log_tau)", coupling, pre, target, CELLS[d.cell][1]])

    drive = {
        "concatenated": "return x",
        "controlled": "prev = x[:, :1] if last is None else last\n"
                      "return self.inp(torch.diff(x, dim=1, prepend=prev))",
    }.get(d.coupling, "return self.inp(x)")
    start = "z = x.new_zeros(batch, self.latent_dim) if state is None else state"
    final, last = "z", ""
    if d.coupling == "controlled":  # increments need the previous input: the state carries it
        start = ("z = x.new_zeros(batch, self.latent_dim) if state is None "
                 "else state[:, : self.latent_dim]")
        final = "torch.cat([z, x[:, -1]], dim=-1)"
        last = ", None if state is None else state[:, None, self.latent_dim:]"

    def block(lines: str | list[str], indent: int) -> str:
        text = "\n".join(lines) if isinstance(lines, list) else lines
        return textwrap.indent(text, " " * indent)

    fname, sname = field_name(d.cell, d.coupling, d.structure), step_name(d.solver)
    field_class = "" if fname in d.library else f'''

class {fname}(nn.Module):
    """dz/dt (Δt = 1 ms) of {d.structure} latents: a {d.cell} cell with {d.coupling} input."""

    def __init__(self, n_inputs, latent_dim, tau_lo, tau_hi, second_fraction):
        super().__init__()
{block(init, 8)}

    def drive(self, x, last=None):
        """The input term of every step at once (`last`: the input before x)."""
{block(drive, 8)}

    def forward(self, z, u):
{block(field, 8)}
'''
    step_def = "" if sname in d.library else f'''

def {sname}(field, z, u):
    """One 1-ms {d.solver} step of dz/dt = field(z, u)."""
{block(STEPS[d.solver], 4)}
'''
    doc = "; ".join(d.reasons) or "a broad draw"
    return f'''"""Offline architect: {d.name}.

{textwrap.fill(doc, 88)}
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
{_imports(d)}
PROPERTIES = {json.dumps(props, indent=4)}
{field_class}{step_def}

class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.field = {fname}(n_inputs, latent_dim, {d.tau_lo}, {d.tau_hi}, {d.second_fraction})
        self.readout = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        batch, steps, _ = x.shape
        {start}
        drive = self.field.drive(x{last})
        out = []
        for t in range(steps):
            z = {sname}(self.field, z, drive[:, t])
            out.append(z)
        latents = torch.stack(out, dim=1)
        return self.readout(latents), latents, {final}
'''


class OfflineArchitect:
    """Deterministic, varied, gap-steered proposals; never one that was tried."""

    name = "offline"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def drain_calls(self) -> list[dict]:
        return []  # no calls to meter

    def propose(self, brief: Brief) -> Proposal:
        rng = random.Random(f"{self.seed}:{brief.iteration}")
        bias, why = _steer(brief.gap, brief.patterns)
        if brief.parent is not None:
            _inherit(bias, why, brief.parent[0], rng)
        feedback = brief.feedback or ""
        if any(k in feedback for k in ("timeout", "nan", "diverged")):
            bias["solver"] = ["euler"]
            why.append("the last attempt timed out or blew up: the cheapest, most damped step")
        for attempt in range(500):
            if attempt == 250:  # the steered space is used up: widen it
                bias, why = {}, [*why, "the steered designs were all tried: a broad draw"]
            design = _draw(rng, bias, why)
            if brief.library:
                design = _with_library(design, rng, brief.library, bias)
            source = _source(design)
            if source_hash(source) not in brief.tried and (
                    design.family not in brief.exhausted or attempt >= 400):
                what = (f"the circuit's layout, {design.tc_states} units per TC cell "
                        f"(events from the first) and {design.rt_states} per nRt cell, "
                        "G-scaled GABA_A/GABA_B conductances among the latents"
                        if design.layout == "per_cell" else
                        f"a {design.cell} cell with {design.coupling} input, "
                        f"{design.structure} latents, {design.solver} steps")
                reasoning = ("; ".join(design.reasons) or "a broad first draw") + (
                    f". This draw: {what}, time constants {design.tau_lo:g}–"
                    f"{design.tau_hi:g} ms, {design.strategy} training, loss {design.loss}.")
                return Proposal(design.name, reasoning, source_properties(source), source)
        raise RuntimeError("the offline architect has no untried design left")
