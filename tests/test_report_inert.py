"""The report and the terminal are inert: whatever a candidate or the sandbox wrote is shown
as text, never as markup, and never kills them.

A real run folder is built (payloads already in the names, reasoning and properties the
architect proposes), then every field the report reads is overwritten with payloads:
HTML that would run script or add elements, mathtext that matplotlib cannot parse, rich
markup, control characters, and values of the wrong type where numbers and strings were
expected. The report must be written, parse without an error, hold no element or
attribute that came from a payload, and run none of them in Chromium.
"""

import html
import io
import json
import re
import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import html5lib
import matplotlib
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from agent import inert, live, report, report_plots, runs
from agent.browse_cli import iteration_table
from agent.config import RunConfig
from agent.live import PlainLines
from agent.llm import RECORDING
from agent.offline import OfflineArchitect
from agent.orchestrator import Orchestrator
from agent.prompt import Proposal
from agent.standing import standing
from descartes_core import dataset
from descartes_core.contract import template_sources
from descartes_core.dataset import SimulationSpec

T5 = template_sources()["T5"]

# each would, if it were markup, set the title or add an element that Chromium's DOM shows
IMG = "<img src=x onerror=\"document.title='PWNED-img'\">"
SCRIPT = "<script>document.title='PWNED-script'</script>"
SVG = "\"><svg onload=\"document.body.appendChild(document.createElement('pwned-svg'))\">"
QUOTE = "' onmouseover='document.title=`PWNED-quote`' data-x='"
CLOSE = ("</pre></td></tr></table></section></details></style></title></textarea>"
         "<b id=\"pwn-close\" class=\"pwn\">closed</b><iframe src=\"javascript:alert(1)\">")
COMMENT = "<!-- a comment that swallows the rest --!> <!--"
ENTITY = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#x3C;"
MATH = ("$\\frac{", "$x^$", "\\", "$\\undefined{x}$", "$$", "a_{b}^{", "$\\sqrt[", "}$")
RICH = "[link=file:///etc/passwd]x[/link] [/] [bold red]loud"
CONTROL = "\x1b[2J\x1b]0;pwned-title\x07\x00\x08\r\n\u202eevil\x85\ufffe"
N_PARAMS = "<img src=x onerror=alert(1) data-n-params>"  # what numel() once returned
HTML_PAYLOADS = (IMG, SCRIPT, SVG, QUOTE, CLOSE, COMMENT, ENTITY)
ALL = " ".join((*HTML_PAYLOADS, *MATH, RICH))
NAMES = [f"{IMG}{MATH[0]}", f"{MATH[1]}{SCRIPT}{RICH}", f"{SVG}{MATH[2]}{QUOTE}",
         f"{CLOSE}{MATH[3]}", f"{COMMENT}{MATH[4]}{MATH[5]}", f"{ENTITY}{MATH[6]}{MATH[7]}"]
MARKERS = ("pwn", "onerror", "onload", "onmouseover", "javascript:", "alert(")
QUIET = PlainLines(lambda line: None)


class Adversary:
    """An architect whose names, reasoning and properties are payloads; the second one is
    refused by the policy (an import), so a failed attempt carries them too."""

    name = "adversary"

    def __init__(self):
        self.offline = OfflineArchitect(5)

    def drain_calls(self):
        return []

    def propose(self, brief):
        props = {"family": {"nested": IMG}, f"key{QUOTE}": [SCRIPT, 3, None],
                 "solver": MATH[0]}
        if brief.iteration == 0:
            return Proposal(NAMES[1], f"reasoning {ALL}", props,
                            self.offline.propose(brief).source)
        return Proposal(NAMES[2], f"{CLOSE}{CONTROL}", props, "import os\n" + T5)


def _scores(real: dict | None, k: int) -> dict:
    """The scores the trusted side recorded, or (when training did not get that far here)
    ones of the same shape: the report's figures need something to draw."""
    if real:
        return real
    corr = [round(((i * 37 + k * 11) % 100) / 100 - 0.3, 3) for i in range(160)]
    return {"recovered": sum(c >= 0.5 for c in corr), "above_null": 3 + k,
            "beyond_inputs": 2 + k, "spike_corr": 0.1 * k, "cca": 0.2, "latent_dim": 64,
            "correlations": corr, "recovered_vector": [c >= 0.5 for c in corr],
            "gain_over_inputs": [0.1] * 160, "threshold": 0.5, "input_recovered": 12,
            "null_recovered": 1, "by_category": {"tc_gating": 5, "nrt_state": 4 + k,
                                                 "synaptic": 3},
            "by_timescale": {"fast": 4, "slow": 8}, "near_misses": [], "extra": {}}


def _plant(r: runs.Run) -> None:
    """Overwrite every field the report reads with payloads and values of the wrong type."""
    rows = r.ledger.iterations(r.id)
    real = next((x["scores"] for x in rows if x.get("scores")), None)
    db = sqlite3.connect(r.dir / "ledger.sqlite")
    for k, row in enumerate(rows):
        scored = k < 2  # the template and the expansion; then a failure and a refusal
        attempts = [{"name": NAMES[(k + 1) % 6], "kind": None, "message": ""}]
        if k:  # a repair history whose fields have any type
            attempts[:0] = [{"name": [IMG], "kind": {"k": SCRIPT}, "message": {"m": CLOSE}},
                            {"name": None, "kind": f"policy{RICH}",
                             "message": f"{ALL}{CONTROL}"}, "not a dict", 7]
        db.execute(
            "UPDATE iterations SET name=?, reasoning=?, architect=?, status=?, properties=?, "
            "failure_kind=?, failure_message=?, attempts=?, scores=?, recovered=?, "
            "above_null=?, beyond_inputs=?, spike_corr=?, commit_sha=? "
            "WHERE run_id=? AND number=?",
            (NAMES[k % 6], f"{ALL}{CONTROL}", "template" if k == 0 else f"llm{SVG}",
             "scored" if scored else f"failed{QUOTE}",
             json.dumps({"family": [IMG], f"{IMG}key": {"v": SCRIPT}, "n": 3, "m": MATH[1]}),
             f"nan{SCRIPT}" if k == 1 else None if scored else f"policy{IMG}",
             f"log tail: {ALL}\n{CONTROL}\n" * 3,
             json.dumps(attempts),
             json.dumps(_scores(real, k)) if scored else None,
             _scores(real, k)["recovered"] if scored else None,
             _scores(real, k)["above_null"] if scored else None,
             _scores(real, k)["beyond_inputs"] if scored else None,
             _scores(real, k)["spike_corr"] if scored else None,
             f"{IMG}deadbeef", r.id, row["number"]))
    db.execute("UPDATE architect_calls SET architect=?, error=?", (f"llm{IMG}", SCRIPT))
    for number, seed, test in db.execute("SELECT number, seed, test FROM finals").fetchall():
        test = json.loads(test)  # its figures stay numbers (they are averaged); the rest not
        test.update(intervals={"beyond_controls": [IMG, 3], "recovered": SCRIPT,
                               "spike_corr": [0.1, float("nan")]},
                    null_recovered=SCRIPT, random_recovered=[IMG], input_recovered=True)
        db.execute("UPDATE finals SET test=? WHERE number=? AND seed=?",
                   (json.dumps(test), number, seed))
        db.execute("INSERT INTO finals (run_id, number, seed, status, failure_kind, test, "
                   "created) VALUES (?, ?, ?, 'failed', ?, NULL, 0)",
                   (r.id, number, seed + 1, f"oom{IMG}"))
    db.execute("UPDATE runs SET config=?", (json.dumps(
        {**r.row()["config"], "architect": f"llm{IMG}", "seed": SCRIPT, "target": IMG}),))
    db.commit()
    db.close()
    history = [{"epoch": 1, "train": 1.0, "val": 1.2}, {"epoch": 2, "train": "0.9", "val": None},
               {"epoch": "3", "train": 0.8}, {"epoch": True, "train": 0.7}, IMG, [1, 2],
               {"epoch": 4, "train": {"x": 1}, "val": float("inf")}, {"epoch": 5, "val": 0.9}]
    for k, row in enumerate(rows):
        check = {"ok": k < 2, "isolation": f"bwrap{SVG}", "error": None if k < 2 else
                 {"kind": IMG, "message": CLOSE},
                 "check": {"n_params": N_PARAMS, "forward_ms": {"ms": IMG},
                           "latent_dim": [SCRIPT], "grad_fraction": "1.0",
                           "warnings": [IMG, 3, {"w": SCRIPT}, None, ["x", CLOSE], "\ud800"]}}
        record = {"n_params": N_PARAMS if k else 1200.5, "wall_s": "90" if k == 1 else 33.0,
                  "device": f"cuda{IMG}", "strategy": {"s": SCRIPT}, "epochs": [IMG],
                  "stopped_by": f"{CLOSE}{CONTROL}", "history": history}
        results = {"status": "scored", "scores": _scores(real, k), "record": record,
                   "isolation": SVG}
        proposal = {"name": NAMES[k % 6], "prompt_hash": "cd" * 32 if k % 2 else ["not", "str"],
                    "properties": {IMG: SCRIPT}}
        source = (f"# {ALL}\n# {CONTROL}\nNAME = {json.dumps(CLOSE)}\n"
                  f"'''{SCRIPT}\n{IMG}'''\n" + T5)
        r.repo.commit(row["branch"], {
            "check.json": json.dumps(check), "results.json": json.dumps(results),
            "proposal.json": json.dumps(proposal), "model.py": source}, f"plant {IMG}")
    with (r.dir / RECORDING).open("a") as f:
        for user in (f"the prompt quotes {ALL}{CONTROL}", {"user": IMG}, [SCRIPT]):
            f.write(json.dumps({"prompt_hash": "cd" * 32, "user": user}) + "\n")
        f.write(json.dumps({"prompt_hash": {"h": IMG}, "user": IMG}) + "\n")
        f.write("{not json " + IMG + "\n")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path, _ = dataset.cached_or_simulated(SimulationSpec(n_trials=12, duration_ms=120,
                                                         burn_in_ms=100.0))
    root = tmp_path_factory.mktemp("runs")
    cfg = RunConfig(finalists=1, final_seeds=1, run_dir=str(root), data_dir=str(path),
                    templates=("T5",), max_expansions=3, patience=5, max_repairs=0,
                    sandbox="process",
                    train={"max_epochs": 2, "verify": False})
    Orchestrator(cfg, dataset.load(path), architect=Adversary(), monitor=QUIET).run()
    r = runs.open_run(root)
    clean = report.write(r, root / "clean.html").read_text()  # payloads from the architect
    _plant(r)
    r = runs.open_run(root)
    return r, clean, report.write(r).read_text()


def _elements(text: str):
    return list(html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text).iter())


def _assert_inert(text: str) -> None:
    elements = _elements(text)  # strict: any parse error (a NUL, a lone '<') raises
    tags = {e.tag.split("}")[-1] for e in elements if isinstance(e.tag, str)}
    assert not tags & {"img", "script", "iframe", "textarea", "pwned-svg", "object", "embed",
                       "form", "input", "link", "base"}, tags
    for e in elements:
        for name, value in e.attrib.items():
            name = name.split("}")[-1]
            assert not name.lower().startswith("on"), (e.tag, name)
            assert not any(m in value.lower() for m in MARKERS), (e.tag, name, value)
            assert name not in ("data-x", "src", "data-n-params")
            if name in ("id", "class"):
                assert re.fullmatch(r"[A-Za-z0-9_. -]+", value), (name, value)
    assert not any(e.attrib.get("id") == "pwn-close" for e in elements)
    assert text.count("<style>") == 1 and "<script" not in text  # the report writes none
    assert [e.text for e in elements if e.tag == "title"] == [
        next(e.text for e in elements if e.tag == "h1")]
    assert "data-n-params" not in text  # n_params was not a number: "–", not its text
    assert "section-error" not in text  # every part was drawn, none only guarded


def test_the_payloads_flow_through_a_real_run_and_stay_text(planted):
    _, clean, _ = planted
    _assert_inert(clean)
    body = "".join(html5lib.parse(clean, namespaceHTMLElements=False).find("body").itertext())
    assert NAMES[1][:80] in body and NAMES[2][:80] in body  # shown literally (names are cut
    # to 80 characters by the orchestrator), not dropped
    assert f"reasoning {ALL}" in body


def test_every_planted_field_is_escaped_validated_or_a_dash(planted):
    r, _, text = planted
    _assert_inert(text)
    body = "".join(html5lib.parse(text, namespaceHTMLElements=False).find("body").itertext())
    assert [x["status"] for x in r.ledger.iterations(r.id)][:2] == ["scored", "scored"]
    for payload in (*NAMES[:5], f"log tail: {ALL}", RICH, ENTITY, f"llm{IMG}", f"cuda{IMG}"):
        assert payload in body, payload  # the text itself, as written
    assert "&lt;script&gt;alert(1)" in body  # an entity in a name is not decoded
    assert "– parameters, forward – ms" in body  # n_params a str, forward_ms a dict
    assert "warnings: " + IMG + "; 3; " in body  # warnings that are not strs: as text
    assert "Training: – epochs" in body and "\x1b" not in text and "\x00" not in text
    finals = next(" ".join("".join(s.itertext()).split()) for s in html5lib.parse(
        text, namespaceHTMLElements=False).iter("section") if s.get("id") == "finals")
    assert "1 of 2 trainings, failed: " + f"oom{IMG}"[:40] in finals  # a failure kind: text
    assert "null –, random network –, inputs –" in finals and " ± 0.0 [" not in finals
    assert text.count("<svg") >= 6  # every figure drawn, mathtext names and all


def test_chromium_runs_no_payload(planted):
    from test_report import _chromium

    r, _, _ = planted
    chromium = _chromium()
    path = r.dir / "report.html"
    dom = subprocess.run([*chromium, "--virtual-time-budget=3000", "--dump-dom",
                          path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert 'id="summary"' in dom and 'id="iterations"' in dom
    elements = _elements(dom.replace("<html", "<!DOCTYPE html><html", 1)
                            if not dom.lstrip().lower().startswith("<!doctype") else dom)
    titles = [e.text for e in elements if e.tag == "title"]
    assert titles == [f"descartes-agent run {r.id}"], titles  # no payload set the title
    assert not any(e.tag in ("img", "script", "iframe", "pwned-svg") for e in elements)
    assert not any(e.attrib.get("id") == "pwn-close" for e in elements)
    assert "PWNED" not in "".join(titles)


@pytest.mark.parametrize("name", [*MATH, *NAMES, "$" * 7, "\\\\$\\", "_hidden", CONTROL])
def test_no_name_breaks_a_figure(name):
    before = dict(matplotlib.rcParams)
    rows = [{"number": 1, "name": name, "architect": "llm", "recovered": 3, "above_null": 1,
             "beyond_inputs": 1, "spike_corr": 0.1, "train_hours": 0.1, "status": "scored",
             "scores": {**_scores(None, 1), "intervals": {"recovered": [IMG, 4]}}},
            {"number": 2, "name": IMG, "architect": "llm", "status": "scored",
             "scores": {**_scores(None, 2), "intervals": {"recovered": [1.0, 9.0]}}}]
    variables = [{"name": f"v{i}", "category": ("tc_gating", "nrt_state", "synaptic")[i % 3],
                  "tau_ms": [1.0, 10.0]} for i in range(160)]
    figures = [report_plots.progress(rows, 120, 12, "recovered"),
               report_plots.progress(rows, IMG, SCRIPT, name),
               report_plots.heatmap(rows, variables, 0.5),
               report_plots.categories([(name, {"tc_gating": 3}), (IMG, [1])], {"tc_gating": 4}),
               report_plots.pareto([{"name": name, "count": 3, "n_params": 10,
                                     "minutes": 1.0},
                                    {"name": IMG, "count": "3", "n_params": N_PARAMS,
                                     "minutes": {"m": 1}}], name),
               report_plots.training_curve([{"epoch": 1, "train": 1.0, "val": name}])]
    for svg in figures:
        ET.fromstring(svg)  # well-formed XML
        assert "<text" not in svg  # glyphs as paths: no text element to carry a payload
        for payload in HTML_PAYLOADS:
            assert payload not in svg
    assert dict(matplotlib.rcParams) == before  # the report's settings do not leak


class Sneaky(str):
    """A str whose own methods would undo an escape and format as markup."""

    def replace(self, *args):
        return self

    def __str__(self):
        return self

    def __format__(self, spec):
        return IMG


class SneakyInt(int):
    def __format__(self, spec):
        return IMG

    def __str__(self):
        return IMG


def test_numbers_are_only_real_finite_numbers():
    import numpy as np

    assert inert.number(3) == 3 and inert.number(2.5) == 2.5
    assert inert.number(np.float32(0.5)) == 0.5 and type(inert.number(np.int64(4))) is int
    for bad in (True, False, "3", Sneaky("3"), SneakyInt(3), float("nan"), float("inf"), None,
                {"n": 1}, [1], b"1", np.bool_(True)):
        assert inert.number(bad) is None, bad
        assert inert.fmt(bad) == "–"
    assert inert.fmt(2.0, 2) == "2.00" and inert.fmt(7) == "7"


def test_text_never_calls_a_subclass_and_never_assumes_a_type():
    s = inert.text(Sneaky(IMG))
    assert type(s) is str and s == IMG
    assert html.escape(s, quote=True) == html.escape(IMG, quote=True) != IMG
    assert report.h(Sneaky(IMG)) == html.escape(IMG, quote=True)
    assert inert.text({"a": [1, None]}) == '{"a": [1, null]}'
    assert inert.text({(1, 2): 3}) == "<dict>" and inert.text(object()) == "<object>"
    assert inert.text(b"<b>") == "<bytes>" and inert.text({1: b""}) == '{"1": "<bytes>"}'
    assert inert.text(SneakyInt(3)) == "–" and inert.text(True) == "True"
    assert inert.text("a\x1b[2Jb\x00\ud800\u202e", oneline=True) == "a\ufffd[2Jb\ufffd\ufffd\ufffd"
    assert inert.text("one\r\ntwo\rthree") == "one\ntwo\nthree"
    assert inert.slug(IMG) == "img-src-x-onerror-document-title-pwned-img"
    assert inert.slug("$$") == "x" and inert.slug(None) == "x"


@given(st.one_of(st.text(), st.binary(), st.integers(), st.floats(), st.booleans(), st.none(),
                 st.lists(st.text(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)))
def test_escaped_text_is_one_text_node_in_an_element_and_in_an_attribute(value):
    shown = inert.text(value)
    doc = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(
        f'<!DOCTYPE html><html><head><title>t</title></head><body><p title="{report.h(value)}">'
        f"{report.h(value)}</p></body></html>")
    p = doc.find("body/p")
    assert len(p) == 0  # no element made from the value
    assert p.get("title") == shown and (p.text or "") == shown
    assert set(p.attrib) == {"title"}


def test_a_family_that_is_not_a_name_does_not_break_the_standing():
    its = [{"architect": "llm", "name": "a", "properties": {"family": {"x": 1}}, "scores": None},
           {"architect": "llm", "name": "b", "properties": [IMG], "scores": None},
           {"architect": "llm", "name": "c", "properties": {"family": "f"}, "scores": None},
           {"architect": "llm", "name": "d", "properties": {"family": "f"}, "scores": None}]
    assert standing(its, "recovered").exhausted == ("f",)


EVIL = {"number": 3, "name": f"{RICH}{CONTROL}", "status": "scored", "recovered": "61",
        "above_null": {"n": 1}, "beyond_inputs": None, "spike_corr": Sneaky("0.3"),
        "scores": {"recovered": "61", "beyond_controls": {"n": 1}, "on": RICH,
                   "spike_corr": Sneaky("0.3"), "null_seeds": SneakyInt(3),
                   "intervals": {"recovered": ["1", IMG], "beyond_controls": [True, 2],
                                 "spike_corr": RICH}},
        "training": {"stopped_by": "time_budget", "epochs": Sneaky("9"), "note": RICH},
        "architect": RICH, "branch": f"iter/0003{RICH}", "commit_sha": RICH,
        "failure_kind": "[/]"}


def test_the_live_view_prints_markup_literally():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system="truecolor")
    view = live.monitor(console, say=None)
    assert isinstance(view, live.LiveView)
    with view:
        view.event("start", run_id="r1", dir=f"d/{RICH}", architect="llm", backend="process",
                   objective="recovered", target=120, max_expansions=3)
        view.event("iteration", number=3)
        view.event("activity", what="training", name=RICH, backend="process")
        view.event("epoch", epoch=1, total=2, train_loss="0.5", val_loss=None)
        view.event("repair", attempt=1, feedback=f"{RICH}{CONTROL}")
        view.event("repair", attempt=2, feedback="")
        view.event("architect_failure", architect="llm", failures=1, message=RICH,
                   fell_back=False)
        view.event("recorded", iteration=EVIL, new_best=True, best=EVIL, hours=0.1,
                   expansions=1, cost=0.0)
    text = buf.getvalue()
    assert "[link=file:///etc/passwd]x[/link] [/] [bold red]loud" in text
    assert "\x1b]8;" not in text  # no hyperlink was made from the name
    assert "\x1b]0;pwned" not in text and "\x1b[2J" not in text and "\x00" not in text
    assert "recovered –/160, beyond controls – on selection trials" in text  # the best
    assert "spike r –" in text and "training failed ([/]): never best" in text
    view = live.monitor(Console(file=buf, force_terminal=True, width=200), say=None)
    with view:  # the same row, eligible: its line, training and all
        view.event("recorded", iteration={**EVIL, "failure_kind": None}, new_best=False,
                   best=None, hours=0.1, expansions=1, cost=0.0)
        view.event("phase", phase="finals")
        view.event("final", number=SneakyInt(3), name=RICH, seed="0", rank=None, finalists=2,
                   training=1, trainings=[1])
    text = buf.getvalue()
    assert "null – (best of – seeds)" not in text and "null –, random network –" in text
    assert f"budget reached after – epochs; trained –: {RICH}" in text
    assert f"final –/2: #– {RICH}, training 1/– (seed –)" in text
    assert "\x1b]8;" not in text


def test_plain_lines_and_the_iteration_table_print_markup_literally():
    lines = []
    view = live.monitor(Console(file=io.StringIO(), force_terminal=False), lines.append)
    view.event("activity", what="training", name=f"{RICH}\n{CONTROL}", backend="process")
    view.event("repair", attempt=1, feedback="")
    view.event("architect_failure", architect="llm", failures=2, message=RICH, fell_back=True)
    view.event("recorded", iteration=EVIL, new_best=False)
    view.event("final", number=3, name=f"{RICH}\n{CONTROL}", seed=0, rank=1, finalists=1,
               training=1, trainings=1)
    assert all("\n" not in line and "\x1b" not in line for line in lines)
    assert RICH in lines[-1]
    assert RICH in lines[0] and lines[1] == "  repair 1: "
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=400, color_system="truecolor").print(
        iteration_table([EVIL, {**EVIL, "name": IMG, "scores": None, "recovered": None}],
                        "history"))
    text = buf.getvalue()
    assert "[/]" in text and "[link=file:///etc/passwd]x[/link]" in text
    assert "\x1b]8;" not in text and "\x1b]0;pwned" not in text
