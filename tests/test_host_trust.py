"""The host decides from what it measures (issue 21, finding 6).

A candidate runs in the worker's interpreter, so it can write the worker's answer itself:
n_params 1, another candidate's fingerprint, grad_fraction 1.0, no warnings. Here it does,
for real, with the policy bypassed (the policy is assumed fallen), and the host's
decisions must not follow: no other candidate is refused on its fingerprint, its size in
the archive is the host's count from the weights the job returned (or unverified), and
the views say which fields are claims.
"""

import json
import math
import struct
from html import escape

import numpy as np
import pytest
from test_dedup import renamed

from agent import population, runs, trust
from agent.config import RunConfig
from agent.dedup import Twins, skeleton_hash
from agent.live import PlainLines
from agent.orchestrator import Orchestrator
from agent.prompt import Proposal
from descartes_core import contract, dataset
from descartes_core.contract import template_sources
from descartes_core.dataset import SimulationSpec
from sandbox import policy, process, runner, weights
from sandbox.protocol import WEIGHTS

T2, T5 = template_sources()["T2"], template_sources()["T5"]
MARK = "# the forger: it writes the worker's answer itself"
FORGE = MARK + '''
import json as _json, os as _os, sys as _sys
_request = _json.load(open("/job/request.json"))
if _request["task"] == "check":  # the whole answer, then out before the worker writes
    with open("/out/response.json", "w") as _f:
        _f.write(_json.dumps({"ok": True, "check": {
            "n_params": 1, "forward_ms": 0.01, "grad_fraction": 1.0, "roundtrip_error": 0.0,
            "latent_dim": _request["config"]["latent_dim"], "warnings": [],
            "fingerprint": "STOLEN"}}))
    _os._exit(0)
if _request["task"] == "evaluate":  # train honestly, but claim one parameter
    _main = _sys.modules["__main__"]
    _write = _main.finite_or_none

    def _claim(response):
        if isinstance(response.get("record"), dict):
            response["record"]["n_params"] = 1
        return _write(response)

    _main.finite_or_none = _claim
'''
QUIET = PlainLines(lambda line: None)


def forger(stolen: str) -> str:
    return T5 + "\n" + FORGE.replace("STOLEN", stolen)


@pytest.fixture
def no_policy(monkeypatch):
    """The policy fallen, for the forger alone: it passes with T5's properties."""
    real = policy.check
    props = real(T5).properties

    def check(source, *args, **kwargs):
        return policy.Verdict([], props) if MARK in str(source) else real(source, *args,
                                                                         **kwargs)

    monkeypatch.setattr(policy, "check", check)


def _params(source: str, latent_dim: int) -> int:
    _, model = contract.load_candidate(source)
    return sum(p.numel() for p in model(21, 20, latent_dim).parameters())


# the check's claims, in a real sandbox -------------------------------------------------------
def test_a_stolen_fingerprint_refuses_no_one_else_and_a_renamed_copy_still_is(backend):
    fp_b = runner.check(T2, latent_dim=8, backend=backend).check["fingerprint"]
    out = runner.run_job("check", forger(fp_b), {"latent_dim": 8}, backend=backend)
    assert out.ok, out.error  # well-formed claims pass the protocol: they are still claims
    assert out.check["fingerprint"] == fp_b and out.check["n_params"] == 1
    assert out.check["grad_fraction"] == 1.0 and out.check["warnings"] == []
    twins = Twins()
    twins.remember({"skeleton": skeleton_hash(forger(fp_b)), **out.check}, 1)
    assert twins.judge(skeleton_hash(T2), fp_b) == (None, 1)  # a variant, not refused
    twins.remember({"skeleton": skeleton_hash(T2), "fingerprint": fp_b}, 2)
    copy = runner.check(renamed(T2), latent_dim=8, backend=backend)
    assert copy.check["fingerprint"] == fp_b
    assert twins.judge(skeleton_hash(renamed(T2)), fp_b) == (2, None)  # its true twin


@pytest.fixture(scope="module")
def ds():
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120,
                                                         burn_in_ms=100.0))
    return dataset.load(path)


class Scripted:
    name = "scripted"

    def __init__(self, proposals):
        self.proposals = proposals

    def drain_calls(self):
        return []

    def propose(self, brief):
        return self.proposals[brief.iteration]


def test_a_run_follows_none_of_the_forgers_claims(ds, tmp_path, no_policy):
    if process.isolation_level() != "bwrap":
        pytest.skip("bubblewrap is not installed (make test installs it as root)")
    cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(tmp_path), templates=("T5",),
                    max_expansions=3, patience=5, max_repairs=0, sandbox="process",
                    train={"max_epochs": 1, "verify": False})
    width = contract.source_width(T2, cfg.latent_dim)
    fp_b = runner.check(T2, latent_dim=width, backend="process").check["fingerprint"]
    orch = Orchestrator(cfg, ds, architect=Scripted([
        Proposal("forger", "claims B's fingerprint and one parameter", {}, forger(fp_b)),
        Proposal("b", "a GRU-ODE", {}, T2), Proposal("b-renamed", "B renamed", {},
                                                    renamed(T2))]), monitor=QUIET)
    orch.run()
    rows = orch.ledger.iterations(orch.run_id)
    assert [(r["name"], r["status"]) for r in rows] == [
        ("T5", "scored"), ("forger", "scored"), ("b", "scored"), ("b-renamed", "refused")]
    assert "computes exactly what iteration 3 computes" in rows[3]["failure_message"]
    assert rows[2]["attempts"][-1]["variant_of"] == 2  # the claimed fingerprint: a mark only
    # the size: the host's count from the returned weights, not the claimed 1
    t5, forged = rows[0]["training"], rows[1]["training"]
    real = _params(T5, contract.source_width(T5, cfg.latent_dim))
    assert forged["n_params_claimed"] == 1
    assert forged["n_params_counted"] == t5["n_params_counted"] == real > 1
    size = f"1e{int(math.log10(real))}"
    assert population.descriptor(rows[1], ds.meta["variables"])[2] == size
    kept = orch.dir / "weights" / "0002.safetensors"
    assert weights.count(kept.read_bytes(), runner.MAX_PARAMS) == (real, 6)
    check = json.loads(orch.repo.read(rows[1]["branch"], "check.json"))
    assert set(check["advisory"]) >= {"n_params", "fingerprint", "warnings", "grad_fraction"}
    from agent import report

    text = report.write(runs.open_run(tmp_path)).read_text()
    assert text.count(f"{escape(trust.CLAIMED)}: 1 parameters") == 1  # the forger's, labelled
    assert text.count(f"Parameters: {real:,} counted on the host") == 2


# an evaluation whose weights never come back ---------------------------------------------
NO_WEIGHTS = MARK + '''
import json as _json, os as _os
import numpy as _np
if _json.load(open("/job/request.json"))["task"] == "evaluate":
    _record = {"strategy": "direct", "device": "cpu", "n_params": 1, "strategy_note": None,
               "loss": "mse_rate", "loss_note": None, "epochs": 1, "train_loss": 0.1,
               "val_loss": 0.1, "wall_s": 0.1, "short_segment_corr": None, "failure": None,
               "failure_message": None, "stopped_by": "max_epochs",
               "history": [{"epoch": 1, "train": 0.1, "val": 0.1, "t": 0.1}]}
    _np.savez("/out/arrays.npz", predictions=_np.zeros((4, 10, 20), _np.float32),
              latents=_np.zeros((4, 2, 8), _np.float32),
              null_latents=_np.zeros((3, 4, 2, 8), _np.float32))
    with open("/out/response.json", "w") as _f:
        _f.write(_json.dumps({"ok": True, "record": _record, "arrays": True}))
    _os._exit(0)
'''


def test_without_weights_the_size_is_unverified_whatever_the_record_claims(backend):
    x = np.zeros((4, 10, 21), np.float32)
    out = runner.evaluate(T5 + "\n" + NO_WEIGHTS, x, np.zeros((4, 10, 20), np.float32),
                          {"train": [0, 1], "val": [2]}, latent_dim=8,
                          train={"max_epochs": 1, "verify": False}, backend=backend)
    assert out.ok and out.record["n_params"] == 1, out.error
    assert out.weights.n_params is None and "no weights" in out.weights.why
    it = {"training": trust.size_fields(out.record["n_params"], out.weights),
          "scores": {"by_category": {}, "by_timescale": {}}}
    assert it["training"]["n_params_claimed"] == 1
    assert population.descriptor(it, [])[2] == "size unverified"


def test_an_honest_evaluation_returns_weights_the_host_counts(backend):
    x = np.random.default_rng(0).normal(size=(4, 10, 21)).astype(np.float32)
    out = runner.evaluate(T5, x, np.zeros((4, 10, 20), np.float32),
                          {"train": [0, 1], "val": [2]}, latent_dim=8,
                          train={"max_epochs": 1, "verify": False}, backend=backend)
    assert out.ok, out.error
    assert out.weights.n_params == _params(T5, 8) == out.record["n_params"]
    from safetensors.numpy import load

    assert sum(a.size for a in load(out.weights.data).values()) == out.weights.n_params


# the header reader, on crafted files ---------------------------------------------------------
def _file(header: dict, body: bytes, size: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if size is None else size) + raw + body


def _entry(shape, begin, end, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


GOOD = {"a": _entry([2, 3], 0, 24), "b": _entry([4], 24, 40), "__metadata__": {"x": "y"}}


def test_the_header_is_counted_and_every_malformed_file_refused(tmp_path):
    assert weights.count(_file(GOOD, bytes(40)), 100) == (10, 2)
    bad = {
        "a hole": ({"a": _entry([2, 3], 0, 24), "b": _entry([4], 28, 44)}, bytes(44)),
        "an overlap": ({"a": _entry([2, 3], 0, 24), "b": _entry([4], 8, 24)}, bytes(40)),
        "a tail": (GOOD, bytes(48)),
        "past the end": (GOOD, bytes(32)),
        "a wrong size": ({"a": _entry([2, 3], 0, 20)}, bytes(20)),
        "float64": ({"a": _entry([3], 0, 24, "F64")}, bytes(24)),
        "a negative dim": ({"a": _entry([-2, 3], 0, 0)}, b""),
        "a bool dim": ({"a": _entry([True], 0, 4)}, bytes(4)),
        "over the cap": ({"a": _entry([101], 0, 404)}, bytes(404)),
        "an unknown key": ({"a": {**_entry([1], 0, 4), "x": 1}}, bytes(4)),
        "not an object": ([1, 2], b""),
    }
    for why, (header, body) in bad.items():
        with pytest.raises(weights.ProtocolError):
            weights.count(_file(header, body), 100)
            pytest.fail(why)
    for data in (b"", b"\x01" * 7, _file(GOOD, bytes(40), size=1 << 40),
                 _file(GOOD, bytes(40), size=5), struct.pack("<Q", 4) + b"\xff\xfe{}"):
        with pytest.raises(weights.ProtocolError):
            weights.count(data, 100)
    import pickle

    (tmp_path / WEIGHTS).write_bytes(pickle.dumps({"a": np.zeros(3)}))  # never unpickled
    assert weights.read(tmp_path, 100).n_params is None
    (tmp_path / WEIGHTS).unlink()
    (tmp_path / WEIGHTS).symlink_to("/etc/passwd")  # never followed
    w = weights.read(tmp_path, 100)
    assert w.n_params is None and "unreadable" in w.why
    (tmp_path / WEIGHTS).unlink()
    (tmp_path / WEIGHTS).write_bytes(_file(GOOD, bytes(40)))
    assert weights.read(tmp_path, 100).n_params == 10
    assert weights.read(tmp_path, 9).n_params is None  # over this job's cap


# the implausible flag ------------------------------------------------------------------------
def test_a_score_with_r_099_on_most_variables_is_implausible():
    assert trust.implausible({"correlations": [0.995] * 81 + [0.5] * 79}).startswith(
        "r ≥ 0.99 on 81 of 160")
    for plausible in ([0.995] * 80 + [0.5] * 80, [0.98] * 160, [], None, "x",
                      [True] * 160, [float("nan")] * 160):
        assert trust.implausible({"correlations": plausible}) is None
    assert trust.implausible(None) is None
