"""The population: cells of a quality-diversity archive, islands that evolve apart, exchange
their best and are reseeded when they stagnate, and each expansion's parent and
inspirations with the reason for each."""

from agent import population
from agent.population import ISLANDS, STAGNATION, archive, choose, descriptor, islands

VARIABLES = ([{"category": "tc_gating", "timescale": "fast"}] * 4
             + [{"category": "nrt_state", "timescale": "slow"}] * 4)


def it(n, count, cat="tc_gating", scale="fast", island=None, params=5000, arch="offline"):
    return {"number": n, "name": f"m{n}", "architect": arch, "status": "scored",
            "failure_kind": None, "training": {"n_params_counted": params},
            "lineage": None if island is None else {"island": island},
            "scores": {"beyond_controls": count, "recovered": count, "spike_corr": 0.1,
                       "by_category": {cat: 2}, "by_timescale": {scale: 2}}}


def test_the_descriptor_and_the_archive_keep_the_best_per_cell():
    a = it(1, 3)
    assert descriptor(a, VARIABLES) == ("tc_gating", "fast", "1e3")
    assert descriptor(it(2, 1, "nrt_state", "slow", params=50_000), VARIABLES) == (
        "nrt_state", "slow", "1e4")
    cells = archive([a, it(2, 5), it(3, 1, "nrt_state", "slow")], "beyond_controls",
                    VARIABLES)
    assert {k: v["number"] for k, v in cells.items()} == {
        ("tc_gating", "fast", "1e3"): 2, ("nrt_state", "slow", "1e3"): 3}


def test_a_claimed_size_places_no_one_the_hosts_count_does():
    """A worker that claims one parameter (or a row before the host counted) lands in the
    unverified cell, and so cannot take the 1e3 cell from the candidate that holds it."""
    holder = it(1, 3)
    claim = it(2, 9) | {"training": {"n_params_claimed": 1, "n_params_counted": None}}
    old_row = it(3, 9) | {"training": {"n_params": 5000}}
    assert descriptor(claim, VARIABLES)[2] == descriptor(old_row, VARIABLES)[2] == \
        "size unverified"
    cells = archive([holder, claim, old_row], "beyond_controls", VARIABLES)
    assert cells[("tc_gating", "fast", "1e3")]["number"] == 1
    assert cells[("tc_gating", "fast", "size unverified")]["number"] == 2


def test_an_island_that_stagnates_is_reseeded_from_the_best_and_says_so():
    history = [it(1, 2, arch="template"), it(2, 9, island=1)]  # island 1 finds the best
    n = 3
    for _ in range(STAGNATION):  # island 0 brings nothing better, STAGNATION times
        history.append(it(n, 0, island=0))
        n += 1
    isles, events = islands(history, "beyond_controls")
    assert any(e.startswith("island 0 reseeded from #2 m2") for e in events)
    assert [m["number"] for m in isles[0].members] == [2] and isles[0].stale == 0
    assert [m["number"] for m in isles[1].members] == [1, 2]  # the others keep their own


def test_the_best_migrates_to_the_next_island_every_few_expansions():
    history = [it(1, 1, arch="template"), it(2, 9, island=0)]
    n = 3
    for _ in range(population.MIGRATE_EVERY):
        history.append(it(n, n - 1, island=1))  # improving: never stale
        n += 1
    isles, events = islands(history, "beyond_controls")
    assert "#2 m2 migrated from island 0 to island 1" in events
    assert 2 in [m["number"] for m in isles[1].members]


def test_the_parent_and_inspirations_are_seeded_and_each_has_a_reason():
    history = [it(1, 2, arch="template"), it(2, 1, "nrt_state", "slow", island=0),
               it(3, 4, island=1), it(4, 3, "nrt_state", "slow", island=2)]
    picks = [choose(history, k, "beyond_controls", VARIABLES, seed=0) for k in range(12)]
    assert [p.island for p in picks] == [k % ISLANDS for k in range(12)]
    again = [choose(history, k, "beyond_controls", VARIABLES, seed=0) for k in range(12)]
    assert [(p.parent["number"], [i["number"] for i in p.inspirations]) for p in picks] == \
        [(p.parent["number"], [i["number"] for i in p.inspirations]) for p in again]
    for p in picks:
        chosen = [p.parent, *p.inspirations]
        assert 1 <= len(p.inspirations) <= population.INSPIRATIONS
        assert len({c["number"] for c in chosen}) == len(chosen)  # no one twice
        assert set(p.reasons) == {c["number"] for c in chosen}
        assert p.reasons[p.parent["number"]].startswith("parent: ")
    # island 0 holds the template and #2: both cells show up, and another island's best
    assert any("explore" in p.reasons[p.parent["number"]] for p in picks)
    assert any("another lineage" in r for p in picks for r in p.reasons.values())
