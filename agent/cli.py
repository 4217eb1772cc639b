"""The `descartes-agent` command line."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agent import browse_cli, library_cli, live, search_cli
from agent.console import UsageError, dataset_at, err, out, progress, progress_epochs
from agent.inert import fmt
from agent.repository import RefError
from agent.runs import RunNotFound
from descartes_core import circuit, dataset, rhythm
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
sandbox_app = typer.Typer(help="The sandbox that runs generated model code.",
                          no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
search_cli.register(app)
browse_cli.register(app)
library_cli.register(app)
def _summary(ds: dataset.Dataset, where: Path) -> None:
    meta = ds.meta
    n, t, _ = ds.inputs.shape
    regimes = Counter(r.get("regime", "?") for r in meta.get("trials", []))
    split = {k: len(v) for k, v in meta["split"].items()}
    out.print(f"[bold]{where}[/]: {n} trials × {t} ms, split {split}", highlight=False)
    if meta.get("split_rule"):  # a user's data: the split it was given, and why
        out.print(f"  split rule: {meta['split_rule']}", markup=False, highlight=False)
    if regimes:
        out.print("  regimes: " + ", ".join(f"{k} {v}" for k, v in sorted(regimes.items())))
    if ds.spikes is not None:
        out.print(f"  mean TC rate {rhythm.mean_rate(ds.spikes, (0, t)).mean():.1f} Hz")
    out.print(f"  fingerprint {meta['fingerprint'][:16]}")


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Data directory to write.")] = Path(
        "data/default"),
    trials: Annotated[int, typer.Option(
        "--trials", min=4, help="Number of trials (≥ 4: one each for train, validation, "
        "selection and test).")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the trial design and the split.")] = 0,
    duration_ms: Annotated[int, typer.Option(
        "--duration-ms", min=10, help="Recorded length of each trial (1-ms bins).")] = 2000,
    force: Annotated[bool, typer.Option(help="Replace --out if it already holds files.")] = False,
    jitter: Annotated[float, typer.Option(
        min=0.0, max=circuit.JITTER, help="Half-width of the secret draw's factor on each "
        "maximal conductance; 0 gives the published circuit exactly.")] = circuit.JITTER,
    circuit_seed: Annotated[str | None, typer.Option(
        "--circuit-seed", help="The secret to draw the circuit from (≥ 32 hex digits, as in "
        "a dataset's meta.json circuit.secret), to reproduce that dataset; default: a fresh "
        "one, which the cache keeps for these settings on this machine.")] = None,
) -> None:
    """Simulate the TC–nRt circuit and write a data directory.

    Writes inputs.npy (N,T,21), outputs.npy (N,T,20), biovars.npy (N,T,160), spikes.npy,
    initial_state.npz and meta.json. The circuit is drawn around the published one from a
    secret that stays in meta.json (no job ever receives it). Datasets are cached by a
    fingerprint of their settings, so asking again copies the cached one, same draw.
    """
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not force:
        raise UsageError(f"{out_dir}: already exists and is not empty (--force replaces it)")
    if circuit_seed is not None and jitter == 0.0:
        raise UsageError("--jitter 0 is the published circuit: it has no --circuit-seed")
    try:
        secret = None if circuit_seed is None else circuit.parse_secret(circuit_seed)
    except ValueError as e:
        raise UsageError(f"--circuit-seed: {e}") from None
    spec = SimulationSpec(n_trials=trials, duration_ms=duration_ms, seed=seed, jitter=jitter,
                          circuit_secret=secret)
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"simulating {trials} trials", total=spec.burn_in_ms + duration_ms)
        path, cached = dataset.cached_or_simulated(spec, lambda ms: bar.advance(task, ms))
    dataset.copy(path, out_dir)
    ds = dataset.load(out_dir)
    how = "from the cache" if cached else "simulated"
    out.print(f"{how} in {time.perf_counter() - start:.1f} s")
    _summary(ds, out_dir)
    drawn, _ = dataset.circuit_draw(ds.meta)
    out.print(f"  circuit: drawn, jitter ±{drawn:g} (its secret is in meta.json)" if drawn
              else "  circuit: published (jitter 0)", highlight=False)


@app.command()
def baselines(
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="A data directory (default: the default simulated dataset).")] = None,
    time_budget: Annotated[float, typer.Option(
        "--time-budget", min=0.0, help="Training budget in hours for each trained baseline "
        "(LSTM, plain neural ODE); fractions allowed.")] = 0.25,
    max_epochs: Annotated[int, typer.Option(min=1, help="Epoch cap per trained baseline.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and batch order.")] = 0,
    threshold: Annotated[float, typer.Option(
        "--recovery-threshold", help="Held-out probe r that counts as recovered.")] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score the reference baselines: Volterra–Laguerre, an LSTM and a plain neural ODE.

    Each on the selection trials (what a search decides from) and on the test trials (the
    baselines are not searched, so their test figures may be shown), side by side, with
    95 % intervals over trials. Beyond controls: variables with r ≥ the threshold and above
    every control (the untrained null, a random network of the same width, the inputs' own
    Laguerre probe) by the margin; beside it what each control recovers.
    """
    from descartes_core import baselines as bl
    from descartes_core.training import TrainConfig

    ds, _ = dataset_at(data_dir)
    cfg = TrainConfig(time_budget_h=time_budget, max_epochs=max_epochs, seed=seed)
    with progress_epochs() as bar:
        tasks: dict[str, int] = {}

        def progress(name, epoch, total, train_loss, val_loss):
            if not err.is_terminal:  # CI, nohup: a plain line per epoch instead of a bar
                err.print(f"{name}: epoch {epoch}/{total} train {train_loss:.4f} "
                          f"val {val_loss:.4f}", highlight=False)
                return
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total, loss="")
            bar.update(tasks[name], completed=epoch,
                       loss=f"train {train_loss:.3f} val {val_loss:.3f}")

        rows = bl.run(ds, cfg, threshold=threshold, progress=progress)
    if as_json:
        out.print_json(data=rows)
        return
    table = Table(title=f"baselines, each cell selection | test trials (recovered: r ≥ "
                  f"{threshold}; [95 % interval over trials])")
    for col in ("model", "beyond controls", "recovered /160", "spike r",
                "controls recover\nnull·random·inputs", "latent", "time", "seed's figure"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for row in rows:
        ref = bl.SEED_REFERENCE[row["name"]]
        ref_text = f"{ref[0]:.3f} / {ref[1] if ref[1] is not None else '-'}"
        sel, test = row.get("selection"), row.get("test") or {}
        if sel is None:
            table.add_row(row["name"], f"failed: {row['failure']}", *[""] * 5, ref_text)
            continue
        cells = [" | ".join(x) for x in zip(*(  # the two splits side by side
            (live.count(s, "beyond_controls"), live.count(s, "recovered"),
             fmt(s.get("spike_corr")), "·".join(fmt(s.get(k)) for k in (
                 "null_recovered", "random_recovered", "input_recovered"))) for s in (sel, test)),
            strict=True)]
        table.add_row(row["name"], *cells, str(sel["latent_dim"]), f"{row['wall_s']:.0f} s",
                      ref_text)
    out.print(table)
    vl = rows[0]
    out.print("input baseline (Laguerre features of the inputs): "
              f"{fmt(vl['selection']['recovered'])}/160 recovered on the selection trials, "
              f"{fmt((vl.get('test') or {}).get('recovered'))}/160 on the test trials",
              highlight=False)


@app.command()
def check(
    model: Annotated[Path, typer.Argument(help="A candidate's source file.")],
    sandbox: Annotated[str, typer.Option(
        help="auto, docker or process (auto: docker when an engine answers).")] = "auto",
    allow_degraded: Annotated[bool, typer.Option(
        "--allow-degraded", help="Without docker and bubblewrap, check with less isolation "
        "instead of stopping.")] = False,
    latent_dim: Annotated[int | None, typer.Option(
        min=1, help="latent_dim to build with (default: the file's LATENT_DIM, else 64).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run the static policy and the sandboxed shape check on one model file.

    Exit code 0: accepted; 1: rejected (every error is printed); 2: usage error.
    """
    from sandbox import runner

    if sandbox not in ("auto", "docker", "process"):
        raise UsageError(f"--sandbox {sandbox}: expected auto, docker or process")
    if not model.is_file():
        raise UsageError(f"{model}: no such file")
    try:
        source = model.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{model}: unreadable ({e})") from None
    try:
        # a shape check trains nothing: bubblewrap without cgroups may run it
        backend = runner.resolve_backend(sandbox, allow_degraded, trains=False)
        if backend == "docker":
            runner.docker_client(log=lambda msg: err.print(msg, highlight=False))
    except runner.SandboxError as e:
        raise UsageError(str(e)) from None
    from descartes_core.contract import source_width

    width = latent_dim or source_width(source)
    result = runner.check(source, latent_dim=width, backend=backend)
    if as_json:
        out.print_json(data={"accepted": result.ok, "isolation": result.isolation,
                             "error": result.error, "check": result.check})
    elif result.ok:
        c = result.check
        # the worker runs in the candidate's interpreter: what it reports is its claim
        out.print(f"[green]accepted[/] {model} ({result.isolation}); the worker's claims: "
                  f"{c['n_params']} parameters, forward {c['forward_ms']:.0f} ms on a "
                  "(4, 200, 21) batch", soft_wrap=True)
        for w in c["warnings"]:
            out.print(f"  warning: {escape(w)}", highlight=False)
    else:
        out.print(f"[red]rejected[/] {model} ({result.error['kind']}, {result.isolation}):",
                  soft_wrap=True)
        for line in result.error["message"].splitlines():
            out.print(f"  {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if result.ok else 1)


@sandbox_app.command("build-image")
def sandbox_build_image(
    force: Annotated[bool, typer.Option(help="Rebuild even if the image exists.")] = False,
) -> None:
    """Build the docker sandbox image locally (debootstrap + docker import; no registry).

    Needs root and debootstrap; takes about a minute. `run` and `check` build it on first
    use anyway.
    """
    from sandbox import docker_backend

    c = docker_backend.client()
    if c is None:
        raise UsageError("no docker engine answers")
    if docker_backend.has_image(c) and not force:
        out.print(f"{docker_backend.image_tag()} already exists (--force rebuilds it)")
        return
    try:
        tag = docker_backend.build_image(c, log=lambda m: err.print(m, highlight=False))
    except docker_backend.BuildError as e:
        raise UsageError(str(e)) from None
    out.print(f"built {tag}")


@data_app.command("check")
def data_check(
    data_dir: Annotated[Path, typer.Argument(help="A data directory.")],
) -> None:
    """Validate a data directory and print its summary (exit code 2 when it is unusable)."""
    _summary(dataset.load(data_dir), data_dir)


def main() -> None:
    try:
        app()
    except (DatasetError, UsageError, RefError, RunNotFound) as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
