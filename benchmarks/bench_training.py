"""Step time of each template T0–T8 against an LSTM of the same hidden size, same batch.

    .venv/bin/python benchmarks/bench_training.py [--batch 16] [--steps 500] [--device auto]

One training step = forward over the batch, MSE loss, backward, AdamW update; the
median of --repeats timed steps after one warm-up step. The peer is torch's nn.LSTM
(cuDNN on CUDA, its fused CPU kernel otherwise) with hidden size = latent_dim, run
in the same process on the same batch. Prints one ratio per template; the goal for
the recurrent templates is ≤ 3× the LSTM.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from descartes_core.baselines import LSTMBaseline
from descartes_core.contract import load_candidate, template_sources


def step_time(model, x, y, repeats: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def one():
        pred, _, _ = model(x)
        loss = torch.nn.functional.mse_loss(pred, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    one()  # warm-up: allocations, cuDNN plans
    times = []
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        one()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=500, help="sequence length (samples)")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", nargs="*", help="template ids, e.g. T1 T5")
    a = ap.parse_args()
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                       if a.device == "auto" else a.device)
    torch.manual_seed(0)
    x = torch.randn(a.batch, a.steps, 21, device=dev)
    y = torch.randn(a.batch, a.steps, 20, device=dev)
    peer = step_time(LSTMBaseline(21, 20, a.latent).to(dev), x, y, a.repeats)
    print(f"device {dev}, batch {a.batch} × {a.steps} samples, latent {a.latent}; "
          f"peer nn.LSTM({a.latent}) step {peer * 1e3:.1f} ms")
    print(f"{'template':<26} {'step ms':>9} {'× LSTM':>8}")
    for tid, src in template_sources().items():
        if a.only and tid not in a.only:
            continue
        props, model_cls = load_candidate(src)
        torch.manual_seed(0)
        t = step_time(model_cls(21, 20, a.latent).to(dev), x, y, a.repeats)
        print(f"{tid} {props['family']:<23} {t * 1e3:>9.1f} {t / peer:>7.1f}×")


if __name__ == "__main__":
    main()
