"""The live view: a rich panel on a terminal, plain lines anywhere else."""

import io

from rich.console import Console

from agent import live

IT = {"number": 3, "name": "two-pop", "status": "scored", "recovered": 61, "above_null": 7,
      "beyond_inputs": 4, "spike_corr": 0.31, "scores": {"recovered": 61}}
EVENTS = [
    ("start", {"run_id": "r1", "dir": "d/r1", "architect": "offline", "backend": "docker",
               "objective": "recovered", "target": 120, "max_expansions": 10}),
    ("phase", {"phase": "expansions"}),
    ("iteration", {"number": 3}),
    ("repair", {"attempt": 1, "feedback": "policy: line 1, col 0: import of 'os'"}),
    ("activity", {"what": "training", "name": "two-pop", "backend": "docker"}),
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
                  "repair 1: policy"):
        assert words in panel, words
    assert "━" in panel  # the progress bar
    for words in ("#  3 two-pop", "— new best", "0.25 h training · 1/10 expansions · $0.42",
                  "recovered 61/160 (above null 7"):
        assert words in text, words


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
    assert lines[0].startswith("run r1 in d/r1 (architect: offline, sandbox: docker")
    assert "  repair 1: policy: line 1, col 0: import of 'os'" in lines
    assert "  training two-pop (docker sandbox)" in lines
    assert lines[-1].startswith("#  3 two-pop") and "new best" not in lines[-1]
    assert not any("epoch" in line for line in lines)  # no line per epoch in a log file
