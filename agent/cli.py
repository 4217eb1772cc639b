"""The `descartes-agent` command line."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from descartes_core import dataset, rhythm
from descartes_core.dataset import DatasetError, SimulationSpec

app = typer.Typer(
    help="Agentic, code-generating architecture search scored on the hidden state of a "
    "simulated thalamic TC–nRt circuit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and validate data directories.", no_args_is_help=True)
app.add_typer(data_app, name="data")
out = Console()
err = Console(stderr=True)


class UsageError(Exception):
    """A bad request from the user: reported in one line, exit code 2."""


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} ms"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
    )


def _copy_dir(src: Path, dst: Path) -> None:
    """Copy a data directory into place atomically (temporary sibling, then rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        for f in src.iterdir():
            shutil.copy2(f, tmp / f.name)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _summary(ds: dataset.Dataset, where: Path) -> None:
    meta = ds.meta
    n, t, _ = ds.inputs.shape
    regimes = Counter(r.get("regime", "?") for r in meta.get("trials", []))
    split = {k: len(v) for k, v in meta["split"].items()}
    out.print(f"[bold]{where}[/]: {n} trials × {t} ms, split {split}")
    if regimes:
        out.print("  regimes: " + ", ".join(f"{k} {v}" for k, v in sorted(regimes.items())))
    if ds.spikes is not None:
        out.print(f"  mean TC rate {rhythm.mean_rate(ds.spikes, (0, t)).mean():.1f} Hz")
    out.print(f"  fingerprint {meta['fingerprint'][:16]}")


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Data directory to write.")] = Path(
        "data/default"),
    trials: Annotated[int, typer.Option("--trials", min=3, help="Number of trials (≥ 3).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the trial design and the split.")] = 0,
    duration_ms: Annotated[int, typer.Option(
        "--duration-ms", min=10, help="Recorded length of each trial (1-ms bins).")] = 2000,
    force: Annotated[bool, typer.Option(help="Replace --out if it already holds files.")] = False,
) -> None:
    """Simulate the TC–nRt circuit and write a data directory.

    Writes inputs.npy (N,T,21), outputs.npy (N,T,20), biovars.npy (N,T,160), spikes.npy,
    initial_state.npz and meta.json. Datasets are cached by a fingerprint of their
    parameters, seed and trial count, so asking again copies the cached one.
    """
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise UsageError(f"{out_dir}: already exists and is not empty (--force replaces it)")
    spec = SimulationSpec(n_trials=trials, duration_ms=duration_ms, seed=seed)
    start = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"simulating {trials} trials", total=spec.burn_in_ms + duration_ms)
        path, cached = dataset.cached_or_simulated(spec, lambda ms: bar.advance(task, ms))
    _copy_dir(path, out_dir)
    ds = dataset.load(out_dir)
    how = "from the cache" if cached else "simulated"
    out.print(f"{how} in {time.perf_counter() - start:.1f} s")
    _summary(ds, out_dir)


@data_app.command("check")
def data_check(
    data_dir: Annotated[Path, typer.Argument(help="A data directory.")],
) -> None:
    """Validate a data directory and print its summary (exit code 2 when it is unusable)."""
    _summary(dataset.load(data_dir), data_dir)


def main() -> None:
    try:
        app()
    except (DatasetError, UsageError) as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
