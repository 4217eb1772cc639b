#!/usr/bin/env bash
# The GPU check (under 5 minutes on one GPU): each template's training step on CUDA against
# a cuDNN LSTM of the same size, then candidates per GPU-hour at 1, 2 and 4 per GPU
# (local slots sharing one GPU, --gpus-per-candidate 1, 0.5, 0.25), on the smoke preset.
#   bash benchmarks/gpu_check.sh        (after `make setup`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY - <<'PY'
import time, torch
from descartes_core.contract import load_candidate, source_width, template_sources
assert torch.cuda.is_available(), "no CUDA device"
dev = torch.device("cuda")
B, T, H = 16, 500, 64
x, y = torch.randn(B, T, 21, device=dev), torch.randn(B, T, 20, device=dev)

def step_s(model, n=10):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for i in range(n + 3):
        if i == 3:
            torch.cuda.synchronize(); t = time.perf_counter()
        out = model(x)
        loss = ((out[0] if isinstance(out, tuple) else out) - y).pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n

class LSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.out = torch.nn.LSTM(21, H, batch_first=True), torch.nn.Linear(H, 20)
    def forward(self, x):
        z, _ = self.rnn(x)
        return self.out(z)

peer = step_s(LSTM().to(dev))
print(f"cuDNN LSTM (peer), width {H}: {peer * 1e3:.1f} ms a step ({B}×{T})")
for tid, src in template_sources().items():
    try:
        m = load_candidate(src)[1](21, 20, source_width(src, H)).to(dev)  # trusted templates
        s = step_s(m, 3)
        print(f"{tid}: {s * 1e3:8.1f} ms a step, {s / peer:6.1f}× the LSTM")
    except Exception as e:  # one template's failure must not hide the others
        print(f"{tid}: failed ({type(e).__name__}: {str(e)[:120]})")
PY
for share in 1 0.5 0.25; do
  n=$($PY -c "print(int(1 / $share))")
  d=$(mktemp -d)
  start=$(date +%s.%N)
  .venv/bin/descartes-agent run --preset smoke --sandbox process --finalists 0 \
    --parallel "$n" --gpus-per-candidate "$share" --device cuda --run-dir "$d" >/dev/null
  end=$(date +%s.%N)
  $PY - "$d" "$start" "$end" "$n" <<'PY'
import sys
from pathlib import Path
from agent import runs
d, start, end, n = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
(r,) = runs.runs(d)
k = len(r.ledger.iterations(r.id))
print(f"{n} per GPU: {k} candidates in {end - start:.0f} s = {k / (end - start) * 3600:.0f} "
      "candidates per GPU-hour")
PY
done
