"""Every student row attacked through shadow pipelines that replicate that row's training (gkd.baselines): each
pipeline trains each variant's student its own way (the base generator's students on the pipeline's own base set,
made only for the attacked cardinalities), queries them, and each target row is attacked, and spread over the
pipelines, with its own variant's pipeline students. Four pipelines on configs/tiny.yaml; ``train.fit`` is the seeded
stand-in of test_pipelines.py, every other stage runs for real."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from test_pipelines import OVERRIDES, fake_fit
from tckr.classification import baselines, batches, classifiers, train
from tckr.core import io
from tckr.generation import captions
from tckr.privacy import attacks, ledger, pipeline_attacks, pipelines
from tckr.runfolder import artifacts, runs, synthetic

VARIANTS = ["lora_hard", "base_soft", "public_only"]
NAMES = {"lora_soft": "student_synth0.5x", "lora_hard": "student_synth0.5x_hard", "base_soft": "student_base0.5x",
         "public_only": "student_base0.5x_hard"}
BASE_OVERRIDES = {**OVERRIDES, "mia.n_pipelines": 4, "mia.pipeline_cardinalities": [0.5], "gkd.baselines": VARIANTS}
MAIN_STAGES = ["teacher", "captions", "lora", "synthesis", "student_synth0.5x"]


def _save_as_target(run, model, path, variant):
    classifiers.save(model, path, arch=model.arch, class_names=run.class_names, normalisation=batches.normalisation(run.cfg),
                     config_hash=run.cfg.hash(), extra={"role": "student", "name": NAMES[variant], "multiple": 0.5,
                                                        "label_mode": baselines.VARIANTS[variant][1]})


@pytest.fixture(scope="module")
def based(tmp_path_factory):
    """Four pipelines with three baseline variants; stand-in targets are pipeline 0's students of each variant, saved
    where the run keeps its own (``classifiers/``, ``baselines/base/classifiers/``); then the whole attack phase."""
    run = runs.open_run("configs/tiny.yaml", tmp_path_factory.mktemp("based") / "run", overrides=BASE_OVERRIDES)
    captions.caption_run(run, progress=False)
    calls: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "fit", fake_fit(calls))
        worked = pipelines.train_pipelines(run, progress=False)
        sub0 = pipelines.open_pipeline(run, 0)
        for v in ["lora_soft", *VARIANTS]:
            model = classifiers.load_trained(baselines.student_file(sub0, v, 0.5))
            _save_as_target(run, model, baselines.student_file(run, v, 0.5), v)
        out = pipeline_attacks.run_all(run, progress=False)
    return SimpleNamespace(run=run, calls=calls, worked=worked, out=out)


def test_stage_names_and_the_main_students_files_do_not_change_without_baselines(tmp_path):
    plain = runs.open_run("configs/tiny.yaml", tmp_path / "plain", overrides={**BASE_OVERRIDES, "gkd.baselines": []})
    sub = pipelines.open_pipeline(plain, 0)
    assert [s for s, _, _ in pipelines._stages(plain, sub, 0, lambda: None)] == [*MAIN_STAGES, "queries"]
    assert pipelines.students(plain.cfg) == [("lora_soft", 0.5)]
    assert pipelines.variant_logits_name(3, "lora_soft", 0.5) == pipelines.student_logits_name(3, 0.5) \
        == "pipeline_003_student_synth0.5x"
    assert baselines.student_file(sub, "lora_soft", 0.5) == artifacts.weights_file(sub, "student", 0.5)
    assert not (sub.dir / "baselines").exists()  # no base sub-run without a base variant
    run = runs.open_run("configs/tiny.yaml", tmp_path / "based", overrides=BASE_OVERRIDES)
    sub = pipelines.open_pipeline(run, 0)
    assert [s for s, _, _ in pipelines._stages(run, sub, 0, lambda: None)] == \
        ["teacher", "captions", "lora", "synthesis", "base_synthesis", *MAIN_STAGES[-1:],
         "student_synth0.5x_hard", "student_base0.5x", "student_base0.5x_hard", "queries"]


def test_each_pipeline_trains_every_variants_student_its_way(based):
    run = based.run
    assert based.worked == [0, 1, 2, 3]
    stages = pipelines.load_stages(run)
    want = ["teacher", "captions", "lora", "synthesis", "base_synthesis", *NAMES.values(), "queries"]
    assert sorted(zip(stages["pipeline"], stages["stage"])) == sorted((i, s) for i in range(4) for s in want)
    # every student trained once per pipeline (the base sub-run names its students as the run names its own)
    assert sorted(set(based.calls) - {f"shadow_00{i}" for i in range(4)}) == sorted(
        {"student_synth0.5x", "student_synth0.5x_hard"})
    assert based.calls.count("student_synth0.5x") == based.calls.count("student_synth0.5x_hard") == 8
    seeds = set()
    for i in range(4):
        sub = pipelines.open_pipeline(run, i)
        base = baselines.open_base(sub)
        assert base.dir == sub.dir / "baselines" / "base" and base.seed == sub.seed
        assert np.array_equal(base.splits().D, sub.splits().D) and not np.array_equal(base.splits().D, run.splits().D)
        manifest = io.read_json(synthetic.synthetic_dir(base) / "manifest.json")
        assert manifest["adapter"] is None and manifest["prompt_mode"] == "class" and manifest["cardinalities"] == [0.5]
        plan = pd.read_csv(synthetic.synthetic_dir(base) / "plan.csv")
        assert len(plan) == 5 and set(plan["prompt"]) <= set(run.class_names)  # only the 0.5x set's rows (of 20)
        seeds.add(tuple(plan["seed"]))
        for v in ["lora_soft", *VARIANTS]:
            meta = classifiers.read_meta(baselines.student_file(sub, v, 0.5))["extra"]
            assert meta["train_size"] == 5 and meta["label_mode"] == baselines.VARIANTS[v][1]
            for pop, shape in ((False, (20, 2, 10)), (True, (10, 2, 10))):
                f = artifacts.logits_path(run, f"pipeline_00{i}_{NAMES[v]}", pop)
                assert io.load_array(f).shape == shape
        soft, hard = (io.load_array(artifacts.logits_path(run, f"pipeline_00{i}_{NAMES[v]}")) for v in ("base_soft", "public_only"))
        assert not np.array_equal(soft, hard)
    assert len(seeds) == 4  # each pipeline draws its base set with its own noise seeds
    target_base = baselines.open_base(run)
    assert not synthetic.synthetic_dir(target_base).exists()  # the target's base set is 04's, never made here


def test_each_target_row_is_attacked_with_its_own_variants_pipeline_students(based):
    run, rows = based.run, based.out["students"]
    assert sorted(rows["target"].unique()) == sorted(NAMES.values())
    assert (rows.groupby("target").size() == len(pipeline_attacks.LIRA_ATTACKS) + 1).all()  # and RMIA, through pipelines
    assert rows.set_index("target")["label_mode"].groupby(level=0).first().to_dict() == \
        {n: baselines.VARIANTS[v][1] for v, n in NAMES.items()}
    table = pd.read_csv(run.dir / "results" / "mia_pipeline.csv")
    assert len(table) == 4 * (len(pipeline_attacks.LIRA_ATTACKS) + 1) and "student" not in table
    keep = np.load(run.dir / "mia" / "keep.npy")[:4]
    labels = np.load(run.dir / "mia" / "pool.npz")["labels"]

    def phi(name):
        return attacks.stable_logit(io.load_array(artifacts.logits_path(run, name)), labels)

    for v, name in NAMES.items():
        assert np.array_equal(io.load_array(artifacts.logits_path(run, name)),
                              io.load_array(artifacts.logits_path(run, f"pipeline_000_{name}")))  # the stand-in target
        saved = np.load(run.dir / "mia" / "scores" / f"{name}_pipeline_lira_offline_fixed.npy")
        own = np.stack([phi(f"pipeline_00{i}_{name}") for i in range(4)])
        assert np.allclose(saved, pipeline_attacks.lira_scores(phi(name), own, keep)["lira_offline_fixed"])
        if v != "lora_soft":  # not the run's own student's shadows
            other = np.stack([phi(f"pipeline_00{i}_student_synth0.5x") for i in range(4)])
            assert not np.allclose(saved, pipeline_attacks.lira_scores(phi(name), other, keep)["lira_offline_fixed"])


def test_leave_one_pipeline_out_per_variant_and_the_ledger_keeps_rows_apart(based):
    run, lopo = based.run, based.out["lopo"]
    assert list(lopo.columns[:2]) == ["student", "cardinality"]
    assert lopo.groupby("student").size().to_dict() == {n: 4 * 3 for n in NAMES.values()}  # 2 LiRA variants and RMIA
    assert lopo.equals(pd.read_csv(run.dir / "results" / "mia_pipeline_lopo.csv"))
    per = lopo[lopo["attack"] == "lira_offline_fixed"].pivot(index="pipeline", columns="student", values="auc")
    assert per.T.drop_duplicates().shape[0] == 4  # four variants, four different spreads
    pooled = ledger.lopo_summary(lopo)
    assert len(pooled) == 4 * 3 and set(pooled["student"]) == set(NAMES.values())
    old = ledger.lopo_summary(lopo[lopo["student"] == NAMES["lora_soft"]].drop(columns="student"))  # a file before
    assert len(old) == 3 and "student" not in old
    table = ledger.build(run.dir)
    piped = table[(table["source"] == "mia_pipeline.csv") & (table["subset"] == "all")]
    for name in NAMES.values():
        mine = piped[piped["target"] == name]
        assert len(mine) == 5 and mine["headline"].sum() == 1  # one headline per student row, not per label mode
        fixed = mine[mine["attack"].isin(pipeline_attacks.LOPO_ATTACKS)].set_index("attack")["lopo_auc"]
        want = pooled[pooled["student"] == name].set_index("attack")["lopo_auc"]
        assert len(fixed) == 2 and np.allclose(fixed, want[fixed.index])


def test_a_missing_baseline_target_is_said_and_left_out(based, capsys):
    run = based.run
    f = baselines.student_file(run, "public_only", 0.5)
    moved = f.with_name("elsewhere.bin")
    f.rename(moved)
    try:
        found = pipeline_attacks.target_students(run)
    finally:
        moved.rename(f)
    assert sorted(found) == sorted(n for v, n in NAMES.items() if v != "public_only")
    assert "no target student student_base0.5x_hard (public_only)" in capsys.readouterr().out
