"""The static policy: what a model file may touch is listed; everything else is refused.

It runs none of the candidate's code and returns every violation with its line,
column and a one-line reason the architect can act on. The rules:

- **Imports** only of ``ALLOWED_MODULES``; from ``typing`` and ``dataclasses`` only the
  names in ``LISTED`` (annotations and ``@dataclass``/``field``).
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
- **Names**: builtins from ``ALLOWED_BUILTINS`` only; ``exec``, ``getattr`` and the other
  dynamic ones (``DYNAMIC``) nowhere, not even rebound, so no attribute or name is ever
  taken from a string. No string annotations (``typing`` would evaluate them).
- **Module shape**: imports, constants, functions and classes at top level; a literal
  ``PROPERTIES`` (a dict display or ``dict(key="value", ...)``); exactly one
  ``class Model(nn.Module)``; no ``global``, ``nonlocal``, ``async`` or metaclass; a
  ``LATENT_DIM`` only as an int literal within the cap (``contract.MAX_LATENT_DIM``).

RestrictedPython, under a policy relaxed just enough for ``nn.Module`` code, gives a
second opinion; only its verdict is used. Neither reader is the security boundary: the
sandbox is. They reject early and explain, and they let the idioms an LLM writes
(dataclasses, helper modules and functions, ``dict(...)`` constants) pass and run.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import re
import symtable
import types
import warnings
from dataclasses import dataclass, field

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from descartes_core.contract import complete, declared_width, property_errors

ALLOWED_MODULES = frozenset({
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.utils",
    "torch.nn.utils.parametrizations", "torch.nn.utils.parametrize", "torch.nn.utils.rnn",
    "torch.fft", "torch.linalg", "torch.special", "torch.autograd", "torch.autograd.functional",
    "torch.func", "torch.distributions", "torch.utils.checkpoint", "math", "typing",
    "dataclasses", "torchdiffeq", "descartes_core.stiff",
})
DEFAULT_IMPORTS = ALLOWED_MODULES
LISTED = {
    "typing": frozenset({"Any", "Callable", "ClassVar", "Dict", "Final", "Iterable", "List",
                         "Literal", "Mapping", "NamedTuple", "Optional", "Sequence", "Tuple",
                         "Type", "Union", "cast"}),
    "dataclasses": frozenset({"asdict", "dataclass", "field"}),
}
"""Modules whose names are listed one by one (the rest expose every public name)."""
DENIED_WORDS = frozenset({
    "load", "loads", "save", "file", "files", "compile", "compiled", "compiler", "storage",
    "pickle", "serialization", "dlpack", "numpy", "jit", "export", "hub",
    "library", "threads", "interop", "profiler", "cuda", "ops", "classes", "package", "fx",
    "dynamo", "inductor", "onnx", "distributed", "multiprocessing", "backends", "os", "sys",
    "environ", "subprocess", "importlib", "ctypes", "builtins", "inspect", "socket", "shutil",
})
"""Words (split at underscores and case changes) that mark a module attribute as a file,
process, compile, loader or device API: ``torch.load``, ``torch.from_file``, ..."""
DENIED_NAMES = frozenset({"set_default_tensor_type"})
"""Public module attributes that import whatever dotted name they are given."""
OBJECT_DENIED = frozenset({
    "numpy", "tofile", "dump", "dumps", "save", "load", "loads", "storage", "untyped_storage",
    "share_memory_", "from_file", "format", "format_map", "mro", "f_globals", "f_locals",
    "f_back", "f_code", "f_builtins", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame",
    "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "os", "sys",
    "builtins", "inspect", "subprocess", "importlib", "ctypes", "socket", "shutil", "pickle",
    "serialization", "environ", "modules", "obj", "tb_lasti", "__traceback__",
})
ALLOWED_DUNDERS = frozenset({"__init__"})
SPECIAL_METHODS = frozenset({
    "__getattr__", "__getattribute__", "__setattr__", "__delattr__", "__init_subclass__",
    "__class_getitem__", "__set_name__", "__reduce__", "__reduce_ex__", "__getstate__",
    "__setstate__", "__del__", "__new__", "__get__", "__set__", "__delete__", "__prepare__",
    "__instancecheck__", "__subclasscheck__", "__mro_entries__", "__format__",
})
"""Dunder methods a model may not define; any other (``__repr__``, ``__post_init__``,
``__getitem__``, …) is ordinary."""
DYNAMIC = frozenset({
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars", "dir",
    "getattr", "setattr", "delattr", "hasattr", "breakpoint", "memoryview", "exit", "quit",
    "help", "type", "__build_class__", "__builtins__", "__loader__", "__spec__",
})
ALLOWED_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "callable", "classmethod", "complex", "dict", "divmod",
    "enumerate", "filter", "float", "frozenset", "hash", "int", "isinstance", "issubclass",
    "iter", "len", "list", "map", "max", "min", "next", "object", "pow", "print", "property",
    "range", "repr", "reversed", "round", "set", "slice", "sorted", "staticmethod", "str",
    "sum", "super", "tuple", "zip", "NotImplemented", "Ellipsis",
} | {n for n, v in vars(builtins).items()
     if isinstance(v, type) and issubclass(v, BaseException)})
TOP_LEVEL = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Assign, ast.AnnAssign)
BANNED_NODES = {
    ast.Global: "'global' is not allowed",
    ast.Nonlocal: "'nonlocal' is not allowed",
    ast.AsyncFunctionDef: "async functions are not allowed",
    ast.Await: "'await' is not allowed",
    ast.AsyncFor: "'async for' is not allowed",
    ast.AsyncWith: "'async with' is not allowed",
    ast.Match: "'match' is not allowed",
}
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


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
    """The PROPERTIES, defaulted axes filled in; None when refused."""

    @property
    def accepted(self) -> bool:
        return not self.violations


def denied_word(name: str) -> str | None:
    """The word of `name` that marks a file, process, compile or loader API, if any."""
    return next((w for w in (m.lower() for m in _WORD.findall(name)) if w in DENIED_WORDS),
                None)


@functools.cache
def _module(name: str) -> types.ModuleType:
    return importlib.import_module(name)  # trusted modules of the allow-list, on the host


_MISSING = object()
_BLOCK = object()  # what a name imported from the library stands for here
LIBRARY = "library"


def _module_attribute(module: types.ModuleType, attr: str) -> tuple[object, str | None]:
    """(value, None) when a model may use `module.attr`, else (None, the reason)."""
    where = f"'{module.__name__}.{attr}'"
    if attr.startswith("_"):
        return None, f"{where} is private"
    listed = LISTED.get(module.__name__)
    if listed is not None and attr not in listed:
        return None, f"{where} is not allowed (from {module.__name__}: {', '.join(sorted(listed))})"
    if (word := denied_word(attr)) is not None:
        return None, f"{where} reaches outside the model ('{word}' APIs are not allowed)"
    if attr in DENIED_NAMES:
        return None, f"{where} imports modules by name and is not allowed"
    try:
        value = getattr(module, attr, _MISSING)
    except Exception:  # a lazy attribute that fails to load: not usable either way
        value = _MISSING
    if value is _MISSING:
        return None, f"{where} does not exist"
    if isinstance(value, types.ModuleType) and value.__name__ not in ALLOWED_MODULES:
        return None, (f"{where} is the module {value.__name__}, which is not allowed "
                      f"(allowed: {', '.join(sorted(ALLOWED_MODULES))})")
    return value, None


class _ProjectTransformer(RestrictingNodeTransformer):
    """RestrictedPython's checks, relaxed just enough for ordinary nn.Module code."""

    def error(self, node, info):
        self.errors.append(f"Line {getattr(node, 'lineno', 0)}:{getattr(node, 'col_offset', 0)}: "
                           f"{info}")

    def check_name(self, node, name, allow_magic_methods=False):
        if name is not None and name.startswith("_") and not name.startswith("__"):
            return  # single-underscore helpers and attributes are ordinary Python
        if allow_magic_methods and name is not None and name.startswith("__") \
                and name.endswith("__") and node.col_offset != 0:
            return  # a method such as __repr__ or __post_init__ (the allow-list vets it)
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


def _unbound_references(source: str) -> set[str]:
    """Names some scope reads that no scope of the source binds for it: builtins (or typos).

    Python's own scoping (symtable), so a name bound in one function and read in another,
    where it is the builtin, is caught."""
    top = symtable.symtable(source, "<candidate>", "exec")
    module = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    out, todo = set(), [top]
    while todo:
        table = todo.pop()
        todo.extend(table.get_children())
        for sym in table.get_symbols():
            if sym.is_referenced() and not (sym.is_local() or sym.is_free()) \
                    and sym.get_name() not in module:
                out.add(sym.get_name())
    return out


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


@functools.cache
def _foreign_private_names() -> frozenset[str]:
    """Private attribute names of the classes a model's objects come from (tensors, modules,
    storages, functions, exceptions, …): a candidate's own private name may not be one."""
    import torch

    classes = [object, type, BaseException, types.FunctionType, types.MethodType,
               types.GeneratorType, types.CodeType, types.FrameType, types.TracebackType,
               torch.Tensor, torch.nn.Module, torch.nn.Parameter, torch.TypedStorage,
               torch.UntypedStorage, torch.autograd.Function, torch.Generator]
    for name in ALLOWED_MODULES - {"typing", "dataclasses"}:
        classes += [v for v in vars(_module(name)).values() if isinstance(v, type)]
    return frozenset(n for c in classes for n in dir(c) if n.startswith("_"))


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
        try:
            self.unbound = _unbound_references(source)
        except SyntaxError as e:  # what compile() would refuse: the source is rejected anyway
            self.unbound = set()
            self.flag(e, "syntax", f"syntax error: {e.msg}")
        self.own_private = _own_private_names(tree)
        self.modules: dict[str, object] = {}  # import alias -> module or object it names
        self.parents: dict[int, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[id(child)] = node
        # every import first: a function above an import must not see a module as a local
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                self._import(node)
            elif isinstance(node, ast.ImportFrom):
                self._import_from(node)
        shadowing = self.own_private & _foreign_private_names()
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
            return _module(name)
        except ImportError:
            self.flag(node, "import", f"'{name}' cannot be imported on this host")
            return None

    def _import(self, node):
        for alias in node.names:
            module = self._allowed_module(node, alias.name)
            if module is not None:
                root = alias.asname or alias.name.split(".")[0]
                self.modules[root] = module if alias.asname else _module(root)

    def _import_from(self, node):
        if node.module == LIBRARY and not node.level:
            self._import_blocks(node)
            return
        module = None if node.level else self._allowed_module(node, node.module or "")
        if node.level:
            self.flag(node, "import", "relative imports are not allowed")
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, "import", "'import *' is not allowed: name what you use")
            elif module is not None:
                value, why = _module_attribute(module, alias.name)
                if why:
                    self.flag(node, "import", why)
                else:
                    self.modules[alias.asname or alias.name] = value

    def _import_blocks(self, node):
        """A verified block is the candidate's own code as far as the rules go: its
        attributes are checked as those of any object, never resolved as a module's."""
        for alias in node.names:
            if alias.name in self.library:
                self.modules[alias.asname or alias.name] = _BLOCK
                continue
            known = ", ".join(sorted(self.library)) or "none yet"
            self.flag(node, "import", f"'{alias.name}' is not a verified library block "
                                      f"(verified: {known})")

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
        depth = 0
        while isinstance(value, types.ModuleType) and depth < len(attrs):
            value, why = _module_attribute(value, attrs[depth])
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
            elif attr in OBJECT_DENIED and not (attr in ("format", "format_map") and
                                                _plain_format_string(node.value)):
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


def _is_module_base(base: ast.expr) -> bool:
    return ast.unparse(base) in {"nn.Module", "torch.nn.Module", "Module"}


def literal_properties(value: ast.expr) -> object:
    """The value of a PROPERTIES assignment: a dict display or dict(key=...) of constants.

    ValueError when it is neither."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) \
            and value.func.id == "dict" and not value.args \
            and all(kw.arg is not None for kw in value.keywords):
        return {kw.arg: ast.literal_eval(kw.value) for kw in value.keywords}
    if not isinstance(value, ast.Dict):
        raise ValueError("not a dict")
    return ast.literal_eval(value)


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
                properties = literal_properties(stmt.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                out.append(Violation(stmt.lineno, stmt.col_offset, "properties",
                                     "PROPERTIES must be a literal dict of strings"))
                continue
            out.extend(Violation(stmt.lineno, stmt.col_offset, "properties", e)
                       for e in property_errors(properties))
        if isinstance(stmt, ast.ClassDef) and stmt.name == "Model":
            models.append(stmt)
    _width, fault = declared_width(tree)
    if fault:
        out.append(Violation(1, 0, "width", fault))
    if properties is None and not any(v.rule == "properties" for v in out):
        out.append(Violation(1, 0, "properties", "no top-level PROPERTIES = {...}"))
    if len(models) != 1:
        out.append(Violation(models[1].lineno if len(models) > 1 else 1, 0, "model",
                             f"expected exactly one top-level 'class Model(nn.Module)', "
                             f"found {len(models)}"))
    elif not any(_is_module_base(b) for b in models[0].bases):
        out.append(Violation(models[0].lineno, models[0].col_offset, "model",
                             "class Model must derive from nn.Module"))
    return complete(properties) if isinstance(properties, dict) and not any(
        v.rule == "properties" for v in out) else None


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
        properties = _module_checks(tree, out)
        # RestrictedPython's word only where the allow-list said nothing, to keep it crisp
        seen = {(v.line, v.col) for v in out}
        out += [v for v in _restricted_python(source) if (v.line, v.col) not in seen]
    except (RecursionError, MemoryError):
        return Verdict([Violation(1, 0, "size", "the source is nested too deeply")])
    except (SyntaxError, ValueError, TypeError, OverflowError) as e:  # symtable, huge literals
        return Verdict([Violation(1, 0, "syntax", f"unreadable source: {type(e).__name__}: "
                                                 f"{(str(e).splitlines() or [''])[0][:200]}")])
    return Verdict(sorted(set(out), key=lambda v: (v.line, v.col, v.rule)), properties)
