"""`descartes-agent simulate` and `data check`, run in-process through the real entry point;
every loader fault is one line on stderr naming the file, exit code 2, nothing written."""

import json
import re
import shutil
import sys

import numpy as np
import pytest

from agent import cli


def run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["descartes-agent", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small data directory written by the CLI itself."""
    out = tmp_path_factory.mktemp("data") / "d"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["descartes-agent", "simulate", "--out", str(out),
                             "--trials", "4", "--duration-ms", "200", "--seed", "7"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    mp.undo()
    assert (e.value.code or 0) == 0
    return out


def test_simulate_writes_every_file(written):
    files = {p.name for p in written.iterdir()}
    assert {"inputs.npy", "outputs.npy", "biovars.npy", "meta.json", "spikes.npy",
            "initial_state.npz"} <= files
    meta = json.loads((written / "meta.json").read_text())
    assert meta["n_trials"] == 4 and meta["seed"] == 7 and meta["dt_ms"] == 1.0
    assert len(meta["fingerprint"]) == 64


def test_data_check_summarises_a_good_directory(monkeypatch, capsys, written):
    code, out, err = run(monkeypatch, capsys, "data", "check", str(written))
    assert code == 0, err
    assert "4 trials × 200 ms" in out


def test_simulate_refuses_to_overwrite_without_force(monkeypatch, capsys, written, tmp_path):
    target = tmp_path / "d"
    shutil.copytree(written, target)
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    code, _, err = run(monkeypatch, capsys, "simulate", "--out", str(target), "--trials", "4",
                       "--duration-ms", "200")
    assert code == 2
    assert "already exists" in err and str(target) in err
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before


def _corrupt_array(name, fn):
    def apply(d):
        np.save(d / name, fn(np.load(d / name)))
    return apply


def _edit_meta(fn):
    def apply(d):
        meta = json.loads((d / "meta.json").read_text())
        fn(meta)
        (d / "meta.json").write_text(json.dumps(meta))
    return apply


FAULTS = {
    "missing file": (lambda d: (d / "outputs.npy").unlink(), "outputs.npy: missing"),
    "unreadable": (lambda d: (d / "biovars.npy").write_bytes(b"not numpy"),
                   "biovars.npy: unreadable"),
    "wrong rank": (_corrupt_array("inputs.npy", lambda a: a[0]), "inputs.npy: expected shape"),
    "wrong width": (_corrupt_array("biovars.npy", lambda a: a[..., :150]),
                    "biovars.npy: expected shape (trials, time, 160)"),
    "T mismatch": (_corrupt_array("outputs.npy", lambda a: a[:, :-1]),
                   "outputs.npy: 199 time steps but inputs.npy has 200"),
    "N mismatch": (_corrupt_array("biovars.npy", lambda a: a[:3]),
                   "biovars.npy: 3 trials but inputs.npy has 4"),
    "NaN": (_corrupt_array("outputs.npy", lambda a: np.where(np.arange(20) == 5, np.nan, a)),
            "outputs.npy: 800 NaN/inf values (first at trial 0, t=0, channel 5)"),
    "inf": (_corrupt_array("inputs.npy", lambda a: np.where(a > 1.0, np.inf, a)),
            "inputs.npy:"),
    "bad json": (lambda d: (d / "meta.json").write_text("{oops"), "meta.json: unreadable"),
    "meta missing key": (_edit_meta(lambda m: m.pop("dt_ms")), "meta.json: missing key 'dt_ms'"),
    "split names": (_edit_meta(lambda m: m["split"].update(extra=[0])),
                    "meta.json: 'split' needs train, val, selection, test"),
    "variables count": (_edit_meta(lambda m: m.update(variables=m["variables"][:159])),
                        "meta.json: 'variables' must list 160 records, got 159"),
    "n_trials": (_edit_meta(lambda m: m.update(n_trials=5)),
                 "meta.json: n_trials is 5 but the arrays have 4"),
    "split range": (_edit_meta(lambda m: m["split"]["test"].append(9)),
                    "meta.json: split 'test' has an index outside 0..3"),
    "split overlap": (_edit_meta(lambda m: m["split"]["val"].append(m["split"]["train"][0])),
                      "shares trials with another split"),
    "changed after writing": (_corrupt_array("biovars.npy", lambda a: a * 1.01),
                              "meta.json: fingerprint does not match"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_every_loader_fault_is_one_line_naming_the_file(monkeypatch, capsys, written, tmp_path,
                                                        fault):
    corrupt, expected = FAULTS[fault]
    d = tmp_path / "d"
    shutil.copytree(written, d)
    corrupt(d)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run(monkeypatch, capsys, "data", "check", str(d))
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_unknown_directory_is_a_clear_error(monkeypatch, capsys, tmp_path):
    code, _, err = run(monkeypatch, capsys, "data", "check", str(tmp_path / "nope"))
    assert code == 2 and "no such data directory" in err


def test_help_explains_simulate(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "simulate", "--help")
    assert code == 0
    assert "--trials" in out and "--duration-ms" in out and "cached" in out


def test_baselines_on_a_tiny_dataset(monkeypatch, capsys, tmp_path):
    data = tmp_path / "tiny"
    code, _, err = run(monkeypatch, capsys, "simulate", "--out", str(data), "--trials", "12",
                       "--duration-ms", "120", "--seed", "1")
    assert code == 0, err
    code, out, err = run(monkeypatch, capsys, "baselines", "--data-dir", str(data),
                         "--time-budget", "0.05", "--max-epochs", "2", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == ["volterra_laguerre", "lstm", "plain_node"]
    vl = rows["volterra_laguerre"]
    for on in ("selection", "test"):  # baselines are not searched: both are shown
        assert vl[on]["on"] == on and vl[on]["null_recovered"] is None  # no null to train
        assert vl[on]["random_recovered"] is not None and vl[on]["input_recovered"] is not None
    lstm = rows["lstm"]
    assert lstm["failure"] is None or lstm["failure"] == "verifier_failed"
    if lstm["failure"] is None:
        s = lstm["selection"]
        assert len(s["correlations"]) == 160 and s["null_seeds"] == 3
        assert 0 <= s["beyond_controls"] <= s["above_null"] <= s["recovered"]
    else:
        assert "selection" not in lstm  # a failed training is not scored
    assert rows["plain_node"]["detail"]["strategy"] == "adjoint"


@pytest.mark.parametrize("name, sandbox", [("T1", "process"), ("T5", "auto")])
def test_check_accepts_templates(monkeypatch, capsys, tmp_path, name, sandbox):
    from descartes_core.contract import template_sources

    path = tmp_path / f"{name}.py"
    path.write_text(template_sources()[name])
    code, out, err = run(monkeypatch, capsys, "check", str(path), "--json", "--sandbox", sandbox)
    assert code == 0, out + err
    result = json.loads(out)
    assert result["accepted"] and result["check"]["latent_dim"] == 64


def test_check_rejects_with_every_error_and_exit_1(monkeypatch, capsys, tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import os\nx = 1\n")
    code, out, _ = run(monkeypatch, capsys, "check", str(path))
    assert code == 1
    assert "import of 'os' is not allowed" in out and "no top-level PROPERTIES" in out


def test_check_usage_errors_exit_2(monkeypatch, capsys, tmp_path):
    code, _, err = run(monkeypatch, capsys, "check", str(tmp_path / "missing.py"))
    assert code == 2 and "no such file" in err


def test_run_smoke_end_to_end_with_the_offline_architect(monkeypatch, capsys, smoke_run):
    from agent.ledger import Ledger
    from agent.repository import ModelRepository

    code, out, err, tmp_path = smoke_run
    assert code == 0, err
    # Three expansions is both the quick preset's limit and the patience: either may say it.
    assert re.search(r"stopped: (expansions used|3 expansions without improvement) after 5 "
                     "iterations", out) and "best:" in out
    assert "report: " in out and "final, held out" in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    repo = ModelRepository(run_dir)
    its = repo.iterations()
    assert [n for n, _, _ in its] == [1, 2, 3, 4, 5]  # two templates, three expansions
    assert its[0][1] == "iter/0001-t1" and its[1][1] == "iter/0002-t5"
    assert "best" in [t.name for t in repo.repo.tags]
    rows = Ledger(run_dir / "ledger.sqlite").iterations(run_dir.name)
    for r, (_, _, head) in zip(rows, its, strict=True):  # a finalist's branch adds final.json
        c = repo.repo.commit(head)
        assert r["commit_sha"] == head or ("final, held out" in c.message
                                           and c.parents[0].hexsha == r["commit_sha"])
    assert sum(r["commit_sha"] != head for r, (_, _, head) in zip(rows, its, strict=True)) == 1
    scored = [r for r in rows if r["status"] == "scored"]
    assert scored and all(len(r["scores"]["correlations"]) == 160 for r in scored)
    assert all(r["above_null"] is not None and r["beyond_inputs"] is not None for r in scored)
    sources = {repo.read(str(n)) for n, _, _ in its}
    assert len(sources) == 5  # every candidate different
    assert "<p>Rows: scored iterations" in (run_dir / "report.html").read_text()
    code, out, _ = run(monkeypatch, capsys, "runs", "--run-dir", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "finished"

    # the iteration browser on the same run
    code, out, _ = run(monkeypatch, capsys, "log", "--run-dir", str(tmp_path), "--json")
    assert code == 0 and [r["commit_sha"] for r in json.loads(out)] == [r["commit_sha"]
                                                                       for r in rows]
    code, out, _ = run(monkeypatch, capsys, "show", "2", "--run-dir", str(tmp_path))
    assert code == 0 and "T5 by template" in out and "class Model" in out
    code, out, _ = run(monkeypatch, capsys, "diff", its[0][1], its[2][2][:10],
                       "--run-dir", str(tmp_path))
    assert code == 0 and "+++ b/model.py" in out
    code, _, err = run(monkeypatch, capsys, "show", "iter/0099-nothing", "--run-dir",
                       str(tmp_path))
    assert code == 2 and "names no iteration" in err and "Traceback" not in err
    code, _, err = run(monkeypatch, capsys, "log", "--run-dir", str(tmp_path / "none"))
    assert code == 2 and "no runs here" in err
    # replay retrains the best iteration from its commit hash: the same scores on CPU
    best = max((r for r in rows if r["status"] == "scored"), key=lambda r: r["recovered"])
    code, out, err = run(monkeypatch, capsys, "replay", best["commit_sha"][:12], "--run-dir",
                         str(tmp_path))
    assert code == 0, out + err
    assert "identical" in out and f"{best['recovered']}/160" in out
    assert "final, held out (test trials)" in out  # the run has finished


def test_run_openai_architect_through_the_cli_stops_at_the_cost_cap(monkeypatch, capsys,
                                                                     tmp_path):
    from llm_server import Server

    from agent.offline import OfflineArchitect
    from agent.prompt import Brief
    from descartes_core.dataset import SimulationSpec, cached_or_simulated

    data, _ = cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120, burn_in_ms=100.0))
    source = OfflineArchitect(5).propose(Brief(0)).source
    with Server([f"```python\n{source}```"]) as server:
        code, out, err = run(
            monkeypatch, capsys, "run", "--data-dir", str(data), "--architect", "openai",
            "--base-url", server.url + "/v1", "--model", "local-coder", "--price", "1000,1000",
            "--max-cost", "1", "--templates", "", "--time-budget", "0.002", "--sandbox",
            "process", "--run-dir", str(tmp_path))
    assert code == 0, out + err
    assert "stopped: cost budget used after 1 iterations" in out and "$2.00" in out
    code, out, _ = run(monkeypatch, capsys, "log", "--run-dir", str(tmp_path), "--json")
    [row] = json.loads(out)
    assert row["architect"] == "openai"  # checked and trained; on a 7-second budget the
    assert row["failure_kind"] in (None, "timeout", "verifier_failed")  # training may fail


def test_the_anthropic_architect_without_a_key_is_a_usage_error(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, _, err = run(monkeypatch, capsys, "run", "--use-llm", "--preset", "smoke",
                       "--run-dir", str(tmp_path))
    assert code == 2 and "needs --api-key or ANTHROPIC_API_KEY" in err
    code, _, err = run(monkeypatch, capsys, "run", "--architect", "gpt", "--run-dir",
                       str(tmp_path))
    assert code == 2 and "expected offline, anthropic, openai, replay" in err
