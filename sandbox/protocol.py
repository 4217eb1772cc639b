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

import io
import itertools
import json
import math
import os
import re
import stat
import struct
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy

REQUEST = "request.json"
RESPONSE = "response.json"
ARRAYS = "arrays.npz"
WEIGHTS = "weights.safetensors"  # the trained parameters (read by sandbox.weights)
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
MAX_MAGNITUDE = 1e8
"""Largest |value| of a loss or an array element: far beyond any honest model's (rates are
in Hz, latents feed a probe), small enough that scoring's sums stay finite."""
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}  # controls, bidi overrides, surrogates, unassigned


class ProtocolError(Exception):
    """A response that breaks the protocol: the candidate failed with class `protocol`."""


def text(value: object, cap: int = MAX_TEXT) -> str:
    """A plain, printable, capped str of any str-typed value; ProtocolError otherwise."""
    if type(value) is not str:
        raise ProtocolError(f"expected a string, got {type(value).__name__}")
    return "".join(c for c in value[: 4 * cap] if c in "\n\t" or unicodedata.category(c)
                   not in _INVISIBLE)[:cap]


def _opt_text(value: object, cap: int = MAX_TEXT) -> str | None:
    return None if value is None else text(value, cap)


def integer(value: object, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ProtocolError(f"expected an integer in [{lo}, {hi}], got {_show(value)}")
    return value


def number(value: object, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite float in [lo, hi] (JSON ints are accepted as numbers)."""
    try:
        ok = type(value) in (int, float) and math.isfinite(value) and lo <= value <= hi
    except OverflowError:  # an int of a thousand digits
        ok = False
    if not ok:
        raise ProtocolError(f"expected a finite number in [{lo}, {hi}], got {_show(value)}")
    return float(value)


def _opt_number(value: object, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    return None if value is None else number(value, lo, hi)


def choice(value: object, allowed: frozenset[str]) -> str:
    if type(value) is not str or value not in allowed:
        raise ProtocolError(f"expected one of {', '.join(sorted(allowed))}, got {_show(value)}")
    return value


def _show(value: object) -> str:
    if type(value) is int and abs(value) > 10**18:
        return "a huge integer"
    return repr(value)[:60] if type(value) in (int, float, str, bool) else type(value).__name__


def _loss(value: object) -> float | None:
    return _opt_number(value, -MAX_MAGNITUDE, MAX_MAGNITUDE)


def open_regular(path: Path, max_bytes: int):
    """`path` opened for reading if it is a plain file of at most `max_bytes`; None if absent.

    Opened without following a link and without blocking (a FIFO or a link to a host
    file is refused, never read); ProtocolError for anything but such a file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ProtocolError(f"{path.name} cannot be opened ({type(e).__name__})") from None
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
        f.close()
        raise ProtocolError(f"{path.name} is not a plain file of at most {max_bytes} bytes")
    return f


def read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of `path` (see open_regular), or None if absent."""
    f = open_regular(path, max_bytes)
    if f is None:
        return None
    with f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ProtocolError(f"{path.name} is over {max_bytes} bytes")
    return data


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
    def hex64(value: object) -> str:  # a sha256 digest: exactly 64 lowercase hex characters
        if (type(value) is not str or len(value) != 64
                or any(c not in "0123456789abcdef" for c in value)):
            raise ProtocolError(f"expected 64 lowercase hex characters, got {_show(value)}")
        return value

    d = exact_keys(d, {"n_params", "forward_ms", "latent_dim", "grad_fraction",
                       "roundtrip_error", "warnings", "fingerprint"}, {"blocks"})
    return {"blocks": contracts(d.get("blocks", {}))} | _fields(d, {
        "n_params": lambda v: integer(v, 0, max_params),
        "forward_ms": lambda v: number(v, 0.0, 3.6e6),
        "latent_dim": lambda v: integer(v, latent_dim, latent_dim),
        "grad_fraction": lambda v: number(v, 0.0, 1.0),
        "roundtrip_error": lambda v: _opt_number(v, 0.0),
        "warnings": _warnings,
        "fingerprint": hex64,
    })


# block contracts (sandbox.blocks): observed by the shape check, a verification's answer ---
MAX_BLOCKS = 32
MAX_ARGS = 8
MAX_DIMS = 6
MAX_NUMEL = 1 << 22  # what a verification allocates per tensor: 16 MiB of float32
DTYPES = frozenset({"float32", "float64", "float16", "bfloat16", "int64", "int32", "bool"})
BLOCK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def name(value: object) -> str:
    if type(value) is not str or not BLOCK_NAME.fullmatch(value):
        raise ProtocolError(f"expected a name of at most 64 letters, digits or _, got "
                            f"{_show(value)}")
    return value


def shape(value: object) -> list[int]:
    if type(value) is not list or len(value) > MAX_DIMS:
        raise ProtocolError(f"expected a shape of at most {MAX_DIMS} dimensions")
    dims = [integer(v, 0, MAX_NUMEL) for v in value]
    if math.prod(dims) > MAX_NUMEL:
        raise ProtocolError(f"a shape of more than {MAX_NUMEL} elements")
    return dims


def _spec(value: object) -> dict:
    if type(value) is dict and "shape" in value:
        d = exact_keys(value, {"shape", "dtype"})
        return {"shape": shape(d["shape"]), "dtype": choice(d["dtype"], DTYPES)}
    if type(value) is dict and "callable" in value:
        if exact_keys(value, {"callable"})["callable"] is not True:
            raise ProtocolError("callable must be true")
        return {"callable": True}
    v = exact_keys(value, {"value"})["value"]
    if v is None or type(v) is bool:
        return {"value": v}
    if type(v) is int:
        return {"value": integer(v, -10**9, 10**9)}
    return {"value": number(v, -1e9, 1e9)}


def _specs(value: object) -> list[dict]:
    if type(value) is not list or len(value) > MAX_ARGS:
        raise ProtocolError(f"expected a list of at most {MAX_ARGS} arguments")
    return [_spec(v) for v in value]


def contract(value: object) -> dict:
    """One block's contract (sandbox.blocks), typed and bounded."""
    d = exact_keys(value, {"kind", "init", "init_kw", "inputs", "outputs"})
    kw = d["init_kw"]
    if type(kw) is not dict or len(kw) > MAX_ARGS:
        raise ProtocolError(f"init_kw: expected an object of at most {MAX_ARGS} arguments")
    outputs = d["outputs"]
    if type(outputs) is not list or not 1 <= len(outputs) <= MAX_ARGS:
        raise ProtocolError(f"outputs: expected 1 to {MAX_ARGS} shapes")
    return {"kind": choice(d["kind"], frozenset({"module", "function"})),
            "init": _specs(d["init"]), "init_kw": {name(k): _spec(v) for k, v in kw.items()},
            "inputs": _specs(d["inputs"]), "outputs": [shape(o) for o in outputs]}


def contracts(value: object) -> dict[str, dict]:
    if type(value) is not dict or len(value) > MAX_BLOCKS:
        raise ProtocolError(f"expected an object of at most {MAX_BLOCKS} blocks")
    out = {}
    for k, v in value.items():
        try:
            out[name(k)] = contract(v)
        except ProtocolError as e:
            raise ProtocolError(f"{str(k)[:64]}: {e}") from None
    return out


def _verified(d: object, max_params: int) -> dict:
    """A verification's verdicts: block name → ok, failure kind, message, parameters."""
    v = exact_keys(d, {"verdicts"})["verdicts"]
    if type(v) is not dict or len(v) > MAX_BLOCKS:
        raise ProtocolError(f"verdicts: expected an object of at most {MAX_BLOCKS} blocks")
    out = {}
    for k, one in v.items():
        one = exact_keys(one, {"ok", "kind", "message", "n_params"})
        if type(one["ok"]) is not bool:
            raise ProtocolError("a verdict's ok must be true or false")
        out[name(k)] = {"ok": one["ok"], "message": text(one["message"]),
                        "kind": None if one["kind"] is None else choice(one["kind"],
                                                                        FAILURE_KINDS),
                        "n_params": integer(one["n_params"], 0, max_params)}
    return {"verdicts": out}


_HISTORY_KEYS = {"epoch", "train", "val", "t"}


def _history(value: object) -> list[dict]:
    if type(value) is not list or len(value) > MAX_HISTORY:
        raise ProtocolError(f"expected a list of at most {MAX_HISTORY} epochs")
    rows = [_fields(exact_keys(h, _HISTORY_KEYS), {
        "epoch": lambda v: integer(v, 1, MAX_HISTORY), "train": _loss, "val": _loss,
        "t": lambda v: number(v, 0.0, 1e7)}) for h in value]
    if [r["epoch"] for r in rows] != list(range(1, len(rows) + 1)):
        raise ProtocolError("epochs must run 1, 2, 3, …")
    if any(b["t"] < a["t"] for a, b in itertools.pairwise(rows)):
        raise ProtocolError("epoch times must not go back")
    return rows


def _record(d: object, max_params: int) -> dict:
    from descartes_core.contract import GradientStrategy, LossChoice

    d = exact_keys(d, {"strategy", "device", "n_params", "strategy_note", "loss", "loss_note",
                       "epochs", "train_loss", "val_loss", "wall_s", "short_segment_corr",
                       "failure", "failure_message", "stopped_by", "history"}, {"compile"})
    strategies = frozenset(e.value for e in GradientStrategy)
    loss_choices = frozenset(e.value for e in LossChoice)
    record = _fields(d, {
        "strategy": lambda v: choice(v, strategies),
        "device": lambda v: text(v, 32),
        "n_params": lambda v: integer(v, 0, max_params),
        "strategy_note": lambda v: _opt_text(v, 500),
        "loss": lambda v: choice(v, loss_choices),
        "loss_note": lambda v: _opt_text(v, 500),
        "epochs": lambda v: integer(v, 0, MAX_HISTORY),
        "train_loss": _loss,
        "val_loss": _loss,
        "wall_s": lambda v: number(v, 0.0, 1e7),  # the worker's word; budgets use the host's
        "short_segment_corr": lambda v: _opt_number(v, -1.0, 1.0),
        "failure": lambda v: None if v is None else choice(v, FAILURE_KINDS),
        "failure_message": _opt_text,
        "stopped_by": lambda v: None if v is None else choice(v, STOPPED_BY),
        "history": _history,
    }) | {"compile": _opt_text(d.get("compile"), 300)}
    if record["epochs"] != len(record["history"]):
        raise ProtocolError(f"epochs {record['epochs']} but {len(record['history'])} in history")
    return record


def read_response(out: Path, task: str, *, latent_dim: int, max_params: int) -> Response | None:
    """The validated response in OUT; None when there is none (the worker crashed).

    ProtocolError when there is one and it breaks the protocol in any way."""
    data = read_regular(out / RESPONSE, MAX_RESPONSE_BYTES)
    if data is None:
        return None
    try:
        raw = json.loads(data, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"response is not JSON ({type(e).__name__})") from None
    d = exact_keys(raw, {"ok"}, {"error", "check", "record", "arrays"})
    ok = d["ok"]
    if type(ok) is not bool:
        raise ProtocolError("ok must be true or false")
    error = _error(d["error"]) if d.get("error") is not None else None
    if task in ("check", "verify"):
        if ok == (error is not None) or ("check" in d) != ok or "record" in d:
            raise ProtocolError(f"a {task} answers ok with its check, or an error")
        read = _check if task == "check" else lambda c, _, m: _verified(c, m)
        return Response(ok, error, check=read(d["check"], latent_dim, max_params) if ok
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


LATENT_STRIDE = 5
"""Latents travel at every 5th step: the probes read no other (descartes_core.scoring.STRIDE,
which a test holds equal)."""


def latent_steps(t: int) -> int:
    return -(-t // LATENT_STRIDE)


def read_arrays(out: Path, n: int, t: int, n_outputs: int, latent_dim: int, null_seeds: int
                ) -> dict[str, np.ndarray]:
    """The rollout arrays, checked in the zip directory before decompression, then exact:
    predictions (n, t, outputs), latents (n, ⌈t/5⌉, d), null_latents (seeds, n, ⌈t/5⌉, d)."""
    ts = latent_steps(t)
    want = {"predictions": (n, t, n_outputs), "latents": (n, ts, latent_dim),
            "null_latents": (null_seeds, n, ts, latent_dim)}
    limit = sum(4 * math.prod(s) for s in want.values()) + 3 * NPY_HEADER_SLACK + (1 << 16)
    f = open_regular(out / ARRAYS, limit)
    if f is None:
        raise ProtocolError("the response promised arrays but there are none")
    with f:
        return _read_zip(f, want)


def _read_zip(f, want: dict[str, tuple]) -> dict[str, np.ndarray]:
    if _zip_entries(f) != len(want):  # before zipfile reads a directory of any size
        raise ProtocolError(f"arrays file does not hold exactly {len(want)} arrays")
    got = {}
    try:
        with zipfile.ZipFile(f) as z:
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
                    a = np.empty(shape, dtype="<f4")
                    got_bytes = f.readinto(memoryview(a).cast("B"))
                    if got_bytes != a.nbytes or f.read(1):
                        raise ProtocolError(f"{key} does not hold exactly {a.nbytes} bytes "
                                            "of data")
                if not np.isfinite(a).all():
                    raise ProtocolError(f"{key} holds NaN or infinite values")
                if np.abs(a).max(initial=0.0) > MAX_MAGNITUDE:
                    raise ProtocolError(f"{key} holds values beyond ±{MAX_MAGNITUDE:g}")
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


def _zip_entries(f) -> int:
    """The entry count in a zip's end-of-directory record (no comment allowed); -1 if none."""
    size = f.seek(0, io.SEEK_END)
    if size < 22:
        return -1
    f.seek(size - 22)
    eocd = f.read(22)
    if eocd[:4] != b"PK\x05\x06" or eocd[-2:] != b"\0\0":
        return -1
    count = struct.unpack("<H", eocd[10:12])[0]
    if count == 0xFFFF and size >= 42:  # zip64: the count lives in the zip64 end record
        f.seek(size - 42)
        loc = f.read(20)
        if loc[:4] != b"PK\x06\x07":
            return -1
        offset = struct.unpack("<Q", loc[8:16])[0]
        if offset > size - 56:
            return -1
        f.seek(offset)
        rec = f.read(56)
        count = struct.unpack("<Q", rec[32:40])[0] if rec[:4] == b"PK\x06\x06" else -1
    f.seek(0)
    return count


def read_progress_line(line: bytes) -> dict | None:
    """One epoch line of the progress log, or None; only bounded numbers pass."""
    try:
        d = exact_keys(json.loads(line, parse_constant=_no_constant),
                       {"epoch", "total", "train_loss", "val_loss"})
        return {"epoch": integer(d["epoch"], 0, MAX_HISTORY),
                "total": integer(d["total"], 0, MAX_HISTORY),
                "train_loss": number(d["train_loss"], -MAX_MAGNITUDE, MAX_MAGNITUDE),
                "val_loss": number(d["val_loss"], -MAX_MAGNITUDE, MAX_MAGNITUDE)}
    except Exception:  # a progress line is a courtesy: whatever is wrong with it, skip it
        return None
