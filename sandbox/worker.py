"""The worker that runs candidate code, inside the sandbox: ``python -m sandbox.worker JOB OUT``.

JOB holds ``request.json`` ({"task": "check" | "evaluate" | "verify", "source", "config";
the config's ``library`` maps the library blocks the source may import to their files})
and, for evaluate, ``arrays.npz`` (inputs of every trial; outputs, and for a count loss spike
counts, of train and validation trials only; the split without selection or test).
The worker writes ``response.json`` and, for evaluate, ``arrays.npz`` into OUT, and
exits 0. The candidate runs in this interpreter and can write those files itself: the
host validates them as hostile input (``sandbox.protocol``), and nothing here is a secret.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from sandbox.protocol import ARRAYS, LATENT_STRIDE, PROGRESS, RESPONSE, finite_or_none, read_request


def _fail(kind: str, message: str) -> dict:
    return {"ok": False, "error": {"kind": kind, "message": message[:2000]}}


def check(source: str, cfg: dict) -> dict:
    """Build Model(21, 20, latent_dim), fingerprint what it computes, run forward and
    backward on a random batch, verify."""
    import torch

    from descartes_core.contract import load_candidate
    from sandbox.blocks import observe

    latent_dim = int(cfg.get("latent_dim", 64))
    batch, steps = int(cfg.get("batch", 4)), int(cfg.get("steps", 200))
    try:
        _, model_cls = load_candidate(source, library=cfg.get("library"))
    except ImportError as e:
        return _fail("import", f"{type(e).__name__}: {e}")
    contracts = observe(sys.modules["candidate"])  # what its helpers are called with
    # The init is seeded right before construction, not before loading: random numbers
    # drawn at import time must not shift the weights the fingerprint sees.
    torch.manual_seed(0)
    model = model_cls(21, 20, latent_dim)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > int(cfg.get("max_params", 5_000_000)):
        return _fail("params", f"{n_params} parameters, over the cap of {cfg.get('max_params')}")
    # The functional fingerprint: what the model computes, as a 64-hex sha256 of its
    # outputs and latents at the seed-0 init on a fixed (2, 64, 21) input drawn from its
    # own generator (the global stream is neither read nor advanced). It is the first call
    # of the fresh model, so nothing the check does below can leak into it.
    # Rounding rule: each tensor is hashed as its shape, its scale s = max |v| to 4
    # significant digits, and v / s rounded to 4 decimals (4 significant digits of the
    # largest element). Why: a renamed copy runs the same operations in the same order
    # and is bit-identical here, but the same model on another BLAS, thread count or CPU
    # differs in the last bits; rounding relative to the tensor's own largest value makes
    # that noise (1e-7 to 1e-6 of s) vanish for every element, small ones included, where
    # per-element significant digits would keep the noise of the elements near zero. The
    # scale is kept, so outputs that differ by a constant factor still differ. A value
    # within the noise of a rounding boundary can still flip: the fingerprint groups
    # copies, it proves nothing.
    import hashlib

    digest = hashlib.sha256()
    with torch.no_grad():
        y, z, _ = model(torch.randn(2, 64, 21, generator=torch.Generator().manual_seed(12345)))
        for v in (y, z):
            v = torch.nan_to_num(v.detach().to("cpu", torch.float64), nan=0.0, posinf=0.0,
                                 neginf=0.0)  # a NaN model fails the check below anyway
            scale = float(v.abs().max()) if v.numel() else 0.0
            q = torch.round(v / scale * 1e4) if scale > 0 else torch.zeros_like(v)
            digest.update(f"{tuple(v.shape)}|{scale:.3e}|".encode())
            digest.update(q.to(torch.int32).contiguous().numpy().tobytes())
    fingerprint = digest.hexdigest()
    torch.manual_seed(int(cfg.get("seed", 0)))  # the check's batch, whatever the model drew
    x = torch.randn(batch, steps, 21)
    start = time.perf_counter()
    y, z, _ = model(x)
    forward_ms = (time.perf_counter() - start) * 1e3
    if tuple(y.shape) != (batch, steps, 20):
        return _fail("shape", f"y has shape {tuple(y.shape)}, expected ({batch}, {steps}, 20)")
    if tuple(z.shape) != (batch, steps, latent_dim):
        return _fail("shape", f"latents have shape {tuple(z.shape)}, expected "
                              f"({batch}, {steps}, {latent_dim})")
    if not (torch.isfinite(y).all() and torch.isfinite(z).all()):
        return _fail("nan", "forward produced NaN or infinite values on a random batch")
    (y.pow(2).mean() + z.pow(2).mean()).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    reached = sum(1 for p in params if p.grad is not None and bool(p.grad.abs().sum() > 0))
    if not reached:
        return _fail("shape", "no gradient reaches any parameter")
    warnings = []
    half = steps // 2
    with torch.no_grad():
        y_full = model(x)[0]
        y_a, _, s = model(x[:, :half])
        if s is None:
            warnings.append("forward returns no state: segmented training starts each "
                            "segment afresh")
            roundtrip = None
        else:
            y_b = model(x[:, half:], s)[0]
            diff = (torch.cat([y_a, y_b], dim=1) - y_full).abs().max().item()
            roundtrip = diff / (y_full.abs().max().item() + 1e-8)
            if not math.isfinite(roundtrip) or roundtrip > 1e-3:
                warnings.append(f"state round trip: two half-trial calls carrying state differ "
                                f"from one full call by {roundtrip:.2e} (relative)")
    return {"ok": True, "check": {
        "n_params": n_params, "forward_ms": round(forward_ms, 2), "latent_dim": latent_dim,
        "grad_fraction": round(reached / max(1, len(params)), 3),
        "roundtrip_error": roundtrip, "warnings": warnings, "fingerprint": fingerprint,
        "blocks": contracts(),
    }}


def evaluate(source: str, cfg: dict, job: Path, out: Path) -> dict:
    """Train with descartes_core's trainer; predictions and latents of every trial to OUT."""
    import dataclasses

    import numpy as np
    import torch

    from descartes_core.contract import load_candidate
    from descartes_core.training import TrainConfig
    from descartes_core.training import evaluate as train

    # The first optimiser a process makes imports torch._dynamo (3–5 s): pay that here,
    # before the training budget's clock starts, not out of the budget.
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    props, model_cls = load_candidate(source, library=cfg.get("library"))
    built = []  # the first model the trainer builds is the one it trains (the rest: nulls)

    def build(*args, **kwargs):
        built.append(model_cls(*args, **kwargs))
        return built[-1]

    with np.load(job / ARRAYS) as z:
        inputs, targets = z["inputs"], z["targets"]
        teacher = z["teacher"] if "teacher" in z.files else None
        counts = z["counts"] if "counts" in z.files else None
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    tc = TrainConfig(**{k: v for k, v in cfg.get("train", {}).items() if k in fields})
    with open(out / PROGRESS, "a") as log:

        def progress(epoch, total, train_loss, val_loss):  # read live by the host
            log.write(json.dumps({"epoch": epoch, "total": total, "train_loss": train_loss,
                                  "val_loss": val_loss}) + "\n")
            log.flush()

        ev = train(build, inputs, targets, cfg["split"], props["gradient_strategy"], tc,
                   latent_dim=int(cfg.get("latent_dim", 64)), loss=props["loss"],
                   counts=counts, teacher=teacher, source=source, progress=progress)
    if built:
        _save_weights(built[0], out)
    if ev.predictions is not None:  # latents at the steps the probes read
        np.savez(out / ARRAYS, predictions=ev.predictions,
                 latents=ev.latents[:, ::LATENT_STRIDE],
                 null_latents=ev.null_latents[:, :, ::LATENT_STRIDE])
    return {"ok": ev.record.failure is None, "record": dataclasses.asdict(ev.record),
            "arrays": ev.predictions is not None}


def _save_weights(model, out: Path) -> None:
    """The trained parameters as float32 safetensors, from which the host counts them
    (sandbox.weights). A model whose parameters cannot be written is not a failure: its
    size is shown as unverified."""
    import torch

    from sandbox.protocol import WEIGHTS

    try:  # the import too: an image without safetensors trains as before, uncounted
        from safetensors.torch import save_file

        save_file({k: p.detach().to("cpu", torch.float32).clone()
                   for k, p in model.named_parameters()}, str(out / WEIGHTS))
    except Exception:  # a complex or meta parameter, a full disk: no count, no failure
        (out / WEIGHTS).unlink(missing_ok=True)


def verify(cfg: dict, out: Path) -> dict:
    """Each block of cfg["blocks"] built from its file alone and run on its contract
    (sandbox.blocks.verify), each verdict apart: one block's failure is its own. Before
    each block a progress line whose epoch is the block's index tells the host which block
    a job that dies was on (the host refuses that one and verifies the others again)."""
    import torch  # noqa: F401  (imported before the first block begins: no block's time)

    from descartes_core.contract import register_library
    from descartes_core.training import failure_kind
    from sandbox.blocks import verify as verify_one

    register_library(cfg.get("library") or {})
    verdicts = {}
    blocks = cfg.get("blocks", [])
    with open(out / PROGRESS, "a") as log:
        for k, b in enumerate(blocks):
            log.write(json.dumps({"epoch": k, "total": len(blocks), "train_loss": 0.0,
                                  "val_loss": 0.0}) + "\n")
            log.flush()
            try:
                got = verify_one(b["code"], b["name"], b["contract"])
            except MemoryError:
                got = _fail("oom", "out of memory")
            except Exception as e:
                got = _fail(failure_kind(e), f"{type(e).__name__}: {e}")
            err = got.get("error") or {}
            verdicts[b["name"]] = {"ok": got["ok"], "kind": err.get("kind"),
                                   "message": err.get("message", "")[:2000],
                                   "n_params": (got.get("check") or {}).get("n_params", 0)}
    return {"ok": True, "check": {"verdicts": verdicts}}


def main(argv: list[str]) -> int:
    job, out = Path(argv[0]), Path(argv[1])
    request = read_request(job)
    try:
        if request["task"] == "check":
            response = check(request["source"], request.get("config", {}))
        elif request["task"] == "verify":
            response = verify(request.get("config", {}), out)
        else:
            response = evaluate(request["source"], request.get("config", {}), job, out)
    except MemoryError:
        response = _fail("oom", "out of memory")
    except Exception as e:  # the candidate's own failure is the answer
        from descartes_core.training import failure_kind

        response = _fail(failure_kind(e), f"{type(e).__name__}: {e}")
    (out / RESPONSE).write_text(json.dumps(finite_or_none(response)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
