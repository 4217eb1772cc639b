"""Simulated data directories: shapes, layout, metadata, determinism, split and cache."""

import dataclasses

import numpy as np
import pytest

from descartes_core import channels, dataset, trials
from descartes_core.circuit import simulate
from descartes_core.dataset import SimulationSpec

SMALL = SimulationSpec(n_trials=8, duration_ms=400, seed=3, burn_in_ms=200.0)


@pytest.fixture(scope="module")
def small():
    return dataset.simulate_dataset(SMALL)


def test_arrays_have_the_documented_shapes_and_types(small):
    assert small.inputs.shape == (8, 400, 21) and small.inputs.dtype == np.float32
    assert small.outputs.shape == (8, 400, 20) and small.outputs.dtype == np.float32
    assert small.biovars.shape == (8, 400, 160) and small.biovars.dtype == np.float32
    assert small.spikes.shape == (8, 400, 20) and small.spikes.dtype == np.uint8
    assert small.initial_state["v"].shape == (8, 40)


def test_variable_table_order_names_and_classes(small):
    var = small.meta["variables"]
    names = [v["name"] for v in var]
    assert names[:4] == ["tc00.m_T", "tc00.h_T", "tc00.m_H", "tc01.m_T"]
    assert names[60:63] == ["nrt00.V", "nrt00.m_T", "nrt00.h_T"]
    assert names[120:123] == ["tc00.g_GABAA", "tc00.g_GABAB", "tc01.g_GABAA"]
    assert len(set(names)) == 160
    cats = [v["category"] for v in var]
    assert [cats.count(c) for c in ("tc_gating", "nrt_state", "synaptic")] == [60, 60, 40]
    by_symbol = {(v["category"], v["symbol"]): v["timescale"] for v in var}
    assert by_symbol[("tc_gating", "m_T")] == "fast"
    assert by_symbol[("tc_gating", "h_T")] == "slow"
    assert by_symbol[("nrt_state", "V")] == "mixed"
    assert by_symbol[("synaptic", "g_GABAB")] == "slow"
    assert all(v["dynamics"] for v in var)


def test_biovars_sit_in_their_documented_slots():
    # TC m_T is fast (τ ≤ 2 ms), so its bin average tracks m_inf of the same cell's V.
    x, _ = trials.design(2, 400, seed=1)
    r = simulate(x, burn_in_ms=200.0, record_voltage=True)
    np.testing.assert_array_equal(r.biovars[..., 60:120:3], r.voltage[..., 20:])
    m_inf = channels.tc_t_gates(r.voltage[..., :20])[0]
    err_own = np.abs(r.biovars[..., 0:60:3] - m_inf).mean()
    err_shifted = np.abs(r.biovars[..., 0:60:3] - np.roll(m_inf, 1, axis=-1)).mean()
    assert err_own < 0.02 and err_shifted > 2 * err_own
    gates = r.biovars[..., np.r_[0:60, 61:120:3, 62:120:3]]
    assert gates.min() >= 0.0 and gates.max() <= 1.0


def test_synaptic_variables_are_gain_scaled_conductances_in_ns():
    x, _ = trials.design(2, 400, seed=2)
    x[0, :, 20] = 0.0
    x[1, :, 20] = 1.0
    r = simulate(x, burn_in_ms=200.0)
    syn = r.biovars[..., 120:]
    assert np.all(syn[0] == 0.0)
    assert syn[1].min() >= 0.0
    assert syn[1, :, 0::2].max() <= 20.0 and syn[1, :, 1::2].max() <= 40.0  # bounds at G = 1


def test_outputs_are_causal_exponential_rates_of_the_spikes(small):
    np.testing.assert_allclose(small.outputs, dataset.rate_from_spikes(small.spikes), rtol=1e-5)
    one = np.zeros((1, 50, 1))
    one[0, 10, 0] = 1
    rate = dataset.rate_from_spikes(one)[0, :, 0]
    assert np.all(rate[:10] == 0) and rate[10] == pytest.approx(100.0)
    assert rate[20] == pytest.approx(100.0 * np.exp(-1.0))


def test_same_seed_and_circuit_same_bits_and_other_seed_other_trials(small):
    secret = small.meta["circuit"]["secret"]
    again = dataset.simulate_dataset(dataclasses.replace(SMALL, circuit_secret=secret))
    for a, b in ((small.inputs, again.inputs), (small.outputs, again.outputs),
                 (small.biovars, again.biovars)):
        assert a.tobytes() == b.tobytes()
    assert again.meta["fingerprint"] == small.meta["fingerprint"]
    other = dataset.simulate_dataset(dataclasses.replace(SMALL, seed=4))
    assert not np.array_equal(other.inputs, small.inputs)


def test_trial_i_does_not_depend_on_the_number_of_trials():
    a, rec_a = trials.design(3, 500, seed=9)
    b, rec_b = trials.design(6, 500, seed=9)
    np.testing.assert_array_equal(a, b[:3])
    assert rec_a == rec_b[:3]


def test_design_covers_both_regimes_and_gain_steps():
    x, records = trials.design(200, 2000, seed=0)
    regimes = {r["regime"] for r in records}
    assert {"relay", "oscillatory", "switch"} <= regimes
    steps = [r for r in records if r["gain_step_ms"] is not None]
    assert 0.15 < len(steps) / 200 < 0.45
    g = x[..., 20]
    assert g.min() >= 0.0 and g.max() <= 2.0
    assert np.mean(g[:, 0] < 0.5) == pytest.approx(0.5, abs=0.1)
    assert x[..., :20].min() >= -0.3 and x[..., :20].max() <= 1.5


def test_split_is_four_way_disjoint_and_complete(small):
    split = small.meta["split"]
    assert set(split) == set(dataset.SPLITS)
    every = [i for k in dataset.SPLITS for i in split[k]]
    assert sorted(every) == list(range(8))
    assert all(split[k] for k in dataset.SPLITS)


def test_split_is_stratified_by_regime():
    strata = ["relay"] * 40 + ["oscillatory"] * 40 + ["switch"] * 16
    split = dataset.split_trials(strata, seed=0)
    for name, share in dataset.SPLIT_FRACTIONS.items():
        for regime, n in (("relay", 40), ("oscillatory", 40), ("switch", 16)):
            got = sum(strata[i] == regime for i in split[name])
            assert got == round(n * share), (name, regime)
    assert split == dataset.split_trials(strata, seed=0)
    assert split != dataset.split_trials(strata, seed=1)


def test_a_users_data_gets_a_written_down_split(small):
    three = {"train": list(range(5)), "val": [5], "test": [6, 7]}
    meta = {"split": dict(three)}
    dataset.derive_split(meta, 8)
    assert sorted(meta["split"]["selection"] + meta["split"]["test"]) == [6, 7]
    assert meta["split"]["train"] == three["train"] and "test trials shuffled" in meta["split_rule"]
    meta = {"trials": small.meta["trials"]}
    dataset.derive_split(meta, 8)
    assert meta["split"] == dataset.split_trials([r["regime"] for r in small.meta["trials"]], 0)
    assert "by regime" in meta["split_rule"]


def test_a_data_directory_without_selection_loads_with_its_rule(tmp_path, small):
    d = tmp_path / "data"
    dataset.write(small, d)
    meta = dataset.load(d).meta
    split = meta["split"]
    three = {"train": split["train"] + split["selection"][1:], "val": split["val"],
             "test": sorted(split["test"] + split["selection"][:1])}
    raw = {**meta, "split": three}
    (d / "meta.json").write_text(__import__("json").dumps(raw))  # the old fingerprint stays
    with pytest.raises(dataset.DatasetError, match="fingerprint"):
        dataset.load(d)
    raw["fingerprint"] = dataset.fingerprint(small.inputs, small.outputs, small.biovars, raw)
    (d / "meta.json").write_text(__import__("json").dumps(raw))
    loaded = dataset.load(d)
    assert set(loaded.meta["split"]) == set(dataset.SPLITS) and loaded.meta["split_rule"]
    assert loaded.meta["fingerprint"] != raw["fingerprint"]  # the derived split is part of it
    assert dataset.load(d).meta["fingerprint"] == loaded.meta["fingerprint"]


def test_training_outputs_hide_selection_and_test(small):
    out = small.training_outputs()
    for name in ("selection", "test"):
        assert not out[small.split(name)].any()
    np.testing.assert_array_equal(out[small.split("train")], small.outputs[small.split("train")])


def test_second_request_comes_from_the_cache(monkeypatch):
    spec = dataclasses.replace(SMALL, n_trials=4)
    path, cached = dataset.cached_or_simulated(spec)
    assert not cached
    monkeypatch.setattr(dataset, "simulate_dataset", lambda *a, **k: pytest.fail("resimulated"))
    path2, cached2 = dataset.cached_or_simulated(spec)
    assert cached2 and path2 == path
    assert dataset.load(path).meta["fingerprint"] == dataset.load(path2).meta["fingerprint"]
    assert dataclasses.replace(spec, seed=5).cache_key() != spec.cache_key()
