"""tckr.pipelines: shadow pipelines on the tiny config (sub-runs, teacher reuse, captions, resume after a
kill), the pipeline attack on planted logits, and the one shard convention.

The fast tests run every stage for real (captions, LoRA, synthesis, student and teacher files, queries)
except classifier training: ``train.fit`` is replaced by seeded copies of an untrained model so the file
stays fast on two busy cores (``tckr.train.fit`` itself is tested in test_train / test_mia). The slow test
runs the same pipelines with real training."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from tckr import cli
from tckr.classification import batches, classifiers, train
from tckr.core import io, shards
from tckr.core.config import config_from_dict
from tckr.generation import captions, generator, lora, synthesis
from tckr.privacy import attacks, metrics, mia, pipeline_attacks, pipelines
from tckr.runfolder import artifacts, runs, synthetic

OVERRIDES = {"data.train_size": 10, "data.val_size": 10, "mia.population_size": 10, "mia.n_bootstrap": 10,
             "classifier.input_size": 16, "study.num_threads": 1,
             "mia.n_shadows": 2, "mia.n_pipelines": 2, "mia.shadow_epochs": 0,
             "synthesis.cardinalities": [0.5, 1.0, 2.0], "mia.pipeline_cardinalities": [0.5, 1.0],
             "synthesis.steps": 2, "lora.max_steps": 2, "lora.checkpoint_every": 1}
CARDS = [0.5, 1.0]
STAGES = ["teacher", "captions", "lora", "synthesis", "student_synth0.5x", "student_synth1x", "queries"]


def fake_fit(calls: list):
    """``train.fit`` stand-in: an untrained model of the asked architecture with seeded head weights."""

    def fit(cfg, arch, images, targets, val_images, val_labels, *, seed, history_path=None, desc="", num_classes=None, **kw):
        calls.append(desc)
        model = classifiers.build(arch, num_classes or 10, pretrained=False, input_size=cfg.classifier.input_size)
        gen = torch.Generator().manual_seed(int(seed) % 2**31)
        with torch.no_grad():
            for prm in model.get_classifier().parameters():
                prm.copy_(torch.randn(prm.shape, generator=gen))
        record = {"best_epoch": 1, "epochs_run": 1, "val_accuracy": 10.0, "train_seconds": 0.0,
                  "train_size": int(len(images)), "seed": int(seed)}
        history = pd.DataFrame([{"epoch": 1, "train_loss": 1.0, "val_accuracy": 10.0}])
        if history_path is not None:
            io.save_csv(history_path, history)
        size = cfg.classifier.input_size
        return classifiers.TrainedClassifier(model.eval(), arch, num_classes or 10, input_size=size,
                                             stem_stride=classifiers.resolved_stem_stride(size), info=record), history

    return fit


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """Two pipelines on the tiny config; pipeline 1 is killed inside its LoRA stage (after checkpoint 1),
    then the same call is repeated, then once more."""
    run = runs.open_run("configs/tiny.yaml", tmp_path_factory.mktemp("pipelines") / "run", overrides=OVERRIDES)
    captions.caption_run(run, progress=False)
    calls: list[str] = []
    real_checkpoint = lora._checkpoint

    def killed(pipe, opt, ckdir, step, *args):
        real_checkpoint(pipe, opt, ckdir, step, *args)
        if "pipeline_001" in str(ckdir) and step == 1:
            raise KeyboardInterrupt("simulated kill inside the LoRA stage")

    sub1 = pipelines.pipeline_dir(run, 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "fit", fake_fit(calls))
        mp.setattr(lora, "_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            pipelines.train_pipelines(run, progress=False)
        before = {"stages": pipelines.load_stages(run), "calls": list(calls),
                  "checkpoints": sorted(p.name for p in (sub1 / "lora" / "checkpoints").iterdir()),
                  "mtimes": {f: (sub1 / f).stat().st_mtime_ns for f in
                             ("classifiers/fashion_mnist_mbnv3_real.safetensors", "captions/captions.csv")}}
        mp.setattr(lora, "_checkpoint", real_checkpoint)
        worked = pipelines.train_pipelines(run, progress=False)
        again = pipelines.train_pipelines(run, progress=False)
    return SimpleNamespace(run=run, calls=calls, before=before, worked=worked, again=again)


def test_sub_run_is_the_half_its_teacher_the_shadow_and_its_captions_the_captioners(piped):
    run = piped.run
    keep = np.load(run.dir / "mia" / "keep.npy")
    p_index = mia.pool_index(run)
    captioner = captions.build_captioner(run.cfg)
    for i in range(2):
        sub = pipelines.open_pipeline(run, i)
        assert sub.dir == run.dir / "mia" / "pipelines" / f"pipeline_{i:03d}"
        assert np.array_equal(sub.splits().D, np.sort(p_index[keep[i]]))
        assert np.array_equal(sub.splits().H, np.sort(p_index[~keep[i]]))
        assert np.array_equal(sub.splits().val, run.splits().val) and np.array_equal(sub.test_index(), run.test_index())
        assert sub.seed == pipelines.pipeline_seed(run, i) != run.seed
        assert sub.cfg.to_dict() == run.cfg.to_dict()  # the run's whole config: its synthesis plan included
        # the teacher is classifier shadow i, same tensors, recorded as a teacher that came from it
        shadow, _ = io.load_weights(run.dir / "mia" / "shadows" / f"shadow_{i:03d}.safetensors")
        teacher, meta = io.load_weights(artifacts.weights_file(sub, "teacher"))
        assert shadow.keys() == teacher.keys() and all(torch.equal(shadow[k], teacher[k]) for k in shadow)
        side = classifiers.read_meta(artifacts.weights_file(sub, "teacher"))
        assert side["extra"]["role"] == meta["extra"]["role"] == "teacher"
        assert side["extra"]["reused_from"] == f"mia/shadows/shadow_{i:03d}.safetensors"
        assert side["extra"]["train_size"] == int(keep[i].sum())
        table = captions.load_captions(sub)
        assert np.array_equal(table["index"].to_numpy(), sub.splits().D)
        assert table["caption"].tolist() == captioner.caption(sub.real("D").images)
        assert table["prompt"].tolist() == lora.training_prompts(sub)
        assert (sub.dir / "captions" / "fashion_mnist_grouped_by_class.json").is_file()
    # D's captions of P are the run's own (not recaptioned), H's the captioner's
    pool_caps = pd.read_csv(run.dir / "mia" / "pipelines" / "captions_P.csv", keep_default_na=False)
    assert pool_caps["caption"].tolist()[:10] == captions.load_captions(run)["caption"].tolist()
    assert pool_caps["caption"].tolist()[10:] == captioner.caption(run.real("H").images)
    assert piped.calls.count("teacher") == 0 and piped.calls.count("shadow_000") == piped.calls.count("shadow_001") == 1


class SeedPipe:
    """A generator stand-in whose image is its noise seed written into the pixels (plans only, no diffusion)."""

    device = torch.device("cpu")

    def __call__(self, *, prompt, generator, height, width, **kw):
        seeds = np.array([g.initial_seed() for g in generator], dtype=np.int64)
        return SimpleNamespace(images=np.broadcast_to(((seeds % 251) / 255.0)[:, None, None, None], (len(seeds), height, width, 3)))


def _twin(cfg, sub, folder):
    """A run folder with ``cfg`` on the pipeline's own D, captions and seed: the target's procedure applied to it."""
    for part in ("splits", artifacts.CAPTIONS_DIR):
        for f in (sub.dir / part).iterdir():
            (folder / part).mkdir(parents=True, exist_ok=True)
            (folder / part / f.name).write_bytes(f.read_bytes())
    return runs.open_run(cfg, folder, seed=sub.seed)


def test_a_pipelines_sets_are_drawn_as_the_targets_are(tmp_path, monkeypatch):
    """Target cardinalities [0.5, 1, 2], pipeline cardinalities [0.5, 1]: the pipeline's 0.5x and 1x sets are the
    rows, captions and noise seeds that the target's procedure (nested in a 2x plan) draws for the pipeline's own D
    and seed, and its synthesis stage makes only the 1x rows of that plan."""
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={**OVERRIDES, "data.train_size": 40})
    captions.caption_run(run, progress=False)
    sub = pipelines.open_pipeline(run, 0)
    pipelines._captions_stage(run, sub, 0, 2, False)
    monkeypatch.setattr(synthesis, "load_generator", lambda r, **kw: generator.Generator(SeedPipe(), base="seeds"))
    n = len(sub.splits().D)
    assert pipelines._synthesis_stage(run, sub, 0, 2, False) == f"{n} images made now"
    twin = _twin(run.cfg, sub, tmp_path / "target_procedure")
    made = pd.read_csv(sub.dir / "synthetic" / "plan.csv", keep_default_na=False)
    assert np.array_equal(made["i"], synthetic.subset_index(twin, 1.0))  # n rows of the 2n-row 2x plan, not 0..n-1
    for m in CARDS:
        want = synthesis.sampling_plan(twin, m)
        assert want.equals(synthesis.sampling_plan(sub, m))
        got = synthetic.load_synthetic(sub, m)
        assert np.array_equal(got.index, want["i"]) and got.prompts == want["prompt"].tolist()
        assert np.array_equal(got.labels, want["label"])
        assert np.array_equal(got.images[:, 0, 0, 0], np.round((want["seed"].to_numpy() % 251) / 255.0 * 255).astype(np.uint8))
        caps = captions.load_captions(sub).set_index("index").loc[want["caption"], "prompt"]
        assert caps.tolist() == want["prompt"].tolist()
    one = synthesis.sampling_plan(twin, 1.0)["caption"].value_counts()
    assert one.max() == 2 and len(one) < n  # as in the target's 1x: some captions twice, some never
    # today's pipelines drew from a 1x plan of their own (each caption once): another set
    old = _twin(config_from_dict(run.cfg.to_dict(), {"synthesis.cardinalities": CARDS}), sub, tmp_path / "one_x_plan")
    assert synthesis.sampling_plan(old, 1.0)["caption"].value_counts().max() == 1
    assert not synthesis.sampling_plan(old, 1.0).equals(synthesis.sampling_plan(twin, 1.0))


def test_not_reused_when_shadows_train_for_another_budget(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(train, "fit", fake_fit(calls))
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={**OVERRIDES, "mia.shadow_epochs": 1})
    assert not pipelines.reuses_shadow(run.cfg) and pipelines.reuses_shadow(runs.open_run(
        "configs/tiny.yaml", tmp_path / "other", overrides={**OVERRIDES, "mia.shadow_epochs": run.cfg.train.epochs}).cfg)
    sub = pipelines.open_pipeline(run, 0)
    assert "train.teacher" in pipelines._teacher_stage(run, sub, 0, 2, False)
    assert calls == ["teacher"] and not (run.dir / "mia" / "shadows").exists()
    assert classifiers.read_meta(artifacts.weights_file(sub, "teacher"))["extra"]["train_size"] == len(sub.splits().D)


def test_whole_pipelines_write_adapter_synthetic_set_students_and_logits(piped):
    run = piped.run
    for i in range(2):
        sub = pipelines.open_pipeline(run, i)
        assert artifacts.adapter_path(sub).is_file()
        assert io.load_weights(artifacts.adapter_path(sub))[1]["steps"] == 2
        assert synthetic.available_multiples(sub) == CARDS
        for m in CARDS:
            synth = synthetic.load_synthetic(sub, m)
            assert len(synth) == int(m * 10) and synth.images.dtype == np.uint8
            student = classifiers.read_meta(artifacts.weights_file(sub, "student", m))["extra"]
            assert student["role"] == "student" and student["multiple"] == m and student["train_size"] == len(synth)
            name = f"pipeline_{i:03d}_student_synth{m:g}x"
            assert np.load(run.dir / "mia" / "logits" / f"{name}.npy").shape == (20, 2, 10)
            assert np.load(run.dir / "mia" / "logits" / f"{name}_population.npy").shape == (10, 2, 10)
    # students of different pipelines differ (their own seeds and data)
    a, b = (np.load(run.dir / "mia" / "logits" / f"pipeline_00{i}_student_synth1x.npy") for i in (0, 1))
    assert not np.allclose(a, b)


def test_resume_after_a_kill_inside_the_lora_stage(piped):
    before, run = piped.before, piped.run
    done_before = set(zip(before["stages"]["pipeline"], before["stages"]["stage"]))
    assert done_before == {(0, s) for s in STAGES} | {(1, "teacher"), (1, "captions")}
    assert before["checkpoints"] == ["checkpoint-1"]
    stages = pipelines.load_stages(run)
    assert sorted(zip(stages["pipeline"], stages["stage"])) == sorted((i, s) for i in (0, 1) for s in STAGES)
    assert (stages["seconds"] >= 0).all() and stages["detail"].str.len().gt(0).all()
    sub1 = pipelines.pipeline_dir(run, 1)
    for f, t in before["mtimes"].items():
        assert (sub1 / f).stat().st_mtime_ns == t, f"{f} was redone"
    assert piped.calls[len(before["calls"]):] == ["student_synth0.5x", "student_synth1x"]
    assert piped.worked == [1] and piped.again == []
    assert list(pd.read_csv(sub1 / "lora" / "loss.csv")["step"]) == [1, 2]
    assert not [p for p in run.dir.rglob(".*") if p.is_file()], "half-written files left behind"


def test_attack_students_writes_rows_scores_and_roc(piped):
    run = piped.run
    for m in CARDS:  # stand-in target students: pipeline 0's, saved as the run's own
        model = classifiers.load_trained(artifacts.weights_file(pipelines.open_pipeline(run, 0), "student", m))
        classifiers.save(model, artifacts.weights_file(run, "student", m), arch=model.arch, class_names=run.class_names,
                         normalisation=batches.normalisation(run.cfg), config_hash=run.cfg.hash(),
                         extra={"role": "student", "name": artifacts.model_name("student", m), "label_mode": "soft", "multiple": m})
    out = pipeline_attacks.run_all(run, progress=False)
    rows = out["students"]
    assert sorted(rows["target"].unique()) == ["student_synth0.5x", "student_synth1x"]
    assert pipeline_attacks.reference_attacks(run.cfg) == ("rmia",)  # the tiny config lists rmia: scored through pipelines too
    assert set(rows["attack"]) == {*pipeline_attacks.LIRA_ATTACKS, "rmia"} and (rows["shadow_kind"] == "pipeline").all()
    assert (rows["n_pipelines"] == 2).all() and (rows["n_shadows"] == 2).all()
    fixed = rows[rows["attack"].str.endswith("fixed")]
    assert np.isfinite(fixed["auc"]).all() and ((fixed["auc"] >= 0) & (fixed["auc"] <= 1)).all() and (fixed["note"] == "").all()
    assert np.isfinite(rows.loc[rows["attack"] == "rmia", "auc"]).all()  # RMIA averages 1 IN and 1 OUT reference
    per_example = rows[rows["attack"].isin(["lira_online", "lira_offline"])]
    assert per_example["auc"].isna().all() and per_example["note"].str.contains("at least 2").all()
    table = pd.read_csv(run.dir / "results" / "mia_pipeline.csv")
    mia_cols = ["target", "role", "cardinality", "label_mode", "attack", "auc", "auc_lo", "auc_hi", "tpr_at_0.1pct",
                "tpr_at_1pct", "balanced_accuracy", "n_shadows", "n_members", "n_nonmembers"]
    assert set(mia_cols + ["shadow_kind", "n_pipelines"]) <= set(table.columns) and len(table) == 2 * 5  # 2 students x 5 attacks
    member = np.load(run.dir / "mia" / "scores" / "membership.npy")
    for _, r in fixed.iterrows():
        s = np.load(run.dir / "mia" / "scores" / f"{r['target']}_pipeline_{r['attack']}.npy")
        assert metrics.attack_metrics(s, member)["auc"] == pytest.approx(r["auc"])
        roc = pd.read_csv(run.dir / "mia" / "roc" / f"{r['target']}_pipeline_{r['attack']}.csv")
        assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(r["auc"])
    assert out["lopo"].empty and not (run.dir / "results" / "mia_pipeline_lopo.csv").exists()


# ---------------------------------------------------------------- the attack on planted logits
def _planted_logits(phi: np.ndarray, labels: np.ndarray, c: int = 10) -> np.ndarray:
    """Logits [n, q, c] whose stable logit of the true class is ``phi`` [n, q]."""
    z = np.zeros((*phi.shape, c), np.float32)
    z[np.arange(len(labels)), :, labels] = phi + np.log(c - 1)
    return z


def test_attack_and_leave_one_out_find_planted_members(tmp_path):
    """Four pipelines whose students' confidence rises by delta on their own half of P; the target
    student's on D. Every LiRA variant (2 IN / 2 OUT per example), RMIA, and every left-out pipeline is found."""
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={
        "data.train_size": 200, "data.val_size": 20, "mia.population_size": 20, "mia.n_bootstrap": 10,
        "mia.n_pipelines": 4, "mia.pipeline_cardinalities": [1.0]})
    keep = mia.ensure_mask(run, 4)
    saved = np.load(run.dir / "mia" / "pool.npz")
    labels, member = saved["labels"], saved["member"]
    rng = np.random.default_rng(0)
    n, mu, delta = len(labels), 2.0 * rng.standard_normal((len(labels), 1)), 1.0

    def student(inside):
        return _planted_logits(mu + delta * inside[:, None] + 0.3 * rng.standard_normal((n, 2)), labels)

    z = np.zeros((20, 2, 10), np.float32)
    for j in range(4):
        name = pipelines.student_logits_name(j, 1.0)
        io.save_array(run.dir / "mia" / "logits" / f"{name}.npy", student(keep[j]))
        io.save_array(run.dir / "mia" / "logits" / f"{name}_population.npy", z)
    io.save_array(run.dir / "mia" / "logits" / "student_synth1x.npy", student(member))
    io.save_array(run.dir / "mia" / "logits" / "student_synth1x_population.npy", z)
    model = classifiers.build("mobilenetv3_small_050", 10, pretrained=False, input_size=32)
    classifiers.save(model, artifacts.weights_file(run, "student", 1.0), arch="mobilenetv3_small_050", class_names=run.class_names,
                     normalisation=batches.normalisation(run.cfg), config_hash=run.cfg.hash(),
                     extra={"role": "student", "name": "student_synth1x", "label_mode": "soft", "multiple": 1.0})
    rows = pipeline_attacks.attack_students(run, progress=False).set_index("attack")
    assert list(rows.index) == [*pipeline_attacks.LIRA_ATTACKS, "rmia"] and (rows["note"] == "").all()
    assert (rows["auc"] > 0.75).all(), rows["auc"]
    lopo = pipeline_attacks.pipeline_spread(run)
    assert len(lopo) == 4 * 3 and sorted(lopo["pipeline"].unique()) == [0, 1, 2, 3]
    assert list(lopo.loc[lopo["pipeline"] == 0, "attack"]) == [*pipeline_attacks.LOPO_ATTACKS, "rmia"]
    assert (lopo["auc"] > 0.85).all() and lopo.equals(pd.read_csv(run.dir / "results" / "mia_pipeline_lopo.csv"))
    with pytest.raises(FileNotFoundError, match="train_pipelines"):
        pipeline_attacks.pipeline_spread(run, 6)


def test_pipeline_shadows_beat_classifier_shadows_on_a_planted_leaky_toy():
    """The student's per-example confidence ``mu_s`` (plus ``delta`` on members) is reproduced by shadows
    that replicate its pipeline, while classifier shadows have their own per-example level ``mu_c``
    (and a larger, teacher-like membership effect). Only the pipeline shadows find the members."""
    rng = np.random.default_rng(1)
    n, m, q, delta = 2000, 16, 2, 0.5
    labels = rng.integers(0, 10, n)
    keep = attacks.membership_mask(m, labels, seed=1)
    member = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n // 2, bool)])
    mu_s, mu_c = 2.0 * rng.standard_normal((n, 1)), 2.0 * rng.standard_normal((n, 1))

    def phi(level, inside, effect):
        return level + effect * inside[..., None] + 0.3 * rng.standard_normal(inside.shape + (q,))

    target = phi(mu_s, member, delta)
    pipeline_scores = pipeline_attacks.lira_scores(target, phi(mu_s, keep, delta), keep, ("lira_online_fixed",))["lira_online_fixed"]
    classifier_scores = attacks.score("lira_online_fixed", target, phi(mu_c, keep, 4 * delta), keep)
    auc_pipeline = metrics.attack_metrics(pipeline_scores, member)["auc"]
    auc_classifier = metrics.attack_metrics(classifier_scores, member)["auc"]
    assert auc_pipeline > 0.85 and auc_classifier < 0.6 and auc_pipeline - auc_classifier > 0.25, (auc_pipeline, auc_classifier)
    # no membership effect: the pipeline attack finds nothing
    null = pipeline_attacks.lira_scores(phi(mu_s, member, 0.0), phi(mu_s, keep, 0.0), keep, ("lira_online_fixed",))["lira_online_fixed"]
    assert abs(metrics.attack_metrics(null, member)["auc"] - 0.5) < 0.05


# ---------------------------------------------------------------- shards, entry points
def test_one_shard_convention():
    assert shards.parse_shard("1/2") == (1, 2) and shards.parse_shard("2/2") == (2, 2) and shards.parse_shard(None) == (1, 1)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0"):
        with pytest.raises(ValueError, match=r"'k/n' with 1 <= k <= n"):
            shards.parse_shard(bad)
    assert shards.mine(range(6), "1/2") == [0, 2, 4] and shards.mine(range(6), "3/3") == [2, 5]
    assert sorted(shards.mine(range(7), "1/3") + shards.mine(range(7), "2/3") + shards.mine(range(7), "3/3")) == list(range(7))
    assert shards.parse_shard("2/2") == shards.parse_shard("2/2") == (2, 2)


def test_train_pipelines_takes_its_shard_and_checks_the_count(tmp_path, monkeypatch):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={**OVERRIDES, "mia.n_pipelines": 4})
    ran = []
    monkeypatch.setattr(pipelines, "run_pipeline", lambda run, i, n, **kw: ran.append((i, n)) or ["teacher"])
    assert pipelines.train_pipelines(run, shard="2/4", progress=False) == [1] and ran == [(1, 4)]
    assert (run.dir / "mia" / "keep.npy").is_file() and len(np.load(run.dir / "mia" / "keep.npy")) >= 4
    ran.clear()
    assert cli.main(["pipelines", "--run-dir", str(run.dir), "--shard", "1/2", "--no-progress"]) == 0 and ran == [(0, 4), (2, 4)]
    for bad in (3, 0):
        with pytest.raises(ValueError, match="even number"):
            pipelines.train_pipelines(run, bad)


def test_run_all_is_a_no_op_without_pipelines(tmp_path, capsys):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"mia.n_pipelines": 0})
    assert run.cfg.mia.n_pipelines == 0 and pipeline_attacks.run_all(run) == {}
    assert "n_pipelines is 0" in capsys.readouterr().out and not (run.dir / "mia").exists()


@pytest.mark.slow
def test_pipelines_with_real_training_and_the_attack(tmp_path):
    """The fast tests' pipelines with real classifier training (about 2 minutes on two busy cores)."""
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={**OVERRIDES, "train.epochs": 1})
    captions.caption_run(run, progress=False)
    assert pipelines.train_pipelines(run, progress=False) == [0, 1]
    for m in CARDS:
        src = artifacts.weights_file(pipelines.open_pipeline(run, 1), "student", m)
        model = classifiers.load_trained(src)
        classifiers.save(model, artifacts.weights_file(run, "student", m), arch=model.arch, class_names=run.class_names,
                         normalisation=batches.normalisation(run.cfg), config_hash=run.cfg.hash(),
                         extra={"role": "student", "name": artifacts.model_name("student", m), "label_mode": "soft", "multiple": m})
    rows = pipeline_attacks.attack_students(run, progress=False)
    assert np.isfinite(rows[rows["attack"].str.endswith("fixed")]["auc"]).all()
    stages = pipelines.load_stages(run)
    assert len(stages) == 2 * len(STAGES) and (stages["seconds"] > 0).all()


def test_lopo_references_leave_out_the_target_and_for_rmia_its_complementary_pair():
    assert list(pipeline_attacks.lopo_references("lira_online_fixed", 2, 6)) == [0, 1, 3, 4, 5]
    assert list(pipeline_attacks.lopo_references("rmia", 2, 6)) == [0, 1, 4, 5]
    assert list(pipeline_attacks.lopo_references("rmia", 5, 6)) == [0, 1, 2, 3]
    labels = np.repeat(np.arange(10), 20)
    keep = attacks.membership_mask(6, labels, seed=0)
    refs = pipeline_attacks.lopo_references("rmia", 2, 6)
    assert (keep[refs].sum(0) == len(refs) // 2).all()  # every example IN for exactly half, whatever its membership in 2
