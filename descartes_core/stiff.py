"""Stiff, fixed-step loops: bound the gradient through a model's state, compile its step.

Candidates may import both (``from descartes_core.stiff import fast_step, guard``; the
policy allows this module). ``state = guard(state, t)`` inside a time loop: Forward it is
the identity; backward, at every ``every``-th step, it rescales each trial's gradient to
at most ``bound`` in norm. Training sets both from ``TrainConfig.state_grad_bound`` and
``guard_every`` (``configure``); with no bound, the guard does nothing. Why: the
T-current's positive feedback made 400-step segments blow up to infinite gradients, and
a bound every 10 steps kept them stable (research/frontier.md).

``step = fast_step(self.step)``: the step function through ``torch.compile`` (fixed
shapes, compiled once, its cache in the job's own temporary folder) when training asks
for it (``TrainConfig.compile``), else the step itself. A 1-ms loop is launch-bound:
the experiment's compiled loop ran about 10× faster than eager on CPU. The candidate
never calls the compiler itself (the policy refuses ``torch.compile``); a platform that
cannot compile (no C compiler in the sandbox, say) runs eager, and ``status()`` says why.
"""

from __future__ import annotations

import torch

_setting = {"bound": None, "every": 10, "compile": False, "status": None}


def configure(bound: float | None, every: int = 10, compile: bool = False) -> None:
    """The bound (None: off) and spacing in steps of every guard in this process, and
    whether ``fast_step`` compiles."""
    _setting["bound"] = None if bound is None else float(bound)
    _setting["every"] = max(1, int(every))
    _setting["compile"], _setting["status"] = bool(compile), None


def status() -> str | None:
    """What ``fast_step`` did in this process: None if nothing was asked of it."""
    return _setting["status"]


_cache: dict = {}


class _Compiled:
    """A step function compiled at its first call; eager, for good, if compiling fails."""

    def __init__(self, fn):
        import os
        import tempfile

        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-"))
        self.fn, self.fast = fn, torch.compile(fn, dynamic=False)

    def __call__(self, *args):
        if self.fast is not None:
            try:
                out = self.fast(*args)
                _setting["status"] = _setting["status"] or "compiled"
                return out
            except Exception as e:  # the compiler's failure, not the model's: run eager
                self.fast = None
                _setting["status"] = f"eager: compiling failed ({type(e).__name__}: " \
                                     f"{(str(e).splitlines() or [''])[0][:200]})"
        return self.fn(*args)


def fast_step(fn):
    """`fn` compiled when training asks for it (one compilation per function, reused by
    every forward pass), else `fn` itself."""
    if not _setting["compile"]:
        return fn
    # one compilation per model's method; the cache holds the model, so its id stays its own
    key = (getattr(fn, "__func__", fn), id(getattr(fn, "__self__", None)))
    if key not in _cache:
        _cache[key] = _Compiled(fn)
    return _cache[key]


def _bound_rows(grad: torch.Tensor, bound: float) -> torch.Tensor:
    norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12)
    scale = (bound / norm).clamp(max=1.0)
    return grad * scale.view(-1, *([1] * (grad.dim() - 1)))


def guard(state: torch.Tensor, step: int) -> torch.Tensor:
    """`state` itself; its gradient bounded per trial when training asks for a bound and
    `step` falls on the guard's spacing."""
    bound = _setting["bound"]
    if bound is None or step % _setting["every"] or not state.requires_grad:
        return state
    state = state.view_as(state)  # a new node, so the hook bounds this step's gradient only
    state.register_hook(lambda g: _bound_rows(g, bound))
    return state
