"""The offline architect: deterministic, varied, steered by the gap, never repeating."""

import pytest

from agent.dedup import source_hash
from agent.offline import OfflineArchitect
from agent.prompt import Brief
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


@pytest.mark.parametrize("iteration", [1, 3])
def test_proposals_pass_the_sandboxed_shape_check(iteration):
    p = OfflineArchitect(0).propose(Brief(iteration, gap=NRT_GAP))
    out = runner.check(p.source, backend="process")
    assert out.ok, out.error
    assert out.check["roundtrip_error"] in (0.0, None) or out.check["roundtrip_error"] < 1e-3


def test_the_hash_ignores_docstrings_comments_and_layout():
    a = 'def f(x):\n    """doc"""\n    return x + 1  # note\n'
    b = "def f(x):\n\n    return x+1\n"
    assert source_hash(a) == source_hash(b)
    assert source_hash(a) != source_hash(a.replace("+ 1", "+ 2"))
