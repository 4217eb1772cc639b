"""Mining a candidate's reusable parts: its top-level helper modules and functions, each as
a standalone file (the imports it uses, the constants and helpers it reads, itself).

Read from the AST, never run: the candidate is untrusted and so is every block of it.
Two blocks are the same block when their files agree up to names, comments, docstrings
and layout (``dedup.block_hash``); a different constant makes a different block.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from agent.dedup import block_hash
from sandbox.blocks import LIBRARY

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
"""What a library name may be: it becomes a file name and an import."""
RESERVED = frozenset({"Model", "PROPERTIES", "LATENT_DIM"})
"""The contract's own names: never blocks, and a block that reads one is not reusable."""
MAX_BLOCK_CHARS = 20_000


@dataclass(frozen=True)
class Block:
    name: str
    """As the candidate named it (the library may rename it apart from another block)."""
    kind: str
    """"module" (an nn.Module subclass) or "function"."""
    code: str
    """The standalone file: the imports it uses, then what it reads of the candidate's
    top level (constants, helpers), in the candidate's order, then the block."""
    canon: str
    """``dedup.block_hash`` of `code`: equal for renamed or reformatted copies."""
    doc: str
    """The first line of its docstring, or ""."""
    imports: tuple[str, ...] = ()
    """Library blocks it imports itself (``from library import …``)."""


def _bound(stmt: ast.stmt) -> list[str]:
    """The top-level names a statement binds."""
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [a.asname or a.name.split(".")[0] for a in stmt.names]
    if isinstance(stmt, ast.FunctionDef | ast.ClassDef):
        return [stmt.name]
    targets = (stmt.targets if isinstance(stmt, ast.Assign) else
               [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _reads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_module(node: ast.ClassDef) -> bool:
    return any((isinstance(b, ast.Attribute) and b.attr == "Module")
               or (isinstance(b, ast.Name) and b.id == "Module") for b in node.bases)


def imported_blocks(tree: ast.Module) -> list[str]:
    """The names a module imports from the library."""
    return [a.name for s in tree.body if isinstance(s, ast.ImportFrom)
            and s.module == LIBRARY and not s.level for a in s.names]


def extract(source: str) -> list[Block]:
    """Every top-level helper of `source` (an nn.Module subclass other than Model, or a
    function) that does not read the contract's names, as a standalone block."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    top = tree.body
    binder: dict[str, int] = {}
    for i, stmt in enumerate(top):
        for name in _bound(stmt):
            binder.setdefault(name, i)
    blocks = []
    for i, stmt in enumerate(top):
        if not (isinstance(stmt, ast.FunctionDef)
                or (isinstance(stmt, ast.ClassDef) and _is_module(stmt))):
            continue
        if stmt.name in RESERVED or not NAME.fullmatch(stmt.name):
            continue
        need, todo = {i}, [i]
        while todo:  # what the block reads of the top level, and what that reads
            for name in _reads(top[todo.pop()]):
                j = binder.get(name)
                if j is not None and j not in need:
                    need.add(j)
                    todo.append(j)
        names = {n for j in need for n in _bound(top[j])}
        if names & RESERVED:
            continue
        lines = []
        used = set().union(*(_reads(top[j]) for j in need))
        for j in sorted(need):
            s = top[j]
            if isinstance(s, ast.Import | ast.ImportFrom):
                keep = [a for a in s.names if (a.asname or a.name.split(".")[0]) in used]
                if not keep:
                    continue
                s = type(s)(**{**{f: getattr(s, f) for f in s._fields}, "names": keep})
            lines.append(ast.unparse(s))
        imports = [a.name for j in need if isinstance(top[j], ast.ImportFrom)
                   and top[j].module == LIBRARY for a in top[j].names if a.name in used]
        code = "\n\n".join(lines) + "\n"
        if len(code) > MAX_BLOCK_CHARS:
            continue
        doc = (ast.get_docstring(stmt) or "").strip().splitlines()
        blocks.append(Block(stmt.name, "function" if isinstance(stmt, ast.FunctionDef)
                            else "module", code, block_hash(code), doc[0][:200] if doc else "",
                            tuple(imports)))
    return blocks
