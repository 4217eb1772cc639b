"""Duplicates by text, by skeleton and by behaviour: a renamed template is the same
candidate, a template with one constant changed shares its skeleton only, another
template shares nothing; the sandbox's fingerprint sees through renaming and not
through a real change."""

import ast
import io
import json
import re
import tokenize

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dedup import skeleton_hash, source_hash
from descartes_core.contract import load_candidate, template_sources
from sandbox import protocol, runner

HEX = re.compile(r"[0-9a-f]{64}")
TEMPLATES = template_sources()
KEEP = {"Model", "PROPERTIES", "forward", "self"}  # the contract's names and nn.Module's


def _user_names(source: str) -> set[str]:
    """What the author chose: classes, functions, arguments, variables, assigned
    attributes; minus any that the source also uses as a library's keyword or attribute."""
    tree = ast.parse(source)
    mine, library = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            mine.add(node.name)
        elif isinstance(node, ast.arg):
            mine.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            mine.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            mine.add(node.attr)
        elif isinstance(node, ast.keyword) and node.arg:
            library.add(node.arg)
    for node in ast.walk(tree):  # x.shape, torch.tanh, lin.bias: attributes nobody assigned
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) \
                and node.attr not in mine:
            library.add(node.attr)
    return {n for n in mine - library - KEEP if not n.startswith("__")}


def renamed(source: str) -> str:
    """A copy with every user identifier renamed, comments rewritten and one added:
    what a careless (or a cheating) architect would send as "new"."""
    names = _user_names(source)
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string in names:
            tok = tok._replace(string=f"q_{tok.string}")
        elif tok.type == tokenize.COMMENT:
            tok = tok._replace(string="# rewritten")
        out.append(tok)
    return "# a brand-new architecture\n" + tokenize.untokenize(out)


def _forward(source: str) -> torch.Tensor:
    _, model_cls = load_candidate(source)
    torch.manual_seed(0)
    model = model_cls(21, 20, 8)
    with torch.no_grad():
        y, z, _ = model(torch.randn(2, 12, 21, generator=torch.Generator().manual_seed(1)))
    return torch.cat([y, z], dim=-1)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_a_renamed_template_has_another_text_but_the_same_skeleton(name):
    src = TEMPLATES[name]
    copy = renamed(src)
    assert len(_user_names(src)) >= 5
    assert torch.equal(_forward(copy), _forward(src))  # the copy really is the same model
    assert source_hash(copy) != source_hash(src)
    assert skeleton_hash(copy) == skeleton_hash(src)


def _bump_last_number(source: str) -> str:
    toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    i = max(i for i, t in enumerate(toks) if t.type == tokenize.NUMBER)
    toks[i] = toks[i]._replace(string=repr(ast.literal_eval(toks[i].string) + 1))
    return tokenize.untokenize(toks)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_one_constant_changed_keeps_the_skeleton_not_the_source_hash(name):
    src = TEMPLATES[name]
    changed = _bump_last_number(src)
    assert changed != src
    assert source_hash(changed) != source_hash(src)
    assert skeleton_hash(changed) == skeleton_hash(src)
    assert skeleton_hash(renamed(changed)) == skeleton_hash(src)  # renamed and changed


def test_comments_and_docstrings_change_no_hash():
    src = TEMPLATES["T1"]
    noted = src.replace('"""T1 —', '"""Another story. T1 —') + "\n# trailing comment\n"
    assert source_hash(noted) == source_hash(src)
    assert skeleton_hash(noted) == skeleton_hash(src)


def test_different_templates_have_different_skeletons():
    skeletons = {skeleton_hash(s) for s in TEMPLATES.values()}
    assert len(skeletons) == len(TEMPLATES)


@pytest.mark.parametrize("old, new", [
    ("torch.tanh(g)", "torch.sigmoid(g)"),  # another nonlinearity: a library name
    ("self.fast(hf, x[:, t])", "self.slow(hf, x[:, t])"),  # another wiring
    ("h + rate * (torch.tanh(g) - h)", "h - rate * (torch.tanh(g) - h)"),  # another operator
])
def test_a_real_change_changes_the_skeleton(old, new):
    src = TEMPLATES["T7"]
    assert old in src
    assert skeleton_hash(src.replace(old, new)) != skeleton_hash(src)


def test_library_attributes_stay_apart_from_renamable_ones():
    a = "import torch\ndef f(x):\n    return torch.tanh(x.shape[0])\n"
    assert skeleton_hash(a) == skeleton_hash(a.replace("x", "y").replace("def f", "def g"))
    assert skeleton_hash(a) != skeleton_hash(a.replace("tanh", "sigmoid"))
    assert skeleton_hash(a) != skeleton_hash(a.replace("shape", "size"))


def test_strings_and_bools_are_not_constants_to_blank():
    src = TEMPLATES["T2"]
    assert skeleton_hash(src) != skeleton_hash(src.replace('"midpoint"', '"euler"'))
    assert skeleton_hash(src) != skeleton_hash(src.replace("bias=False", "bias=True"))


@pytest.mark.parametrize("text", ["def (", "x = \x00", "(" * 500 + ")" * 500,
                                  "x = " + "-" * 100_000 + "1", "\ud800 = 1", ""])
def test_skeleton_hash_is_total(text):
    assert HEX.fullmatch(skeleton_hash(text))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_skeleton_hash_is_total_on_any_text(text):
    assert HEX.fullmatch(skeleton_hash(text)) and HEX.fullmatch(source_hash(text))


# the functional fingerprint, through the real sandbox ---------------------------------------
def _fingerprints(backend, sources: dict[str, str]) -> dict[str, str]:
    assert len(set(sources.values())) == len(sources)
    prints = {}
    for key, source in sources.items():
        out = runner.check(source, latent_dim=8, backend=backend)
        assert out.ok, (key, out.error)
        assert HEX.fullmatch(out.check["fingerprint"])
        prints[key] = out.check["fingerprint"]
    return prints


def test_the_fingerprint_sees_through_renaming_not_through_a_changed_constant(backend):
    src = TEMPLATES["T2"]
    prints = _fingerprints(backend, {"original": src, "renamed": renamed(src),
                                     "constant": src.replace("fill_(2.0)", "fill_(1.5)")})
    assert prints["renamed"] == prints["original"]
    assert prints["constant"] != prints["original"]


def test_another_solver_or_width_inside_changes_the_fingerprint(backend):
    if backend == "docker":
        pytest.skip("the worker computes the fingerprint alike in both backends: one is enough")
    t2, t7 = TEMPLATES["T2"], TEMPLATES["T7"]
    prints = _fingerprints(backend, {
        "T2": t2, "T2 euler": t2.replace('method="midpoint"', 'method="euler"'),
        "T7": t7,  # the fast block takes a quarter of the latents, not a half:
        "T7 narrow": t7.replace("self.n_fast = latent_dim // 2", "self.n_fast = latent_dim // 4"),
    })
    assert len(set(prints.values())) == len(prints), prints


GOOD_CHECK = {"n_params": 10, "forward_ms": 1.0, "latent_dim": 8, "grad_fraction": 1.0,
              "roundtrip_error": 0.0, "warnings": [], "fingerprint": "ab" * 32}


def _read(tmp_path, check):
    (tmp_path / protocol.RESPONSE).write_text(json.dumps({"ok": True, "check": check}))
    return protocol.read_response(tmp_path, "check", latent_dim=8, max_params=100)


def test_the_protocol_carries_a_fingerprint(tmp_path):
    assert _read(tmp_path, GOOD_CHECK).check["fingerprint"] == "ab" * 32


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, " " + "a" * 63,
                                 "ab" * 31 + "a\n", 123, None, ["ab" * 32], "ａ" * 64, "٣" * 64])
def test_the_protocol_refuses_anything_but_64_lowercase_hex(tmp_path, bad):
    with pytest.raises(protocol.ProtocolError, match="fingerprint"):
        _read(tmp_path, {**GOOD_CHECK, "fingerprint": bad})


def test_the_protocol_refuses_a_check_without_a_fingerprint(tmp_path):
    with pytest.raises(protocol.ProtocolError, match="fingerprint"):
        _read(tmp_path, {k: v for k, v in GOOD_CHECK.items() if k != "fingerprint"})
