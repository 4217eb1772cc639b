"""The run's library: verified, importable code blocks learned from its scored candidates.

After each scored iteration the driver mines every scored candidate's helpers
(``library_mine``), groups equal blocks and gives each its evidence: the iterations that
used it (defined an equal block, or imported it) with their selection scores. A group
used by ``MIN_USES`` scored candidate(s) must pass the static policy, as a candidate does
(a block is untrusted code), and then is verified alone in the sandbox on the contract its
first use was observed with (``sandbox.blocks``); only then does it enter. A block refused
by either never does (the index keeps why, so it is not tried again); one the step's
verification time bound left unverified is tried again at a later step. A block unused in
the last ``RETIRE_AFTER`` scored iterations is retired: still on the branch, no longer
offered.

Storage: the branch ``library`` of the run's model repository, one file per block
(``NAME.py``) and ``index.json`` (signature, docstring, provenance, evidence, status),
each change a commit. Everything but the verification verdicts is derived from the
scored iterations, so a resumed run rebuilds the same library.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from agent.library_mine import Block, extract, imported_blocks
from sandbox import policy
from sandbox.blocks import needed

BRANCH = "library"
INDEX = "index.json"
MIN_USES = 1
"""Scored candidates that must have used a block before it is verified and enters (the
sandbox's verification is the gate; the evidence ranks what is offered)."""
RETIRE_AFTER = 12
"""Scored iterations without a use after which a block is retired."""
OFFER_SOURCES = 3
"""Blocks whose source the LLM prompt shows (the strongest)."""
CANDIDATE_RULES = frozenset({"properties", "model"})
"""The policy's rules of a candidate's shape (its PROPERTIES, its one Model): a block file is
a helper, not a candidate, so these alone do not apply to it."""


def policy_faults(code: str, library: frozenset[str]) -> str:
    """Why the static policy refuses the block file `code`, which may import the blocks
    `library`, in one line; "" when it passes. Every rule of a candidate's applies but
    those of its shape (CANDIDATE_RULES)."""
    verdict = policy.check(code, library=library)
    return "; ".join(str(v) for v in verdict.violations if v.rule not in CANDIDATE_RULES)


@dataclass(frozen=True)
class Use:
    number: int
    score: float
    """The objective's selection score of the iteration (standing.score)."""
    beyond_controls: int | None = None
    recovered: int | None = None


@dataclass
class Entry:
    name: str
    kind: str
    canon: str
    code: str
    doc: str
    contract: dict
    imports: tuple[str, ...] = ()
    origin: int = 0
    """The first iteration that defined it."""
    added: int = 0
    """The iteration after which it entered."""
    status: str = "verified"
    """verified, retired, rejected (failed verification: no file, never offered), or
    pending (being verified)."""
    reason: str = ""
    carried: str = ""
    """The run it was carried over from (``run --library``), or ""."""
    uses: list[Use] = field(default_factory=list)

    @property
    def strength(self) -> float:
        return sum(u.score for u in self.uses) / len(self.uses) if self.uses else 0.0

    @property
    def recovered(self) -> float:
        got = [u.recovered for u in self.uses if u.recovered is not None]
        return sum(got) / len(got) if got else 0.0

    @property
    def last_use(self) -> int:
        return max((u.number for u in self.uses), default=0)

    def signature(self) -> str:
        c = self.contract

        def arg(s):
            if "shape" in s:
                return f"Tensor[{', '.join(map(str, s['shape']))}]"
            return "callable" if "callable" in s else repr(s["value"])

        init = ""
        if self.kind == "module":
            init = "(" + ", ".join([*map(arg, c["init"]), *(
                f"{k}={arg(v)}" for k, v in c["init_kw"].items())]) + ")"
        outs = ", ".join(f"Tensor[{', '.join(map(str, o))}]" for o in c["outputs"])
        return f"{self.name}{init}({', '.join(map(arg, c['inputs']))}) -> {outs}"

    def evidence(self) -> str:
        if not self.uses:
            return f"carried over from {self.carried}, no uses yet" if self.carried \
                else "no uses yet"
        bc = [u.beyond_controls for u in self.uses if u.beyond_controls is not None]
        mean_bc = f", beyond controls {sum(bc) / len(bc):.1f} on average" if bc else ""
        return (f"used by {len(self.uses)} scored candidate(s) "
                f"({', '.join(f'#{u.number}' for u in self.uses[-6:])}){mean_bc}, "
                f"last #{self.last_use}")

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("code")
        d["signature"] = self.signature()
        return d


def _rename(code: str, old: str, new: str) -> str:
    """The block file with its top-level name `old` called `new` (a clash in the library)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == old:
            node.name = new
        elif isinstance(node, ast.Name) and node.id == old:
            node.id = new
    return ast.unparse(tree) + "\n"


Verify = Callable[[list[tuple[str, str, dict]], dict[str, str]], dict[str, tuple[bool, str]]]
"""([(code, name, contract)], the library files they import) → name → (verified, why not)."""


class Library:
    def __init__(self, repo, score: Callable[[dict], float] = lambda it: 0.0,
                 commit: str | None = None):
        """The library of `repo` at its head (or at `commit`: what a candidate imported
        from); `score` is an iteration's objective count, the evidence's measure."""
        self.repo = repo
        self.score = score
        self.entries: dict[str, Entry] = {}
        """canon → entry, in the order they entered."""
        self._mined: dict[int, tuple[list[tuple[Block, dict]], list[str]]] = {}
        """number → (its blocks with their contracts, the library names it imports)."""
        if commit is not None:
            self._load(repo.repo.commit(commit))
        elif BRANCH in repo.repo.heads:
            self._load(repo.repo.heads[BRANCH].commit)

    def _load(self, commit) -> None:
        index = json.loads((commit.tree / INDEX).data_stream.read().decode())
        for d in index["blocks"]:
            code = ""
            if d["status"] != "rejected":
                code = (commit.tree / f"{d['name']}.py").data_stream.read().decode()
            uses = [Use(**u) for u in d.pop("uses")]
            d.pop("signature", None)
            self.entries[d["canon"]] = Entry(**{**d, "imports": tuple(d["imports"]),
                                                "code": code, "uses": uses})

    @property
    def head(self) -> str | None:
        """The library's commit (what a candidate's proposal records), None before one."""
        heads = self.repo.repo.heads
        return heads[BRANCH].commit.hexsha if BRANCH in heads else None

    def offered(self) -> list[Entry]:
        """The verified blocks a proposal may import, strongest first (mean objective
        count of their users, then mean recovered, then uses): those some recorded
        iteration used, or carried over from another run."""
        live = [e for e in self.entries.values()  # evidence from the recorded iterations
                if e.status == "verified" and (e.uses or e.carried)]
        return sorted(live, key=lambda e: (-e.strength, -e.recovered, -len(e.uses), e.name))

    def names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.offered())

    def files(self, names: Iterable[str]) -> dict[str, str]:
        """name → file of `names` and of every block they import, in the order they entered
        (a block comes after what it imports)."""
        by_name = {e.name: e for e in self.entries.values() if e.status != "rejected"}
        want, todo = set(), [n for n in names if n in by_name]
        while todo:
            n = todo.pop()
            if n not in want:
                want.add(n)
                todo.extend(i for i in by_name[n].imports if i in by_name)
        return {e.name: e.code for e in self.entries.values() if e.name in want}

    def for_source(self, source: str) -> dict[str, str]:
        """The files a source's ``from library import …`` needs (sandbox.blocks.needed)."""
        return needed(source, {e.name: e.code for e in self.entries.values()
                               if e.status != "rejected"})

    # learning ------------------------------------------------------------------------------
    def learn(self, scored: list[dict], read: Callable[[dict], tuple[str, dict]],
              verify: Verify) -> list[str]:
        """Bring the library up to the scored iterations `scored` (in order); `read` gives an
        iteration's source and the contracts its check observed; new blocks are verified
        with `verify`. What changed, one line each (committed on the branch when anything
        did)."""
        groups: dict[str, list[tuple[dict, Block, dict]]] = {}
        imports: dict[str, list[dict]] = {}
        for it in scored:
            n = it["number"]
            if n not in self._mined:
                source, contracts = read(it)
                blocks = [(b, contracts[b.name]) for b in extract(source) if b.name in contracts]
                try:
                    names = imported_blocks(ast.parse(source))
                except (SyntaxError, ValueError, RecursionError, MemoryError):
                    names = []
                self._mined[n] = (blocks, names)
            blocks, names = self._mined[n]
            for b, contract in blocks:
                groups.setdefault(b.canon, []).append((it, b, contract))
            for name in names:
                imports.setdefault(name, []).append(it)
        changes = []
        last = max((it["number"] for it in scored), default=0)
        new = []
        for canon, group in groups.items():
            users = {it["number"] for it, _, _ in group}
            if canon in self.entries or len(users) < MIN_USES:
                continue
            it0, block, contract = group[0]
            entry = Entry(self._free_name(block.name), block.kind, canon, "", block.doc,
                          contract, block.imports, it0["number"], last, status="pending")
            entry.code = block.code if entry.name == block.name else _rename(
                block.code, block.name, entry.name)
            self.entries[canon] = entry
            new.append(entry)
        changes += self._verify(new, verify, "entered")
        for e in self.entries.values():
            users = {it["number"]: it for it, _, _ in groups.get(e.canon, [])}
            users.update({it["number"]: it for it in imports.get(e.name, [])})
            e.uses = [Use(n, self.score(it), it.get("beyond_controls"), it.get("recovered"))
                      for n, it in sorted(users.items())]
            if e.status == "verified" and last - e.last_use >= RETIRE_AFTER:
                e.status = "retired"
                changes.append(f"{e.name}: retired (unused since #{e.last_use})")
            elif e.status == "retired" and last - e.last_use < RETIRE_AFTER:
                e.status = "verified"  # a later candidate wrote it again
                changes.append(f"{e.name}: back in use (#{e.last_use})")
        if changes or self._stale_index():
            self._commit(changes or ["evidence"])
        return changes

    def carry(self, other: Library, run: str, verify: Verify) -> list[str]:
        """Start from `other`'s verified blocks (another run's), each checked against the
        current policy and verified again here (its branch may have been written by anyone);
        their evidence starts afresh in this run."""
        new = []
        for e in [e for e in other.entries.values() if e.status == "verified"]:
            if e.canon not in self.entries:
                self.entries[e.canon] = Entry(e.name, e.kind, e.canon, e.code, e.doc,
                                              e.contract, e.imports, status="pending",
                                              carried=run)
                new.append(self.entries[e.canon])
        changes = self._verify(new, verify, f"carried over from {run}")
        if changes:
            self._commit(changes)
        return changes

    def _verify(self, new: list[Entry], verify: Verify, entered: str) -> list[str]:
        """The pending entries `new` through the policy, then those it passes verified in
        the sandbox (one time bound for them all): each is verified or rejected (its file
        dropped, why kept); one left without a verdict is dropped from the library, so a
        later step mines and tries it again."""
        names = frozenset(e.name for e in self.entries.values() if e.status != "rejected")
        verdicts, refused = {}, set()
        for e in new:  # a block is untrusted code: the policy reads it before anything runs
            if why := policy_faults(e.code, names - {e.name}):
                verdicts[e.name] = (False, f"refused by the policy: {why}")
                refused.add(e.name)
                e.status = "rejected"  # so that no block verified below imports it
        todo = [e for e in new if e.name not in refused]
        if todo:
            imports = self.files({i for e in todo for i in e.imports})
            verdicts |= verify([(e.code, e.name, e.contract) for e in todo], imports)
        changes = []
        for e in new:
            if e.name not in verdicts:
                del self.entries[e.canon]
                changes.append(f"{e.name}: not verified within the step's time bound, "
                               "left out for now")
                continue
            ok, why = verdicts[e.name]
            e.status, e.reason = ("verified", "") if ok else ("rejected", why[:500])
            if not ok:
                e.code = ""
            changes.append(f"{e.name}: " + (entered if ok else why if e.name in refused
                                            else f"failed verification: {why}"))
        return changes

    def _free_name(self, name: str) -> str:
        taken = {e.name for e in self.entries.values()}
        k, free = 2, name
        while free in taken:
            free, k = f"{name}_{k}", k + 1
        return free

    def index(self) -> dict:
        return {"blocks": [e.as_json() for e in self.entries.values()]}

    def _stale_index(self) -> bool:
        if self.head is None:
            return bool(self.entries)
        commit = self.repo.repo.heads[BRANCH].commit
        stored = json.loads((commit.tree / INDEX).data_stream.read().decode())
        return stored != json.loads(json.dumps(self.index()))

    def _commit(self, changes: list[str]) -> None:
        files = {INDEX: json.dumps(self.index(), indent=1)}
        for e in self.entries.values():
            if e.status != "rejected":
                files[f"{e.name}.py"] = e.code
        self.repo.commit(BRANCH, files, "library: " + "; ".join(changes)[:500])


def imports_of(repo, ref: str, source: str) -> dict[str, str]:
    """The library files the candidate at `ref` imported, as they were when it was
    proposed (its proposal.json's library_commit): what replay and the finals carry."""
    try:
        sha = json.loads(repo.read(ref, "proposal.json")).get("library_commit")
    except Exception:  # no proposal (a template's branch written by hand): nothing imported
        return {}
    return Library(repo, commit=sha).for_source(source) if sha else {}
