"""Run folders: ``runs/<run_id>/`` holds the resolved config, environment, seeds, split indices and
every phase's outputs. All notebooks of a study open the same folder with :func:`open_run`."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tckr.core import io, paths, registry
from tckr.core.config import LATER_KEYS, Config, ConfigError, config_from_dict, load_config, read_sections
from tckr.core.progress import note
from tckr.datasets import provenance, real, splitting
from tckr.datasets.provenance import index_sha256
from tckr.runfolder import environment

CONFIG_FILE = "config.yaml"
REAL_SPLITS = ("D", "H", "val", "pool", "public", "test")


@dataclass
class Run:
    """An open run folder and its resolved config."""

    dir: Path
    cfg: Config
    seed: int = 0
    _splits: splitting.Splits | None = field(default=None, repr=False)
    _canaries: splitting.Canaries | None = field(default=None, repr=False)

    def path(self, *parts: str) -> Path:
        """A path inside the run folder; its parent folders are created."""
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def dataset(self) -> str:
        return self.cfg.study.dataset

    @property
    def class_names(self) -> list[str]:
        return registry.class_names(self.dataset)

    def splits(self) -> splitting.Splits:
        """D / H / val / pool indices into the real train split, written on first use."""
        if self._splits is None:
            self._splits = ensure_splits(self)
        return self._splits

    def canaries(self) -> splitting.Canaries:
        """The run's mislabeled canaries (``mia.canaries`` of P, ``splits/canaries.csv``), written on first use."""
        if self._canaries is None:
            self._canaries = ensure_canaries(self)
        return self._canaries

    def _relabel(self, split: str, labels: np.ndarray) -> np.ndarray:
        """Canaries carry their canary label: the one place the flip is applied (via :meth:`real` and :meth:`labels`),
        so captions, prompts, the teacher, the shadows and the pipelines all see it. Canaries are train-split images."""
        if split == "test" or self.source(split) != "train":
            return labels
        canaries = self.canaries()
        return canaries.relabel(self.index(split), labels) if len(canaries) else labels

    def source(self, split: str) -> str:
        """The real split (``"train"`` or ``"test"``) that the indices of ``split`` point into: the test set of a
        dataset without an official test split is carved from train (:func:`tckr.data.test_split`), and with
        ``data.holdout: test`` the non-members H are the test set."""
        if split not in REAL_SPLITS:
            raise ValueError(f"unknown real split {split!r}; accepted: {', '.join(REAL_SPLITS)}")
        if split == "test" or (split == "H" and self.cfg.data.holdout == "test"):
            return "test" if splitting.has_test_split(self.dataset) else "train"
        return "train"

    def carved_test(self) -> np.ndarray | None:
        """The whole test set carved from the train split (indices into train), or None with an official test split."""
        if splitting.has_test_split(self.dataset):
            return None
        labels = _load_real_cached(self.dataset, "train", self.cfg.data.image_size).labels
        return splitting.test_split(labels, self.cfg.data.carved_test_fraction)

    def test_index(self) -> np.ndarray:
        """Indices of the test set in :meth:`source` ``("test")`` (``data.test_size`` of them, 0 = all)."""
        f = self.dir / "splits" / "test.npy"
        if not f.is_file():
            carved = self.carved_test()
            labels = _load_real_cached(self.dataset, "train" if carved is not None else "test", self.cfg.data.image_size).labels
            if carved is None:
                index = splitting.stratified_subset(labels, self.cfg.data.test_size, self.cfg.data.split_seed)
            else:
                index = carved[splitting.stratified_subset(labels[carved], self.cfg.data.test_size, self.cfg.data.split_seed)]
            io.save_array(f, np.sort(index).astype(np.int64))
        return io.load_array(f)

    def index(self, split: str) -> np.ndarray:
        """Indices of one of :data:`REAL_SPLITS` into its :meth:`source`."""
        return self.test_index() if split == "test" else getattr(self.splits(), split)

    def labels(self, split: str) -> np.ndarray:
        """Labels of :meth:`real` ``(split)`` without decoding its images (canaries carry their canary label)."""
        labels = _load_real_cached(self.dataset, self.source(split), self.cfg.data.image_size).labels[self.index(split)]
        return self._relabel(split, labels)

    def real(self, split: str) -> real.RealDataset:
        """Real images of one of ``D``, ``H``, ``val``, ``pool``, ``public`` or ``test`` (from :meth:`source`),
        resized to ``data.image_size``; a mislabeled canary (:meth:`canaries`) carries its canary label."""
        ds = _load_real_cached(self.dataset, self.source(split), self.cfg.data.image_size)
        out = ds.subset(self.index(split))
        out.labels = self._relabel(split, out.labels)
        out.split = split
        return out

    def stats(self) -> dict[str, list[float]]:
        """Channel mean/std of the dataset's train split at the run's image size (cached)."""
        return real.channel_stats(self.dataset, self.cfg.data.image_size)

    def portable(self, path: str | Path) -> str:
        """``path`` as stored in the run's records: relative to the run folder when inside it, else relative to
        the repository when inside it (committed models), else absolute; a copied or moved run stays valid."""
        return portable_path(self.dir, path)

    def seed_for(self, base: int) -> int:
        """A phase seed (``base`` from the config) shifted by the run's seed, so repeated seeds differ."""
        return int(base) + 1000 * int(self.seed)


def portable_path(run_dir: str | Path, path: str | Path) -> str:
    """See :meth:`Run.portable`."""
    p = Path(path).absolute()
    for root in (Path(run_dir).absolute(), paths.ROOT):
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(p)


@lru_cache(maxsize=4)
def _load_real_cached(name: str, split: str, size: int) -> real.RealDataset:
    return real.load_real(name, split, size=size)


def new_run_id(cfg: Config) -> str:
    return f"{cfg.study.name}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def default_run_dir(cfg: Config) -> Path:
    """``<runs root>/<name>-<time>``; the runs root is ``paths.RUNS`` (``$TCKR_RUNS``). ``study.name`` is checked
    to be a plain folder name when the config loads; this makes sure again that the folder lands under the root."""
    root = paths.RUNS.resolve()
    folder = (root / new_run_id(cfg)).resolve()
    if folder.parent != root:
        raise ConfigError(f"study.name {cfg.study.name!r} would put the run folder at {folder}, outside the runs root {root}")
    return folder


def read_saved_config(path: str | Path) -> Config:
    """A run folder's ``config.yaml``: the complete resolved settings it was made with. An unreadable,
    incomplete or invalid file is an error naming it (never the defaults)."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        raise ConfigError(f"{path}: the run's saved config is not valid YAML ({type(e).__name__}: {detail}); "
                          "restore it from a copy of the run, or start a new run folder") from None
    sections = [f.name for f in dataclasses.fields(Config) if (f.name, None) not in LATER_KEYS]
    missing = [k for k in sections if not isinstance(tree, dict) or k not in tree]
    if missing:
        raise ConfigError(f"{path}: the run's saved config is incomplete or corrupt (no section(s) {', '.join(missing)}); "
                          "it holds every resolved setting when a run starts; restore it, or start a new run folder")
    try:
        return config_from_dict(tree, registry=False)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


LATEST = "latest"


class RunNotFoundError(FileNotFoundError, ValueError):
    """No run folder where one was asked for (a missing folder, or ``run_dir="latest"`` with no run of the config yet)."""


def _run_created(folder: Path) -> tuple[str, int]:
    env = folder / "environment.json"
    created = ""
    if env.is_file():
        try:
            created = str(io.read_json(env).get("created") or "")
        except (io.CorruptFileError, AttributeError):
            created = ""
    return created, (folder / CONFIG_FILE).stat().st_mtime_ns


def latest_run(name: str | None = None, root: str | Path | None = None) -> Path:
    """The newest run folder under ``root`` (default ``paths.RUNS``, i.e. ``$TCKR_RUNS`` or ``runs/``) whose saved
    config has ``study.name == name`` (any name when None), by its creation time (``environment.json``, then the
    modification time of ``config.yaml``). Raises :class:`RunNotFoundError` naming the folder searched."""
    root = Path(root) if root is not None else paths.RUNS
    found = []
    for folder in (root.iterdir() if root.is_dir() else ()):
        f = folder / CONFIG_FILE
        if not f.is_file():
            continue
        if name is not None:
            try:
                tree = yaml.safe_load(f.read_text())
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            if not isinstance(tree, dict) or (tree.get("study") or {}).get("name") != name:
                continue
        found.append((_run_created(folder), folder))
    if not found:
        which = f"of study.name {name!r} " if name is not None else ""
        raise RunNotFoundError(f"run_dir='latest': no run folder {which}under {root}; make one first "
                               "(notebooks/00_data.ipynb, or tckr study CONFIG) or give a run folder")
    (created, mtime_ns), folder = max(found)
    note(f"run_dir='latest': {folder} (made {_age(created, mtime_ns)} ago; the newest of {len(found)} "
         f"run(s) {f'of study.name {name!r} ' if name is not None else ''}under {root})")
    return folder


def _age(created: str, mtime_ns: int) -> str:
    """How long ago a run was made, from ``environment.json``'s ``created`` (else ``config.yaml``'s time), e.g. ``3 h 5 min``."""
    try:
        then = _dt.datetime.fromisoformat(created).timestamp()
    except ValueError:
        then = mtime_ns / 1e9
    s = max(0, int(_dt.datetime.now().timestamp() - then))
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min" if minutes else f"{s} s"


def find_run(run_dir: str | Path, config: str | Path | Config | None = None) -> Path:
    """The folder ``run_dir`` names, without opening it: ``"latest"`` is :func:`latest_run` of the config's
    ``study.name`` (any run when ``config`` is None), anything else a path (relative to the repository)."""
    if run_dir is None:
        raise RunNotFoundError("run_dir: give a run folder, e.g. runs/mini-20261129-190000, or 'latest'")
    if str(run_dir) != LATEST:
        return paths.resolve(run_dir)
    if config is None or isinstance(config, Config):
        return latest_run(config.study.name if config is not None else None)
    tree, _ = read_sections(paths.resolve(config) if not Path(config).is_file() else Path(config))  # its extends: chain merged
    name = (tree.get("study") or {}).get("name", Config().study.name)
    return latest_run(name)


def open_run(config: str | Path | Config | None = None, run_dir: str | Path | None = None,
             overrides: dict[str, Any] | None = None, seed: int | None = None) -> Run:
    """Open (or create) a run folder.

    ``config`` is a YAML path or a :class:`Config`; None uses the run folder's own saved config. ``run_dir``
    defaults to a new ``runs/<name>-<time>``; ``"latest"`` is the newest existing run of the config's
    ``study.name`` (of any config when ``config`` is None; :func:`latest_run`). An existing folder keeps its saved
    config: a different config (or ``overrides`` that change it) is an error that lists the differing keys.
    ``seed`` defaults to the folder's recorded seed, else the first of ``study.seeds``.
    """
    cfg = None
    if isinstance(config, Config):
        cfg = config_from_dict(config.to_dict(), overrides) if overrides else config
    elif config is not None:
        cfg = load_config(config, overrides)
    if run_dir is not None and str(run_dir) == LATEST:
        run_dir = latest_run(cfg.study.name if cfg is not None else None)
    run_path = paths.resolve(run_dir) if run_dir else None
    saved = run_path / CONFIG_FILE if run_path else None
    if cfg is None and overrides and saved is not None and saved.is_file():
        cfg = config_from_dict(read_saved_config(saved).to_dict(), overrides, registry=False)
    if saved is not None and saved.is_file():
        stored = read_saved_config(saved)
        if cfg is not None and cfg.hash() != stored.hash():
            diff = _diff(stored.to_dict(), cfg.to_dict())
            raise ConfigError(
                f"run folder {run_path} was made with other settings ({'; '.join(diff[:8])}); "
                "open it without a config, or use a new run folder"
            )
        cfg = stored
    if cfg is None and run_path is not None:
        what = "no run folder at" if not run_path.exists() else f"no {CONFIG_FILE} in"
        raise RunNotFoundError(f"{what} {run_path} and no config given; give a config (such as configs/mini.yaml) "
                               "to start a run there, or an existing run folder")
    if cfg is None:
        raise ValueError(f"no config given and no run folder; pass a config path such as configs/mini.yaml")
    if run_path is None:
        run_path = default_run_dir(cfg)
    if not (run_path / CONFIG_FILE).is_file():  # a new run fails here, before its folder exists, not in a later phase
        environment.check_device(cfg)
        real.check_available(cfg.study.dataset)
    run_path.mkdir(parents=True, exist_ok=True)
    seeds_file = run_path / "seeds.json"
    seeds = io.read_json(seeds_file) if seeds_file.is_file() else {}
    if seed is None:
        seed = seeds.get("run_seed", cfg.study.seeds[0])
    seed = int(seed)
    run = Run(dir=run_path, cfg=cfg, seed=seed)
    if not (run_path / CONFIG_FILE).is_file():
        io.write_text(run_path / CONFIG_FILE, cfg.to_yaml())
    if not (run_path / "environment.json").is_file():
        io.write_json(run_path / "environment.json", {**environment.environment(), "base_generator": provenance.check_disjoint(run)})
    if seeds.get("run_seed") not in (None, seed):
        raise ConfigError(f"run folder {run_path} was made with seed {seeds['run_seed']}, not {seed}")
    want = {"run_seed": seed, "split_seed": cfg.data.split_seed, "train": run.seed_for(cfg.train.seed),
            "lora": run.seed_for(cfg.lora.seed), "synthesis": run.seed_for(cfg.synthesis.seed), "mia": run.seed_for(cfg.mia.seed)}
    if seeds != want:  # opening an existing run only reads it
        io.write_json(seeds_file, want)
    return run


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


SPLITS_RECORD = "checksums.json"


def ensure_splits(run: Run) -> splitting.Splits:
    """The run's split indices (``splits/<name>.npy``), written on first use. Files already on disk
    must equal what the config gives (a missing one is added, a different one is an error). The sha256 of
    each index is recorded in ``splits/checksums.json`` and checked on every read, so an altered split is
    an error naming its file instead of a silently different D or H."""
    folder = run.dir / "splits"
    files = {k: folder / f"{k}.npy" for k in splitting.Splits.NAMES}
    record = folder / SPLITS_RECORD
    if not all(f.is_file() for f in files.values()):
        labels = _load_real_cached(run.dataset, "train", run.cfg.data.image_size).labels
        d = run.cfg.data
        s = splitting.make_splits(labels, d.train_size, d.val_size, d.split_seed, public_size=d.public_size, public_seed=d.public_seed,
                             exclude=run.carved_test(), holdout=d.holdout)
        if d.holdout == "test":
            s.H = run.test_index()  # the non-members: the test set itself, as in the original TCKR
        for k, f in files.items():
            if not f.is_file():
                io.save_array(f, getattr(s, k))
            elif not np.array_equal(io.load_array(f), getattr(s, k)):
                raise ConfigError(f"{f} differs from the {k} split that this run's config gives; use a new run folder")
    sources = folder / "sources.json"
    if not sources.is_file():
        io.write_json(sources, {k: run.source(k) for k in REAL_SPLITS})
    if not record.is_file():  # first read (sub-runs such as shadow pipelines write their own splits before it)
        io.write_json(record, {k: index_sha256(io.load_array(f)) for k, f in files.items()})
    want = io.read_json(record)
    out = {}
    for k, f in files.items():
        out[k] = io.load_array(f)
        if k in want and index_sha256(out[k]) != want[k]:
            raise io.CorruptFileError(f"{f}: differs from the {k} split recorded in {record.name} when the run started; "
                                      "it was altered or damaged: restore it or use a new run folder")
    return splitting.Splits(**out)


CANARIES_FILE = "canaries.csv"
CANARY_COLUMNS = ("index", "label", "canary_label")


def ensure_canaries(run: Run) -> splitting.Canaries:
    """The run's mislabeled canaries (``splits/canaries.csv``: train-split ``index``, true ``label``,
    ``canary_label``), drawn on first use from P = D ∪ H with the run's ``mia.seed`` (:func:`tckr.data.choose_canaries`).
    With ``mia.canaries`` 0 nothing is written. Like the splits, the file's sha256 is recorded in
    ``splits/checksums.json`` and checked on every read, and it must agree with the run: the configured count,
    indices inside P, the dataset's true labels, canary labels that differ from them. A shadow pipeline's sub-run
    gets its parent's file (:func:`tckr.pipelines.open_pipeline`)."""
    n = int(run.cfg.mia.canaries)
    f = run.dir / "splits" / CANARIES_FILE
    if n == 0 and not f.is_file():
        return splitting.Canaries(*(np.zeros(0, np.int64) for _ in range(3)))
    s = run.splits()
    P = np.r_[s.D, s.H].astype(np.int64)
    labels = _load_real_cached(run.dataset, "train", run.cfg.data.image_size).labels
    if not f.is_file():
        member = np.r_[np.ones(len(s.D), bool), np.zeros(len(s.H), bool)]
        pos, canary = splitting.choose_canaries(labels[P], member, n, len(run.class_names), run.seed_for(run.cfg.mia.seed))
        order = np.argsort(P[pos], kind="stable")
        write_canaries(f, splitting.Canaries(P[pos][order], labels[P[pos]][order].astype(np.int64), canary[order]))
    c = read_canaries(f)
    record = run.dir / "splits" / SPLITS_RECORD
    want = io.read_json(record)
    sha = index_sha256(c.as_array())
    if "canaries" not in want:
        io.write_json(record, {**want, "canaries": sha})
    elif want["canaries"] != sha:
        raise io.CorruptFileError(f"{f}: differs from the canaries recorded in {record.name} when they were drawn; "
                                  "it was altered or damaged: restore it or use a new run folder")
    problem = None
    if len(c) != n:
        problem = f"holds {len(c)} canaries, the config's mia.canaries is {n}"
    elif not np.isin(c.index, P).all() or len(np.unique(c.index)) != len(c):
        problem = "lists an image that is not in P = D ∪ H, or one image twice"
    elif not np.array_equal(c.label, labels[c.index]):
        problem = "records a label that is not the dataset's label of that image"
    elif (c.canary_label == c.label).any() or c.canary_label.min() < 0 or c.canary_label.max() >= len(run.class_names):
        problem = f"gives a canary its own label or one outside 0..{len(run.class_names) - 1}"
    if problem:
        raise ConfigError(f"{f} {problem}; use a new run folder")
    return c


def write_canaries(path: str | Path, canaries: splitting.Canaries) -> None:
    io.save_csv(Path(path), pd.DataFrame(canaries.as_array(), columns=list(CANARY_COLUMNS)))


def read_canaries(path: str | Path) -> splitting.Canaries:
    try:
        t = pd.read_csv(path)
        if list(t.columns) != list(CANARY_COLUMNS) or len(t) and not all(pd.api.types.is_integer_dtype(t[c]) for c in CANARY_COLUMNS):
            raise ValueError(f"columns {list(t.columns)}, expected the integers {list(CANARY_COLUMNS)}")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise io.CorruptFileError(f"{path}: not a readable canary record ({type(e).__name__}: {str(e).splitlines()[0]}); "
                                  "restore it or use a new run folder") from None
    c = splitting.Canaries(*(t[k].to_numpy(np.int64) for k in CANARY_COLUMNS))
    if len(c) and (np.diff(c.index) <= 0).any():
        raise io.CorruptFileError(f"{path}: canary indices are not sorted and unique; restore it or use a new run folder")
    return c
