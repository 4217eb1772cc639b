"""Nested-scope rebinding, planted in every function of every template: for each name the
template imports and each way Python binds a name, the policy refuses the file, and an
escape chain through the real module (read at the top level, where the name is still the
import) gets no further.

Each planted form is first planted under a fresh name, which the policy accepts (an import
in a function is refused, as such): the refusal is the rebinding's, not the form's. The
sweep is deterministic: every function, every name, and every form in every template.
"""

import ast
import symtable
import types

import pytest

from descartes_core.contract import template_sources
from sandbox.policy import check
from sandbox.policy_tables import OBJECT_DENIED, dynamic_attribute

FORMS = {
    "import in a function": ["from typing import Any as {a}"],
    "module import in a function": ["import math as {a}"],
    "assignment": ["{a} = None"],
    "annotated assignment": ["{a}: int = 1"],
    "for target": ["for {a} in range(1):", "    pass"],
    "with-as": ["with torch.no_grad() as {a}:", "    pass"],
    "except-as": ["try:", "    pass", "except ValueError as {a}:", "    pass"],
    "walrus": ["_w = [({a} := k) for k in range(2)]"],
    "del": ["{a} = 1", "del {a}"],
    "nested def name": ["def {a}():", "    return 1"],
    "nested class name": ["class {a}:", "    pass"],
    "argument": ["def _inner({a}):", "    return {a}"],
    "keyword-only argument": ["def _inner(*, {a}=None):", "    return {a}"],
    "star argument": ["def _inner(*{a}):", "    return {a}"],
    "import in a nested def": ["def _inner():", "    from typing import Any as {a}",
                               "    return {a}"],
    "assignment in a nested def": ["def _inner():", "    {a} = 1", "    return {a}"],
    "class attribute": ["class _Inner:", "    {a} = 1"],
    "lambda argument": ["_f = lambda {a}: {a}"],
    "list comprehension": ["_l = [{a} for {a} in range(2)]"],
    "generator expression": ["_g = list({a} for {a} in range(2))"],
    "dict comprehension": ["_d = {{{a}: 1 for {a} in range(2)}}"],
    "set comprehension": ["_s = {{{a} for {a} in range(2)}}"],
}
FRESH = "fresh_name"
PER_SITE = 3
"""Forms planted at least per (function, name)."""
IMPORT_HERE = "imports go at the top level of the file"
REBOUND = "'{a}' is imported at the top of the file and bound again in"
DANGEROUS = {"builtins", "io", "os", "sys", "subprocess", "ctypes", "importlib", "shutil",
             "socket", "pickle"}


def _escape_path(module: types.ModuleType, depth: int = 4) -> str | None:
    """A public chain of attribute names from `module` to a dangerous module, each name one
    the policy lets pass on a plain object: what the checker let through once it took an
    imported name for something else."""
    frontier, seen = [(module, "")], {id(module)}
    for _ in range(depth):
        nxt = []
        for mod, path in frontier:
            for name in sorted(vars(mod)):
                value = vars(mod)[name]
                if not isinstance(value, types.ModuleType) or name.startswith("_") \
                        or name in OBJECT_DENIED or dynamic_attribute(name) or id(value) in seen:
                    continue
                if value.__name__ in DANGEROUS:
                    return f"{path}.{name}"
                seen.add(id(value))
                nxt.append((value, f"{path}.{name}"))
        frontier = nxt
    return None


def _imports(source: str) -> dict[str, object]:
    """Each name the template imports at its top level → what it names."""
    scope: dict[str, object] = {}
    for stmt in ast.parse(source).body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([stmt], []), "<imports>", "exec"), scope)  # trusted
    top = symtable.symtable(source, "<t>", "exec")
    return {s.get_name(): scope[s.get_name()] for s in top.get_symbols() if s.is_imported()}


def _sites(source: str) -> list[tuple[str, int, str]]:
    """(function name, line before which to plant, indent) for every def of the source."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            first = node.body[0]
            docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            line = first.end_lineno + 1 if docstring else first.lineno
            out.append((node.name, line, " " * first.col_offset))
    return out


def _plant(source: str, line: int, indent: str, form: list[str], name: str) -> str:
    lines = source.splitlines()
    planted = [indent + f.format(a=name) for f in form]
    return "\n".join(lines[:line - 1] + planted + lines[line - 1:]) + "\n"


TEMPLATES = template_sources()
ESCAPES = {name: path for source in TEMPLATES.values()
           for name, value in _imports(source).items()
           if isinstance(value, types.ModuleType) and (path := _escape_path(value))}


def test_the_sweep_has_escape_chains_to_plant():
    """The chains reach dangerous modules, and each is refused where its name is the import."""
    assert {"torch", "nn", "F"} <= set(ESCAPES), ESCAPES
    for source in TEMPLATES.values():
        for name in set(_imports(source)) & set(ESCAPES):
            assert not check(source + f"\n_ESCAPE = {name}{ESCAPES[name]}\n").accepted, name


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_every_rebinding_in_every_function_is_refused(template):
    """Every function × every imported name, each with the next few forms in turn, so each
    template plants every form; each form is checked once under a fresh name."""
    source = TEMPLATES[template]
    verdict = check(source)
    assert verdict.accepted, [str(v) for v in verdict.violations]
    forms = list(FORMS.items())
    combos = [(site, name) for site in _sites(source) for name in _imports(source)]
    per_site = max(PER_SITE, -(-len(forms) // len(combos)))  # every form at least once
    plants = [(site, name, forms[k % len(forms)]) for i, (site, name) in enumerate(combos)
              for k in range(i * per_site, (i + 1) * per_site)]
    assert {form for _, _, (form, _) in plants} == set(FORMS)
    controlled, missed = set(), []
    for (function, line, indent), name, (form_name, form) in plants:
        if form_name not in controlled:
            controlled.add(form_name)
            control = [str(v) for v in check(_plant(source, line, indent, form, FRESH)).violations]
            nested_import = any(f.lstrip().startswith(("import ", "from ")) for f in form)
            assert control == [] or (nested_import and all(
                IMPORT_HERE in m for m in control)), (function, form_name, control)
        chain = f"\n_ESCAPE = {name}{ESCAPES[name]}\n" if name in ESCAPES else ""
        verdict = check(_plant(source, line, indent, form, name) + chain)
        if verdict.accepted or not any(REBOUND.format(a=name) in v.message
                                       for v in verdict.violations):
            missed.append((function, form_name, name))
    assert not missed, missed
