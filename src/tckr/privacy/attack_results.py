"""The one writer of attack results: the metric rows of ``results/mia.csv``, ``mia_pipeline.csv``,
``mia_generator.csv`` and ``mia_synthetic.csv`` with the raw scores, score tables and ROC arrays under ``mia/``
(:func:`write_attack_results`; the columns are :data:`RESULT_COLUMNS`: each metric with its 95% bootstrap interval and
one-sided 95% upper bound, :func:`tckr.metrics.summarise`, and ``eps_lb``, the empirical epsilon lower bound at
``eps_delta`` = :data:`EPS_DELTA` of :func:`tckr.privacy.auditing.epsilon_one_run` on the row's scores). Every attack
module hands it a
:class:`TargetScores` per attacked model: :func:`tckr.mia.attack`, :func:`tckr.pipelines.attack_students`,
:func:`tckr.generator_mia.attack_generator` and :func:`tckr.generator_mia.attack_synthetic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.privacy import auditing, metrics
from tckr.runfolder import artifacts

# delta of the empirical epsilon lower bound: below 1 / |P| (1.25e-4 at |P| = 8,000), as a DP guarantee must be to mean
# anything for a set of that size
EPS_DELTA = 1e-5
RESULT_COLUMNS = ["target", "role", "cardinality", "label_mode", "attack", "subset",
                  *[c for k in metrics.METRICS for c in (k, f"{k}_lo", f"{k}_hi")], "n_shadows", "n_members", "n_nonmembers",
                  *[f"{k}_ub" for k in metrics.BOUNDED], "tpr_note", "eps_lb", "eps_delta"]
SUBSETS = ("all", "canaries")  # P without its mislabeled canaries; the canaries alone


@dataclass
class TargetScores:
    """One attacked target as :func:`write_attack_results` takes it: ``scores`` maps each attack to its scores
    over the attacked examples (higher = member) or to a note saying why it was not scored; ``fields`` are the
    row's other columns (``role``, ``cardinality``, ``label_mode`` and the file's extra columns); ``n_shadows``
    the reference models (one count, or one per attack); ``stem`` names the raw score and ROC files (default:
    the target); ``table`` also writes ``mia/scores/<target>.csv``."""

    target: str
    scores: dict[str, np.ndarray | str]
    fields: dict[str, Any]
    n_shadows: int | dict[str, int] = 0
    stem: str | None = None
    table: bool = True


def write_attack_results(run, file: str, scored: Iterable[TargetScores], *, positions: np.ndarray | None = None,
                         extra_columns: Iterable[str] = ()) -> pd.DataFrame:
    """The one writer of attack results (``results/mia.csv``, ``mia_pipeline.csv``, ``mia_generator.csv``,
    ``mia_synthetic.csv``): for each target and attack, the raw scores ``mia/scores/<stem>_<attack>.npy`` and
    rows of metrics with 95% bootstrap intervals (``mia.n_bootstrap``, seeded by ``mia.seed``) against the
    membership recorded in ``mia/pool.npz``, over ``positions`` in P (default: all of P), and the one-run epsilon lower
    bound of the same scores (members = IN: P's membership is a seeded half, so the audit's guesses are counted over
    the row's examples). Row ``subset`` = ``all``
    is P without its mislabeled canaries (every example when ``mia.canaries`` is 0; ROC ``mia/roc/<stem>_<attack>.csv``);
    ``canaries`` the canaries alone (ROC ``..._canaries.csv``), present only when some are attacked. Scores are
    computed once over all attacked examples, so a pooled-variance attack pools over the canaries too. Rows of the
    same (target, attack, subset) already in ``results/<file>`` are replaced, the others kept; the file is written
    atomically. Returns this call's rows."""
    cfg = run.cfg
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    pos = np.arange(len(saved["member"])) if positions is None else np.asarray(positions)
    member, labels, index = saved["member"][pos], saved["labels"][pos], saved["index"][pos]
    canary = np.isin(index, run.canaries().index)
    subsets = [("all", ~canary, "")] + ([("canaries", canary, "_canaries")] if canary.any() else [])
    cols = RESULT_COLUMNS + list(extra_columns)
    rows = []
    for t in scored:
        stem = t.stem or t.target
        table = pd.DataFrame({"index": index, "label": labels, "member": member, "canary": canary})
        for a, s in t.scores.items():
            n_shadows = t.n_shadows[a] if isinstance(t.n_shadows, dict) else t.n_shadows
            if not isinstance(s, str):
                table[a] = s
                io.save_array(artifacts.mia_dir(run, "scores", f"{stem}_{a}.npy"), s)
            for subset, sel, suffix in subsets:
                mem = member[sel]
                base = {"target": t.target, **t.fields, "attack": a, "subset": subset, "n_shadows": n_shadows,
                        "n_members": int(mem.sum()), "n_nonmembers": int((~mem).sum())}
                if isinstance(s, str):
                    if "note" not in cols:
                        raise ValueError(f"{t.target} {a}: not scored ({s}), and {file} has no note column to say so")
                    rows.append({**base, "note": s})
                    continue
                fpr, tpr = metrics.roc(s[sel], mem)
                io.save_csv(artifacts.mia_dir(run, "roc", f"{stem}_{a}{suffix}.csv"), pd.DataFrame({"fpr": fpr, "tpr": tpr}))
                rows.append({**base, **metrics.summarise(s[sel], mem, cfg.mia.n_bootstrap, run.seed_for(cfg.mia.seed)),
                             "eps_lb": auditing.epsilon_one_run(s[sel][mem], s[sel][~mem], delta=EPS_DELTA),
                             "eps_delta": EPS_DELTA, **({"note": ""} if "note" in cols else {})})
        if t.table:
            io.save_csv(artifacts.mia_dir(run, "scores", f"{t.target}.csv"), table)
    new = pd.DataFrame(rows).reindex(columns=cols)
    f = run.path("results", file)
    if f.is_file():
        old = pd.read_csv(f, keep_default_na=False, na_values=[""])
        old = old.assign(subset=old["subset"].fillna("all") if "subset" in old else "all")
        key = ["target", "attack", "subset"]
        old = old[~old.set_index(key).index.isin(new.set_index(key).index)]
        new_all = pd.concat([old.reindex(columns=new.columns), new], ignore_index=True)
    else:
        new_all = new
    io.save_csv(f, new_all)
    return new
