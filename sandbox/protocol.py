"""The host–worker protocol: what a job asks, what a worker may answer, and the checks.

The worker runs in the same interpreter as the candidate, so anything the worker
writes, the candidate could have written instead: there is no secret inside the
sandbox worth the name (a per-job token would be one frame walk away). Instead every
response is read as hostile input. It is parsed from bounded bytes, every field is
typed and bounded, strings are plain ``str``, capped and stripped of control
characters, unknown keys are refused, and arrays are size-checked in the zip's
directory before a byte is decompressed, then checked for exact shape, dtype and
finiteness. Anything that fails is a ``ProtocolError``: the candidate failed with
class ``protocol``. Times that decide budgets are the host's, never the worker's.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy

REQUEST = "request.json"
RESPONSE = "response.json"
ARRAYS = "arrays.npz"
PROGRESS = "progress.jsonl"  # one line per epoch, written while training

MAX_RESPONSE_BYTES = 1 << 20
MAX_TEXT = 2000
MAX_HISTORY = 100_000
MAX_WARNINGS = 20
NPY_HEADER_SLACK = 4096  # an .npy header is at most a few hundred bytes
ARRAY_NAMES = ("predictions", "latents", "null_latents")
FAILURE_KINDS = frozenset({
    "syntax", "policy", "import", "shape", "nan", "oom", "timeout", "runtime", "params",
    "train_diverged", "verifier_failed", "protocol",
})
STOPPED_BY = frozenset({"time_budget", "early_stopping", "max_epochs", "failure"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")


class ProtocolError(Exception):
    """A response that breaks the protocol: the candidate failed with class `protocol`."""


def text(value: object, cap: int = MAX_TEXT) -> str:
    """A plain, printable, capped str of any str-typed value; ProtocolError otherwise."""
    if type(value) is not str:
        raise ProtocolError(f"expected a string, got {type(value).__name__}")
    return _CONTROL.sub("", value)[:cap]


def _opt_text(value: object, cap: int = MAX_TEXT) -> str | None:
    return None if value is None else text(value, cap)


def integer(value: object, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ProtocolError(f"expected an integer in [{lo}, {hi}], got {_show(value)}")
    return value


def number(value: object, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite float in [lo, hi] (JSON ints are accepted as numbers)."""
    if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
        raise ProtocolError(f"expected a finite number in [{lo}, {hi}], got {_show(value)}")
    return float(value)


def _opt_number(value: object, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    return None if value is None else number(value, lo, hi)


def choice(value: object, allowed: frozenset[str]) -> str:
    if type(value) is not str or value not in allowed:
        raise ProtocolError(f"expected one of {', '.join(sorted(allowed))}, got {_show(value)}")
    return value


def _show(value: object) -> str:
    return repr(value)[:60] if type(value) in (int, float, str, bool) else type(value).__name__


def exact_keys(d: object, required: set[str], optional: set[str] = frozenset()) -> dict:
    if type(d) is not dict:
        raise ProtocolError(f"expected an object, got {type(d).__name__}")
    keys = set(d)
    if missing := required - keys:
        raise ProtocolError(f"missing keys: {', '.join(sorted(missing))}")
    if unknown := keys - required - optional:
        raise ProtocolError(f"unknown keys: {', '.join(sorted(map(str, unknown)))[:200]}")
    return d


# requests (written by the host, read by the worker) ---------------------------------------
def write_request(job: Path, task: str, source: str, config: dict) -> None:
    (job / REQUEST).write_text(json.dumps({"task": task, "source": source, "config": config}))


def read_request(job: Path) -> dict:
    return json.loads((job / REQUEST).read_text())


# responses (written by the worker, read by the host) --------------------------------------
@dataclass(frozen=True)
class Error:
    kind: str
    message: str


@dataclass(frozen=True)
class Response:
    """A validated response. Exactly one of error / check / record is the point of it."""

    ok: bool
    error: Error | None = None
    check: dict | None = None
    record: dict | None = None
    arrays: bool = False


def _error(d: object) -> Error:
    d = exact_keys(d, {"kind", "message"})
    return Error(choice(d["kind"], FAILURE_KINDS), text(d["message"]))


def _fields(d: dict, spec: dict) -> dict:
    """Each field of `d` through its checker; a fault names its field."""
    out = {}
    for key, checker in spec.items():
        try:
            out[key] = checker(d[key])
        except ProtocolError as e:
            raise ProtocolError(f"{key}: {e}") from None
    return out


def _warnings(value: object) -> list[str]:
    if type(value) is not list or len(value) > MAX_WARNINGS:
        raise ProtocolError(f"expected a list of at most {MAX_WARNINGS} strings")
    return [text(w, 500) for w in value]


def _check(d: object, latent_dim: int, max_params: int) -> dict:
    d = exact_keys(d, {"n_params", "forward_ms", "latent_dim", "grad_fraction",
                       "roundtrip_error", "warnings"})
    return _fields(d, {
        "n_params": lambda v: integer(v, 0, max_params),
        "forward_ms": lambda v: number(v, 0.0, 3.6e6),
        "latent_dim": lambda v: integer(v, latent_dim, latent_dim),
        "grad_fraction": lambda v: number(v, 0.0, 1.0),
        "roundtrip_error": lambda v: _opt_number(v, 0.0),
        "warnings": _warnings,
    })


_HISTORY_KEYS = {"epoch", "train", "val", "t"}


def _history(value: object) -> list[dict]:
    if type(value) is not list or len(value) > MAX_HISTORY:
        raise ProtocolError(f"expected a list of at most {MAX_HISTORY} epochs")
    return [_fields(exact_keys(h, _HISTORY_KEYS), {
        "epoch": lambda v: integer(v, 1, MAX_HISTORY), "train": _opt_number,
        "val": _opt_number, "t": lambda v: number(v, 0.0)}) for h in value]


def _record(d: object, max_params: int) -> dict:
    from descartes_core.contract import GradientStrategy

    d = exact_keys(d, {"strategy", "device", "n_params", "strategy_note", "epochs",
                       "train_loss", "val_loss", "wall_s", "short_segment_corr", "failure",
                       "failure_message", "stopped_by", "history"})
    strategies = frozenset(e.value for e in GradientStrategy)
    return _fields(d, {
        "strategy": lambda v: choice(v, strategies),
        "device": lambda v: text(v, 32),
        "n_params": lambda v: integer(v, 0, max_params),
        "strategy_note": lambda v: _opt_text(v, 500),
        "epochs": lambda v: integer(v, 0, MAX_HISTORY),
        "train_loss": _opt_number,
        "val_loss": _opt_number,
        "wall_s": lambda v: number(v, 0.0),  # the worker's own word; budgets use the host's
        "short_segment_corr": lambda v: _opt_number(v, -1.0, 1.0),
        "failure": lambda v: None if v is None else choice(v, FAILURE_KINDS),
        "failure_message": _opt_text,
        "stopped_by": lambda v: None if v is None else choice(v, STOPPED_BY),
        "history": _history,
    })


def read_response(out: Path, task: str, *, latent_dim: int, max_params: int) -> Response | None:
    """The validated response in OUT; None when there is none (the worker crashed).

    ProtocolError when there is one and it breaks the protocol in any way."""
    path = out / RESPONSE
    if not path.is_file() or path.is_symlink():
        return None
    if path.stat().st_size > MAX_RESPONSE_BYTES:
        raise ProtocolError(f"response over {MAX_RESPONSE_BYTES} bytes")
    try:
        raw = json.loads(path.read_bytes(), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"response is not JSON ({type(e).__name__})") from None
    d = exact_keys(raw, {"ok"}, {"error", "check", "record", "arrays"})
    ok = d["ok"]
    if type(ok) is not bool:
        raise ProtocolError("ok must be true or false")
    error = _error(d["error"]) if d.get("error") is not None else None
    if task == "check":
        if ok == (error is not None) or ("check" in d) != ok or "record" in d:
            raise ProtocolError("a check answers ok with its check, or an error")
        return Response(ok, error, check=_check(d["check"], latent_dim, max_params) if ok
                        else None)
    if "check" in d:
        raise ProtocolError("an evaluation answers with a record, not a check")
    if "record" not in d:
        if ok or error is None:
            raise ProtocolError("an evaluation answers with its record, or an error")
        return Response(False, error)
    record = _record(d["record"], max_params)
    arrays = d.get("arrays", False)
    if type(arrays) is not bool:
        raise ProtocolError("arrays must be true or false")
    if ok != (record["failure"] is None):
        raise ProtocolError("ok disagrees with the record's failure")
    return Response(ok, error, record=record, arrays=arrays)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def read_arrays(out: Path, n: int, t: int, n_outputs: int, latent_dim: int
                ) -> dict[str, np.ndarray]:
    """The rollout arrays, checked in the zip directory before decompression, then exact."""
    want = {"predictions": (n, t, n_outputs), "latents": (n, t, latent_dim),
            "null_latents": (n, t, latent_dim)}
    path = out / ARRAYS
    if not path.is_file() or path.is_symlink():
        raise ProtocolError("the response promised arrays but there are none")
    limit = sum(4 * math.prod(s) for s in want.values()) + 3 * NPY_HEADER_SLACK
    if path.stat().st_size > limit + (1 << 16):
        raise ProtocolError(f"arrays file over {limit} bytes")
    got = {}
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = sorted(i.filename for i in infos)
            if names != sorted(f"{k}.npy" for k in want):
                raise ProtocolError(f"arrays file holds {names[:5]}, expected {sorted(want)}")
            for info in infos:
                key = info.filename[:-4]
                cap = 4 * math.prod(want[key]) + NPY_HEADER_SLACK
                if info.file_size > cap:  # ZipExtFile never reads past the declared size
                    raise ProtocolError(f"{key} declares {info.file_size} bytes, over {cap}")
                with z.open(info) as f:
                    version = npy.read_magic(f)
                    read_header = {(1, 0): npy.read_array_header_1_0,
                                   (2, 0): npy.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise ProtocolError(f"{key}: .npy version {version} is not allowed")
                    shape, fortran, dtype = read_header(f, max_header_size=NPY_HEADER_SLACK)
                    if dtype != np.dtype("<f4") or shape != want[key] or fortran:
                        raise ProtocolError(f"{key} is {dtype} {shape}, expected float32 "
                                            f"{want[key]}")
                    data = f.read(4 * math.prod(shape) + 1)
                if len(data) != 4 * math.prod(shape):
                    raise ProtocolError(f"{key} holds {len(data)} bytes of data, expected "
                                        f"{4 * math.prod(shape)}")
                a = np.frombuffer(data, dtype="<f4").reshape(shape)
                if not np.isfinite(a).all():
                    raise ProtocolError(f"{key} holds NaN or infinite values")
                got[key] = a
    except ProtocolError:
        raise
    except Exception as e:  # truncated, corrupt, CRC mismatch, forged header: all the same
        raise ProtocolError(f"unreadable arrays ({type(e).__name__})") from None
    return got


def finite_or_none(value):
    """JSON-ready `value` with every non-finite float replaced by None (the worker's side:
    an honest diverging model reports inf losses, which the protocol does not carry)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def read_progress_line(line: bytes) -> dict | None:
    """One epoch line of the progress log, or None; only bounded numbers pass."""
    try:
        d = exact_keys(json.loads(line, parse_constant=_no_constant),
                       {"epoch", "total", "train_loss", "val_loss"})
        return {"epoch": integer(d["epoch"], 0, MAX_HISTORY),
                "total": integer(d["total"], 0, MAX_HISTORY),
                "train_loss": number(d["train_loss"]), "val_loss": number(d["val_loss"])}
    except (ProtocolError, ValueError, RecursionError):
        return None
