"""The shape of a model file: imports, constants, functions and classes at top level, a
literal ``PROPERTIES``, exactly one ``class Model(nn.Module)``, a declared width within the
contract. Part of the static policy (sandbox.policy)."""

from __future__ import annotations

import ast

from descartes_core.contract import complete, declared_width, property_errors
from sandbox.policy_tables import TOP_LEVEL, Violation


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


def module_checks(tree: ast.Module, out: list[Violation]) -> dict | None:
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
