"""DreamCoder patterns on hand-made iterations whose patterns are known."""

from descartes_core import patterns, variables
from descartes_core.contract import template_sources

VARS = variables.describe()
BASE = {"time_handling": "ltc", "gradient_strategy": "direct", "latent_structure": "sparse",
        "input_coupling": "gated", "solver": "euler"}


def it(name, recovered, r_else=0.1, **props):
    rec = [i in recovered for i in range(160)]
    return {"name": name, "properties": {**BASE, **props},
            "scores": {"recovered_vector": rec,
                       "correlations": [0.8 if x else r_else for x in rec]}}


def test_needs_two_scored_iterations():
    assert patterns.mine([it("a", set(range(10)))], VARS) == []


def test_the_seeds_pattern_types_appear_where_planted():
    tc = set(range(60))
    syn_b = set(range(121, 160, 2))  # the 20 GABA_B variables
    its = [it("a", tc, solver="euler"),
           it("b", tc | syn_b, solver="rk4"),
           it("c", tc | syn_b, r_else=0.4, solver="rk4")]
    found = {p["type"]: p for p in patterns.mine(its, VARS)}
    assert set(found) >= {"co_recovery", "property_correlation", "near_miss",
                          "timescale_alignment", "never_recovered", "improving"}
    clusters = [p for p in patterns.mine(its, VARS) if p["type"] == "co_recovery"]
    assert sorted(len(p["evidence"]["variables"]) for p in clusters) == [20, 60]
    helps = [p for p in patterns.mine(its, VARS) if p["type"] == "property_correlation"
             and p["evidence"]["value"] == "rk4" and p["evidence"]["category"] == "synaptic"]
    assert helps and "helps" in helps[0]["description"]
    assert found["never_recovered"]["evidence"]["category"] == "nrt_state"
    assert found["improving"]["evidence"]["category"] == "synaptic"
    assert all(0 < p["confidence"] <= 1 for p in patterns.mine(its, VARS))


def test_code_features_read_the_source_without_running_it():
    t0 = patterns.code_features(template_sources()["T0"])
    assert t0["code.odeint"] == "adjoint" and t0["code.solver_method"] == "dopri5"
    t1 = patterns.code_features(template_sources()["T1"])
    assert t1["code.odeint"] == "none" and t1["code.gating"] == "yes"
    assert patterns.code_features("def (") == {}
