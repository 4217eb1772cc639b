"""RestrictedPython's second opinion on a candidate, under a policy relaxed just enough for
ordinary ``nn.Module`` code; only its verdict is used (sandbox.policy runs it after the
allow-list and keeps its word only where the allow-list said nothing)."""

from __future__ import annotations

import re

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from sandbox.policy_tables import ALLOWED_DUNDERS, Violation


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


def restricted_python(source: str) -> list[Violation]:
    result = compile_restricted_exec(source, filename="<candidate>", policy=_ProjectTransformer)
    out = []
    for err in result.errors:
        m = _RP_LINE.match(err)
        if m:
            out.append(Violation(int(m[1]), int(m[2]), "restricted-python", m[3]))
        elif not err.startswith("Line"):  # syntax errors are reported by the AST pass
            out.append(Violation(0, 0, "restricted-python", err))
    return out
