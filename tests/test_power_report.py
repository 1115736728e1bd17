"""The results page's block of a dose-response study (tckr.reporting.power_report), from planted result files."""

from pathlib import Path

import numpy as np
import pandas as pd

from tckr.privacy import power_analysis
from tckr.reporting import power_report, report


def _study(folder, rates):
    """A result folder whose power.csv has the given detection rates per (attack, test) along rho."""
    rhos = [0.0, 0.01, 0.02, 0.04]
    rows = []
    for (attack, test), rate in rates.items():
        for rho, d in zip(rhos, rate):
            rows.append({"rho": rho, "strength": 0.3 if rho else 0.0, "series": "both" if rho == 0.02 else "rho",
                         "attack": attack, "test": test, "n_replicates": 8, "n_detected": round(8 * d), "detect_rate": d,
                         "detect_lo": max(0.0, d - 0.3), "detect_hi": min(1.0, d + 0.3), "mean_auc": 0.5 + rho * 5,
                         "mean_auc_lo": 0.5, "mean_auc_hi": 0.6, "mean_tpr_at_1": 0.01 + rho, "mean_auc_dosed": 0.6,
                         "n_replaced": int(800 * rho)})
    power = pd.DataFrame(rows, columns=power_analysis.POWER_COLUMNS)
    (folder / "results").mkdir(parents=True)
    power.to_csv(folder / "results" / "power.csv", index=False)
    power_analysis.mde(power, 0.8).to_csv(folder / "results" / "mde.csv", index=False)
    return power


def test_block_orders_by_minimum_detectable_effect_and_names_the_two_nulls(tmp_path):
    _study(tmp_path / "p", {("lira_offline_fixed", "mann_whitney"): [0.0, 0.5, 1.0, 1.0],
                            ("loss", "auc_ci"): [0.0, 0.0, 0.25, 0.5],
                            ("rmia", "auc_ci"): [0.875, 1.0, 1.0, 1.0]})
    text = power_report.power_block(tmp_path / "p", images=tmp_path / "images")
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| attack")]
    # 80% is crossed between rho 1% (50%) and 2% (100%): at 1.6%
    assert rows[0].startswith("| lira_offline_fixed | mann_whitney | – | 0 | 1.60 |")
    assert "| loss | auc_ci | – | 0 | above the grid |" in text and "| rmia | auc_ci | – | 88 | not calibrated |" in text
    assert "null replicates" not in text  # no null measured: said by the dash, not by a rate
    assert "rho in {0, 1, 2, 4}%" in text and "8 leave-one-pipeline-out replicate targets" in text
    assert "power.png" not in text
    (tmp_path / "images" / "p").mkdir(parents=True)
    (tmp_path / "images" / "p" / "power.png").write_bytes(b"\x89PNG")
    assert "![p: power](images/p/power.png)" in power_report.power_block(tmp_path / "p", images=tmp_path / "images")
    null = pd.DataFrame([{"attack": "loss", "test": "auc_ci", "n_replicates": 24, "n_rejected": 1, "rejection_rate": 1 / 24,
                          "rejection_lo": 0.007, "rejection_hi": 0.2, "mean_auc": 0.5, "mean_auc_lo": 0.49, "mean_auc_hi": 0.51}],
                        columns=power_analysis.NULL_COLUMNS)
    null.to_csv(tmp_path / "p" / "results" / "power_null.csv", index=False)
    text = power_report.power_block(tmp_path / "p", images=tmp_path / "images")
    assert "| loss | auc_ci | 4 [1, 20] | 0 | above the grid |" in text and "measured on 24 null replicates" in text
    assert "| rmia | auc_ci | – | 88 |" in text


def test_accuracy_only_study_block_carries_the_power_block(tmp_path):
    folder = tmp_path / "mini-power"
    _study(folder, {("lira_online_fixed", "auc_ci"): [0.0, 0.9, 1.0, 1.0]})
    (folder / "config.yaml").write_text("study: {name: mini-power, seeds: [0]}\n")
    pd.DataFrame({"model": ["teacher"], "role": ["teacher"], "arch": ["a"], "cardinality": [np.nan], "label_mode": ["real"],
                  "train_size": [4000], "test_accuracy": [83.0], "val_accuracy": [85.0], "best_epoch": [5],
                  "epochs_run": [10], "train_seconds": [1.0], "seed": [0]}).to_csv(folder / "results" / "classifiers.csv", index=False)
    pd.DataFrame({"started": ["2026-01-01T00:00:00"], "phase": ["04_run_evaluate"], "status": ["done"], "seconds": [60.0],
                  "reason": ["has not finished"]}).to_csv(folder / "results" / "phases.csv", index=False)
    text = report.study_block(folder, images=tmp_path / "images")
    assert "Dose-response control" in text and "| lira_online_fixed | auc_ci | – | 0 |" in text
    assert power_report.power_block(tmp_path / "nothing") == ""


def test_make_figures_draws_the_committed_power_study_without_its_missing_privacy_phases(tmp_path):
    import shutil

    from tckr.core import paths
    from tckr.reporting import plots

    folder = Path(shutil.copytree(paths.ROOT / "results" / "mini-power", tmp_path / "mini-power",
                                  ignore=shutil.ignore_patterns("figures")))
    assert not (folder / "results" / "mia.csv").is_file()  # phases 00-04 and the pipelines only
    out = plots.result_figures([folder], images=tmp_path / "images", log=lambda m: None)
    names = {p.name for p in out[folder.as_posix()]}
    assert "power.png" in names and not names & {"roc.png", "ledger.png", "privacy_utility.png"}
    assert (tmp_path / "images" / "mini-power" / "power.png").read_bytes()[:4] == b"\x89PNG"
    text = power_report.power_block(folder, images=tmp_path / "images")
    mde = pd.read_csv(folder / "results" / "mde.csv")
    assert len([ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| attack")]) == len(mde)
