"""LLM architects: the anthropic and openai-compatible SDKs behind one seam, and replay.

An LLMArchitect renders the prompts from a Brief, asks its client for one reply,
records the exchange (prompt hash → reply) in the run directory and parses the
reply. Retries on 429, 5xx and timeouts are the SDKs' own (exponential backoff with
jitter, honouring retry-after); a call that still fails raises ArchitectError, which
the loop counts towards its fallback to the offline architect. Replay answers from a
recording by prompt hash, so a recorded run is replayed offline byte for byte.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.prompt import Brief, ParseError, Proposal, parse_reply, prompt_hash, system_prompt
from agent.prompt import user_prompt as render_user
from sandbox.policy import DEFAULT_IMPORTS

DEFAULT_MODEL = {"anthropic": "claude-sonnet-5-5", "openai": "default"}
# List prices in dollars per million tokens (input, output), by model-name prefix, the
# first match winning; `--price` overrides them, and a model not here is metered at 0.
PRICES = {
    "claude-opus-4-0": (15.0, 75.0), "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4-2": (15.0, 75.0), "claude-opus-": (5.0, 25.0),
    "claude-sonnet-": (3.0, 15.0), "claude-haiku-": (1.0, 5.0),
}
RECORDING = "exchanges.jsonl"


class ArchitectError(Exception):
    """The architect could not answer (transport, server or recording), retries included."""


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class LLMConfig:
    """How to reach a model server."""

    provider: str
    """anthropic or openai (any server speaking the OpenAI chat API: vLLM, Ollama, …)."""
    model: str | None = None
    """Model name; None takes DEFAULT_MODEL of the provider."""
    api_key: str | None = None
    """The key; None lets the anthropic SDK read ANTHROPIC_API_KEY (the CLI reads
    OPENAI_API_KEY itself: a local openai-compatible server may need no key)."""
    base_url: str | None = None
    """Server address; None is the provider's public API."""
    max_tokens: int = 8192
    """Cap on the reply: a whole model file with its header."""
    timeout_s: float = 300.0
    """Per request, before a retry."""
    max_retries: int = 4
    """Retries of one call on 429, 5xx, overload and timeouts."""
    price: tuple[float, float] | None = None
    """Dollars per million (input, output) tokens; None looks the model up in PRICES."""


def price_of(model: str, price: tuple[float, float] | None) -> tuple[float, float] | None:
    if price is not None:
        return price
    hits = [p for prefix, p in PRICES.items() if model.startswith(prefix)]
    return hits[0] if hits else None


def anthropic_client(cfg: LLMConfig) -> Callable[[str, str], Reply]:
    import anthropic

    client = anthropic.Anthropic(api_key=cfg.api_key, base_url=cfg.base_url,
                                 max_retries=cfg.max_retries, timeout=cfg.timeout_s)
    model = cfg.model or DEFAULT_MODEL["anthropic"]

    def complete(system: str, user: str) -> Reply:
        try:
            msg = client.messages.create(model=model, max_tokens=cfg.max_tokens, system=system,
                                         messages=[{"role": "user", "content": user}])
        except (anthropic.APIError, ValueError) as e:
            raise ArchitectError(f"anthropic: {type(e).__name__}: {e}") from None
        text = "".join(b.text for b in msg.content if getattr(b, "type", "") == "text")
        return Reply(text, msg.model or model, msg.usage.input_tokens, msg.usage.output_tokens)

    return complete


def openai_client(cfg: LLMConfig) -> Callable[[str, str], Reply]:
    import openai

    # local servers take any key; the SDK refuses to start without one
    client = openai.OpenAI(api_key=cfg.api_key or "unused", base_url=cfg.base_url,
                           max_retries=cfg.max_retries, timeout=cfg.timeout_s)
    model = cfg.model or DEFAULT_MODEL["openai"]

    def complete(system: str, user: str) -> Reply:
        try:
            r = client.chat.completions.create(
                model=model, max_tokens=cfg.max_tokens,
                messages=[{"role": "system", "content": system},
                          {"role": "user", "content": user}])
        except (openai.APIError, ValueError) as e:
            raise ArchitectError(f"openai: {type(e).__name__}: {e}") from None
        if not r.choices:
            raise ArchitectError("openai: the reply has no choices")
        usage = r.usage
        return Reply(r.choices[0].message.content or "", r.model or model,
                     usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

    return complete


class Recording:
    """Exchanges of a run, one JSON line each: prompt hash, prompts, reply, tokens."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def append(self, digest: str, system: str, user: str, reply: Reply) -> None:
        line = json.dumps({"prompt_hash": digest, "model": reply.model, "system": system,
                           "user": user, "reply": reply.text,
                           "input_tokens": reply.input_tokens,
                           "output_tokens": reply.output_tokens})
        with self.path.open("a") as f:
            f.write(line + "\n")

    def exchanges(self):
        """Each recorded exchange as a dict; none when nothing was recorded."""
        if not self.path.exists():
            return
        for line in self.path.read_text().splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: the exchange it held is redone
            if isinstance(d, dict) and isinstance(d.get("prompt_hash"), str):
                yield d

    def replies(self) -> dict[str, deque[Reply]]:
        if not self.path.exists():
            raise ArchitectError(f"{self.path}: no recording to replay")
        by_hash: dict[str, deque[Reply]] = defaultdict(deque)
        for d in self.exchanges():
            try:
                reply = Reply(d["reply"], d["model"], d["input_tokens"], d["output_tokens"])
            except KeyError:
                continue
            by_hash[d["prompt_hash"]].append(reply)
        return by_hash


def replay_client(recording: Recording) -> Callable[[str, str], Reply]:
    replies = recording.replies()

    def complete(system: str, user: str) -> Reply:
        digest = prompt_hash(system, user)
        if not replies.get(digest):
            raise ArchitectError(f"replay: no recorded reply for prompt {digest[:12]} "
                                 "(the run has diverged from the recording)")
        return replies[digest].popleft()

    return complete


class LLMArchitect:
    """Prompts from a Brief, one reply per proposal, every exchange recorded and metered."""

    def __init__(self, name: str, complete: Callable[[str, str], Reply],
                 recording: Recording | None, price: tuple[float, float] | None = None):
        self.name, self.complete, self.recording, self.price = name, complete, recording, price
        self.calls: list[dict] = []
        # A resumed run's recording already holds the reply bought for the iteration that
        # was in flight: serve it (once) instead of buying another, so that the recording
        # stays one reply per prompt and the run replays byte for byte.
        self.bought = recording.replies() if recording and recording.path.exists() else {}

    def drain_calls(self) -> list[dict]:
        calls, self.calls = self.calls, []
        return calls

    def propose(self, brief: Brief) -> Proposal:
        system = system_prompt(brief.threshold, DEFAULT_IMPORTS)
        user = render_user(brief)
        digest = prompt_hash(system, user)
        start = time.perf_counter()
        call = {"architect": self.name, "prompt_hash": digest}
        reused = bool(self.bought.get(digest))
        try:
            reply = self.bought[digest].popleft() if reused else self.complete(system, user)
        except ArchitectError as e:
            self.calls.append({**call, "latency_s": time.perf_counter() - start,
                               "error": str(e)[:2000]})
            raise
        price = price_of(reply.model, self.price)
        cost = ((reply.input_tokens * price[0] + reply.output_tokens * price[1]) / 1e6
                if price else 0.0)
        self.calls.append({**call, "model": reply.model, "input_tokens": reply.input_tokens,
                           "output_tokens": reply.output_tokens, "cost_usd": cost,
                           "latency_s": time.perf_counter() - start})
        if self.recording is not None and not reused:
            self.recording.append(digest, system, user, reply)
        try:
            return parse_reply(reply.text, brief.parent[1] if brief.parent else None)
        except ParseError as e:
            self.calls[-1]["error"] = f"parse: {e}"
            raise
        except Exception as e:  # the parser is total; should it not be, a
            # reply must still never kill the run (a resume would re-serve it for ever)
            self.calls[-1]["error"] = f"parse: {type(e).__name__}"
            raise ParseError(f"the reply could not be read ({type(e).__name__}): reply with a "
                             "JSON header and one ```python block holding the whole file",
                             reply.text if isinstance(reply.text, str) else "") from e


def build(name: str, llm: LLMConfig | None, run_dir: Path, seed: int = 0,
          replay_from: Path | None = None):
    """The architect called `name`; LLM architects record into `run_dir`."""
    from agent.offline import OfflineArchitect

    if name == "offline":
        return OfflineArchitect(seed)
    recording = Recording(run_dir / RECORDING)
    if name == "replay":
        if replay_from is None:
            raise ArchitectError("--architect replay needs --replay-from RUN_DIR")
        return LLMArchitect("replay", replay_client(Recording(replay_from / RECORDING)),
                            recording, price=(0.0, 0.0))
    if llm is None or llm.provider != name:
        raise ArchitectError(f"architect {name}: expected offline, anthropic, openai or replay")
    client = anthropic_client(llm) if name == "anthropic" else openai_client(llm)
    return LLMArchitect(name, client, recording, llm.price)
