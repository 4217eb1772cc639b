"""The run config: every setting of a run, with the one default the CLI and the presets
derive from. Stored in the ledger, so that a run resumes with its own settings. Nothing
here imports torch (the CLI's --help reads it).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field

from descartes_core.dataset import SimulationSpec

EXECUTORS = ("local", "ray")
"""agent.executor's executors (the CLI checks --executor against these without importing it)."""
OBJECTIVES = ("beyond_controls", "recovered", "above_null", "beyond_random", "beyond_inputs")
"""descartes_core.scoring.COUNTS, in the CLI's order (a test holds them equal)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run is made of; stored in the ledger so that it can be resumed."""

    run_dir: str = "generated_models"
    """Folder holding one sub-folder per run (model repository, ledger, exchanges)."""
    data_dir: str = ""
    """The data directory the run was started on (checked by fingerprint on resume)."""
    templates: tuple[str, ...] = ("T0", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8")
    """Templates of phase 1."""
    architect: str = "offline"
    """offline, anthropic, openai or replay: the source of phase 2's proposals."""
    model: str | None = None
    """The LLM architect's model (None: its provider's default)."""
    base_url: str | None = None
    """The LLM architect's server (None: the provider's public API)."""
    price: tuple[float, float] | None = None
    """Dollars per million (input, output) tokens (None: list prices of Claude models)."""
    replay_from: str | None = None
    """The replay architect's source: a run folder holding exchanges.jsonl."""
    max_expansions: int = 10
    """Architect proposals of phase 2."""
    target: int = 120
    """Stop when a candidate recovers this many variables (r ≥ threshold, selection trials)."""
    objective: str = "beyond_controls"
    """What counts as improvement (scoring.COUNTS): beyond_controls (r ≥ threshold and above
    every control by `margin`), recovered, above_null, beyond_random or beyond_inputs."""
    margin: float = 0.05
    """How far a variable's r must exceed every control's to count as beyond controls."""
    finalists: int = 3
    """Candidates scored on the locked test trials when the search stops."""
    final_seeds: int = 3
    """Trainings of each finalist (the search's own and reruns with other seeds)."""
    patience: int = 3
    """Stop after this many expansions without improvement."""
    max_total_hours: float = 48.0
    """Stop when training time, all candidates together, exceeds this."""
    max_cost: float | None = None
    """Stop when architect calls have cost this many dollars (None: no limit)."""
    max_repairs: int = 2
    """Repairs of a candidate rejected by the parser, the policy or the shape check."""
    sandbox: str = "auto"
    """auto, docker or process (bubblewrap)."""
    allow_degraded: bool = False
    """Run candidates with less than full isolation when neither docker nor bubblewrap
    works (never chosen silently)."""
    device: str = "auto"
    """Training device: auto (CUDA when present), cpu, cuda or cuda:N."""
    latent_dim: int = 64
    """latent_dim every candidate is built with."""
    threshold: float = 0.5
    """Held-out r that counts as recovered."""
    seed: int = 0
    """Seed of training and of the offline architect."""
    parallel: int = 1
    """Candidates training at once (1: the serial search, each proposal seeing every
    earlier result)."""
    executor: str = "local"
    """local (slots on this machine) or ray (Ray tasks, on a local instance or a cluster)."""
    ray_address: str | None = None
    """The Ray cluster to join (auto or HOST:PORT); None starts a local instance on
    127.0.0.1 for the run."""
    gpus_per_candidate: float = 1.0
    """GPUs per candidate on a GPU host or cluster (less than 1 packs several onto one)."""
    cpus_per_candidate: int = 1
    """CPU threads per candidate (one thread keeps a CPU score reproducible)."""
    library: str | None = None
    """An earlier run (its folder, or its id in run_dir) whose verified library blocks
    this run starts from; None: an empty library."""
    learn: bool = True
    """Mine, verify and offer library blocks (False: every candidate starts from scratch,
    the peers' way; for comparisons)."""
    archive: bool = True
    """Draw each expansion's parent and inspirations from the quality-diversity archive on
    islands (agent.population); False: the best and second best, the old top-two."""
    train: dict = field(default_factory=dict)
    """TrainConfig overrides (time_budget_h, max_epochs, …)."""

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if k == "templates" else v
                      for k, v in d.items() if k in known})


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]




@dataclass(frozen=True)
class Preset:
    """A named set of overrides of the run config (and the data it simulates)."""

    data: SimulationSpec
    """The simulated dataset the preset runs on."""
    templates: tuple[str, ...]
    """Templates of phase 1, fastest first."""
    train: dict
    """TrainConfig overrides."""
    max_expansions: int
    """Architect proposals after the templates (at most)."""
    finalists: int
    """Finalists scored on the test trials (at most)."""
    final_seeds: int
    """Trainings per finalist (at most)."""


PRESETS = {
    "quick": Preset(
        data=SimulationSpec(n_trials=48, duration_ms=500, burn_in_ms=300.0),
        templates=("T5", "T1"),
        # 30 s per training at lr 0.01: T5 (0.1 s an epoch) trains until it stops early, T1
        # gets 4–5 epochs; the verifier's quarter of 30 s is too short for T1 to pass it,
        # so it is off here
        train={"max_epochs": 200, "time_budget_h": 30 / 3600, "batch_size": 8, "lr": 0.01,
               "verify": False},
        max_expansions=3, finalists=2, final_seeds=2),
    "smoke": Preset(
        data=SimulationSpec(n_trials=24, duration_ms=300, burn_in_ms=300.0),
        templates=("T1", "T5"),
        train={"max_epochs": 3, "time_budget_h": 0.02, "batch_size": 8, "verify_steps": 40,
               "verify_window": 50},
        max_expansions=3, finalists=1, final_seeds=1),
}
"""quick: the embedded default of `make run`, a small real search in about 5 minutes on
2 CPU cores, in which the best model learns. smoke: every stage in about a minute (its
models learn next to nothing: it shows that the loop works, not what it finds)."""
