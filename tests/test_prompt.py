"""Prompts render from their text files; replies parse robustly or fail with a reason."""

import pytest

from agent.prompt import Brief, ParseError, parse_reply, prompt_hash, system_prompt, user_prompt
from descartes_core.contract import template_sources
from sandbox.policy import DEFAULT_IMPORTS

SOURCE = template_sources()["T4"]
HEADER = ('{"name": "osc-net", "reasoning": "rhythms need oscillators", "properties": '
          '{"family": "coupled_oscillator"}}')


def test_system_prompt_states_the_contract_values_and_controls():
    s = system_prompt(0.5, DEFAULT_IMPORTS)
    assert "implicit_adams" in s and "coupled_oscillator" in s and "torchdiffeq" in s
    assert "above null" in s and "beyond inputs" in s and "0.5" in s


def test_user_prompt_carries_history_gap_patterns_and_feedback():
    scored = {"number": 1, "name": "T5", "properties": {"solver": "euler",
                                                        "gradient_strategy": "adjoint"},
              "status": "scored", "training": {"strategy": "direct", "note": "no odeint_adjoint",
                                               "epochs": 7, "stopped_by": "time_budget"},
              "scores": {"recovered": 90, "above_null": 4, "beyond_inputs": 2,
                         "beyond_controls": 3, "intervals": {"recovered": [84, 95]},
                         "null_recovered": 70, "self_readout": 0.93,
                         "spike_corr": 0.6, "by_category": {"tc_gating": 50}}}
    failed = {"number": 2, "name": "bad", "properties": {}, "failure_kind": "policy",
              "status": "failed", "failure_message": "line 1, col 0: import of 'os' is not allowed"}
    diverged = {**scored, "number": 3, "name": "blew-up", "status": "failed",
                "failure_kind": "train_diverged", "failure_message": "validation loss rose"}
    u = user_prompt(Brief(
        3, history=(scored, failed, diverged),
        gap={"remaining_gap": 25.0, "direction": "nrt_state"},
        patterns=({"type": "near_miss", "confidence": 0.8, "description": "5 near"},),
        exhausted=("ltc",), parent=("T5", "class Model: ...", "parent: island 0's best"),
        inspirations=(("T1", "class Model: pass", "inspiration: best of cell x"),),
        feedback="shape: y is (4, 200, 3)", objective="above_null"))
    for words in ("recovered 90 [84–95]/160 (controls recover: null 70", "above null 4",
                  "self-readout 0.93", "trained direct, not adjoint: no odeint_adjoint",
                  "time budget reached after 7 epochs", "import of 'os'", "nrt_state", "5 near",
                  "ltc", "```python\nclass Model: ...", "y is (4, 200, 3)",
                  "measured by above null", "- blew-up", "train_diverged",
                  "### T5 (parent: island 0's best)", "### T1 (inspiration: best of cell x)"):
        assert words in u
    worked = u.split("## What worked")[1].split("## What failed")[0]
    assert "blew-up" not in worked  # a failed training is never listed as what worked


@pytest.mark.parametrize("reply", [
    f"```json\n{HEADER}\n```\n```python\n{SOURCE}```",
    f"Here is my idea.\n\n```json\n{HEADER}\n```\nAnd the code:\n```python\n{SOURCE}```\nDone.",
    f"{HEADER}\n```python\n{SOURCE}```",
    f"```\n{HEADER}\n```\n```py\n{SOURCE}```",
])
def test_replies_with_fences_and_prose_parse(reply):
    p = parse_reply(reply)
    assert p.name == "osc-net" and p.reasoning.startswith("rhythms")
    assert p.source.strip() == SOURCE.strip()


def test_a_missing_header_falls_back_to_the_source_properties():
    p = parse_reply(f"```python\n{SOURCE}```")
    assert p.properties["family"] == "coupled_oscillator" and p.name == "coupled_oscillator"


@pytest.mark.parametrize("reply", ["I would use an LSTM.", '```json\n{"name": "x"}\n```',
                                   "```python\nprint('no model')\n```"])
def test_replies_without_a_model_are_parse_errors(reply):
    with pytest.raises(ParseError, match="class Model"):
        parse_reply(reply)


def test_prompt_hash_depends_on_both_parts():
    assert prompt_hash("a", "b") != prompt_hash("a", "c") != prompt_hash("b", "b")
