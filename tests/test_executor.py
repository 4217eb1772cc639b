"""The local executor's GPU shares, its retry of a broken sandbox, and its cancel."""

import subprocess
import time

import numpy as np

from agent import executor
from agent.executor import Job, LocalExecutor, Workload, gpu_shares


def test_gpu_shares_give_each_slot_its_own_gpus_or_pack_several_onto_one():
    assert gpu_shares([], 3, 1.0) == [None, None, None]
    assert gpu_shares(["0", "1"], 2, 1.0) == ["0", "1"]
    assert gpu_shares(["0", "1"], 4, 0.5) == ["0", "1", "0", "1"]
    assert gpu_shares(["0", "1", "2", "3"], 2, 2) == ["0,1", "2,3"]


def _workload(backend: str) -> Workload:
    z = np.zeros((4, 50, 21), np.float32)
    return Workload(z, np.zeros((4, 50, 20), np.float32), np.zeros((4, 50, 20), np.float32),
                    None, {"train": [0, 1], "val": [2]}, {"max_epochs": 1}, backend)


def test_a_sandbox_that_cannot_start_is_retried_once_then_infrastructure():
    ex = LocalExecutor(_workload("no-such-backend"), 1)
    try:
        h = ex.submit(Job("0001", "x = 1\n", 8))
        assert ex.wait([h], 30) == [h]
        done = ex.result(h)
    finally:
        ex.close()
    assert done.tries == executor.TRIES == 2
    assert done.outcome.error["kind"] == "infrastructure"
    assert "SandboxError" in done.retried and "no-such-backend" in done.outcome.error["message"]
    assert "failed 2 times" in done.outcome.error["message"]


def _workers() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "sandbox.worker" in line]


def test_cancel_kills_a_candidate_that_never_ends(backend):
    src = ("import time\nimport torch\nfrom torch import nn\n"
           "class Model(nn.Module):\n"
           "    def __init__(self, n_in, n_out, latent_dim):\n"
           "        super().__init__()\n        self.lin = nn.Linear(n_in, n_out)\n"
           "    def forward(self, x):\n        while True:\n            time.sleep(1)\n")
    ex = LocalExecutor(_workload(backend), 1)
    h = ex.submit(Job("0001", src, 8))
    end = time.monotonic() + 60
    while not _workers() and time.monotonic() < end:  # until it runs in its sandbox
        time.sleep(0.1)
    assert _workers() and not h.ref.done()
    ex.cancel(h)
    start = time.monotonic()
    ex.close()  # returns once the slot's sandbox is gone
    assert time.monotonic() - start < 30
    assert h.ref.done() and _workers() == []
