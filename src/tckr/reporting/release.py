"""The release folders: a finished run's classifiers, adapter and prompts at the repository root, in the original
TCKR release's layout, and their evaluation without training anything.

    tckr release --run-dir runs/<id> [--out .]     # (re)write the release of the run's dataset
    tckr release --check [--out .]                 # verify every released file against the manifests

Folders (under the repository root, or ``--out``):

- ``trained_mbnv3/teachers/<dataset>_teacher.safetensors`` and
  ``trained_mbnv3/students/<dataset>_student_synth<k>x_<soft|hard>.safetensors``: classifier weights, each with a
  JSON sidecar of the same stem: the :mod:`tckr.classifiers` metadata (``arch``, ``num_classes``, ``class_names``,
  ``normalisation``, ``input_size``, ``stem_stride``, ``config_hash``, ``extra`` = the run's training record) and
  ``dataset``, ``model`` (its name in the run), ``role``, ``label_mode``, ``cardinality``, ``image_size``,
  ``test_accuracy`` (%, as recorded in the run's ``results/classifiers.csv``), ``test_split`` and ``train_split``
  (size and sha256 of the real indices, so an evaluation or an attack can check it uses the same images),
  ``git_commit``, ``run_id``, ``history`` (the per-epoch training record) and the file's ``sha256``.
- ``lora_sd2/<adapter file>`` (:func:`tckr.lora.adapter_name`) with a sidecar (rank, alpha, target modules, base
  model, ...) and ``README.md`` (how adapters, the original release's SD2 ones included, load).
- ``trained_mbnv3/README.md`` and ``lora_sd2/README.md`` are model cards: Hugging Face YAML front matter
  (``library_name``, ``license``, ``datasets``, ``tags``, ``base_model`` for the adapter, and ``model-index`` with the
  measured values the manifest records per dataset, read from the run's result files at release: each classifier's
  test accuracy and pre-registered membership-inference AUC, the generator attack's AUC), then how to load them.
- ``prompts/original_order/<dataset>_original_order.txt`` and ``prompts/grouped_by_class/<dataset>_grouped_by_class.json``:
  the run's captions of D in the original release's two formats (:mod:`tckr.captions`).

Each folder has a ``release.json`` manifest: per dataset, the source run and the sha256 and size of every file the
release wrote. Releasing a dataset again replaces that dataset's files and removes those of its previous release
that are no longer written; files the manifest does not list are never touched, nor other datasets' releases.

:func:`evaluate_released` installs the released classifiers of the run's dataset into a run folder (as if its
``04_run_evaluate`` had trained them) and evaluates them on the run's real test split with :func:`tckr.evaluate.evaluate`.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tckr.classification import classifiers, evaluate
from tckr.core import io, paths
from tckr.datasets.provenance import index_sha256
from tckr.generation import captions, generator, lora, prompt_files
from tckr.reporting import model_cards, plots
from tckr.runfolder import artifacts, runs

MANIFEST = "release.json"
FORMAT = "tckr-release/1"
TRAINED, LORA, PROMPTS = "trained_mbnv3", "lora_sd2", "prompts"
FOLDERS = (TRAINED, LORA, PROMPTS)
ROLE_FOLDER = {"teacher": "teachers", "student": "students"}
RELEASED_FILE = "released.csv"  # results/released.csv of an evaluation of released weights


class ReleaseError(ValueError):
    """A run that cannot be released, or released files that do not fit the run they are evaluated in."""


def released_name(dataset: str, role: str, multiple: float | None = None, label_mode: str = "soft") -> str:
    """``<dataset>_teacher`` or ``<dataset>_student_synth<k>x_<soft|hard>`` (file stem)."""
    if role == "teacher":
        return f"{dataset}_teacher"
    return f"{dataset}_student_synth{artifacts.multiple_tag(float(multiple))}x_{label_mode}"


def _root(out: str | Path | None) -> Path:
    return Path(out).resolve() if out is not None else paths.ROOT


# --------------------------------------------------------------------------- writing a release


def release(run_dir: str | Path, out: str | Path | None = None, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """(Re)write the release of the run's dataset under ``out`` (default: the repository root): classifiers, adapter
    and prompts, each folder's manifest updated. Returns ``{folder: {relative file: bytes}}``."""
    run = runs.open_run(None, run_dir)
    root = _root(out)
    source = _source(run)
    written = {TRAINED: _release_classifiers(run, root / TRAINED, source),
               LORA: _release_adapter(run, root / LORA, source),
               PROMPTS: _release_prompts(run, root / PROMPTS)}
    measured = {TRAINED: model_cards.classifier_metrics(run, root / TRAINED, written[TRAINED]),
                LORA: model_cards.adapter_metrics(run)}
    for folder, files in written.items():
        _commit(root / folder, run.dataset, files, {**source, **({"metrics": measured[folder]} if folder in measured else {})})
    shared = {folder: {"README.md": _write_card(root / folder, folder)} for folder in (TRAINED, LORA)}
    sizes = {folder: {rel: (root / folder / rel).stat().st_size for rel in [*files, *shared.get(folder, {})]}
             for folder, files in written.items()}
    for folder, files in sizes.items():
        log(f"{folder}/: {len(files)} files, {sum(files.values()) / 1e6:.2f} MB")
    log(f"release of {run.dataset} from {run.dir}: {sum(sum(f.values()) for f in sizes.values()) / 1e6:.2f} MB in all")
    return sizes


def _source(run: runs.Run) -> dict[str, Any]:
    env = run.dir / "environment.json"
    git = io.read_json(env).get("git", {}) if env.is_file() else {}
    return {"run_id": run.dir.name, "config": run.cfg.study.name, "git_commit": git.get("commit"), "git_dirty": git.get("dirty"),
            "config_hash": run.cfg.hash(), "released": _dt.datetime.now().isoformat(timespec="seconds")}


def _release_classifiers(run: runs.Run, folder: Path, source: dict[str, Any]) -> list[str]:
    targets = {}
    for f in sorted((run.dir / "classifiers").glob("*.safetensors")):
        extra = classifiers.read_meta(f).get("extra", {})
        if extra.get("role") in ROLE_FOLDER and extra.get("name"):
            targets[extra["name"]] = {**extra, "path": f}
    if not targets or not any(t["role"] == "teacher" for t in targets.values()):
        raise ReleaseError(f"{run.dir / 'classifiers'} holds no trained teacher; run notebooks/04_run_evaluate.ipynb on this run first")
    table_file = run.dir / "results" / "classifiers.csv"
    table = pd.read_csv(table_file).set_index("model") if table_file.is_file() else pd.DataFrame()
    unevaluated = [name for name in targets if name not in table.index]
    if unevaluated:
        raise ReleaseError(f"{table_file} has no test accuracy for {', '.join(unevaluated)}; evaluate them first "
                           "(notebooks/04_run_evaluate.ipynb, tckr.evaluate.evaluate)")
    test_index = run.test_index()
    D = run.splits().D
    files = []
    for name, info in targets.items():
        src = info["path"]
        classifiers.verify(src)
        tensors, meta = io.load_weights(src)
        role, mode = info["role"], info["label_mode"]
        multiple = None if role == "teacher" else float(info["multiple"])
        history = artifacts.history_file(run, name)
        meta = {**{k: meta[k] for k in ("arch", "num_classes", "class_names", "normalisation", "input_size", "stem_stride",
                                          "config_hash", "extra") if k in meta},
                "dataset": run.dataset, "model": name, "role": role, "label_mode": mode, "cardinality": multiple,
                "image_size": run.cfg.data.image_size,
                "test_accuracy": float(table.loc[name, "test_accuracy"]),
                "test_split": {"size": int(len(test_index)), "index_sha256": index_sha256(test_index)},
                "train_split": {"real": "D" if role == "teacher" else None, "D_size": int(len(D)), "D_index_sha256": index_sha256(D)},
                "git_commit": source["git_commit"], "run_id": source["run_id"],
                "history": pd.read_csv(history).to_dict("records") if history.is_file() else []}
        rel = f"{ROLE_FOLDER[role]}/{released_name(run.dataset, role, multiple, mode)}.safetensors"
        io.save_weights(folder / rel, tensors, meta)
        io.write_json(classifiers.sidecar_path(folder / rel), {**meta, "sha256": io.sha256_file(folder / rel)})
        files += [rel, classifiers.sidecar_path(rel).as_posix()]
    return files


def _release_adapter(run: runs.Run, folder: Path, source: dict[str, Any]) -> list[str]:
    problem = lora.adapter_problem(run)
    if problem:
        raise ReleaseError(f"{problem}; run notebooks/02_lora_finetune.ipynb on this run first")
    src = artifacts.adapter_path(run)
    modules, meta = generator.read_lora(src)
    dest = folder / src.name
    with io.atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    ranks = sorted({int(d["A"].shape[0]) for d in modules.values()})
    side = {"dataset": run.dataset, "file": src.name, "rank": ranks[0] if len(ranks) == 1 else ranks,
            "alpha": float(meta.get("alpha") or ranks[0]), "target_modules": meta.get("target_modules"),
            "base_model": meta.get("base_model"), "generator_arch": run.cfg.generator.arch, "modules": len(modules),
            **{k: meta[k] for k in ("steps", "seed", "format") if k in meta},
            "config_hash": meta.get("config_hash"), "git_commit": source["git_commit"], "run_id": source["run_id"],
            "sha256": io.sha256_file(dest)}
    io.write_json(dest.with_suffix(".json"), side)
    return [dest.name, dest.with_suffix(".json").name]


def _release_prompts(run: runs.Run, folder: Path) -> list[str]:
    table = captions.load_captions(run)
    order = f"original_order/{prompt_files.original_order_name(run.dataset)}"
    grouped = f"grouped_by_class/{prompt_files.grouped_by_class_name(run.dataset)}"
    prompt_files.write_original_order(folder / order, table["class_name"].tolist(), table["caption"].tolist())
    prompt_files.write_grouped_by_class(folder / grouped, table["class_name"].tolist(), table["caption"].tolist(), order=run.class_names)
    return [order, grouped]


def _write_card(folder: Path, kind: str) -> str:
    """The folder's README.md: a model card over every dataset in its manifest (:func:`tckr.reporting.model_cards.card`),
    recorded as a shared file of the manifest."""
    datasets = read_manifest(folder)["datasets"]
    bases = sorted({io.read_json(folder / rel).get("base_model") for d in datasets.values() for rel in d["files"]
                    if kind == LORA and rel.endswith(".json")} - {None})
    io.write_text(folder / "README.md", model_cards.card(kind, datasets, bases))
    _commit(folder, None, [], {}, shared=("README.md",))
    return "README.md"


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": io.sha256_file(path), "bytes": path.stat().st_size}


def _commit(folder: Path, dataset: str | None, files: list[str], source: dict[str, Any], shared: tuple[str, ...] = ()) -> None:
    """Remove the files of the dataset's previous release that this one did not write, then record the new ones (and
    the folder's ``shared`` files; ``dataset`` None records only those)."""
    manifest = read_manifest(folder)
    if dataset is not None:
        old = manifest["datasets"].get(dataset, {}).get("files", {})
        for rel in sorted(set(old) - set(files)):
            stale = _inside(folder, rel)
            if stale.is_file():
                stale.unlink()
        manifest["datasets"][dataset] = {**source, "files": {rel: _file_record(folder / rel) for rel in files}}
    manifest["shared"] = {**manifest.get("shared", {}), **{rel: _file_record(folder / rel) for rel in shared}}
    io.write_json(folder / MANIFEST, manifest)


def _inside(folder: Path, rel: str) -> Path:
    p = (folder / rel).resolve()
    if folder.resolve() not in p.parents:
        raise ReleaseError(f"{folder / MANIFEST}: file {rel!r} lies outside {folder}; the manifest was altered")
    return p


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """A folder's ``release.json`` (an empty manifest when there is none)."""
    f = Path(folder) / MANIFEST
    if not f.is_file():
        return {"format": FORMAT, "datasets": {}, "shared": {}}
    m = io.read_json(f)
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("datasets"), dict):
        raise io.CorruptFileError(f"{f}: not a {FORMAT} manifest (expected {{'format': {FORMAT!r}, 'datasets': {{...}}}})")
    m.setdefault("shared", {})
    return m


def check(out: str | Path | None = None) -> list[str]:
    """Problems of the release under ``out`` (default: the repository root): files listed in a manifest that are
    missing or whose sha256 differs. Empty when every released file is intact (or nothing is released)."""
    root = _root(out)
    problems = []
    for name in FOLDERS:
        folder = root / name
        m = read_manifest(folder)
        listed = {rel: rec for d in m["datasets"].values() for rel, rec in d.get("files", {}).items()}
        for rel, rec in sorted({**listed, **m["shared"]}.items()):
            f = _inside(folder, rel)
            if not f.is_file():
                problems.append(f"{name}/{rel}: missing (listed in {name}/{MANIFEST})")
            elif io.sha256_file(f) != rec["sha256"]:
                problems.append(f"{name}/{rel}: sha256 differs from {name}/{MANIFEST} (modified or damaged)")
    return problems


# --------------------------------------------------------------------------- reading a release


def released_models(folder: str | Path | None = None, dataset: str | None = None) -> dict[str, dict[str, Any]]:
    """The released classifiers under ``folder`` (default: the repository root), optionally of one dataset:
    ``{file stem: sidecar}`` with ``path`` added; the teacher first, then students by cardinality and label mode."""
    base = _root(folder) / TRAINED
    out = {}
    for sub in ROLE_FOLDER.values():
        for f in sorted((base / sub).glob("*.safetensors")):
            meta = classifiers.read_meta(f)
            if dataset is None or meta.get("dataset") == dataset:
                out[f.stem] = {**meta, "path": f}
    return dict(sorted(out.items(), key=lambda kv: (kv[1].get("role") != "teacher", kv[1].get("cardinality") or 0,
                                                    kv[1].get("label_mode", ""), kv[0])))


def load_released(name: str | Path, folder: str | Path | None = None):
    """A released classifier's torch model, ready for evaluation (eval mode, CPU); :func:`load_released_trained`
    returns it with its metadata.

    ``name`` is a file stem (``fashion_mnist_teacher``, ``fashion_mnist_student_synth0.1x_soft``) under
    ``folder/trained_mbnv3/`` (default: the repository root), or a path to a ``.safetensors`` file. The model is
    rebuilt with :func:`tckr.classifiers.load` (the same builder as training; safetensors only, sha256 checked)."""
    return load_released_trained(name, folder).model


def load_released_trained(name: str | Path, folder: str | Path | None = None):
    """:func:`load_released` as a :class:`tckr.classifiers.TrainedClassifier` (the model with its architecture, input
    size, normalisation, class names and training record)."""
    path = Path(name)
    if path.suffix != ".safetensors":
        avail = released_models(folder)
        if str(name) not in avail:
            raise FileNotFoundError(f"no released classifier {name!r} under {_root(folder) / TRAINED}; "
                                    f"released: {', '.join(avail) or 'none (tckr release --run-dir runs/<id>)'}")
        path = avail[str(name)]["path"]
    return classifiers.load_trained(path)


# --------------------------------------------------------------------------- using a release in a run


def install_released(run: runs.Run, folder: str | Path | None = None, *, check_members: bool = False) -> dict[str, Path]:
    """Copy the released classifiers of the run's dataset into ``run/classifiers/`` under the names
    :func:`tckr.train.teacher` / :func:`tckr.train.student` use, with their training histories, so the run's
    later steps (evaluation, ``05_mia_lira``) load them instead of training. Returns ``{model name: weights path}``.

    The run must use the release's test split, image size, normalisation and architectures; ``check_members``
    (for membership inference) also requires the run's D to be the teacher's training set. A run file of the
    same name that differs is an error (a run's own classifiers are never overwritten)."""
    models = released_models(folder, run.dataset)
    if not any(m.get("role") == "teacher" for m in models.values()):
        raise ReleaseError(f"no released teacher of {run.dataset} under {_root(folder) / TRAINED}; "
                           "write one with tckr release --run-dir runs/<id>")
    cfg = run.cfg
    test_sha = index_sha256(run.test_index())
    D_sha = index_sha256(run.splits().D) if check_members else None
    norm = run.stats()
    out = {}
    for stem, meta in models.items():
        role, mode, multiple = meta["role"], meta["label_mode"], meta.get("cardinality")
        want_arch = cfg.classifier.teacher_arch if role == "teacher" else cfg.classifier.student_arch
        problems = []
        if meta["arch"] != want_arch:
            problems.append(f"architecture {meta['arch']!r}, the run's config has {want_arch!r}")
        if int(meta.get("image_size", -1)) != cfg.data.image_size:
            problems.append(f"image size {meta.get('image_size')}, the run's data.image_size is {cfg.data.image_size}")
        if meta["test_split"]["index_sha256"] != test_sha:
            problems.append("its test accuracy was measured on another test split (data.test_size / data.split_seed differ)")
        if not np.allclose(meta["normalisation"]["mean"], norm["mean"]) or not np.allclose(meta["normalisation"]["std"], norm["std"]):
            problems.append("its input normalisation differs from the run's channel statistics")
        if check_members and meta["train_split"]["D_index_sha256"] != D_sha:
            problems.append("the run's private set D is not the one it was trained from (membership would be wrong)")
        if problems:
            raise ReleaseError(f"{meta['path']} does not fit run {run.dir}: {'; '.join(problems)}. Open the run with the "
                               f"config it was released from (config hash {meta.get('config_hash')}, run {meta.get('run_id')})")
        dest = artifacts.weights_file(run, role, multiple, mode)
        if dest.is_file() and io.sha256_file(dest) != meta["sha256"]:
            raise ReleaseError(f"{dest} exists and differs from the released {meta['path'].name}; the run trained its own "
                               "classifiers: use a new run folder for the released ones")
        if not dest.is_file():
            with io.atomic_path(dest) as tmp:
                shutil.copyfile(meta["path"], tmp)
        side = {k: v for k, v in meta.items() if k not in ("path", "history")}
        side["extra"] = {**side["extra"], "source": "released", "released_file": f"{TRAINED}/{ROLE_FOLDER[role]}/{stem}.safetensors"}
        io.write_json(classifiers.sidecar_path(dest), side)
        if meta.get("history"):
            io.save_csv(artifacts.history_file(run, meta["model"]), pd.DataFrame(meta["history"]))
        classifiers.verify(dest)
        out[meta["model"]] = dest
    return out


def evaluate_released(run: runs.Run, folder: str | Path | None = None, *, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Evaluate the released teacher and students of the run's dataset on the run's real test split, training
    nothing: they are installed into the run (:func:`install_released`) and evaluated like trained ones
    (``results/classifiers.csv``, ``per_class.csv``, ``confusion_<model>.csv``, ``figures/classifier_curves``).
    Returns and writes ``results/released.csv``: model, file, recorded (the sidecar's test accuracy), test_accuracy
    (recomputed here), equal."""
    installed = install_released(run, folder)
    models = {m["model"]: (stem, m) for stem, m in released_models(folder, run.dataset).items()}
    rows = []
    for name, path in installed.items():
        stem, meta = models[name]
        row = evaluate.evaluate(run, classifiers.load_trained(path))
        rows.append({"model": name, "file": f"{stem}.safetensors", "recorded": float(meta["test_accuracy"]),
                     "test_accuracy": row["test_accuracy"], "equal": row["test_accuracy"] == float(meta["test_accuracy"])})
    table = pd.DataFrame(rows)
    io.save_csv(run.path("results", RELEASED_FILE), table)
    if any((run.dir / "classifiers").glob("*_history.csv")):
        plots.plot_curves(run.dir)
    for r in table.itertuples():
        if not r.equal:
            log(f"{r.model}: test accuracy {r.test_accuracy:.4f}% here, {r.recorded:.4f}% recorded in {r.file}'s sidecar "
                "(a different torch version or thread count can flip near-tied predictions)")
    return table


# --------------------------------------------------------------------------- command line
