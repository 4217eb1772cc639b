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
