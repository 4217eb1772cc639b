"""The library: blocks mined from scored candidates, verified in the sandbox, committed on
the run's `library` branch, offered, imported by a later candidate and carried by its job."""

import json

import pytest

from agent.library import BRANCH, Library, imports_of
from agent.library_mine import extract
from agent.repository import ModelRepository
from sandbox import policy, runner

HEAD = "import math\nimport torch\nimport torch.nn as nn\n\nSCALE = {scale}\n\n"
HELPERS = '''
def soft_step(field, z, u):
    """One damped step."""
    return z + SCALE * field(z, u)


class Decay(nn.Module):
    """dz/dt = -z / tau + W u."""

    def __init__(self, n_inputs, width):
        super().__init__()
        self.w = nn.Linear(n_inputs, width)
        self.log_tau = nn.Parameter(torch.zeros(width) + math.log(10.0))

    def forward(self, z, u):
        return -z / torch.exp(self.log_tau) + self.w(u)
'''
MODEL = '''
PROPERTIES = {{"family": "lib-test", "time_handling": "standard_ode",
              "gradient_strategy": "direct", "latent_structure": "unconstrained",
              "input_coupling": "additive", "solver": "euler"}}


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self.{attr} = Decay(n_inputs, latent_dim)
        self.readout = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        z = x.new_zeros(x.shape[0], self.readout.in_features) if state is None else state
        out = []
        for t in range(x.shape[1]):
            z = soft_step(self.{attr}, z, x[:, t])
            out.append(z)
        latents = torch.stack(out, dim=1)
        return self.readout(latents), latents, z
'''


def source(scale=0.5, attr="cell", helpers=HELPERS):
    return HEAD.format(scale=scale) + helpers + MODEL.format(attr=attr)


def test_blocks_are_standalone_and_equal_up_to_names_not_constants():
    a = {b.name: b for b in extract(source())}
    assert set(a) == {"soft_step", "Decay"}  # Model is the contract's, never a block
    assert "SCALE = 0.5" in a["soft_step"].code and "import torch" not in a["soft_step"].code
    assert "import math" in a["Decay"].code and "SCALE" not in a["Decay"].code
    renamed = source(helpers=HELPERS.replace("soft_step", "nudge").replace("self.w", "self.v"))
    b = {blk.name: blk for blk in extract(renamed.replace("soft_step", "nudge"))}
    assert b["nudge"].canon == a["soft_step"].canon and b["Decay"].canon == a["Decay"].canon
    other = {blk.name: blk for blk in extract(source(scale=0.25))}
    assert other["soft_step"].canon != a["soft_step"].canon  # a constant is the block's own
    assert other["Decay"].canon == a["Decay"].canon


def _scored(repo, n, src, library=None, files=None):
    check = runner.check(src, backend="process", library=library)
    assert check.ok, check.error
    branch = repo.branch_name(n, f"c{n}")
    repo.commit(branch, {"model.py": src, "check.json": json.dumps({"check": check.check}),
                         **(files or {})}, f"iteration {n}")
    return {"number": n, "branch": branch, "scores": {"beyond_controls": n},
            "beyond_controls": n, "recovered": 10 * n}


def _learn(lib, repo, its):
    def read(it):
        return (repo.read(it["branch"]),
                json.loads(repo.read(it["branch"], "check.json"))["check"]["blocks"])

    def verify(blocks, imports):
        return runner.verify_blocks(blocks, library=imports, backend="process")

    return lib.learn(its, read, verify)


def test_a_block_is_verified_committed_offered_imported_and_carried(tmp_path):
    repo = ModelRepository(tmp_path / "run")
    lib = Library(repo, lambda it: it["scores"]["beyond_controls"])
    its = [_scored(repo, 1, source()), _scored(repo, 2, source(attr="field"))]
    changes = _learn(lib, repo, its)
    assert sorted(changes) == ["Decay: entered", "soft_step: entered"]
    (decay,) = [e for e in lib.offered() if e.name == "Decay"]
    assert [u.number for u in decay.uses] == [1, 2]  # mined from both candidates
    assert decay.signature() == "Decay(21, 64)(Tensor[2, 64], Tensor[2, 21]) -> Tensor[2, 64]"
    tree = repo.repo.heads[BRANCH].commit.tree
    assert {b.name for b in tree.blobs} >= {"index.json", "Decay.py", "soft_step.py"}

    later = (HEAD.format(scale=0.5) + "from library import Decay, soft_step\n"
             + MODEL.format(attr="cell"))
    assert policy.check(later, library=lib.names()).accepted
    refused = policy.check(later, library=frozenset({"Decay"}))
    assert [v.rule for v in refused.violations] == ["import"]
    assert "'soft_step' is not a verified library block" in refused.violations[0].message
    files = lib.for_source(later)
    assert set(files) == {"Decay", "soft_step"}
    assert not runner.check(later, backend="process").ok  # without the files: no import
    got = runner.check(later, backend="process", library=files)
    assert got.ok, got.error
    assert got.check["blocks"] == {}  # imported blocks are uses, not new blocks

    head = lib.head
    third = _scored(repo, 3, later, files, {"proposal.json": json.dumps(
        {"library_commit": head})})
    _learn(lib, repo, [*its, third])
    assert [u.number for u in next(e for e in lib.offered() if e.name == "Decay").uses] == \
        [1, 2, 3]
    assert lib.head != head  # the evidence changed: a commit
    assert imports_of(repo, third["branch"], later) == files  # what replay and the finals carry

    fresh = Library(ModelRepository(tmp_path / "next"))
    carried = fresh.carry(Library(repo), "run-1",
                          lambda blocks, imports: {n: (True, "") for _, n, _ in blocks})
    assert sorted(carried) == ["Decay: carried over from run-1", "soft_step: carried over from "
                               "run-1"]
    assert Library(ModelRepository(tmp_path / "next")).names() == {"Decay", "soft_step"}


NAN_STEP = HELPERS.replace("return z + SCALE * field(z, u)",
                           "return z + SCALE * field(z, u) / (z - z)")


def test_a_block_that_fails_verification_never_enters(tmp_path):
    repo = ModelRepository(tmp_path / "run")
    lib = Library(repo)
    src = source(helpers=NAN_STEP)
    check = runner.check(src, backend="process")  # the model itself fails its check
    assert not check.ok and check.error["kind"] == "nan"
    contract = {"kind": "function", "init": [], "init_kw": {},
                "inputs": [{"callable": True}, {"shape": [2, 8], "dtype": "float32"},
                           {"shape": [2, 8], "dtype": "float32"}], "outputs": [[2, 8]]}
    (step,) = [b for b in extract(src) if b.name == "soft_step"]
    ok, why = runner.verify_blocks([(step.code, "soft_step", contract)],
                                   backend="process")["soft_step"]
    assert not ok and why.startswith("nan: ")

    good = _scored(repo, 1, source())
    blocks = json.loads(repo.read(good["branch"], "check.json"))["check"]["blocks"]
    blocks["soft_step"]["outputs"] = [[3, 3]]  # a contract the block does not keep
    repo.commit(good["branch"], {"check.json": json.dumps({"check": {"blocks": blocks}})}, "x")
    changes = _learn(lib, repo, [good])
    assert "Decay: entered" in changes
    assert any(c.startswith("soft_step: failed verification") for c in changes)
    assert lib.names() == {"Decay"}
    tree = repo.repo.heads[BRANCH].commit.tree
    assert "soft_step.py" not in {b.name for b in tree.blobs}
    assert not policy.check("from library import soft_step\n", library=lib.names()).accepted


@pytest.mark.parametrize("bad", [
    {"kind": "module", "init": [], "init_kw": {}, "inputs": [], "outputs": [[10**9]]},
    {"kind": "function", "init": [], "init_kw": {"__x": {"value": 1}}, "inputs": [],
     "outputs": [[1]]},
    {"kind": "function", "init": [], "init_kw": {}, "inputs": [{"value": "rm -rf"}],
     "outputs": [[1]]},
])
def test_a_forged_contract_breaks_the_protocol(bad):
    from sandbox import protocol

    with pytest.raises(protocol.ProtocolError):
        protocol.contracts({"x": bad})


def test_a_run_learns_a_block_a_later_candidate_imports_and_replay_is_exact(
        monkeypatch, capsys, smoke_run):
    from test_cli import run

    from agent import runs

    code, out, err, tmp_path = smoke_run
    assert code == 0, out + err
    assert "library: " in out and "entered" in out
    r = runs.open_run(tmp_path)
    lib = Library(r.repo)
    assert lib.offered() and all(e.status == "verified" for e in lib.offered())
    rows = r.ledger.iterations(r.id)
    importing = [row for row in rows if json.loads(
        r.repo.read(row["branch"], "proposal.json")).get("library_commit")]
    assert importing, "no candidate imported a library block"
    child = importing[0]
    names = imports_of(r.repo, child["branch"], r.repo.read(child["branch"]))
    assert names and "from library import" in r.repo.read(child["branch"])
    earlier = {n for e in lib.entries.values() for n in [e.origin]}
    assert min(earlier) < child["number"]  # learned from an earlier candidate
    code, out, _ = run(monkeypatch, capsys, "library", "list", "--run-dir", str(tmp_path))
    flat = " ".join(out.split())
    assert code == 0 and all(n in flat for n in names) and "used by" in flat
    code, out, _ = run(monkeypatch, capsys, "library", "show", next(iter(names)),
                       "--run-dir", str(tmp_path))
    assert code == 0 and "signature:" in out and "evidence:" in out
    if child["status"] == "scored":  # replay carries the files of its library commit
        code, out, err = run(monkeypatch, capsys, "replay", child["commit_sha"][:12],
                             "--run-dir", str(tmp_path))
        assert code == 0, out + err
        assert "identical" in out


def test_run_library_starts_a_new_run_from_an_earlier_runs_blocks(monkeypatch, capsys,
                                                                   smoke_run, tmp_path):
    from test_cli import run

    from agent import runs
    from agent.config import PRESETS
    from descartes_core.dataset import cached_or_simulated

    *_, earlier_dir = smoke_run
    earlier = runs.open_run(earlier_dir)
    verified = {e.name for e in Library(earlier.repo).entries.values()
                if e.status == "verified"}
    data, _ = cached_or_simulated(PRESETS["smoke"].data)
    code, _, err = run(monkeypatch, capsys, "run", "--data-dir", str(data), "--templates", "",
                       "--max-llm-expansions", "0", "--finalists", "0", "--sandbox", "process",
                       "--library", "nowhere", "--run-dir", str(tmp_path))
    assert code == 2 and "--library nowhere" in err and "Traceback" not in err
    code, out, err = run(monkeypatch, capsys, "run", "--data-dir", str(data), "--templates", "",
                         "--max-llm-expansions", "0", "--finalists", "0", "--sandbox",
                         "process", "--library", str(earlier.dir), "--run-dir", str(tmp_path))
    assert code == 0, out + err
    carried = Library(runs.open_run(tmp_path).repo)
    assert {e.name for e in carried.offered()} == verified  # each verified again, here
    assert all(e.carried == earlier.dir.name and not e.uses for e in carried.offered())
    code, out, _ = run(monkeypatch, capsys, "library", "list", "--run-dir", str(tmp_path))
    assert code == 0 and f"carried over from {earlier.dir.name}" in " ".join(out.split())
