"""The HTML report: valid, self-contained, every section present, each iteration state
shown, and rendered by headless Chromium into a screenshot that is not blank."""

import json
import os
import re
import shutil
import subprocess

import html5lib
import matplotlib.image
import pytest

from agent import report, runs
from agent.config import RunConfig
from agent.live import PlainLines
from agent.offline import OfflineArchitect
from agent.orchestrator import Orchestrator
from agent.prompt import Proposal
from descartes_core import dataset
from descartes_core.contract import template_sources
from descartes_core.dataset import SimulationSpec

T5 = template_sources()["T5"]


QUIET = PlainLines(lambda line: None)


class Scripted:
    """A policy violation repaired; a duplicate refused; a candidate that stays rejected."""

    name = "scripted"

    def __init__(self):
        self.offline, self.calls = OfflineArchitect(3), []

    def drain_calls(self):
        calls, self.calls = self.calls, []
        return calls

    def propose(self, brief):
        self.calls.append({"architect": self.name, "prompt_hash": "ab" * 32, "model": "m",
                           "input_tokens": 900, "output_tokens": 300, "cost_usd": 0.0072,
                           "latency_s": 1.5})
        k, fb = brief.iteration, brief.feedback
        if k == 0:
            return (self.offline.propose(brief) if fb else
                    Proposal("needs-os", "reads a file", {}, "import os\n" + T5))
        if k == 1:
            return Proposal("copy", "a copy of T5", {}, T5)
        bad = "socket" if fb else "subprocess"
        return Proposal("hopeless", f"{bad} for speed", {}, f"import {bad}\n" + T5)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120,
                                                         burn_in_ms=100.0))
    root = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(root), data_dir=str(path),
                    templates=("T5",), max_expansions=3, patience=5, max_repairs=1,
                    sandbox="process",
                    train={"max_epochs": 2, "verify": False})
    orch = Orchestrator(cfg, dataset.load(path), architect=Scripted(), monitor=QUIET)
    RUN.update(summary=orch.run(), orch=orch)
    r = runs.open_run(root)
    return r, report.write(r)


RUN = {}  # the run_folder's summary and orchestrator, for `run`'s final summary


def test_the_run_has_each_state(run_folder):
    r, _ = run_folder
    rows = r.ledger.iterations(r.id)
    assert [x["status"] for x in rows] == ["scored", "scored", "refused", "failed"]
    assert rows[1]["repairs"] == 1


def test_the_report_is_valid_self_contained_html_with_every_section(run_folder):
    _, path = run_folder
    text = path.read_text()
    html5lib.HTMLParser(strict=True).parse(text)  # raises on any parse error
    for sid, _ in report.SECTIONS:
        assert f'id="{sid}"' in text
    for fetch in ('src="http', 'href="http', "url(http", "<link", "<script", "@import"):
        assert fetch not in text  # nothing is fetched: no CDN, no server
    assert text.count("<svg") >= 6  # progress, heatmap, categories, pareto, curves
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # figures' clip paths and glyphs must not collide
    assert all(ref in ids for ref in re.findall(r'(?:url\(#|href="#)([^")]+)', text))
    for words in ("status-refused", "status-failed", "status-scored", "Check and repairs",
                  "import of &#x27;os&#x27; is not allowed", "tried before", "Hypothesis",
                  "Diff against the best so far", "needs-os", "scripted",
                  "0.0432"):  # 6 calls of $0.0072

        assert words in text, words


def test_the_report_says_which_trials_each_figure_is_on(run_folder):
    r, path = run_folder
    text = path.read_text()
    doc = html5lib.parse(text, namespaceHTMLElements=False)
    section = {s.get("id"): " ".join("".join(s.itertext()).split())
               for s in doc.iter("section") if s.get("id")}
    assert "Every score is on held-out test trials" not in text  # no longer true
    summary, finals = section["summary"], section["finals"]
    for words in ("best by beyond controls", "on selection trials", "controls recover",
                  "(best of 3 seeds), random network", "self-readout",
                  "The test trials were scored only for the finalists"):
        assert words in summary, words
    assert re.search(r"recovered \d+/160 \[\d+(\.\d)?–\d+(\.\d)?\]", summary)
    [final] = r.ledger.finals(r.id)  # one finalist, one training: its own, read from the seal
    best = next(it for it in r.ledger.iterations(r.id) if it["number"] == final["number"])
    assert best["status"] == "scored" and not best["failure_kind"]
    for words in ("locked test trials", "mean ± sd", "1 of 1 trainings",
                  f"#{best['number']} {best['name']}",
                  f"{final['test']['beyond_controls']:.1f} ± 0.0",
                  f"null {final['test']['null_recovered']}, random network"):
        assert words in finals, words
    [mine] = [" ".join("".join(s.itertext()).split()) for s in doc.iter("section")
              if (s.find("h3") is not None and s.find("h3").get("id") == f"it-{best['number']}")]
    assert "final, held out (test trials), mean ± sd over 1 of 1 trainings" in mine


def test_show_log_runs_and_the_final_summary_say_the_verdict(run_folder, capsys):
    from typer.testing import CliRunner

    from agent.cli import app
    from agent.search_cli import _final_summary

    r, _ = run_folder
    [final] = r.ledger.finals(r.id)
    cli = CliRunner()
    shown = cli.invoke(app, ["show", str(final["number"]), "--run-dir", str(r.dir.parent)],
                       env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    for words in ("scores: beyond controls", "on selection trials; controls recover null",
                  "final, held out (test trials), mean ± sd over 1 of 1 trainings",
                  "the same trainings on the selection trials", "seed 0: beyond controls"):
        assert words in shown.output, words
    logged = cli.invoke(app, ["log", "--run-dir", str(r.dir.parent)], env={"COLUMNS": "200"})
    assert logged.exit_code == 0 and "beyond controls" in logged.output
    listed = cli.invoke(app, ["runs", "--run-dir", str(r.dir.parent), "--json"])
    [row] = json.loads(listed.output)
    best = next(it for it in r.ledger.iterations(r.id) if it["number"] == final["number"])
    assert row["best"] == best["name"] and row["beyond_controls"] == best["beyond_controls"]
    assert row["objective"] == "beyond_controls" and row["finalists"] == 1
    assert row["intervals"]["beyond_controls"] == best["scores"]["intervals"]["beyond_controls"]
    _final_summary(RUN["summary"], RUN["orch"])
    said = capsys.readouterr().out
    assert "by beyond controls: beyond controls" in said and "on selection trials" in said
    assert "final, held out (test trials)" in said and "1 of 1 trainings" in said


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and not os.environ.get("CI"):
        pytest.skip("chromium is not installed (`make test` installs it as root)")
    assert found, "CI must have chromium: `make test` installs Debian's package"
    return [found, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--hide-scrollbars"]


def test_chromium_renders_it_with_every_section_in_the_dom(run_folder, tmp_path):
    _, path = run_folder
    chromium = _chromium()
    dom = subprocess.run([*chromium, "--dump-dom", path.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    for sid, name in report.SECTIONS:
        assert f'id="{sid}"' in dom and name in dom
    assert dom.count('class="status-refused"') == 1 and dom.count('class="status-failed"') == 1
    shot = tmp_path / "shot.png"
    subprocess.run([*chromium, "--window-size=1280,2400", f"--screenshot={shot}",
                    path.as_uri()], capture_output=True, timeout=120, check=True)
    img = matplotlib.image.imread(shot)[..., :3]
    assert img.shape[:2] == (2400, 1280)
    assert img.std() > 0.1  # not blank
    assert (img.mean(axis=2) < 0.5).mean() > 0.02  # text, plots and the header are drawn


def test_sizes_are_the_hosts_count_and_the_check_is_shown_as_claims(run_folder):
    from sandbox import weights
    from sandbox.runner import MAX_PARAMS

    r, path = run_folder
    scored = [it for it in r.ledger.iterations(r.id) if it["status"] == "scored"]
    for it in scored:
        t = it["training"]
        assert t["n_params_counted"] == t["n_params_claimed"] > 0  # an honest worker
        kept = r.dir / "weights" / f"{it['number']:04d}.safetensors"  # kept with the run
        assert weights.count(kept.read_bytes(), MAX_PARAMS)[0] == t["n_params_counted"]
    text = path.read_text()
    assert len(re.findall(r"Parameters: [\d,]+ counted on the host", text)) == len(scored)
    assert "the worker&#x27;s claims, unverified: " in text
    assert "Parameters as counted on the host" in text  # the Pareto view's


def test_a_planted_implausible_score_is_flagged_in_log_show_and_the_report(run_folder,
                                                                          tmp_path):
    from typer.testing import CliRunner

    from agent.cli import app

    r, _ = run_folder
    root = tmp_path / "runs"
    shutil.copytree(r.dir.parent, root)
    run = runs.open_run(root)
    row = next(x for x in run.ledger.iterations(run.id) if x["status"] == "scored")
    planted = {**row, "scores": {**row["scores"], "correlations": [0.995] * 120 + [0.3] * 40}}
    run.ledger.db.execute("DELETE FROM iterations WHERE run_id=? AND number=?",
                          (run.id, row["number"]))
    run.ledger.record_iteration(run.id, planted)  # as a run would record it
    flags = {x["number"]: x["implausible"] for x in run.ledger.iterations(run.id)}
    assert flags.pop(row["number"]).startswith("r ≥ 0.99 on 120 of 160")
    assert not any(flags.values())
    cli = CliRunner()
    logged = cli.invoke(app, ["log", "--run-dir", str(root)], env={"COLUMNS": "250"})
    assert logged.exit_code == 0 and logged.output.count("IMPLAUSIBLE") == 1, logged.output
    shown = cli.invoke(app, ["show", str(row["number"]), "--run-dir", str(root)],
                       env={"COLUMNS": "250"})
    assert "IMPLAUSIBLE: r ≥ 0.99 on 120 of 160 variables" in shown.output, shown.output
    text = report.write(runs.open_run(root)).read_text()
    doc = html5lib.parse(text, namespaceHTMLElements=False)
    section = {s.get("id"): " ".join("".join(s.itertext()).split())
               for s in doc.iter("section") if s.get("id")}
    assert "Implausible scores (r ≥ 0.99 on most variables" in section["summary"]
    assert f"#{row['number']} {row['name']}" in section["summary"]
    assert section["iterations"].count("Implausible: r ≥ 0.99 on 120 of 160") == 1
