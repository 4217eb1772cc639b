"""Code blocks inside the sandbox: what a candidate's helpers were called with (their
contract, observed during the shape check) and the verification of a mined block alone.

A contract: ``{"kind": "module" | "function", "init": [spec], "init_kw": {name: spec},
"inputs": [spec], "outputs": [shape]}``, a spec being ``{"shape": [...], "dtype": …}``
(a tensor), ``{"value": number | bool | None}`` or ``{"callable": true}`` (a field a
solver step is handed). The host reads contracts as hostile input
(``protocol.contracts``): a candidate can forge its own, and verification is what
decides — a forged contract only changes what the block is verified on.

On the host, ``needed`` picks the blocks a job carries: only those its source imports.
"""

from __future__ import annotations

import ast
import functools
import math
import types

from sandbox.protocol import (
    BLOCK_NAME,
    DTYPES,
    MAX_ARGS,
    MAX_BLOCKS,
    MAX_DIMS,
    MAX_NUMEL,
)

LIBRARY = "library"
"""The module candidates import blocks from (``from library import NAME``)."""


def _imports(code: str) -> set[str]:
    """The library names a file imports anywhere in it, read from its AST (never run); a file
    that does not parse imports nothing (its job fails on it anyway)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
            and n.module == LIBRARY and not n.level for a in n.names}


def needed(source: str, library: dict[str, str]) -> dict[str, str]:
    """The blocks of `library` (name → file) that `source` imports, and those they import
    in turn, in `library`'s order: what a job of `source` carries. A block nothing imports
    stays on the host, so its file never runs in the job."""
    want, todo = set(), [n for n in _imports(source) if n in library]
    while todo:
        n = todo.pop()
        if n not in want:
            want.add(n)
            todo.extend(i for i in _imports(library[n]) if i in library)
    return {n: code for n, code in library.items() if n in want}


def _shape(t) -> list[int] | None:
    dims = list(t.shape)
    return dims if len(dims) <= MAX_DIMS and math.prod(dims) <= MAX_NUMEL else None


def _spec(value) -> dict | None:
    """What the protocol can say of an argument; None: nothing (the block is not verified
    alone)."""
    import torch

    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        shape = _shape(value)
        return {"shape": shape, "dtype": dtype} if dtype in DTYPES and shape is not None \
            else None
    if value is None or isinstance(value, bool):
        return {"value": value}
    if isinstance(value, int | float) and math.isfinite(value) and abs(value) <= 1e9:
        return {"value": value}
    if callable(value):
        return {"callable": True}
    return None  # a tuple, a string, an object: not something a block is verified on


def _shapes(out) -> list[list[int]] | None:
    import torch

    outs = out if isinstance(out, tuple | list) else (out,)
    if not 1 <= len(outs) <= MAX_ARGS or not all(isinstance(o, torch.Tensor) for o in outs):
        return None
    shapes = [_shape(o) for o in outs]
    return None if None in shapes else shapes


def observe(module: types.ModuleType, skip: frozenset[str] = frozenset({"Model"})):
    """Wrap the top-level helpers `module` defines so that the first call of each records
    its contract; returns a function giving the contracts recorded so far."""
    import torch

    seen: dict[str, dict] = {}
    dead: set[str] = set()  # called with something no contract can say

    def record(name: str, key: str, value) -> None:
        if name not in dead and key not in seen.setdefault(name, {}):
            if value is None:
                dead.add(name)
            else:
                seen[name][key] = value

    def specs(args) -> list[dict] | None:
        out = [_spec(a) for a in args]
        return None if len(out) > MAX_ARGS or any(s is None for s in out) else out

    for name, obj in list(vars(module).items()):
        if name in skip or not BLOCK_NAME.fullmatch(name) or len(seen) >= MAX_BLOCKS:
            continue
        if (isinstance(obj, type) and issubclass(obj, torch.nn.Module)
                and obj.__module__ == module.__name__):
            init, forward = obj.__init__, obj.__dict__.get("forward")
            if forward is None:
                continue

            def wrapped_init(self, *a, _init=init, _name=name, **kw):
                got = specs([*a, *kw.values()]) if all(
                    BLOCK_NAME.fullmatch(k) for k in kw) else None
                record(_name, "init", None if got is None else
                       (got[:len(a)], dict(zip(kw, got[len(a):], strict=True))))
                _init(self, *a, **kw)

            def wrapped_forward(self, *a, _forward=forward, _name=name, **kw):
                out = _forward(self, *a, **kw)
                record(_name, "call", (specs(a), _shapes(out)) if not kw else None)
                return out

            obj.__init__ = functools.wraps(init)(wrapped_init)
            obj.forward = functools.wraps(forward)(wrapped_forward)
            seen[name] = {"kind": "module"}
        elif isinstance(obj, types.FunctionType) and obj.__module__ == module.__name__:
            def wrapped(*a, _f=obj, _name=name, **kw):
                out = _f(*a, **kw)
                record(_name, "call", (specs(a), _shapes(out)) if not kw else None)
                return out

            setattr(module, name, functools.wraps(obj)(wrapped))
            seen[name] = {"kind": "function"}

    def contracts() -> dict[str, dict]:
        out = {}
        for name, got in seen.items():
            call = got.get("call")
            if name in dead or call is None or call[0] is None or call[1] is None:
                continue
            c = {"kind": got["kind"], "init": [], "init_kw": {}, "inputs": call[0],
                 "outputs": call[1]}
            if got["kind"] == "module":
                if "init" not in got:
                    continue
                c["init"], c["init_kw"] = got["init"]
            out[name] = c
        return out

    return contracts


def _argument(spec: dict, gen):
    import torch

    if "value" in spec:
        return spec["value"]
    if "callable" in spec:
        return lambda z, *rest: -0.5 * z  # a decaying field: what a solver step is handed
    dtype = getattr(torch, spec["dtype"])
    if dtype.is_floating_point:
        return torch.randn(spec["shape"], generator=gen).to(dtype).requires_grad_(True)
    return torch.zeros(spec["shape"], dtype=dtype)


def verify(code: str, name: str, contract: dict) -> dict:
    """Build the block from its file alone and run it on its contract: the outputs have the
    declared shapes and are finite, and gradients reach its parameters or its inputs and
    are finite (a block with neither, a constant table, needs none). The worker's answer:
    ok with what was measured, or the reason."""
    import torch

    module = types.ModuleType(f"library.{name}")
    exec(compile(code, f"library/{name}.py", "exec"), module.__dict__)
    obj = module.__dict__.get(name)
    if obj is None:
        return {"ok": False, "error": {"kind": "import", "message": f"the file defines no {name}"}}
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    params = []
    if contract["kind"] == "module":
        obj = obj(*[s.get("value") for s in contract["init"]],
                  **{k: s.get("value") for k, s in contract["init_kw"].items()})
        params = [p for p in obj.parameters() if p.requires_grad]
    args = [_argument(s, gen) for s in contract["inputs"]]
    out = obj(*args)
    outs = out if isinstance(out, tuple | list) else (out,)
    shapes = _shapes(out)
    if shapes != contract["outputs"]:
        return {"ok": False, "error": {"kind": "shape", "message": (
            f"{name} returned shapes {shapes}, its contract says {contract['outputs']}")}}
    if not all(bool(torch.isfinite(o).all()) for o in outs):
        return {"ok": False, "error": {"kind": "nan", "message": f"{name}: non-finite output"}}
    floats = [o for o in outs if o.is_floating_point() and o.requires_grad]
    leaves = params + [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    if floats and leaves:
        sum(o.double().pow(2).mean() for o in floats).backward()
    grads = [p.grad for p in leaves if p.grad is not None]
    if leaves and not any(bool(g.abs().sum() > 0) for g in grads):  # nothing to learn: none
        return {"ok": False, "error": {"kind": "shape", "message": (
            f"no gradient reaches {name}'s parameters or inputs")}}
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        return {"ok": False, "error": {"kind": "nan", "message": f"{name}: non-finite gradient"}}
    return {"ok": True, "check": {"n_params": sum(p.numel() for p in params),
                                  "outputs": shapes,
                                  "grad_fraction": round(len(grads) / max(1, len(leaves)),
                                                         3)}}
