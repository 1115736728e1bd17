"""The dose-response control, fast tier: the replaced rows, detection rates and Wilson intervals on planted replicate
results, the minimum detectable effect on a planted curve, the headline proposer, the ledger's configured headline and
the power settings' validation. The tiny run with shadow pipelines is tests/test_power_run.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from tckr.core.config import ConfigError, load_config
from tckr.privacy import dose_response, ledger, power_analysis


@pytest.mark.parametrize("n,rho", [(800, 0.0025), (800, 0.04), (20, 0.25), (400, 0.005), (7, 0.5), (50, 0.0)])
def test_replaced_rows_are_exactly_round_rho_n_seeded_and_nested(n, rho):
    rows = dose_response.replaced_rows(n, rho, seed=3)
    assert len(rows) == round(rho * n) and len(set(rows.tolist())) == len(rows) and ((0 <= rows) & (rows < n)).all()
    assert np.array_equal(rows, dose_response.replaced_rows(n, rho, seed=3))
    bigger = dose_response.replaced_rows(n, min(1.0, 2 * rho), seed=3)
    assert np.array_equal(bigger[: len(rows)], rows)  # a larger share holds the smaller one's rows
    if len(rows) > 1:
        assert not np.array_equal(rows, dose_response.replaced_rows(n, rho, seed=4))
    with pytest.raises(ValueError, match=r"rho must be a share in \[0, 1\]"):
        dose_response.replaced_rows(n, 1.5, seed=0)


def test_dose_grid_is_the_rho_series_and_the_strength_series():
    cfg = load_config("configs/mini.yaml")
    grid = [(d.rho, d.strength) for d in dose_response.doses(cfg)]
    assert grid == [(0.0, 0.0), (0.0025, 0.3), (0.005, 0.3), (0.01, 0.3), (0.02, 0.1), (0.02, 0.3), (0.02, 0.5),
                    (0.02, 0.7), (0.04, 0.3)]
    assert dose_response.cardinality(cfg) == 0.2  # the largest pipeline cardinality


def test_wilson_interval_matches_the_closed_form():
    lo, hi = power_analysis.wilson(7, 8)
    assert (lo, hi) == pytest.approx((0.5291, 0.9776), abs=1e-4)  # Wilson 1927 at z = 1.96
    assert power_analysis.wilson(0, 8)[0] == 0.0 and power_analysis.wilson(8, 8)[1] == 1.0
    assert all(math.isnan(v) for v in power_analysis.wilson(0, 0))


def _planted(curve: dict[float, int], n: int = 8, attack: str = "lira_online_fixed") -> pd.DataFrame:
    """Replicate rows: at each rho, ``curve[rho]`` of ``n`` replicates reject under both tests (AUC rising with rho)."""
    rows = []
    for rho, k in curve.items():
        for j in range(n):
            hit = j < k
            rows.append({"rho": rho, "strength": 0.3 if rho else 0.0, "set": f"pipeline_{j:03d}", "attack": attack,
                         "auc": 0.5 + rho, "auc_lo": 0.51 if hit else 0.49, "tpr_at_1pct": 0.01 + rho,
                         "p_mann_whitney": 0.01 if hit else 0.4, "auc_dosed": 0.5 + 10 * rho, "n_replaced": int(800 * rho)})
        rows.append({**rows[-1], "set": "target", "auc_lo": 0.9, "p_mann_whitney": 0.0})  # never a replicate
    return pd.DataFrame(rows)


def test_detection_rate_and_wilson_interval_on_planted_replicates():
    reps = _planted({0.0: 0, 0.01: 3, 0.02: 8})
    power = power_analysis.power_table(reps, ["auc_ci", "mann_whitney"], 0.05, 0.3, 0.02)
    assert len(power) == 3 * 2 and set(power["n_replicates"]) == {8}  # the target's rows are not replicates
    row = power[(power["rho"] == 0.01) & (power["test"] == "mann_whitney")].iloc[0]
    assert row["n_detected"] == 3 and row["detect_rate"] == 3 / 8
    assert (row["detect_lo"], row["detect_hi"]) == pytest.approx(power_analysis.wilson(3, 8))
    assert row["mean_auc"] == pytest.approx(0.51) and row["mean_auc_dosed"] == pytest.approx(0.6)
    assert power.loc[power["rho"] == 0.0, "detect_rate"].eq(0).all()
    assert list(power.loc[power["rho"] == 0.02, "series"]) == ["both", "both"]


def test_rejection_rules_are_the_predeclared_tests():
    reps = pd.DataFrame({"auc_lo": [0.49, 0.5, 0.51], "p_mann_whitney": [0.049, 0.05, 0.2]})
    assert power_analysis.rejects(reps, "auc_ci", 0.05).tolist() == [False, False, True]
    assert power_analysis.rejects(reps, "mann_whitney", 0.05).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="accepted: auc_ci, mann_whitney"):
        power_analysis.rejects(reps, "t_test", 0.05)
    rng = np.random.default_rng(0)
    members = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    assert power_analysis.mann_whitney_p(rng.normal(size=400) + members, members) < 1e-6
    assert power_analysis.mann_whitney_p(rng.normal(size=400) - members, members) > 0.99  # one-sided


def test_mde_interpolates_between_the_doses_around_the_target_and_says_so():
    power = power_analysis.power_table(_planted({0.0: 0, 0.005: 2, 0.01: 4, 0.02: 8, 0.04: 8}), ["mann_whitney"], 0.05,
                                       0.3, 0.02)
    row = power_analysis.mde(power, 0.8).iloc[0]
    # 4/8 at 1%, 8/8 at 2%: 80% is crossed 0.3 / 0.5 of the way, at 1.6%
    assert row["mde_rho_tested"] == 0.02 and row["mde_rho"] == pytest.approx(0.016) and row["interpolated"]
    assert row["auc_at_mde"] == pytest.approx(0.516) and row["tpr_at_1_at_mde"] == pytest.approx(0.026)
    assert row["false_positive_rate"] == 0.0
    assert "interpolated linearly between the doses 1% (50%) and 2% (100%)" in row["statement"]
    never = power_analysis.mde(power_analysis.power_table(_planted({0.0: 0, 0.01: 2, 0.02: 5}), ["auc_ci"], 0.05, 0.3,
                                                          0.02), 0.8).iloc[0]
    assert math.isnan(never["mde_rho"]) and "never reaches 80%" in never["statement"] and "62%" in never["statement"]
    loose = power_analysis.mde(power_analysis.power_table(_planted({0.0: 7, 0.01: 8}), ["auc_ci"], 0.05, 0.3, 0.02), 0.8)
    assert math.isnan(loose["mde_rho"].iloc[0]) and "not calibrated" in loose["statement"].iloc[0]


def _mde_rows(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"attack": a, "test": t, "mde_rho": v, "statement": f"{a} / {t}: {v}"} for (a, t), v in values.items()])


def test_proposer_picks_the_smallest_mde_and_breaks_ties_toward_fewer_assumptions():
    table = _mde_rows({("lira_online", "auc_ci"): 0.01, ("lira_online_fixed", "mann_whitney"): 0.008,
                       ("loss", "auc_ci"): np.nan})
    best = power_analysis.propose(table)
    assert (best["attack"], best["test"], best["tie_break"]) == ("lira_online_fixed", "mann_whitney", False)
    tied = power_analysis.propose(_mde_rows({("lira_online", "mann_whitney"): 0.01, ("rmia", "auc_ci"): 0.01,
                                             ("rmia", "mann_whitney"): 0.01}))
    assert (tied["attack"], tied["test"], tied["tie_break"]) == ("rmia", "mann_whitney", True)
    text = power_analysis.proposal_yaml(tied, "runs/x")
    mia = yaml.safe_load(text)["mia"]
    assert mia["headline_attack"] == "rmia" and mia["headline_test"] == "mann_whitney"
    assert "tie broken toward fewer assumptions" in mia["headline_reason"] and "runs/x" in mia["headline_reason"]
    assert power_analysis.propose(_mde_rows({("loss", "auc_ci"): np.nan})) is None
    assert "no headline is proposed" in power_analysis.proposal_yaml(None, "runs/x")


def _power_rows(rates: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rhos = [0.0, 0.01, 0.02, 0.04]
    return pd.DataFrame([{"rho": r, "strength": 0.3 if r else 0.0, "series": "rho", "attack": a, "test": t, "n_replicates": 8,
                          "n_detected": round(8 * v), "detect_rate": v, "detect_lo": v / 2, "detect_hi": (1 + v) / 2}
                         for (a, t), vs in rates.items() for r, v in zip(rhos, vs)])


def test_without_an_mde_the_proposer_ranks_by_mean_detection_and_drops_pairs_the_null_rejects():
    rates = {("lira_online", "auc_ci"): [0.5, 0.5, 0.5, 0.75], ("rmia", "mann_whitney"): [0.25, 0.375, 0.5, 0.625],
             ("loss", "auc_ci"): [0.0, 0.125, 0.125, 0.125]}
    table = _mde_rows({k: np.nan for k in rates})
    assert power_analysis.propose(table) is None  # the MDE rule alone has nothing to propose
    best = power_analysis.propose(table, _power_rows(rates))
    # the mean over the dosed doses (rho > 0), not the rate at rho = 0 nor at the largest dose alone
    assert (best["attack"], best["test"], best["by"]) == ("lira_online", "auc_ci", "mean_power")
    assert "58%" in best["statement"] and "75% [38, 88] at rho = 4%" in best["statement"]
    null = pd.DataFrame([{"attack": "lira_online", "test": "auc_ci", "rejection_lo": 0.2},  # rejects far above alpha
                         {"attack": "rmia", "test": "mann_whitney", "rejection_lo": 0.01},
                         {"attack": "loss", "test": "auc_ci", "rejection_lo": 0.0}])
    assert power_analysis.calibrated(null, 0.05) == {("rmia", "mann_whitney"), ("loss", "auc_ci")}
    fair = power_analysis.propose(table, _power_rows(rates), null, 0.05)
    assert (fair["attack"], fair["test"]) == ("rmia", "mann_whitney") and "2 of 3 pairs calibrated" in fair["statement"]
    reason = yaml.safe_load(power_analysis.proposal_yaml(fair, "runs/x"))["mia"]["headline_reason"]
    assert reason.startswith("largest mean detection rate (no minimum detectable effect within the grid)")
    # an MDE among the calibrated pairs still wins over the mean detection rate
    with_mde = _mde_rows({("lira_online", "auc_ci"): 0.01, ("loss", "auc_ci"): 0.04, ("rmia", "mann_whitney"): np.nan})
    assert power_analysis.propose(with_mde, _power_rows(rates), null, 0.05)["attack"] == "loss"


def test_null_pairs_take_one_label_per_other_pair_and_the_null_table_counts_false_positives():
    pairs = dose_response.null_pairs(8)
    assert len(pairs) == 8 * 3 and all(j // 2 != k // 2 and k % 2 == 0 for j, k in pairs)
    rng = np.random.default_rng(0)
    members = rng.random(400) < 0.5
    rows = []
    for i in range(200):  # scores independent of membership: the one-sided tests reject about alpha of the time
        s = rng.normal(size=400)
        rows.append({"attack": "loss", "auc": power_analysis.stats.mannwhitneyu(s[members], s[~members]).statistic
                     / (members.sum() * (~members).sum()), "auc_lo": 0.5 + (i % 40 == 0) * 0.01,
                     "p_mann_whitney": power_analysis.mann_whitney_p(s, members)})
    null = power_analysis.null_table(pd.DataFrame(rows), ["auc_ci", "mann_whitney"], 0.05)
    ci, mw = null.iloc[0], null.iloc[1]
    assert (ci["n_rejected"], ci["rejection_rate"]) == (5, 0.025)  # the planted rejections, counted exactly
    assert 0 < mw["rejection_rate"] < 0.12 and mw["rejection_lo"] <= 0.05 <= mw["rejection_hi"]
    assert ci["mean_auc_lo"] < 0.5 < ci["mean_auc_hi"]


def _ledger_run(folder, mia_settings: str) -> None:
    res = folder / "results"
    res.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"mia:\n{mia_settings}")
    rows = [{"target": t, "role": role, "cardinality": card, "label_mode": mode, "attack": a,
             "auc": {"lira_online_fixed": 0.55, "rmia": 0.52, "loss": 0.6}[a], "auc_lo": 0.5, "auc_hi": 0.6,
             "tpr_at_1pct": 0.02, "n_members": 100, "n_nonmembers": 100, "n_shadows": 8}
            for t, role, card, mode in (("teacher", "teacher", np.nan, "real"), ("student_synth0.1x", "student", 0.1, "soft"))
            for a in ("lira_online_fixed", "rmia", "loss")]
    pd.DataFrame(rows).to_csv(res / "mia.csv", index=False)
    (res / "headline.json").write_text('{"attack": "lira_online_fixed", "setting": "auto", "n_shadows": 8, "rule": "auto"}')


def test_the_ledger_uses_the_configured_headline_and_auto_stays_as_it_was(tmp_path):
    _ledger_run(tmp_path / "auto", "  headline: auto\n")
    assert ledger.headline(tmp_path / "auto") == "lira_online_fixed"
    ledger.build(tmp_path / "auto")
    meta = yaml.safe_load((tmp_path / "auto" / "results" / "ledger.json").read_text())
    assert meta["headline_variant"] == "lira_online_fixed" and "headline_test" not in meta
    _ledger_run(tmp_path / "power", "  headline: auto\n  headline_attack: rmia\n  headline_test: mann_whitney\n"
                                    "  headline_reason: smallest MDE\n")
    assert ledger.headline(tmp_path / "power") == "rmia"  # the configured one, whatever headline.json's rule said
    table = ledger.build(tmp_path / "power")
    assert set(table.loc[table["headline"], "attack"]) == {"rmia"}  # not loss, the best-scoring one
    meta = yaml.safe_load((tmp_path / "power" / "results" / "ledger.json").read_text())
    assert (meta["headline_variant"], meta["headline_test"], meta["headline_reason"]) == ("rmia", "mann_whitney", "smallest MDE")
    record = ledger.headline_record("auto", 8, attack="rmia", test="mann_whitney", reason="smallest MDE")
    assert record["attack"] == "rmia" and "pre-registered by power" in record["rule"]
    assert ledger.headline_record("auto", 8) == {"attack": "lira_online_fixed", "setting": "auto", "n_shadows": 8,
                                                 "rule": "auto: lira_online_fixed below 64 shadows, else lira_online"}


@pytest.mark.parametrize("override,message", [
    ({"power.rhos": [0.01, 0.02]}, r"power.rhos: \[0.01, 0.02\] is not accepted; accepted: a list that holds 0"),
    ({"power.rhos": [0.0, 1.5]}, r"power.rhos\[1\]: 1.5 is not accepted; accepted: >= 0 and <= 1"),
    ({"power.strength": 1.0}, "power.strength: 1.0 is not accepted; accepted: > 0 and < 1"),
    ({"power.strengths": [0.3, 0.3]}, "power.strengths: .* accepted: one or more distinct values"),
    ({"power.attacks": ["lira", "loss"]}, r"power.attacks: .* \('lira' unknown\)"),
    ({"power.tests": ["t_test"]}, "power.tests: .* accepted: one or more distinct names among auc_ci, mann_whitney"),
    ({"power.power_target": 1.0}, "power.power_target: 1.0 is not accepted"),
    ({"power.cardinality": 0.5}, "power.cardinality: 0.5 is not accepted; accepted: 0 .* pipeline cardinalities"),
    ({"mia.headline_attack": "rmia", "mia.headline_test": "", "mia.headline_reason": ""},
     "set mia.headline_attack, headline_test and headline_reason together"),
    ({"mia.headline_test": ""}, "set mia.headline_attack, headline_test and headline_reason together"),
    ({"mia.headline_attack": "best", "mia.headline_test": "auc_ci", "mia.headline_reason": "x"},
     "mia.headline_attack: 'best' is not accepted"),
    ({"mia.headline_attack": "rmia", "mia.headline_test": "z", "mia.headline_reason": "x"}, "mia.headline_test: 'z'"),
    ({"mia.headline_attack": "rmia", "mia.headline_test": "auc_ci", "mia.headline_reason": " "}, "together"),
])
def test_power_settings_fail_with_what_is_accepted(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/mini.yaml", override)


def test_the_power_config_extends_mini_and_sets_the_grid():
    cfg, mini = load_config("configs/mini-power.yaml"), load_config("configs/mini.yaml")
    assert cfg.power.rhos[0] == 0 and len(dose_response.doses(cfg)) >= 6
    same = {k: v for k, v in cfg.to_dict().items() if k not in ("study", "power")}
    want = {k: v for k, v in mini.to_dict().items() if k not in ("study", "power")}
    assert same["gkd"].pop("baselines") == [] and want["gkd"].pop("baselines")  # the dosed students are the run's own
    assert same == want and cfg.study.seeds == mini.study.seeds and cfg.study.workers == mini.study.workers
    assert cfg.mia.n_pipelines >= 4


def test_a_power_grid_extended_by_more_doses_resumes_and_any_other_change_is_refused(tmp_path):
    from tckr.runfolder import runs

    over = {"mia.n_pipelines": 4, "mia.n_shadows": 4, "power.rhos": [0.0, 0.25], "power.strengths": [0.5],
            "power.strength_rho": 0.25}
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides=over)
    first = dose_response._plan(run, 4)
    wider = runs.open_run("configs/tiny.yaml", tmp_path / "wide", overrides={**over, "power.rhos": [0.0, 0.25, 0.5]})
    (wider.dir / "power").mkdir(parents=True, exist_ok=True)
    (wider.dir / "power" / "plan.json").write_bytes((run.dir / "power" / "plan.json").read_bytes())
    second = dose_response._plan(wider, 4)  # resumes: the old rows are a prefix of the new ones
    assert second["rows"][:len(first["rows"])] == first["rows"] and len(second["rows"]) > len(first["rows"])
    assert [0.5, 0.3] in second["doses"] and all(d in second["doses"] for d in first["doses"])
    seeded = runs.open_run("configs/tiny.yaml", tmp_path / "seed", overrides={**over, "power.seed": 1})
    (seeded.dir / "power").mkdir(parents=True, exist_ok=True)
    (seeded.dir / "power" / "plan.json").write_bytes((run.dir / "power" / "plan.json").read_bytes())
    with pytest.raises(ValueError, match="other power settings .*seed.* differ"):
        dose_response._plan(seeded, 4)
    narrower = runs.open_run("configs/tiny.yaml", tmp_path / "narrow", overrides={**over, "power.rhos": [0.0]})
    (narrower.dir / "power").mkdir(parents=True, exist_ok=True)
    (narrower.dir / "power" / "plan.json").write_bytes((wider.dir / "power" / "plan.json").read_bytes())
    with pytest.raises(ValueError, match="other power settings"):
        dose_response._plan(narrower, 4)  # a dose made before would be dropped


def test_the_power_study_needs_four_pipelines(tmp_path):
    from tckr.runfolder import runs

    run = runs.open_run("configs/tiny.yaml", tmp_path / "run")  # tiny has 2 pipelines
    with pytest.raises(ValueError, match="mia.n_pipelines: 2 is not accepted by the power study; accepted: an even number >= 4"):
        dose_response.train_doses(run, progress=False)


@pytest.mark.parametrize("n", [1, 4, 6, 8, 24, 1000])
def test_wilson_interval_holds_its_estimate_exactly_at_zero_and_all(n):
    assert power_analysis.wilson(0, n)[0] == 0.0 and power_analysis.wilson(n, n)[1] == 1.0
    for k in range(0, n + 1, max(1, n // 7)):
        lo, hi = power_analysis.wilson(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
