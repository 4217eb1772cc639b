"""Gap analysis on hand-made score vectors with a known answer."""

import pytest

from descartes_core import gap, variables

VARS = variables.describe()


def _scores(recovered_idx, r_other=0.0, spike=0.5):
    rec = [i in recovered_idx for i in range(160)]
    corr = [0.9 if ok else r_other for ok in rec]
    return {"recovered": sum(rec), "recovered_vector": rec, "correlations": corr,
            "spike_corr": spike, "threshold": 0.5, "above_null": 3, "beyond_inputs": 2}


def test_gap_points_at_the_least_recovered_category():
    tc_and_syn = set(range(60)) | set(range(120, 160))
    a = _scores(tc_and_syn)
    b = _scores(set(range(10)), r_other=0.4)
    g = gap.analyse([a, b], VARS, target=120)
    assert g["best_recovered"] == 100
    assert g["remaining_gap"] == pytest.approx(100 * 20 / 120, abs=0.1)
    assert g["direction"] == "nrt_state"
    assert g["profile"]["nrt_state"] == {"recovered": 0, "total": 60, "rate": 0.0,
                                         "missed": [v["name"] for v in VARS[60:120]]}
    assert g["profile"]["synaptic"]["rate"] == 1.0
    # near-misses use the best r over every iteration: b's 0.4 everywhere it missed
    assert set(g["near_misses"]) == {v["name"] for v in VARS[60:120]}
    assert g["never_recovered"] == [v["name"] for v in VARS[60:120]]
    assert g["timescale_profile"]["mixed"]["recovered"] == 0  # nRt V is the mixed class
    assert sum(p["total"] for p in g["dynamics_profile"].values()) == 160
    assert g["best_above_null"] == 3 and g["best_beyond_inputs"] == 2


def test_target_reached_means_no_gap_and_no_scores_is_an_error():
    g = gap.analyse([_scores(set(range(130)))], VARS, target=120)
    assert g["remaining_gap"] == 0.0
    with pytest.raises(ValueError):
        gap.analyse([], VARS)
