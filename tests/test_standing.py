"""Standing: eligibility, the best by more than noise, staleness, exhaustion, finalists."""

from agent.standing import beats, eligible, finalists, lead, standing


def _it(n, architect, family, recovered, above_null, status="scored", failure=None,
        replicates=None, spike=0.1):
    scores = {"recovered": recovered, "above_null": above_null, "beyond_inputs": 0,
              "spike_corr": spike}
    if replicates is not None:
        scores["replicates"] = {"recovered": replicates}
    return {"number": n, "name": f"m{n}", "architect": architect, "train_hours": 0.5,
            "properties": {"family": family}, "status": status, "failure_kind": failure,
            "scores": scores}


def test_standing_follows_the_objective_and_marks_exhausted_families():
    its = [_it(1, "template", "ltc", 50, 1), _it(2, "x", "ltc", 60, 0),
           _it(3, "x", "gru", 40, 9), _it(4, "x", "ltc", 45, 2)]
    by_count = standing(its, "recovered")
    assert by_count.best["number"] == 2 and by_count.stale == 2
    assert by_count.exhausted == ()  # ltc failed to improve once (4), gru once (3)
    by_null = standing(its, "above_null")
    assert by_null.best["number"] == 3 and by_null.stale == 1
    assert by_null.exhausted == ("ltc",)  # 2 and 4 did not improve above null
    assert by_count.hours == 2.0 and by_count.expansions == 3
    assert by_count.templates_done == {"m1"}


def test_a_failed_candidate_is_never_best_finalist_or_target():
    diverged = _it(2, "x", "ltc", 150, 150, status="failed", failure="train_diverged")
    cut_short = _it(3, "x", "ltc", 140, 140, failure="verifier_failed")  # an old ledger's row
    its = [_it(1, "template", "gru", 10, 1), diverged, cut_short]
    s = standing(its, "recovered", target=120)
    assert s.best["number"] == 1 and s.target_reached_by is None and s.stale == 2
    assert not eligible(diverged) and not eligible(cut_short)
    assert [it["number"] for it in finalists(its, "recovered", 3)] == [1]
    assert standing([*its, _it(4, "x", "ssm", 121, 0)], "recovered", 120
                    ).target_reached_by["number"] == 4


def test_a_new_best_must_lead_on_the_paired_resamples():
    incumbent = _it(1, "template", "a", 50, 0, replicates=[50] * 10)
    noisy = _it(2, "x", "b", 52, 0, replicates=[55, 45, 53, 48, 56, 49, 51, 47, 58, 50])
    clear = _it(3, "x", "c", 60, 0, replicates=[58, 61, 59, 60, 62, 57, 60, 61, 59, 55])
    assert lead(noisy, incumbent, "recovered") == 0.5 and not beats(noisy, incumbent,
                                                                    "recovered")
    assert lead(clear, incumbent, "recovered") == 1.0 and beats(clear, incumbent, "recovered")
    s = standing([incumbent, noisy, clear], "recovered")
    assert s.best["number"] == 3 and s.stale == 0
    assert standing([incumbent, noisy], "recovered").stale == 1  # within noise: stale


def test_finalists_are_the_best_then_the_next_by_count_and_spike_r():
    its = [_it(1, "template", "a", 50, 0), _it(2, "x", "b", 70, 0),
           _it(3, "x", "c", 60, 0, spike=0.2), _it(4, "x", "d", 60, 0, spike=0.3)]
    assert [it["number"] for it in finalists(its, "recovered", 3)] == [2, 4, 3]
    assert finalists([], "recovered", 3) == []
