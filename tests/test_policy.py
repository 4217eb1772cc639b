"""The static policy: real model code passes, every banned construct is named with its place."""

import pytest

from descartes_core.contract import template_sources
from sandbox.policy import check

HEADER = '''import math
import typing
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

PROPERTIES = {"family": "t", "time_handling": "custom", "gradient_strategy": "direct",
              "latent_structure": "unconstrained", "input_coupling": "additive",
              "solver": "euler"}
'''

IDIOMS = HEADER + '''

@dataclass
class Sizes:
    hidden: int = 8
    scale: float = 1.0


class Cell(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.lin = nn.Linear(n, n)

    def forward(self, h):
        return torch.tanh(self.lin(h))


class Model(nn.Module):
    """Inner classes, buffers, module lists, comprehensions, f-strings, in-place ops."""

    def __init__(self, n_inputs, n_outputs, latent_dim):
        super().__init__()
        self._n = latent_dim
        self.cells = nn.ModuleList([Cell(latent_dim) for _ in range(2)])
        self.register_buffer("decay", torch.exp(-torch.arange(latent_dim) / 10.0))
        self.inp = nn.Linear(n_inputs, latent_dim)
        self.out = nn.Linear(latent_dim, n_outputs)
        self.calls: int = 0
        self.name = f"model-{latent_dim}"

    def _step(self, h, u):
        for cell in self.cells:
            h = cell(h) * self.decay + u
        return h

    def forward(self, x, state=None):
        self.calls += 1
        h = x.new_zeros(x.shape[0], self._n) if state is None else state
        u = self.inp(x)
        hs = []
        for t in range(x.shape[1]):
            h = self._step(h, u[:, t])
            hs.append(h)
        z = torch.stack(hs, dim=1)
        z[..., 0] += 0.0
        y = F.softplus(self.out(z[:, :, :]))
        return y * math.sqrt(1.0), z, h
'''


@pytest.mark.parametrize("name", list(template_sources()))
def test_every_template_passes(name):
    verdict = check(template_sources()[name])
    assert verdict.accepted, [str(v) for v in verdict.violations]
    assert verdict.properties["family"]


def test_ordinary_pytorch_idioms_pass():
    verdict = check(IDIOMS)
    assert verdict.accepted, [str(v) for v in verdict.violations]


def _body(code: str) -> str:
    return HEADER + "\n\nclass Model(nn.Module):\n    def forward(self, x, state=None):\n" + \
        "\n".join("        " + line for line in code.splitlines()) + "\n        return x, x, None\n"


BODY_LINE = HEADER.count("\n") + 5  # the first line of the forward body


@pytest.mark.parametrize("code, rule, words", [
    ("import os", "import", "'os' is not allowed"),
    ("from subprocess import run", "import", "'subprocess'"),
    ("from torch import *", "import", "import *"),
    ("open('/etc/passwd')", "builtin", "'open'"),
    ("eval('1')", "builtin", "'eval'"),
    ("__import__('os')", "builtin", "'__import__'"),
    ("getattr(torch, 'os')", "builtin", "'getattr'"),
    ("x.__class__.__bases__", "dunder", "'__bases__'"),
    ("().__class__.__base__.__subclasses__()", "dunder", "'__subclasses__'"),
    ("torch.os.system('id')", "escape-hatch", "torch.os"),
    ("torch.load('w.pt')", "escape-hatch", "torch.load"),
    ("torch.serialization.pickle.loads(b'')", "escape-hatch", "pickle"),
    ("torch.utils.cpp_extension.load_inline('', '')", "escape-hatch", "cpp_extension"),
    ("torch._C._get_tracing_state()", "escape-hatch", "torch._C"),
    ("torch.hub.load('a', 'b')", "escape-hatch", "torch.hub"),
    ("torch.ops.aten.add(x, x)", "escape-hatch", "torch.ops"),
    ("torch.multiprocessing.spawn(x)", "escape-hatch", "multiprocessing"),
    ("torch.from_file('/etc/passwd')", "escape-hatch", "from_file"),
    ("math.sys.exit(0)", "escape-hatch", "math.sys"),
    ("global y", "statement", "'global'"),
])
def test_each_banned_construct_is_reported_with_its_place(code, rule, words):
    verdict = check(_body(code))
    assert not verdict.accepted
    hits = [v for v in verdict.violations if v.rule == rule and words in v.message]
    assert hits, [str(v) for v in verdict.violations]
    assert hits[0].line == BODY_LINE and hits[0].col >= 8
    assert str(hits[0]).startswith(f"line {BODY_LINE}, col ")


@pytest.mark.parametrize("source, words", [
    (HEADER.replace('"euler"', '"rk45"') + "\nclass Model(nn.Module):\n    pass\n",
     "'rk45' is not valid (valid: dopri5"),
    (HEADER.replace("PROPERTIES =", "PROPS =") + "\nclass Model(nn.Module):\n    pass\n",
     "no top-level PROPERTIES"),
    (HEADER.replace('"t"', "str(1)") + "\nclass Model(nn.Module):\n    pass\n",
     "must be a literal dict"),
    (HEADER + "\nclass Net(nn.Module):\n    pass\n", "found 0"),
    (HEADER + "\nclass Model(nn.Module):\n    pass\n\n\nclass Model(nn.Module):\n    pass\n",
     "found 2"),
    (HEADER + "\nclass Model:\n    pass\n", "must derive from nn.Module"),
    (HEADER + "\nwhile True:\n    pass\n", "top-level While"),
    (HEADER + "\nclass Model(nn.Module):\n    def f(self:\n", "syntax error"),
])
def test_module_level_rules(source, words):
    verdict = check(source)
    assert any(words in v.message for v in verdict.violations), \
        [str(v) for v in verdict.violations]


def _body_lines(*lines: str) -> str:
    return _body("\n".join(lines))


@pytest.mark.parametrize("lines, rule, words", [
    # aliasing a module escapes no check
    (("T = torch", "T.load('w.pt')"), "module", "'torch' is used through its attributes"),
    (("f = lambda: nn",), "module", "'nn' is used"),
    # private helpers of allowed modules, and modules reached through them
    (("torch.Tensor._make_subclass(x, x)",), "private", "torch.Tensor._make_subclass"),
    (("nn.modules.module.inspect.getsource(x)",), "escape-hatch", "torch.nn.modules"),
    (("F.torch.serialization.load('a')",), "escape-hatch", "serialization"),
    (("nn.init.warnings.warn('x')",), "escape-hatch", "the module warnings"),
    # names and attributes from strings
    (("hasattr(x, 'weight')",), "builtin", "'hasattr'"),
    (("'{0.__class__}'.format(x)",), "escape-hatch", "'.format'"),
    (("type(x)",), "builtin", "'type'"),
    # files and native code through tensors, storages and frames
    (("x.numpy().tofile('/tmp/a')",), "escape-hatch", "'.numpy'"),
    (("torch.UntypedStorage.from_file('a')",), "escape-hatch", "storage"),
    (("g = (i for i in range(3))", "g.gi_frame.f_globals"), "escape-hatch", "'.gi_frame'"),
    (("torch.compile(x)",), "escape-hatch", "'compile' APIs"),
    (("torch.set_num_threads(64)",), "escape-hatch", "'threads' APIs"),
    # typing evaluates strings; only the listed names of typing and dataclasses
    (("y: 'torch.Tensor' = x",), "annotation", "string annotations"),
    (("typing.get_type_hints(x)",), "escape-hatch", "not allowed (from typing"),
    (("from dataclasses import fields",), "import", "'dataclasses.fields' is not allowed"),
    (("undefined_thing(x)",), "name", "'undefined_thing' is not defined"),
])
def test_bypasses_of_a_deny_list_are_refused(lines, rule, words):
    verdict = check(_body_lines(*lines))
    hits = [v for v in verdict.violations if v.rule == rule and words in v.message]
    assert hits, [str(v) for v in verdict.violations]


LLM_IDIOMS = '''import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

PROPERTIES = dict(family="dc", time_handling="custom", gradient_strategy="direct",
                  latent_structure="unconstrained", input_coupling="additive", solver="euler")
SCALES = dict(fast=5.0, slow=50.0)


@dataclass
class Config:
    hidden: int = 16
    taus: list = field(default_factory=lambda: [5.0, 50.0])


def leak(h: torch.Tensor, tau: float) -> torch.Tensor:
    return h * math.exp(-1.0 / tau)


class Model(nn.Module):
    def __init__(self, n_inputs, n_outputs, latent_dim, cfg: Optional[Config] = None):
        super().__init__()
        self.cfg = cfg or Config()
        self.inp = nn.Linear(n_inputs, latent_dim)
        nn.init.xavier_uniform_(self.inp.weight)
        self.out = nn.Linear(latent_dim, n_outputs)

    def forward(self, input, state=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = input.new_zeros(input.shape[0], self.out.in_features) if state is None else state
        hs = []
        for t in range(input.shape[1]):
            h = leak(h, SCALES["fast"]) + torch.tanh(self.inp(input[:, t]))
            hs.append(h)
        z = torch.stack(hs, 1)
        return F.softplus(self.out(z)), z, h
'''


def test_valid_idioms_of_llm_written_code_pass():
    source = LLM_IDIOMS
    verdict = check(source)
    assert verdict.accepted, [str(v) for v in verdict.violations]
    assert verdict.properties["family"] == "dc"


@pytest.mark.parametrize("source", ["", "\x00", "x = '\ud800'", "(" * 500, "a" + "+a" * 20000,
                                    "PROPERTIES = {('a',): 1}", "PROPERTIES = {[]: 1}",
                                    "PROPERTIES = dict(**x)", 42, None])
def test_the_policy_is_total(source):
    verdict = check(source)
    assert not verdict.accepted and all(isinstance(v.message, str) for v in verdict.violations)


RED_TEAM = {  # sources that passed an earlier version of the policy and ran shell commands
    "a module from AttributeError.obj": """
        try:
            torch.set_default_tensor_type("os.nothing_here")
        except AttributeError as e:
            e.obj.system("id")""",
    "a private helper on a local name": """
        t = torch.zeros(1)
        s = t._typed_storage()
        s.type("os")""",
    "a builtin bound in another scope": """
        p = license
        p._Printer__filenames = ["/etc/passwd"]""",
}


@pytest.mark.parametrize("name", list(RED_TEAM))
def test_the_red_teams_bypasses_are_refused(name):
    source = HEADER + "\n\ndef _unused(license=None):\n    return license\n\n\n" + \
        "class Model(nn.Module):\n    def __init__(self, n_inputs, n_outputs, latent_dim):\n" + \
        "        super().__init__()" + RED_TEAM[name] + "\n"
    verdict = check(source)
    assert not verdict.accepted, name


def test_a_module_used_above_its_import_is_still_a_module():
    source = HEADER.replace("import torch\n", "") + \
        "\n\ndef _lib():\n    return torch\n\n\nimport torch\n\n\n" + \
        "class Model(nn.Module):\n    pass\n"
    verdict = check(source)
    assert any(v.rule == "module" and v.line == source.splitlines().index("    return torch") + 1
               for v in verdict.violations), [str(v) for v in verdict.violations]


@pytest.mark.parametrize("code, ok", [
    ("s = 'r={} t={:.2f}'.format(1, 2.0)", True),
    ("s = '{0.__class__}'.format(x)", False),
    ("s = '{x[0]}'.format(x=x)", False),
    ("self._own = 1\n_ = self._own", True),
    ("_ = x._version", False),
])
def test_plain_format_strings_and_own_private_names(code, ok):
    assert check(_body(code)).accepted == ok, [str(v) for v in check(_body(code)).violations]


def test_ordinary_dunder_methods_pass_and_special_ones_do_not():
    ok = IDIOMS.replace("    def _step(self, h, u):",
                        "    def __repr__(self):\n        return 'm'\n\n    def _step(self, h, u):")
    assert check(ok).accepted, [str(v) for v in check(ok).violations]
    bad = ok.replace("__repr__", "__getattr__")
    assert any("'__getattr__' is not allowed" in v.message for v in check(bad).violations)
