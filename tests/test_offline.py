"""The offline architect: deterministic, varied, steered by the gap, never repeating."""

import pytest

from agent.dedup import source_hash
from agent.offline import OfflineArchitect
from agent.prompt import Brief
from descartes_core import contract
from descartes_core.patterns import mine
from sandbox import policy, runner

NRT_GAP = {"direction": "nrt_state",
           "timescale_profile": {"fast": {"rate": 0.1}, "slow": {"rate": 0.6},
                                 "mixed": {"rate": 0.0}}}


def test_same_seed_same_source_and_other_seed_other_source():
    a = OfflineArchitect(3).propose(Brief(1, gap=NRT_GAP))
    b = OfflineArchitect(3).propose(Brief(1, gap=NRT_GAP))
    c = OfflineArchitect(4).propose(Brief(1, gap=NRT_GAP))
    assert a == b
    assert c.source != a.source


def test_twenty_proposals_are_distinct_and_pass_the_policy():
    arch, tried = OfflineArchitect(0), set()
    gaps = [None, NRT_GAP, {"direction": "synaptic"}, {"direction": "tc_gating"}]
    for i in range(20):
        p = arch.propose(Brief(i, gap=gaps[i % 4], tried=frozenset(tried)))
        verdict = policy.check(p.source)
        assert verdict.accepted, (p.name, [str(v) for v in verdict.violations])
        assert verdict.properties == p.properties
        assert source_hash(p.source) not in tried
        tried.add(source_hash(p.source))
    assert len(tried) == 20


def test_a_tried_source_is_never_proposed_again():
    arch = OfflineArchitect(0)
    first = arch.propose(Brief(5))
    again = arch.propose(Brief(5, tried=frozenset({source_hash(first.source)})))
    assert again.source != first.source


@pytest.mark.parametrize("gap, key, allowed", [
    (NRT_GAP, "latent_structure", {"biophysical", "hierarchical"}),
    (NRT_GAP, "loss", {"poisson_counts", "event_multiscale"}),
    ({"direction": "synaptic"}, "loss", {"poisson_counts", "event_multiscale"}),
    ({"direction": "synaptic"}, "time_handling", {"ltc"}),
    ({"direction": "synaptic"}, "input_coupling", {"gated", "multiplicative"}),
    ({"direction": "tc_gating"}, "latent_structure", {"hierarchical"}),
])
def test_the_gap_steers_the_design(gap, key, allowed):
    arch = OfflineArchitect(1)
    for i in range(6):
        p = arch.propose(Brief(i, gap=gap))
        assert p.properties[key] in allowed
        assert p.reasoning


def _patterns(a: dict, b: dict) -> tuple[dict, ...]:
    """Mined from two scored iterations: `a` recovers both nRt variables, `b` none."""
    variables = [{"name": f"v{j}", "category": cat, "timescale": "fast"}
                 for j, cat in enumerate(["nrt_state", "nrt_state", "synaptic", "synaptic"])]
    its = [{"name": "a", "properties": a, "scores": {"recovered_vector": [1, 1, 0, 0],
                                                     "correlations": [0.9, 0.9, 0.1, 0.1]}},
           {"name": "b", "properties": b, "scores": {"recovered_vector": [0, 0, 0, 0],
                                                     "correlations": [0.1, 0.1, 0.1, 0.1]}}]
    return tuple(mine(its, variables))


def test_a_property_that_helps_the_missed_category_is_kept():
    patterns = _patterns({"solver": "midpoint"}, {"solver": "euler"})
    arch = OfflineArchitect(1)
    for i in range(6):
        p = arch.propose(Brief(i, gap=NRT_GAP, patterns=patterns))
        assert p.properties["solver"] == "midpoint"
        assert "pattern: solver=midpoint helps nrt_state" in p.reasoning


def test_a_property_that_hurts_the_missed_category_is_left_out():
    patterns = tuple(p for p in _patterns({"input_coupling": "additive"},
                                          {"input_coupling": "gated"})
                     if "hurts" in p["description"])
    assert patterns
    arch = OfflineArchitect(1)
    for i in range(8):
        p = arch.propose(Brief(i, gap=NRT_GAP, patterns=patterns))
        assert p.properties["input_coupling"] != "gated"
        assert "so no gated coupling" in p.reasoning


def test_a_foreign_value_or_another_category_steers_nothing():
    def run(gap, patterns=()):
        return [OfflineArchitect(1).propose(Brief(i, gap=gap, patterns=patterns))
                for i in range(3)]

    mined = _patterns({"solver": "dopri5"}, {"solver": "euler"})
    dopri5 = tuple(p for p in mined if "dopri5" in p["description"])
    assert dopri5 and run(NRT_GAP, dopri5) == run(NRT_GAP)  # not among this architect's solvers
    synaptic = {"direction": "synaptic"}
    assert run(synaptic, mined) == run(synaptic)  # the patterns are about nRt state


def test_an_exhausted_family_is_not_proposed():
    arch = OfflineArchitect(1)
    first = arch.propose(Brief(0, gap={"direction": "synaptic"}))
    family = first.properties["family"]
    for i in range(4):
        p = arch.propose(Brief(i, gap={"direction": "synaptic"}, exhausted=(family,)))
        assert p.properties["family"] != family


def test_a_timeout_steers_to_the_cheapest_step():
    p = OfflineArchitect(2).propose(Brief(0, feedback="timeout: killed after 600 s"))
    assert p.properties["solver"] == "euler"


@pytest.mark.parametrize("iteration", [0, 1])
def test_proposals_pass_the_sandboxed_shape_check(iteration):
    p = OfflineArchitect(0).propose(Brief(iteration, gap=NRT_GAP))
    out = runner.check(p.source, latent_dim=contract.source_width(p.source), backend="process")
    assert out.ok, out.error
    assert out.check["roundtrip_error"] in (0.0, None) or out.check["roundtrip_error"] < 1e-3


def test_the_hash_ignores_docstrings_comments_and_layout():
    a = 'def f(x):\n    """doc"""\n    return x + 1  # note\n'
    b = "def f(x):\n\n    return x+1\n"
    assert source_hash(a) == source_hash(b)
    assert source_hash(a) != source_hash(a.replace("+ 1", "+ 2"))


def test_the_nrt_gap_composes_the_circuits_layout_at_a_declared_width():
    arch = OfflineArchitect(0)
    circuits = [p for p in (arch.propose(Brief(i, gap=NRT_GAP)) for i in range(8))
                if p.properties["family"].startswith("offline-circuit")]
    assert circuits, "no per-cell design in eight nRt-steered draws"
    for p in circuits:
        width = contract.source_width(p.source, 0)
        assert 20 * 5 <= width <= contract.MAX_LATENT_DIM and width % 20 == 0
        assert "own channel only" in p.source and "G-scaled conductances" in p.source
        assert "guard(" in p.source and p.properties["solver"] == "euler"
        assert "loss" in p.reasoning
