"""The results page's block of a dose-response study (``tckr power``): each attack × test's rejection rate at rho = 0
(the undosed students: a false-positive rate only where they do not leak), its false-positive rate under the null
(``results/power_null.csv``, where the study has it) and its minimum detectable effect, from ``results/mde.csv`` and
``results/power.csv``, with the power figure
of ``images/<study>/`` linked when it is there. Empty for a study without ``results/mde.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pct(v: float, digits: int = 1) -> str:
    return "–" if pd.isna(v) else f"{100 * float(v):.{digits}f}"


def power_block(folder: str | Path, images: str | Path = "images") -> str:
    """The Markdown of ``folder``'s dose-response results (a leading blank line; "" when it has none)."""
    folder = Path(folder)
    f = folder / "results" / "mde.csv"
    if not f.is_file():
        return ""
    mde = pd.read_csv(f)
    power = pd.read_csv(folder / "results" / "power.csv")
    null_file = folder / "results" / "power_null.csv"
    null = pd.read_csv(null_file) if null_file.is_file() else None
    rates = {} if null is None else {(r.attack, r.test): r for r in null.itertuples()}
    rhos = sorted(power.loc[power["series"].isin(["rho", "both"]), "rho"].unique())
    n = int(mde["n_replicates"].min()) if len(mde) else 0
    lines = ["", f"Dose-response control (`tckr power`): a share rho of every synthetic set of the dosed cardinality "
             f"replaced by near-copies of members, {n} leave-one-pipeline-out replicate targets per dose, rho in "
             f"{{{', '.join(f'{100 * r:g}' for r in rhos)}}}%. Minimum detectable effect: the rho at which an attack × "
             f"test detects the planted leak in {_pct(mde['power_target'].iloc[0], 0) if len(mde) else '–'}% of the "
             "replicates; at rho = 0 the replicates are the undosed students, whose own leakage the test may already see "
             "(a false-positive rate only where they do not leak)" + (
                 "" if null is None else f"; the null column is each test's false-positive rate [95% interval], measured "
                 f"on {int(null['n_replicates'].min())} null replicates (one pipeline's student scored against another "
                 "pipeline's independent membership, references from neither pair: no signal by construction)") + ":", "",
             "| attack | test | rejects under the null (%) | rejects at rho = 0 (%) | minimum detectable rho (%) | mean AUC there (%) "
             "| mean TPR@1% there (%) |",
             "|---|---|---|---|---|---|---|"]
    order = mde.assign(_key=mde["mde_rho"].fillna(np.inf)).sort_values(["_key", "attack", "test"], kind="stable")
    for r in order.itertuples():
        rho = (f"{100 * r.mde_rho:.2f}" if not pd.isna(r.mde_rho)
               else "not calibrated" if r.false_positive_rate >= r.power_target else "above the grid")
        z = rates.get((r.attack, r.test))
        fp = "–" if z is None else f"{_pct(z.rejection_rate, 0)} [{_pct(z.rejection_lo, 0)}, {_pct(z.rejection_hi, 0)}]"
        lines.append(f"| {r.attack} | {r.test} | {fp} | {_pct(r.false_positive_rate, 0)} | {rho} | {_pct(r.auc_at_mde)} | "
                     f"{_pct(r.tpr_at_1_at_mde)} |")
    png = Path(images) / folder.name / "power.png"
    if png.is_file():
        lines += ["", f"![{folder.name}: power](images/{folder.name}/power.png)"]
    return "\n".join(lines) + "\n"
