"""tckr.mia: the membership mask first, resumable shadows on the tiny config (real tckr.train.fit), the
attacks' result files with the pre-registered headline, and AOP from it. The attack mathematics is
tested in test_attacks.py."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tckr import cli
from tckr.core import shards
from tckr.privacy import ledger, metrics, mia

# ---------------------------------------------------------------- the run: mask first, resumable shards
TINY = {"data.train_size": 60, "data.val_size": 30, "mia.population_size": 40, "mia.shadow_epochs": 1,
        "mia.n_shadows": 4, "train.batch_size": 32, "mia.n_bootstrap": 10}


@pytest.fixture()
def tiny_run(tmp_path):
    from tckr.runfolder import runs

    return runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides=TINY)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One real tckr.train.fit on the tiny config (a shadow's job: half of P, one epoch)."""
    from tckr.classification import train
    from tckr.runfolder import runs

    run = runs.open_run("configs/tiny.yaml", tmp_path_factory.mktemp("fit") / "run", overrides=TINY)
    p = mia.pool(run)
    keep = mia.ensure_mask(run)
    val = run.real("val")
    model, hist = train.fit(run.cfg, run.cfg.classifier.teacher_arch, p.images[keep[0]], p.labels[keep[0]], val.images,
                            val.labels, seed=mia.shadow_seed(run, 0), epochs=1, progress=False, num_classes=10)
    assert len(hist) == 1 and model.info["train_size"] == 60
    return model


@pytest.fixture()
def quick_fit(fitted, monkeypatch):
    """tckr.classification.train.fit replaced by copies of the real fit's model with seeded head noise; records calls."""
    import copy

    import torch

    from tckr.classification import train

    calls = []

    def fit(cfg, arch, images, targets, *args, seed, desc="", **kw):
        calls.append(desc)
        net = copy.deepcopy(fitted.model)
        gen = torch.Generator().manual_seed(int(seed) % 2**31)
        with torch.no_grad():
            for prm in net.get_classifier().parameters():
                prm.add_(0.1 * torch.randn(prm.shape, generator=gen))
        info = {**fitted.info, "seed": int(seed), "train_size": len(images)}
        return dataclasses.replace(fitted, model=net, info=info), pd.DataFrame()

    monkeypatch.setattr(train, "fit", fit)
    return calls


def test_shadows_mask_first_shards_and_resume(tiny_run, quick_fit, monkeypatch):
    from tckr.classification import train

    run = tiny_run
    fake = train.fit
    crashed = []

    def fit(*args, **kw):
        assert (run.dir / "mia" / "keep.npy").is_file(), "the mask must exist before any shadow trains"
        if kw["desc"] == "shadow_002" and not crashed:
            crashed.append(1)
            (run.dir / "mia" / "shadows" / ".shadow_002.safetensors.half.tmp").write_bytes(b"partial")
            raise KeyboardInterrupt("simulated crash")
        return fake(*args, **kw)

    monkeypatch.setattr(train, "fit", fit)
    assert mia.train_shadows(run, shard="2/2", progress=False) == [1, 3]
    assert quick_fit == ["shadow_001", "shadow_003"]
    with pytest.raises(KeyboardInterrupt):
        mia.train_shadows(run, progress=False)
    assert quick_fit[-1] == "shadow_000" and crashed
    assert (run.dir / "mia" / "logits" / "shadow_000.npy").is_file()
    assert mia.train_shadows(run, progress=False) == [2]
    assert quick_fit == ["shadow_001", "shadow_003", "shadow_000", "shadow_002"]
    assert not list((run.dir / "mia" / "shadows").glob(".*"))
    assert mia.train_shadows(run, progress=False) == []
    keep = np.load(run.dir / "mia" / "keep.npy")
    saved = np.load(run.dir / "mia" / "pool.npz")
    assert keep.shape == (4, 120) and (keep.sum(0) == 2).all()
    assert saved["member"].sum() == 60 and len(np.intersect1d(saved["index"][:60], saved["index"][60:])) == 0
    logits = np.load(run.dir / "mia" / "logits" / "shadow_003.npy")
    assert logits.shape == (120, 2, 10) and logits.dtype == np.float32
    assert np.load(run.dir / "mia" / "logits" / "shadow_003_population.npy").shape == (40, 2, 10)
    # weights without logits (a crash while querying): queried again, not retrained
    (run.dir / "mia" / "logits" / "shadow_001.npy").unlink()
    assert mia.train_shadows(run, progress=False) == [1] and quick_fit.count("shadow_001") == 1


def test_attack_writes_results_headline_aop_and_figures(tiny_run, quick_fit):
    from tckr.classification import batches, classifiers
    from tckr.core import io
    from tckr.privacy import attacks
    from tckr.reporting import plots

    run = tiny_run
    mia.train_shadows(run, progress=False)
    assert mia.query_targets(run, "teacher", progress=False) == ["teacher"]
    student = mia.available_targets(run)["teacher"]
    model = classifiers.load_trained(student["path"])
    classifiers.save(model, run.path("classifiers", "fashion_mnist_mbnv3_synth1x.safetensors"), arch=model.arch,
                     class_names=run.class_names, normalisation=batches.normalisation(run.cfg), config_hash=run.cfg.hash(),
                     extra={"role": "student", "name": "student_synth1x", "label_mode": "soft", "multiple": 1.0})
    assert mia.query_targets(run, progress=False) == ["teacher", "student_synth1x"]
    assert list(mia.select_targets(run, "students")) == ["student_synth1x"]
    with pytest.raises(ValueError, match="available"):
        mia.select_targets(run, "student_synth9x")
    res = mia.attack(run, "teacher", attacks=["lira_online", "loss"])
    # 4 shadows: the auto headline is the fixed-variance online LiRA, scored although not asked for
    assert list(res["attack"]) == ["lira_online", "loss", "lira_online_fixed"]
    assert io.read_json(run.dir / "results" / "headline.json") == {
        "attack": "lira_online_fixed", "setting": "auto", "n_shadows": 4, "rule": attacks.headline_rule("auto")}
    res = mia.attack(run, "teacher")
    assert list(res["attack"]) == list(run.cfg.mia.attacks) and set(res["target"]) == {"teacher"}
    _check_scores_by_hand(run)
    mia.attack(run, "students")
    both = pd.read_csv(run.dir / "results" / "mia.csv")
    assert len(both) == 2 * len(res) and set(both["role"]) == {"teacher", "student"}
    assert (both[both["target"] == "student_synth1x"]["cardinality"] == 1.0).all()
    # the student is a copy of the teacher: identical scores
    np.testing.assert_array_equal(np.load(run.dir / "mia" / "scores" / "teacher_lira_online.npy"),
                                  np.load(run.dir / "mia" / "scores" / "student_synth1x_lira_online.npy"))
    (run.dir / "results" / "mia.csv").unlink()
    mia.attack(run, "teacher")
    table = pd.read_csv(run.dir / "results" / "mia.csv")
    for col in ("target", "role", "cardinality", "attack", "auc", "auc_lo", "auc_hi", "tpr_at_0.1pct", "tpr_at_1pct",
                "tpr_at_1pct_lo", "tpr_at_1pct_hi", "balanced_accuracy", "n_shadows", "n_members", "n_nonmembers"):
        assert col in table.columns, col
    assert (table["n_members"] == 60).all() and (table["n_shadows"] == 4).all()
    assert ((table["auc_lo"] <= table["auc"]) & (table["auc"] <= table["auc_hi"])).all()
    member = np.load(run.dir / "mia" / "scores" / "membership.npy")
    for _, r in table.iterrows():
        s = np.load(run.dir / "mia" / "scores" / f"teacher_{r['attack']}.npy")
        assert metrics.attack_metrics(s, member)["auc"] == pytest.approx(r["auc"])
        roc = pd.read_csv(run.dir / "mia" / "roc" / f"teacher_{r['attack']}.csv")
        assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(r["auc"])
    mia.attack(run, "teacher", attacks=["loss"])
    assert len(pd.read_csv(run.dir / "results" / "mia.csv")) == len(table)
    io.save_csv(run.path("results", "classifiers.csv"), pd.DataFrame({"model": ["teacher"], "test_accuracy": [80.0]}))
    by_attack = table.set_index("attack")["auc"]
    assert by_attack["lira_online_fixed"] != by_attack["lira_online"]  # the checks below can tell them apart
    aop = mia.write_aop(run)  # the headline, never lira_online by default nor the best variant
    assert list(aop["attack"]) == ["lira_online_fixed"]
    assert aop["aop"].iloc[0] == pytest.approx(100 * metrics.aop(0.8, by_attack["lira_online_fixed"]))
    (run.dir / "results" / "headline.json").unlink()  # then the config's rule with the shadows of mia.csv
    assert mia.write_aop(run)["auc"].iloc[0] == pytest.approx(100 * by_attack["lira_online_fixed"])  # percent
    assert mia.write_aop(run, "rmia")["auc"].iloc[0] == pytest.approx(100 * by_attack["rmia"])
    written = pd.read_csv(run.dir / "results" / "aop.csv").iloc[0]
    lo_hi = table.set_index("attack").loc["rmia", ["auc_lo", "auc_hi"]]
    assert [written["auc_lo"], written["auc_hi"]] == pytest.approx(list(100 * lo_hi))
    with pytest.raises(ValueError, match="rmia_offline"):
        mia.write_aop(run, "rmia_offline")
    assert ledger.headline(run.dir) == "lira_online_fixed"
    figs = plots.plot_mia_roc(run.dir)
    assert {f.name for f in figs} >= {"mia_roc_teacher.pdf", "mia_roc_teacher.png", "mia_roc.png"}
    with pytest.raises(FileNotFoundError, match="not trained"):
        mia.attack(run, n_shadows=6)


def _check_scores_by_hand(run):
    """The saved LOSS and online-LiRA scores recomputed from the saved logits with scipy, cell by cell."""
    from scipy.special import log_softmax, logsumexp
    from scipy.stats import norm

    d = run.dir / "mia"
    y = np.load(d / "pool.npz")["labels"]
    keep = np.load(d / "keep.npy")

    def phi(z):  # log p_y - log sum_{y' != y} p_y' = z_y - logsumexp(z_{y' != y}), float64
        z = z.astype(np.float64)
        own = np.arange(z.shape[-1]) == y[:, None, None]
        return np.where(own, z, -np.inf).max(-1) - logsumexp(np.where(own, -np.inf, z), axis=-1)

    logits = np.load(d / "logits" / "teacher.npy")
    n, q, _ = logits.shape
    q0 = run.cfg.mia.queries.index("identity")  # LOSS: minus the cross-entropy of the plain image
    loss = log_softmax(logits.astype(np.float64), axis=-1)[np.arange(n), q0, y]
    np.testing.assert_allclose(np.load(d / "scores" / "teacher_loss.npy"), loss, rtol=1e-9, atol=1e-12)
    target = phi(logits)
    shadows = np.stack([phi(np.load(d / "logits" / f"{mia.shadow_name(i)}.npy")) for i in range(len(keep))])
    lira = np.load(d / "scores" / "teacher_lira_online.npy")
    assert lira.shape == (n,) and np.std(lira) > 0
    for i in range(0, n, 7):
        cells = []
        for k in range(q):
            ins, outs = shadows[keep[:, i], i, k], shadows[~keep[:, i], i, k]
            cells.append(norm.logpdf(target[i, k], ins.mean(), ins.std(ddof=1))
                         - norm.logpdf(target[i, k], outs.mean(), outs.std(ddof=1)))
        assert lira[i] == pytest.approx(np.mean(cells), rel=1e-6, abs=1e-9), i


def test_configured_headline_and_bad_names(tmp_path):
    from tckr.runfolder import runs

    run = runs.open_run("configs/tiny.yaml", tmp_path / "rmia", overrides={**TINY, "mia.headline": "rmia"})
    assert ledger.headline_record(run.cfg.mia.headline, run.cfg.mia.n_shadows) == {
        "attack": "rmia", "setting": "rmia", "n_shadows": 4, "rule": "configured: mia.headline = rmia"}
    assert ledger.headline(run.dir) == "rmia"  # before any attack: the rule of the run's saved settings
    auto = runs.open_run("configs/tiny.yaml", tmp_path / "auto", overrides=TINY)
    assert ledger.headline_record(auto.cfg.mia.headline, 64)["attack"] == "lira_online"
    assert ledger.headline(auto.dir) == "lira_online_fixed"  # auto with the settings' 4 shadows
    with pytest.raises(ValueError, match="best_of_all"):  # refused when the config is read
        runs.open_run("configs/tiny.yaml", tmp_path / "bad", overrides={**TINY, "mia.headline": "best_of_all"})
    with pytest.raises(ValueError, match="best_of_all"):  # and when the headline is drawn
        ledger.headline_record("best_of_all", 4)


def test_cli_trains_one_shard(tiny_run, quick_fit):
    run = tiny_run
    assert cli.main(["shadows", "--run-dir", str(run.dir), "--shard", "1/2"]) == 0
    done = sorted(p.stem for p in (run.dir / "mia" / "logits").glob("shadow_???.npy"))
    assert done == ["shadow_000", "shadow_002"] and quick_fit == done
    assert shards.parse_shard("2/2") == (2, 2) and shards.parse_shard(None) == (1, 1)
    for bad in ("0/2", "3/2"):
        with pytest.raises(ValueError, match="k/n"):
            shards.parse_shard(bad)


@pytest.mark.e2e
def test_notebook_05_on_the_tiny_chain(tiny_chain):
    """05_mia_lira ran in the chain: the teacher and every student attacked, AOP from the headline, audit written."""
    from tckr.core import io

    run_dir = tiny_chain
    table = pd.read_csv(run_dir / "results" / "mia.csv")
    clf = pd.read_csv(run_dir / "results" / "classifiers.csv")
    assert set(table["target"]) == set(clf["model"]) and "teacher" in set(table["target"])
    assert (table["role"] == "student").any()
    for _, r in table.iterrows():
        assert 0.0 <= r["auc_lo"] <= r["auc"] <= r["auc_hi"] <= 1.0
        assert (run_dir / "mia" / "roc" / f"{r['target']}_{r['attack']}.csv").is_file()
    keep = np.load(run_dir / "mia" / "keep.npy")
    assert (keep.sum(0) == keep.shape[0] // 2).all() and (table["n_shadows"] == keep.shape[0]).all()
    aop = pd.read_csv(run_dir / "results" / "aop.csv")
    assert set(aop["target"]) == set(clf["model"])
    assert (pd.read_csv(run_dir / "results" / "audit_summary.csv")["n"] > 0).all()
    head = io.read_json(run_dir / "results" / "headline.json")
    assert head["attack"] == "lira_online_fixed" and head["n_shadows"] == keep.shape[0] < 64
    assert (aop["attack"] == head["attack"]).all()
    assert (run_dir / "figures" / "roc.png").is_file() and (run_dir / "figures" / "mia_roc_teacher.png").is_file()
    assert (run_dir / "figures" / "audit_pairs.png").is_file()
