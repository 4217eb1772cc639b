"""Library blocks are untrusted code, as candidates are: a block passes the static policy
before it is verified, a job runs only the blocks its candidate imports, one learning
step's verification has one time bound, and `run --library` checks every carried block
against the current policy (issue 21, finding 5). Real bubblewrap jobs, real git."""

import time

import pytest
from test_library import HEAD, MODEL, source

from agent.library import BRANCH, Library, policy_faults
from agent.library_mine import extract
from agent.repository import ModelRepository
from sandbox import runner
from sandbox.blocks import needed
from sandbox.process import Limits

TENSOR = {"shape": [2, 8], "dtype": "float32"}
ONE_IN_ONE_OUT = {"kind": "function", "init": [], "init_kw": {}, "inputs": [TENSOR],
                  "outputs": [[2, 8]]}
LEAK = '''import torch


def leak(z):
    """Looks like a squashing step; takes a torch attribute from a string."""
    return 2.0 * getattr(torch, "tanh")(z)
'''
EVIL = 'raise RuntimeError("a block the candidate does not import ran")\n'


def _library(tmp_path, helpers: str, verify):
    """A library that learns the top-level helpers `helpers` (one scored candidate, each
    helper observed on ONE_IN_ONE_OUT) through `verify`: (library, what changed)."""
    repo = ModelRepository(tmp_path / "run")
    lib = Library(repo)
    names = [b.name for b in extract(helpers)]
    it = {"number": 1, "branch": "iter/0001-x", "scores": {}}
    changes = lib.learn([it], lambda it: (helpers, dict.fromkeys(names, ONE_IN_ONE_OUT)),
                        verify)
    return lib, changes


def test_a_block_the_policy_refuses_never_reaches_verification(tmp_path):
    # verified in the sandbox it would pass: the policy is what keeps it out
    ok, why = runner.verify_blocks([(LEAK, "leak", ONE_IN_ONE_OUT)])["leak"]
    assert ok, why
    asked = []

    def verify(blocks, imports):
        asked.extend(n for _, n, _ in blocks)
        return runner.verify_blocks(blocks, library=imports)

    lib, changes = _library(tmp_path, LEAK + '\n\ndef double(z):\n    return 2.0 * z\n', verify)
    assert asked == ["double"]
    (line,) = [c for c in changes if c.startswith("leak: ")]
    assert line.startswith("leak: refused by the policy: ") and "getattr" in line
    assert "\n" not in line
    assert lib.names() == {"double"}
    (leak,) = [e for e in lib.entries.values() if e.name == "leak"]
    assert leak.status == "rejected" and "getattr" in leak.reason and not leak.code


def test_every_template_block_passes_the_policy():
    from descartes_core.contract import template_sources

    blocks = [b for src in template_sources().values() for b in extract(src)]
    assert blocks
    assert {b.name: policy_faults(b.code, frozenset()) for b in blocks} == {
        b.name: "" for b in blocks}


def test_a_job_carries_only_the_blocks_its_candidate_imports():
    library = {"B": "def B(x):\n    return x\n",
               "A": "from library import B\n\n\ndef A(x):\n    return B(x)\n",
               "C": "def C(x):\n    return x\n",
               "D": "def D(x):\n    return x\n"}
    src = "from library import A\n\n\ndef f(x):\n    from library import D\n    return D(x)\n"
    assert list(needed(src, library)) == ["B", "A", "D"]  # A's import too, in library order
    assert needed("import torch\n", library) == {}


def _blocks_and_candidate():
    files = {b.name: b.code for b in extract(source())}
    later = HEAD.format(scale=0.5) + "from library import Decay, soft_step\n" + \
        MODEL.format(attr="cell")
    return {**files, "Evil": EVIL}, later


def test_a_shape_check_runs_only_the_blocks_its_candidate_imports():
    files, later = _blocks_and_candidate()
    got = runner.check(later, library=files)
    assert got.ok, got.error


def test_the_worker_runs_only_the_blocks_a_candidate_imports_even_when_sent_more(backend):
    files, later = _blocks_and_candidate()
    # no policy, every block sent: the worker itself must leave Evil unrun
    got = runner.run_job("check", later, {"latent_dim": 64, "library": files}, backend=backend)
    assert got.ok, got.error
    importing = later.replace("import Decay, soft_step", "import Decay, Evil, soft_step")
    got = runner.run_job("check", importing, {"latent_dim": 64, "library": files},
                         backend=backend)
    assert not got.ok and "does not import ran" in got.error["message"]  # Evil is live


SPIN = '''

def spin{k}(z):
    """Loads at once; never returns when called (as a verification calls it)."""
    n = 0
    while z.shape[0] > 0:
        n = n + 1
    return z * n
'''
GOOD = '''

def double(z):
    return 2.0 * z


def shift(z):
    return z + 1.0
'''


@pytest.fixture
def jobs(monkeypatch):
    """The block names of every verification job run (the real jobs run)."""
    seen = []
    real = runner.run_job

    def spy(task, source, config, *a, **kw):
        seen.append([b["name"] for b in config.get("blocks", [])])
        return real(task, source, config, *a, **kw)

    monkeypatch.setattr(runner, "run_job", spy)
    return seen


def test_a_hanging_block_is_refused_once_and_the_others_verified_in_the_bound(
        tmp_path, jobs, backend):
    lim, budget = Limits(timeout_s=20.0), 60.0

    def verify(blocks, imports):
        return runner.verify_blocks(blocks, library=imports, lim=lim, budget_s=budget,
                                    backend=backend)

    helpers = GOOD.replace("def shift", SPIN.format(k="").strip() + "\n\n\ndef shift")
    start = time.monotonic()
    lib, changes = _library(tmp_path, helpers, verify)
    assert time.monotonic() - start < budget + 30  # a generous guard: the bound held
    (spin,) = [e for e in lib.entries.values() if e.name == "spin"]
    assert spin.status == "rejected" and spin.reason.startswith("timeout: "), changes
    assert lib.names() == {"double", "shift"}
    assert sum("spin" in job for job in jobs) == 1  # never redone alone
    lib.learn([{"number": 2, "branch": "iter/0002-x", "scores": {}}],
              lambda it: (helpers, dict.fromkeys(["double", "spin", "shift"], ONE_IN_ONE_OUT)),
              verify)
    assert sum("spin" in job for job in jobs) == 1 and "spin" not in lib.names()


def test_one_step_of_verification_has_one_time_bound(tmp_path, jobs):
    lim, budget = Limits(timeout_s=20.0), 25.0
    helpers = SPIN.format(k=1) + SPIN.format(k=2) + GOOD
    start = time.monotonic()
    lib, changes = _library(tmp_path, helpers, lambda blocks, imports: runner.verify_blocks(
        blocks, library=imports, lim=lim, budget_s=budget))
    assert time.monotonic() - start < budget + 30  # a generous guard: the bound held
    assert len(jobs) == 1, jobs  # the first hang used the step's time: no second job
    (spin1,) = [e for e in lib.entries.values() if e.name == "spin1"]
    assert spin1.status == "rejected" and spin1.reason.startswith("timeout: ")
    # what the bound left unverified is neither refused nor offered: a later step tries it
    assert {e.name for e in lib.entries.values()} == {"spin1"}
    assert "double: not verified within the step's time bound, left out for now" in changes


def test_run_library_checks_every_carried_block_against_the_policy(monkeypatch, capsys,
                                                                   tmp_path):
    from test_cli import run

    from agent import runs
    from agent.config import PRESETS
    from descartes_core.dataset import cached_or_simulated

    repo = ModelRepository(tmp_path / "earlier")
    earlier = Library(repo)
    blocks = {b.name: b for b in extract(source())}
    x = {"shape": [2, 64], "dtype": "float32"}
    u = {"shape": [2, 21], "dtype": "float32"}
    contracts = {"Decay": {"kind": "module", "init": [{"value": 21}, {"value": 64}],
                           "init_kw": {}, "inputs": [x, u], "outputs": [[2, 64]]},
                 "soft_step": {"kind": "function", "init": [], "init_kw": {},
                               "inputs": [{"callable": True}, x, u], "outputs": [[2, 64]]}}
    earlier.learn([{"number": 1, "branch": "iter/0001-x", "scores": {}}],
                  lambda it: (source(), contracts),
                  lambda bs, imports: {n: (True, "") for _, n, _ in bs})
    assert earlier.names() == {"Decay", "soft_step"}
    # the branch is anyone's to write: the index still says verified
    poisoned = blocks["soft_step"].code.replace(
        "SCALE * field(z, u)", 'SCALE * getattr(field, "__call__")(z, u)')
    assert poisoned != blocks["soft_step"].code
    repo.commit(BRANCH, {"soft_step.py": poisoned}, "library: an edit by hand")
    assert Library(repo).names() == {"Decay", "soft_step"}
    data, _ = cached_or_simulated(PRESETS["smoke"].data)
    code, out, err = run(monkeypatch, capsys, "run", "--data-dir", str(data), "--templates", "",
                         "--max-llm-expansions", "0", "--finalists", "0", "--sandbox",
                         "process", "--library", str(repo.path), "--run-dir",
                         str(tmp_path / "runs"))
    assert code == 0, out + err
    carried = Library(runs.open_run(tmp_path / "runs").repo)
    assert carried.names() == {"Decay"}
    assert "soft_step: refused by the policy: " in " ".join(out.split())  # the run's log
    code, out, _ = run(monkeypatch, capsys, "library", "list", "--run-dir",
                       str(tmp_path / "runs"))
    flat = " ".join(out.split())
    assert code == 0 and "rejected" in flat and "refused by the policy" in flat


FRAMER = '''import json

_dumps = json.dumps


def _framed(o, *a, **k):
    if isinstance(o, dict) and isinstance(o.get("check"), dict) and "verdicts" in o["check"]:
        for name, v in o["check"]["verdicts"].items():
            if name != "double":
                v.update(ok=False, kind="nan", message="framed")
    return _dumps(o, *a, **k)


json.dumps = _framed


def double(x):
    return 2.0 * x
'''
HONEST = '''def triple(x):
    return 3.0 * x
'''


def test_a_block_cannot_get_another_refused_by_rewriting_its_verdict(backend):
    """Found by a red team (policy bypassed, as a block that escaped it would): the blocks
    of one job share an interpreter, so one rewrote the others' verdicts as failures. A
    failure seen beside other blocks is judged again by a job of the block's own."""
    got = runner.verify_blocks([(FRAMER, "double", ONE_IN_ONE_OUT),
                                (HONEST, "triple", ONE_IN_ONE_OUT)], backend=backend)
    assert got["triple"] == (True, ""), got
