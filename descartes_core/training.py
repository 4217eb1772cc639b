"""Training any contract model on a dataset, honouring its declared gradient strategy.

One entry point, :func:`evaluate`: seed, build, record the untrained latents (the
null control), verify on short windows, train within a time budget, and return
predictions and latents for every trial. Inputs and outputs are z-scored with
train-trial statistics; the loss is the MSE of the normalised outputs. Failures
are data: the record carries a class and a message, never an exception.

Strategies:
- direct: backpropagation through whole trials;
- adjoint: the same loop, the model's own solver uses torchdiffeq's adjoint; a
  source that never calls ``odeint_adjoint`` (read from its AST: a comment or a string
  does not count) is trained direct and the record says so;
- segmented: truncated BPTT over segments in order, the state carried detached
  (a model that returns no state starts each segment afresh);
- shooting: every segment after the first starts from a free state, tied to the
  previous segment's end by a continuity penalty; needs a model that takes state;
- distillation: first fit the teacher's outputs (the Volterra–Laguerre
  predictions by default), then the real targets.

The loss is the candidate's declared ``loss`` (descartes_core.losses): ``mse_rate`` on the
z-scored outputs, or a count loss on the TC spike counts of the train and validation
trials, the output read as a log-rate (a count loss without counts trains ``mse_rate``
and the record says so). A readout that is a plain linear map of the latents starts at
its least-squares fit (``readout_init``), and a model that calls ``stiff.guard`` in its
loop has its state gradient bounded (``state_grad_bound``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from descartes_core import losses, stiff
from descartes_core.contract import calls_odeint_adjoint
from descartes_core.events import RATE_TAU_MS, implied_counts
from descartes_core.scoring import pearson_columns


@dataclass(frozen=True)
class TrainConfig:
    """How a candidate is trained; every field has the default a run uses."""

    time_budget_h: float = 2.0
    """Wall-clock budget for verification plus training, in hours (fractions allowed)."""
    max_epochs: int = 100
    """Upper bound on passes over the training trials."""
    batch_size: int = 16
    """Trials per optimiser step (all strategies batch over trials)."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    patience: int = 8
    """Epochs without a better validation loss before early stopping."""
    segment_len: int = 200
    """Segment length (samples) of segmented and shooting training."""
    continuity_weight: float = 1.0
    """Weight of the shooting continuity penalty."""
    distill_fraction: float = 0.3
    """Share of the epochs that distillation spends on the teacher's outputs."""
    verify: bool = True
    """Run the short-window verifier before full training."""
    verify_window: int = 100
    """Length (samples) of the verifier's windows."""
    verify_steps: int = 150
    """Optimiser steps of the verifier."""
    verify_min_drop: float = 0.2
    """Relative loss drop the verifier requires on its windows."""
    seed: int = 0
    """Seed of the model's initialisation, the batch order and the verifier's windows."""
    null_seeds: int = 3
    """Initialisation seeds of the untrained null (seed, seed + 1, …): the score compares
    with the best of them, since one draw of an initialisation is noise."""
    device: str = "auto"
    """'auto' (CUDA when present), 'cpu' or 'cuda'."""
    readout_init: str = "lstsq"
    """'lstsq': a model whose output is exactly ``self.readout(latents)`` (an nn.Linear)
    starts with that readout fitted by least squares on the training trials, since a
    least-squares readout gave a grey-box its spike r at once (research/frontier.md);
    'none' keeps the model's own initialisation."""
    state_grad_bound: float | None = 1.0
    """Bound on the norm of the state gradient, per trial, wherever the model calls
    ``descartes_core.stiff.guard`` (every ``guard_every`` steps); None leaves it free. Stiff
    loops (the T-current's positive feedback) otherwise blow up to infinite gradients; an
    honest gradient on z-scored outputs is far below 1, so the bound acts on blow-ups only.
    A model that never calls the guard is not affected."""
    guard_every: int = 10
    """Steps between two gradient guards in a model's loop."""
    compile: bool = True
    """Compile the step functions a model passes through ``descartes_core.stiff.fast_step``
    (torch.compile, fixed shapes, once per job): T9's step ran 6× faster after a 36-s
    compilation on CPU. Where it cannot (the docker sandbox's image holds no C++ compiler,
    and its tmpfs is noexec) the model runs eager, and the record's ``compile`` says so.
    A budget under COMPILE_MIN_BUDGET_S never compiles: the compilation would eat it."""


@dataclass
class TrainRecord:
    """What happened in training; JSON-ready through ``asdict``."""

    strategy: str
    device: str
    n_params: int
    strategy_note: str | None = None
    loss: str = "mse_rate"
    """The loss trained (a count loss without counts falls back to mse_rate)."""
    loss_note: str | None = None
    compile: str | None = None
    """stiff.fast_step's outcome: None (not asked, or never called), 'compiled' or why eager."""
    epochs: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    wall_s: float = 0.0
    short_segment_corr: float | None = None
    failure: str | None = None
    failure_message: str | None = None
    stopped_by: str | None = None
    history: list[dict] = field(default_factory=list)


@dataclass
class Evaluation:
    """A training record and, when the model rolls out at all, its arrays for every trial."""

    record: TrainRecord
    predictions: np.ndarray | None = None
    """(N, T, 20) outputs in the dataset's units, one rollout from t = 0 per trial."""
    latents: np.ndarray | None = None
    """(N, T, latent_dim) of the trained model (the initial one if training failed)."""
    null_latents: np.ndarray | None = None
    """(null_seeds, N, T, latent_dim) of the same model at initialisation, one per seed (the
    first is the initialisation training starts from): the null control."""


class _Failure(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


DIVERGED_LOSS = 1e6
"""A loss this large is a divergence: an honest model's is about 1 on z-scored outputs, and
below 1 for the count losses."""


class Objective:
    """The loss a candidate trains with, on targets in that loss's own space: the z-scored
    rate for mse_rate, the spike counts per bin for a count loss."""

    def __init__(self, name: str, counts_fit: torch.Tensor | None = None):
        self.name = name
        if name in losses.COUNT_LOSSES:
            self.offset = losses.count_offset(counts_fit)
            self.norms = losses.scale_norms(counts_fit)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.name == "poisson_counts":
            loss = losses.poisson_nll(pred, target, self.offset)
        elif self.name == "event_multiscale":
            loss = losses.event_distance(pred, target, self.offset, self.norms)
        else:
            loss = F.mse_loss(pred, target)
        return _guarded(loss)

    def rate(self, pred: torch.Tensor, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """Outputs in the dataset's units (Hz): a count loss's expected smoothed rate."""
        if self.name not in losses.COUNT_LOSSES:
            return (pred.cpu().numpy() * sd + mu).astype(np.float32)
        rate = losses.causal_filter(losses.intensity(pred, self.offset), RATE_TAU_MS,
                                    1000.0 / RATE_TAU_MS)
        return rate.cpu().numpy().astype(np.float32)

    def readout_target(self, y: torch.Tensor) -> torch.Tensor:
        """What a least-squares readout fits: the target itself, or for a count loss the
        log of its 10-ms smoothed rate per bin relative to the offset."""
        if self.name not in losses.COUNT_LOSSES:
            return y
        smooth = losses.causal_filter(y, RATE_TAU_MS, 1.0 - float(np.exp(-1.0 / RATE_TAU_MS)))
        return torch.log(smooth + 1e-4) - self.offset


def _guarded(loss: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(loss):
        raise _Failure("nan", "the loss became NaN or infinite")
    if loss.item() > DIVERGED_LOSS:
        raise _Failure("train_diverged", f"the loss reached {loss.item():.3g}")
    return loss


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _step(model, opt, loss, clip):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Full rollouts from t = 0 (state None) of normalised inputs: (outputs, latents)."""
    model.eval()
    ys, zs = [], []
    for i in range(0, len(x), batch_size):
        y, z, _ = model(x[i : i + batch_size])
        ys.append(y)
        zs.append(z)
    model.train()
    return torch.cat(ys), torch.cat(zs)


def _shape_error(y, z, x, n_out):
    if y.shape != (*x.shape[:2], n_out) or z.dim() != 3 or z.shape[:2] != x.shape[:2]:
        raise _Failure("shape", f"forward returned y {tuple(y.shape)} and latents "
                                f"{tuple(z.shape)} for x {tuple(x.shape)}")


class _Trainer:
    def __init__(self, model, x, y, train_idx, val_idx, strategy, cfg, teacher, source,
                 objective: Objective):
        self.model, self.x, self.y, self.cfg = model, x, y, cfg
        self.objective = objective
        self.train_idx, self.val_idx = train_idx, val_idx
        self.teacher = teacher
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.strategy, self.note = strategy, None
        if strategy == "adjoint" and not calls_odeint_adjoint(source or ""):
            self.strategy = "direct"
            self.note = "adjoint requested, but the model integrates no ODE with " \
                        "torchdiffeq's odeint_adjoint: trained direct"
        if strategy == "distillation" and teacher is None:
            self.strategy, self.note = "direct", "distillation without a teacher: trained direct"
        self.shoot_states = self.shoot_opt = self.shoot_row = None

    def _batches(self):
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.gen)]
        for i in range(0, len(order), self.cfg.batch_size):
            yield order[i : i + self.cfg.batch_size]

    def _segments(self, steps):
        L = min(self.cfg.segment_len, steps)
        return [(s, min(s + L, steps)) for s in range(0, steps, L)]

    def epoch(self, epoch_idx: int, deadline: float) -> float:
        losses = []
        target = self.y
        if self.strategy == "distillation" and epoch_idx < self._distill_epochs():
            target = self.teacher
        for idx in self._batches():
            if time.monotonic() > deadline:
                break
            x, y = self.x[idx], target[idx]
            if self.strategy == "segmented":
                losses.append(self._segmented(x, y))
            elif self.strategy == "shooting":
                losses.append(self._shooting(idx, x, y))
            else:
                pred, _, _ = self.model(x)
                loss = self.objective(pred, y)
                _step(self.model, self.opt, loss, self.cfg.grad_clip)
                losses.append(loss.item())
        return float(np.mean(losses)) if losses else math.nan

    def _distill_epochs(self) -> int:
        return max(1, round(self.cfg.distill_fraction * self.cfg.max_epochs))

    def _segmented(self, x, y) -> float:
        state, total = None, 0.0
        for a, b in self._segments(x.shape[1]):
            pred, _, state = self.model(x[:, a:b], state)
            loss = self.objective(pred, y[:, a:b])
            _step(self.model, self.opt, loss, self.cfg.grad_clip)
            state = None if state is None else state.detach()
            total += loss.item() * (b - a)
        return total / x.shape[1]

    def _init_shooting(self):
        """Free start states of segments 1…K-1, from a rollout of the initial model."""
        segs = self._segments(self.x.shape[1])
        with torch.no_grad():
            _, _, state = self.model(self.x[self.train_idx[:1], : segs[0][1]])
        if state is None or len(segs) < 2 or segs[1][1] - segs[1][0] != segs[0][1]:
            self.strategy = "segmented"
            self.note = "shooting needs two full segments and a model that returns its " \
                        "state: trained segmented"
            return
        starts = []
        with torch.no_grad():
            for i in range(0, len(self.train_idx), self.cfg.batch_size):
                idx = self.train_idx[i : i + self.cfg.batch_size]
                state, per = None, []
                for a, b in segs[:-1]:
                    _, _, state = self.model(self.x[idx, a:b], state)
                    per.append(state)
                starts.append(torch.stack(per, dim=1))
        self.shoot_states = torch.nn.Parameter(torch.cat(starts))  # (N_train, K-1, S)
        self.shoot_row = {int(t): r for r, t in enumerate(self.train_idx)}
        self.shoot_opt = torch.optim.Adam([self.shoot_states], lr=self.cfg.lr * 10)

    def _shooting(self, idx, x, y) -> float:
        segs = self._segments(x.shape[1])
        rows = torch.tensor([self.shoot_row[int(i)] for i in idx], device=self.x.device)
        starts = self.shoot_states[rows]  # (B, K-1, S)
        L = segs[0][1]
        full = [(a, b) for a, b in segs if b - a == L]
        k = len(full)
        pred0, _, end0 = self.model(x[:, :L])
        xs = x[:, L : k * L].reshape(len(idx), k - 1, L, -1).flatten(0, 1)
        pred, _, ends = self.model(xs, starts[:, : k - 1].flatten(0, 1))
        pred = torch.cat([pred0, pred.reshape(len(idx), (k - 1) * L, -1)], dim=1)
        loss = self.objective(pred, y[:, : k * L])
        ends = torch.cat([end0[:, None], ends.reshape(len(idx), k - 1, -1)], dim=1)
        gap = F.mse_loss(ends[:, : k - 1], starts[:, : k - 1])
        total = loss + self.cfg.continuity_weight * gap
        self.shoot_opt.zero_grad(set_to_none=True)
        _step(self.model, self.opt, total, self.cfg.grad_clip)
        self.shoot_opt.step()
        return loss.item()

    def val_loss(self) -> float:
        pred, _ = predict(self.model, self.x[self.val_idx], self.cfg.batch_size)
        return self.objective(pred, self.y[self.val_idx]).item()


COMPILE_MIN_BUDGET_S = 600.0
"""The shortest budget worth compiling a step for (a compilation takes 30–60 s on CPU)."""
READOUT_RIDGE = 1e-3
"""Ridge of the least-squares readout, relative to the latents' mean square."""
READOUT_STRIDE = 5
"""The readout is fitted on every 5th step: latents move slowly, memory stays small."""


@torch.no_grad()
def fit_readout(model, x: torch.Tensor, target: torch.Tensor, batch_size: int) -> bool:
    """Set ``model.readout`` to the least-squares map from the latents to `target` on the
    trials `x`, if the model's output is exactly that nn.Linear of its latents (checked
    on two trials); True when it did. Any other model is left as it is."""
    readout = getattr(model, "readout", None)
    if not isinstance(readout, torch.nn.Linear) or readout.out_features != target.shape[-1]:
        return False
    y, z, _ = model(x[:2])
    if z.shape[-1] != readout.in_features:
        return False
    if not torch.allclose(readout(z), y, rtol=1e-4, atol=1e-5 * (1 + float(y.abs().max()))):
        return False
    z = predict(model, x, batch_size)[1][:, ::READOUT_STRIDE].flatten(0, 1).double()
    if readout.bias is not None:
        z = torch.cat([z, torch.ones_like(z[:, :1])], dim=1)
    tgt = target[:, ::READOUT_STRIDE].flatten(0, 1).double()
    gram = z.T @ z
    ridge = READOUT_RIDGE * float(gram.diagonal().mean()) + 1e-12
    w = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=gram.dtype,
                                                    device=gram.device), z.T @ tgt)
    if not torch.isfinite(w).all():
        return False
    readout.weight.copy_(w[: readout.in_features].T.to(readout.weight.dtype))
    if readout.bias is not None:
        readout.bias.copy_(w[-1].to(readout.bias.dtype))
    return True


VERIFY_BUDGET_SHARE = 0.25
VERIFY_MIN_STEPS = 10


def verify(model, x, y, train_idx, val_idx, cfg: TrainConfig,
           deadline: float = math.inf) -> tuple[bool, float, str]:
    """The short-window gate: can the model fit 100-sample windows at all?

    The model is restored to its initial weights afterwards (state_dict, not deepcopy:
    candidates may keep tensors from the last forward pass on themselves). It stops at
    `deadline`; with fewer than VERIFY_MIN_STEPS steps done by then it raises a timeout.
    Returns (passed, held-out correlation on validation windows, message).
    """
    objective = Objective("mse_rate")  # on the z-scored rate whatever the training loss:
    initial = _snapshot(model)  # a gate on the architecture, with an attainable 20 % drop
    probe = model
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr * 3)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    w = min(cfg.verify_window, x.shape[1])

    def windows(idx, n):
        trials = idx[torch.randint(len(idx), (n,), generator=gen)]
        starts = torch.randint(x.shape[1] - w + 1, (n,), generator=gen)
        sel = starts[:, None] + torch.arange(w)
        return x[trials[:, None], sel], y[trials[:, None], sel]

    xw, yw = windows(train_idx, min(64, 4 * len(train_idx)))
    history = []
    for i in range(cfg.verify_steps):
        if time.monotonic() > deadline:
            if i < VERIFY_MIN_STEPS:
                model.load_state_dict(initial)
                raise _Failure("timeout", f"the short-window verifier managed {i} steps "
                                          "in its share of the time budget")
            break
        b = torch.arange(i * 16, i * 16 + 16) % len(xw)
        loss = objective(probe(xw[b])[0], yw[b])
        _step(probe, opt, loss, cfg.grad_clip)
        history.append(loss.item())
    first, last = np.mean(history[:5]), np.mean(history[-5:])
    xv, yv = windows(val_idx, 32)
    with torch.no_grad():
        pv = probe(xv)[0]
    model.load_state_dict(initial)
    corr = float(pearson_columns(pv.flatten(0, 1).cpu().double().numpy(),
                                 yv.flatten(0, 1).cpu().double().numpy()).mean())
    passed = last <= (1 - cfg.verify_min_drop) * first
    msg = (f"loss {first:.3g} -> {last:.3g} on {w}-sample windows in {len(history)} steps "
           f"(needs a {cfg.verify_min_drop:.0%} drop); held-out window correlation {corr:.3f}")
    return passed, corr, msg


def failure_kind(e: BaseException) -> str:
    """oom for an allocation failure (CUDA's or the CPU allocator's), else runtime."""
    return "oom" if "out of memory" in str(e) or "allocate memory" in str(e) else "runtime"


def evaluate(
    model_cls,
    inputs: np.ndarray,
    targets: np.ndarray,
    split: dict,
    strategy: str,
    cfg: TrainConfig = TrainConfig(),
    *,
    latent_dim: int = 64,
    loss: str = "mse_rate",
    counts: np.ndarray | None = None,
    teacher: np.ndarray | None = None,
    source: str | None = None,
    progress: Callable[[int, int, float, float], None] | None = None,
) -> Evaluation:
    """Train `model_cls` on train trials (validation for early stopping) and roll out all.

    targets: (N, T, 20) rates; counts: (N, T, 20) spike counts per bin, for a count loss.
    Only train and validation rows of either are read, so the caller may pass zeros for
    the others. teacher: (N, T, 20) rates for distillation.
    """
    begun = time.monotonic()
    dev = _device(cfg.device)
    train_idx = torch.as_tensor(split["train"], dtype=torch.long)
    val_idx = torch.as_tensor(split["val"], dtype=torch.long)
    fit = np.concatenate([split["train"], split["val"]])
    x_np = np.asarray(inputs, dtype=np.float32)
    mu_x, sd_x = x_np[split["train"]].mean((0, 1)), x_np[split["train"]].std((0, 1)) + 1e-6
    y_fit = np.asarray(targets[fit], dtype=np.float32)
    mu_y, sd_y = y_fit.mean((0, 1)), y_fit.std((0, 1)) + 1e-6
    x = torch.as_tensor((x_np - mu_x) / sd_x, device=dev)
    loss_note = None
    if loss in losses.COUNT_LOSSES and counts is None:
        loss, loss_note = "mse_rate", "a count loss needs spike counts, and this data has " \
                                      "none: trained mse_rate"
    y_rate = torch.as_tensor((np.asarray(targets, np.float32) - mu_y) / sd_y, device=dev)
    if loss in losses.COUNT_LOSSES:  # targets are the counts; a teacher, its implied counts
        y = torch.as_tensor(np.asarray(counts, np.float32), device=dev)
        t = None if teacher is None else torch.as_tensor(
            implied_counts(teacher, RATE_TAU_MS).astype(np.float32), device=dev)
        objective = Objective(loss, y[torch.as_tensor(split["train"], device=dev)])
    else:
        y = y_rate
        t = None if teacher is None else torch.as_tensor(
            (np.asarray(teacher, np.float32) - mu_y) / sd_y, device=dev)
        objective = Objective(loss)
    train_idx, val_idx = train_idx.to(dev), val_idx.to(dev)

    torch.manual_seed(cfg.seed)
    model = model_cls(x.shape[-1], y.shape[-1], latent_dim).to(dev)
    record = TrainRecord(strategy=strategy, device=str(dev), loss=loss, loss_note=loss_note,
                         n_params=sum(p.numel() for p in model.parameters()))
    null = None
    try:
        y0, z0, _ = model(x[:1, :2])
        _shape_error(y0, z0, x[:1, :2], y.shape[-1])
        _, null = predict(model, x, cfg.batch_size)
        null = [null]
        for k in range(1, cfg.null_seeds):
            torch.manual_seed(cfg.seed + k)
            null.append(predict(model_cls(x.shape[-1], y.shape[-1], latent_dim).to(dev), x,
                                cfg.batch_size)[1])
        stiff.configure(cfg.state_grad_bound, cfg.guard_every,
                        cfg.compile and cfg.time_budget_h * 3600.0 >= COMPILE_MIN_BUDGET_S)
        # The budget is for verification and training: the rollouts above do not count.
        start = time.monotonic()
        deadline = start + cfg.time_budget_h * 3600.0
        if cfg.verify:  # can this architecture, from its own initialisation, learn at all?
            share = start + VERIFY_BUDGET_SHARE * cfg.time_budget_h * 3600.0
            passed, corr, msg = verify(model, x, y_rate, train_idx, val_idx, cfg, share)
            record.short_segment_corr = corr
            if not passed:
                raise _Failure("verifier_failed", msg)
        if cfg.readout_init == "lstsq":
            fit_readout(model, x[train_idx], objective.readout_target(y[train_idx]),
                        cfg.batch_size)
        trainer = _Trainer(model, x, y, train_idx, val_idx, strategy, cfg, t, source, objective)
        record.strategy, record.strategy_note = trainer.strategy, trainer.note
        if trainer.strategy == "shooting":
            trainer._init_shooting()
            record.strategy, record.strategy_note = trainer.strategy, trainer.note
        best, best_state, bad = math.inf, None, 0
        for ep in range(cfg.max_epochs):
            if time.monotonic() > deadline:
                record.stopped_by = "time_budget"
                break
            tr = trainer.epoch(ep, deadline)
            if math.isnan(tr):
                record.stopped_by = "time_budget"
                break
            va = trainer.val_loss()
            record.epochs, record.train_loss, record.val_loss = ep + 1, tr, va
            record.history.append({"epoch": ep + 1, "train": tr, "val": va,
                                   "t": round(time.monotonic() - start, 2)})
            if progress is not None:
                progress(ep + 1, cfg.max_epochs, tr, va)
            if va > 1e3 * max(record.history[0]["val"], 1e-3):
                raise _Failure("train_diverged", f"validation loss rose to {va:.3g}")
            distilling = trainer.strategy == "distillation" and ep < trainer._distill_epochs()
            if distilling:  # fitting the teacher moves away from the targets by design: the
                best_state = _snapshot(model)  # latest state stands, never a rollback to epoch 1
            elif va < best:
                best, best_state, bad = va, _snapshot(model), 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    record.stopped_by = "early_stopping"
                    break
        else:
            record.stopped_by = "max_epochs"
        if best_state is None:
            raise _Failure("timeout", "the time budget ran out before one epoch finished")
        model.load_state_dict(best_state)
    except _Failure as e:
        record.failure, record.failure_message = e.kind, str(e)
    except torch.cuda.OutOfMemoryError as e:
        record.failure, record.failure_message = "oom", str(e).splitlines()[0]
    except Exception as e:  # candidate code can raise anything; it is a result, not a crash
        kind = failure_kind(e)
        first = (str(e).splitlines() or [""])[0][:500]
        record.failure, record.failure_message = kind, f"{type(e).__name__}: {first}"
    if record.failure:
        record.stopped_by = "failure"
    record.compile = stiff.status()
    stiff.configure(None)  # the settings are this training's, not the next one's
    result = Evaluation(record)
    if null is not None:  # the model rolls out with the right shapes
        pred, lat = predict(model, x, cfg.batch_size)
        result.predictions = objective.rate(pred, mu_y, sd_y)
        result.latents = lat.cpu().numpy().astype(np.float32)
        result.null_latents = torch.stack(null).cpu().numpy().astype(np.float32)
    record.wall_s = round(time.monotonic() - begun, 3)
    return result

