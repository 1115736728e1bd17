"""data.public_style: the style transforms of the public partition (tckr.datasets.styles), their config key, and
the pretraining that uses them (styled images and captions, a reused VAE)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tckr import cli
from tckr.core import io, paths
from tckr.core.config import ConfigError, load_config
from tckr.datasets import provenance, styles
from tckr.generation import captions, pretrain
from tckr.runfolder import runs


def _images(n: int = 6, side: int = 32, seed: int = 0) -> np.ndarray:
    x = np.zeros((n, side, side, 3), np.uint8)
    x[:, side // 4: 3 * side // 4, side // 3: 2 * side // 3] = 200  # a bright object on a dark background
    return np.clip(x.astype(int) + np.random.default_rng(seed).integers(0, 40, x.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("style", styles.STYLES)
def test_every_style_keeps_shape_and_dtype_and_is_deterministic(style):
    x = _images()
    a, b = styles.apply_style(x, style), styles.apply_style(x.copy(), style)
    assert a.shape == x.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    if style == "none":
        assert a is x
    else:
        assert not np.array_equal(a, x)  # a style that changes nothing would leave the base D's look


def test_invert_is_an_involution_that_flips_intensity():
    x = _images()
    inv = styles.apply_style(x, "invert")
    assert np.array_equal(inv.astype(int), 255 - x.astype(int))
    assert np.array_equal(styles.apply_style(inv, "invert"), x)
    assert inv[:, 0, 0].mean() > 200 and inv[:, 16, 16].mean() < 60  # light background, dark object


def test_edges_light_the_outline_and_darken_flat_areas():
    x = np.zeros((2, 32, 32, 3), np.uint8)
    x[:, 8:24, 8:24] = 255
    e = styles.apply_style(x, "edges")
    assert e.max(axis=(1, 2, 3)).tolist() == [255, 255]
    assert e[:, 16, 16].max() == 0 and e[:, 0, 0].max() == 0  # inside and outside the square: flat
    assert e[:, 16, 8].min() > 100  # on its border
    assert (e[..., 0] == e[..., 1]).all() and (e[..., 1] == e[..., 2]).all()


def test_blur8_removes_detail_finer_than_an_eighth_of_the_side():
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[:, ::2] = 255  # stripes one pixel wide average out
    b = styles.apply_style(x, "blur8")
    assert np.ptp(b.astype(int)) <= 1 and abs(int(b.mean()) - 127) <= 1
    coarse = np.zeros((1, 32, 32, 3), np.uint8)
    coarse[:, :16] = 255  # a half-image edge survives
    c = styles.apply_style(coarse, "blur8")
    assert c[0, 0].min() == 255 and c[0, -1].max() == 0


def test_unknown_style_or_bad_images_fail_with_what_is_accepted():
    with pytest.raises(ValueError, match="accepted: none, invert, edges, blur8"):
        styles.apply_style(_images(), "sepia")
    with pytest.raises(ValueError, match="N×H×W×3 uint8"):
        styles.apply_style(_images().astype(np.float32), "invert")


def test_config_key_defaults_to_none_and_rejects_unknown_styles():
    assert load_config("configs/tiny.yaml").data.public_style == "none"
    assert load_config("configs/mini.yaml").data.public_style in styles.STYLES[1:]
    with pytest.raises(ConfigError, match=r"data.public_style: 'sepia' is not accepted; accepted: one of none, invert"):
        load_config("configs/tiny.yaml", {"data.public_style": "sepia"})


def _style_config(tmp_path, style: str) -> str:
    f = tmp_path / f"tiny-{style}.yaml"
    f.write_text(f"extends: {(paths.ROOT / 'configs' / 'tiny.yaml').as_posix()}\ndata:\n  public_style: {style}\n")
    return str(f)


def test_pretraining_sees_and_captions_the_styled_public_images(tmp_path):
    cfg = _style_config(tmp_path, "invert")
    images, labels, prompts, index = pretrain.public_data(cfg, tmp_path / "work", limit=12, seed=0)
    plain, _, plain_prompts, plain_index = pretrain.public_data("configs/tiny.yaml", tmp_path / "plain", limit=12, seed=0)
    assert np.array_equal(index, plain_index)  # the same public images (disjoint from D, H, val, test) ...
    assert np.array_equal(images, 255 - plain)  # ... in the style
    caps = captions.attribute_captions(images)
    assert [p.split(": ", 1)[1] for p in prompts] == caps and prompts != plain_prompts


def test_pretrain_can_reuse_a_base_vae_and_records_the_style(tmp_path, tiny_sd_base):
    args = ["pretrain", "--config", _style_config(tmp_path, "blur8"), "--run-dir", str(tmp_path / "work"),
            "--out", str(tmp_path / "model"), "--limit", "24", "--vae-from", str(tiny_sd_base), "--steps", "2",
            "--batch", "8", "--warmup", "1", "--checkpoint-every", "2", "--threads", "1"]
    assert cli.main(args) == 0
    work = tmp_path / "work"
    assert not (work / "vae_loss.csv").exists() and "vae: reused from" in (work / "log.txt").read_text()
    base_vae = pretrain.generator.load(tiny_sd_base).vae.state_dict()
    saved, meta = io.load_weights(work / "vae.safetensors")
    assert meta["from"] == str(tiny_sd_base) and all(np.array_equal(saved[k].numpy(), v.numpy()) for k, v in base_vae.items())
    rec, index = provenance.read_training_data(tmp_path / "model")
    assert "data.public_style: blur8" in rec["source"] and len(index) == 24
    assert np.isin(index, runs.open_run(None, work / "run").splits().public).all()
    assert pd.read_csv(work / "loss.csv")["step"].tolist() == [1, 2]
