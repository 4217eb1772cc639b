"""The policy under fuzzing: any text gives a Verdict (never an exception), and an escape
planted anywhere in a real model file is refused wherever it lands."""

import ast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descartes_core.contract import template_sources
from sandbox.policy import Verdict, check

SOURCES = list(template_sources().values())
FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
ESCAPES = [
    "open('/etc/passwd')", "__import__('os')", "getattr(torch, 'load')", "T = torch",
    "torch.load('w')", "torch.serialization.pickle.loads(b'')", "x.numpy().tofile('f')",
    "torch.Tensor._make_subclass(x, x)", "nn.modules.module.inspect", "'{0.__class__}'.format(x)",
    "torch.UntypedStorage.from_file('f')", "type(x).mro()", "F.torch.hub.load('a', 'b')",
    "vars(x)", "torch.compile(x)", "e.__traceback__.tb_frame.f_globals", "math.sys",
    "exec('1')", "z: 'torch.Tensor' = x", "dataclasses.builtins", "x.system('id')",
    "x.type('os')", "e.with_traceback(None).open('/etc/passwd')", "torch.typing_extensions",
]


@FUZZ
@given(st.text(max_size=400))
def test_any_text_gives_a_verdict(text):
    assert isinstance(check(text), Verdict)


@FUZZ
@given(st.sampled_from(SOURCES), st.integers(0, 10**6), st.integers(0, 10**6),
       st.text(max_size=40))
def test_spliced_and_cut_templates_give_a_verdict(source, a, b, junk):
    i, j = sorted((a % len(source), b % len(source)))
    for mutated in (source[:i] + junk + source[j:], source[:i], source[i:j] * 2,
                    source.replace(source[i:j], junk, 1)):
        verdict = check(mutated)
        assert isinstance(verdict, Verdict)
        assert all(isinstance(v.message, str) for v in verdict.violations)


def _function_bodies(source: str) -> list[int]:
    """Line numbers (1-based) of the first statement of each function body."""
    return [node.body[0].lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef) and not isinstance(
                node.body[0], ast.Expr)]


@FUZZ
@given(st.sampled_from(SOURCES), st.sampled_from(ESCAPES), st.integers(0, 10**6))
def test_an_escape_planted_in_any_function_is_refused(source, escape, k):
    lines = source.splitlines()
    places = _function_bodies(source)
    line = places[k % len(places)]
    indent = lines[line - 1][: len(lines[line - 1]) - len(lines[line - 1].lstrip())]
    x_bound = f"{indent}x = torch.zeros(1)\n{indent}e = ValueError()\n"
    planted = "\n".join(lines[: line - 1]) + "\n" + x_bound + indent + escape + "\n" + \
        "\n".join(lines[line - 1:]) + "\n"
    assert check(source).accepted
    verdict = check(planted)
    assert not verdict.accepted, (escape, line)
