"""Seeded splits of a real dataset (public, D, H, val, pool, a carved test set) and the mislabeled canaries."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.core.registry import class_names, spec


@dataclass
class Splits:
    """Indices into the real train split: public (carved first, with its own seed: the only images a
    pretrained base generator or audit feature extractor may see), D (private training set, the
    members), H (held-out non-members, same size as D), val (early stopping) and pool (the private
    rest, never trained on)."""

    D: np.ndarray
    H: np.ndarray
    val: np.ndarray
    pool: np.ndarray
    public: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    NAMES = ("D", "H", "val", "pool", "public")

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.NAMES}


def _stratified_take(index_by_class: list[np.ndarray], n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """Take ``n`` indices spread over classes in proportion to what is left; return them and the rest."""
    left = np.array([len(ix) for ix in index_by_class], dtype=np.float64)
    if n > left.sum():
        raise ValueError(f"asked for {n} examples but only {int(left.sum())} remain")
    quota = np.floor(left / left.sum() * n).astype(int)
    short = n - quota.sum()
    order = np.argsort(-(left / left.sum() * n - quota), kind="stable")
    quota[order[:short]] += 1
    taken, rest = [], []
    for ix, q in zip(index_by_class, quota):
        taken.append(ix[:q])
        rest.append(ix[q:])
    out = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
    return np.sort(out).astype(np.int64), rest


def public_split(labels: np.ndarray, public_size: int, public_seed: int) -> np.ndarray:
    """The public partition: a seeded, class-stratified subset of ``public_size`` indices that depends
    on nothing but the labels, its size and its seed, so no other split setting can move an image
    between public and private."""
    labels = np.asarray(labels)
    if public_size < 0 or public_size > len(labels):
        raise ValueError(f"data.public_size must lie in [0, {len(labels)}] for this train split, got {public_size}")
    if public_size == 0:
        return np.zeros(0, np.int64)
    rng = np.random.default_rng([int(public_seed), 0x9B1C])
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return _stratified_take(by_class, public_size, rng)[0]


HOLDOUTS = ("split", "test")

# The seed of every carved test split: fixed, so a dataset without an official test split has one test set
# whatever a config says (like an official split), and no split setting can move an image into or out of it.
CARVED_TEST_SEED = 0x7E57


def has_test_split(name: str) -> bool:
    """Whether the dataset's source has an official test split (else :func:`test_split` carves one from train)."""
    return spec(name).test_split is not None


def test_split(labels: np.ndarray, fraction: float) -> np.ndarray:
    """A seeded, class-stratified test set carved from the train split (``fraction`` of it; the original TCKR
    made an 85/15 split for Oxford-IIIT Pet), for datasets whose source has no test split. It depends only on
    the labels and ``fraction`` (seed :data:`CARVED_TEST_SEED`); :func:`make_splits` leaves it out of
    everything else with ``exclude=``."""
    labels = np.asarray(labels)
    if not 0 < fraction < 1:
        raise ValueError(f"data.carved_test_fraction must lie in (0, 1), got {fraction}")
    n = int(round(fraction * len(labels)))
    rng = np.random.default_rng([CARVED_TEST_SEED, 0x9B1C])
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return _stratified_take(by_class, n, rng)[0]


def make_splits(labels: np.ndarray, train_size: int, val_size: int, seed: int, *, public_size: int = 0,
                public_seed: int = 0, exclude: np.ndarray | None = None, holdout: str = "split") -> Splits:
    """Seeded, class-stratified public / D / H / val / pool indices; |H| = |D|. The public partition
    (:func:`public_split`) is carved first; D, H and val are drawn from the rest with ``seed``, and
    pool is what remains of it. ``train_size=0`` gives D the largest size that leaves room for H and val.
    ``exclude`` (a carved test set, :func:`test_split`) is left out of every split. ``holdout="test"``
    draws no H from the train split (the non-members come from the test split: the caller sets H), so
    ``train_size=0`` gives D everything that val leaves."""
    labels = np.asarray(labels)
    if holdout not in HOLDOUTS:
        raise ValueError(f"data.holdout: {holdout!r} is not accepted; use one of {', '.join(HOLDOUTS)}")
    keep = np.setdiff1d(np.arange(len(labels)), exclude) if exclude is not None and len(exclude) else np.arange(len(labels))
    public = keep[public_split(labels[keep], public_size, public_seed)]
    private = np.setdiff1d(keep, public)
    n = len(private)
    n_h = 1 if holdout == "split" else 0
    if train_size == 0:
        train_size = (n - val_size) // (1 + n_h)
    if (1 + n_h) * train_size + val_size > n:
        raise ValueError(
            f"|D|={train_size}, |H|={n_h * train_size} and val={val_size} need {(1 + n_h) * train_size + val_size} examples; "
            f"the train split has {n} outside the public partition ({len(public)})"
            + (f" and the carved test set ({len(labels) - len(keep)})" if len(keep) < len(labels) else "")
        )
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(private[labels[private] == c]) for c in np.unique(labels)]
    D, by_class = _stratified_take(by_class, train_size, rng)
    H, by_class = _stratified_take(by_class, n_h * train_size, rng)
    val, by_class = _stratified_take(by_class, val_size, rng)
    pool = np.sort(np.concatenate(by_class)).astype(np.int64) if by_class else np.zeros(0, np.int64)
    return Splits(D, H, val, pool, public)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Seeded class-stratified subset of ``size`` indices (all of them when ``size`` is 0 or too large)."""
    labels = np.asarray(labels)
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return _stratified_take(by_class, size, rng)[0]


CANARY_STREAM = 0xCA7A  # seed tag of the canary draw, so it never shares a stream with the membership mask


@dataclass
class Canaries:
    """Mislabeled canaries: ``index`` (positions in the real train split), each one's true ``label`` and the
    ``canary_label`` it carries everywhere in the run (all int64, sorted by index; empty = none)."""

    index: np.ndarray
    label: np.ndarray
    canary_label: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def as_array(self) -> np.ndarray:
        """int64 [n, 3]: index, label, canary label."""
        return np.stack([self.index, self.label, self.canary_label], axis=1).astype(np.int64).reshape(-1, 3)

    def relabel(self, index: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``labels`` of the train-split images ``index`` with every canary's label replaced by its canary label."""
        labels = np.array(labels, dtype=np.int64, copy=True)
        if len(self):
            where = np.searchsorted(self.index, index)
            hit = (where < len(self)) & (self.index[np.minimum(where, len(self) - 1)] == index)
            labels[hit] = self.canary_label[where[hit]]
        return labels


def choose_canaries(labels: np.ndarray, member: np.ndarray, n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``n`` canaries among the examples ``labels`` (the MIA pool P) and each one's canary label, a
    seeded class other than its own. Class-balanced (every class of P gets ``n // C`` or one more) and half of them
    members (``member``; each class as even as its count allows), all seeded. Returns (sorted positions, labels)."""
    labels, member = np.asarray(labels, dtype=np.int64), np.asarray(member, dtype=bool)
    if not 0 <= n < len(labels):
        raise ValueError(f"mia.canaries must lie in [0, {len(labels)}) for a pool of {len(labels)} examples, got {n}")
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if num_classes < 2:
        raise ValueError("mislabeled canaries need at least two classes")
    rng = np.random.default_rng([int(seed), CANARY_STREAM])
    classes = np.unique(labels)
    per_class = np.full(len(classes), n // len(classes))
    per_class[rng.choice(len(classes), n % len(classes), replace=False)] += 1
    members = per_class // 2
    odd = np.flatnonzero(per_class % 2)
    extra = n // 2 + (int(rng.integers(2)) if n % 2 else 0) - int(members.sum())
    members[rng.choice(odd, extra, replace=False)] += 1
    pos = []
    for c, q, m in zip(classes, per_class, members):
        for inside, take in ((True, m), (False, q - m)):
            cand = np.flatnonzero((labels == c) & (member == inside))
            if take > len(cand):
                raise ValueError(f"mia.canaries = {n} asks for {take} canaries of class {c} among the "
                                 f"{'members' if inside else 'non-members'}, which have {len(cand)}")
            pos.append(rng.choice(cand, take, replace=False))
    pos = np.sort(np.concatenate(pos)).astype(np.int64)
    shift = rng.integers(1, num_classes, size=len(pos))
    return pos, (labels[pos] + shift) % num_classes



def summarise_splits(run) -> "pd.DataFrame":
    """Class counts of a run's D / H / val / pool / public / test splits; written to ``results/splits.csv``.
    Labels come from the run's own (resized) loads, so sources with mixed image sizes work; the ``source`` of
    each split (which real split its indices point into) is in ``splits/sources.json``."""
    names = class_names(run.dataset)
    counts = {k: np.bincount(run.labels(k), minlength=len(names)) for k in (*Splits.NAMES, "test")}
    frame = pd.DataFrame({"class_id": np.arange(len(names)), "class_name": names, **counts})
    io.save_csv(run.path("results", "splits.csv"), frame)
    return frame
