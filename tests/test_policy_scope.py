"""The policy resolves names as Python does, per scope: an import inside a function no longer
rebinds a module for the whole file, and the dynamic names are refused on every object.

The first test is issue 21's escape as the red team wrote it: ``from typing import Any as
torch`` in one function made the checker read ``torch.<chain>`` everywhere else as plain
attributes, and a public chain reached ``exec`` through typing_extensions → enum → builtins.
"""

import json
import sys

import pytest
from test_policy import HEADER, _body_lines

from sandbox.policy import check

ESCAPE = HEADER + '''

def _hide():
    from typing import Any as torch
    return torch


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        torch.typing_extensions.enum.bltns.exec("print('the policy was escaped')")
        self.inp = nn.Linear(n_inputs, latent_dim)
        self.out = nn.Linear(latent_dim, n_outputs)

    def forward(self, x, state=None):
        z = torch.tanh(self.inp(x))
        return self.out(z), z, z[:, -1]
'''


def _messages(source: str, **kw) -> list[str]:
    return [str(v) for v in check(source, **kw).violations]


def test_the_red_teams_rebinding_escape_is_refused():
    messages = _messages(ESCAPE)
    line = ESCAPE.splitlines().index("def _hide():") + 1
    assert f"line {line}, col 0: 'torch' is imported at the top of the file and bound again " \
           "in the function '_hide': give the new value its own name [scope]" in messages, messages
    assert any("'torch.typing_extensions' is the module typing_extensions" in m
               for m in messages), messages


def test_the_red_teams_rebinding_escape_is_refused_by_the_cli(monkeypatch, capsys, tmp_path):
    from agent import cli

    path = tmp_path / "escape.py"
    path.write_text(ESCAPE)
    monkeypatch.setattr(sys, "argv", ["descartes-agent", "check", str(path), "--json",
                                      "--sandbox", "process", "--allow-degraded"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    result = json.loads(capsys.readouterr().out)
    assert exit_info.value.code == 1 and not result["accepted"], result
    assert result["error"]["kind"] == "policy"
    text = result["error"]["message"]
    assert "'torch' is imported at the top of the file and bound again in the function " \
           "'_hide'" in text, text
    assert "imports go at the top level of the file" in text, text
    assert "'torch.typing_extensions' is the module typing_extensions" in text, text


@pytest.mark.parametrize("lines", [
    ("from typing import Any as F",),
    ("import math as nn",),
    ("torch = x",),
    ("for F in range(2):", "    pass"),
    ("def inner(torch):", "    return torch"),
    ("g = lambda nn: nn",),
    ("y = [math for math in range(2)]",),
    ("y = [(F := k) for k in range(2)]",),
    ("with torch.no_grad() as nn:", "    pass"),
    ("try:", "    pass", "except ValueError as F:", "    pass"),
    ("class Inner:", "    torch = 1",),
    ("def nn():", "    return 1"),
    ("del math",),
    ("dataclass: int = 1",),
])
def test_an_imported_name_bound_again_in_any_scope_is_refused(lines):
    messages = _messages(_body_lines(*lines))
    assert any("[scope]" in m and "is imported at the top of the file and bound again" in m
               for m in messages), messages


@pytest.mark.parametrize("source, words", [
    (HEADER + "\ntorch = None\n", "'torch' is imported at the top of the file and bound "
                                  "again in the top level"),
    (HEADER + "\nimport math as F\n", "'F' is imported twice as different things"),
    (HEADER + "\n\ndef f(nn=None):\n    return nn\n", "bound again in the function 'f'"),
])
def test_rebinding_at_the_top_level_is_refused(source, words):
    messages = _messages(source)
    assert any(words in m for m in messages), messages


def test_the_same_module_imported_twice_at_the_top_is_one_binding():
    source = HEADER.replace("import torch\n", "import torch\nimport torch.nn\nimport torch\n")
    assert "import torch.nn\n" in source
    verdict = check(source + "\n\nclass Model(nn.Module):\n    pass\n")
    assert verdict.accepted, [str(v) for v in verdict.violations]


def test_an_import_in_a_function_is_refused_with_one_line_saying_where_imports_go():
    messages = _messages(_body_lines("from torch.nn import functional"))
    assert any("imports go at the top level of the file, not inside a function" in m
               for m in messages), messages


def test_library_blocks_imported_at_the_top_pass_and_may_not_be_rebound():
    source = HEADER.replace("import math\n", "import math\nfrom library import Decay\n")
    model = "\n\nclass Model(nn.Module):\n    def __init__(self, a, b, c):\n" \
            "        super().__init__()\n        self.d = Decay(c)\n"
    assert check(source + model, library=frozenset({"Decay"})).accepted
    rebound = source + "\n\ndef f(Decay):\n    return Decay\n" + model
    assert any("'Decay' is imported at the top" in m
               for m in _messages(rebound, library=frozenset({"Decay"})))


@pytest.mark.parametrize("code", [
    "x.exec('1')", "x.eval()", "self.eval()", "x.compile('1', 'f', 'exec')", "x.open('f')",
    "x.load_inline('', '')", "x.execfile('f')", "x.run_path('f')", "x.import_module('os')",
    "x.system('id')", "x.popen('id')", "x.spawnv(0, 'id', [])", "x.posix_spawnp('id')",
    "x.fork()", "x.forkpty()", "x.execv('id', [])", "x.globals()", "x.getattr(x, 'y')",
    "x.setattr(x, 'y', 1)", "x.type('os')", "x.exec_module(x)",
])
def test_dynamic_names_are_refused_as_attributes_of_any_object(code):
    attr = code.split("(")[0].rsplit(".", 1)[1]
    messages = _messages(_body_lines("x = torch.zeros(1)", "e = ValueError()", code))
    assert any(f"('.{attr}' is not allowed)" in m for m in messages), messages


@pytest.mark.parametrize("code", [
    "torch.special = nn", "nn.Linear.forward = None", "del F.softplus", "torch.pi += 1",
    "dataclass.x = 1",
])
def test_what_the_file_imports_is_read_only(code):
    messages = _messages(_body_lines(code))
    assert any("what the file imports is read-only" in m for m in messages), messages


def test_dynamic_names_are_refused_on_modules_too():
    messages = _messages(_body_lines("y = torch.fork(F.relu, x)"))
    assert any("'torch.fork' runs code, files or processes" in m for m in messages), messages
