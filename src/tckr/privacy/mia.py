"""Membership inference: standard LiRA (Carlini et al. 2022) against the teacher and the students,
with the LOSS attack and RMIA (Zarifzadeh et al. 2024) as baselines.

Protocol. The MIA pool is P = D ∪ H (D first, then H; |H| = |D|, H never in D). A seeded membership
mask ``keep`` (shadows × examples of P) is written before any training: shadows come in pairs that
train on complementary class-stratified halves of P, so every example is IN for exactly half of the
shadows and every shadow trains on |D| images. Shadows use the teacher's architecture, recipe and
epoch budget (``mia.shadow_epochs``; 0 = the teacher's). Every model (shadows, teacher, students)
is queried on every example of P under each of ``mia.queries`` and on a population sample Z of
``mia.population_size`` real images from the public ``pool`` split (RMIA's z samples). Targets:
the teacher (trained on D) and every student in ``run/classifiers/``; members = D, non-members = H.
Mislabeled canaries (``mia.canaries``, :meth:`tckr.runs.Run.canaries`) carry their canary label in P's labels,
so shadows train on it and the stable logit of a canary is that of its canary label.

Attacks (:data:`tckr.attacks.ATTACKS`; the mathematics lives in :mod:`tckr.attacks`): LiRA online / offline with
per-example or one pooled variance, the LOSS attack and RMIA, all from the stable logit of the true class. The
**headline** attack is fixed by the settings before any score exists (``mia.headline``; ``auto`` =
``lira_online_fixed`` below 64 shadows, else ``lira_online``; :func:`tckr.ledger.headline_record`): it is always
scored, and it alone feeds AOP, the study table and the cardinality figure; the other attacks are reported beside it,
never a maximum over them.

Files in the run folder:

- ``mia/keep.npy`` bool [shadows, n]: the membership mask; ``mia/pool.npz``: ``index`` (positions in
  the real train split), ``labels``, ``member`` (True = in D) of P and ``population_index`` /
  ``population_labels`` of Z; ``mia/queries.json``: the query order of the logits arrays;
- ``mia/shadows/shadow_<i>.safetensors`` (+ sidecar JSON, ``_history.csv``): shadow weights;
- ``mia/logits/<model>.npy`` float32 [n, q, c] and ``mia/logits/<model>_population.npy`` [|Z|, q, c],
  ``<model>`` = ``shadow_<i>`` or a target name;
- ``mia/scores/<target>_<attack>.npy`` float64 [n] raw scores, ``mia/scores/membership.npy`` bool [n],
  ``mia/scores/<target>.csv``: ``index, label, member`` and one column per attack;
- ``mia/roc/<target>_<attack>.csv``: ``fpr, tpr``;
- ``results/mia.csv`` one row per (target, attack, subset): ``target, role, cardinality, label_mode, attack,
  subset, auc, auc_lo, auc_hi, tpr_at_0.1pct(_lo/_hi), tpr_at_1pct(_lo/_hi), balanced_accuracy(_lo/_hi),
  n_shadows, n_members, n_nonmembers`` (fractions in [0, 1], 95% bootstrap intervals); ``subset`` is ``all``
  (P without its mislabeled canaries) or ``canaries`` (the canaries alone, when ``mia.canaries`` > 0), written by
  :func:`tckr.privacy.attack_results.write_attack_results`, the writer of every attack-result file;
- ``results/headline.json``: ``attack, setting, n_shadows, rule`` (the pre-registered headline);
- ``results/aop.csv``: ``target, role, cardinality, label_mode, attack, test_accuracy, auc, auc_lo,
  auc_hi, aop``, all in percent: ``test_accuracy`` from ``results/classifiers.csv``, ``auc`` the headline attack's AUC
  with its 95% interval (fractions in files written before 2026-12, whose ``auc`` is at most 1), and ``aop``.

Figures are drawn by :func:`tckr.plots.plot_mia_roc` from ``mia/roc/`` and ``results/`` (``figures/mia_roc``: classifier
shadows); the headline ROC of every release point is 09's ``figures/roc``.

CLI (one shard of the shadows per process or GPU): ``tckr shadows --config configs/mini.yaml
--run-dir runs/<id> --shard k/n`` (1 <= k <= n) trains shadows ``i`` with ``i % n == k - 1``; ``--attack`` then attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from tckr.classification import batches, checkpoints, classifiers, inference, train
from tckr.core import io, shards
from tckr.core.progress import tqdm
from tckr.datasets import splitting
from tckr.privacy import attack_results, ledger, metrics
from tckr.privacy.attacks import ATTACKS, membership_mask, score, stable_logit
from tckr.runfolder import artifacts, parallel


# ---------------------------------------------------------------- the run's ground truth
@dataclass
class Pool:
    """The MIA pool P = D ∪ H (D first) and the population sample Z."""

    images: np.ndarray
    labels: np.ndarray
    member: np.ndarray
    index: np.ndarray
    population_images: np.ndarray
    population_labels: np.ndarray
    population_index: np.ndarray


def _population(run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = "pool" if len(run.splits().pool) else "val"
    src = run.real(split)
    pos = splitting.stratified_subset(src.labels, run.cfg.mia.population_size, run.seed_for(run.cfg.mia.seed))
    index = getattr(run.splits(), split)[pos]
    return src.images[pos], src.labels[pos], index


def pool_index(run) -> np.ndarray:
    """Indices of P = D ∪ H (D first), without loading images; each part points into its ``run.source``."""
    s = run.splits()
    return np.r_[s.D, s.H].astype(np.int64)


def pool(run) -> Pool:
    """P = D ∪ H with labels and membership (True = in D), and Z; ``mia/pool.npz`` records the indices."""
    D, H = run.real("D"), run.real("H")
    s = run.splits()
    if run.source("H") == run.source("D"):
        if len(D) != len(H) or np.intersect1d(s.D, s.H).size:
            raise ValueError(f"the MIA pool needs |H| = |D| and H disjoint from D (|D|={len(D)}, |H|={len(H)})")
    elif not len(H):
        raise ValueError("the MIA pool has no non-members: data.holdout is 'test' and the test set is empty")
    # data.holdout: test: H is the test set (indices into the test split), |H| != |D| in general; each example is
    # still IN for exactly half of the shadows (membership_mask), and AUC / TPR at low FPR do not need |H| = |D|.
    z_img, z_lab, z_idx = _population(run)
    p = Pool(np.concatenate([D.images, H.images]), np.r_[D.labels, H.labels].astype(np.int64),
             np.r_[np.ones(len(D), bool), np.zeros(len(H), bool)], np.r_[s.D, s.H].astype(np.int64),
             z_img, z_lab.astype(np.int64), z_idx.astype(np.int64))
    f = artifacts.mia_dir(run, "pool.npz")
    fields = {"index": p.index, "labels": p.labels, "member": p.member, "population_index": p.population_index,
              "population_labels": p.population_labels}
    if not f.is_file():
        with io.atomic_path(f) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **fields)
    else:
        try:
            with np.load(f, allow_pickle=False) as saved:
                differ = [k for k, v in fields.items() if k not in saved or not np.array_equal(saved[k], v)]
        except Exception as e:  # damaged: numpy and zipfile raise ValueError, OSError, EOFError or BadZipFile
            raise io.CorruptFileError(f"{f}: not a readable pool record ({type(e).__name__}: {e}); delete it to rewrite it") from None
        if differ:
            raise ValueError(f"{f} records another pool than this run's splits give ({', '.join(differ)} differ); "
                             "use a new run folder")
    return p


def queries(run) -> list[str]:
    """The query order of every logits array (``mia/queries.json``, written once)."""
    f = artifacts.mia_dir(run, "queries.json")
    if f.is_file():
        saved = io.read_json(f)
        if saved != list(run.cfg.mia.queries):
            raise ValueError(f"{f} says the logits hold queries {saved}, the config asks {run.cfg.mia.queries}; use a new run folder")
        return saved
    io.write_json(f, list(run.cfg.mia.queries))
    return list(run.cfg.mia.queries)


def ensure_mask(run, n_shadows: int | None = None) -> np.ndarray:
    """The membership mask bool [shadows, |P|] (``mia/keep.npy``), written before any shadow trains.
    Asking for more shadows than recorded extends it (earlier rows never change). Every read checks the
    file against the mask this run's seed gives: an altered mask is an error naming the file."""
    m = int(n_shadows or run.cfg.mia.n_shadows)
    p = pool(run)
    queries(run)
    f = artifacts.mia_dir(run, "keep.npy")
    seed = run.seed_for(run.cfg.mia.seed)
    if f.is_file():
        keep = io.load_array(f)
        if keep.ndim != 2 or keep.dtype != bool or keep.shape[1] != len(p.labels):
            raise ValueError(f"{f} is {keep.dtype} {keep.shape}, not bool [shadows, {len(p.labels)}] for this pool; "
                             "use a new run folder")
        new = membership_mask(max(m, len(keep)), p.labels, seed)
        rows = np.flatnonzero((new[: len(keep)] != keep).any(1))
        if rows.size:
            raise ValueError(f"{f} differs from the membership mask of this run's seed {seed} in row(s) "
                             f"{rows[:8].tolist()}: it was altered or made by another run; the shadows' membership "
                             "cannot be trusted, use a new run folder")
        if len(keep) >= m:
            return keep[:m]
    else:
        new = membership_mask(m, p.labels, seed)
    io.save_array(f, new)
    return new


def shadow_name(i: int) -> str:
    return f"shadow_{i:03d}"


def shadow_seed(run, i: int) -> int:
    return int(np.random.SeedSequence([run.seed_for(run.cfg.mia.seed), 7919, int(i)]).generate_state(1)[0])


def _done(run, name: str) -> bool:
    return artifacts.logits_path(run, name).is_file() and artifacts.logits_path(run, name, True).is_file()


def query_logits(model, images: np.ndarray, cfg, query_list: Iterable[str]) -> np.ndarray:
    """float32 [n, q, c]: the model's logits on every image under every query augmentation."""
    return np.stack([inference.predict_logits(model, images, cfg, augment=a) for a in query_list], axis=1)


def _write_logits(run, name: str, model, p: Pool) -> None:
    qs = queries(run)
    io.save_array(artifacts.logits_path(run, name, True), query_logits(model, p.population_images, run.cfg, qs))
    io.save_array(artifacts.logits_path(run, name), query_logits(model, p.images, run.cfg, qs))


def _remove_partial(run, name: str) -> None:
    for folder in (artifacts.mia_dir(run, "shadows"), artifacts.mia_dir(run, "logits")):
        if folder.is_dir():
            for f in folder.glob(f".{name}*"):
                f.unlink(missing_ok=True)
    weights = artifacts.mia_dir(run, "shadows", f"{name}.safetensors")
    if not weights.is_file():
        for f in (weights.with_suffix(".json"), artifacts.mia_dir(run, "shadows", f"{name}_history.csv")):
            f.unlink(missing_ok=True)


def train_shadows(run, n_shadows: int | None = None, shard: str | None = None, *, progress: bool = True) -> list[int]:
    """Train (or finish) the shadows of one shard on their halves of P and write their query logits.
    Finished shadows are skipped; half-written files of unfinished ones are removed. Returns the
    indices trained or queried now."""


    cfg = run.cfg
    keep = ensure_mask(run, n_shadows)
    k, n = shards.parse_shard(shard)
    todo = [i for i in shards.mine(range(len(keep)), shard) if not _done(run, shadow_name(i))]
    if not todo:
        return []
    if shard is None and cfg.study.workers > 1:  # study.workers processes share the shadows (tckr.runfolder.parallel)
        out = parallel.run_shards(run, "tckr.privacy.mia:train_shadows", kwargs={"n_shadows": len(keep)}, desc="shadows",
                                  done=lambda: sum(_done(run, shadow_name(i)) for i in range(len(keep))),
                                  total=len(keep), progress=progress)
        return sorted(i for part in out for i in part)
    p = pool(run)
    val = run.real("val")
    arch = cfg.classifier.teacher_arch
    epochs = cfg.mia.shadow_epochs or None
    for i in tqdm(todo, desc=f"shadows (shard {k}/{n})", unit="shadows", disable=not progress):
        name = shadow_name(i)
        _remove_partial(run, name)
        weights = artifacts.mia_dir(run, "shadows", f"{name}.safetensors")
        if weights.is_file():
            model = classifiers.load_trained(weights, arch=arch, num_classes=len(run.class_names))
        else:
            model, _ = train.fit(cfg, arch, p.images[keep[i]], p.labels[keep[i]], val.images, val.labels,
                                 seed=shadow_seed(run, i), epochs=epochs, history_path=artifacts.mia_dir(run, "shadows", f"{name}_history.csv"),
                                 progress=progress, desc=name, num_classes=len(run.class_names),
                                 checkpoint=checkpoints.checkpoint_file(weights))
            classifiers.save(model, weights, arch=arch, class_names=run.class_names, normalisation=batches.normalisation(cfg),
                             config_hash=cfg.hash(), extra={"role": "shadow", "name": name, "index": i, **model.info})
            checkpoints.checkpoint_file(weights).unlink(missing_ok=True)
        _write_logits(run, name, model, p)
    return todo


# ---------------------------------------------------------------- targets
def available_targets(run) -> dict[str, dict[str, Any]]:
    """Teacher and students saved in ``run/classifiers/`` -> their sidecar info (role, multiple, label_mode)."""
    out = {}
    for f in sorted((run.dir / "classifiers").glob("*.safetensors")):
        extra = classifiers.read_meta(f).get("extra", {})
        if extra.get("role") in ("teacher", "student") and extra.get("name"):
            out[extra["name"]] = {**extra, "path": f}
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["role"] != "teacher", kv[1].get("multiple") or 0, kv[0])))


def select_targets(run, targets: str | Iterable[str] = "all") -> dict[str, dict[str, Any]]:
    """``"all"``, ``"teacher"``, ``"students"``, or names (a list or a comma-separated string)."""
    avail = available_targets(run)
    if targets in ("all", None):
        return avail
    if targets in ("teacher", "students"):
        role = targets.rstrip("s")
        return {k: v for k, v in avail.items() if v["role"] == role}
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    missing = [t for t in names if t not in avail]
    if missing:
        raise ValueError(f"no target(s) {missing} in {run.dir / 'classifiers'}; available: {', '.join(avail) or 'none (run 04_run_evaluate)'}")
    return {t: avail[t] for t in names}


def query_targets(run, targets: str | Iterable[str] = "all", *, train_teacher: bool = True, progress: bool = True) -> list[str]:
    """Write the query logits of the selected targets (the teacher is trained first when missing)."""
    if train_teacher:
        train.teacher(run, progress=progress)
    chosen = select_targets(run, targets)
    return query_models(run, {t: info["path"] for t, info in chosen.items()})


def query_models(run, models: dict[str, Path]) -> list[str]:
    """Write the query logits ``mia/logits/<name>[_population].npy`` of saved models by name (those not written yet):
    the run's targets, and students saved elsewhere (the base generator's, :mod:`tckr.classification.baselines`)."""
    todo = [t for t in models if not _done(run, t)]
    if todo:
        p = pool(run)
        for t in todo:
            _write_logits(run, t, classifiers.load_trained(models[t]), p)
    return list(models)


# ---------------------------------------------------------------- attacks and results
def _stable(run, name: str, labels: np.ndarray, population: bool = False) -> np.ndarray:
    return stable_logit(io.load_array(artifacts.logits_path(run, name, population)), labels)


def attack(run, targets: str | Iterable[str] = "all", attacks: Iterable[str] | None = None, n_shadows: int | None = None) -> pd.DataFrame:
    """Score every selected target with every attack from the saved logits; write raw scores, ROC arrays,
    ``results/mia.csv`` (rows of other targets are kept) and ``results/headline.json``. The headline
    attack is always scored, listed or not. Returns this call's rows."""
    cfg = run.cfg
    attacks = list(attacks or cfg.mia.attacks)
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise ValueError(f"unknown attack(s) {bad}; accepted: {', '.join(ATTACKS)}")
    keep = ensure_mask(run, n_shadows)
    m = len(keep)
    head = ledger.headline_record(cfg.mia.headline, m, attack=cfg.mia.headline_attack, test=cfg.mia.headline_test,
                                 reason=cfg.mia.headline_reason)
    if head["attack"] not in attacks:
        attacks.append(head["attack"])
    missing = [i for i in range(m) if not _done(run, shadow_name(i))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {m} shadows are not trained yet (e.g. {shadow_name(missing[0])}): "
                                "run tckr.mia.train_shadows(run) or `tckr shadows --run-dir <run> --shard k/n` first")
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    labels, member, z_labels = saved["labels"], saved["member"], saved["population_labels"]
    qs = queries(run)
    shadow_phi = np.stack([_stable(run, shadow_name(i), labels) for i in range(m)])
    shadow_z = np.stack([_stable(run, shadow_name(i), z_labels, True) for i in range(m)])
    chosen = select_targets(run, targets)
    io.save_array(artifacts.mia_dir(run, "scores", "membership.npy"), member)
    scored = []
    for t, info in chosen.items():
        if not _done(run, t):
            raise FileNotFoundError(f"no query logits for target {t}: run tckr.mia.query_targets(run) first")
        t_phi, t_z = _stable(run, t, labels), _stable(run, t, z_labels, True)
        scores = {a: score(a, t_phi, shadow_phi, keep, target_z_phi=t_z, shadow_z_phi=shadow_z, queries=qs,
                           rmia_a=cfg.mia.rmia_a, rmia_gamma=cfg.mia.rmia_gamma) for a in attacks}
        scored.append(attack_results.TargetScores(t, scores, {"role": info["role"], "cardinality": info.get("multiple"),
                                                              "label_mode": info.get("label_mode")}, n_shadows=m))
    new = attack_results.write_attack_results(run, "mia.csv", scored)
    io.write_json(artifacts.headline_path(run), head)
    return new


def canary_mask(run, positions: np.ndarray | None = None) -> np.ndarray:
    """bool [|P|] (or [len(positions)]): which examples of P are the run's mislabeled canaries."""
    c = np.isin(pool_index(run), run.canaries().index)
    return c if positions is None else c[np.asarray(positions)]


def write_aop(run, attack_name: str | None = None) -> pd.DataFrame:
    """``results/aop.csv``: test accuracy (``results/classifiers.csv``) and the AUC of one attack per
    target, with AOP, all in percent. The attack is the run's pre-registered headline (``results/headline.json``,
    else the ``mia.headline`` rule) unless ``attack_name`` names another; a student attacked through
    shadow pipelines takes that row (``shadows`` = ``pipeline``, :func:`tckr.ledger.classifier_headlines`)."""
    clf_file, mia_file = run.dir / "results" / "classifiers.csv", run.dir / "results" / "mia.csv"
    if not mia_file.is_file():
        raise FileNotFoundError(f"{mia_file} is missing: run tckr.mia.attack(run) first")
    if not clf_file.is_file():
        print(f"{clf_file} is missing (run 04_run_evaluate for the test accuracies): no AOP table")
        return pd.DataFrame()
    clf = pd.read_csv(clf_file)
    res = pd.read_csv(mia_file)
    if attack_name is None:
        attack_name = ledger.headline(run.dir)
    if not (res["attack"] == attack_name).any():
        raise ValueError(f"{mia_file} has no rows of attack {attack_name!r}: run tckr.mia.attack(run) (it always scores the headline)")
    res = ledger.classifier_headlines(run.dir, attack_name)
    table = res.merge(clf[["model", "test_accuracy"]].rename(columns={"model": "target"}), on="target", how="inner")
    table["aop"] = [100 * metrics.aop(acc / 100, auc) for acc, auc in zip(table["test_accuracy"], table["auc"])]
    table[["auc", "auc_lo", "auc_hi"]] = 100 * table[["auc", "auc_lo", "auc_hi"]]  # percent, as every other column
    table = table[["target", "role", "cardinality", "label_mode", "attack", "shadows", "test_accuracy", "auc", "auc_lo",
                   "auc_hi", "aop"]]
    io.save_csv(run.path("results", "aop.csv"), table)
    return table


# ---------------------------------------------------------------- CLI
