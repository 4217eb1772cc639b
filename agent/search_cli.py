"""The search command: `run`, a new run or a resumed one, and its final summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from agent.browse_cli import RunDir, finals_table, iteration_table
from agent.config import EXECUTORS, OBJECTIVES, PRESETS, RunConfig
from agent.console import UsageError, dataset_at, dataset_by_fingerprint, out, say
from descartes_core.dataset import Dataset

ARCHITECTS = ("offline", "anthropic", "openai", "replay")
D = RunConfig()  # the defaults every option below shows


def _price(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--price {text}: expected INPUT,OUTPUT dollars per million tokens, "
                         "e.g. 3,15") from None
    return a, b


def run(
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="A data directory (default: the default simulated dataset, "
        "simulated once and cached).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="quick: a small real search, about 5 minutes on 2 CPU cores; smoke: every "
        "stage in about a minute, on data too small to learn from (each sets data, templates, "
        "training and expansions; --max-llm-expansions overrides its expansions).")] = None,
    architect: Annotated[str, typer.Option(
        help="Proposal source of phase 2: offline (built in, no network), anthropic, openai "
        "(any OpenAI-compatible server: vLLM, Ollama, llama.cpp) or replay.")] = "offline",
    use_llm: Annotated[bool, typer.Option(
        "--use-llm", help="Shorthand for --architect anthropic.")] = False,
    api_key: Annotated[str | None, typer.Option(
        "--api-key", help="The LLM's key (default: ANTHROPIC_API_KEY or OPENAI_API_KEY).",
        show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        help="The LLM's model (default: claude-sonnet-5-5 for anthropic).")] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="The LLM server's address, e.g. http://node7:8000/v1.")] = None,
    price: Annotated[str | None, typer.Option(
        help="INPUT,OUTPUT dollars per million tokens (default: list prices of Claude "
        "models, 0 for others).")] = None,
    replay_from: Annotated[Path | None, typer.Option(
        "--replay-from", help="With --architect replay: the run folder whose recorded "
        "exchanges answer the prompts.")] = None,
    max_expansions: Annotated[int | None, typer.Option(
        "--max-llm-expansions", min=0, help="Architect proposals after the templates "
        f"(default: {D.max_expansions}, or the preset's).", show_default=False)] = None,
    patience: Annotated[int, typer.Option(
        min=1, help="Stop after this many expansions without a new best.")] = D.patience,
    time_budget: Annotated[float, typer.Option(
        "--time-budget", min=0.0, help="Training hours per architecture.")] = 2.0,
    target: Annotated[int, typer.Option(
        "--target-recovery", min=1, max=160, help="Stop when a candidate recovers this many "
        "variables (r ≥ 0.5 on selection trials).")] = D.target,
    objective: Annotated[str, typer.Option(
        help="What counts as improvement: beyond-controls (r ≥ 0.5 and above the untrained "
        "null, the random network and the inputs by --margin), recovered, above-null, "
        "beyond-random or beyond-inputs.")] = D.objective.replace("_", "-"),
    margin: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="How far r must exceed every control's for beyond-controls.")
    ] = D.margin,
    finalists: Annotated[int, typer.Option(
        min=0, help="Candidates scored on the locked test trials when the search stops.")
    ] = D.finalists,
    final_seeds: Annotated[int, typer.Option(
        "--final-seeds", min=1, help="Trainings of each finalist (its own and reruns with "
        "other seeds), reported as mean ± sd.")] = D.final_seeds,
    max_total_hours: Annotated[float, typer.Option(
        "--max-total-hours", min=0.0, help="Stop after this much training, all told.")] = 48.0,
    max_cost: Annotated[float | None, typer.Option(
        "--max-cost", min=0.0, help="Stop when architect calls have cost this many dollars.")
    ] = None,
    max_repairs: Annotated[int, typer.Option(
        "--max-repairs", min=0, help="Repairs of a rejected candidate by its architect.")] = 2,
    templates: Annotated[str, typer.Option(
        help="Comma-separated templates of phase 1 ('' for none).")
    ] = "T0,T1,T2,T3,T4,T5,T6,T7,T8",
    sandbox: Annotated[str, typer.Option(
        help="auto (docker when an engine answers, else bubblewrap), docker or process "
        "(bubblewrap).")] = "auto",
    allow_degraded: Annotated[bool, typer.Option(
        "--allow-degraded", help="Without docker, and without a bubblewrap whose cgroups cap "
        "each job's memory and tasks as a whole, run candidates with less isolation instead "
        "of stopping.")] = False,
    device: Annotated[str, typer.Option(
        help="Training device: auto (CUDA when present), cpu, cuda, cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of training and of the architect.")] = 0,
    parallel: Annotated[int, typer.Option(
        min=1, help="Candidates training at once; each finished one is recorded and the next "
        "proposal sees it. 1: the serial search.")] = D.parallel,
    executor: Annotated[str, typer.Option(
        help="Where candidates train: local (slots on this machine, one GPU share each) or "
        "ray (Ray tasks, on a local instance or the cluster at --ray-address).")
    ] = D.executor,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --executor ray: join this cluster (auto or HOST:PORT) "
        "instead of starting a local instance on 127.0.0.1.", show_default=False)] = None,
    gpus_per_candidate: Annotated[float, typer.Option(
        "--gpus-per-candidate", min=0.0, help="GPUs per candidate on GPU hosts (0.5 packs two "
        "onto one GPU).")] = D.gpus_per_candidate,
    cpus_per_candidate: Annotated[int, typer.Option(
        "--cpus-per-candidate", min=1, help="CPU threads per candidate (1 keeps a CPU score "
        "reproducible across thread counts).")] = D.cpus_per_candidate,
    library: Annotated[str | None, typer.Option(
        "--library", help="Start from the verified library blocks of an earlier run (its "
        "folder, or its id in --run-dir); each is verified again here.",
        show_default=False)] = None,
    learn: Annotated[bool, typer.Option(
        "--learn/--no-learn", help="Mine verified, importable blocks from the scored "
        "candidates and offer them to the architect (the library).")] = D.learn,
    archive: Annotated[bool, typer.Option(
        "--archive/--no-archive", help="Breed each expansion from a parent and inspirations "
        "drawn from a quality-diversity archive on islands (off: the best two).")
    ] = D.archive,
    run_dir: RunDir = Path("generated_models"),
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Continue this run (after a crash or kill) with its own settings: "
        "finished iterations are kept, the one in flight is redone.")] = None,
) -> None:
    """Run the search: templates, then architect expansions, each on its own git branch.

    Every candidate is checked statically and in the sandbox, trained in the sandbox and
    scored on held-out trials beside its controls (untrained null, input baseline).
    """
    from agent import runs
    from agent.config import RunConfig, new_run_id

    if resume is not None:
        r = runs.open_run(run_dir, resume)
        if r.state() == "running":
            raise UsageError(f"run {r.id} is still running (pid {r.row()['pid']} on "
                             f"{r.row()['host']}): one driver per run")
        row = r.row()
        cfg = RunConfig.from_dict({**row["config"], "run_dir": str(run_dir)})
        api_key = _api_key(cfg.architect, api_key)
        ds = dataset_by_fingerprint(cfg.data_dir, row["data_fingerprint"])
        run_id = r.id
        say(f"resuming run {run_id}: {len(r.ledger.iterations(run_id))} iterations kept")
    else:
        if use_llm:
            architect = "anthropic"
        if architect not in ARCHITECTS:
            raise UsageError(f"--architect {architect}: expected {', '.join(ARCHITECTS)}")
        api_key = _api_key(architect, api_key)
        if preset is not None and preset not in PRESETS:
            raise UsageError(f"--preset {preset}: expected {', '.join(PRESETS)}")
        if sandbox not in ("auto", "docker", "process"):
            raise UsageError(f"--sandbox {sandbox}: expected auto, docker or process")
        if executor not in EXECUTORS:
            raise UsageError(f"--executor {executor}: expected {', '.join(EXECUTORS)}")
        if ray_address is not None and executor != "ray":
            raise UsageError("--ray-address needs --executor ray")
        if objective.replace("-", "_") not in OBJECTIVES:
            raise UsageError(f"--objective {objective}: expected "
                             f"{', '.join(o.replace('_', '-') for o in OBJECTIVES)}")
        if architect == "replay" and (replay_from is None or not replay_from.is_dir()):
            raise UsageError("--architect replay needs --replay-from RUN_FOLDER (a run's "
                             "folder holding exchanges.jsonl)")
        chosen = tuple(t.strip().upper() for t in templates.split(",") if t.strip())
        unknown = sorted(set(chosen) - set(_template_ids()))
        if unknown:
            raise UsageError(f"--templates: unknown {', '.join(unknown)} (T0 … T8)")
        train = {"time_budget_h": time_budget}
        spec = None
        if preset is not None:
            p = PRESETS[preset]
            spec, chosen, train = p.data, p.templates, dict(p.train)
            max_expansions = p.max_expansions if max_expansions is None else max_expansions
            finalists, final_seeds = min(finalists, p.finalists), min(final_seeds, p.final_seeds)
        ds, path = dataset_at(data_dir, spec)
        if max_expansions is None:
            max_expansions = D.max_expansions
        cfg = RunConfig(run_dir=str(run_dir), data_dir=str(path), templates=chosen,
                        architect=architect, model=model, base_url=base_url,
                        price=_price(price), replay_from=replay_from and str(replay_from),
                        max_expansions=max_expansions, patience=patience, target=target,
                        objective=objective.replace("-", "_"), margin=margin,
                        finalists=finalists, final_seeds=final_seeds,
                        max_total_hours=max_total_hours,
                        max_cost=max_cost, max_repairs=max_repairs, sandbox=sandbox,
                        allow_degraded=allow_degraded,
                        device=device, seed=seed, train=train, parallel=parallel,
                        executor=executor, ray_address=ray_address,
                        gpus_per_candidate=gpus_per_candidate,
                        cpus_per_candidate=cpus_per_candidate,
                        library=library and str(_library_run(run_dir, library)), learn=learn,
                        archive=archive)
        run_id = new_run_id()
    _search(cfg, ds, run_id, api_key)


def _library_run(run_dir: Path, ref: str) -> Path:
    """The folder of the run `ref` names (a folder holding a run, or a run id)."""
    from agent import runs
    from agent.library import BRANCH

    path = Path(ref)
    if not (path / ".git").is_dir():
        try:
            path = runs.open_run(run_dir, ref).dir
        except runs.RunNotFound as e:
            raise UsageError(f"--library {ref}: {e}") from None
    import git

    if BRANCH not in git.Repo(path).heads:
        raise UsageError(f"--library {ref}: that run has no library (branch '{BRANCH}')")
    return path.resolve()


def _api_key(architect: str, api_key: str | None) -> str | None:
    if architect not in ("anthropic", "openai"):
        return None
    env = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[architect]
    api_key = api_key or os.environ.get(env)
    if architect == "anthropic" and not api_key:
        raise UsageError(f"the anthropic architect needs --api-key or {env} (or use the "
                         "offline architect, the default)")
    return api_key


def _search(cfg, ds: Dataset, run_id: str, api_key: str | None) -> None:
    from agent import live, llm, report, runs
    from agent.driver_lock import RunLocked
    from agent.orchestrator import Orchestrator
    from sandbox.runner import SandboxError

    run_path = Path(cfg.run_dir) / run_id
    say("preparing: the input baseline (Volterra–Laguerre; fitted once per dataset, then "
        "cached) and the sandbox")
    try:
        arch = llm.build(cfg.architect, llm.LLMConfig(
            cfg.architect, model=cfg.model, api_key=api_key, base_url=cfg.base_url,
            price=cfg.price and tuple(cfg.price)) if cfg.architect in ("anthropic", "openai")
            else None, run_path, cfg.seed, cfg.replay_from and Path(cfg.replay_from))
        view = live.monitor(out, say)
        orch = Orchestrator(cfg, ds, run_id=run_id, architect=arch, monitor=view)
    except (SandboxError, llm.ArchitectError, RunLocked) as e:
        raise UsageError(str(e)) from None
    except ConnectionError as e:  # Ray's, for a cluster that does not answer
        raise UsageError(f"--ray-address {cfg.ray_address}: {str(e).splitlines()[0]}"
                         ) from None
    with view:
        summary = orch.run()
    _final_summary(summary, orch)
    say(f"report: {report.write(runs.Run(run_id, orch.dir))}")


def _final_summary(s: dict, orch) -> None:
    from agent import live
    from agent.standing import ranked

    out.rule("search finished")
    say(f"stopped: {s['stop']} after {s['iterations']} iterations ({s['expansions']} "
         f"expansions), {s['hours']:.2f} h of training, architect cost ${s['cost_usd']:.2f}")
    best, objective = s["best"], s.get("objective", orch.cfg.objective)
    if best:  # agent.standing's best: its full scores are the iteration's
        scores = next((it["scores"] for it in orch.iterations
                       if it["number"] == best["number"]), None) or best
        say(f"best: {best['name']} ({best['branch']}), by {live.label(objective)}: "
            f"{live.verdict(scores, objective)}")
    else:
        say("best: nothing was scored without a training failure")
    out.print(iteration_table(s["history"], "history"))
    if s.get("finals"):  # summarised in the ledger's order: shown in the standing's
        out.print(finals_table(s["finals"], [it["number"] for it in
                                             ranked(orch.iterations, objective)]))
        say("the search chose on the selection trials; only these finalists were ever scored "
            "on the test trials, after it stopped")
    elif best:
        say("final, held out: no finalists were scored on the test trials (--finalists 0)")
    if s["exhausted"]:
        say("exhausted families: " + ", ".join(s["exhausted"]))
    for p in s["patterns"][:8]:
        say(f"  pattern [{p['type']}] {p['description']}")
    say(f"browse: descartes-agent log --run-dir {orch.cfg.run_dir} --run {orch.run_id}   "
         f"(or git -C {orch.dir} log --all --oneline)")


def _template_ids() -> list[str]:
    from descartes_core.contract import template_sources

    return list(template_sources())


def register(app: typer.Typer) -> None:
    app.command()(run)
