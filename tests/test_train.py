"""tckr.train / tckr.evaluate: batched augmentation, the training loop, GKD, inference, result files."""

import sys
import types
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from tckr.classification import augment, batches, checkpoints, classifiers, evaluate, inference, train
from tckr.core.config import load_config
from tckr.reporting import plots
from tckr.runfolder import artifacts, runs
from tckr.runfolder.synthetic import ShardedImages

ARCH = "mobilenetv3_small_050"
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [128, 128, 128]], dtype=np.float64)


def toy(n, seed, noise=40.0):
    """Class = colour of a centred blob, plus pixel noise: learnable in a few epochs, flip/crop invariant."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    rng.shuffle(y)
    yy, xx = np.mgrid[:32, :32]
    blob = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 100)[None, :, :, None]
    x = blob * PALETTE[y][:, None, None, :] + rng.normal(0, noise, (n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="module")
def cfg():
    return load_config("configs/tiny.yaml", {"train.epochs": 8, "train.batch_size": 25, "train.lr": 5e-3, "train.crop_padding": 0.0,
                                             "study.num_threads": 1})


@pytest.fixture(scope="module")
def fitted(cfg, tmp_path_factory):
    x, y = toy(300, 0)
    xv, yv = toy(300, 1)
    hist_path = tmp_path_factory.mktemp("h") / "hist.csv"
    model, hist = train.fit(cfg, ARCH, x, y, xv, yv, seed=0, history_path=hist_path, progress=False)
    return model, hist, hist_path, (xv, yv)


def test_random_crop_translates_each_image_by_its_drawn_offset_with_zero_fill():
    """Zero-pad by ``pad`` and crop back at the offsets drawn from the training's generator (rows, then columns):
    each image moves by its own offset in [-pad, pad] and zeros come in where it moved away."""
    n, pad = 64, 2
    x = torch.randint(1, 256, (n, 3, 8, 8), dtype=torch.uint8)  # no zero pixel of its own: the fill shows
    out = augment.random_crop(x, pad, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    draws = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=draws)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=draws)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    for i in range(n):
        assert torch.equal(out[i], padded[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]), i
    moved = (oy != pad) | (ox != pad)
    assert moved.float().mean() > 0.5 and len(set(zip(oy.tolist(), ox.tolist()))) >= 20  # offsets vary over the batch
    assert all(not torch.equal(out[i], x[i]) and bool((out[i] == 0).any()) for i in moved.nonzero().flatten().tolist())
    assert augment.random_crop(x, 0, torch.Generator()) is x  # padding 0: no crop


def test_random_flip_mirrors_the_images_drawn():
    n = 64
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8)
    out = augment.random_flip(x, torch.Generator().manual_seed(1))
    flip = torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.5
    for i in range(n):
        assert torch.equal(out[i], x[i].flip(-1) if flip[i] else x[i]), i
    assert 16 < int(flip.sum()) < 48 and not torch.equal(out, x)


def test_augment_batch_flips_then_crops_from_one_generator():
    c = load_config("configs/tiny.yaml", {"train.flip": True, "train.crop_padding": 0.125, "train.augmix": False})
    assert augment.crop_pixels(c) == 4  # 0.125 of 32 pixels
    x = torch.as_tensor(toy(16, 3)[0]).permute(0, 3, 1, 2).contiguous()
    out = augment.augment_batch(x, c, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    assert torch.equal(out, augment.random_crop(augment.random_flip(x, g), 4, g)) and not torch.equal(out, x)


def test_shift_query():
    x = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    s = augment.shift(x, 1)
    assert torch.equal(s[..., 1:, 1:], x[..., :-1, :-1]) and int(s[..., 0, :].sum()) == 0 and int(s[..., :, 0].sum()) == 0
    assert augment.shift(x, 0) is x


def test_augmix_changes_the_pixels_and_only_when_asked(cfg):
    x, _ = toy(20, 5)
    x = torch.as_tensor(x).permute(0, 3, 1, 2).contiguous()
    torch.manual_seed(0)
    out = augment.augmix(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    changed = (out != x).flatten(1).any(1)
    assert changed.float().mean() >= 0.9, changed  # AugMix alters (nearly) every image ...
    d_own = (out.float() - x.float()).abs().mean((1, 2, 3))
    d_other = (out.float() - x.roll(1, 0).float()).abs().mean((1, 2, 3))
    assert (d_own < d_other).float().mean() >= 0.9  # ... and keeps it closer to its own original than to another
    plain = load_config("configs/tiny.yaml", {"train.flip": False, "train.crop_padding": 0.0, "train.augmix": False})
    mixed = load_config("configs/tiny.yaml", {"train.flip": False, "train.crop_padding": 0.0, "train.augmix": True})
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(augment.augment_batch(x, plain, gen), x)
    assert not torch.equal(augment.augment_batch(x, mixed, gen), x)


def test_mixup_mixes_images_and_targets_with_one_beta_weight():
    """MixUp: image and target of each example become ``lam * own + (1 - lam) * partner's``, one ``lam`` drawn from
    Beta(alpha, alpha) (torch's global RNG) per batch, partners a permutation drawn from the training's generator."""
    n, alpha = 8, 0.4
    x = torch.rand(n, 3, 4, 4)
    t = torch.nn.functional.one_hot(torch.arange(n), 10).float()
    torch.manual_seed(3)
    mx, mt = augment.mixup(x, t, alpha, torch.Generator().manual_seed(1))
    torch.manual_seed(3)
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    assert 0 < lam < 1 and not torch.equal(perm, torch.arange(n))
    assert torch.equal(mt, lam * t + (1 - lam) * t[perm]) and torch.equal(mx, lam * x + (1 - lam) * x[perm])
    assert not torch.equal(mt, t) and not torch.equal(mx, x)  # targets and images change
    assert torch.allclose(mt.sum(1), torch.ones(n)) and bool((mt >= 0).all())  # convex: still distributions
    same_x, same_t = augment.mixup(x, t, 0.0, torch.Generator())
    assert same_x is x and same_t is t  # alpha 0 disables it


@pytest.mark.parametrize("alpha", [0.4, 2.0])
def test_mixup_weight_follows_beta_alpha_alpha(alpha):
    """The weights read back from the mixed targets of 2000 batches: a Kolmogorov-Smirnov test accepts
    Beta(alpha, alpha) and rejects the other alpha (U-shaped at 0.4, bell-shaped at 2)."""
    from scipy import stats

    x = torch.zeros(6, 1)
    t = torch.eye(6)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    lams = []
    for _ in range(2000):
        _, mt = augment.mixup(x, t, alpha, gen)
        lam = float(mt.diagonal().min())  # a row mixed with another row keeps lam on its own class (1 when unmixed)
        if lam < 1:
            lams.append(lam)
    assert len(lams) > 1900
    assert stats.kstest(lams, "beta", args=(alpha, alpha)).pvalue > 0.01
    other = 2.0 if alpha == 0.4 else 0.4
    assert stats.kstest(lams, "beta", args=(other, other)).pvalue < 1e-6


def test_regenerate_every_redraws_the_training_set(cfg):
    x, y = toy(60, 8)
    xv, yv = toy(30, 9)
    calls = []

    def redraw(epoch):
        calls.append(epoch)
        rx, ry = toy(40, 100 + epoch)  # a different (smaller) set: its size shows it was trained on
        return rx, ry

    c = load_config("configs/tiny.yaml", {"gkd.regenerate_every": 2, "train.patience": 0, "train.batch_size": 20,
                                          "train.augmix": False, "train.mixup_alpha": 0.0, "study.num_threads": 1})
    model, hist = train.fit(c, ARCH, x, y, xv, yv, seed=0, epochs=5, redraw=redraw, progress=False)
    assert calls == [3, 5] and len(hist) == 5
    assert model.info["train_size"] == 40
    never = load_config("configs/tiny.yaml", {"train.patience": 0, "train.batch_size": 20, "train.augmix": False,
                                              "study.num_threads": 1})
    calls.clear()
    model, _ = train.fit(never, ARCH, x, y, xv, yv, seed=0, epochs=2, redraw=redraw, progress=False)
    assert calls == [] and model.info["train_size"] == 60


def test_fit_learns_and_selects_best_epoch_on_val(cfg, fitted):
    model, hist, hist_path, (xv, yv) = fitted
    assert list(hist.columns) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                                  "images_per_second", "best"]
    pd.testing.assert_frame_equal(pd.read_csv(hist_path), hist, check_dtype=False)
    acc = 100 * np.mean(inference.predict_logits(model, xv, cfg).argmax(1) == yv)
    assert acc == pytest.approx(hist.val_accuracy.max(), abs=1e-6)
    # the selection keeps the latest epoch among equally good ones (val_acc >= best)
    assert model.info["best_epoch"] == int(hist.loc[hist.val_accuracy == hist.val_accuracy.max(), "epoch"].max())
    assert hist.val_accuracy.max() >= 60, hist
    assert not model.model.training


def test_keep_last_returns_the_last_epochs_weights():
    """train.keep: last (leaky controls) returns the final epoch's weights, not the best validation epoch's; with
    patience 0 every epoch runs. Validation labels that contradict the training rule make the two differ."""
    x, y = toy(200, 0)
    xv, yv = toy(50, 1)
    yv = (yv + 1) % 10
    base = {"train.epochs": 4, "train.batch_size": 25, "train.lr": 5e-3, "train.crop_padding": 0.0, "study.num_threads": 1,
            "train.patience": 0}
    c = load_config("configs/tiny.yaml", {**base, "train.keep": "last"})
    last, hist = train.fit(c, ARCH, x, y, xv, yv, seed=0, progress=False)
    assert len(hist) == 4 and last.info["best_epoch"] == 4 and last.info["kept"] == "last"
    acc = 100 * np.mean(inference.predict_logits(last, xv, c).argmax(1) == yv)
    assert acc == pytest.approx(hist.val_accuracy.iloc[-1], abs=1e-6) and last.info["val_accuracy"] == pytest.approx(acc)
    best, hist_b = train.fit(load_config("configs/tiny.yaml", base), ARCH, x, y, xv, yv, seed=0, progress=False)
    pd.testing.assert_frame_equal(hist.drop(columns=["seconds", "images_per_second"]),
                                  hist_b.drop(columns=["seconds", "images_per_second"]))  # same training, other weights kept
    assert best.info["kept"] == "best" and best.info["best_epoch"] == int(hist.loc[hist.best, "epoch"].max())
    differ = any(not torch.equal(p, q) for p, q in zip(last.model.state_dict().values(), best.model.state_dict().values()))
    assert differ == (best.info["best_epoch"] != 4)


def test_predict_logits_and_embed(cfg, fitted):
    model, _, _, (xv, _) = fitted
    ident = inference.predict_logits(model, xv[:7], cfg)
    assert ident.shape == (7, 10) and ident.dtype == np.float32
    flip = inference.predict_logits(model, xv[:7], cfg, augment="flip")
    np.testing.assert_allclose(flip, inference.predict_logits(model, xv[:7, :, ::-1].copy(), cfg), atol=1e-4)
    assert inference.predict_logits(model, xv[:7], cfg, augment="shift").shape == (7, 10)
    np.testing.assert_allclose(inference.predict_logits(model, xv[:7], cfg, batch_size=3), ident, atol=1e-4)
    with pytest.raises(ValueError, match="accepted: identity, flip, shift"):
        inference.predict_logits(model, xv[:2], cfg, augment="rotate")
    feats = inference.embed(model, xv[:5], cfg)
    assert feats.ndim == 2 and feats.shape[0] == 5 and feats.dtype == np.float32


def test_fit_rejects_bad_inputs(cfg):
    x, y = toy(10, 0)
    with pytest.raises(ValueError, match="uint8"):
        train.fit(cfg, ARCH, x.astype(np.float32), y, x, y, seed=0, progress=False)
    with pytest.raises(ValueError, match="10 images but 9 targets"):
        train.fit(cfg, ARCH, x, y[:9], x, y, seed=0, progress=False)


def test_gkd_student_on_held_out_data_matches_teacher(cfg, fitted):
    """GKD sanity: a student trained on other real images with the teacher's online soft labels. The
    student gets 12 epochs to the teacher's 8 (robust over seeds 1-3; at 8 one seed lands 2.3 points
    short on this toy); bench/bench_gkd_sanity.py measures the mini tier at equal budgets."""
    teacher, _, _, (xv, yv) = fitted
    xh, _ = toy(300, 2)
    xt, yt = toy(300, 3)
    soft = inference.soft_labels(teacher, xh, cfg)
    assert soft.shape == (300, 10) and np.allclose(soft.sum(1), 1, atol=1e-5)
    student, hist = train.fit(cfg, ARCH, xh, soft, xv, yv, seed=1, teacher=teacher, epochs=12, progress=False)
    acc_t = 100 * np.mean(inference.predict_logits(teacher, xt, cfg).argmax(1) == yt)
    acc_s = 100 * np.mean(inference.predict_logits(student, xt, cfg).argmax(1) == yt)
    assert acc_s >= acc_t - 2, (acc_t, acc_s)


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "no-flip"])
def test_gkd_with_the_teachers_views_computed_once_trains_the_same_weights(cfg, fitted, monkeypatch, flip):
    """A student whose teacher outputs come from loop.teacher_views (computed once) ends with the very weights of
    one whose teacher runs on every augmented batch, history included; with a crop the views are not used."""
    from tckr.classification import loop

    teacher = fitted[0]
    c = load_config("configs/tiny.yaml", {"train.epochs": 3, "train.batch_size": 32, "train.flip": flip,
                                          "train.crop_padding": 0.0, "study.num_threads": 1})
    (x, y), (xv, yv) = toy(150, 21), toy(50, 22)
    soft = np.full((len(x), 10), 0.1, dtype=np.float32)
    calls = []
    views = loop.teacher_views
    monkeypatch.setattr(loop, "teacher_views", lambda tr: calls.append(1) or views(tr))
    cached, hist_a = train.fit(c, ARCH, x, soft, xv, yv, seed=4, teacher=teacher, progress=False)
    assert calls and views(loop.start(c, ARCH, 10, torch.device("cpu"), teacher, 0, 1, *loop.training_set(x, soft))).shape == (2 if flip else 1, 150, 10)
    monkeypatch.setattr(loop, "teacher_views", lambda tr: None)
    online, hist_b = train.fit(c, ARCH, x, soft, xv, yv, seed=4, teacher=teacher, progress=False)
    a, b = cached.state_dict(), online.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(hist_a.drop(columns=["seconds", "images_per_second"]), hist_b.drop(columns=["seconds", "images_per_second"]))
    cropped = load_config("configs/tiny.yaml", {"train.crop_padding": 0.125, "study.num_threads": 1})
    assert views(loop.start(cropped, ARCH, 10, torch.device("cpu"), teacher, 0, 1, *loop.training_set(x, soft))) is None


AUG_OFF = {"train.epochs": 1, "train.batch_size": 20, "train.flip": False, "train.crop_padding": 0.0, "train.augmix": False,
           "train.mixup_alpha": 0.0, "train.patience": 0, "study.num_threads": 1}


def _trained_weights(overrides, soft=False):
    (x, y), (xv, yv) = toy(40, 11), toy(20, 12)
    targets = np.eye(10, dtype=np.float32)[y] if soft else y
    model, hist = train.fit(load_config("configs/tiny.yaml", {**AUG_OFF, **overrides}), ARCH, x, targets, xv, yv, seed=0,
                            progress=False)
    assert len(hist) == 1 and np.isfinite(hist.train_loss).all()
    return model.state_dict()


@pytest.fixture(scope="module")
def plain_weights():
    return _trained_weights({})


def test_training_without_augmentation_is_repeatable(plain_weights):
    """So that a difference in the next test is the augmentation's doing, not noise."""
    again = _trained_weights({})
    assert all(torch.equal(again[k], v) for k, v in plain_weights.items())


@pytest.mark.parametrize("switch", [{"train.flip": True}, {"train.crop_padding": 0.125}, {"train.augmix": True},
                                    {"train.mixup_alpha": 0.4}], ids=["flip", "crop", "augmix", "mixup"])
def test_each_augmentation_changes_the_trained_weights(plain_weights, switch):
    """One epoch with one augmentation switched on ends with other weights than with all of them off (an
    augmentation that drew its random numbers but left the batch alone would end with the same ones)."""
    on = _trained_weights(switch)
    assert any(not torch.equal(on[k], v) for k, v in plain_weights.items() if v.is_floating_point())


def test_mixup_changes_training_on_soft_targets():
    off, on = _trained_weights({}, soft=True), _trained_weights({"train.mixup_alpha": 0.4}, soft=True)
    assert any(not torch.equal(on[k], v) for k, v in off.items() if v.is_floating_point())


def test_altered_channel_stats_cache_is_recomputed(tmp_path, monkeypatch, capsys):
    """Every classifier's input normalisation comes from these numbers: a cache whose numbers or key do not match the
    sha256 recorded with them is said and recomputed from the train split."""
    from tckr.core import io
    from tckr.datasets import real

    monkeypatch.setattr(real, "stats_cache_dir", lambda: tmp_path / "stats")
    c = load_config("configs/tiny.yaml")
    first = batches.normalisation(c)
    assert first == real.compute_channel_stats(real.load_real("fashion_mnist", "train", size=32).images)
    (cache,) = (tmp_path / "stats").glob("fashion_mnist_32_*.json")
    rec = io.read_json(cache)
    assert (rec["mean"], rec["key"]["dataset"], rec["key"]["size"]) == (first["mean"], "fashion_mnist", 32) and rec["key"]["source"]
    assert batches.normalisation(c) == first and capsys.readouterr().out == ""  # read back, unchanged
    io.write_json(cache, {**rec, "mean": [0.9, 0.9, 0.9]})  # edited by hand, the old checksum kept
    assert batches.normalisation(c) == first and "computing them again" in capsys.readouterr().out
    assert io.read_json(cache) == rec  # written again
    other = {**rec["key"], "source": ["elsewhere"]}  # computed from other data, its checksum consistent
    io.write_json(cache, {**rec, "key": other, "mean": [0.9, 0.9, 0.9],
                          "sha256": real._stats_sha256(other, {"mean": [0.9, 0.9, 0.9], "std": rec["std"]})})
    assert batches.normalisation(c) == first and "computing them again" in capsys.readouterr().out


def test_inference_normalises_with_the_classifiers_recorded_statistics(cfg):
    """A trained classifier is fed as it was trained (the normalisation in its sidecar), not with a fresh look-up of
    the cache; a bare module gets the config's statistics."""
    x = toy(6, 3)[0]
    torch.manual_seed(0)
    net = classifiers.build(ARCH, 10, pretrained=False, input_size=32).eval()
    with torch.no_grad():
        net.get_classifier().weight.normal_(0, 1)
    recorded = {"mean": [0.2, 0.3, 0.4], "std": [0.5, 0.4, 0.3]}
    clf = classifiers.TrainedClassifier(net, ARCH, 10, input_size=32, stem_stride=1, normalisation=recorded)
    batch = torch.as_tensor(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        want = net(batches.Preprocess(recorded, 32)(batch)).numpy()
        want_bare = net(batches.Preprocess(batches.normalisation(cfg), 32)(batch)).numpy()
    got = inference.predict_logits(clf, x, cfg)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(inference.predict_logits(net, x, cfg), want_bare, atol=1e-4)
    assert not np.allclose(got, want_bare, atol=1e-2)


@dataclass
class FakeSynthetic:
    images: np.ndarray
    labels: np.ndarray
    prompts: list


@pytest.fixture
def fake_synthesis(monkeypatch):
    sets = {}
    mod = types.ModuleType("tckr.runfolder.synthetic")
    mod.SyntheticSet = FakeSynthetic

    def load_synthetic(run, multiple):
        if multiple not in sets:
            raise FileNotFoundError("run notebooks/03_generate.ipynb")
        return sets[multiple]

    mod.load_synthetic = load_synthetic
    mod.stream_synthetic = load_synthetic
    mod.ShardedImages = ShardedImages
    mod.available_multiples = lambda run: sorted(sets)
    mod.check = lambda run: None  # the real one checks shard checksums; these sets are in memory
    monkeypatch.setitem(sys.modules, "tckr.runfolder.synthetic", mod)
    import tckr

    monkeypatch.setattr(tckr, "synthesis", mod, raising=False)
    monkeypatch.setattr(train, "synthetic", mod)  # the module train imported
    return sets


def test_teacher_students_and_result_files(tmp_path, fake_synthesis, monkeypatch):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"train.epochs": 2, "gkd.regenerate_every": 1,
                                                                          "train.batch_size": 50, "study.num_threads": 1})
    with pytest.raises(FileNotFoundError, match="03_generate"):
        train.students(run, [0.5])
    n = len(run.real("D"))
    for mult in (0.5, 1.0):
        x, y = toy(int(mult * n), 7)
        fake_synthesis[mult] = FakeSynthetic(x, y, [f"c{i}" for i in y])
    draw = train._redrawer(run, 20, 0)  # gkd.regenerate_every: each epoch draws other synthetic images and labels
    (a, la), (b, lb) = draw(2), draw(3)
    assert len(a) == len(b) == 20 and not np.array_equal(a, b) and sorted(la) == sorted(lb)
    np.testing.assert_array_equal(draw(2)[0], a)
    written, write = [], checkpoints.write_checkpoint
    monkeypatch.setattr(checkpoints, "write_checkpoint", lambda path, *a: written.append(path.name) or write(path, *a))
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)
    t = train.teacher(run, progress=False)
    assert artifacts.weights_file(run, "teacher").name == "fashion_mnist_mbnv3_real.safetensors"
    assert (run.dir / "classifiers" / "fashion_mnist_mbnv3_real.json").is_file()
    again = train.teacher(run, progress=False)  # cached: loaded, not retrained
    assert again.info == t.info and again.path == t.path == artifacts.weights_file(run, "teacher")
    assert (t.arch, t.input_size, t.config_hash) == (run.cfg.classifier.teacher_arch, run.cfg.classifier.input_size, run.cfg.hash())
    assert t.normalisation == batches.normalisation(run.cfg) and t.class_names == tuple(run.class_names)
    studs = [*train.students(run, [0.5], t).values(), *train.students(run, [0.5], t, label_mode="hard").values()]
    assert (run.dir / "classifiers" / "fashion_mnist_mbnv3_synth0.5x.safetensors").is_file()
    assert (run.dir / "classifiers" / "fashion_mnist_mbnv3_synth0.5x_hard.safetensors").is_file()
    # every epoch checkpointed beside the weights (at CHECKPOINT_SECONDS 0), and the checkpoints deleted once the weights were written
    assert sorted(set(written)) == ["fashion_mnist_mbnv3_real.ckpt", "fashion_mnist_mbnv3_synth0.5x.ckpt",
                                    "fashion_mnist_mbnv3_synth0.5x_hard.ckpt"] and len(written) == 6
    assert not list((run.dir / "classifiers").glob("*.ckpt"))
    rows = [evaluate.evaluate(run, m) for m in [t, *studs]]
    table = evaluate.results_table(run)
    assert list(table.columns) == evaluate.COLUMNS
    assert table.model.iloc[0] == "teacher"
    assert set(table.model) == {"teacher", "student_synth0.5x", "student_synth0.5x_hard"}
    assert np.isnan(table.set_index("model").loc["teacher", "cardinality"])
    assert table.set_index("model").loc["student_synth0.5x", "train_size"] == len(fake_synthesis[0.5].labels)
    test = run.real("test")
    per_class = pd.read_csv(run.dir / "results" / "per_class.csv")
    assert len(per_class) == 3 * 10 and set(per_class.columns) >= {"model", "class_id", "class_name", "accuracy"}
    conf = pd.read_csv(run.dir / "results" / "confusion_teacher.csv")
    assert conf["count"].sum() == len(test)
    diag = conf[conf.true_id == conf.predicted_id]["count"].sum()
    assert 100 * diag / len(test) == pytest.approx(rows[0]["test_accuracy"])
    evaluate.evaluate(run, t)  # re-evaluation replaces the row
    assert len(evaluate.results_table(run)) == 3
    fig = plots.plot_curves(run.dir)[0]
    assert fig.is_file() and fig.with_suffix(".png").is_file()
    from tckr.core import paths

    monkeypatch.setattr(paths, "TRAINED", tmp_path / "trained_mbnv3")
    exported = train.export_weights(run)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in exported) == [
        "trained_mbnv3/students/fashion_mnist_mbnv3_synth0.5x.safetensors",
        "trained_mbnv3/students/fashion_mnist_mbnv3_synth0.5x_hard.safetensors",
        "trained_mbnv3/teachers/fashion_mnist_mbnv3_real.safetensors"]
    assert (tmp_path / "trained_mbnv3" / "teachers" / "fashion_mnist_mbnv3_real.json").is_file()
    teacher_copy = next(p for p in exported if "teachers" in p.parts)
    assert classifiers.load_trained(teacher_copy, num_classes=10).info["role"] == "teacher"


@pytest.mark.e2e
def test_notebook_04_in_the_chain(tiny_chain):
    run = runs.open_run(None, tiny_chain)
    table = evaluate.results_table(run)
    multiples = sorted(run.cfg.synthesis.cardinalities)
    expected = ["teacher"] + [artifacts.model_name("student", m, run.cfg.gkd.label_mode) for m in multiples]
    expected.append(artifacts.model_name("student", min(multiples), "hard"))  # the ablation's hard-label student
    assert sorted(table.model) == sorted(expected)
    assert table.test_accuracy.between(0, 100).all() and table.val_accuracy.between(0, 100).all()
    teacher_row = table.set_index("model").loc["teacher"]
    assert teacher_row.train_size == len(run.splits().D) and np.isnan(teacher_row.cardinality)
    for m in multiples:
        path = artifacts.weights_file(run, "student", m, run.cfg.gkd.label_mode)
        model = classifiers.load_trained(path, arch=run.cfg.classifier.student_arch, num_classes=len(run.class_names))
        assert model.config_hash == run.cfg.hash()
        hist = pd.read_csv(artifacts.history_file(run, artifacts.model_name("student", m, run.cfg.gkd.label_mode)))
        assert len(hist) == table.set_index("model").loc[artifacts.model_name("student", m, run.cfg.gkd.label_mode), "epochs_run"]
    per_class = pd.read_csv(tiny_chain / "results" / "per_class.csv")
    assert len(per_class) == len(expected) * len(run.class_names)
    conf = pd.read_csv(tiny_chain / "results" / "confusion_teacher.csv")
    assert conf["count"].sum() == len(run.real("test"))
    assert (tiny_chain / "figures" / "classifier_curves.pdf").is_file()
    assert (tiny_chain / "figures" / "classifier_curves.png").is_file()
    assert (tiny_chain / "notebooks" / "04_run_evaluate.ipynb").is_file()


def test_checkpoints_are_written_every_checkpoint_seconds_or_every_epoch_with_on_epoch(cfg, monkeypatch, tmp_path):
    (x, y), (xv, yv) = toy(40, 31), toy(20, 32)
    written, write = [], checkpoints.write_checkpoint
    monkeypatch.setattr(checkpoints, "write_checkpoint", lambda path, *a: written.append(path.name) or write(path, *a))
    c = load_config("configs/tiny.yaml", {"train.epochs": 3, "train.batch_size": 20, "train.patience": 0, "study.num_threads": 1})
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 3600.0)
    train.fit(c, ARCH, x, y, xv, yv, seed=0, checkpoint=tmp_path / "a.ckpt", progress=False)
    assert written == []  # three short epochs: none written
    train.fit(c, ARCH, x, y, xv, yv, seed=0, checkpoint=tmp_path / "b.ckpt", progress=False, on_epoch=lambda e: None)
    assert written == ["b.ckpt"] * 3  # a caller acting after each epoch gets each epoch's state
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)
    train.fit(c, ARCH, x, y, xv, yv, seed=0, checkpoint=tmp_path / "c.ckpt", progress=False)
    assert written[3:] == ["c.ckpt"] * 3


def test_fit_reads_memory_mapped_images(cfg, tmp_path):
    x, y = toy(60, 5)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert isinstance(batches.as_tensor(mm), np.ndarray)
    model, hist = train.fit(cfg, ARCH, mm, y, mm[:20], y[:20], seed=0, epochs=1, progress=False)
    np.testing.assert_allclose(inference.predict_logits(model, mm[:8], cfg), inference.predict_logits(model, x[:8], cfg), atol=1e-5)


KILLED_FIT = """
import os, sys
import numpy as np
from tckr.classification import train
from tckr.core.config import load_config
folder, kill_after = sys.argv[1], int(sys.argv[2])
cfg = load_config("configs/tiny.yaml", {OVERRIDES})
a = {{n: np.load(os.path.join(folder, n + ".npy")) for n in ("x", "y", "xv", "yv")}}
def stop(epoch):
    if epoch == kill_after:
        os._exit(17)  # dies like a killed process: no cleanup, no return
train.fit(cfg, {ARCH!r}, a["x"], a["y"], a["xv"], a["yv"], seed=3, checkpoint=os.path.join(folder, "m.ckpt"),
          on_epoch=stop, progress=False)
"""
RESUME_OVERRIDES = {"train.epochs": 2, "train.batch_size": 20, "train.mixup_alpha": 0.4, "train.augmix": True,
                    "train.crop_padding": 0.1, "study.num_threads": 1}


def test_killed_training_resumes_bit_identical(tmp_path, capsys, monkeypatch):
    """A fit killed after epoch 1 and rerun ends with the weights and history of an uninterrupted fit (MixUp and
    AugMix draw from the global RNGs, crop and flip from fit's generator: all of them must be restored)."""
    import os
    import subprocess
    import sys

    cfg = load_config("configs/tiny.yaml", RESUME_OVERRIDES)
    (x, y), (xv, yv) = toy(40, 4), toy(20, 5)
    for n, a in {"x": x, "y": y, "xv": xv, "yv": yv}.items():
        np.save(tmp_path / f"{n}.npy", a)
    ckpt = tmp_path / "m.ckpt"
    script = KILLED_FIT.format(OVERRIDES=repr(RESUME_OVERRIDES), ARCH=ARCH)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), "1"], cwd=os.getcwd(), capture_output=True, text=True)
    assert done.returncode == 17, done.stderr[-2000:]
    epoch_1_seconds = checkpoints.read_checkpoint(ckpt, {})["progress"]["rows"][0]["seconds"]
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)  # the resumed fit rewrites it after epoch 2 (checked below)
    resumed, hist_r = train.fit(cfg, ARCH, x, y, xv, yv, seed=3, checkpoint=ckpt, progress=False)
    whole, hist_w = train.fit(cfg, ARCH, x, y, xv, yv, seed=3, progress=False)
    a, b = resumed.state_dict(), whole.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    cols = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "best"]
    pd.testing.assert_frame_equal(hist_r[cols], hist_w[cols])
    assert "after epoch 1" in capsys.readouterr().out
    # epoch 1 was not trained again: its row (with its timing) is the killed process's
    assert hist_r["seconds"].iloc[0] == epoch_1_seconds and hist_w["seconds"].iloc[0] != epoch_1_seconds
    assert checkpoints.read_checkpoint(ckpt, {})["progress"]["epoch"] == 2  # kept: the caller deletes it after saving


def test_unusable_checkpoint_is_said_and_training_starts_over(tmp_path, capsys, monkeypatch):
    cfg = load_config("configs/tiny.yaml", {**RESUME_OVERRIDES, "train.epochs": 1, "train.augmix": False})
    x, y = toy(40, 6)
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(train, "CHECKPOINT_SECONDS", 0.0)  # each fit writes its own checkpoint over the damaged one
    damaged, _ = train.fit(cfg, ARCH, x, y, x[:20], y[:20], seed=0, checkpoint=ckpt, progress=False)
    assert "not usable" in capsys.readouterr().out and ckpt.is_file()
    other, _ = train.fit(cfg, ARCH, x, y, x[:20], y[:20], seed=1, checkpoint=ckpt, progress=False)  # another training's
    assert "made by another training" in capsys.readouterr().out
    clean, _ = train.fit(cfg, ARCH, x, y, x[:20], y[:20], seed=0, progress=False)
    assert all(torch.equal(v, clean.state_dict()[k]) for k, v in damaged.state_dict().items())


def test_tensorboard_log_gets_each_epoch_and_stays_out_of_the_hash(tmp_path, monkeypatch):
    c = load_config("configs/tiny.yaml", {"train.epochs": 3, "train.patience": 0, "train.batch_size": 20, "train.augmix": False,
                                          "train.mixup_alpha": 0.0, "study.num_threads": 1, "train.log": "tensorboard"})
    assert c.hash() == load_config("configs/tiny.yaml", {"train.epochs": 3, "train.patience": 0, "train.batch_size": 20,
                                                         "train.augmix": False, "train.mixup_alpha": 0.0,
                                                         "study.num_threads": 1}).hash()

    class Board:
        def __init__(self, logdir):
            self.logdir, self.scalars, self.closed = logdir, [], False

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            self.closed = True

    boards, real_writer = [], train.tensorboard_writer
    monkeypatch.setattr(train, "tensorboard_writer", lambda logdir: boards.append(Board(logdir)) or boards[-1])
    x, y = toy(40, 0)
    hist_path = tmp_path / "classifiers" / "teacher_history.csv"
    _, hist = train.fit(c, ARCH, x, y, x, y, seed=0, history_path=hist_path, progress=False)
    (board,) = boards
    assert board.logdir == tmp_path / "tensorboard" / "teacher" and board.closed
    got = {(tag, step): v for tag, v, step in board.scalars}
    assert [got[("val_accuracy", e)] for e in hist["epoch"]] == hist["val_accuracy"].tolist()
    assert [got[("train_loss", e)] for e in hist["epoch"]] == hist["train_loss"].tolist()
    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(RuntimeError, match="needs the tensorboard package"):
        real_writer(tmp_path / "tb")
