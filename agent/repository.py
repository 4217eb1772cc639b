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
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.repo = git.Repo.init(self.path, initial_branch="main")
        (self.path / "README.md").write_text(
            "# descartes-agent model repository\n\nOne branch per iteration: "
            "`git log --all --oneline` tells the story; `git show best` is the best model.\n")
        self.repo.index.add(["README.md"])
        self.repo.index.commit("model repository of one run", author=AUTHOR, committer=AUTHOR)

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
        for name, text in files.items():
            (self.path / name).write_text(text)
        self.repo.index.add(list(files))
        return self.repo.index.commit(message, author=AUTHOR, committer=AUTHOR).hexsha

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
        if ref.isdigit() and len(ref) <= 4:
            hits = [(b, c) for n, b, c in its if n == int(ref)]
        elif ref in self.repo.heads:
            hits = [(ref, self.repo.heads[ref].commit.hexsha)] if BRANCH.match(ref) else []
        elif re.fullmatch(r"[0-9a-f]{4,40}", ref):
            hits = []
            for _, branch, _ in its:
                for c in self.repo.iter_commits(branch):
                    if c.hexsha.startswith(ref) and c != self.root:
                        hits.append((branch, c.hexsha))
        else:
            hits = []
        if not hits:
            raise RefError(f"'{ref}' names no iteration (try a branch such as "
                           f"{its[0][1] if its else 'iter/0001-…'}, a commit hash or a number)")
        if len({c for _, c in hits}) > 1:
            raise RefError(f"'{ref}' is ambiguous: it matches {len(hits)} commits; "
                           "give more characters")
        return hits[0]

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
