"""The model repository: one git repository per run, one branch per iteration.

Branch ``iter/NNNN-<slug>`` starts from the repository's root commit and holds
``model.py``, ``proposal.json``, ``check.json`` and, once scored, ``results.json``;
the tag ``best`` follows the best iteration. References accepted everywhere: a
branch name, a commit hash or a unique prefix of one, or an iteration number.
"""

from __future__ import annotations

import re
from pathlib import Path

import git

AUTHOR = git.Actor("descartes-agent", "descartes-agent@localhost")
BRANCH = re.compile(r"^iter/(\d{4})-[a-z0-9-]+$")


class RefError(Exception):
    """A reference that names no iteration, or more than one."""


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40].strip("-") or "model"


class ModelRepository:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if (self.path / ".git").exists():
            self.repo = git.Repo(self.path)
            self._exclude()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.repo = git.Repo.init(self.path, initial_branch="main")
        # the run's other files live beside the work tree, never in an iteration's commit
        self._exclude()
        (self.path / "README.md").write_text(
            "# descartes-agent model repository\n\nOne branch per iteration: "
            "`git log --all --oneline` tells the story; `git show best` is the best model.\n")
        self.repo.index.add(["README.md"])
        self.repo.index.commit("model repository of one run", author=AUTHOR, committer=AUTHOR)

    EXCLUDED = ("ledger.sqlite*", "exchanges.jsonl", "report.html", "sealed/", "driver.lock",
                "flight.json")
    """The run's files beside the work tree, never in an iteration's commit (sealed/ holds
    the test-trial moments that only the finalists' scoring reads; flight.json what the
    driver has in flight)."""

    def _exclude(self) -> None:
        path = self.path / ".git" / "info" / "exclude"
        path.parent.mkdir(exist_ok=True)
        have = path.read_text().split() if path.exists() else []
        if not set(self.EXCLUDED) <= set(have):
            path.write_text("\n".join(dict.fromkeys([*have, *self.EXCLUDED])) + "\n")

    @property
    def root(self) -> git.Commit:
        return self.repo.commit("main")

    def branch_name(self, number: int, name: str) -> str:
        return f"iter/{number:04d}-{slugify(name)}"

    def commit(self, branch: str, files: dict[str, str], message: str) -> str:
        """Write `files` on `branch` (created from the root commit if new); the commit's hash."""
        if branch in self.repo.heads:
            self.repo.heads[branch].checkout(force=True)
        else:
            self.repo.create_head(branch, self.root).checkout(force=True)
        for name, text in files.items():  # lone surrogates (never valid UTF-8) as escapes
            (self.path / name).write_text(text, encoding="utf-8", errors="backslashreplace")
        self.repo.index.add(list(files))
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        return self.repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha

    def drop_unrecorded(self, recorded: set[int]) -> list[str]:
        """Delete the branches of iterations not in `recorded` (in flight when a run was
        killed, or prepared and never run)."""
        lock = self.path / ".git" / "index.lock"
        if lock.exists():  # a commit cut short by kill -9; no other writer exists
            lock.unlink()
        self.repo.git.checkout("main", force=True)
        dropped = [b for n, b, _ in self.iterations() if n not in recorded]
        for branch in dropped:
            self.repo.delete_head(branch, force=True)
        return dropped

    def tag_best(self, branch: str) -> None:
        self.repo.create_tag("best", ref=self.repo.heads[branch].commit, force=True)

    def iterations(self) -> list[tuple[int, str, str]]:
        """(number, branch, head commit) of every iteration, in order."""
        out = []
        for head in self.repo.heads:
            m = BRANCH.match(head.name)
            if m:
                out.append((int(m[1]), head.name, head.commit.hexsha))
        return sorted(out)

    def resolve(self, ref: str) -> tuple[str, str]:
        """(branch, commit) named by a branch, a hash or its prefix, or an iteration number."""
        its = self.iterations()
        ref = str(ref).strip()
        # An iteration number wins over a hash prefix made only of digits; a number that
        # names no iteration is still tried as a prefix.
        hits = self._by_number(its, ref) or self._by_branch(its, ref) or self._by_prefix(its, ref)
        if not hits:
            raise RefError(f"'{ref}' names no iteration (try a branch such as "
                           f"{its[0][1] if its else 'iter/0001-…'}, a commit hash or a number)")
        if len({c for _, c in hits}) > 1:
            raise RefError(f"'{ref}' is ambiguous: it matches {len(hits)} commits; "
                           "give more characters")
        return hits[0]

    @staticmethod
    def _by_number(its, ref: str) -> list[tuple[str, str]]:
        if not (ref.isdigit() and len(ref) <= 4):
            return []
        return [(b, c) for n, b, c in its if n == int(ref)]

    @staticmethod
    def _by_branch(its, ref: str) -> list[tuple[str, str]]:
        return [(b, c) for _, b, c in its if b == ref]

    def _by_prefix(self, its, ref: str) -> list[tuple[str, str]]:
        if not re.fullmatch(r"[0-9a-f]{4,40}", ref):
            return []
        return [(branch, c.hexsha) for _, branch, _ in its
                for c in self.repo.iter_commits(branch)
                if c.hexsha.startswith(ref) and c != self.root]

    def read(self, ref: str, path: str = "model.py") -> str:
        _, commit = self.resolve(ref)
        try:
            return (self.repo.commit(commit).tree / path).data_stream.read().decode()
        except KeyError:
            raise RefError(f"{ref}: no {path} at {commit[:10]}") from None

    def diff(self, ref_a: str, ref_b: str, path: str = "model.py") -> str:
        _, a = self.resolve(ref_a)
        _, b = self.resolve(ref_b)
        return self.repo.git.diff(a, b, "--", path)
