"""The trained weights a job returns, read on the host: a safetensors file whose header alone
is parsed (never unpickled, never loaded into a model) to count the parameters.

The worker writes the trained model's parameters as float32 (``sandbox.worker.evaluate``).
The candidate runs in that interpreter and could write the file itself, so it is read as
hostile input: a plain file under a size cap, an 8-byte little-endian header length, a
bounded JSON header, and each entry's dtype, shape and byte range checked against the file,
the ranges tiling the data exactly. What passes is a count the host made from bytes it
holds and keeps with the run; it binds the candidate to an artefact, where a claimed
``n_params`` bound it to nothing. Anything else is no count: the size is unverified.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.protocol import WEIGHTS, ProtocolError, exact_keys, open_regular

MAX_HEADER = 1 << 20
"""Bytes of a header: about 10,000 tensors' entries."""
MAX_TENSORS = 10_000
MAX_NAME = 300
MAX_DIMS = 8
ITEMSIZE = 4
"""Every tensor is float32 ("F32"): the worker writes no other dtype."""


@dataclass(frozen=True)
class Weights:
    """What came back of a job's trained weights."""

    n_params: int | None
    """Parameters counted on the host from the file; None: unverified."""
    tensors: int = 0
    data: bytes | None = field(default=None, repr=False)
    """The file itself, to keep with the run (only when it was counted)."""
    why: str | None = None
    """Why the count is unverified."""


def cap(max_params: int) -> int:
    """The largest file a job may return: every allowed parameter as float32, and a header."""
    return 8 + MAX_HEADER + ITEMSIZE * max_params


def read(out: Path, max_params: int) -> Weights:
    """The weights file in OUT, counted; never an exception: a missing or malformed file
    is a Weights whose count is None and whose `why` says what was wrong."""
    try:
        f = open_regular(out / WEIGHTS, cap(max_params))
        if f is None:
            return Weights(None, why="no weights came back")
        with f:
            data = f.read(cap(max_params) + 1)
        n, tensors = count(data, max_params)
    except ProtocolError as e:
        return Weights(None, why=f"the weights file is unreadable: {e}")
    return Weights(n, tensors, data)


def count(data: bytes, max_params: int) -> tuple[int, int]:
    """(parameters, tensors) of a safetensors file's bytes; ProtocolError if it is not one
    whose every entry is float32 and whose byte ranges tile its data exactly."""
    if len(data) < 8 or len(data) > cap(max_params):
        raise ProtocolError(f"{len(data)} bytes: not a safetensors file under the cap")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER or 8 + size > len(data):
        raise ProtocolError(f"a header of {size} bytes in a file of {len(data)}")
    try:
        header = json.loads(data[8:8 + size], parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("the header is not JSON") from None
    if type(header) is not dict or len(header) > MAX_TENSORS + 1:
        raise ProtocolError(f"the header is not an object of at most {MAX_TENSORS} tensors")
    body = len(data) - 8 - size
    ranges, total = [], 0
    for name, entry in header.items():
        if name == "__metadata__":  # free text the format allows; counted for nothing
            continue
        if len(name) > MAX_NAME:
            raise ProtocolError(f"a tensor name over {MAX_NAME} characters")
        entry = exact_keys(entry, {"dtype", "shape", "data_offsets"})
        if entry["dtype"] != "F32":
            raise ProtocolError(f"{name[:60]}: dtype {str(entry['dtype'])[:20]}, not F32")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if (type(shape) is not list or len(shape) > MAX_DIMS
                or any(type(d) is not int or not 0 <= d <= max_params for d in shape)):
            raise ProtocolError(f"{name[:60]}: a shape of at most {MAX_DIMS} sizes")
        numel = math.prod(shape)
        total += numel
        if total > max_params:
            raise ProtocolError(f"more than {max_params} parameters")
        if (type(offsets) is not list or len(offsets) != 2
                or any(type(o) is not int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= body
                or offsets[1] - offsets[0] != ITEMSIZE * numel):
            raise ProtocolError(f"{name[:60]}: data_offsets do not match its shape and the "
                                "file")
        ranges.append(offsets)
    end = 0
    for begin, stop in sorted(ranges):  # the data, tiled: no hole, no overlap, no tail
        if begin != end:
            raise ProtocolError("the tensors' byte ranges overlap or leave a hole")
        end = stop
    if end != body:
        raise ProtocolError(f"the tensors hold {end} bytes of {body}")
    return total, len(ranges)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")
