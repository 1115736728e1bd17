"""tckr.mia: attack math on synthetic logits with known truth, the membership mask, and resumable
shadows on the tiny config (real tckr.train.fit)."""

import numpy as np
import pandas as pd
import pytest

from tckr import metrics, mia


def planted(m=16, n=2000, q=2, c=10, seed=0, effect=1.5, in_sd=0.3, out_sd=1.0, null=False):
    """Logits whose true-class confidence is higher (and less spread) when the model trained on the example.
    ``null``: membership changes nothing."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    keep = mia.membership_mask(m, labels, seed)
    member = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)])
    mu = 2.0 * rng.standard_normal(n)
    delta = effect * np.abs(rng.standard_normal(n))

    def model(inside):
        z = 0.1 * rng.standard_normal((n, q, c))
        if null:
            conf = mu + out_sd * rng.standard_normal(n)
        else:
            conf = mu + np.where(inside, delta + in_sd * rng.standard_normal(n), out_sd * rng.standard_normal(n))
        z[np.arange(n), :, labels] += conf[:, None]
        return z.astype(np.float32)

    return model(member), np.stack([model(keep[i]) for i in range(m)]), labels, keep, member


VARIANTS = [(True, False), (True, True), (False, False), (False, True)]


def auc(scores, member):
    return metrics.attack_metrics(scores, member)["auc"]


# ---------------------------------------------------------------- mask
def test_mask_is_balanced_stratified_seeded_and_extensible():
    labels = np.repeat(np.arange(10), 40)
    keep = mia.membership_mask(8, labels, seed=3)
    assert keep.dtype == bool and keep.shape == (8, 400)
    assert (keep.sum(0) == 4).all()
    assert (keep.sum(1) == 200).all()
    for c in range(10):
        assert (keep[:, labels == c].sum(1) == 20).all()
    assert np.array_equal(keep, mia.membership_mask(8, labels, seed=3))
    assert not np.array_equal(keep, mia.membership_mask(8, labels, seed=4))
    assert np.array_equal(mia.membership_mask(16, labels, seed=3)[:8], keep)
    odd = mia.membership_mask(4, np.r_[labels, 0], seed=0)
    assert (odd.sum(0) == 2).all()
    with pytest.raises(ValueError, match="even"):
        mia.membership_mask(5, labels, 0)


# ---------------------------------------------------------------- stable logit
def test_stable_logit_matches_the_definition_and_survives_extreme_logits():
    from scipy.special import logsumexp, softmax

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 50, 2, 7)).astype(np.float32) * 3
    y = rng.integers(0, 7, 50)
    phi = mia.stable_logit(x, y)
    p = softmax(x.astype(np.float64), axis=-1)
    py = np.take_along_axis(p, y[None, :, None, None].repeat(3, 0).repeat(2, 2), -1)[..., 0]
    assert phi.dtype == np.float64 and phi.shape == (3, 50, 2)
    np.testing.assert_allclose(phi, np.log(py) - np.log1p(-py), rtol=1e-6, atol=1e-6)
    big = np.array([[[1000.0, -1000.0, 0.0]], [[-1000.0, 1000.0, 999.0]]])
    phi = mia.stable_logit(big, np.array([0, 1]))
    assert np.isfinite(phi).all()
    np.testing.assert_allclose(phi[:, 0], [1000.0 - logsumexp([-1000.0, 0.0]), 1000.0 - logsumexp([-1000.0, 999.0])])


# ---------------------------------------------------------------- LiRA
@pytest.mark.parametrize("online,fixed", VARIANTS)
def test_members_score_higher(online, fixed):
    t, s, y, keep, member = planted()
    scores = mia.lira(t, s, y, keep, online=online, fixed_variance=fixed)
    assert scores.shape == (len(y),) and np.isfinite(scores).all()
    assert scores[member].mean() > scores[~member].mean()
    assert auc(scores, member) > 0.75


@pytest.mark.parametrize("online,fixed", VARIANTS)
def test_auc_is_chance_when_in_and_out_coincide(online, fixed):
    t, s, y, keep, member = planted(n=4000, null=True, seed=1)
    assert abs(auc(mia.lira(t, s, y, keep, online=online, fixed_variance=fixed), member) - 0.5) < 0.03


def test_online_beats_offline_on_a_planted_signal():
    t, s, y, keep, member = planted(seed=2)
    on = metrics.attack_metrics(mia.lira(t, s, y, keep, online=True), member)
    off = metrics.attack_metrics(mia.lira(t, s, y, keep, online=False), member)
    assert on["auc"] > off["auc"] + 0.05
    assert on["tpr_at_1pct"] > off["tpr_at_1pct"]


def test_lira_is_chunk_and_thread_invariant_and_matches_a_direct_computation(monkeypatch):
    from scipy.stats import norm

    t, s, y, keep, member = planted(m=8, n=600, seed=3)
    ref = mia.lira(t, s, y, keep, workers=1)
    monkeypatch.setattr(mia, "_CHUNK_BYTES", 4096)
    np.testing.assert_allclose(mia.lira(t, s, y, keep, workers=2), ref, rtol=1e-12)
    pt, ps = mia.stable_logit(t, y), mia.stable_logit(s, y)
    direct = np.empty(len(y))
    for j in range(len(y)):
        i, o = ps[keep[:, j], j], ps[~keep[:, j], j]
        direct[j] = np.mean(norm.logpdf(pt[j], i.mean(0), i.std(0, ddof=1)) - norm.logpdf(pt[j], o.mean(0), o.std(0, ddof=1)))
    np.testing.assert_allclose(ref, direct, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mia.lira_from_stable(pt, ps, keep), ref, rtol=1e-12)
    off = mia.lira(t, s, y, keep, online=False)
    o_mean = np.array([ps[~keep[:, j], j].mean(0) for j in range(len(y))])
    o_sd = np.array([ps[~keep[:, j], j].std(0, ddof=1) for j in range(len(y))])
    np.testing.assert_allclose(off, norm.logcdf((pt - o_mean) / o_sd).mean(1), rtol=1e-9)


def test_lira_accepts_memory_mapped_shadows(tmp_path):
    t, s, y, keep, member = planted(m=4, n=300, seed=4)
    np.save(tmp_path / "s.npy", s)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    np.testing.assert_allclose(mia.lira(t, mm, y, keep), mia.lira(t, s, y, keep))


def test_few_shadows_need_fixed_variance_and_bad_shapes_are_named():
    t, s, y, keep, member = planted(m=2, n=200)
    with pytest.raises(ValueError, match="fixed_variance"):
        mia.lira(t, s, y, keep)
    assert np.isfinite(mia.lira(t, s, y, keep, fixed_variance=True)).all()
    with pytest.raises(ValueError, match="shadow_in"):
        mia.lira(t, s, y, keep[:, :10])
    with pytest.raises(ValueError, match="must agree"):
        mia.lira(t[:10], s, y, keep)
    with pytest.raises(ValueError, match="labels"):
        mia.lira(t, s, y + 100, keep)


# ---------------------------------------------------------------- baselines
def test_loss_attack_ranks_low_loss_first():
    t, s, y, keep, member = planted(seed=5)
    scores = mia.loss_attack(t, y)
    assert auc(scores, member) > 0.6
    two_d = mia.loss_attack(t[:, 0], y)
    from scipy.special import log_softmax

    np.testing.assert_allclose(two_d, log_softmax(t[:, 0].astype(np.float64), axis=1)[np.arange(len(y)), y], rtol=1e-6)


@pytest.mark.parametrize("online", [True, False])
def test_rmia_finds_members_and_is_chance_on_null(online):
    for null, check in ((False, lambda a: a > 0.65), (True, lambda a: abs(a - 0.5) < 0.04)):
        t, s, y, keep, member = planted(n=3000, null=null, seed=6)
        tz, sz, yz, _, _ = planted(n=500, null=True, seed=7)
        # population samples: nobody trained on them (OUT everywhere)
        scores = mia.rmia(t, s, y, keep, tz, sz, yz, online=online)
        assert ((scores >= 0) & (scores <= 1)).all()
        assert check(auc(scores, member)), (null, online, auc(scores, member))


def test_score_dispatches_every_attack():
    t, s, y, keep, member = planted(m=4, n=400, seed=8)
    tz, sz, yz, _, _ = planted(m=4, n=100, null=True, seed=9)
    phi = dict(target_phi=mia.stable_logit(t, y), shadow_phi=mia.stable_logit(s, y), shadow_in=keep,
               target_z_phi=mia.stable_logit(tz, yz), shadow_z_phi=mia.stable_logit(sz, yz), queries=["identity", "flip"])
    for a in mia.ATTACKS:
        assert mia.score(a, **phi).shape == (400,)
    with pytest.raises(ValueError, match="accepted"):
        mia.score("lira_magic", **phi)


# ---------------------------------------------------------------- the run: mask first, resumable shards
TINY = {"data.train_size": 60, "data.val_size": 30, "mia.population_size": 40, "mia.shadow_epochs": 1,
        "mia.n_shadows": 4, "train.batch_size": 32, "mia.n_bootstrap": 10}


@pytest.fixture()
def tiny_run(tmp_path):
    from tckr import runs

    return runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides=TINY)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One real tckr.train.fit on the tiny config (a shadow's job: half of P, one epoch)."""
    from tckr import runs, train

    run = runs.open_run("configs/tiny.yaml", tmp_path_factory.mktemp("fit") / "run", overrides=TINY)
    p = mia.pool(run)
    keep = mia.ensure_mask(run)
    val = run.real("val")
    model, hist = train.fit(run.cfg, run.cfg.classifier.teacher_arch, p.images[keep[0]], p.labels[keep[0]], val.images,
                            val.labels, seed=mia.shadow_seed(run, 0), epochs=1, progress=False, num_classes=10)
    assert len(hist) == 1 and model.tckr_fit["train_size"] == 60
    return model


@pytest.fixture()
def quick_fit(fitted, monkeypatch):
    """tckr.train.fit replaced by copies of the real fit's model with seeded head noise; records calls."""
    import copy

    import torch

    from tckr import train

    calls = []

    def fit(cfg, arch, images, targets, *args, seed, desc="", **kw):
        calls.append(desc)
        model = copy.deepcopy(fitted)
        gen = torch.Generator().manual_seed(int(seed) % 2**31)
        with torch.no_grad():
            for prm in model.get_classifier().parameters():
                prm.add_(0.1 * torch.randn(prm.shape, generator=gen))
        model.tckr_fit = {**fitted.tckr_fit, "seed": int(seed), "train_size": len(images)}
        return model, pd.DataFrame()

    monkeypatch.setattr(train, "fit", fit)
    return calls


def test_shadows_mask_first_shards_and_resume(tiny_run, quick_fit, monkeypatch):
    from tckr import train

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


def test_attack_writes_results_roc_arrays_aop_and_figures(tiny_run, quick_fit):
    from tckr import io

    from tckr import classifiers, train

    run = tiny_run
    mia.train_shadows(run, progress=False)
    assert mia.query_targets(run, "teacher", progress=False) == ["teacher"]
    student = mia.available_targets(run)["teacher"]
    model = classifiers.load(student["path"])
    classifiers.save(model, run.path("classifiers", "fashion_mnist_mbnv3_synth1x.safetensors"), arch=model.tckr_meta["arch"],
                     class_names=run.class_names, normalisation=train.normalisation(run.cfg), config_hash=run.cfg.hash(),
                     extra={"role": "student", "name": "student_synth1x", "label_mode": "soft", "multiple": 1.0})
    assert mia.query_targets(run, progress=False) == ["teacher", "student_synth1x"]
    assert list(mia.select_targets(run, "students")) == ["student_synth1x"]
    with pytest.raises(ValueError, match="available"):
        mia.select_targets(run, "student_synth9x")
    res = mia.attack(run, "teacher")
    assert list(res["attack"]) == list(run.cfg.mia.attacks) and set(res["target"]) == {"teacher"}
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
    aop = mia.write_aop(run)
    auc_online = table.set_index("attack").loc["lira_online", "auc"]
    assert aop["aop"].iloc[0] == pytest.approx(100 * metrics.aop(0.8, auc_online))
    figs = mia.plot_roc(run)
    assert {f.name for f in figs} >= {"mia_roc_teacher.pdf", "mia_roc_teacher.png", "mia_roc_lira_online.png"}
    with pytest.raises(FileNotFoundError, match="not trained"):
        mia.attack(run, n_shadows=6)


def test_cli_trains_one_shard(tiny_run, quick_fit):
    run = tiny_run
    assert mia.main(["--run-dir", str(run.dir), "--shard", "1/2"]) == 0
    done = sorted(p.stem for p in (run.dir / "mia" / "logits").glob("shadow_???.npy"))
    assert done == ["shadow_000", "shadow_002"] and quick_fit == done
    assert mia.parse_shard("2/2") == (2, 2) and mia.parse_shard(None) == (1, 1)
    for bad in ("0/2", "3/2"):
        with pytest.raises(ValueError, match="k/n"):
            mia.parse_shard(bad)


@pytest.mark.e2e
def test_notebook_05_on_the_tiny_chain(tiny_chain):
    """05_mia_lira ran in the chain: the teacher and every student attacked, AOP and audit written."""
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
    assert (run_dir / "figures" / "mia_roc_lira_online.png").is_file()
    assert (run_dir / "figures" / "mia_audit_pairs.png").is_file()
