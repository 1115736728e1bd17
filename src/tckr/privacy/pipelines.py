"""Shadow *pipelines*: LiRA shadows that replicate how a student is trained, not only how a teacher is.

A student never sees a real image: membership reaches it through the captions of D, the LoRA adapter
trained on D and the teacher's soft labels. A shadow for it is therefore a whole TCKR run on a
shadow half of the MIA pool P = D ∪ H: shadow teacher → captions → shadow LoRA from the same base
→ shadow synthetic set → shadow GKD students. Pipeline ``i`` is a *sub-run* (an ordinary run folder,
``<run>/mia/pipelines/pipeline_<i>/``) whose D is the IN half of row ``i`` of the run's membership
mask (``mia/keep.npy``) and whose H is the other half; val, pool, public and test are the run's.
Every phase function (``captions.caption_run``, ``lora.finetune``, ``synthesis.generate``,
``train.teacher``, ``train.student``) then runs on it unchanged, so a shadow is trained exactly the
way the target was. The sub-run's config is the run's except ``synthesis.cardinalities``, which is
the pipeline cardinalities (``mia.pipeline_cardinalities``, empty = ``synthesis.cardinalities``).

Stages of pipeline ``i``, each skipped when its output exists (a killed pipeline resumes at the
stage it was in; LoRA and synthesis also resume inside the stage from their own checkpoints/shards):

1. ``teacher``: when ``mia.shadow_epochs`` is 0 or the teacher's epoch budget, LiRA classifier
   shadow ``i`` (``mia/shadows/shadow_<i>``, same half, teacher recipe) already is this teacher:
   it is trained if missing (``mia.train_shadows``) and saved as the sub-run's teacher; otherwise
   ``train.teacher(sub)``.
2. ``captions``: the sub-run's ``captions/`` (the files ``captions.caption_run`` writes) holds its
   half's rows of ``mia/pipelines/captions_P.csv``: captions of every image of P, D's from the
   run's own captions file, H's from the run's captioner, made once per run.
3. ``lora``: ``lora.finetune(sub)`` (same base, the target's recipe, the sub-run's seed).
4. ``synthesis``: ``synthesis.generate(sub)``.
5. ``student_synth<m>x``: ``train.student(sub, m, teacher, label_mode=gkd.label_mode)`` per cardinality.
6. ``queries``: the students' logits on P and on the population Z, ``mia/logits/pipeline_<i>_<student>.npy``
   (+ ``_population``), the same layout as the classifier shadows' logits.

``mia/pipelines/stages.csv``: one row per stage that actually ran (``pipeline, stage, seconds,
detail, finished``), appended under a file lock so concurrent shards can share it.

Attacks (:func:`attack_students`): each target student of a pipeline cardinality is scored with
LiRA (online/offline, per-example/fixed variance) using the pipeline students of that cardinality
as shadows and ``keep[:n_pipelines]`` as their membership; raw scores ``mia/scores/<target>_pipeline_<attack>.npy``,
ROC ``mia/roc/<target>_pipeline_<attack>.csv`` and ``results/mia_pipeline.csv`` (the columns of
``results/mia.csv`` plus ``shadow_kind``, ``n_pipelines`` and ``note``). :func:`pipeline_spread`
attacks each pipeline's student with the others (leave one pipeline out): the spread of the attack
over training randomness at no extra training cost, ``results/mia_pipeline_lopo.csv``.

CLI: ``tckr pipelines --run-dir runs/<id> [--shard k/n] [--attack]``.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tckr.classification import classifiers, train
from tckr.core import io, shards
from tckr.core.config import config_from_dict
from tckr.core.progress import note
from tckr.generation import captions, lora, prompt_files, synthesis
from tckr.privacy import attacks, metrics, mia
from tckr.runfolder import environment, runs

PIPELINES_DIR = ("mia", "pipelines")
LIRA_ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed")
LOPO_ATTACKS = ("lira_online_fixed", "lira_offline_fixed")
STAGE_COLUMNS = ("pipeline", "stage", "seconds", "detail", "finished")


def pipeline_name(i: int) -> str:
    return f"pipeline_{i:03d}"


def pipeline_dir(run, i: int) -> Path:
    return run.dir.joinpath(*PIPELINES_DIR, pipeline_name(i))


def pipeline_seed(run, i: int) -> int:
    """The sub-run seed of pipeline ``i``: every phase seed of the pipeline (``run.seed_for``) differs
    from the target's and from every other pipeline's (up to 100 pipelines per run seed)."""
    if not 0 <= i < 100:
        raise ValueError(f"pipeline index must lie in [0, 100), got {i}")
    return 10_000 + 100 * int(run.seed) + int(i)


def cardinalities(cfg) -> list[float]:
    """The student cardinalities the pipelines replicate (``mia.pipeline_cardinalities``, else ``synthesis.cardinalities``)."""
    cards = [float(m) for m in (cfg.mia.pipeline_cardinalities or cfg.synthesis.cardinalities)]
    if not cards or any(m <= 0 for m in cards):
        raise ValueError(f"mia.pipeline_cardinalities: positive multiples of |D| needed, got {cards}")
    return sorted(set(cards))


def pipeline_config(cfg):
    """The sub-runs' config: the run's, with ``synthesis.cardinalities`` = the pipeline cardinalities
    (only the largest one is generated; smaller ones are subsets of it)."""
    return config_from_dict(cfg.to_dict(), {"synthesis.cardinalities": cardinalities(cfg)})


def open_pipeline(run, i: int) -> runs.Run:
    """The sub-run of shadow pipeline ``i`` (created on first use): D = P[keep[i]], H = P[~keep[i]]."""
    keep = mia.ensure_mask(run, max(i + 1, 2 * ((i + 2) // 2)))
    p = mia.pool_index(run)
    folder = pipeline_dir(run, i)
    s = run.splits()
    want = {"D": np.sort(p[keep[i]]), "H": np.sort(p[~keep[i]]), "val": s.val, "pool": s.pool, "public": s.public,
            "test": run.test_index()}
    for name, index in want.items():
        f = folder / "splits" / f"{name}.npy"
        if not f.is_file():
            io.save_array(f, index.astype(np.int64))
        elif not np.array_equal(io.load_array(f), index):
            raise ValueError(f"{f} does not hold row {i} of {mia.mia_dir(run, 'keep.npy')}; delete {folder} to rebuild it")
    canaries = run.canaries()
    if len(canaries):  # the same mislabeled images, with the same flips, in every shadow pipeline
        f = folder / "splits" / runs.CANARIES_FILE
        if not f.is_file():
            runs.write_canaries(f, canaries)
        elif not np.array_equal(runs.read_canaries(f).as_array(), canaries.as_array()):
            raise ValueError(f"{f} is not the run's {run.dir / 'splits' / runs.CANARIES_FILE}; delete {folder} to rebuild it")
    return runs.open_run(pipeline_config(run.cfg), folder, seed=pipeline_seed(run, i))


def student_logits_name(i: int, multiple: float, label_mode: str = "soft") -> str:
    """``pipeline_<i>_student_synth<m>x``: the name of pipeline ``i``'s student in ``mia/logits/``."""
    return f"{pipeline_name(i)}_{train.model_name('student', multiple, label_mode)}"


def _logits_path(run, name: str, population: bool = False) -> Path:
    return mia.mia_dir(run, "logits", f"{name}{'_population' if population else ''}.npy")


def reuses_shadow(cfg) -> bool:
    """Whether LiRA classifier shadow ``i`` is pipeline ``i``'s teacher (same half, same recipe and epoch budget)."""
    return cfg.mia.shadow_epochs in (0, cfg.train.epochs)


# ---------------------------------------------------------------- captions of P
def pool_captions(run, *, progress: bool = True) -> pd.DataFrame:
    """Captions of every image of P (D first, then H; columns of ``captions.csv``), cached in
    ``mia/pipelines/captions_P.csv``: D's rows are the run's own captions, H's come from the run's captioner."""
    f = run.path(*PIPELINES_DIR, "captions_P.csv")
    index = mia.pool_index(run)
    if f.is_file():
        table = pd.read_csv(f, keep_default_na=False, dtype={"class_name": str, "caption": str, "prompt": str})
        if not np.array_equal(table["index"].to_numpy(), index):
            raise ValueError(f"{f} does not caption this run's pool P; delete it to recaption")
        return table
    own = captions.load_captions(run).set_index("index")
    s = run.splits()
    missing = np.setdiff1d(s.D, own.index.to_numpy())
    if len(missing):
        raise ValueError(f"{captions.captions_path(run)} has no caption for {len(missing)} image(s) of D (e.g. index {missing[0]})")
    d_rows = own.loc[s.D].reset_index()
    H = run.real("H")
    environment.set_threads(run.cfg)
    captioner = captions.build_captioner(run.cfg, environment.device(run.cfg))
    caps = [" ".join(str(c).split()) for c in captioner.caption(H.images, progress=progress)]
    if len(caps) != len(H):
        raise RuntimeError(f"captioner returned {len(caps)} captions for {len(H)} images of H")
    names = [run.class_names[int(y)] for y in H.labels]
    h_rows = pd.DataFrame({"index": s.H.astype(np.int64), "label": H.labels.astype(np.int64), "class_name": names,
                           "caption": caps, "prompt": [prompt_files.prompt_for(n, c) for n, c in zip(names, caps)]})
    table = pd.concat([d_rows[list(captions.COLUMNS)], h_rows], ignore_index=True)
    io.save_csv(f, table)
    return table


# ---------------------------------------------------------------- stages
def _stages_file(run) -> Path:
    return run.path(*PIPELINES_DIR, "stages.csv")


def _record(run, i: int, stage: str, seconds: float, detail: str) -> None:
    """Append one row to ``stages.csv`` in a single locked write (shards may append concurrently)."""
    row = pd.DataFrame([{"pipeline": i, "stage": stage, "seconds": round(seconds, 3), "detail": detail,
                         "finished": _dt.datetime.now().isoformat(timespec="seconds")}], columns=list(STAGE_COLUMNS))
    with open(_stages_file(run), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            text = row.to_csv(index=False, header=os.fstat(fh.fileno()).st_size == 0)
            fh.write(text)
            fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_stages(run) -> pd.DataFrame:
    """``mia/pipelines/stages.csv``: the wall seconds of every stage that ran (empty when none has)."""
    f = run.dir.joinpath(*PIPELINES_DIR, "stages.csv")
    if not f.is_file():
        return pd.DataFrame(columns=list(STAGE_COLUMNS))
    return pd.read_csv(f, keep_default_na=False)


def _teacher_stage(run, sub, i: int, n: int, progress: bool) -> str:
    path = train.weights_file(sub, "teacher")
    if not reuses_shadow(run.cfg):
        train.teacher(sub, progress=progress)
        return "trained (train.teacher: mia.shadow_epochs differs from train.epochs)"
    name = mia.shadow_name(i)
    trained = mia.train_shadows(run, n, shard=f"{i + 1}/{n}", progress=progress)
    shadow = mia.mia_dir(run, "shadows", f"{name}.safetensors")
    model = classifiers.load_trained(shadow, arch=run.cfg.classifier.teacher_arch, num_classes=len(run.class_names))
    meta = model.meta
    extra = {**meta.get("extra", {}), "role": "teacher", "name": "teacher", "label_mode": "real", "multiple": None,
             "reused_from": f"mia/shadows/{shadow.name}"}
    history = mia.mia_dir(run, "shadows", f"{name}_history.csv")
    if history.is_file():
        with io.atomic_path(train.history_file(sub, "teacher")) as tmp:
            tmp.write_bytes(history.read_bytes())
    # the same tensors under the sub-run's teacher name; header and sidecar both say where they came from
    classifiers.save(model, path, arch=meta["arch"], class_names=meta["class_names"], normalisation=meta["normalisation"],
                     config_hash=meta["config_hash"], extra=extra)
    return f"{name} reused" + (" (trained now)" if trained else "")


def _captions_stage(run, sub, i: int, n: int, progress: bool) -> str:
    table = pool_captions(run, progress=progress).set_index("index").loc[sub.splits().D].reset_index()
    cc = run.cfg.captions
    io.write_json(sub.path(captions.CAPTIONS_DIR, "captions.json"),
                  {"captioner": cc.captioner, "n": len(table), "dataset": sub.dataset, "max_new_tokens": cc.max_new_tokens,
                   "model": cc.model if cc.captioner == "blip2" else None, "source": "the parent run's mia/pipelines/captions_P.csv"})
    io.save_csv(captions.captions_path(sub), table[list(captions.COLUMNS)])
    captions.caption_run(sub, progress=False)  # reads the table back and writes the two views
    return f"{len(table)} captions from captions_P.csv"


def _captions_done(sub) -> bool:
    folder = sub.dir / captions.CAPTIONS_DIR
    return all((folder / f).is_file() for f in (captions.CAPTIONS_FILE, prompt_files.original_order_name(sub.dataset),
                                                prompt_files.grouped_by_class_name(sub.dataset)))


def _lora_stage(run, sub, i: int, n: int, progress: bool) -> str:
    lora.finetune(sub, progress=progress)
    return f"{io.read_json(lora.adapter_path(sub).parent / 'training.json')['steps']} steps"


def _synthesis_stage(run, sub, i: int, n: int, progress: bool) -> str:
    summary = synthesis.generate(sub, progress=progress)
    return f"{summary['images_made']} images made now"


def _student_stage(multiple: float) -> Callable[..., str]:
    def stage(run, sub, i: int, n: int, progress: bool) -> str:
        teacher = train.teacher(sub, progress=progress)
        model = train.student(sub, multiple, teacher, label_mode=run.cfg.gkd.label_mode, progress=progress)
        return f"{model.info.get('train_size')} synthetic images"

    return stage


def _queries_stage(pool_loader: Callable[[], Any]) -> Callable[..., str]:
    def stage(run, sub, i: int, n: int, progress: bool) -> str:
        p = pool_loader()
        qs = mia.queries(run)
        mode = run.cfg.gkd.label_mode
        made = []
        for m in cardinalities(run.cfg):
            name = student_logits_name(i, m, mode)
            if _logits_path(run, name).is_file() and _logits_path(run, name, True).is_file():
                continue
            model = classifiers.load_trained(train.weights_file(sub, "student", m, mode))
            io.save_array(_logits_path(run, name, True), mia.query_logits(model, p.population_images, run.cfg, qs))
            io.save_array(_logits_path(run, name), mia.query_logits(model, p.images, run.cfg, qs))
            made.append(name)
        return f"{len(made)} students queried on P and Z"

    return stage


def _stages(run, sub, i: int, pool_loader: Callable[[], Any]) -> list[tuple[str, Callable[[], bool], Callable[..., str]]]:
    """(name, done?, run) of pipeline ``i``'s stages, in order."""
    mode = run.cfg.gkd.label_mode
    cards = cardinalities(run.cfg)

    def teacher_done() -> bool:
        path = train.weights_file(sub, "teacher")
        return path.is_file() and path.with_suffix(".json").is_file()

    out = [("teacher", teacher_done, _teacher_stage),
           ("captions", lambda: _captions_done(sub), _captions_stage),
           ("lora", lambda: lora.adapter_path(sub).is_file(), _lora_stage),
           ("synthesis", lambda: synthesis.is_complete(sub), _synthesis_stage)]
    for m in cards:
        out.append((train.model_name("student", m, mode), lambda m=m: train.weights_file(sub, "student", m, mode).is_file(),
                    _student_stage(m)))
    names = [student_logits_name(i, m, mode) for m in cards]
    out.append(("queries", lambda: all(_logits_path(run, nm).is_file() and _logits_path(run, nm, True).is_file() for nm in names),
                _queries_stage(pool_loader)))
    return out


def run_pipeline(run, i: int, n: int | None = None, *, progress: bool = True, pool_loader: Callable[[], Any] | None = None) -> list[str]:
    """Run (or finish) every stage of pipeline ``i`` of ``n``; returns the stages that ran now."""
    n = _check_n(run, n)
    if not 0 <= i < n:
        raise ValueError(f"pipeline {i} is not among the {n} pipelines (0 … {n - 1})")
    if pool_loader is None:
        pool_loader = _lazy(lambda: mia.pool(run))
    sub = open_pipeline(run, i)
    ran = []
    for stage, done, work in _stages(run, sub, i, pool_loader):
        if done():
            note(f"{pipeline_name(i)} {stage}: done before")
            continue
        t0 = time.perf_counter()
        detail = work(run, sub, i, n, progress)
        seconds = time.perf_counter() - t0
        _record(run, i, stage, seconds, detail)
        note(f"{pipeline_name(i)} {stage}: {seconds:.1f} s ({detail})")
        ran.append(stage)
    return ran


def _lazy(make: Callable[[], Any]) -> Callable[[], Any]:
    box: list[Any] = []

    def get() -> Any:
        if not box:
            box.append(make())
        return box[0]

    return get


def _check_n(run, n: int | None) -> int:
    n = int(run.cfg.mia.n_pipelines if n is None else n)
    if n < 2 or n % 2:
        raise ValueError(f"the number of shadow pipelines must be an even number >= 2 (pairs train on complementary "
                         f"halves of P), got {n}; set mia.n_pipelines in the config")
    if n > 100:
        raise ValueError(f"at most 100 shadow pipelines per run seed, got {n}")
    return n


def train_pipelines(run, n: int | None = None, shard: str | None = None, *, progress: bool = True) -> list[int]:
    """Run (or finish) the shadow pipelines ``i < n`` (default ``mia.n_pipelines``) that shard ``k/n``
    owns (``i mod n == k - 1``); finished stages are skipped. Returns the pipelines that ran a stage now."""
    n = _check_n(run, n)
    mia.ensure_mask(run, n)  # membership first, before any pipeline trains
    pool_loader = _lazy(lambda: mia.pool(run))
    k, m = shards.parse_shard(shard)
    mine = shards.mine(range(n), shard)
    note(f"shadow pipelines {mine} of {n} (shard {k}/{m}), cardinalities {cardinalities(run.cfg)}")
    t0 = time.perf_counter()
    worked = [i for i in mine if run_pipeline(run, i, n, progress=progress, pool_loader=pool_loader)]
    note(f"shadow pipelines: {len(worked)} worked on now, {time.perf_counter() - t0:.1f} s")
    return worked


# ---------------------------------------------------------------- attacks
def lira_scores(target_phi: np.ndarray, shadow_phi: np.ndarray, shadow_in: np.ndarray,
                attacks: tuple[str, ...] = LIRA_ATTACKS) -> dict[str, np.ndarray | str]:
    """LiRA scores of one target from stable logits (``mia.score``), one entry per attack; a per-example
    variant that the shadows cannot support (fewer than 2 IN or 2 OUT shadows for some example) is a note."""
    shadow_in = np.asarray(shadow_in, dtype=bool)
    n_in, n_out = shadow_in.sum(0), (~shadow_in).sum(0)
    out: dict[str, np.ndarray | str] = {}
    for a in attacks:
        online = "online" in a
        need = 1 if a.endswith("fixed") else 2
        if n_out.min() < need or (online and n_in.min() < need):
            out[a] = (f"skipped: {a} needs at least {need} {'IN and OUT' if online else 'OUT'} shadow pipelines per example "
                      f"(have min IN {int(n_in.min())}, min OUT {int(n_out.min())}); add pipelines")
            continue
        out[a] = mia.score(a, target_phi, shadow_phi, shadow_in)
    return out


def _stable_pipelines(run, multiple: float, n: int, labels: np.ndarray) -> np.ndarray:
    names = [student_logits_name(i, multiple, run.cfg.gkd.label_mode) for i in range(n)]
    missing = [nm for nm in names if not _logits_path(run, nm).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {n} shadow pipelines have no query logits for {multiple:g}×|D| "
                                f"(e.g. {_logits_path(run, missing[0])}): run tckr.pipelines.train_pipelines(run) "
                                "or `tckr pipelines --run-dir <run> --shard k/n` first")
    return np.stack([mia.stable_logit(io.load_array(_logits_path(run, nm)), labels) for nm in names])


RESULT_EXTRA_COLUMNS = ("shadow_kind", "n_pipelines", "note")


def attack_students(run, n: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Score every target student of a pipeline cardinality (``gkd.label_mode``) with LiRA whose shadows
    are the pipeline students of that cardinality; writes raw scores, ROC arrays and
    ``results/mia_pipeline.csv`` (rows of other targets kept). Returns this call's rows."""
    cfg = run.cfg
    n = _check_n(run, n)
    keep = mia.ensure_mask(run, n)
    mode = cfg.gkd.label_mode
    cards = cardinalities(cfg)
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
    saved = np.load(mia.mia_dir(run, "pool.npz"))
    labels = saved["labels"]
    io.save_array(mia.mia_dir(run, "scores", "membership.npy"), saved["member"])
    scored = []
    shadow_cache: dict[float, np.ndarray] = {}
    for t, info in students.items():
        m = next(c for c in cards if math.isclose(float(info["multiple"]), c))
        if m not in shadow_cache:
            shadow_cache[m] = _stable_pipelines(run, m, n, labels)
        t_phi = mia.stable_logit(io.load_array(_logits_path(run, t)), labels)
        scores = lira_scores(t_phi, shadow_cache[m], keep)
        for a, s in scores.items():
            if isinstance(s, str):
                print(f"{t} {a}: {s}")
        scored.append(mia.TargetScores(t, scores, {"role": "student", "cardinality": m, "label_mode": mode,
                                                   "shadow_kind": "pipeline", "n_pipelines": n},
                                       n_shadows=n, stem=f"{t}_pipeline", table=False))
    new = mia.write_attack_results(run, "mia_pipeline.csv", scored, extra_columns=RESULT_EXTRA_COLUMNS)
    return new


def pipeline_spread(run, n: int | None = None) -> pd.DataFrame:
    """Leave one pipeline out: pipeline ``j``'s student as the target (members = ``keep[j]``), the other
    pipelines as shadows, fixed-variance online and offline LiRA, on P without its mislabeled canaries;
    ``results/mia_pipeline_lopo.csv``.
    Needs at least 4 pipelines (with 2, the one left has each example only IN or only OUT)."""
    n = _check_n(run, n)
    cols = ["cardinality", "pipeline", "attack", "auc", "tpr_at_1pct", "tpr_at_0.1pct"]
    if n < 4:
        print(f"leave-one-pipeline-out needs at least 4 shadow pipelines, the config has {n}: skipped")
        return pd.DataFrame(columns=cols)
    keep = mia.ensure_mask(run, n)
    labels = np.load(mia.mia_dir(run, "pool.npz"))["labels"]
    regular = ~mia.canary_mask(run)  # the spread of the ordinary rows: P without its mislabeled canaries
    rows = []
    for m in cardinalities(run.cfg):
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
    summary = table.groupby(["cardinality", "attack"])["auc"].agg(["mean", "std", "min", "max"])
    print(f"leave-one-pipeline-out AUC over {n} pipelines:\n{summary.to_string()}")
    return table


def run_all(run, *, progress: bool = True) -> dict[str, Any]:
    """Train every shadow pipeline, attack the students with them and write the leave-one-out spread
    (nothing when ``mia.n_pipelines`` is 0). Returns ``{"pipelines", "students", "lopo"}``."""
    if not run.cfg.mia.n_pipelines:
        print("mia.n_pipelines is 0: no shadow pipelines, the students are attacked with classifier shadows only")
        return {}
    done = train_pipelines(run, progress=progress)
    return {"pipelines": done, "students": attack_students(run, progress=progress), "lopo": pipeline_spread(run)}


# ---------------------------------------------------------------- CLI
