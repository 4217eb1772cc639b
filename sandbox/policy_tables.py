"""The static policy's tables, and the lookups of one name against them.

What a model file may import, which module attributes and object attributes it may
name, which builtins it may call and which statements it may write. The checker
(``sandbox.policy``) walks a source and asks these; nothing here reads a candidate.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import re
import types
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One breach of the policy, where it is and why, in words the architect can act on."""

    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, col {self.col}: {self.message} [{self.rule}]"


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
LIBRARY = "library"
"""``from library import NAME`` imports a verified block."""
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
DYNAMIC_ATTRIBUTES = frozenset({
    "exec", "eval", "compile", "open", "fdopen", "open_code", "load_inline", "execfile",
    "run_path", "run_module", "run_code", "import_module", "exec_module", "load_module",
    "load_source", "load_dynamic", "system", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "hasattr", "breakpoint", "interact", "dlopen", "CDLL", "cdll",
    "PyDLL", "pydll", "LoadLibrary", "type",
})
"""Attribute names refused on every object, whatever it is: dynamic code, files, processes
and imports by name (``Tensor.type("pkg.mod")`` imports ``pkg``), so a public path that
reaches ``builtins``, ``os`` or ``ctypes`` still ends at a refused name."""
DYNAMIC_FAMILIES = ("exec", "spawn", "popen", "fork")
"""A word of an attribute name starting with one of these is a process API on any object:
``execv``, ``posix_spawnp``, ``spawnlp``, ``forkpty``, ``popen2``."""
OBJECT_DENIED = frozenset({
    "numpy", "tofile", "dump", "dumps", "save", "load", "loads", "storage", "untyped_storage",
    "share_memory_", "from_file", "format", "format_map", "mro", "f_globals", "f_locals",
    "f_back", "f_code", "f_builtins", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame",
    "cr_code", "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "os", "sys",
    "builtins", "inspect", "subprocess", "importlib", "ctypes", "socket", "shutil", "pickle",
    "serialization", "environ", "modules", "obj", "tb_lasti", "__traceback__",
}) | DYNAMIC_ATTRIBUTES
"""Attribute names refused on objects (of ``self``, tensors, locals): the OS, files,
frames, string formatting and the dynamic names above."""
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
"""Builtin names refused anywhere, even rebound."""
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


def _words(name: str) -> list[str]:
    return [m.lower() for m in _WORD.findall(name)]


def denied_word(name: str) -> str | None:
    """The word of `name` that marks a file, process, compile or loader API, if any."""
    return next((w for w in _words(name) if w in DENIED_WORDS), None)


def dynamic_attribute(attr: str) -> bool:
    """Whether `attr` is refused as an attribute of any object or module."""
    return attr in DYNAMIC_ATTRIBUTES or any(w.startswith(DYNAMIC_FAMILIES) for w in _words(attr))


@functools.cache
def host_module(name: str) -> types.ModuleType:
    """A module of the allow-list, imported on the host to resolve attribute chains."""
    return importlib.import_module(name)  # trusted modules of the allow-list


_MISSING = object()


def module_attribute(module: types.ModuleType, attr: str) -> tuple[object, str | None]:
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
    if dynamic_attribute(attr):
        return None, f"{where} runs code, files or processes and is not allowed"
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


@functools.cache
def foreign_private_names() -> frozenset[str]:
    """Private attribute names of the classes a model's objects come from (tensors, modules,
    storages, functions, exceptions, …): a candidate's own private name may not be one."""
    import torch

    classes = [object, type, BaseException, types.FunctionType, types.MethodType,
               types.GeneratorType, types.CodeType, types.FrameType, types.TracebackType,
               torch.Tensor, torch.nn.Module, torch.nn.Parameter, torch.TypedStorage,
               torch.UntypedStorage, torch.autograd.Function, torch.Generator]
    for name in ALLOWED_MODULES - {"typing", "dataclasses"}:
        classes += [v for v in vars(host_module(name)).values() if isinstance(v, type)]
    return frozenset(n for c in classes for n in dir(c) if n.startswith("_"))
