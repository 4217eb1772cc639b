"""A guard for stiff loops: bound the gradient that flows back through a model's state.

Candidates may import it (``from descartes_core.stiff import guard``; the policy allows
this module) and call ``state = guard(state, t)`` inside their time loop. Forward it is
the identity; backward, at every ``every``-th step, it rescales each trial's gradient to
at most ``bound`` in norm. Training sets both from ``TrainConfig.state_grad_bound`` and
``guard_every`` (``configure``); with no bound, the guard does nothing. Why: the
T-current's positive feedback made 400-step segments blow up to infinite gradients, and
a bound every 10 steps kept them stable (research/frontier.md).
"""

from __future__ import annotations

import torch

_setting = {"bound": None, "every": 10}


def configure(bound: float | None, every: int = 10) -> None:
    """The bound (None: off) and spacing in steps of every guard in this process."""
    _setting["bound"] = None if bound is None else float(bound)
    _setting["every"] = max(1, int(every))


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
