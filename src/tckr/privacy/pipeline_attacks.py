"""Attacks with shadow *pipelines* (:mod:`tckr.pipelines` trains them): LiRA on each target student whose shadows are
the pipeline students trained its way, and the spread of that attack over the pipelines themselves.

Each student row is attacked through shadow pipelines that replicate that row's training: the target student of
variant ``v`` (the run's own, ``lora_<gkd.label_mode>``, and each of ``gkd.baselines``:
:mod:`tckr.classification.baselines`) and cardinality ``m`` has as shadows the pipelines' students of the same ``v``
and ``m`` (:func:`tckr.pipelines.variant_logits_name`); the targets are read where the run saved them
(``classifiers/``, or the base sub-run's for the base generator's variants, :func:`tckr.classification.baselines.student_file`).

:func:`attack_students`: each such target is scored with LiRA (online/offline, per-example/fixed variance), and with
RMIA where ``mia.attacks`` lists it (:func:`reference_attacks`), using its pipeline students as shadows and
``keep[:n_pipelines]`` as their membership; raw scores
``mia/scores/<target>_pipeline_<attack>.npy``, ROC ``mia/roc/<target>_pipeline_<attack>.csv`` and
``results/mia_pipeline.csv`` (the columns of ``results/mia.csv`` plus ``shadow_kind``, ``n_pipelines`` and ``note``;
``target`` is the variant's student name, ``student_base<m>x`` say). :func:`pipeline_spread` attacks each pipeline's
student with the others (leave one pipeline out): the spread of the attack over training randomness at no extra
training cost, ``results/mia_pipeline_lopo.csv`` (with a ``student`` column, the variant's student name, only when
``gkd.baselines`` is set: without it every row is the run's own student), pooled per student, cardinality and attack
by :func:`tckr.ledger.lopo_summary` (the pipelines' students as replicate targets).
:func:`run_all` is the whole phase: train the pipelines, then both attacks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tckr.classification import baselines
from tckr.core import io
from tckr.privacy import attack_results, attacks, ledger, metrics, mia, pipelines
from tckr.runfolder import artifacts

LIRA_ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed")
LOPO_ATTACKS = ("lira_online_fixed", "lira_offline_fixed")
REFERENCE_ATTACKS = ("rmia", "rmia_offline")  # scored through the pipelines too, where mia.attacks lists them


def reference_attacks(cfg) -> tuple[str, ...]:
    """The attacks besides LiRA scored with the pipelines' students as references: those of :data:`REFERENCE_ATTACKS`
    in ``mia.attacks`` (a power study may pre-register one: the students' headline is then read through pipelines)."""
    return tuple(a for a in REFERENCE_ATTACKS if a in cfg.mia.attacks)


def reference_score(cfg, attack: str, target_phi, ref_phi, ref_in, target_z, ref_z) -> np.ndarray:
    """Scores of a reference attack (RMIA, LOSS: :func:`tckr.privacy.attacks.score`) with the run's settings
    (``mia.queries``, ``mia.rmia_a``, ``mia.rmia_gamma``)."""
    return attacks.score(attack, target_phi, ref_phi, ref_in, target_z_phi=target_z, shadow_z_phi=ref_z,
                         queries=list(cfg.mia.queries), rmia_a=cfg.mia.rmia_a, rmia_gamma=cfg.mia.rmia_gamma)


def lopo_references(attack: str, j: int, n: int) -> np.ndarray:
    """Indices of the references when pipeline ``j`` of ``n`` is the target: every other pipeline for LiRA (balanced
    per example with :func:`tckr.privacy.attacks.balanced_use`); for RMIA, which averages every reference, all but
    ``j``'s complementary pair, so that each example is IN for exactly half of them whatever its membership in ``j``."""
    if attack.startswith("rmia"):
        return np.array([i for i in range(n) if i // 2 != j // 2])
    return np.array([i for i in range(n) if i != j])


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


def _stable_pipelines(run, variant: str, multiple: float, n: int, labels: np.ndarray, population: bool = False) -> np.ndarray:
    names = [pipelines.variant_logits_name(i, variant, multiple) for i in range(n)]
    missing = [nm for nm in names if not artifacts.logits_path(run, nm, population).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {n} shadow pipelines have no query logits for {variant}'s {multiple:g}×|D| student "
                                f"(e.g. {artifacts.logits_path(run, missing[0])}): run tckr.pipelines.train_pipelines(run) "
                                "or `tckr pipelines --run-dir <run> --shard k/n` first")
    return np.stack([attacks.stable_logit(io.load_array(artifacts.logits_path(run, nm, population)), labels) for nm in names])


RESULT_EXTRA_COLUMNS = ("shadow_kind", "n_pipelines", "note")


def target_students(run) -> dict[str, dict[str, Any]]:
    """The target students attacked through the pipelines, by name: every variant (``baselines.variants``) and pipeline
    cardinality whose student the run saved -> ``{"variant", "multiple", "label_mode", "path"}``. A missing one is
    said and left out; no student of the run's own variant is an error."""
    cfg = run.cfg
    cards = pipelines.cardinalities(cfg)
    has_base = run.dir.joinpath(*baselines.BASE_DIR).is_dir()  # opened (and so made) only where 04 made it
    out = {}
    for variant in baselines.variants(cfg):
        source, mode = baselines.VARIANTS[variant]
        for m in cards:
            name = baselines.variant_name(variant, m)
            path = baselines.student_file(run, variant, m) if source == "lora" or has_base else None
            if path is not None and path.is_file():
                out[name] = {"variant": variant, "multiple": m, "label_mode": mode, "path": path}
            elif variant == baselines.main_variant(cfg):
                print(f"no target student of {m:g}×|D| in {run.dir / 'classifiers'}: its pipeline students are not used")
            else:
                print(f"no target student {name} ({variant}) of the run: its pipeline students are not used")
    if not any(info["variant"] == baselines.main_variant(cfg) for info in out.values()):
        raise FileNotFoundError(f"no {cfg.gkd.label_mode}-label target student of cardinality {cards} in {run.dir / 'classifiers'}; "
                                "run notebooks/04_run_evaluate.ipynb first")
    return out


def attack_students(run, n: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Score every target student of a pipeline cardinality (:func:`target_students`: the run's own variant and each of
    ``gkd.baselines``) with LiRA whose shadows are the pipeline students of the same variant and cardinality; writes
    raw scores, ROC arrays and ``results/mia_pipeline.csv`` (rows of other targets kept). Returns this call's rows."""
    n = pipelines.n_pipelines(run, n)
    keep = mia.ensure_mask(run, n)
    students = target_students(run)
    mia.query_models(run, {t: info["path"] for t, info in students.items()})
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    labels, z_labels = saved["labels"], saved["population_labels"]
    io.save_array(artifacts.mia_dir(run, "scores", "membership.npy"), saved["member"])
    scored = []
    shadow_cache: dict[tuple[str, float], tuple[np.ndarray, np.ndarray | None]] = {}
    cfg, extra = run.cfg, reference_attacks(run.cfg)
    for t, info in students.items():
        key = (info["variant"], info["multiple"])
        if key not in shadow_cache:
            shadow_cache[key] = (_stable_pipelines(run, *key, n, labels),
                                 _stable_pipelines(run, *key, n, z_labels, population=True) if extra else None)
        t_phi = attacks.stable_logit(io.load_array(artifacts.logits_path(run, t)), labels)
        scores = lira_scores(t_phi, shadow_cache[key][0], keep)
        if extra:
            t_z = attacks.stable_logit(io.load_array(artifacts.logits_path(run, t, True)), z_labels)
            for a in extra:
                scores[a] = reference_score(cfg, a, t_phi, shadow_cache[key][0], keep, t_z, shadow_cache[key][1])
        for a, s in scores.items():
            if isinstance(s, str):
                print(f"{t} {a}: {s}")
        scored.append(attack_results.TargetScores(t, scores, {"role": "student", "cardinality": info["multiple"],
                                                              "label_mode": info["label_mode"], "shadow_kind": "pipeline",
                                                              "n_pipelines": n},
                                                  n_shadows=n, stem=f"{t}_pipeline", table=False))
    new = attack_results.write_attack_results(run, "mia_pipeline.csv", scored, extra_columns=RESULT_EXTRA_COLUMNS)
    return new


def pipeline_spread(run, n: int | None = None) -> pd.DataFrame:
    """Leave one pipeline out: pipeline ``j``'s student as the target (members = ``keep[j]``), the other
    pipelines' students of the same variant as shadows (:func:`lopo_references`), fixed-variance online and offline
    LiRA and each of :func:`reference_attacks`, on P without its mislabeled canaries; ``results/mia_pipeline_lopo.csv``
    (a ``student`` column first when ``gkd.baselines`` is set).
    Needs at least 4 pipelines (with 2, the one left has each example only IN or only OUT)."""
    n = pipelines.n_pipelines(run, n)
    named = bool(run.cfg.gkd.baselines)  # without baselines the file stays as it was: every row the run's own student
    cols = ["student"] * named + ["cardinality", "pipeline", "attack", "auc", "tpr_at_1pct", "tpr_at_0.1pct"]
    if n < 4:
        print(f"leave-one-pipeline-out needs at least 4 shadow pipelines, the config has {n}: skipped")
        return pd.DataFrame(columns=cols)
    keep = mia.ensure_mask(run, n)
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    labels, z_labels = saved["labels"], saved["population_labels"]
    regular = ~mia.canary_mask(run)  # the spread of the ordinary rows: P without its mislabeled canaries
    rows, cfg, extra = [], run.cfg, reference_attacks(run.cfg)
    for variant, m in pipelines.students(run.cfg):
        phi = _stable_pipelines(run, variant, m, n, labels)
        z = _stable_pipelines(run, variant, m, n, z_labels, population=True) if extra else None
        who = {"student": baselines.variant_name(variant, m)} if named else {}
        for j in range(n):
            others = np.arange(n) != j
            # each example's references balanced (k-1 IN, k-1 OUT): left unbalanced by the target's own membership,
            # they rank members below non-members where there is no signal (attacks.balanced_use)
            use = attacks.balanced_use(keep[others], seed=run.cfg.mia.seed + j)
            for a in LOPO_ATTACKS:
                s = attacks.lira_from_stable(phi[j], phi[others], keep[others], online="online" in a,
                                             fixed_variance=a.endswith("fixed"), use=use)
                r = metrics.attack_metrics(s[regular], keep[j][regular])
                rows.append({**who, "cardinality": m, "pipeline": j, "attack": a, **{k: r[k] for k in cols[-3:]}})
            for a in extra:
                refs = lopo_references(a, j, n)
                s = reference_score(cfg, a, phi[j], phi[refs], keep[refs], z[j], z[refs])
                r = metrics.attack_metrics(s[regular], keep[j][regular])
                rows.append({**who, "cardinality": m, "pipeline": j, "attack": a, **{k: r[k] for k in cols[-3:]}})
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
