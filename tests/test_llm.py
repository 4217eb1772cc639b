"""The LLM architects through the real SDKs against a local server; replay of a recording."""

import json

import pytest
from llm_server import Server

from agent import llm
from agent.offline import OfflineArchitect
from agent.prompt import Brief, ParseError

SOURCE = OfflineArchitect(7).propose(Brief(0)).source
GOOD = ('```json\n{"name": "two-pop", "reasoning": "nRt needs its own units", '
        '"properties": {"family": "two-pop"}}\n```\n```python\n' + SOURCE + "```\n")
BRIEF = Brief(2, gap={"direction": "nrt_state", "remaining_gap": 40.0},
              exhausted=("ltc",), feedback=None)


def architect(server, tmp_path, provider="anthropic", **kw):
    cfg = llm.LLMConfig(provider, api_key="test-key", base_url=server.url
                        + ("/v1" if provider == "openai" else ""), timeout_s=1.0, **kw)
    return llm.build(provider, cfg, tmp_path)


def test_anthropic_retries_an_overload_and_a_timeout_then_meters_and_records(tmp_path):
    with Server([("status", 529), ("sleep", 3.0), GOOD]) as server:
        arch = architect(server, tmp_path, model="claude-sonnet-5-5")
        p = arch.propose(BRIEF)
    assert p.name == "two-pop" and p.source.strip() == SOURCE.strip()
    assert len(server.requests) == 3
    req = server.requests[-1]
    assert req["path"] == "/v1/messages" and req["headers"]["x-stainless-retry-count"] == "2"
    assert req["headers"]["authorization"] == "Bearer test-key"  # this SDK sends a bearer token
    assert "thalamic circuit" in req["body"]["system"]
    assert "nrt_state" in req["body"]["messages"][0]["content"]
    [call] = arch.drain_calls()
    assert (call["input_tokens"], call["output_tokens"]) == (1200, 800)
    assert call["cost_usd"] == pytest.approx((1200 * 3 + 800 * 15) / 1e6)
    assert "error" not in call and call["latency_s"] > 0
    [line] = (tmp_path / llm.RECORDING).read_text().splitlines()
    rec = json.loads(line)
    assert rec["prompt_hash"] == call["prompt_hash"] and rec["reply"] == GOOD


def test_a_reply_without_code_is_a_parse_error_with_its_reply(tmp_path):
    with Server(["I would try a bigger LSTM."]) as server:
        arch = architect(server, tmp_path)
        with pytest.raises(ParseError, match="class Model") as e:
            arch.propose(BRIEF)
    assert e.value.reply == "I would try a bigger LSTM."
    assert arch.drain_calls()[0]["error"].startswith("parse")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
@pytest.mark.parametrize("step", [("raw", "<html>not json</html>"), ("status", 500),
                                  ("sleep", 2.0)])
def test_a_malformed_reply_or_a_persistent_error_is_an_architect_error(tmp_path, step,
                                                                        provider):
    with Server([step]) as server:
        arch = architect(server, tmp_path, provider, max_retries=1)
        with pytest.raises(llm.ArchitectError):
            arch.propose(BRIEF)
    [call] = arch.drain_calls()
    assert call["error"] and "cost_usd" not in call
    assert not (tmp_path / llm.RECORDING).exists()


def test_openai_compatible_server_with_a_price(tmp_path):
    with Server([("status", 429), GOOD], input_tokens=100, output_tokens=50) as server:
        arch = architect(server, tmp_path, "openai", model="qwen-coder", price=(1.0, 2.0))
        p = arch.propose(BRIEF)
    assert p.source.strip() == SOURCE.strip()
    body = server.requests[-1]["body"]
    assert server.requests[-1]["path"] == "/v1/chat/completions"
    assert body["model"] == "qwen-coder" and body["messages"][0]["role"] == "system"
    [call] = arch.drain_calls()
    assert call["cost_usd"] == pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6)


def test_an_unpriced_model_costs_nothing_rather_than_a_guess(tmp_path):
    with Server([GOOD]) as server:
        arch = architect(server, tmp_path, "openai", model="llama-local")
        arch.propose(BRIEF)
    assert arch.drain_calls()[0]["cost_usd"] == 0.0


def test_replay_answers_the_recorded_prompt_and_refuses_another(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    with Server([GOOD]) as server:
        recorded = architect(server, first).propose(BRIEF)
    replay = llm.build("replay", None, second, replay_from=first)
    assert replay.propose(BRIEF) == recorded
    assert replay.drain_calls()[0]["cost_usd"] == 0.0
    with pytest.raises(llm.ArchitectError, match="no recorded reply"):
        replay.propose(Brief(3))


def test_a_resumed_run_reuses_the_reply_it_bought_before_the_kill(tmp_path):
    with Server([GOOD]) as server:
        first = architect(server, tmp_path).propose(BRIEF)
    with Server([("status", 500)]) as server:  # the server would fail: it is not asked
        again = architect(server, tmp_path, max_retries=0)
        assert again.propose(BRIEF) == first
        assert not server.requests
        with pytest.raises(llm.ArchitectError):  # served once; the next ask goes out
            again.propose(BRIEF)
    assert len((tmp_path / llm.RECORDING).read_text().splitlines()) == 1
    reused, failed = again.drain_calls()
    assert reused["cost_usd"] > 0 and "error" not in reused and failed["error"]
