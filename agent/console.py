"""What every command shares: the two consoles, usage errors, progress bars, the dataset."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from agent.inert import text
from descartes_core import dataset
from descartes_core.dataset import Dataset, SimulationSpec

# piped output (CI, nohup, `| less`) gets wide lines rather than rich's 80 columns
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
out = Console(width=_WIDTH)
err = Console(stderr=True)


class UsageError(Exception):
    """A bad request from the user: reported in one line, exit code 2."""


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} ms"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
    )


def progress_epochs() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(), console=err, transient=True,
    )


def dataset_at(data_dir: Path | None, spec: SimulationSpec | None = None
               ) -> tuple[dataset.Dataset, Path]:
    """--data-dir, or the dataset of `spec` (default: the default dataset), simulated and
    cached the first time it is asked for; (dataset, its directory)."""
    if data_dir is not None:
        return dataset.load(data_dir), data_dir
    spec = spec or SimulationSpec()
    with progress() as bar:
        task = bar.add_task("simulating the dataset", total=spec.burn_in_ms + spec.duration_ms)
        path, _ = dataset.cached_or_simulated(spec, lambda ms: bar.advance(task, ms))
    return dataset.load(path), path


def say(message: str) -> None:
    """A line on stdout, literally: no markup, and no control character reaches the terminal
    (messages quote candidates' names and the sandbox's errors)."""
    out.print(text(message), markup=False, highlight=False, soft_wrap=True)


def dataset_by_fingerprint(cfg_data_dir: str, fingerprint: str) -> Dataset:
    """The run's dataset: its recorded directory, else any cached one with the fingerprint."""
    candidates = [Path(cfg_data_dir)] if cfg_data_dir else []
    candidates += sorted((dataset.cache_root() / "datasets").glob("*"))
    for path in candidates:
        try:  # meta.json first: loading every cached dataset whole would take minutes
            recorded = json.loads((path / "meta.json").read_text()).get("fingerprint")
            if recorded not in (None, fingerprint):  # None: computed on load (own data)
                continue
            ds = dataset.load(path)
        except (OSError, ValueError, dataset.DatasetError):
            continue
        if ds.meta["fingerprint"] == fingerprint:
            return ds
    raise UsageError(f"the run's dataset (fingerprint {fingerprint[:16]}) is neither in "
                     f"{cfg_data_dir or 'its data directory'} nor in the cache "
                     f"{dataset.cache_root()}: simulate it again or restore the directory")
