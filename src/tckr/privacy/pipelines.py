"""Shadow *pipelines*: LiRA shadows that replicate how a student is trained, not only how a teacher is.

A student never sees a real image: membership reaches it through the captions of D, the LoRA adapter
trained on D and the teacher's soft labels. A shadow for it is therefore a whole TCKR run on a
shadow half of the MIA pool P = D ∪ H: shadow teacher → captions → shadow LoRA from the same base
→ shadow synthetic set → shadow GKD students. Pipeline ``i`` is a *sub-run* (an ordinary run folder,
``<run>/mia/pipelines/pipeline_<i>/``) whose D is the IN half of row ``i`` of the run's membership
mask (``mia/keep.npy``) and whose H is the other half; val, pool, public and test are the run's.
Every phase function (``captions.caption_run``, ``lora.finetune``, ``synthesis.generate``,
``train.teacher``, ``train.student``) then runs on it unchanged, so a shadow is trained exactly the
way the target was. The sub-run's config is the run's, whole: its synthetic set of cardinality ``m`` is
drawn from a plan of the run's largest cardinality (``max(synthesis.cardinalities)``) by the target's
nesting rule with the pipeline's own seeds (:func:`tckr.generation.synthesis.sampling_plan`), so a pipeline's 1× set
is a class-balanced half of its own 2× plan (each caption used 0, 1 or 2 times) exactly as the target's is.
Only the pipeline cardinalities (``mia.pipeline_cardinalities``, empty = ``synthesis.cardinalities``) are
made: synthesis generates the rows of the largest of them and none of the rows no attacked set uses (the
subset draw reads labels, never images), so replicating a larger target plan costs no extra synthesis.

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
4. ``synthesis``: ``synthesis.generate(sub, multiples=<the pipeline cardinalities>)``.
5. ``base_synthesis`` (only when ``gkd.baselines`` has a base-generator variant): the sub-run's own base set,
   ``baselines.base_synthetic(sub, multiples=<the pipeline cardinalities>)`` in ``<pipeline>/baselines/base/``.
6. ``student_synth<m>x``: ``train.student(sub, m, teacher, label_mode=gkd.label_mode)`` per cardinality; then, per
   variant of ``gkd.baselines`` and cardinality, ``<student>`` (``baselines.variant_name``: ``student_synth<m>x_hard``,
   ``student_base<m>x``, ``student_base<m>x_hard``): ``baselines.student(sub, variant, m, teacher)``, the pipeline's
   teacher for soft labels and none for hard ones, so each row of the target's table has shadows trained its way.
7. ``queries``: every student's logits on P and on the population Z, ``mia/logits/pipeline_<i>_<student>.npy``
   (+ ``_population``), the same layout as the classifier shadows' logits.

``mia/pipelines/stages.csv``: one row per stage that actually ran (``pipeline, stage, seconds,
detail, finished``), appended under a file lock so concurrent shards can share it.

The attacks with these shadows (:func:`tckr.pipelines.attack_students`, :func:`tckr.pipelines.pipeline_spread`) and the
whole phase (:func:`tckr.pipelines.run_all`: train, then attack) live in :mod:`tckr.privacy.pipeline_attacks`.

CLI: ``tckr pipelines --run-dir runs/<id> [--shard k/n] [--attack]``.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tckr.classification import baselines, classifiers, train
from tckr.core import io, shards
from tckr.core.progress import note
from tckr.generation import captions, lora, prompt_files, synthesis
from tckr.privacy import mia
from tckr.runfolder import artifacts, environment, parallel, runs, synthetic

PIPELINES_DIR = ("mia", "pipelines")
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
    """The sub-runs' config: the run's, whole. ``synthesis.cardinalities`` stays the target's, so a pipeline's sets
    are drawn from a plan of the target's largest cardinality; :func:`_synthesis_stage` makes only the pipeline
    cardinalities' rows of it."""
    cardinalities(cfg)  # a clear error for bad pipeline cardinalities before any sub-run exists
    return cfg


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
            raise ValueError(f"{f} does not hold row {i} of {artifacts.mia_dir(run, 'keep.npy')}; delete {folder} to rebuild it")
    canaries = run.canaries()
    if len(canaries):  # the same mislabeled images, with the same flips, in every shadow pipeline
        f = folder / "splits" / runs.CANARIES_FILE
        if not f.is_file():
            runs.write_canaries(f, canaries)
        elif not np.array_equal(runs.read_canaries(f).as_array(), canaries.as_array()):
            raise ValueError(f"{f} is not the run's {run.dir / 'splits' / runs.CANARIES_FILE}; delete {folder} to rebuild it")
    return runs.open_run(pipeline_config(run.cfg), folder, seed=pipeline_seed(run, i))


def student_logits_name(i: int, multiple: float, label_mode: str = "soft") -> str:
    """``pipeline_<i>_student_synth<m>x``: the name of pipeline ``i``'s student in ``mia/logits/`` (the adapted
    generator's variant of ``label_mode``, :func:`variant_logits_name`)."""
    return variant_logits_name(i, f"lora_{label_mode}", multiple)


def variant_logits_name(i: int, variant: str, multiple: float) -> str:
    """``pipeline_<i>_<student>``: pipeline ``i``'s student of ``variant`` (``baselines.variant_name``) in ``mia/logits/``."""
    return f"{pipeline_name(i)}_{baselines.variant_name(variant, multiple)}"


def students(cfg) -> list[tuple[str, float]]:
    """(variant, cardinality) of every student a pipeline trains: the run's own variant first, then ``gkd.baselines``."""
    return [(v, m) for v in baselines.variants(cfg) for m in cardinalities(cfg)]


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
        raise ValueError(f"{artifacts.captions_path(run)} has no caption for {len(missing)} image(s) of D (e.g. index {missing[0]})")
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
    path = artifacts.weights_file(sub, "teacher")
    if not reuses_shadow(run.cfg):
        train.teacher(sub, progress=progress)
        return "trained (train.teacher: mia.shadow_epochs differs from train.epochs)"
    name = mia.shadow_name(i)
    trained = mia.train_shadows(run, n, shard=f"{i + 1}/{n}", progress=progress)
    shadow = artifacts.mia_dir(run, "shadows", f"{name}.safetensors")
    model = classifiers.load_trained(shadow, arch=run.cfg.classifier.teacher_arch, num_classes=len(run.class_names))
    meta = model.meta
    extra = {**meta.get("extra", {}), "role": "teacher", "name": "teacher", "label_mode": "real", "multiple": None,
             "reused_from": f"mia/shadows/{shadow.name}"}
    history = artifacts.mia_dir(run, "shadows", f"{name}_history.csv")
    if history.is_file():
        with io.atomic_path(artifacts.history_file(sub, "teacher")) as tmp:
            tmp.write_bytes(history.read_bytes())
    # the same tensors under the sub-run's teacher name; header and sidecar both say where they came from
    classifiers.save(model, path, arch=meta["arch"], class_names=meta["class_names"], normalisation=meta["normalisation"],
                     config_hash=meta["config_hash"], extra=extra)
    return f"{name} reused" + (" (trained now)" if trained else "")


def _captions_stage(run, sub, i: int, n: int, progress: bool) -> str:
    table = pool_captions(run, progress=progress).set_index("index").loc[sub.splits().D].reset_index()
    cc = run.cfg.captions
    io.write_json(sub.path(artifacts.CAPTIONS_DIR, "captions.json"),
                  {"captioner": cc.captioner, "n": len(table), "dataset": sub.dataset, "max_new_tokens": cc.max_new_tokens,
                   "model": cc.model if cc.captioner == "blip2" else None, "source": "the parent run's mia/pipelines/captions_P.csv"})
    io.save_csv(artifacts.captions_path(sub), table[list(captions.COLUMNS)])
    captions.caption_run(sub, progress=False)  # reads the table back and writes the two views
    return f"{len(table)} captions from captions_P.csv"


def _captions_done(sub) -> bool:
    folder = sub.dir / artifacts.CAPTIONS_DIR
    return all((folder / f).is_file() for f in (artifacts.CAPTIONS_FILE, prompt_files.original_order_name(sub.dataset),
                                                prompt_files.grouped_by_class_name(sub.dataset)))


def _lora_stage(run, sub, i: int, n: int, progress: bool) -> str:
    lora.finetune(sub, progress=progress)
    return f"{io.read_json(artifacts.adapter_path(sub).parent / 'training.json')['steps']} steps"


def _synthesis_stage(run, sub, i: int, n: int, progress: bool) -> str:
    summary = synthesis.generate(sub, progress=progress, multiples=cardinalities(run.cfg))
    return f"{summary['images_made']} images made now"


def _base_synthesis_stage(run, sub, i: int, n: int, progress: bool) -> str:
    base = baselines.base_synthetic(sub, multiples=cardinalities(run.cfg), progress=progress)
    return f"base generator's sets of {', '.join(f'{m:g}' for m in synthetic.available_multiples(base))}x|D|"


def _student_stage(variant: str, multiple: float) -> Callable[..., str]:
    def stage(run, sub, i: int, n: int, progress: bool) -> str:
        soft = baselines.VARIANTS[variant][1] == "soft"
        teacher = train.teacher(sub, progress=progress) if soft else None
        model = baselines.student(sub, variant, multiple, teacher, progress=progress)
        return f"{model.info.get('train_size')} synthetic images"

    return stage


def _queries_stage(pool_loader: Callable[[], Any]) -> Callable[..., str]:
    def stage(run, sub, i: int, n: int, progress: bool) -> str:
        p = pool_loader()
        qs = mia.queries(run)
        made = []
        for variant, m in students(run.cfg):
            name = variant_logits_name(i, variant, m)
            if artifacts.logits_path(run, name).is_file() and artifacts.logits_path(run, name, True).is_file():
                continue
            model = classifiers.load_trained(baselines.student_file(sub, variant, m))
            io.save_array(artifacts.logits_path(run, name, True), mia.query_logits(model, p.population_images, run.cfg, qs))
            io.save_array(artifacts.logits_path(run, name), mia.query_logits(model, p.images, run.cfg, qs))
            made.append(name)
        return f"{len(made)} students queried on P and Z"

    return stage


def _stages(run, sub, i: int, pool_loader: Callable[[], Any]) -> list[tuple[str, Callable[[], bool], Callable[..., str]]]:
    """(name, done?, run) of pipeline ``i``'s stages, in order."""
    pairs = students(run.cfg)

    def teacher_done() -> bool:
        path = artifacts.weights_file(sub, "teacher")
        return path.is_file() and path.with_suffix(".json").is_file()

    out = [("teacher", teacher_done, _teacher_stage),
           ("captions", lambda: _captions_done(sub), _captions_stage),
           ("lora", lambda: artifacts.adapter_path(sub).is_file(), _lora_stage),
           ("synthesis", lambda: synthetic.is_complete(sub), _synthesis_stage)]
    if any(baselines.VARIANTS[v][0] == "base" for v in run.cfg.gkd.baselines):
        out.append(("base_synthesis", lambda: synthetic.is_complete(baselines.open_base(sub)), _base_synthesis_stage))
    for v, m in pairs:
        out.append((baselines.variant_name(v, m), lambda v=v, m=m: baselines.student_file(sub, v, m).is_file(),
                    _student_stage(v, m)))
    names = [variant_logits_name(i, v, m) for v, m in pairs]
    out.append(("queries", lambda: all(artifacts.logits_path(run, nm).is_file() and artifacts.logits_path(run, nm, True).is_file() for nm in names),
                _queries_stage(pool_loader)))
    return out


def run_pipeline(run, i: int, n: int | None = None, *, progress: bool = True, pool_loader: Callable[[], Any] | None = None) -> list[str]:
    """Run (or finish) every stage of pipeline ``i`` of ``n``; returns the stages that ran now."""
    n = n_pipelines(run, n)
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


def n_pipelines(run, n: int | None = None) -> int:
    """The number of shadow pipelines: ``n``, else ``mia.n_pipelines``; an even number from 2 to 100."""
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
    n = n_pipelines(run, n)
    mia.ensure_mask(run, n)  # membership first, before any pipeline trains
    pool_loader = _lazy(lambda: mia.pool(run))
    if shard is None and run.cfg.study.workers > 1:  # study.workers processes share the pipelines (tckr.runfolder.parallel)
        pool_captions(run, progress=progress)  # P's captions file is shared: written once, before the workers start
        out = parallel.run_shards(run, "tckr.privacy.pipelines:train_pipelines", kwargs={"n": n}, desc="shadow pipelines",
                                  done=lambda: load_stages(run).query("stage == 'queries'")["pipeline"].nunique(),
                                  total=n, progress=progress)
        return sorted(i for part in out for i in part)
    k, m = shards.parse_shard(shard)
    mine = shards.mine(range(n), shard)
    note(f"shadow pipelines {mine} of {n} (shard {k}/{m}), cardinalities {cardinalities(run.cfg)}")
    t0 = time.perf_counter()
    worked = [i for i in mine if run_pipeline(run, i, n, progress=progress, pool_loader=pool_loader)]
    note(f"shadow pipelines: {len(worked)} worked on now, {time.perf_counter() - t0:.1f} s")
    return worked
