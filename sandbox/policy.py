"""The static policy: the first line of defence, where no candidate code runs.

Two readers of the same source, each returning every violation with its line,
column and a one-line reason the architect can act on:

1. RestrictedPython, under a project policy that admits what an ``nn.Module``
   needs (``super().__init__()``, single-underscore names, augmented and
   annotated assignment), which stock RestrictedPython rejects in every real
   module. Only its verdict is used; the code it rewrites is never run.
2. Our own AST allow-list: imports, banned builtins, dunder attributes, the
   escape hatches of torch and the standard library, statements that do not
   belong in a model file, a literal and valid ``PROPERTIES``, exactly one
   ``class Model(nn.Module)``.

Neither is a security boundary — attribute chains reach ``pickle.loads``
(``shared/research/sandbox.md``). They reject early and explain; the sandbox
contains whatever gets past them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from descartes_core.contract import property_errors

DEFAULT_IMPORTS = frozenset(
    {"torch", "torch.nn", "torch.nn.functional", "math", "typing", "dataclasses", "torchdiffeq"}
)
BANNED_NAMES = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "breakpoint", "input", "memoryview", "exit", "quit", "help",
})
# Attributes through which torch and the standard library reach the OS, files, pickle,
# native code or other processes.
ESCAPE_ATTRS = frozenset({
    "os", "sys", "hub", "load", "save", "cpp_extension", "ops", "classes", "multiprocessing",
    "distributed", "from_file", "_C", "serialization", "pickle", "inspect", "builtins",
    "subprocess", "system", "popen", "library", "jit", "ctypes", "importlib", "f_globals",
    "f_back", "f_locals", "gi_frame", "cr_frame", "tb_frame", "modules", "_dynamo", "package",
    "storage", "UntypedStorage", "socket", "shutil", "environ",
})
ALLOWED_DUNDERS = frozenset({"__init__"})
TOP_LEVEL = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Assign, ast.AnnAssign)
BANNED_NODES = {
    ast.Global: "'global' is not allowed",
    ast.Nonlocal: "'nonlocal' is not allowed",
    ast.AsyncFunctionDef: "async functions are not allowed",
    ast.Await: "'await' is not allowed",
    ast.AsyncFor: "'async for' is not allowed",
    ast.AsyncWith: "'async with' is not allowed",
}


@dataclass(frozen=True)
class Violation:
    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, col {self.col}: {self.message} [{self.rule}]"


@dataclass
class Verdict:
    """The policy's answer: accepted when there is no violation."""

    violations: list[Violation] = field(default_factory=list)
    properties: dict | None = None

    @property
    def accepted(self) -> bool:
        return not self.violations


class _ProjectTransformer(RestrictingNodeTransformer):
    """RestrictedPython's checks, relaxed just enough for ordinary nn.Module code."""

    def error(self, node, info):
        self.errors.append(f"Line {getattr(node, 'lineno', 0)}:{getattr(node, 'col_offset', 0)}: "
                           f"{info}")

    def check_name(self, node, name, allow_magic_methods=False):
        if name is not None and name.startswith("_") and not name.startswith("__"):
            return  # single-underscore helpers and attributes are ordinary Python
        super().check_name(node, name, allow_magic_methods)

    def visit_Attribute(self, node):
        if (node.attr.startswith("_") and not node.attr.startswith("__")) or (
                node.attr in ALLOWED_DUNDERS):
            return self.node_contents_visit(node)
        return super().visit_Attribute(node)

    def visit_AugAssign(self, node):  # self.n += 1, y[..., 0] += x
        return self.node_contents_visit(node)

    def visit_AnnAssign(self, node):  # x: int = 1, dataclass fields
        return self.node_contents_visit(node)


_RP_LINE = re.compile(r"^Line (\d+):(\d+): (.*)$")


def _restricted_python(source: str) -> list[Violation]:
    result = compile_restricted_exec(source, filename="<candidate>", policy=_ProjectTransformer)
    out = []
    for err in result.errors:
        m = _RP_LINE.match(err)
        if m:
            out.append(Violation(int(m[1]), int(m[2]), "restricted-python", m[3]))
        elif not err.startswith("Line"):  # syntax errors are reported by the AST pass
            out.append(Violation(0, 0, "restricted-python", err))
    return out


def _is_module_base(base: ast.expr) -> bool:
    return ast.unparse(base) in {"nn.Module", "torch.nn.Module", "Module"}


class _AllowList(ast.NodeVisitor):
    def __init__(self, allowed_imports: frozenset[str]):
        self.allowed = allowed_imports
        self.out: list[Violation] = []

    def flag(self, node, rule, message):
        self.out.append(Violation(getattr(node, "lineno", 0), getattr(node, "col_offset", 0),
                                  rule, message))

    def _allowed_list(self) -> str:
        return ", ".join(sorted(self.allowed))

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name not in self.allowed:
                self.flag(node, "import", f"import of '{alias.name}' is not allowed "
                                          f"(allowed: {self._allowed_list()})")

    def visit_ImportFrom(self, node):
        module = node.module or ""
        if node.level or module not in self.allowed:
            self.flag(node, "import", f"import from '{'.' * node.level}{module}' is not allowed "
                                      f"(allowed: {self._allowed_list()})")
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, "import", "'import *' is not allowed: name what you use")
            elif f"{module}.{alias.name}" not in self.allowed and alias.name in ESCAPE_ATTRS:
                self.flag(node, "escape-hatch", f"'{alias.name}' reaches outside the model")

    def visit_Name(self, node):
        if node.id in BANNED_NAMES:
            self.flag(node, "builtin", f"'{node.id}' is not allowed in model code")
        elif node.id.startswith("__"):
            self.flag(node, "dunder", f"'{node.id}' is not allowed in model code")
        self.generic_visit(node)

    def visit_Attribute(self, node):
        if node.attr.startswith("__") and node.attr not in ALLOWED_DUNDERS:
            self.flag(node, "dunder", f"attribute '{node.attr}' is not allowed "
                                      "(only __init__, as in super().__init__())")
        elif node.attr in ESCAPE_ATTRS:
            self.flag(node, "escape-hatch",
                      f"'{ast.unparse(node)}' reaches outside the model ('.{node.attr}' is banned)")
        self.generic_visit(node)

    def generic_visit(self, node):
        for kind, message in BANNED_NODES.items():
            if isinstance(node, kind):
                self.flag(node, "statement", message)
        super().generic_visit(node)


def _module_checks(tree: ast.Module, out: list[Violation]) -> dict | None:
    properties = None
    models = []
    for stmt in tree.body:
        is_docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        if not isinstance(stmt, TOP_LEVEL) and not is_docstring:
            out.append(Violation(stmt.lineno, stmt.col_offset, "top-level",
                                 f"a top-level {type(stmt).__name__} runs at import; keep "
                                 "top-level code to imports, constants, functions and classes"))
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PROPERTIES" for t in stmt.targets):
            try:
                properties = ast.literal_eval(stmt.value)
            except ValueError:
                out.append(Violation(stmt.lineno, stmt.col_offset, "properties",
                                     "PROPERTIES must be a literal dict of strings"))
                continue
            out.extend(Violation(stmt.lineno, stmt.col_offset, "properties", e)
                       for e in property_errors(properties))
        if isinstance(stmt, ast.ClassDef) and stmt.name == "Model":
            models.append(stmt)
    if properties is None and not any(v.rule == "properties" for v in out):
        out.append(Violation(1, 0, "properties", "no top-level PROPERTIES = {...}"))
    if len(models) != 1:
        out.append(Violation(models[1].lineno if len(models) > 1 else 1, 0, "model",
                             f"expected exactly one top-level 'class Model(nn.Module)', "
                             f"found {len(models)}"))
    elif not any(_is_module_base(b) for b in models[0].bases):
        out.append(Violation(models[0].lineno, models[0].col_offset, "model",
                             "class Model must derive from nn.Module"))
    return properties if isinstance(properties, dict) else None


def check(source: str, allowed_imports: frozenset[str] = DEFAULT_IMPORTS,
          max_bytes: int = 200_000) -> Verdict:
    """Every violation of the policy in `source`; runs none of it."""
    if len(source.encode()) > max_bytes:
        return Verdict([Violation(1, 0, "size", f"source is over {max_bytes} bytes")])
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return Verdict([Violation(e.lineno or 0, (e.offset or 1) - 1, "syntax",
                                  f"syntax error: {e.msg}")])
    visitor = _AllowList(allowed_imports)
    visitor.visit(tree)
    out = visitor.out
    properties = _module_checks(tree, out)
    # RestrictedPython's word only where the allow-list said nothing, to keep messages crisp
    seen = {(v.line, v.col) for v in out}
    out += [v for v in _restricted_python(source) if (v.line, v.col) not in seen]
    return Verdict(sorted(set(out), key=lambda v: (v.line, v.col, v.rule)), properties)
