"""The per-run model repository: real git, one branch per iteration, references resolved."""

import git
import pytest

from agent.repository import ModelRepository, RefError, slugify


@pytest.fixture
def repo(tmp_path):
    r = ModelRepository(tmp_path / "run")
    for n, name, body in [(1, "LTC cell", "a = 1\n"), (2, "GRU-ODE (midpoint)", "a = 2\n")]:
        branch = r.branch_name(n, name)
        r.commit(branch, {"model.py": body, "proposal.json": "{}"}, f"iteration {n}: {name}")
    return r


def test_each_iteration_is_a_branch_from_the_root(repo):
    its = repo.iterations()
    assert [(n, b) for n, b, _ in its] == [(1, "iter/0001-ltc-cell"),
                                          (2, "iter/0002-gru-ode-midpoint")]
    g = git.Repo(repo.path)
    for *_, head in its:
        parents = g.commit(head).parents
        assert len(parents) == 1 and parents[0] == repo.root  # not stacked on each other
    assert repo.read("2") == "a = 2\n"


def test_results_land_on_the_same_branch_and_best_is_tagged(repo):
    branch = "iter/0001-ltc-cell"
    sha = repo.commit(branch, {"results.json": '{"recovered": 90}'}, "iteration 1 scored 90/160")
    repo.tag_best(branch)
    assert repo.resolve("1") == (branch, sha)
    assert repo.read("1", "results.json") == '{"recovered": 90}'
    assert git.Repo(repo.path).tags["best"].commit.hexsha == sha


def test_references_by_branch_hash_prefix_and_number(repo):
    _, branch, head = repo.iterations()[0]
    assert repo.resolve(branch) == (branch, head)
    assert repo.resolve(head[:8]) == (branch, head)
    assert repo.resolve("0001") == (branch, head)
    with pytest.raises(RefError, match="names no iteration"):
        repo.resolve("7")
    with pytest.raises(RefError, match="names no iteration"):
        repo.resolve("main")
    with pytest.raises(RefError, match=r"no results\.json"):
        repo.read("2", "results.json")


def test_diff_between_iterations(repo):
    d = repo.diff("1", "2")
    assert "-a = 1" in d and "+a = 2" in d


def test_reopening_keeps_history(repo):
    again = ModelRepository(repo.path)
    assert again.iterations() == repo.iterations()


def test_slugs_are_safe_branch_names():
    assert slugify("Sparse NODE + shooting!") == "sparse-node-shooting"
    assert slugify("???") == "model"


def _names_an_iteration(prefix: str) -> bool:
    return prefix.isdigit() and int(prefix) in (1, 2)  # the fixture's iteration numbers


def _prefixes(repo) -> dict[str, str]:
    """4-character prefixes of the commits the fixture already made (the root is never a hit)."""
    return {c.hexsha[:4]: c.hexsha for _, branch, _ in repo.iterations()
            for c in repo.repo.iter_commits(branch) if c != repo.root}


def test_a_prefix_shared_by_two_commits_is_ambiguous(repo):
    seen = _prefixes(repo)
    for k in range(3000):  # a 4-hex collision comes after ~320 commits on average
        sha = repo.commit("iter/0001-ltc-cell", {"model.py": f"a = {k}\n"}, f"edit {k}")
        if sha[:4] in seen and not _names_an_iteration(sha[:4]):
            break
        seen[sha[:4]] = sha
    else:
        pytest.fail("no shared 4-character prefix in 3000 commits")
    with pytest.raises(RefError, match="is ambiguous: it matches 2 commits"):
        repo.resolve(sha[:4])
    assert repo.resolve(sha[:12])[1] == sha


def test_a_hash_prefix_of_digits_only_is_not_taken_for_an_iteration_number(repo):
    # CI once failed when the shared prefix above happened to be "3863".
    seen = _prefixes(repo)
    for k in range(200):  # about one hash in seven starts with four digits
        sha = repo.commit("iter/0001-ltc-cell", {"model.py": f"a = {k}\n"}, f"edit {k}")
        if sha[:4].isdigit() and sha[:4] not in seen and not _names_an_iteration(sha[:4]):
            break
        seen[sha[:4]] = sha
    else:
        pytest.fail("no hash starting with four digits in 200 commits")
    assert repo.resolve(sha[:4]) == ("iter/0001-ltc-cell", sha)
    assert repo.resolve("0001")[0] == "iter/0001-ltc-cell"


def test_dropping_the_iterations_the_ledger_does_not_hold(repo):
    (repo.path / ".git" / "index.lock").write_text("")  # left by a kill -9 mid-commit
    assert repo.drop_unrecorded({1}) == ["iter/0002-gru-ode-midpoint"]
    assert [n for n, _, _ in repo.iterations()] == [1]
    repo.commit(repo.branch_name(2, "again"), {"model.py": "b = 1\n"}, "redone")
    assert repo.read("2") == "b = 1\n"
