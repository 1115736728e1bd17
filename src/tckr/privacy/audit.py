"""Memorisation audit of the synthetic sets: do synthetic images sit closer to members (D) than to
non-members (H), and are some of them near-copies of members?

Null hypothesis. D and H are a class-stratified random split of P = D ∪ H, and the space the distances are
measured in never saw either of them; without memorisation the synthetic images do not depend on which
examples of P are members, so the true split is one more draw of the re-splits of P that swap D/H labels
within each class. (With ``data.holdout: test`` H is the test split, and the null also takes the train and
test splits as exchangeable.)

Spaces: ``feature``, the penultimate features (L2-normalised, Euclidean distance) of a classifier
trained on the run's **public partition only** (``run.real("public")``; the teacher's architecture and
recipe on ``audit.feature_train_size`` class-stratified public images, validated on other public
images), never the D-trained teacher, whose features are shaped by D and would place D closer by
construction; ``pixel``, RGB in [0, 1] with root-mean-square distance. The audit needs
``data.public_size > 0``.

Numbers per (source, multiple, space):

- the permutation test of :mod:`tckr.privacy.audit_permutation`, the D/H split as the unit of randomness (the
  synthetic images are fixed; a paired test over them would read one split's structure as evidence):
  ``frac_closer_to_member`` and ``median_diff_H_minus_D`` (``d_H - d_D``), each with its one-sided p-value
  towards D ``p_perm_frac_closer`` / ``p_perm_median_diff`` over ``audit.n_permutations`` seeded
  class-stratified re-splits (at least ``1 / (1 + n_permutations)``) and the re-splits' 95% range
  ``null_lo_*`` / ``null_hi_*``; the same re-splits for every row;
- near-copies, which a median shift cannot see when they are rare, towards D and towards H side by side:
  ``near_copies_dup_D`` counts images whose ``d_D`` is below ``dup_threshold_D``, the 1% quantile of the
  nearest-member distances of held-out real images (one seeded half of the ``pool`` split, ``val`` when the
  pool is empty) in the same space, so about 1% of fresh real images fall below it; ``near_copies_dup_H``
  the same with ``d_H`` and ``dup_threshold_H`` (their nearest non-member distances); ``near_copies_ratio_D``
  counts ``d_D / d_H`` below ``audit.ratio_tau``, ``near_copies_ratio_H`` ``d_H / d_D``; ``frac_*`` are the
  same as fractions of ``n``. Without memorisation the D and H counts differ only by chance; a count
  towards D alone is no finding.

Control: the other half of the held-out real images (source ``control_pool`` or ``control_val``) goes
through the same numbers, the rates under no memorisation to read the synthetic rows against. Each
half, and each synthetic set, is capped at ``audit.max_synthetic`` seeded draws.

Files in the run folder:

- ``audit/feature_extractor.safetensors`` (+ sidecar JSON with ``training_n`` and ``training_sha256`` of
  its training indices, ``_history.csv``) and ``audit/training_index.npy`` / ``training_data.json``
  (:mod:`tckr.provenance`: the train-split indices it was trained on, written before it trains);
- ``results/audit.csv``, one row per audited synthetic image: ``multiple, synthetic_index, label`` and
  for ``<space>`` in feature, pixel: ``<space>_dist_D, <space>_dist_H`` (nearest distances),
  ``<space>_nn_D, <space>_nn_H`` (positions in ``run.real("D")`` / ``run.real("H")``),
  ``<space>_closer_to_member``;
- ``results/audit_control.csv``: the same columns for the control images (``split``, ``index`` = position
  in that split, ``label``);
- ``results/audit_summary.csv`` (and ``.json``), one row per (source, multiple, space): ``source``
  (``synthetic`` or ``control_<split>``), ``multiple`` (empty for the control), ``space``, ``n``,
  ``median_dist_D``, ``median_dist_H``, the permutation test's columns (above, with ``n_permutations`` and
  ``k_nearest``), ``ratio_tau`` and for ``<side>`` in D, H: ``dup_threshold_<side>``,
  ``near_copies_dup_<side>``, ``near_copies_ratio_<side>``, ``frac_near_copies_dup_<side>``,
  ``frac_near_copies_ratio_<side>``.

Figures (``tckr.plots.plot_audit``): ``figures/audit_distances`` and ``figures/audit_pairs``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from tckr.classification import batches, checkpoints, classifiers, inference, train
from tckr.core import io
from tckr.datasets import provenance, splitting
from tckr.privacy import audit_permutation
from tckr.runfolder import synthetic

SPACES = ("feature", "pixel")
DUP_QUANTILE = 0.01  # real-to-real duplicate threshold: this quantile of held-out real images' nearest-member (non-member) distances


# ---------------------------------------------------------------- distances and near-copies (numpy)
def nearest(queries: np.ndarray, refs: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean nearest neighbour of every row of ``queries`` among ``refs``: (distance, index)."""
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    r = np.asarray(refs, dtype=np.float64).reshape(len(refs), -1)
    if q.shape[1] != r.shape[1] or len(r) == 0:
        raise ValueError(f"queries {q.shape} and refs {r.shape} need the same width and at least one ref")
    r2 = (r ** 2).sum(1)
    dist, idx = np.empty(len(q)), np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qb = q[s:s + chunk]
        d2 = (qb ** 2).sum(1)[:, None] + r2[None, :] - 2.0 * qb @ r.T
        j = d2.argmin(1)
        idx[s:s + chunk] = j
        dist[s:s + chunk] = np.sqrt(np.maximum(d2[np.arange(len(qb)), j], 0.0))
    return dist, idx


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×3 -> float32 N×(H·W·3) scaled so Euclidean distance is the RMS pixel difference."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    return x / np.sqrt(x.shape[1])


def duplicate_threshold(real_dist: np.ndarray, quantile: float = DUP_QUANTILE) -> float:
    """The real-to-real duplicate threshold: a low quantile of held-out real images' nearest-member (or
    nearest-non-member) distances."""
    d = np.asarray(real_dist, float)
    if d.size == 0:
        raise ValueError("the duplicate threshold needs at least one held-out real image")
    return float(np.quantile(d, quantile))


def near_copies(dist_D: np.ndarray, dist_H: np.ndarray, dup_threshold_D: float, dup_threshold_H: float,
                ratio_tau: float) -> dict[str, float]:
    """Near-copies towards D and towards H side by side, with one rule applied both ways: counts (and
    fractions) of images whose nearest member is closer than ``dup_threshold_D`` (nearest non-member closer
    than ``dup_threshold_H``), and whose ``dist_D / dist_H`` (``dist_H / dist_D``) is below ``ratio_tau``."""
    dist_D, dist_H = np.asarray(dist_D, float), np.asarray(dist_H, float)
    n = max(len(dist_D), 1)
    out: dict[str, float] = {"ratio_tau": float(ratio_tau)}
    for side, near, far, thr in (("D", dist_D, dist_H, dup_threshold_D), ("H", dist_H, dist_D, dup_threshold_H)):
        dup = int((near < thr).sum())
        ratio = int((near < ratio_tau * far).sum())  # near / far < tau without dividing by a zero distance
        out |= {f"dup_threshold_{side}": float(thr), f"near_copies_dup_{side}": dup, f"near_copies_ratio_{side}": ratio,
                f"frac_near_copies_dup_{side}": dup / n, f"frac_near_copies_ratio_{side}": ratio / n}
    return out


def _audit_set(queries: dict[str, np.ndarray], refs: dict[str, tuple[np.ndarray, np.ndarray]], member: np.ndarray,
               resplits: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """One query set against P = D ∪ H (``refs[space]`` = (D, H) rows, ``member`` True on D's), one k-nearest
    search per space: the per-image columns of ``audit.csv`` under the true split (``nn`` positions in D and
    in H) and, per space, the permutation test over ``resplits``."""
    cols, tests = {}, {}
    n_D = int(member.sum())
    for space in SPACES:
        q = queries[space]
        dist, idx = audit_permutation.k_nearest(q, refs[space], audit_permutation.K_NEAREST)
        d_D, d_H, nn_D, nn_H = audit_permutation.side_nearest(dist, idx, member, q, refs[space])
        cols |= {f"{space}_dist_D": d_D, f"{space}_nn_D": nn_D, f"{space}_dist_H": d_H, f"{space}_nn_H": nn_H - n_D,
                 f"{space}_closer_to_member": d_D < d_H}
        tests[space] = audit_permutation.permutation_test(dist, idx, member, resplits, q, refs[space])
    return cols, tests


# ---------------------------------------------------------------- the feature space: a public-data classifier
def features(model, images: np.ndarray, cfg) -> np.ndarray:
    """A classifier's penultimate features, L2-normalised."""
    f = inference.embed(model, images, cfg).astype(np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _seed(run, tag: int) -> int:
    return int(np.random.SeedSequence([run.seed_for(run.cfg.mia.seed), 31337, tag]).generate_state(1)[0])


def feature_split(run) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``run.real("public")`` of the feature extractor's training images (a seeded
    class-stratified ``audit.feature_train_size``, 0 = all) and of its validation images (a seeded
    stratified ``data.val_size``, at most a fifth of the public partition, disjoint from training)."""
    if run.cfg.data.public_size <= 0 or len(run.splits().public) == 0:
        raise ValueError("the memorisation audit needs a public partition to train its feature extractor on: set "
                         "data.public_size > 0 (images carved from the train split, disjoint from D, H and val)")
    if run.cfg.audit.feature_train_size < 0:
        raise ValueError(f"audit.feature_train_size must be >= 0 (0 = the whole public partition), got {run.cfg.audit.feature_train_size}")
    labels = run.real("public").labels
    if len(labels) < 10:
        raise ValueError(f"the public partition has {len(labels)} images; the audit's feature extractor needs at least 10 (data.public_size)")
    val_pos = splitting.stratified_subset(labels, max(1, min(run.cfg.data.val_size or 500, len(labels) // 5)), _seed(run, 1))
    rest = np.setdiff1d(np.arange(len(labels)), val_pos)
    train_pos = rest[splitting.stratified_subset(labels[rest], run.cfg.audit.feature_train_size, _seed(run, 2))]
    return np.sort(train_pos), np.sort(val_pos)


def feature_extractor_path(run):
    return run.path("audit", "feature_extractor.safetensors")


def feature_extractor(run, *, progress: bool = True):
    """The audit's feature extractor: the teacher's architecture and recipe trained on public images only
    (``audit/feature_extractor.safetensors``), trained once per run and reloaded afterwards. Its
    train-split indices are recorded (:mod:`tckr.provenance`) before it trains and checked, on every
    load, against the record's hash and for overlap with D, H, val and test."""
    cfg = run.cfg
    arch = cfg.classifier.teacher_arch
    path = feature_extractor_path(run)
    folder = path.parent
    if not path.is_file():
        train_pos, val_pos = feature_split(run)
        public, index = run.real("public"), run.splits().public
        provenance.write_training_data(folder, dataset=run.dataset, split="train", index=index[train_pos],
                                       source="tckr.privacy.audit.feature_extractor: class-stratified subset of the run's public partition")
        model, _ = train.fit(cfg, arch, public.images[train_pos], public.labels[train_pos], public.images[val_pos],
                             public.labels[val_pos], seed=_seed(run, 3), history_path=folder / "feature_extractor_history.csv",
                             progress=progress, desc="audit features", num_classes=len(run.class_names),
                             checkpoint=checkpoints.checkpoint_file(path))
        train_idx, val_idx = np.sort(index[train_pos]), np.sort(index[val_pos])
        classifiers.save(model, path, arch=arch, class_names=run.class_names, normalisation=batches.normalisation(cfg),
                         config_hash=cfg.hash(), extra={"role": "audit_features", "name": "audit_feature_extractor",
                                                        "training_split": "public", "training_n": int(len(train_idx)),
                                                        "training_sha256": provenance.index_sha256(train_idx),
                                                        "validation_n": int(len(val_idx)),
                                                        "validation_sha256": provenance.index_sha256(val_idx), **model.info})
        checkpoints.checkpoint_file(path).unlink(missing_ok=True)
    found = provenance.read_training_data(folder)
    if found is None:
        raise provenance.DataLeakError(f"{path} has no record of its training images ({folder / provenance.RECORD_FILE}); "
                                       f"delete {path} to retrain it on the public partition")
    rec, index = found
    extra = classifiers.read_meta(path).get("extra", {})
    if extra.get("training_sha256") != rec["sha256"] or extra.get("training_n") != rec["n"]:
        raise provenance.DataLeakError(f"{path} records other training indices than {folder / provenance.RECORD_FILE}; delete both to retrain")
    shared = provenance.overlap(run, rec, index)
    if any(shared.values()):
        what = ", ".join(f"{v} of {k}" for k, v in shared.items() if v)
        raise provenance.DataLeakError(f"the audit feature extractor {path} was trained on private images ({what}); delete it to retrain")
    return classifiers.load_trained(path, arch=arch, num_classes=len(run.class_names))


# ---------------------------------------------------------------- the audit of a run
def heldout(run, limit: int) -> tuple[str, np.ndarray, np.ndarray]:
    """The held-out real split (``pool``, else ``val``) and two disjoint seeded halves of it (positions):
    one for the duplicate threshold, one as the control; each capped at ``limit`` (0 = no cap)."""
    s = run.splits()
    split = "pool" if len(s.pool) else "val"
    n = len(getattr(s, split))
    if n < 2:
        raise ValueError(f"the audit needs held-out real images (pool or val split) for its threshold and control; {split} has {n}")
    perm = np.random.default_rng(_seed(run, 4)).permutation(n)
    half = n // 2
    thr, ctrl = perm[:half], perm[half:2 * half]
    if limit > 0:
        thr, ctrl = thr[:limit], ctrl[:limit]
    return split, np.sort(thr), np.sort(ctrl)


def audit(run, multiples: Iterable[float] | None = None, max_synthetic: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Audit every available synthetic set (or ``multiples``) against D and H, with the held-out control;
    write the result files and return the summary. An empty summary (and no files) when the run has no
    synthetic set yet."""
    cfg = run.cfg
    mults = list(multiples) if multiples is not None else list(synthetic.available_multiples(run))
    if not mults:
        print("no synthetic set in this run yet (run notebooks/03_generate.ipynb): nothing to audit")
        return pd.DataFrame()
    if cfg.audit.ratio_tau <= 0:
        raise ValueError(f"audit.ratio_tau must be > 0 (near-copy when d_D / d_H, or d_H / d_D, is below it), got {cfg.audit.ratio_tau}")
    limit = cfg.audit.max_synthetic if max_synthetic is None else int(max_synthetic)
    model = feature_extractor(run, progress=progress)

    def embed(images: np.ndarray) -> dict[str, np.ndarray]:
        return {"feature": features(model, images, cfg), "pixel": pixels(images)}

    D, H = run.real("D"), run.real("H")
    e_D, e_H = embed(D.images), embed(H.images)
    refs = {space: (e_D[space], e_H[space]) for space in SPACES}
    member = np.r_[np.ones(len(D.labels), bool), np.zeros(len(H.labels), bool)]
    resplits = audit_permutation.stratified_resplits(np.r_[D.labels, H.labels], member, cfg.audit.n_permutations, _seed(run, 5))
    split, thr_pos, ctrl_pos = heldout(run, limit)
    held = run.real(split)
    e_thr = embed(held.images[thr_pos])
    dup = {(space, side): duplicate_threshold(nearest(e_thr[space], refs[space][i])[0])
           for space in SPACES for i, side in enumerate("DH")}
    tau = cfg.audit.ratio_tau

    def summarise(source: str, mult: float, cols: dict[str, np.ndarray], tests: dict[str, dict[str, float]]) -> list[dict]:
        return [{"source": source, "multiple": mult, "space": space, **tests[space],
                 **near_copies(cols[f"{space}_dist_D"], cols[f"{space}_dist_H"], dup[space, "D"], dup[space, "H"], tau)}
                for space in SPACES]

    rows, summary = [], []
    rng = np.random.default_rng(run.seed_for(cfg.mia.seed))
    for mult in mults:
        synth = synthetic.load_synthetic(run, mult)
        n = len(synth.labels)
        pick = np.sort(rng.choice(n, limit, replace=False)) if 0 < limit < n else np.arange(n)
        cols, tests = _audit_set(embed(np.asarray(synth.images[pick])), refs, member, resplits)
        rows.append(pd.DataFrame({"multiple": float(mult), "synthetic_index": pick, "label": np.asarray(synth.labels)[pick], **cols}))
        summary += summarise("synthetic", float(mult), cols, tests)
    ctrl, ctrl_tests = _audit_set(embed(held.images[ctrl_pos]), refs, member, resplits)
    summary += summarise(f"control_{split}", float("nan"), ctrl, ctrl_tests)
    table = pd.concat(rows, ignore_index=True)
    summ = pd.DataFrame(summary)
    io.save_csv(run.path("results", "audit.csv"), table)
    io.save_csv(run.path("results", "audit_control.csv"),
                pd.DataFrame({"split": split, "index": ctrl_pos, "label": held.labels[ctrl_pos], **ctrl}))
    io.save_csv(run.path("results", "audit_summary.csv"), summ)
    io.write_json(run.path("results", "audit_summary.json"), summ.to_dict(orient="records"))
    return summ
