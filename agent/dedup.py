"""Normalised-source hashes: two candidates that differ only in comments, docstrings or
layout are the same candidate (the seed's "nine identical experiments" must be
impossible by construction)."""

from __future__ import annotations

import ast
import hashlib


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_hash(source: str) -> str:
    """Hash of the AST without docstrings and comments; of the raw text if it does not parse
    (or cannot be read: NULs, lone surrogates, nesting too deep for the parser)."""
    if not isinstance(source, str):
        source = str(source)
    try:
        canon = ast.dump(_strip_docstrings(ast.parse(source)), annotate_fields=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        canon = source
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()


_NUMBER = "<number>"  # not an identifier: no name of a real source can collide with it


def _is_number(node: ast.AST) -> bool:
    """A numeric literal, signed or not (bools, None and strings are not numbers here)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float, complex)


class _Canon(ast.NodeTransformer):
    """User identifiers to <v0>, <v1>, … (names) and <a0>, <a1>, … (attributes), each in
    order of first appearance; numeric literals to one placeholder.

    Names: classes, functions, arguments, variables, import aliases (``as x``), exception
    names. Attributes: those assigned somewhere in the source (``self.x = …``), methods
    and class-body fields (read as ``self.x``). Everything else (torch, nn.Linear,
    .shape, builtins) is the library's and stays. Attributes are their own namespace, so
    ``self.latent_dim = latent_dim`` survives renaming either side alone."""

    def __init__(self, tree: ast.AST, numbers: bool = False):
        self.numbers = numbers  # keep numeric literals (a block's constants are its own)
        self.names: set[str] = set()
        self.attrs: set[str] = set()
        self.args: set[str] = set()
        self.members: set[int] = set()  # ids of methods and class-body targets
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                self.names.add(node.name)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self.members.add(id(item))
                        self.attrs.add(item.name)
                    targets = (item.targets if isinstance(item, ast.Assign) else
                               [item.target] if isinstance(item, ast.AnnAssign) else [])
                    for t in targets:
                        if isinstance(t, ast.Name):
                            self.members.add(id(t))
                            self.attrs.add(t.id)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if id(node) not in self.members:
                    self.names.add(node.name)
            elif isinstance(node, ast.arg):
                self.names.add(node.arg)
                self.args.add(node.arg)
            elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                if id(node) not in self.members:
                    self.names.add(node.id)
            elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
                self.attrs.add(node.attr)
            elif isinstance(node, ast.alias) and node.asname:
                self.names.add(node.asname)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.names.add(node.name)
        self.maps: dict[str, dict[str, str]] = {"v": {}, "a": {}}

    def _canon(self, kind: str, name: str) -> str:
        m = self.maps[kind]
        return m.setdefault(name, f"<{kind}{len(m)}>")

    def _name(self, name: str) -> str:
        return self._canon("v", name) if name in self.names else name

    def _attr(self, name: str) -> str:
        return self._canon("a", name) if name in self.attrs else name

    def visit_ClassDef(self, node):
        node.name = self._name(node.name)
        return self.generic_visit(node)

    def visit_FunctionDef(self, node):
        node.name = (self._attr if id(node) in self.members else self._name)(node.name)
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_arg(self, node):
        node.arg = self._name(node.arg)
        return self.generic_visit(node)

    def visit_keyword(self, node):  # f(latent_dim=…) of a user function's argument
        if node.arg in self.args:
            node.arg = self._name(node.arg)
        return self.generic_visit(node)

    def visit_Name(self, node):
        node.id = (self._attr if id(node) in self.members else self._name)(node.id)
        return node

    def visit_Attribute(self, node):
        self.generic_visit(node)  # the object first: it comes first in the source
        node.attr = self._attr(node.attr)
        return node

    def visit_alias(self, node):
        if node.asname:
            node.asname = self._name(node.asname)
        return node

    def visit_ExceptHandler(self, node):
        if node.name:
            node.name = self._name(node.name)
        return self.generic_visit(node)

    def visit_Global(self, node):
        node.names = [self._name(n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global

    def visit_UnaryOp(self, node):
        if _is_number(node) and not self.numbers:
            return ast.Name(_NUMBER, ast.Load())
        return self.generic_visit(node)

    def visit_Constant(self, node):
        return ast.Name(_NUMBER, ast.Load()) if _is_number(node) and not self.numbers else node


def skeleton_hash(source: str) -> str:
    """Hash of the AST without docstrings, with every numeric literal one placeholder and
    user identifiers canonical in order of first appearance: renamed copies and copies
    with other constants share it; library names (nn.Linear, torch.tanh, .shape) and
    strings (a solver's method="rk4") still tell sources apart. Of the raw text if the
    source does not parse (as source_hash); never an exception."""
    if not isinstance(source, str):
        source = str(source)
    try:
        tree = _strip_docstrings(ast.parse(source))
        canon = ast.dump(_Canon(tree).visit(tree), annotate_fields=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        canon = source
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()


def block_hash(source: str) -> str:
    """Hash of a code block up to names and layout: docstrings, comments and user
    identifiers do not count, numeric literals do (two blocks alike but for a constant
    compute different things). Of the raw text if it does not parse."""
    try:
        tree = _strip_docstrings(ast.parse(source))
        canon = ast.dump(_Canon(tree, numbers=True).visit(tree), annotate_fields=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        canon = source
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()


class Twins:
    """The accepted candidates a new one is judged against, on what the host computes.

    A candidate is refused as a duplicate only when an earlier one had both its skeleton
    (computed here from the source: trusted) and its fingerprint (computed in the worker,
    where the candidate runs: a claim). A fingerprint alone, or a skeleton alone, only
    marks a variant: a candidate that claims another's fingerprint refuses no one whose
    source differs from its own beyond names and constants."""

    def __init__(self):
        self.pairs: dict[tuple[str, str], int] = {}
        self.skeletons: dict[str, int] = {}
        self.fingerprints: dict[str, int] = {}

    def remember(self, attempt: dict, number: int) -> None:
        """An accepted attempt ({"skeleton", "fingerprint"}) of iteration `number`."""
        skeleton, fp = attempt.get("skeleton"), attempt.get("fingerprint")
        if skeleton:
            self.skeletons.setdefault(skeleton, number)
        if fp:
            self.fingerprints.setdefault(fp, number)
        if skeleton and fp:
            self.pairs.setdefault((skeleton, fp), number)

    def judge(self, skeleton: str, fingerprint: str | None) -> tuple[int | None, int | None]:
        """(the iteration it duplicates or None, the iteration it is a variant of or None)."""
        twin = self.pairs.get((skeleton, fingerprint)) if fingerprint else None
        if twin is not None:
            return twin, None
        variant = self.skeletons.get(skeleton)
        if variant is None and fingerprint:
            variant = self.fingerprints.get(fingerprint)
        return None, variant
