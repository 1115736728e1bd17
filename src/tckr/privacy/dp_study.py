"""The DP study (``tckr dp``, docs/dp.md): the defences a practitioner would pick instead of distillation, trained
and attacked on a run folder that has finished phases 00-04, with the privacy-utility numbers in one table.

For each target ε of ``dp.epsilons``:

- ``dp_teacher``: the teacher's architecture trained with DP-SGD on D (:func:`tckr.classification.dp.fit_private`),
  attacked by the run's pre-registered headline attack (:func:`headline_attack`, with its population sample Z)
  over ``dp.n_shadows`` shadows trained by the same DP recipe on the halves of P that
  the run's membership mask (``mia/keep.npy``) gives;
- ``dp_lora_student`` (``dp.lora``): a DP LoRA (:func:`tckr.generation.dp_lora.finetune_private`), a class-prompted
  synthetic set of the largest cardinality, and three students on it: hard labels (ε-DP by post-processing), the
  non-private teacher's soft labels (no guarantee) and the DP teacher's soft labels (ε_LoRA + ε_teacher, basic
  composition); attacked by the same attack over the run's classifier shadows (reference models on real halves of P,
  not DP-LoRA pipelines: weaker than the pipeline attack the run's students get, and said so in ``references``).

And ``matched_teacher`` (``dp.matched_accuracy``): the non-private teacher's recipe and seed stopped at the first
epoch whose validation accuracy reaches the best student's, attacked like the teacher.

Every DP model is audited (:func:`check_dp_audit`): the one-run ε lower bound of its attack scores
(:func:`tckr.privacy.auditing.epsilon_one_run`, δ = the model's δ) must stay below the accountant's ε.

Files under ``<run>/dp/``: ``teachers/``, ``shadows/eps<ε>/``, ``lora/``, ``students/`` (weights and JSON records),
``logits/<model>[_population].npy`` (float32 [|P| or |Z|, queries, classes]); ``<run>/results/dp_costs.csv``: the wall
seconds of every model made (:func:`costs`); ``<run>/results/dp_models.csv``: :data:`COLUMNS`,
in percent (as every table of the study) with 95% intervals (accuracy: Wilson on the test split; AUC and TPR at 1% FPR: the bootstrap
of :func:`tckr.privacy.metrics.summarise`). Finished models are skipped, so an interrupted study resumes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tckr.classification import batches, checkpoints, classifiers, dp, inference, train
from tckr.core import io, shards
from tckr.core.progress import tqdm
from tckr.generation import dp_lora, lora
from tckr.privacy import attack_results, auditing, ledger, metrics, mia
from tckr.privacy.attacks import score, stable_logit
from tckr.runfolder import artifacts, parallel

RESULT = "dp_models.csv"
KINDS = ("dp_teacher", "dp_lora_student", "matched_teacher")
COLUMNS = ["study", "model", "kind", "accuracy", "accuracy_lo", "accuracy_hi", "tpr_at_1", "tpr_at_1_lo", "tpr_at_1_hi",
           "auc", "auc_lo", "auc_hi", "eps_lb", "source", "eps_accountant", "delta", "noise_multiplier", "dp_guarantee",
           "wall_s", "attack", "references"]
LORA_KEY = 100_000  # seed keys: 0 the DP teacher, i + 1 its shadow i (fewer than this), these the DP LoRA and its synthetic set


class DPAuditError(AssertionError):
    """An empirical ε lower bound above the accountant's ε: the DP code, or its accounting, is wrong."""


def check_dp_audit(eps_lb: float, eps_accountant: float, name: str = "model") -> None:
    """Raise :class:`DPAuditError` when the audit's lower bound ``eps_lb`` exceeds the accountant's ``eps_accountant``.

    The lower bound holds with 95% confidence for a correct (ε, δ)-DP training, so a bound above ε means the clipping,
    the noise or the accounting is broken; a bound below it says nothing beyond that (audits are loose)."""
    if not (eps_lb >= 0 and eps_accountant >= 0):
        raise ValueError(f"{name}: eps_lb and eps_accountant must be numbers >= 0, got {eps_lb!r}, {eps_accountant!r}")
    if eps_lb > eps_accountant:
        raise DPAuditError(f"{name}: the empirical lower bound eps_lb = {eps_lb:.3f} exceeds the accountant's epsilon "
                           f"{eps_accountant:.3f}; the DP-SGD code or its accounting is broken (no clipping? no noise?)")


def dp_dir(run, *parts: str) -> Path:
    """``<run>/dp/<parts>``: the one home of the DP study's file paths."""
    return run.path("dp", *parts)


def accuracy_interval(correct: np.ndarray) -> tuple[float, float, float]:
    """Accuracy and its 95% Wilson interval (:func:`tckr.privacy.metrics.wilson`), in percent, from a boolean array of
    correct predictions."""
    n = int(np.size(correct))
    if n == 0:
        return math.nan, math.nan, math.nan
    lo, hi = metrics.wilson(float(np.sum(correct)), n)
    return 100 * float(np.mean(correct)), 100 * lo, 100 * hi


def _tag(eps: float) -> str:
    return f"eps{eps:g}"


def _seed(run, *key: float) -> int:
    return int(np.random.SeedSequence([run.seed_for(run.cfg.dp.seed), *[int(round(k * 1000)) for k in key]]).generate_state(1)[0])


def _logits(run, name: str, model, p: mia.Pool) -> tuple[np.ndarray, np.ndarray]:
    """A model's query logits on P and on the population sample Z (RMIA's z samples), written once."""
    out = []
    for images, suffix in ((p.images, ""), (p.population_images, "_population")):
        f = dp_dir(run, "logits", f"{name}{suffix}.npy")
        if not f.is_file():
            io.save_array(f, mia.query_logits(model, images, run.cfg, mia.queries(run)))
        out.append(io.load_array(f))
    return out[0], out[1]


def _test_accuracy(run, model) -> tuple[float, float, float]:
    test = run.real("test")
    pred = inference.predict_logits(model, test.images, run.cfg).argmax(1)
    return accuracy_interval(pred == np.asarray(test.labels))


def headline_attack(run) -> str:
    """The attack the DP study scores: the run's pre-registered headline (``mia.headline_attack`` when a power study
    fixed it, else the ``mia.headline`` rule at the DP study's shadow count), the one its ledger reads for the
    teacher, so every point of the privacy-utility plane is measured by one attack."""
    cfg = run.cfg
    return ledger.headline_record(cfg.mia.headline, n_shadows(cfg),
                                  attack=cfg.mia.headline_attack)["attack"]


def _attack(run, target: tuple[np.ndarray, np.ndarray], shadows: list[tuple[np.ndarray, np.ndarray]], keep: np.ndarray,
            p: mia.Pool, delta: float, references: str) -> dict[str, Any]:
    """Score ``target`` (logits on P and Z) with the headline attack over ``shadows`` (the same pairs; membership
    ``keep``), summarised in percent with the one-run ε lower bound at ``delta``."""
    cfg, head = run.cfg, headline_attack(run)
    shadow_phi = np.stack([stable_logit(s[0], p.labels) for s in shadows])
    shadow_z = np.stack([stable_logit(s[1], p.population_labels) for s in shadows])
    s = score(head, stable_logit(target[0], p.labels), shadow_phi, keep, target_z_phi=stable_logit(target[1], p.population_labels),
              shadow_z_phi=shadow_z, queries=mia.queries(run), rmia_a=cfg.mia.rmia_a, rmia_gamma=cfg.mia.rmia_gamma)
    m = metrics.summarise(s, p.member, cfg.mia.n_bootstrap, run.seed_for(cfg.mia.seed))
    pct = {k: 100 * m[k] for k in ("tpr_at_1pct", "tpr_at_1pct_lo", "tpr_at_1pct_hi", "auc", "auc_lo", "auc_hi")}
    return {"tpr_at_1": pct["tpr_at_1pct"], "tpr_at_1_lo": pct["tpr_at_1pct_lo"], "tpr_at_1_hi": pct["tpr_at_1pct_hi"],
            "auc": pct["auc"], "auc_lo": pct["auc_lo"], "auc_hi": pct["auc_hi"],
            "eps_lb": auditing.epsilon_one_run(s[p.member], s[~p.member], delta=delta), "attack": head,
            "references": f"{len(shadows)} {references}"}


def _row(run, name: str, kind: str, model, attack: dict[str, float], source: Path, **fields: Any) -> dict[str, Any]:
    acc, lo, hi = _test_accuracy(run, model)
    return {"study": run.cfg.study.name, "model": name, "kind": kind, "accuracy": acc, "accuracy_lo": lo, "accuracy_hi": hi,
            **attack, "source": str(source.relative_to(run.dir)), **fields}


def _dp_model(run, path: Path, images: np.ndarray, labels: np.ndarray, eps: float, seed: int, progress: bool, desc: str):
    """A DP classifier at ``eps`` trained on ``images`` (or loaded when finished) and its record."""
    if not dp.is_done(path):
        cfg, val = run.cfg, run.real("val")
        budget = dp.budget_for(cfg, len(labels), eps)
        t0 = time.time()
        model, hist = dp.fit_private(cfg, cfg.classifier.teacher_arch, images, labels, val.images, val.labels, budget,
                                     seed=seed, num_classes=len(run.class_names), progress=progress, desc=desc)
        dp.save(model, path, arch=cfg.classifier.teacher_arch, budget=budget, history=hist,
                extra={"seed": seed, "wall_s": time.time() - t0})
    return dp.load(path, run.cfg, len(run.class_names))


def n_shadows(cfg) -> int:
    """The DP shadows per ε: ``dp.n_shadows``, else ``mia.n_shadows``."""
    return cfg.dp.n_shadows or cfg.mia.n_shadows


def _classifier(run, eps: float, shadow: int | None) -> tuple[str, Path, int]:
    """Name, weights path and seed of the DP teacher at ``eps`` (``shadow`` None) or of its DP shadow ``shadow``."""
    if shadow is None:
        name = f"dp_teacher_{_tag(eps)}"
        return name, dp_dir(run, "teachers", f"{name}.safetensors"), _seed(run, eps, 0)
    return (f"{_tag(eps)}_{mia.shadow_name(shadow)}", dp_dir(run, "shadows", _tag(eps), f"{mia.shadow_name(shadow)}.safetensors"),
            _seed(run, eps, shadow + 1))


def _dp_classifier(run, eps: float, shadow: int | None, p: mia.Pool | None, keep: np.ndarray, progress: bool):
    """The DP teacher at ``eps`` (on D) or its DP shadow ``shadow`` (on the half of P that ``keep`` gives), trained or
    loaded: ``(name, path, model, record)``."""
    name, path, seed = _classifier(run, eps, shadow)
    if shadow is None:
        D = run.real("D")
        images, labels = D.images, D.labels
    else:
        images, labels = p.images[keep[shadow]], p.labels[keep[shadow]]
    model, rec = _dp_model(run, path, images, labels, eps, seed, progress, name)
    return name, path, model, rec


def dp_teacher_row(run, eps: float, p: mia.Pool, keep: np.ndarray, *, progress: bool = True) -> tuple[dict[str, Any], Any]:
    """Train (or load) the DP teacher at ``eps`` and its DP shadows, attack it and audit it: its row and the model."""
    name, path, model, rec = _dp_classifier(run, eps, None, p, keep, progress)
    shadows = []
    for i in tqdm(range(len(keep)), desc=f"DP shadows {_tag(eps)}", unit="shadows", disable=not progress, leave=False):
        sname, _, smodel, _ = _dp_classifier(run, eps, i, p, keep, progress)
        shadows.append(_logits(run, sname, smodel, p))
    attack = _attack(run, _logits(run, name, model, p), shadows, keep, p, rec["delta"], "DP shadows (the same DP-SGD recipe)")
    row = _row(run, name, "dp_teacher", model, attack, path.with_suffix(".json"), eps_accountant=rec["epsilon_accountant"],
               delta=rec["delta"], noise_multiplier=rec["noise_multiplier"], dp_guarantee=f"ε={rec['epsilon_accountant']:.3g} (DP-SGD teacher)",
               wall_s=rec["wall_s"])
    return row, model


def _run_shadow_logits(run, keep: np.ndarray, progress: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """The run's non-private classifier shadows (phase 05's, trained here when missing): their logits on P and Z."""
    mia.train_shadows(run, len(keep), progress=progress)
    return [(io.load_array(artifacts.logits_path(run, mia.shadow_name(i))),
             io.load_array(artifacts.logits_path(run, mia.shadow_name(i), True))) for i in range(len(keep))]


def save_bare(run, model, path: Path, extra: dict[str, Any]) -> Path:
    """Save a bare module of the teacher's architecture as a trained classifier of the run: with the config's input
    size recorded (a bare module's would be 0, and it would be loaded and queried at 224 px; the stem stride is read
    from the module)."""
    cfg = run.cfg
    return classifiers.save(model, path, arch=cfg.classifier.teacher_arch, class_names=run.class_names,
                            normalisation=batches.normalisation(cfg), config_hash=cfg.hash(), extra=extra,
                            input_size=cfg.classifier.input_size)


class _Reached(Exception):
    pass


def matched_teacher_row(run, p: mia.Pool, keep: np.ndarray, *, progress: bool = True) -> dict[str, Any] | None:
    """The teacher's recipe and seed stopped after the first epoch whose validation accuracy reaches the best
    student's (histories in ``classifiers/``), attacked like the teacher; None when no epoch reaches it."""
    cfg = run.cfg
    hist = artifacts.classifier_histories(run.dir)
    students = {k: h for k, h in hist.items() if k != "teacher" and "student" in k}
    if "teacher" not in hist or not students:
        raise FileNotFoundError(f"{run.dir / 'classifiers'} lacks the teacher's or the students' histories: run phase 04 first")
    target = max(float(h["val_accuracy"].max()) for h in students.values())
    epoch = dp.matched_epoch(hist["teacher"], target)
    if epoch is None:
        print(f"matched teacher: no teacher epoch reaches the students' best validation accuracy {target:.2f}%: skipped")
        return None
    path = dp_dir(run, "teachers", "matched_teacher.safetensors")
    if not path.is_file():
        t0, D, val = time.time(), run.real("D"), run.real("val")
        ck = dp_dir(run, "teachers", "matched_teacher.checkpoint.safetensors")

        def stop(e: int) -> None:
            if e >= epoch:
                raise _Reached

        try:
            train.fit(cfg, cfg.classifier.teacher_arch, D.images, D.labels, val.images, val.labels, seed=run.seed_for(cfg.train.seed),
                      progress=progress, desc="matched teacher", checkpoint=ck, on_epoch=stop)
        except _Reached:
            pass
        tensors, meta = io.load_weights(ck)
        state = checkpoints.unpack(meta["tckr_checkpoint"], tensors)
        model = classifiers.build(cfg.classifier.teacher_arch, len(run.class_names), pretrained=False,
                                  input_size=cfg.classifier.input_size, stem_stride=cfg.classifier.stem_stride)
        model.load_state_dict(state["model"])
        save_bare(run, model.eval(), path, {"role": "matched_teacher", "epoch": epoch, "target_val_accuracy": target,
                                            "wall_s": time.time() - t0})
        ck.unlink(missing_ok=True)
    model = classifiers.load_trained(path)
    attack = _attack(run, _logits(run, "matched_teacher", model, p), _run_shadow_logits(run, keep, progress), keep, p,
                     attack_results.EPS_DELTA, "classifier shadows (the teacher's recipe)")
    return _row(run, "matched_teacher", "matched_teacher", model, attack, classifiers.sidecar_path(path),
                eps_accountant=math.inf, delta=math.nan, noise_multiplier=0.0,
                dp_guarantee=f"none (non-private teacher stopped at epoch {model.info['epoch']})", wall_s=model.info["wall_s"])


def _student(run, name: str, images: np.ndarray, labels: np.ndarray, teacher_model, progress: bool):
    path = dp_dir(run, "students", f"{name}.safetensors")
    if not path.is_file():
        cfg, val, t0 = run.cfg, run.real("val"), time.time()
        model, _ = train.fit(cfg, cfg.classifier.student_arch, images, labels, val.images, val.labels,
                             seed=run.seed_for(cfg.train.seed), progress=progress, desc=name, teacher=teacher_model,
                             num_classes=len(run.class_names))
        classifiers.save(model, path, arch=cfg.classifier.student_arch, class_names=run.class_names,
                         normalisation=batches.normalisation(cfg), config_hash=cfg.hash(),
                         extra={"role": "dp_lora_student", "name": name, **model.info, "wall_s": time.time() - t0})
    return classifiers.load_trained(path), path


def _synthetic_path(run, eps: float) -> Path:
    return dp_dir(run, "lora", f"synthetic_{_tag(eps)}.npz")


def dp_lora_set(run, eps: float, progress: bool) -> tuple[Path, Path]:
    """The DP LoRA at ``eps`` and its class-prompted synthetic set of the largest cardinality, trained and made (or
    found finished): their paths."""
    cfg, D = run.cfg, run.real("D")
    adapter = dp_dir(run, "lora", f"lora_{_tag(eps)}.safetensors")
    budget = dp_lora.lora_budget(cfg, len(D), eps, dp.resolved_delta(cfg, len(D)))
    dp_lora.finetune_private(cfg, D.images, lora.training_prompts(run), budget, adapter, seed=_seed(run, eps, LORA_KEY), progress=progress)
    synth = _synthetic_path(run, eps)
    if not synth.is_file():
        t0 = time.time()
        n = int(round(max(cfg.synthesis.cardinalities) * len(D)))
        images, labels = dp_lora.sample(cfg, adapter, run.class_names, n, seed=_seed(run, eps, LORA_KEY + 1), progress=progress)
        with io.atomic_path(synth) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, images=images, labels=labels, seconds=time.time() - t0)
    return adapter, synth


def jobs(run) -> list[tuple[str, float, int]]:
    """Every model the DP study trains before it attacks, as ``(what, ε, shadow index)``, in the order the shards
    of :func:`train_share` deal them: the DP LoRAs first (the longest, so that they spread over the shards), then per ε
    the DP teacher and its DP shadows."""
    cfg = run.cfg
    out = [("lora", float(eps), 0) for eps in cfg.dp.epsilons] if cfg.dp.lora else []
    for eps in cfg.dp.epsilons:
        out += [("teacher", float(eps), 0)] + [("shadow", float(eps), i) for i in range(n_shadows(cfg))]
    return out


def _job_done(run, job: tuple[str, float, int]) -> bool:
    what, eps, i = job
    if what == "lora":
        return _synthetic_path(run, eps).is_file()
    return dp.is_done(_classifier(run, eps, None if what == "teacher" else i)[1])


def train_share(run, shard: str = "1/1", progress: bool = True) -> int:
    """Train the DP study's models of share ``shard`` (``"k/n"``: jobs ``i`` of :func:`jobs` with ``i mod n == k - 1``),
    skipping finished ones; a model's seed depends on the model only, so which share trains it does not matter.
    Returns how many it trained. :func:`run_dp_study` calls it in ``study.workers`` processes before it attacks."""
    k, n = shards.parse_shard(shard)
    keep, p = mia.ensure_mask(run, n_shadows(run.cfg)), None
    trained = 0
    for what, eps, i in [j for idx, j in enumerate(jobs(run)) if idx % n == k - 1 and not _job_done(run, j)]:
        if what == "lora":
            dp_lora_set(run, eps, progress)
        else:
            p = p or (mia.pool(run) if what == "shadow" else None)
            _dp_classifier(run, eps, None if what == "teacher" else i, p, keep, progress)
        trained += 1
    return trained


def dp_lora_rows(run, eps: float, p: mia.Pool, keep: np.ndarray, dp_teacher_model, dp_teacher_row: dict[str, Any], *,
                 progress: bool = True) -> list[dict[str, Any]]:
    """The DP LoRA at ``eps``, its class-prompted synthetic set and its three students, attacked; their rows."""
    cfg = run.cfg
    adapter, synth = dp_lora_set(run, eps, progress)
    rec = dp_lora.adapter_record(adapter)
    with np.load(synth) as f:
        images, labels, synth_s = f["images"], f["labels"], float(f["seconds"])
    shadows = _run_shadow_logits(run, keep, progress)
    teacher_model = train.teacher(run, progress=progress)
    eps_l = rec["epsilon_accountant"]
    eps_t = dp_teacher_row["eps_accountant"]
    variants = [("hard", None, eps_l, f"ε={eps_l:.3g} (LoRA, hard labels)"),
                ("soft", teacher_model, math.inf, "none (non-private teacher's soft labels)"),
                ("dp_soft", dp_teacher_model, eps_l + eps_t, f"ε_LoRA+ε_teacher={eps_l + eps_t:.3g} (DP teacher soft labels)")]
    rows = []
    for mode, teach, eps_total, guarantee in variants:
        name = f"dp_lora_{_tag(eps)}_{mode}"
        model, path = _student(run, name, images, labels, teach, progress)
        attack = _attack(run, _logits(run, name, model, p), shadows, keep, p, rec["delta"],
                         "classifier shadows (real halves of P, not DP-LoRA pipelines: a weaker attack than a pipeline's)")
        wall = rec["seconds"] + synth_s + model.info["wall_s"] + (dp_teacher_row["wall_s"] if mode == "dp_soft" else 0.0)
        rows.append(_row(run, name, "dp_lora_student", model, attack, classifiers.sidecar_path(path), eps_accountant=eps_total,
                         delta=rec["delta"], noise_multiplier=rec["noise_multiplier"], dp_guarantee=guarantee, wall_s=wall))
    return rows


COSTS = "dp_costs.csv"


def costs(run) -> pd.DataFrame:
    """``results/dp_costs.csv``: the wall seconds of every model the DP study made (from the records beside them):
    DP teachers and DP shadows, DP LoRAs, their synthetic sets, the students and the matched teacher."""
    rows = []
    for kind, pattern in (("dp_teacher", "teachers/dp_teacher_*.json"), ("dp_shadow", "shadows/*/shadow_*.json"),
                          ("dp_lora", "lora/lora_*.json"), ("dp_lora_student", "students/*.json"),
                          ("matched_teacher", "teachers/matched_teacher.json")):
        for f in sorted(dp_dir(run).glob(pattern)):
            rec = io.read_json(f)
            seconds = rec.get("wall_s", rec.get("seconds", (rec.get("extra") or {}).get("wall_s")))
            rows.append({"model": str(f.relative_to(dp_dir(run)).with_suffix("")), "kind": kind, "seconds": seconds})
    for f in sorted(dp_dir(run).glob("lora/synthetic_*.npz")):
        with np.load(f) as z:
            rows.append({"model": str(f.relative_to(dp_dir(run)).with_suffix("")), "kind": "dp_synthetic_set",
                         "seconds": float(z["seconds"])})
    return pd.DataFrame(rows, columns=["model", "kind", "seconds"])


def _write(run, rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    io.save_csv(run.path("results", RESULT), table)
    io.save_csv(run.path("results", COSTS), costs(run))
    return table


def run_dp_study(run, *, progress: bool = True) -> pd.DataFrame:
    """Every model of the DP study (module docstring) trained or loaded, attacked and audited; writes and returns
    ``results/dp_models.csv``. A model whose audit fails stops the study with :class:`DPAuditError` (its row written)."""
    cfg = run.cfg
    if not cfg.dp.enabled:
        raise ValueError("dp.enabled is false in this run's config: the DP study runs only on a config with dp.enabled: true "
                         "(configs/mini-dp.yaml)")
    if not artifacts.weights_file(run, "teacher").is_file():
        raise FileNotFoundError(f"run {run.dir} has no teacher: the DP study runs on a run that finished phases 00-04 "
                                "(tckr study <config> --run-dir <run> --phases 00_data,01_captions,02_lora_finetune,03_generate,04_run_evaluate)")
    keep = mia.ensure_mask(run, n_shadows(cfg))
    todo = jobs(run)
    if cfg.study.workers > 1 and not all(_job_done(run, j) for j in todo):  # independent models: study.workers processes
        parallel.run_shards(run, "tckr.privacy.dp_study:train_share", done=lambda: sum(_job_done(run, j) for j in todo),
                            total=len(todo), desc="DP models", progress=progress)
    p = mia.pool(run)
    rows: list[dict[str, Any]] = []
    for eps in tqdm(cfg.dp.epsilons, desc="DP study", unit="epsilons", disable=not progress):
        row, model = dp_teacher_row(run, eps, p, keep, progress=progress)
        rows.append(row)
        _write(run, rows)
        check_dp_audit(row["eps_lb"], row["eps_accountant"], row["model"])
        if cfg.dp.lora:
            lora_rows = dp_lora_rows(run, eps, p, keep, model, row, progress=progress)
            rows += lora_rows
            _write(run, rows)
            for r in lora_rows:
                if math.isfinite(r["eps_accountant"]):
                    check_dp_audit(r["eps_lb"], r["eps_accountant"], r["model"])
    if cfg.dp.matched_accuracy:
        row = matched_teacher_row(run, p, keep, progress=progress)
        if row is not None:
            rows.append(row)
    return _write(run, rows)
