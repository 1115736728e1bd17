"""tckr.generator_mia: the generator attack finds the members of a LoRA overfit on a handful of images, its queries
are fixed across models and calls, the synthetic-set attack finds planted near-copies (and nothing in independent
images), LiRA uses the references' membership the right way round, and the run-level path end to end."""

from __future__ import annotations

import copy
import time
import types

import numpy as np
import pandas as pd
import pytest
import torch

from tckr.datasets import real
from tckr.generation import captions, generator, lora, prompt_files
from tckr.privacy import attacks, metrics
from tckr.privacy import generator_mia as gm
from tckr.privacy import synthetic_mia as sm
from tckr.runfolder import artifacts, synthetic

BASE = "models/tiny-sd-fashion"


def auc(scores, member):
    return metrics.attack_metrics(scores, np.asarray(member, bool))["auc"]


@pytest.fixture(scope="module")
def fashion():
    return real.load_real("fashion_mnist", "train")


@pytest.fixture(scope="module")
def base_pipe():
    # one thread: on the shared 2-core machine under load, 2 torch threads ran these small UNet calls ~30× slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield generator.load(BASE)
    torch.set_num_threads(before)


def _examples(ds, classes, seed):
    """One image per class, resized to 32 px, with its attribute-caption prompt."""
    rng = np.random.default_rng(seed)
    idx = np.array([rng.choice(np.flatnonzero(ds.labels == c)) for c in classes])
    images = real.resize_images(ds.images[idx], 32)
    prompts = [prompt_files.prompt_for(ds.class_names[ds.labels[i]], c) for i, c in zip(idx, captions.attribute_captions(images))]
    return images, prompts


def _random_adapter(pipe, seed, rank=4):
    """A LoRA with random up and down weights (peft's default init leaves up = 0, a no-op)."""
    generator.add_lora(pipe, rank, float(rank))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return pipe


# ---------------------------------------------------------------- generator statistic on a pipe
def test_generator_attack_finds_members_of_a_lora_overfit_on_a_handful_of_images(base_pipe, fashion):
    classes = [0, 1, 5, 7, 8, 9]
    mem_img, mem_prompts = _examples(fashion, classes, seed=0)
    non_img, non_prompts = _examples(fashion, classes, seed=1)
    pipe = copy.deepcopy(base_pipe)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.requires_grad_(False)
    generator.add_lora(pipe, 8, 8.0)
    params = [p for n, p in pipe.unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-2)
    # each member three times per batch, each copy with its own timestep and noise: at 60 steps this separated
    # members in 3 of 3 image draws (AUC 0.94-1.0), batches of 6 only in 1 of 3 at 100 steps
    z = gm.encode_images(pipe, mem_img, resolution=32).repeat(3, 1, 1, 1)
    emb = gm.encode_prompts(pipe, mem_prompts).repeat(3, 1, 1)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(60):
        lora.denoising_loss(pipe.unet, pipe.scheduler, z, emb, generator=g).backward()
        opt.step()
        opt.zero_grad()
    print(f"60 LoRA steps on 6 images (batch 18): {time.perf_counter() - start:.1f} s")
    errors = gm.denoising_errors(pipe, np.concatenate([mem_img, non_img]), mem_prompts + non_prompts, n_queries=4)
    member = np.r_[np.ones(6, bool), np.zeros(6, bool)]
    scores = gm.generator_scores(errors)
    assert auc(scores["gen_loss"], member) >= 0.9
    cond = errors[..., 0].mean(1)
    assert cond[member].mean() < 0.75 * cond[~member].mean()


def test_queries_are_fixed_for_every_model_and_call(base_pipe, fashion, tmp_path):
    ts = gm.query_timesteps(4)
    assert ts.tolist() == [50, 200, 350, 500] and gm.query_timesteps(1).tolist() == [50]
    a = gm.query_noise(7, [5, 17, 3], 3, (4, 8, 8))
    assert np.array_equal(a[1], gm.query_noise(7, [17], 3, (4, 8, 8))[0])  # independent of the batch it is in
    assert not np.allclose(a, gm.query_noise(8, [5, 17, 3], 3, (4, 8, 8)))
    assert not np.allclose(a[:, 0], a[:, 1])

    images, prompts = _examples(fashion, [0, 3, 6, 9], seed=2)
    ids = np.array([11, 4, 250, 9])

    def errors(pipe, **kw):
        return gm.denoising_errors(pipe, images, prompts, n_queries=3, seed=5, example_ids=ids, **kw)

    base = errors(base_pipe)
    assert base.shape == (4, 3, 2) and base.dtype == np.float32 and (base > 0).all()
    assert np.array_equal(base, errors(base_pipe))
    np.testing.assert_allclose(errors(base_pipe, batch_size=1), base, rtol=1e-4)
    # peft's initial adapter (up weights 0) is the base function: a second model sees exactly the same queries
    zero = copy.deepcopy(base_pipe)
    generator.add_lora(zero, 4, 4.0)
    np.testing.assert_array_equal(errors(zero), base)
    # two different adapters give different errors; swapping adapters in one pipe gives each one's own errors back
    files = []
    for seed in (1, 2):
        p = _random_adapter(copy.deepcopy(base_pipe), seed)
        files.append(generator.save_lora(p, tmp_path / f"a{seed}.safetensors", rank=4, alpha=4.0))
    pipe = copy.deepcopy(base_pipe)
    first = errors(generator.load_lora(pipe, files[0]))
    second = errors(generator.load_lora(pipe, files[1]))
    assert np.abs(first - second).max() > 1e-3 and np.abs(first - base).max() > 1e-3
    np.testing.assert_array_equal(errors(generator.load_lora(pipe, files[0])), first)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_error_is_against_the_schedulers_prediction_target(base_pipe, kind):
    """A UNet that knows the clean latents and outputs the exact target has zero error; the wrong target does not."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          prediction_type=kind)
    z0 = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ac = sched.alphas_cumprod

    def oracle(want):
        def unet(noisy, t, encoder_hidden_states):
            a = ac[t].sqrt().view(-1, 1, 1, 1)
            s = (1 - ac[t]).sqrt().view(-1, 1, 1, 1)
            clean = torch.cat([z0, z0])
            eps = (noisy - a * clean) / s
            return types.SimpleNamespace(sample=eps if want == "epsilon" else a * eps - s * clean)
        unet.dtype = torch.float32
        return unet

    for want, zero in ((kind, True), ("v_prediction" if kind == "epsilon" else "epsilon", False)):
        pipe = types.SimpleNamespace(unet=oracle(want), scheduler=sched, device=torch.device("cpu"),
                                     tokenizer=base_pipe.tokenizer, text_encoder=base_pipe.text_encoder)
        e = gm.denoising_errors(pipe, None, ["a", "b", "c"], n_queries=4, latents=z0)
        assert (e.max() < 1e-8) == zero, (kind, want, e.max())


# ---------------------------------------------------------------- synthetic-set attack
def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.random((7, 12)), rng.random((30, 12))
    brute = np.sort(np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1)), axis=1)
    np.testing.assert_allclose(sm.nearest_distances(q, r, 5, chunk=3), brute[:, :5], rtol=1e-9)
    np.testing.assert_allclose(sm.nearest_distances(q, r[:2], 5), brute_two := np.sort(
        np.sqrt(((q[:, None] - r[None, :2]) ** 2).sum(-1)), axis=1))
    assert brute_two.shape == (7, 2)


def test_synthetic_set_attack_finds_planted_near_copies_and_nothing_in_independent_images(fashion):
    rng = np.random.default_rng(0)
    pick = rng.choice(len(fashion.labels), 520, replace=False)
    real, labels = fashion.images[pick[:120]], fashion.labels[pick[:120]]
    member = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    independent, ind_labels = fashion.images[pick[120:]], fashion.labels[pick[120:]]
    stat = sm.synthetic_statistics(real, labels, independent, ind_labels)
    assert stat.shape == (120, 2) and (stat[:, 1] <= stat[:, 0]).all()
    null_auc = auc(sm.synthetic_scores(stat)["syn_distance"], member)
    assert 0.35 <= null_auc <= 0.65

    noisy = np.clip(real[member].astype(float) + rng.normal(0, 10, real[member].shape), 0, 255).astype(np.uint8)
    planted = sm.synthetic_statistics(real, labels, np.concatenate([independent, noisy]), np.r_[ind_labels, labels[member]])
    assert auc(sm.synthetic_scores(planted)["syn_distance"], member) >= 0.95


# ---------------------------------------------------------------- LiRA over reference models
def _fake_errors(keep, member, seed):
    """Log-errors with a wide per-example spread (hard and easy images) that membership lowers by 0.5:
    only a per-example reference can separate members from non-members."""
    rng = np.random.default_rng(seed)
    n, K = keep.shape[1], 3
    mu = 1.5 * rng.standard_normal((n, K))

    def model(inside):
        cond = mu - 0.5 * inside[:, None] + 0.15 * rng.standard_normal((n, K))
        null = mu + 0.2 + 0.15 * rng.standard_normal((n, K))
        return np.exp(np.stack([cond, null], -1)).astype(np.float32)

    return model(member), np.stack([model(k) for k in keep])


def test_generator_lira_uses_the_reference_mask_the_right_way_round():
    labels = np.repeat(np.arange(10), 40)
    keep = attacks.membership_mask(8, labels, seed=1)
    member = np.random.default_rng(2).permutation(np.r_[np.ones(200, bool), np.zeros(200, bool)])
    target, shadows = _fake_errors(keep, member, seed=3)
    right, swapped = gm.generator_scores(target, shadows, keep), gm.generator_scores(target, shadows, ~keep)
    assert set(right) == set(gm.GENERATOR_ATTACKS)
    assert auc(right["gen_loss"], member) < 0.75
    assert auc(right["gen_lira_online_fixed"], member) > 0.95
    assert auc(right["gen_lira_offline_fixed"], member) > 0.9
    # offline LiRA reads only the OUT references: swapped, it calibrates against IN ones and stays one-sided, so
    # only the online attack shows the orientation
    assert auc(right["gen_contrast_lira_online_fixed"], member) > 0.95
    assert auc(swapped["gen_lira_online_fixed"], member) < 0.05


def test_synthetic_lira_uses_the_reference_mask_the_right_way_round():
    labels = np.repeat(np.arange(10), 40)
    keep = attacks.membership_mask(8, labels, seed=4)
    member = np.random.default_rng(5).permutation(np.r_[np.ones(200, bool), np.zeros(200, bool)])
    rng = np.random.default_rng(6)
    base = -np.abs(rng.normal(0.2, 0.1, (400, 1)))  # how typical each image is: far from every synthetic image or not

    def stat(inside):
        d = base + 0.03 * inside[:, None] + 0.01 * rng.standard_normal((400, 2))
        return np.c_[d[:, 0], d[:, 1] - 0.02]

    right = sm.synthetic_scores(stat(member), np.stack([stat(k) for k in keep]), keep)
    swapped = sm.synthetic_scores(stat(member), np.stack([stat(k) for k in keep]), ~keep)
    assert auc(right["syn_distance"], member) < 0.7
    assert auc(right["syn_lira_online_fixed"], member) > 0.9
    assert auc(swapped["syn_lira_online_fixed"], member) < 0.1


# ---------------------------------------------------------------- a run with two fake shadow pipelines
def test_run_all_on_a_run_with_two_pipelines(tmp_path, base_pipe, monkeypatch, capsys):
    from tckr.privacy import pipelines
    from tckr.runfolder import runs

    # images at their native 28 px (resizing all 60,000 to 32 px is most of this test's time otherwise);
    # the generator's preprocessing still resizes its inputs to generator.resolution
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={
        "data.image_size": 28, "study.num_threads": 1, "mia.n_pipelines": 2, "mia.generator_examples": 20, "mia.generator_queries": 2, "mia.synthetic_examples": 0, "mia.pipeline_cardinalities": []})
    captions.caption_run(run, progress=False)
    subs = [pipelines.open_pipeline(run, i) for i in range(2)]
    for seed, r in enumerate([run, *subs]):
        p = _random_adapter(copy.deepcopy(base_pipe), seed + 10)
        generator.save_lora(p, artifacts.adapter_path(r), rank=4, alpha=4.0)

    # synthetic sets: noisy copies of each run's own D, so every set leaks its members
    def fake_multiples(r):
        return [0.5, 1.0]

    def fake_load(r, multiple):
        D = r.real("D")
        rng = np.random.default_rng(int(multiple * 10) + len(str(r.dir)))
        img = np.clip(D.images.astype(float) + rng.normal(0, 12, D.images.shape), 0, 255).astype(np.uint8)
        return synthetic.SyntheticSet(images=img, labels=D.labels, prompts=[""] * len(D))

    monkeypatch.setattr(synthetic, "available_multiples", fake_multiples)
    monkeypatch.setattr(synthetic, "load_synthetic", fake_load)

    out = gm.run_all(run, progress=True)
    printed = capsys.readouterr().out
    assert "target:" in printed and "pipeline_001:" in printed
    gen, syn = out["generator"], out["synthetic"]
    assert list(gen["attack"]) == list(gm.GENERATOR_ATTACKS) and (gen["release"] == "generator").all()
    assert set(syn["cardinality"]) == {0.5, 1.0} and (syn["release"] == "synthetic").all()
    assert (syn.loc[syn["attack"] == "syn_distance", "auc"] > 0.95).all()
    mia_cols = ["target", "role", "cardinality", "label_mode", "attack", "auc", "tpr_at_1pct", "n_shadows", "n_members"]
    for f in ("mia_generator.csv", "mia_synthetic.csv"):
        assert set(mia_cols + ["release"]) <= set(pd.read_csv(run.dir / "results" / f).columns)

    pos = np.load(run.dir / "mia" / "generator" / "subset.npy")
    saved = np.load(run.dir / "mia" / "pool.npz")
    assert len(pos) == 20 and saved["member"][pos].sum() == 10
    errs = {m: np.load(run.dir / "mia" / "generator" / f"errors_{m}.npy") for m in ("target", "pipeline_000", "pipeline_001")}
    assert all(e.shape == (20, 2, 2) for e in errs.values())
    assert np.abs(errs["pipeline_000"] - errs["pipeline_001"]).max() > 1e-4
    # the references' mask is each pipeline's real training set
    mask = sm.reference_mask(run, 2, pos)
    for i, sub in enumerate(subs):
        assert np.array_equal(mask[i], np.isin(saved["index"][pos], sub.splits().D))
    for a in gm.GENERATOR_ATTACKS:
        assert (run.dir / "mia" / "roc" / f"generator_{a}.csv").is_file()
        assert np.load(run.dir / "mia" / "scores" / f"generator_{a}.npy").shape == (20,)

    # resumable: a second call reads every model's errors back
    gm.run_all(run, progress=True)
    assert "errors read from errors_pipeline_001.npy" in capsys.readouterr().out
    # a missing pipeline adapter is named
    (run.dir / "mia" / "generator" / "errors_pipeline_001.npy").unlink()
    artifacts.adapter_path(subs[1]).unlink()
    with pytest.raises(FileNotFoundError, match="pipeline_001"):
        gm.attack_generator(run, progress=False)
