"""Best-so-far against expansions, with and without the library and the archive, for three
architect seeds, measured in one run of this script (the offline architect, the quick
preset, the process sandbox, no finalists).

The peer is the search without both (`--no-learn --no-archive`: the best two candidates'
sources, every candidate from scratch, as the LLM program-search systems we know keep
it). For each configuration and seed it prints the default objective's best-so-far
(beyond controls, selection trials) after each expansion, the recovered count of that
best, and the share of expansions after the first that import a library block; then the
mean over seeds, and writes the curves as an SVG plot.

    .venv/bin/python benchmarks/bench_search.py [--seeds 0 1 2] [--expansions N]
        [--configs peer "library + archive"] [--out search.svg]

--expansions raises the quick preset's 3 expansions (and the patience with it, so that
every run uses all of them): each adds about 40 s per run on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import runs
from agent.standing import standing

CLI = [sys.executable, "-c", "from agent.cli import main; main()"]
CONFIGS = (("peer: neither", ["--no-learn", "--no-archive"]),
           ("library", ["--learn", "--no-archive"]),
           ("archive", ["--no-learn", "--archive"]),
           ("library + archive", ["--learn", "--archive"]))


def measure(extra: list[str], seed: int, expansions: int | None) -> dict:
    longer = [] if expansions is None else ["--max-llm-expansions", str(expansions),
                                            "--patience", str(expansions)]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([*CLI, "run", "--preset", "quick", "--sandbox", "process",
                        "--finalists", "0", "--seed", str(seed), "--run-dir", d, *extra,
                        *longer],
                       check=True, capture_output=True, text=True)
        (r,) = runs.runs(Path(d))
        rows = r.ledger.iterations(r.id)
        imports = [bool(json.loads(r.repo.read(row["branch"], "proposal.json"))
                        .get("library_commit")) for row in rows if row["architect"] != "template"]
    curve, recovered = [], []
    for k, row in enumerate(rows):
        if row["architect"] == "template" and k + 1 < len(rows) \
                and rows[k + 1]["architect"] == "template":
            continue
        best = standing(rows[:k + 1], "beyond_controls").best
        curve.append(best["scores"]["beyond_controls"] if best else 0)
        recovered.append(best["scores"]["recovered"] if best else 0)
    later = imports[1:]
    return {"curve": curve, "recovered": recovered,
            "import_share": sum(later) / len(later) if later else 0.0}


def svg(results: dict[str, list[dict]], path: Path) -> None:
    w, h, pad = 520, 300, 40
    series = {name: [sum(c) / len(c) for c in zip(*(m["curve"] for m in ms), strict=False)]
              for name, ms in results.items()}
    top = max(1, max(max(v) for v in series.values()))
    n = max(len(v) for v in series.values())
    colours = ("#777", "#1f77b4", "#2ca02c", "#d62728")
    lines = []
    for (name, ys), colour in zip(series.items(), colours, strict=False):
        def y_of(y):
            return h - pad - y * (h - 2 * pad) / top

        pts = " ".join(f"{pad + i * (w - 2 * pad) / max(1, n - 1):.1f},{y_of(y):.1f}"
                       for i, y in enumerate(ys))
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{pts}"/><text x="{w - pad + 4}" y="{y_of(ys[-1]):.1f}" '
                     f'font-size="10" fill="{colour}">{name}</text>')
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 120}" height="{h}">'
                    f'<text x="{pad}" y="20" font-size="12">best-so-far beyond controls (mean '
                    f'over seeds) against expansions (0: the templates)</text>'
                    + "".join(lines) + "</svg>")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--expansions", type=int, default=None,
                    help="expansions per run (default: the quick preset's 3)")
    ap.add_argument("--configs", nargs="+", default=[name for name, _ in CONFIGS],
                    help="configurations to run, the peer always first (default: all four)")
    ap.add_argument("--out", type=Path, default=Path("search.svg"))
    args = ap.parse_args()
    chosen = [(n, e) for n, e in CONFIGS if n == CONFIGS[0][0] or n in args.configs]
    results: dict[str, list[dict]] = {}
    for name, extra in chosen:
        for seed in args.seeds:
            m = measure(extra, seed, args.expansions)
            results.setdefault(name, []).append(m)
            print(f"{name:18s} seed {seed}: best-so-far {m['curve']} (recovered "
                  f"{m['recovered'][-1]}), later expansions importing a block "
                  f"{m['import_share']:.0%}", flush=True)
    peer = results[CONFIGS[0][0]]
    peer_final = sum(m["curve"][-1] for m in peer) / len(peer)
    print(f"\n{'configuration':18s} final best-so-far (mean)  vs peer   recovered  imports")
    for name, ms in results.items():
        final = sum(m["curve"][-1] for m in ms) / len(ms)
        rec = sum(m["recovered"][-1] for m in ms) / len(ms)
        share = sum(m["import_share"] for m in ms) / len(ms)
        print(f"{name:18s} {final:24.2f}  {final - peer_final:+6.2f}   {rec:9.1f}  {share:6.0%}")
    svg(results, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
