"""Attacks with shadow *pipelines* (:mod:`tckr.pipelines` trains them): LiRA on each target student whose shadows are
the pipeline students of its cardinality, and the spread of that attack over the pipelines themselves.

:func:`attack_students`: each target student of a pipeline cardinality is scored with LiRA (online/offline,
per-example/fixed variance) using the pipeline students of that cardinality as shadows and ``keep[:n_pipelines]`` as
their membership; raw scores ``mia/scores/<target>_pipeline_<attack>.npy``, ROC ``mia/roc/<target>_pipeline_<attack>.csv``
and ``results/mia_pipeline.csv`` (the columns of ``results/mia.csv`` plus ``shadow_kind``, ``n_pipelines`` and
``note``). :func:`pipeline_spread` attacks each pipeline's student with the others (leave one pipeline out): the
spread of the attack over training randomness at no extra training cost, ``results/mia_pipeline_lopo.csv``, pooled
per cardinality and attack by :func:`tckr.ledger.lopo_summary` (the pipelines' students as replicate targets).
:func:`run_all` is the whole phase: train the pipelines, then both attacks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.privacy import attack_results, attacks, ledger, metrics, mia, pipelines
from tckr.runfolder import artifacts

LIRA_ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed")
LOPO_ATTACKS = ("lira_online_fixed", "lira_offline_fixed")


def lira_scores(target_phi: np.ndarray, shadow_phi: np.ndarray, shadow_in: np.ndarray,
                variants: tuple[str, ...] = LIRA_ATTACKS) -> dict[str, np.ndarray | str]:
    """LiRA scores of one target from stable logits (:func:`tckr.attacks.score`), one entry per variant; a per-example
    variant that the shadows cannot support (fewer than 2 IN or 2 OUT shadows for some example) is a note."""
    shadow_in = np.asarray(shadow_in, dtype=bool)
    n_in, n_out = shadow_in.sum(0), (~shadow_in).sum(0)
    out: dict[str, np.ndarray | str] = {}
    for a in variants:
        online = "online" in a
        need = 1 if a.endswith("fixed") else 2
        if n_out.min() < need or (online and n_in.min() < need):
            out[a] = (f"skipped: {a} needs at least {need} {'IN and OUT' if online else 'OUT'} shadow pipelines per example "
                      f"(have min IN {int(n_in.min())}, min OUT {int(n_out.min())}); add pipelines")
            continue
        out[a] = attacks.score(a, target_phi, shadow_phi, shadow_in)
    return out


def _stable_pipelines(run, multiple: float, n: int, labels: np.ndarray) -> np.ndarray:
    names = [pipelines.student_logits_name(i, multiple, run.cfg.gkd.label_mode) for i in range(n)]
    missing = [nm for nm in names if not artifacts.logits_path(run, nm).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {n} shadow pipelines have no query logits for {multiple:g}×|D| "
                                f"(e.g. {artifacts.logits_path(run, missing[0])}): run tckr.pipelines.train_pipelines(run) "
                                "or `tckr pipelines --run-dir <run> --shard k/n` first")
    return np.stack([attacks.stable_logit(io.load_array(artifacts.logits_path(run, nm)), labels) for nm in names])


RESULT_EXTRA_COLUMNS = ("shadow_kind", "n_pipelines", "note")


def attack_students(run, n: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Score every target student of a pipeline cardinality (``gkd.label_mode``) with LiRA whose shadows
    are the pipeline students of that cardinality; writes raw scores, ROC arrays and
    ``results/mia_pipeline.csv`` (rows of other targets kept). Returns this call's rows."""
    cfg = run.cfg
    n = pipelines.n_pipelines(run, n)
    keep = mia.ensure_mask(run, n)
    mode = cfg.gkd.label_mode
    cards = pipelines.cardinalities(cfg)
    students = {t: info for t, info in mia.available_targets(run).items()
                if info["role"] == "student" and info.get("label_mode") == mode
                and any(math.isclose(float(info.get("multiple") or 0), m) for m in cards)}
    if not students:
        raise FileNotFoundError(f"no {mode}-label target student of cardinality {cards} in {run.dir / 'classifiers'}; "
                                "run notebooks/04_run_evaluate.ipynb first")
    for m in cards:
        if not any(math.isclose(float(info["multiple"]), m) for info in students.values()):
            print(f"no target student of {m:g}×|D| in {run.dir / 'classifiers'}: its pipeline students are not used")
    mia.query_targets(run, list(students), train_teacher=False, progress=progress)
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    labels = saved["labels"]
    io.save_array(artifacts.mia_dir(run, "scores", "membership.npy"), saved["member"])
    scored = []
    shadow_cache: dict[float, np.ndarray] = {}
    for t, info in students.items():
        m = next(c for c in cards if math.isclose(float(info["multiple"]), c))
        if m not in shadow_cache:
            shadow_cache[m] = _stable_pipelines(run, m, n, labels)
        t_phi = attacks.stable_logit(io.load_array(artifacts.logits_path(run, t)), labels)
        scores = lira_scores(t_phi, shadow_cache[m], keep)
        for a, s in scores.items():
            if isinstance(s, str):
                print(f"{t} {a}: {s}")
        scored.append(attack_results.TargetScores(t, scores, {"role": "student", "cardinality": m, "label_mode": mode,
                                                              "shadow_kind": "pipeline", "n_pipelines": n},
                                                  n_shadows=n, stem=f"{t}_pipeline", table=False))
    new = attack_results.write_attack_results(run, "mia_pipeline.csv", scored, extra_columns=RESULT_EXTRA_COLUMNS)
    return new


def pipeline_spread(run, n: int | None = None) -> pd.DataFrame:
    """Leave one pipeline out: pipeline ``j``'s student as the target (members = ``keep[j]``), the other
    pipelines as shadows, fixed-variance online and offline LiRA, on P without its mislabeled canaries;
    ``results/mia_pipeline_lopo.csv``.
    Needs at least 4 pipelines (with 2, the one left has each example only IN or only OUT)."""
    n = pipelines.n_pipelines(run, n)
    cols = ["cardinality", "pipeline", "attack", "auc", "tpr_at_1pct", "tpr_at_0.1pct"]
    if n < 4:
        print(f"leave-one-pipeline-out needs at least 4 shadow pipelines, the config has {n}: skipped")
        return pd.DataFrame(columns=cols)
    keep = mia.ensure_mask(run, n)
    labels = np.load(artifacts.mia_dir(run, "pool.npz"))["labels"]
    regular = ~mia.canary_mask(run)  # the spread of the ordinary rows: P without its mislabeled canaries
    rows = []
    for m in pipelines.cardinalities(run.cfg):
        phi = _stable_pipelines(run, m, n, labels)
        for j in range(n):
            others = np.arange(n) != j
            # each example's references balanced (k-1 IN, k-1 OUT): left unbalanced by the target's own membership,
            # they rank members below non-members where there is no signal (attacks.balanced_use)
            use = attacks.balanced_use(keep[others], seed=run.cfg.mia.seed + j)
            for a in LOPO_ATTACKS:
                s = attacks.lira_from_stable(phi[j], phi[others], keep[others], online="online" in a,
                                             fixed_variance=a.endswith("fixed"), use=use)
                r = metrics.attack_metrics(s[regular], keep[j][regular])
                rows.append({"cardinality": m, "pipeline": j, "attack": a, **{k: r[k] for k in cols[3:]}})
    table = pd.DataFrame(rows, columns=cols)
    io.save_csv(run.path("results", "mia_pipeline_lopo.csv"), table)
    print(f"leave-one-pipeline-out AUC over {n} pipelines (mean, 95% t-interval, share above 0.5):\n"
          f"{ledger.lopo_summary(table).to_string(index=False)}")
    return table


def run_all(run, *, progress: bool = True) -> dict[str, Any]:
    """Train every shadow pipeline, attack the students with them and write the leave-one-out spread
    (nothing when ``mia.n_pipelines`` is 0). Returns ``{"pipelines", "students", "lopo"}``."""
    if not run.cfg.mia.n_pipelines:
        print("mia.n_pipelines is 0: no shadow pipelines, the students are attacked with classifier shadows only")
        return {}
    done = pipelines.train_pipelines(run, progress=progress)
    return {"pipelines": done, "students": attack_students(run, progress=progress), "lopo": pipeline_spread(run)}
