"""The static policy: what a model file may touch is listed; everything else is refused.

It runs none of the candidate's code and returns every violation with its line,
column and a one-line reason the architect can act on. The rules:

- **Imports** only of ``ALLOWED_MODULES``, and only at the top level of the file; from
  ``typing`` and ``dataclasses`` only the names in ``LISTED`` (annotations and
  ``@dataclass``/``field``).
- **Scopes**: a name imported at the top level is bound nowhere else, in no scope (no
  assignment, argument, def, loop, ``with``, ``except``, comprehension or lambda target,
  ``del``, nor an import elsewhere), as Python's own scoping (``symtable``) finds them. So
  the name stands for its import wherever it is read, and the checker may resolve it once
  for the whole file. What it imports is read-only (``torch.x = …`` is refused).
- **Module attributes** are resolved on the host against the real modules: a chain such
  as ``torch.nn.functional.softplus`` must name public, existing attributes, never a
  module outside the list (``torch.utils``, ``torch.serialization``, ``nn.modules``, …),
  and never a file, process, compile or loader API (``DENIED_WORDS``: ``torch.load``,
  ``torch.compile``, ``UntypedStorage.from_file``, …). Modules are used through their
  attributes only: ``T = torch`` or ``f(nn)`` is refused, so no alias escapes the check.
- **Other attributes** (of ``self``, tensors, locals): no dunders but ``__init__``, no
  attribute names of the OS, files, frames or string formatting (``OBJECT_DENIED``:
  ``x.numpy``, ``gen.gi_frame``, ``"{0.__class__}".format``), and a private name only
  directly on a name of the candidate's own (``self._n``, never ``torch.Tensor._make``).
  ``exec``, ``eval``, ``open``, ``load_inline``, ``system``, ``spawn*`` and their kin
  (``DYNAMIC_ATTRIBUTES``, ``DYNAMIC_FAMILIES``) are refused on every object and module.
- **Names**: builtins from ``ALLOWED_BUILTINS`` only; ``exec``, ``getattr`` and the other
  dynamic ones (``DYNAMIC``) nowhere, not even rebound, so no attribute or name is ever
  taken from a string. No string annotations (``typing`` would evaluate them).
- **Module shape**: imports, constants, functions and classes at top level; a literal
  ``PROPERTIES`` (a dict display or ``dict(key="value", ...)``); exactly one
  ``class Model(nn.Module)``; no ``global``, ``nonlocal``, ``async`` or metaclass; a
  ``LATENT_DIM`` only as an int literal within the cap (``contract.MAX_LATENT_DIM``).

The tables are in ``policy_tables``, the file's shape in ``policy_shape``, and
RestrictedPython's second opinion in ``policy_restricted``. None of them is the security
boundary: the sandbox is, and it holds with the policy off. They reject early and explain.
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
import types
import warnings
from dataclasses import dataclass, field

from sandbox.policy_restricted import restricted_python
from sandbox.policy_shape import literal_properties, module_checks
from sandbox.policy_tables import (
    ALLOWED_BUILTINS,
    ALLOWED_DUNDERS,
    ALLOWED_MODULES,
    BANNED_NODES,
    DEFAULT_IMPORTS,
    DYNAMIC,
    LIBRARY,
    OBJECT_DENIED,
    SPECIAL_METHODS,
    Violation,
    dynamic_attribute,
    foreign_private_names,
    host_module,
    module_attribute,
)

__all__ = ["DEFAULT_IMPORTS", "Verdict", "Violation", "check", "literal_properties"]


@dataclass
class Verdict:
    """The policy's answer: accepted when there is no violation."""

    violations: list[Violation] = field(default_factory=list)
    properties: dict | None = None
    """The PROPERTIES, defaulted axes filled in; None when refused."""

    @property
    def accepted(self) -> bool:
        return not self.violations


_BLOCK = object()  # what a name imported from the library stands for here


def _unbound_references(top: symtable.SymbolTable) -> set[str]:
    """Names some scope reads that no scope of the source binds for it: builtins (or typos).

    Python's own scoping (symtable), so a name bound in one function and read in another,
    where it is the builtin, is caught."""
    module = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    out = set()
    for table in _tables(top):
        for sym in table.get_symbols():
            if sym.is_referenced() and not (sym.is_local() or sym.is_free()) \
                    and sym.get_name() not in module:
                out.add(sym.get_name())
    return out


def _tables(top: symtable.SymbolTable) -> list[symtable.SymbolTable]:
    """Every scope of the source: the module, classes, functions, lambdas, comprehensions."""
    out, todo = [], [top]
    while todo:
        table = todo.pop()
        out.append(table)
        todo.extend(table.get_children())
    return out


def _rebound_imports(top: symtable.SymbolTable) -> list[tuple[str, symtable.SymbolTable]]:
    """(name, scope) for each name imported at the top level that a scope binds otherwise:
    an assignment, argument, def or class, loop, with, except, comprehension or lambda
    target, ``del``, or an import in another scope.

    The checker resolves an imported name to its module everywhere; Python does so only
    where no scope rebinds it, so a name that is rebound anywhere is refused outright."""
    imported = {s.get_name() for s in top.get_symbols() if s.is_imported()}
    out = []
    for table in _tables(top):
        for sym in table.get_symbols():
            if sym.get_name() in imported and (
                    sym.is_assigned() or sym.is_parameter() or sym.is_namespace()
                    or (sym.is_imported() and table is not top)):
                out.append((sym.get_name(), table))
    return out


def _scope_name(table: symtable.SymbolTable) -> str:
    name, kind = table.get_name(), table.get_type()
    if kind in ("module", "class"):
        return "the top level" if kind == "module" else f"the class '{name}'"
    if name in ("lambda", "listcomp", "setcomp", "dictcomp", "genexpr"):
        return "a lambda" if name == "lambda" else "a comprehension"
    return f"the function '{name}'"


def _own_private_names(tree: ast.AST) -> set[str]:
    """Private attribute names the source itself defines: ``self._n = …``, ``def _step``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.FunctionDef):
                    names.add(stmt.name)
                for target in getattr(stmt, "targets", [getattr(stmt, "target", None)]):
                    if isinstance(target, ast.Name):
                        names.add(target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


_FIELD = re.compile(r"{([^{}]*)}")


def _plain_format_string(node: ast.expr) -> bool:
    """A str literal whose fields name no attribute or item ("{0.__class__}", "{x[k]}")."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return False
    return not any(ch in f.split(":")[0].split("!")[0] for f in _FIELD.findall(
        node.value.replace("{{", "").replace("}}", "")) for ch in ".[")


class _AllowList(ast.NodeVisitor):
    def __init__(self, tree: ast.Module, source: str, library: frozenset[str] = frozenset()):
        self.library = library
        self.out: list[Violation] = []
        self.modules: dict[str, object] = {}  # import alias -> module or object it names
        self.parents: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[id(child)] = node
        try:
            scopes = symtable.symtable(source, "<candidate>", "exec")
        except SyntaxError as e:  # what compile() would refuse: the source is rejected anyway
            scopes = None
            self.flag(e, "syntax", f"syntax error: {e.msg}")
        self.unbound = _unbound_references(scopes) if scopes is not None else set()
        self.own_private = _own_private_names(tree)
        # every import first: a function above an import must not see a module as a local
        top = {id(stmt) for stmt in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bindings = self._import(node) if isinstance(node, ast.Import) \
                    else self._import_from(node)
                if id(node) not in top:
                    self.flag(node, "scope", "imports go at the top level of the file, not "
                                             "inside a function, class or block")
                    continue
                for name, value in bindings:
                    if self.modules.setdefault(name, value) is not value:
                        self.flag(node, "scope", f"'{name}' is imported twice as different "
                                                 "things: give each its own name")
        for name, table in _rebound_imports(scopes) if scopes is not None else []:
            self.out.append(Violation(
                max(1, table.get_lineno()), 0, "scope",
                f"'{name}' is imported at the top of the file and bound again in "
                f"{_scope_name(table)}: give the new value its own name"))
        shadowing = self.own_private & foreign_private_names()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in shadowing:
                self.flag(node, "private", f"'{node.attr}' is a private name of torch or "
                                           "Python objects: name your own attributes apart")

    def flag(self, node, rule, message):
        self.out.append(Violation(getattr(node, "lineno", 0), getattr(node, "col_offset", 0),
                                  rule, message))

    # imports -------------------------------------------------------------------------------
    def _allowed_module(self, node, name: str) -> types.ModuleType | None:
        if name not in ALLOWED_MODULES:
            self.flag(node, "import", f"import of '{name}' is not allowed "
                                      f"(allowed: {', '.join(sorted(ALLOWED_MODULES))})")
            return None
        try:
            return host_module(name)
        except ImportError:
            self.flag(node, "import", f"'{name}' cannot be imported on this host")
            return None

    def _import(self, node) -> list[tuple[str, object]]:
        out = []
        for alias in node.names:
            module = self._allowed_module(node, alias.name)
            if module is not None:
                root = alias.asname or alias.name.split(".")[0]
                out.append((root, module if alias.asname else host_module(root)))
        return out

    def _import_from(self, node) -> list[tuple[str, object]]:
        if node.module == LIBRARY and not node.level:
            return self._import_blocks(node)
        module = None if node.level else self._allowed_module(node, node.module or "")
        if node.level:
            self.flag(node, "import", "relative imports are not allowed")
        out = []
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, "import", "'import *' is not allowed: name what you use")
            elif module is not None:
                value, why = module_attribute(module, alias.name)
                if why:
                    self.flag(node, "import", why)
                else:
                    out.append((alias.asname or alias.name, value))
        return out

    def _import_blocks(self, node) -> list[tuple[str, object]]:
        """A verified block is the candidate's own code as far as the rules go: its
        attributes are checked as those of any object, never resolved as a module's."""
        out = []
        for alias in node.names:
            if alias.name in self.library:
                out.append((alias.asname or alias.name, _BLOCK))
                continue
            known = ", ".join(sorted(self.library)) or "none yet"
            self.flag(node, "import", f"'{alias.name}' is not a verified library block "
                                      f"(verified: {known})")
        return out

    # names and attributes -----------------------------------------------------------------
    def visit_Name(self, node):
        if node.id in DYNAMIC:
            self.flag(node, "builtin", f"'{node.id}' is not allowed in model code (no names "
                                       "or attributes taken from strings, no dynamic code)")
        elif node.id.startswith("__"):
            self.flag(node, "dunder", f"'{node.id}' is not allowed in model code")
        elif isinstance(node.ctx, ast.Load) and node.id in self.unbound \
                and node.id not in ALLOWED_BUILTINS:
            what = "is not an allowed builtin" if hasattr(builtins, node.id) else "is not defined"
            self.flag(node, "name", f"'{node.id}' {what}")
        if isinstance(self.modules.get(node.id), types.ModuleType):
            self._no_bare_module(node, node.id)

    def _no_bare_module(self, node, shown: str):
        parent = self.parents.get(id(node))
        if not (isinstance(parent, ast.Attribute) and parent.value is node):
            self.flag(node, "module", f"the module '{shown}' is used through its attributes "
                                      "only, not passed or assigned")

    def _chain(self, node: ast.Attribute) -> tuple[ast.Name | None, list[str]]:
        attrs, base = [], node
        while isinstance(base, ast.Attribute):
            attrs.append(base.attr)
            base = base.value
        return (base if isinstance(base, ast.Name) else None), attrs[::-1]

    def visit_Attribute(self, node):
        parent = self.parents.get(id(node))
        if isinstance(parent, ast.Attribute) and parent.value is node:
            self.generic_visit(node)  # the outermost attribute of a chain checks it whole
            return
        root, attrs = self._chain(node)
        value = self.modules.get(root.id) if root is not None else None
        shown = ".".join([root.id if root is not None else "…", *attrs])
        if root is not None and root.id in self.modules and not isinstance(node.ctx, ast.Load):
            # the checker resolves chains on the host's modules: they must stay as they are
            self.flag(node, "module", f"'{shown}': what the file imports is read-only")
        depth = 0
        while isinstance(value, types.ModuleType) and depth < len(attrs):
            value, why = module_attribute(value, attrs[depth])
            if why:
                self.flag(node, "escape-hatch", why if shown == ".".join(
                    [root.id, *attrs[:depth + 1]]) and depth + 1 == len(attrs)
                    else f"'{shown}': {why}")
                self.generic_visit(node)
                return
            depth += 1
        if isinstance(value, types.ModuleType):
            self._no_bare_module(node, shown)
        for attr in attrs[depth:]:
            if attr.startswith("__") and attr not in ALLOWED_DUNDERS:
                self.flag(node, "dunder", f"attribute '{attr}' is not allowed "
                                          "(only __init__, as in super().__init__())")
            elif (attr in OBJECT_DENIED or dynamic_attribute(attr)) and not (
                    attr in ("format", "format_map") and _plain_format_string(node.value)):
                self.flag(node, "escape-hatch", f"'{shown}' reaches outside the model "
                                                f"('.{attr}' is not allowed)")
            elif attr.startswith("_") and not attr.startswith("__") \
                    and (attr not in self.own_private or depth):
                self.flag(node, "private", f"'{shown}': a private attribute is allowed only "
                                           "if your own code defines it (self._x = …)")
        self.generic_visit(node)

    # annotations and statements -----------------------------------------------------------
    def _annotation(self, node):
        if node is not None and any(isinstance(n, ast.Constant) and isinstance(n.value, str)
                                    for n in ast.walk(node)):
            self.flag(node, "annotation", "string annotations are not allowed (typing would "
                                          "evaluate them): write the type itself")

    def visit_arg(self, node):
        self._annotation(node.annotation)
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        self._annotation(node.returns)
        if node.name in SPECIAL_METHODS:
            self.flag(node, "dunder", f"defining '{node.name}' is not allowed (it changes how "
                                      "Python looks up, copies or builds objects)")
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._annotation(node.annotation)
        self.generic_visit(node)

    def visit_ClassDef(self, node):
        for kw in node.keywords:
            self.flag(kw, "statement", f"class keyword '{kw.arg}' is not allowed")
        self.generic_visit(node)

    def generic_visit(self, node):
        for kind, message in BANNED_NODES.items():
            if isinstance(node, kind):
                self.flag(node, "statement", message)
        super().generic_visit(node)


def check(source: object, max_bytes: int = 200_000,
          library: frozenset[str] = frozenset()) -> Verdict:
    """Every violation of the policy in `source`, which may import exactly the verified
    library blocks `library` (``from library import NAME``); runs none of it. Total: any
    input gives a Verdict, never an exception."""
    with warnings.catch_warnings():  # invalid escapes and the like are the source's own
        warnings.simplefilter("ignore")
        return _check(source, max_bytes, frozenset(library))


def _check(source: object, max_bytes: int, library: frozenset[str]) -> Verdict:
    if not isinstance(source, str):
        return Verdict([Violation(1, 0, "syntax", "the source is not text")])
    if len(source.encode("utf-8", "surrogatepass")) > max_bytes:
        return Verdict([Violation(1, 0, "size", f"source is over {max_bytes} bytes")])
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return Verdict([Violation(e.lineno or 0, max(0, (e.offset or 1) - 1), "syntax",
                                  f"syntax error: {e.msg}")])
    except (ValueError, UnicodeError) as e:  # NUL bytes, lone surrogates
        return Verdict([Violation(1, 0, "syntax", f"unreadable source: {type(e).__name__}")])
    except (RecursionError, MemoryError):
        return Verdict([Violation(1, 0, "size", "the source is nested too deeply")])
    try:
        visitor = _AllowList(tree, source, library)
        visitor.visit(tree)
        out = visitor.out
        properties = module_checks(tree, out)
        # RestrictedPython's word only where the allow-list said nothing, to keep it crisp
        seen = {(v.line, v.col) for v in out}
        out += [v for v in restricted_python(source) if (v.line, v.col) not in seen]
    except (RecursionError, MemoryError):
        return Verdict([Violation(1, 0, "size", "the source is nested too deeply")])
    except (SyntaxError, ValueError, TypeError, OverflowError) as e:  # symtable, huge literals
        return Verdict([Violation(1, 0, "syntax", f"unreadable source: {type(e).__name__}: "
                                                 f"{(str(e).splitlines() or [''])[0][:200]}")])
    return Verdict(sorted(set(out), key=lambda v: (v.line, v.col, v.rule)), properties)
