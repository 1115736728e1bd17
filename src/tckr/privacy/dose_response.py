"""The dose-response control: how much leakage each attack can see, measured by planting it.

A finished run with shadow pipelines (``mia.n_pipelines`` >= 4) is the starting point; its teachers, LoRAs and
synthetic sets are reused. At the run's own |D|, a share rho of every synthetic set of one cardinality
(``power.cardinality``; the target's and every pipeline's alike, each with its own members) is replaced by
image-to-image near-copies of members: the set's row keeps its prompt and noise seed, and starts from the image of D
whose caption is that prompt, noised to ``strength`` of the schedule (the path ``synthesis.init_strength`` uses:
:func:`tckr.generation.synthesis.img2img`, :func:`~tckr.generation.synthesis.render`, ``plan_sources``). Which rows
are replaced is one seeded draw of positions in the set's training order (``power.seed``), the same in the target
and every pipeline, and nested (the rows of a smaller rho are among those of a larger one), so a pipeline replicates
the target's procedure and the doses differ only by the dose. Only the students are retrained, each with its
original seed: at rho = 0 the student is the original bit for bit (tested), so rho 0 reuses the run's student logits.

Doses (:func:`doses`): every rho of ``power.rhos`` at ``power.strength`` (the rho series) and every strength of
``power.strengths`` at ``power.strength_rho`` (the strength series). Each dosed student is attacked with every attack
of ``power.attacks`` by leave-one-pipeline-out (pipeline ``j``'s student the target, the other pipelines its
references, as :func:`tckr.privacy.pipeline_attacks.pipeline_spread`); the target's dosed student, with every
pipeline as reference, is reported beside them (``set`` = ``target``) and never counted as a replicate.
:mod:`tckr.privacy.power_analysis` turns the replicates into detection probabilities and minimum detectable effects.

Files, all written to a temporary name and renamed: ``power/plan.json`` (the dose grid and the replaced positions;
a resumed study with other settings is refused), ``power/nearcopies/<set>_s<strength>.npy`` (the near-copies of the
largest rho at that strength), ``power/students/<dose>/<set>.safetensors`` (+ sidecar, history),
``power/logits/<dose>/<set>.npy`` (+ ``_population``), ``results/power_replicates.csv``, ``results/power.csv`` and
``results/mde.csv``, and the null (:func:`attack_null`, from 6 pipelines): ``results/power_null_replicates.csv`` and
``results/power_null.csv``. A killed study resumes per (dose, set): students whose weights exist are not trained again.

CLI: ``tckr power --run-dir RUN`` (``--propose``: the headline lines to paste into the config).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tckr.classification import batches, checkpoints, classifiers, train
from tckr.core import io
from tckr.core.progress import note, tqdm
from tckr.generation import synthesis
from tckr.privacy import attacks, metrics, mia, pipeline_attacks, pipelines, power_analysis
from tckr.runfolder import artifacts, environment, synthetic

POWER_DIR = "power"
TARGET = "target"
REPLICATE_COLUMNS = ["rho", "strength", "set", "attack", "auc", "auc_lo", "auc_hi", "tpr_at_1pct", "p_mann_whitney",
                     "auc_dosed", "n_replaced", "n_members", "n_nonmembers", "n_references", "note"]
NULL_REPLICATE_COLUMNS = ["set", "label", "attack", "auc", "auc_lo", "auc_hi", "tpr_at_1pct", "p_mann_whitney", "n_members",
                          "n_nonmembers", "n_references", "note"]


@dataclass(frozen=True)
class Dose:
    """A share ``rho`` of the synthetic set replaced by near-copies made at image-to-image ``strength`` (0 at rho 0)."""

    rho: float
    strength: float

    @property
    def tag(self) -> str:
        return f"rho{self.rho:g}_s{self.strength:g}"


def doses(cfg) -> list[Dose]:
    """The dose grid: the rho series at ``power.strength`` and the strength series at ``power.strength_rho``."""
    p = cfg.power
    grid = {Dose(float(r), float(p.strength) if r else 0.0) for r in p.rhos}
    grid |= {Dose(float(p.strength_rho), float(s)) for s in p.strengths}
    return sorted(grid, key=lambda d: (d.rho, d.strength))


def cardinality(cfg) -> float:
    """The cardinality whose students are dosed: ``power.cardinality``, else the largest pipeline cardinality."""
    return float(cfg.power.cardinality) if cfg.power.cardinality else max(pipelines.cardinalities(cfg))


def replaced_rows(n: int, rho: float, seed: int) -> np.ndarray:
    """Positions (in the set's training order) of the ``round(rho * n)`` rows replaced at share ``rho``: a prefix of
    one seeded permutation of the ``n`` rows, so larger shares contain smaller ones."""
    if not 0 <= rho <= 1:
        raise ValueError(f"rho must be a share in [0, 1], got {rho}")
    return np.random.default_rng([int(seed), int(n)]).permutation(n)[: int(round(rho * n))]


def set_names(n: int) -> list[str]:
    return [TARGET] + [pipelines.pipeline_name(i) for i in range(n)]


def _sub(run, name: str):
    return run if name == TARGET else pipelines.open_pipeline(run, int(name.rsplit("_", 1)[1]))


def power_path(run, *parts: str) -> Path:
    """A path under ``<run>/power/`` (parents created)."""
    return run.path(POWER_DIR, *parts)


def replaced_members(sub, multiple: float, rows: np.ndarray) -> np.ndarray:
    """Positions in ``sub``'s D of the members whose near-copies replace ``rows`` of its set of ``multiple``: each row's
    prompt's own image (:func:`tckr.generation.synthesis.plan_sources`), a member of that set's own training half."""
    plan = synthesis.sampling_plan(sub, multiple)
    return synthesis.plan_sources(sub)[plan["i"].to_numpy()[rows]]


def near_copies(sub, multiple: float, rows: np.ndarray, strength: float, gen=None) -> np.ndarray:
    """uint8 images of ``rows`` of ``sub``'s set of ``multiple``, each made image-to-image from its prompt's own member
    at ``strength`` with the row's prompt and noise seed, by ``sub``'s own adapted generator (``gen``: it, loaded)."""
    plan = synthesis.sampling_plan(sub, multiple).iloc[rows]
    starts = synthesis.plan_sources(sub)[plan["i"].to_numpy()]
    D = sub.real("D")
    pipe = synthesis.img2img((gen or synthesis.load_generator(sub)).pipe)
    res, bs = sub.cfg.generator.resolution, sub.cfg.synthesis.batch_size
    out = np.empty((len(rows), res, res, 3), dtype=np.uint8)
    prompts, seeds = plan["prompt"].tolist(), plan["seed"].tolist()
    for s in range(0, len(rows), bs):
        out[s:s + bs] = synthesis.render(sub.cfg, pipe, prompts[s:s + bs], seeds[s:s + bs], init=D.images[starts[s:s + bs]],
                                         strength=strength)
    return out


def dosed_set(sub, multiple: float, rows: np.ndarray, copies: np.ndarray) -> synthetic.SyntheticSet:
    """``sub``'s synthetic set of ``multiple`` in RAM with ``rows`` replaced by ``copies`` (labels and order kept)."""
    s = synthetic.load_synthetic(sub, multiple)
    images = s.images.copy()
    images[rows] = copies[: len(rows)]
    return synthetic.SyntheticSet(images=images, labels=s.labels, prompts=s.prompts, index=s.index)


def train_student(sub, multiple: float, images: np.ndarray, labels: np.ndarray, path: Path, info: dict, *,
                  progress: bool = True) -> classifiers.TrainedClassifier:
    """A student of ``sub`` trained on ``images`` exactly as :func:`tckr.classification.train.student` trains one on the
    set (same teacher, seed, validation and settings), saved at ``path``: on the unchanged set, the same weights."""
    cfg = sub.cfg
    mode = cfg.gkd.label_mode
    if cfg.gkd.regenerate_every:
        raise ValueError(f"gkd.regenerate_every: {cfg.gkd.regenerate_every} is not accepted by the power study; accepted: 0 "
                         "(a redrawn training set would leave the near-copies out)")
    teacher = train.teacher(sub, progress=progress) if mode == "soft" else None
    arch, val = cfg.classifier.student_arch, sub.real("val")
    model, _ = train.fit(cfg, arch, images, labels, val.images, val.labels, seed=sub.seed_for(cfg.train.seed),
                         history_path=path.with_name(f"{path.stem}_history.csv"), progress=progress, desc=path.stem,
                         teacher=teacher, num_classes=len(sub.class_names), checkpoint=checkpoints.checkpoint_file(path))
    classifiers.save(model, path, arch=arch, class_names=sub.class_names,
                     normalisation=model.normalisation or batches.normalisation(cfg), config_hash=cfg.hash(),
                     extra={"role": "student", "name": path.stem, "label_mode": mode, "multiple": float(multiple), **info,
                            **model.info})
    checkpoints.checkpoint_file(path).unlink(missing_ok=True)
    return classifiers.load_trained(path, arch=arch, num_classes=len(sub.class_names))


# ---------------------------------------------------------------- the study
def _replicates(run, n: int | None) -> int:
    """The number of pipelines, at least 4: with 2, the one left out has each example only IN or only OUT."""
    n = pipelines.n_pipelines(run, n)
    if n < 4:
        raise ValueError(f"mia.n_pipelines: {n} is not accepted by the power study; accepted: an even number >= 4 (each "
                         "pipeline's student is attacked with the others as references)")
    return n


def _plan(run, n: int) -> dict:
    cfg = run.cfg
    m = cardinality(cfg)
    size = synthetic.set_size(run, m)
    plan = {"cardinality": m, "set_size": size, "n_pipelines": n, "seed": cfg.power.seed,
            "doses": [[d.rho, d.strength] for d in doses(cfg)], "label_mode": cfg.gkd.label_mode,
            "rows": replaced_rows(size, max(d.rho for d in doses(cfg)), cfg.power.seed).tolist()}
    f = power_path(run, "plan.json")
    if f.is_file():
        old = io.read_json(f)
        changed = [k for k in plan if old.get(k) != plan[k]]
        # a grid extended with more doses keeps every dose made before (the same rows: a prefix of one permutation)
        extended = {"doses", "rows"}.issuperset(changed) and all(d in plan["doses"] for d in old["doses"]) \
            and plan["rows"][:len(old["rows"])] == old["rows"]
        if changed and not extended:
            raise ValueError(f"{f} was made with other power settings ({', '.join(changed)} differ); delete {f.parent} "
                             "to start the power study over (a grid extended by more doses resumes)")
        if changed:
            note(f"power grid extended: {len(plan['doses']) - len(old['doses'])} more doses; the {len(old['doses'])} made are kept")
            io.write_json(f, plan)
    else:
        io.write_json(f, plan)
    return plan


def _copies(run, sub, name: str, m: float, strength: float, k: int, seed: int, pipe_cache: dict) -> np.ndarray:
    f = power_path(run, "nearcopies", f"{name}_s{strength:g}.npy")
    if f.is_file():
        saved = io.load_array(f)
        if len(saved) >= k:
            return saved
    if name not in pipe_cache:
        pipe_cache.clear()  # one set's generator at a time
        pipe_cache[name] = synthesis.load_generator(sub)
    rows = replaced_rows(synthetic.set_size(sub, m), 1.0, seed)[:k]
    copies = near_copies(sub, m, rows, strength, pipe_cache[name])
    io.save_array(f, copies)
    return copies


def _load_intact(weights: Path) -> classifiers.TrainedClassifier | None:
    """A dosed student trained before, or None (trained now) when missing or half written (no sidecar, damaged)."""
    if not weights.is_file():
        return None
    try:
        return classifiers.load_trained(weights)
    except io.CorruptFileError as e:
        print(f"{e}\n-> training it again")
        return None


def _logits(run, name: str, dose: Dose, m: float, population: bool = False) -> Path:
    if dose.rho == 0:  # the run's own students: rho 0 reproduces them bit for bit
        mode = run.cfg.gkd.label_mode
        own = artifacts.model_name("student", m, mode) if name == TARGET else \
            pipelines.student_logits_name(int(name.rsplit("_", 1)[1]), m, mode)
        return artifacts.logits_path(run, own, population)
    return power_path(run, "logits", dose.tag, f"{name}{'_population' if population else ''}.npy")


def train_doses(run, n: int | None = None, *, progress: bool = True) -> list[str]:
    """Train and query every dosed student not made yet (resumable per dose and set); returns those made now."""
    cfg = run.cfg
    n = _replicates(run, n)
    plan = _plan(run, n)
    m, rows_all = plan["cardinality"], np.asarray(plan["rows"], dtype=np.int64)
    grid = [d for d in doses(cfg) if d.rho > 0]
    if not artifacts.logits_path(run, artifacts.model_name("student", m, cfg.gkd.label_mode)).is_file():
        mia.query_targets(run, [artifacts.model_name("student", m, cfg.gkd.label_mode)], train_teacher=False, progress=progress)
    environment.set_threads(cfg)
    pool = None
    made, pipe_cache = [], {}
    todo = [(name, d) for name in set_names(n) for d in grid if not _logits(run, name, d, m).is_file()]
    bar = tqdm(todo, desc="power: dosed students", unit="students", disable=not progress)
    for name, d in bar:
        t0 = time.perf_counter()
        sub = _sub(run, name)
        k = int(round(d.rho * plan["set_size"]))
        k_max = max(int(round(e.rho * plan["set_size"])) for e in grid if math.isclose(e.strength, d.strength))
        copies = _copies(run, sub, name, m, d.strength, k_max, cfg.power.seed, pipe_cache)
        rows = rows_all[:k]
        weights = power_path(run, "students", d.tag, f"{name}.safetensors")
        model = _load_intact(weights)
        if model is None:
            s = dosed_set(sub, m, rows, copies)
            model = train_student(sub, m, s.images, s.labels, weights, {"rho": d.rho, "strength": d.strength, "set": name,
                                                                      "n_replaced": int(k)}, progress=progress)
        pool = pool or mia.pool(run)
        qs = mia.queries(run)
        io.save_array(_logits(run, name, d, m, True), mia.query_logits(model, pool.population_images, cfg, qs))
        io.save_array(_logits(run, name, d, m), mia.query_logits(model, pool.images, cfg, qs))
        made.append(f"{d.tag}/{name}")
        note(f"power {d.tag} {name}: {k} of {plan['set_size']} rows replaced, {time.perf_counter() - t0:.1f} s")
    return made


def _score(attack: str, phi, refs, ref_in, z, refs_z, cfg, use=None) -> np.ndarray | str:
    if attack.startswith("lira"):
        need = 1 if attack.endswith("fixed") else 2
        counted = np.ones_like(ref_in) if use is None else use
        n_in, n_out = int((ref_in & counted).sum(0).min()), int((~ref_in & counted).sum(0).min())
        if n_out < need or ("online" in attack and n_in < need):
            return f"skipped: {attack} needs {need} IN and OUT references per example (have {n_in} IN, {n_out} OUT)"
        return attacks.lira_from_stable(phi, refs, ref_in, online="online" in attack, fixed_variance=attack.endswith("fixed"),
                                        use=use)
    return pipeline_attacks.reference_score(cfg, attack, phi, refs, ref_in, z, refs_z)


def _row(scores: np.ndarray, members: np.ndarray, dosed: np.ndarray, cfg, seed: int) -> dict:
    alpha = cfg.power.alpha
    r = metrics.attack_metrics(scores, members)
    lo, hi = metrics.bootstrap_ci(scores, members, cfg.mia.n_bootstrap, seed, level=1 - alpha)["auc"]
    keep = dosed | ~members
    auc_dosed = metrics.attack_metrics(scores[keep], members[keep])["auc"] if dosed.any() else np.nan
    return {"auc": r["auc"], "auc_lo": lo, "auc_hi": hi, "tpr_at_1pct": r["tpr_at_1pct"],
            "p_mann_whitney": power_analysis.mann_whitney_p(scores, members), "auc_dosed": auc_dosed,
            "n_members": int(members.sum()), "n_nonmembers": int((~members).sum())}


def attack_doses(run, n: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Every attack of ``power.attacks`` on every dosed student (leave one pipeline out; the target with all
    pipelines), on P without its mislabeled canaries: ``results/power_replicates.csv``."""
    cfg = run.cfg
    n = _replicates(run, n)
    plan = _plan(run, n)
    m, rows_all = plan["cardinality"], np.asarray(plan["rows"], dtype=np.int64)
    keep = mia.ensure_mask(run, n)
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    labels, z_labels = saved["labels"], saved["population_labels"]
    regular = ~mia.canary_mask(run)
    where = {int(ix): p for p, ix in enumerate(mia.pool_index(run))}
    out = []
    for d in tqdm(doses(cfg), desc="power: attacks", unit="doses", disable=not progress):
        k = int(round(d.rho * plan["set_size"]))
        names = set_names(n)
        phi = np.stack([attacks.stable_logit(io.load_array(_logits(run, nm, d, m)), labels) for nm in names])
        z = np.stack([attacks.stable_logit(io.load_array(_logits(run, nm, d, m, True)), z_labels) for nm in names])
        for t, name in enumerate(names):
            sub = _sub(run, name)
            D = sub.splits().D
            dosed = np.zeros(len(regular), bool)
            dosed[[where[int(D[p])] for p in replaced_members(sub, m, rows_all[:k])]] = True
            if name == TARGET:
                others, member, use = np.arange(1, n + 1), saved["member"], None
            else:
                j = t - 1
                others, member = pipeline_attacks.lopo_references("lira", j, n) + 1, keep[j]
                use = attacks.balanced_use(keep[others - 1], seed=cfg.mia.seed + j)  # as pipeline_spread: no bias from j's own membership
            for a in cfg.power.attacks:
                refs = others
                if a.startswith("rmia") and name != TARGET:  # without j's complementary pair, as pipeline_spread
                    refs = pipeline_attacks.lopo_references(a, t - 1, n) + 1
                s = _score(a, phi[t], phi[refs], keep[refs - 1], z[t], z[refs], cfg, use if refs is others else None)
                base = {"rho": d.rho, "strength": d.strength, "set": name, "attack": a, "n_replaced": k, "n_references": len(refs)}
                if isinstance(s, str):
                    out.append({**base, "note": s})
                    continue
                out.append({**base, **_row(s[regular], member[regular], dosed[regular], cfg, cfg.mia.seed + t), "note": ""})
    table = pd.DataFrame(out, columns=REPLICATE_COLUMNS)
    io.save_csv(run.path("results", "power_replicates.csv"), table)
    return table


def null_pairs(n: int) -> list[tuple[int, int]]:
    """(target, label) pipeline indices of the null replicates: each pipeline's student scored against the membership
    of the first pipeline of every other complementary pair (the second's is the first's complement: not a new draw)."""
    return [(j, 2 * q) for j in range(n) for q in range(n // 2) if q != j // 2]


def attack_null(run, n: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """The null of every attack of ``power.attacks`` (``results/power_null_replicates.csv``): pipeline ``j``'s undosed
    student scored with the references of neither ``j``'s pair nor ``k``'s, and judged against pipeline ``k``'s
    membership (:func:`null_pairs`). Pairs draw their halves independently, so the scores carry no information on
    ``k``'s membership by construction: every rejection is a false positive. Needs 6 pipelines (2 pairs of references)."""
    cfg = run.cfg
    n = _replicates(run, n)
    if n < 6:
        raise ValueError(f"mia.n_pipelines: {n} is too few for the null; accepted: an even number >= 6 (the references "
                         "leave out both the target's pair and the label's pair)")
    m = cardinality(cfg)
    keep = mia.ensure_mask(run, n)
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    regular = ~mia.canary_mask(run)
    d, names = Dose(0.0, 0.0), [pipelines.pipeline_name(i) for i in range(n)]
    phi = np.stack([attacks.stable_logit(io.load_array(_logits(run, nm, d, m)), saved["labels"]) for nm in names])
    z = np.stack([attacks.stable_logit(io.load_array(_logits(run, nm, d, m, True)), saved["population_labels"]) for nm in names])
    out = []
    for j, k in tqdm(null_pairs(n), desc="power: null", unit="pairs", disable=not progress):
        refs = np.array([i for i in range(n) if i // 2 not in (j // 2, k // 2)])
        for a in cfg.power.attacks:
            s = _score(a, phi[j], phi[refs], keep[refs], z[j], z[refs], cfg)
            base = {"set": names[j], "label": names[k], "attack": a, "n_references": len(refs)}
            if isinstance(s, str):
                out.append({**base, "note": s})
                continue
            row = _row(s[regular], keep[k][regular], np.zeros(int(regular.sum()), bool), cfg, cfg.mia.seed + j)
            out.append({**base, **{c: row[c] for c in NULL_REPLICATE_COLUMNS if c in row}, "note": ""})
    table = pd.DataFrame(out, columns=NULL_REPLICATE_COLUMNS)
    io.save_csv(run.path("results", "power_null_replicates.csv"), table)
    return table


def summarise(run, replicates: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results/power.csv`` and ``results/mde.csv`` from ``results/power_replicates.csv``, and
    ``results/power_null.csv`` from ``results/power_null_replicates.csv`` where the run has it."""
    p = run.cfg.power
    reps = artifacts.read_result(run.dir, "power_replicates.csv") if replicates is None else replicates
    reps = reps[reps["auc"].notna()]
    power = power_analysis.power_table(reps, list(p.tests), p.alpha, p.strength, p.strength_rho)
    table = power_analysis.mde(power, p.power_target)
    io.save_csv(run.path("results", "power.csv"), power)
    io.save_csv(run.path("results", "mde.csv"), table)
    if run.path("results", "power_null_replicates.csv").is_file():
        null = artifacts.read_result(run.dir, "power_null_replicates.csv")
        io.save_csv(run.path("results", "power_null.csv"), power_analysis.null_table(null, list(p.tests), p.alpha))
    return power, table


def run_all(run, *, progress: bool = True) -> dict[str, pd.DataFrame]:
    """The whole power study on a finished run: dosed students, attacks, power and minimum detectable effects."""
    train_doses(run, progress=progress)
    reps = attack_doses(run, progress=progress)
    if _replicates(run, None) >= 6:
        attack_null(run, progress=progress)
    power, table = summarise(run, reps)
    return {"replicates": reps, "power": power, "mde": table}
