"""The live view: a rich panel on a terminal, plain lines anywhere else."""

import io

from rich.console import Console

from agent import live

SCORES = {"on": "selection", "recovered": 61, "beyond_controls": 12, "above_null": 7,
          "beyond_inputs": 4, "spike_corr": 0.31, "self_readout": 0.93, "null_seeds": 3,
          "null_recovered": 20, "random_recovered": 31, "input_recovered": 40,
          "intervals": {"recovered": [55.0, 66.0], "beyond_controls": [8.0, 15.5],
                        "spike_corr": [0.28, 0.34]}}
IT = {"number": 3, "name": "two-pop", "status": "scored", "recovered": 61, "above_null": 7,
      "beyond_inputs": 4, "beyond_controls": 12, "spike_corr": 0.31, "scores": SCORES,
      "training": {"strategy": "direct", "note": None, "epochs": 9, "stopped_by": "time_budget"}}
FAILED = {"number": 4, "name": "nan-net", "status": "failed", "failure_kind": "train_diverged",
          "scores": None}
OLD_ROW = {**IT, "number": 5, "failure_kind": "nan"}  # scored although training failed
FINAL = ("final", {"number": 3, "name": "two-pop", "seed": 1000, "rank": 1, "finalists": 2,
                   "training": 2, "trainings": 3})
EVENTS = [
    ("start", {"run_id": "r1", "dir": "d/r1", "architect": "offline", "backend": "docker",
               "objective": "beyond_controls", "target": 120, "max_expansions": 10}),
    ("phase", {"phase": "expansions"}),
    ("iteration", {"number": 3}),
    ("repair", {"attempt": 1, "feedback": "policy: line 1, col 0: import of 'os'"}),
    ("activity", {"what": "training", "name": "two-pop", "backend": "docker", "number": 3,
                  "where": "local slot 1 (cpu)"}),
    ("flight", {"candidates": [
        {"number": 3, "name": "two-pop", "where": "local slot 1 (cpu)", "since": 0.0,
         "epoch": {"epoch": 2, "total": 5, "train_loss": 0.4, "val_loss": 0.5}},
        {"number": 4, "name": "nan-net", "where": "ray node 1a2b3c4d (vm, pid 7)",
         "since": 0.0, "epoch": None}]}),
    ("epoch", {"epoch": 4, "total": 10, "train_loss": 0.5123, "val_loss": 0.6345}),
]


def test_the_panel_shows_phase_activity_training_bar_and_budget():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=140, color_system=None)
    view = live.monitor(console, say=None)
    assert isinstance(view, live.LiveView)
    with view:
        for kind, data in EVENTS:
            view.event(kind, **data)
        panel = buf.getvalue()
        view.event("recorded", iteration=IT, new_best=True, best=IT, hours=0.25,
                   expansions=1, cost=0.42)
    text = buf.getvalue()
    for words in ("offline architect · docker sandbox", "expansions · iteration 3",
                  "training two-pop", "epoch 4/10", "train 0.5123", "val 0.6345",
                  "repair 1: policy", "#3 two-pop on local slot 1 (cpu), epoch 2/5",
                  "#4 nan-net on ray node 1a2b3c4d (vm, pid 7)"):
        assert words in panel, words
    assert "━" in panel  # the progress bar
    for words in ("#  3 two-pop", "— new best", "0.25 h training · 1/10 expansions · $0.42",
                  "beyond controls 12 [8–15.5], recovered 61/160 [55–66] on selection trials",
                  "null 20 (best of 3 seeds), random network 31, inputs 40",
                  "spike r 0.310 [0.280–0.340], self-readout 0.93",
                  "budget reached after 9 epochs"):
        assert words in text, words


def test_the_panel_follows_the_finals():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    with live.monitor(console, say=None) as view:
        view.event(*EVENTS[0][:1], **EVENTS[0][1])
        view.event("recorded", iteration=IT, new_best=True, best=IT, hours=0.25,
                   expansions=1, cost=0.0)
        view.event("phase", phase="finals")
        view.event(FINAL[0], **FINAL[1])
        view.event("epoch", epoch=2, total=5, train_loss=0.4, val_loss=0.5)
        panel = buf.getvalue()
    for words in ("finals · finalist 1/2 (#3), training 2/3, held-out test trials",
                  "final 1/2: #3 two-pop, training 2/3 (seed 1000)", "epoch 2/5",
                  "#3 two-pop: beyond controls 12 [8–15.5]"):
        assert words in panel, words


def test_without_a_terminal_it_falls_back_to_plain_lines():
    lines = []
    console = Console(file=io.StringIO(), force_terminal=False)
    view = live.monitor(console, lines.append)
    assert isinstance(view, live.PlainLines)
    with view:
        for kind, data in EVENTS:
            view.event(kind, **data)
        view.event("recorded", iteration=IT, new_best=False, best=IT, hours=0.25,
                   expansions=1, cost=0.0)
        recorded = lines[-1]
        for it in (FAILED, OLD_ROW):
            view.event("recorded", iteration=it, new_best=False, best=IT, hours=0.25,
                       expansions=1, cost=0.0)
        view.event("phase", phase="finals")
        view.event(FINAL[0], **FINAL[1])
        view.event("epoch", epoch=2, total=5, train_loss=0.4, val_loss=0.5)
    assert lines[0].startswith("run r1 in d/r1 (architect: offline, sandbox: docker")
    assert "  repair 1: policy: line 1, col 0: import of 'os'" in lines
    assert "  training #3 two-pop (docker sandbox, local slot 1 (cpu))" in lines
    assert recorded.startswith("#  3 two-pop") and "new best" not in recorded
    assert "beyond controls 12 [8–15.5], recovered 61/160 [55–66]" in recorded
    failed, old, phase, final = lines[-4:]
    assert failed.startswith("#  4 nan-net") and failed.endswith("train_diverged")
    assert old.endswith("training failed (nan): never best")
    assert phase.startswith("— finals") and "test trials" in phase
    assert final.startswith("  final 1/2: #3 two-pop, training 2/3 (seed 1000)")
    assert not any("epoch " in line for line in lines)  # no line per epoch in a log file


def test_the_verdict_text_says_counts_intervals_controls_and_trials():
    assert live.verdict(SCORES) == (
        "beyond controls 12 [8–15.5], recovered 61/160 [55–66] on selection trials; controls "
        "recover null 20 (best of 3 seeds), random network 31, inputs 40; spike r 0.310 "
        "[0.280–0.340], self-readout 0.93")
    assert live.counts(SCORES, "above_null").startswith("above null 7, beyond controls 12")
    assert live.verdict({**SCORES, "on": "test"}).split(";")[0].endswith(
        "on final, held out (test trials)")
    assert live.interval({"intervals": {"spike_corr": [-0.07, 0.02]}}, "spike_corr", 3) == (
        "[-0.070 to 0.020]")
    row = {"number": 3, "name": "two-pop", "trainings": 3, "scored": 2, "failed": ["oom"],
           "test": {"beyond_controls": [10.5, 1.5], "recovered": [58.0, 2.0],
                    "spike_corr": [0.3, 0.01], "self_readout": None},
           "test_intervals": {"beyond_controls": [7.0, 13.0]},
           "controls": {"null_recovered": 21, "random_recovered": 30, "input_recovered": 41}}
    line = live.final_line(row)
    for words in ("final, held out (test trials), mean ± sd over 2 of 3 trainings, failed: oom",
                  "beyond controls 10.5 ± 1.5 [7–13]", "recovered 58.0 ± 2.0/160,",
                  "spike r 0.300 ± 0.010,", "self-readout –", "null 21, random network 30"):
        assert words in line, words
    assert live.training_text({"epochs": 4, "stopped_by": "early_stopping", "strategy": "direct",
                               "note": "adjoint requested"}) == (
        "early stopping after 4 epochs; trained direct: adjoint requested")
    for bad in (None, [], {"intervals": "x", "recovered": "61"}):
        assert "–" in live.verdict(bad)
