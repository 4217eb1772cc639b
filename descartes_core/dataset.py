"""Data directories: simulate one, write it, load and validate one, cache by fingerprint.

A data directory (``shared/DESIGN.md``) holds ``inputs.npy`` (N, T, 21), ``outputs.npy``
(N, T, 20), ``biovars.npy`` (N, T, 160), all float32, and ``meta.json``. A simulated one
also holds ``spikes.npy`` (N, T, 20) uint8, the raw TC spike counts per 1-ms bin, and
``initial_state.npz``, the full circuit state at t = 0 (Decision 2).

A simulated dataset's circuit is drawn (``circuit.draw``) from a 128-bit secret made with
it: meta.json's "circuit" keeps the secret, jitter, factors and drawn values on the host
beside the biovars; a job receives arrays only. The cache keeps one draw per spec on a
machine. A meta without a secret (jitter 0, or older) is the published circuit.

Outputs are the TC spike counts filtered with a causal exponential kernel, τ = 10 ms, in
Hz (each spike adds 100 Hz that decays): a model's output at t may only depend on inputs
up to t, and an acausal (e.g. Gaussian) rate would leak ~3σ of the future into the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from descartes_core import circuit, rhythm, trials, variables
from descartes_core.circuit import JITTER, CircuitParams
from descartes_core.events import RATE_TAU_MS

FORMAT = "descartes-dataset/1"
SECRET_ENV = "DESCARTES_CIRCUIT_SECRET"
"""The secret a simulated dataset draws its circuit from when its spec names none (the
test suite pins one, so its data is the same on every machine); unset: a fresh one."""
OUTPUT_TAU_MS = RATE_TAU_MS
CORE_FILES = ("inputs.npy", "outputs.npy", "biovars.npy", "meta.json")
SHAPES = {"inputs.npy": 21, "outputs.npy": 20, "biovars.npy": 160}
SPLITS = ("train", "val", "selection", "test")
"""Train fits, validation stops early and picks probe penalties, selection is what the
search decides from, test is locked until the run's finalists are scored."""
SPLIT_FRACTIONS = {"val": 0.15, "selection": 0.125, "test": 0.125}
"""Shares of each regime's trials; train gets the rest."""
_SOURCES = ("channels.py", "circuit.py", "circuit_kernel.py", "trials.py", "dataset.py")


class DatasetError(Exception):
    """A data directory that cannot be used; the message names the file and the fault."""


@dataclass(frozen=True)
class SimulationSpec:
    """What a simulated dataset is made from; its hash is the cache key."""

    n_trials: int = 256
    """Number of trials (at least 4: one each for train, val, selection and test)."""
    duration_ms: int = 2000
    """Recorded length of each trial in 1-ms bins (T), after the burn-in."""
    seed: int = 0
    """Seed of the trial design and of the four-way split."""
    burn_in_ms: float = circuit.BURN_IN_MS
    """Quiet burn-in before t = 0, with each trial's first input held."""
    circuit: CircuitParams = field(default_factory=CircuitParams)
    """The published circuit the dataset's circuit is drawn around (shared by every trial)."""
    jitter: float = JITTER
    """Half-width of the drawn factor on each maximal conductance; 0: `circuit` exactly."""
    circuit_secret: str | None = None
    """The secret of the draw (≥ 128 bits, hex; unused at jitter 0); None:
    $DESCARTES_CIRCUIT_SECRET, else a fresh one when the dataset is made, which the cache
    then keeps for this spec on this machine."""

    def cache_key(self) -> str:
        """Hash of the spec and of the simulator's source, so a code change misses the cache."""
        h = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
        here = Path(__file__).parent
        for name in _SOURCES:
            h.update((here / name).read_bytes())
        return h.hexdigest()[:20]


@dataclass
class Dataset:
    """The arrays of a data directory and its metadata."""

    inputs: np.ndarray
    outputs: np.ndarray
    biovars: np.ndarray
    meta: dict
    spikes: np.ndarray | None = None
    initial_state: dict[str, np.ndarray] | None = None

    def split(self, name: str) -> np.ndarray:
        """Trial indices of 'train', 'val', 'selection' or 'test'."""
        return np.asarray(self.meta["split"][name], dtype=np.intp)

    def regimes(self) -> list[str]:
        """Each trial's regime from the trial design ("all" where the data says none)."""
        records = self.meta.get("trials")
        n = len(self.inputs)
        if not isinstance(records, list) or len(records) != n:
            return ["all"] * n
        return [str(r.get("regime", "all")) if isinstance(r, dict) else "all" for r in records]

    def training_counts(self) -> tuple[np.ndarray | None, str | None]:
        """(counts, None): the TC spike counts per bin with the selection and test trials'
        zeroed, what a count loss may train on; (None, why) when this data has none that
        make its outputs (a user's data without ``spikes.npy``, or another smoothing)."""
        if self.spikes is None:
            return None, "this data directory has no spikes.npy"
        probe = self.split("train")[:2]
        if not np.allclose(rate_from_spikes(self.spikes[probe]), self.outputs[probe],
                           rtol=1e-3, atol=1e-2):
            return None, ("its outputs are not the spikes through the causal "
                          f"{OUTPUT_TAU_MS:g}-ms kernel")
        counts = self.spikes.astype(np.float32)
        counts[self.split("selection")] = 0.0
        counts[self.split("test")] = 0.0
        return counts, None

    def training_outputs(self) -> np.ndarray:
        """The outputs with the selection and test trials' zeroed: all that training may see."""
        out = self.outputs.copy()
        out[self.split("selection")] = 0.0
        out[self.split("test")] = 0.0
        return out


def rate_from_spikes(spikes: np.ndarray, tau_ms: float = OUTPUT_TAU_MS) -> np.ndarray:
    """Causal exponential rate (Hz) of (..., T, cells) counts per 1-ms bin."""
    return rhythm.ar1_filter(spikes, np.exp(-1.0 / tau_ms), 1000.0 / tau_ms)


def fingerprint(inputs, outputs, biovars, meta: dict) -> str:
    """Content hash of the arrays, the variable table and the split."""
    h = hashlib.sha256()
    for arr in (inputs, outputs, biovars):
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(memoryview(arr).cast("B"))
    h.update(json.dumps([meta.get("variables"), meta.get("split")], sort_keys=True).encode())
    return h.hexdigest()


def split_trials(strata: list[str], seed: int) -> dict[str, list[int]]:
    """The four-way split, shuffled within each stratum (regime), so every regime appears
    in every split; on small datasets each split still gets a trial, taken from train."""
    rng = np.random.default_rng([seed, 1])
    out: dict[str, list[int]] = {k: [] for k in SPLITS}
    for stratum in dict.fromkeys(strata):
        idx = list(rng.permutation([i for i, s in enumerate(strata) if s == stratum]))
        n = len(idx)
        for name in ("test", "selection", "val"):
            k = round(n * SPLIT_FRACTIONS[name])
            out[name] += idx[:k]
            idx = idx[k:]
        out["train"] += idx
    for name in ("test", "selection", "val"):
        if not out[name] and len(out["train"]) > 1:
            out[name].append(out["train"].pop())
    return {k: sorted(int(i) for i in v) for k, v in out.items()}


def derive_split(meta: dict, n: int) -> None:
    """Give a user's data directory the four-way split, by a seeded rule written into
    ``meta["split_rule"]``: with no split, `split_trials` over the regimes of
    ``meta["trials"]`` (one stratum without them), seed ``meta["seed"]`` (0); with a
    train/val/test split and no selection, the given test trials are shuffled (seed 0)
    and their first half becomes selection. The data directory itself is not changed."""
    seed = int(meta.get("seed", 0)) if isinstance(meta.get("seed", 0), int) else 0
    split = meta.get("split")
    if split is None:
        records = meta.get("trials")
        strata = [str(r.get("regime", "all")) if isinstance(r, dict) else "all"
                  for r in records] if isinstance(records, list) and len(records) == n \
            else ["all"] * n
        meta["split"] = split_trials(strata, seed)
        meta["split_rule"] = (f"no split given: split_trials by regime, seed {seed}, "
                              f"fractions {SPLIT_FRACTIONS}, train the rest")
    elif isinstance(split, dict) and "selection" not in split and isinstance(
            split.get("test"), list) and len(split["test"]) >= 2:
        test = [int(i) for i in np.random.default_rng([0, 2]).permutation(split["test"])]
        half = len(test) // 2
        meta["split"] = {**split, "selection": sorted(test[:half]), "test": sorted(test[half:])}
        meta["split_rule"] = ("train/val/test given: the test trials shuffled with seed 0, "
                              "the first half is selection, the rest stays test")


def simulate_dataset(
    spec: SimulationSpec, progress: Callable[[float], None] | None = None
) -> Dataset:
    """Design the trials, draw the circuit, run it and assemble a dataset (not yet written)."""
    inputs, records = trials.design(spec.n_trials, spec.duration_ms, spec.seed)
    secret = None
    if spec.jitter:
        secret = circuit.parse_secret(spec.circuit_secret or os.environ.get(SECRET_ENV)
                                      or circuit.new_secret())
    params, factors = circuit.draw(secret, spec.jitter, spec.circuit)
    res = circuit.simulate(inputs, params, burn_in_ms=spec.burn_in_ms, progress=progress)
    outputs = rate_from_spikes(res.tc_spikes).astype(np.float32)
    inputs = inputs.astype(np.float32)
    kl, gh = params.cell_factors()
    meta = {
        "format": FORMAT,
        "source": "simulated",
        "n_trials": spec.n_trials,
        "n_bins": spec.duration_ms,
        "dt_ms": 1.0,
        "seed": spec.seed,
        "inputs": {"channels": [f"drive{i:02d}" for i in range(20)] + ["gain"],
                   "units": "nA for drive00-19 (current into TC cell i); gain dimensionless"},
        "outputs": {"kind": "tc_rate", "unit": "Hz",
                    "smoothing": f"causal exponential, tau {OUTPUT_TAU_MS:g} ms"},
        "variables": variables.describe(),
        "split": split_trials([r["regime"] for r in records], spec.seed),
        "circuit": {**dataclasses.asdict(params), "jitter": spec.jitter, "secret": secret,
                    "factors": factors,
                    "g_kl_tc_per_cell_us": (params.g_kl_tc * kl).round(6).tolist(),
                    "g_h_tc_per_cell": (params.g_h_tc * gh).round(6).tolist(),
                    "connectivity": "ring", "m_H": "o1 + o2",
                    "integration": "exponential Euler, tabulated rate functions"},
        "simulation": {"burn_in_ms": spec.burn_in_ms, "cache_key": spec.cache_key()},
        "trials": records,
    }
    meta["fingerprint"] = fingerprint(inputs, outputs, res.biovars, meta)
    return Dataset(inputs, outputs, res.biovars, meta, res.tc_spikes, res.initial_state)


def circuit_draw(meta: dict) -> tuple[float, str | None]:
    """(jitter, secret) of a dataset's circuit; (0, None), the published circuit, for a
    dataset written before circuits were drawn, or a user's."""
    c = meta.get("circuit")
    if not isinstance(c, dict) or not c.get("secret"):
        return 0.0, None
    return float(c.get("jitter", 0.0)), str(c["secret"])


@contextlib.contextmanager
def _atomic_dir(out_dir: Path, replace: bool = True):
    """Yield a sibling temporary folder that becomes `out_dir` only if the block succeeds;
    replace=False keeps an existing `out_dir` (a cached draw: the first writer wins)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        if replace and out_dir.exists():
            shutil.rmtree(out_dir)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if replace or not (out_dir / "meta.json").exists():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write(ds: Dataset, out_dir: Path, replace: bool = True) -> None:
    """Write a data directory atomically (replace=False keeps one already there)."""
    with _atomic_dir(out_dir, replace) as tmp:
        np.save(tmp / "inputs.npy", ds.inputs)
        np.save(tmp / "outputs.npy", ds.outputs)
        np.save(tmp / "biovars.npy", ds.biovars)
        if ds.spikes is not None:
            np.save(tmp / "spikes.npy", ds.spikes)
        if ds.initial_state is not None:
            np.savez(tmp / "initial_state.npz", **ds.initial_state)
        (tmp / "meta.json").write_text(json.dumps(ds.meta, indent=1))


def copy(src: Path, out_dir: Path) -> None:
    """Copy a data directory (e.g. out of the cache) atomically."""
    with _atomic_dir(out_dir) as tmp:
        for f in Path(src).iterdir():
            shutil.copy2(f, tmp / f.name)


def cache_root() -> Path:
    """$DESCARTES_CACHE, else $XDG_CACHE_HOME/descartes-agent, else ~/.cache/descartes-agent."""
    if os.environ.get("DESCARTES_CACHE"):
        return Path(os.environ["DESCARTES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "descartes-agent"


def cached_or_simulated(
    spec: SimulationSpec, progress: Callable[[float], None] | None = None
) -> tuple[Path, bool]:
    """The cached data directory of `spec`, simulating it first if needed; (path, was_cached)."""
    path = cache_root() / "datasets" / spec.cache_key()
    if (path / "meta.json").exists():
        return path, True
    write(simulate_dataset(spec, progress), path, replace=False)
    return path, False


def _load_array(path: Path) -> np.ndarray:
    if not path.exists():
        raise DatasetError(f"{path}: missing")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several types for a damaged file
        raise DatasetError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise DatasetError(f"{path}: not a numeric array (dtype {getattr(arr, 'dtype', '?')})")
    return arr


def _check_finite(path: Path, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        n, t, c = (int(i) for i in np.argwhere(bad)[0])
        raise DatasetError(f"{path}: {int(bad.sum())} NaN/inf values "
                           f"(first at trial {n}, t={t}, channel {c})")


def _check_meta(path: Path, meta, n: int, t: int) -> None:
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    for key in ("variables", "dt_ms"):
        if key not in meta:
            raise DatasetError(f"{path}: missing key '{key}'")
    derive_split(meta, n)
    names = meta["variables"]
    if not isinstance(names, list) or len(names) != 160:
        raise DatasetError(f"{path}: 'variables' must list 160 records, got "
                           f"{len(names) if isinstance(names, list) else type(names).__name__}")
    for i, v in enumerate(names):
        if not isinstance(v, dict) or not {"name", "category", "timescale"} <= v.keys():
            raise DatasetError(f"{path}: variables[{i}] needs name, category and timescale")
    for key in ("n_trials", "n_bins"):
        want = n if key == "n_trials" else t
        if key in meta and meta[key] != want:
            raise DatasetError(f"{path}: {key} is {meta[key]} but the arrays have {want}")
    split = meta["split"]
    if not isinstance(split, dict) or set(split) != set(SPLITS):
        raise DatasetError(f"{path}: 'split' needs {', '.join(SPLITS)} lists of trial indices "
                           "(or train, val and test with at least 2 test trials, or none: "
                           "see the README's data format)")
    seen: set[int] = set()
    for name in SPLITS:
        idx = split[name]
        if not isinstance(idx, list) or not idx:
            raise DatasetError(f"{path}: split '{name}' must be a non-empty list")
        if any(not isinstance(i, int) or not 0 <= i < n for i in idx):
            raise DatasetError(f"{path}: split '{name}' has an index outside 0..{n - 1}")
        if seen & set(idx):
            raise DatasetError(f"{path}: split '{name}' shares trials with another split")
        seen |= set(idx)


def load(data_dir: Path | str, verify: bool = True) -> Dataset:
    """Load and validate a data directory; any fault raises DatasetError naming the file."""
    d = Path(data_dir)
    if not d.is_dir():
        raise DatasetError(f"{d}: no such data directory")
    arrays = {}
    for name, width in SHAPES.items():
        arr = _load_array(d / name)
        if arr.ndim != 3 or arr.shape[2] != width:
            raise DatasetError(f"{d / name}: expected shape (trials, time, {width}), "
                               f"got {arr.shape}")
        arrays[name] = arr
    n, t, _ = arrays["inputs.npy"].shape
    for name in ("outputs.npy", "biovars.npy"):
        n2, t2, _ = arrays[name].shape
        if n2 != n:
            raise DatasetError(f"{d / name}: {n2} trials but inputs.npy has {n}")
        if t2 != t:
            raise DatasetError(f"{d / name}: {t2} time steps but inputs.npy has {t}")
    for name, arr in arrays.items():
        _check_finite(d / name, arr)
    meta_path = d / "meta.json"
    if not meta_path.exists():
        raise DatasetError(f"{meta_path}: missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{meta_path}: unreadable ({e})") from None
    written = dict(meta)  # before a derived split: the file's own fingerprint covers this
    _check_meta(meta_path, meta, n, t)
    inputs, outputs, biovars = (arrays[k].astype(np.float32, copy=False) for k in SHAPES)
    if verify and "fingerprint" in meta and isinstance(written.get("variables"), list):
        if fingerprint(inputs, outputs, biovars, written) != meta["fingerprint"]:
            raise DatasetError(f"{meta_path}: fingerprint does not match the arrays "
                               "(a file changed after the dataset was written)")
    if "fingerprint" not in meta or "split_rule" in meta:  # the split is part of it
        meta["fingerprint"] = fingerprint(inputs, outputs, biovars, meta)
    spikes = np.load(d / "spikes.npy") if (d / "spikes.npy").exists() else None
    state = None
    if (d / "initial_state.npz").exists():
        with np.load(d / "initial_state.npz") as z:
            state = {k: z[k] for k in z.files}
    return Dataset(inputs, outputs, biovars, meta, spikes, state)
