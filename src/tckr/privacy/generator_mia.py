"""Membership inference at two release points of the pipeline: the adapted generator is released, and
the synthetic set is released (docs/privacy.md).

**Generator** (threat model: the LoRA-adapted generator is public). Per example x of P = D ∪ H with its
prompt ``"<class>: <caption>"`` (:func:`pool_prompts`): x is encoded by the VAE (posterior mean × scaling
factor, ``lora.preprocess`` at ``generator.resolution`` with ``lora.center_crop``, no flip); at K =
``mia.generator_queries`` fixed (timestep, noise) pairs the adapted UNet's denoising error
``mean((unet(z_t, t, c) − target)²)`` (target = noise or velocity per the scheduler's ``prediction_type``)
is measured conditioned on the prompt and on the null prompt ``""``. The pairs are the same for every
model: timesteps :func:`query_timesteps`, noise :func:`query_noise` seeded per (example, k). Attacks
(scores: higher = member):

- ``gen_loss``: ``−mean_k`` conditional error of the target (the loss-threshold baseline);
- ``gen_contrast``: ``mean_k`` (null − conditional) error of the target (CLiD's contrast, Zhai et al. 2024);
- ``gen_lira_{online,offline}_fixed``: fixed-variance Gaussian LiRA on ``−log`` conditional error per query,
  with the shadow pipelines' LoRAs (:mod:`tckr.pipelines`) as IN/OUT references (mask ``keep[:n_pipelines]``);
- ``gen_contrast_lira_{online,offline}_fixed``: the same on ``log null − log conditional`` per query.

LiRA works on logs: on the tiny base the mean conditional error is 0.165 at t = 50 and 0.026 at t = 500
(200 Fashion-MNIST images), and fixed-variance LiRA pools one variance over all queries, so raw errors
would let the small-t queries swamp the others; membership scales the error (a LoRA overfit on 6 images
cut it by 40-60% at every t), which a log turns into a shift of the same size at every query.

**Synthetic set** (threat model: the synthetic set is public): :mod:`tckr.privacy.synthetic_mia`, which also holds
the attacked examples and reference models that both attacks share; :func:`run_all` runs both.

Files in the run folder:

- ``mia/pipelines/captions_P.csv``: captions of P (``index, label, class_name, caption, prompt``), D's from
  the run's captions, H's from the run's captioner (shared with :mod:`tckr.pipelines`);
- ``mia/generator/subset.npy``: positions in P of the attacked examples; ``mia/generator/queries.json``:
  timesteps, noise seed, dtype; ``mia/generator/errors_<model>.npy`` float32 [n, K, 2] (conditional, null),
  ``<model>`` = ``target`` or ``pipeline_<iii>``;
- ``mia/synthetic/``: the synthetic-set attack's (:mod:`tckr.privacy.synthetic_mia`);
- ``mia/scores/<target>_<attack>.npy`` raw scores, ``mia/scores/<target>.csv`` (``index, label, member`` and one
  column per attack), ``mia/roc/<target>_<attack>.csv``, with ``<target>`` = ``generator`` or ``synthetic_x<m>``;
- ``results/mia_generator.csv`` and ``results/mia_synthetic.csv``: the columns of ``results/mia.csv`` plus
  ``release`` (``n_shadows`` = reference models used: 0 for the threshold attacks).

The attack functions on arrays (:func:`generator_scores`, :func:`query_timesteps`, :func:`query_noise`) take no
run folder and no torch.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tckr.core import io
from tckr.core.progress import note
from tckr.generation import generator, lora, synthesis
from tckr.privacy import attacks, mia, pipelines, synthetic_mia
from tckr.runfolder import artifacts, environment

GENERATOR_ATTACKS = ("gen_loss", "gen_contrast", "gen_lira_online_fixed", "gen_lira_offline_fixed",
                     "gen_contrast_lira_online_fixed", "gen_contrast_lira_offline_fixed")
# Query timesteps span [50, 500] of 1000 (ᾱ from 0.95 to 0.28 on the tiny base's scaled-linear schedule): SecMI
# (Duan et al. 2023) finds t ≈ 100 and PIA (Kong et al. 2024) t ≈ 200 the most telling; past t ≈ 700 (ᾱ < 0.1)
# x is mostly gone. On a LoRA overfit on 6 images (tests/test_generator_mia.py's setting, 100 steps), the
# single-t AUC was 0.86 at t = 10-25, 0.89-0.94 at t = 50-700 and 0.83 at t = 900.
QUERY_RANGE = (0.05, 0.5)
NOISE_STREAM = 70_001  # seed tag of the query noise, so it never shares a stream with the membership mask
ATTACK_BATCH = 256  # examples per UNet call (×2 rows: conditional and null)
_TINY = 1e-12


# ---------------------------------------------------------------- attack math (numpy only)
def query_timesteps(k: int, num_train_timesteps: int = 1000) -> np.ndarray:
    """K training timesteps evenly spaced over :data:`QUERY_RANGE` of the schedule (int64)."""
    if k < 1:
        raise ValueError(f"mia.generator_queries must be at least 1, got {k}")
    lo, hi = QUERY_RANGE
    return np.round(np.linspace(lo, hi, int(k)) * num_train_timesteps).astype(np.int64)


def query_noise(seed: int, example_ids: np.ndarray, k: int, shape: tuple[int, ...]) -> np.ndarray:
    """float32 [n, K, *shape]: the noise of query ``k`` of example ``id`` depends on (seed, id, k) only, so every
    model, batch and subset sees the same pairs."""
    ids = np.asarray(example_ids, dtype=np.int64)
    if (ids < 0).any():
        raise ValueError("example ids must be non-negative integers (positions or train-split indices)")
    out = np.empty((len(ids), int(k), *shape), dtype=np.float32)
    for j, e in enumerate(ids):
        for q in range(int(k)):
            out[j, q] = np.random.default_rng([int(seed), NOISE_STREAM, int(e), q]).standard_normal(shape, dtype=np.float32)
    return out


def generator_statistics(errors: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query statistics [n, K] from errors [n, K, 2] (conditional, null), higher = more member-like:
    ``loss`` = −log conditional error, ``contrast`` = log null − log conditional error."""
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 3 or e.shape[-1] != 2:
        raise ValueError(f"errors must be [n, K, 2] (conditional, null), got {e.shape}")
    log = np.log(np.maximum(e, _TINY))
    return {"loss": -log[..., 0], "contrast": log[..., 1] - log[..., 0]}


def generator_scores(target_errors: np.ndarray, shadow_errors: np.ndarray | None = None,
                     shadow_in: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Scores of :data:`GENERATOR_ATTACKS` from the target's errors [n, K, 2] and, for the LiRA attacks, the
    shadow generators' errors [m, n, K, 2] with their membership ``shadow_in`` bool [m, n]."""
    t = np.asarray(target_errors, dtype=np.float64)
    out = {"gen_loss": -t[..., 0].mean(1), "gen_contrast": (t[..., 1] - t[..., 0]).mean(1)}
    if shadow_errors is None:
        return out
    s = np.asarray(shadow_errors)
    if s.ndim != 4 or s.shape[1:] != t.shape:
        raise ValueError(f"shadow errors must be [m, {', '.join(map(str, t.shape))}], got {s.shape}")
    ts, ss = generator_statistics(t), generator_statistics(s.reshape(-1, *t.shape[1:]))
    for kind, prefix in (("loss", "gen_lira"), ("contrast", "gen_contrast_lira")):
        shadow_stat = ss[kind].reshape(s.shape[:3])
        for online in (True, False):
            name = f"{prefix}_{'online' if online else 'offline'}_fixed"
            out[name] = attacks.lira_from_stable(ts[kind], shadow_stat, shadow_in, online=online, fixed_variance=True)
    return out


# ---------------------------------------------------------------- the generator statistic (torch)
def encode_images(pipe, images: np.ndarray, *, resolution: int, center_crop: bool = True,
                  batch_size: int = ATTACK_BATCH) -> "torch.Tensor":
    """float32 [n, C, h, w] on the CPU: VAE posterior means × the VAE's scaling factor (``lora.preprocess``, no flip)."""


    vae = pipe.vae
    parts = []
    with torch.no_grad():  # not inference_mode: callers may train on these latents
        for s in range(0, len(images), batch_size):
            x = lora.preprocess(np.asarray(images[s:s + batch_size]), resolution, center_crop=center_crop)
            post = vae.encode(x.to(pipe.device, vae.dtype)).latent_dist
            parts.append((post.mean * vae.config.scaling_factor).float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0)


def encode_prompts(pipe, prompts: list[str]) -> "torch.Tensor":
    """Text embeddings, tokenized as ``lora.finetune`` does (padded to the tokenizer's length, no attention mask)."""
    tok = pipe.tokenizer
    ids = torch.tensor(tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids)
    with torch.no_grad():
        return pipe.text_encoder(ids.to(pipe.device))[0]


def denoising_errors(pipe, images: np.ndarray | None, prompts: list[str], *, n_queries: int = 4, seed: int = 0,
                     example_ids: np.ndarray | None = None, resolution: int | None = None, center_crop: bool = True,
                     batch_size: int = ATTACK_BATCH, latents=None) -> np.ndarray:
    """float32 [n, K, 2]: the UNet's denoising error on each image at K fixed (timestep, noise) queries,
    conditioned on its prompt (``[..., 0]``) and on ``""`` (``[..., 1]``).

    Noise of example ``example_ids[j]`` (default: its position) and query k comes from :func:`query_noise`
    with ``seed``; timesteps from :func:`query_timesteps`. ``latents`` (from :func:`encode_images`) skips the VAE,
    which LoRA does not change. The UNet runs in its own dtype; errors are computed in float32."""


    n = len(prompts)
    ids = np.arange(n) if example_ids is None else np.asarray(example_ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} example ids for {n} prompts")
    if latents is None:
        if images is None or len(images) != n:
            raise ValueError(f"need one image per prompt ({n}), got {None if images is None else len(images)}")
        res = int(resolution or np.asarray(images).shape[1])
        latents = encode_images(pipe, images, resolution=res, center_crop=center_crop, batch_size=batch_size)
    if len(latents) != n:
        raise ValueError(f"{len(latents)} latents for {n} prompts")
    sched, unet, dev = pipe.scheduler, pipe.unet, pipe.device
    dtype = unet.dtype
    ts = query_timesteps(n_queries, sched.config.num_train_timesteps)
    null = encode_prompts(pipe, [""]).to(dtype)
    out = np.empty((n, len(ts), 2), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            z = latents[s:s + batch_size].to(dev, torch.float32)
            b = len(z)
            emb = torch.cat([encode_prompts(pipe, list(prompts[s:s + b])).to(dtype), null.expand(b, -1, -1)])
            noise_all = torch.from_numpy(query_noise(seed, ids[s:s + b], len(ts), tuple(z.shape[1:]))).to(dev)
            for k, t in enumerate(ts):
                noise = noise_all[:, k]
                tt = torch.full((b,), int(t), device=dev, dtype=torch.long)
                noisy, velocity = lora.forward_diffusion(sched, z, noise, tt)
                target = lora.prediction_target(sched, noise, velocity)
                pred = unet(torch.cat([noisy, noisy]).to(dtype), torch.cat([tt, tt]), encoder_hidden_states=emb).sample
                err = ((pred.float() - torch.cat([target, target])) ** 2).mean(dim=(1, 2, 3)).cpu().numpy()
                out[s:s + b, k, 0], out[s:s + b, k, 1] = err[:b], err[b:]
    return out


# ---------------------------------------------------------------- the run's examples, prompts and reference models
def pool_prompts(run, *, progress: bool = True) -> pd.DataFrame:
    """Captions and prompts of every image of P (D first, then H): :func:`tckr.pipelines.pool_captions`, the one
    cached ``mia/pipelines/captions_P.csv`` the shadow pipelines use too."""
    return pipelines.pool_captions(run, progress=progress)


def generator_subset(run) -> np.ndarray:
    """Positions in P of the generator attack's examples (``mia.generator_examples``, class-balanced, seeded)."""
    return synthetic_mia.attack_subset(run, "generator", run.cfg.mia.generator_examples, tag=1)


def pipeline_adapters(run, n_pipelines: int | None = None) -> dict[str, Path]:
    """``pipeline_<iii>`` -> LoRA adapter of the first ``n_pipelines`` shadow pipelines (all must exist)."""
    n = run.cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    subs = synthetic_mia.reference_pipelines(run, n, lambda sub: artifacts.adapter_path(sub).is_file(), "LoRA adapter")
    return {name: artifacts.adapter_path(sub) for name, sub in subs.items()}


# ---------------------------------------------------------------- generator attack on a run
def _queries_record(run, pipe, n: int) -> dict:
    cfg = run.cfg
    sched = pipe.scheduler
    return {"timesteps": query_timesteps(cfg.mia.generator_queries, sched.config.num_train_timesteps).tolist(),
            "seed": run.seed_for(cfg.mia.seed), "noise_stream": NOISE_STREAM, "example_ids": "train-split index",
            "n_examples": int(n), "prediction_type": sched.config.prediction_type, "unet_dtype": str(pipe.unet.dtype),
            "resolution": cfg.generator.resolution, "center_crop": cfg.lora.center_crop, "base": cfg.generator.base}


def generator_errors(run, n_pipelines: int | None = None, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Denoising errors [n, K, 2] of the target's generator and of each shadow pipeline's, written per model to
    ``mia/generator/errors_<model>.npy`` (finished models are read back)."""
    cfg = run.cfg
    n = cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    target = artifacts.adapter_path(run)
    if not target.is_file():
        raise FileNotFoundError(f"no target adapter at {target}; run notebooks/02_lora_finetune.ipynb (tckr.lora.finetune) first")
    models = {"target": target, **(pipeline_adapters(run, n) if n else {})}
    pos = generator_subset(run)
    files = {m: synthetic_mia.attack_dir(run, "generator", f"errors_{m}.npy") for m in models}
    todo = [m for m in models if not files[m].is_file()]
    out = {}
    if todo:
        environment.set_threads(cfg)
        pipe = synthesis.load_pipeline(run, use_lora=False)
        record = _queries_record(run, pipe, len(pos))
        rec_file = synthetic_mia.attack_dir(run, "generator", "queries.json")
        if rec_file.is_file() and io.read_json(rec_file) != record:
            raise ValueError(f"{rec_file} records other queries than this run now gives ({io.read_json(rec_file)} vs "
                             f"{record}); delete {rec_file.parent} to recompute every model's errors")
        io.write_json(rec_file, record)
        p = mia.pool(run)
        prompts = pool_prompts(run, progress=progress)["prompt"].to_numpy()[pos].tolist()
        latents = encode_images(pipe, p.images[pos], resolution=cfg.generator.resolution, center_crop=cfg.lora.center_crop)
        ids = p.index[pos]
    for m, path in models.items():
        if files[m].is_file():
            out[m] = io.load_array(files[m])
            if progress:
                note(f"generator attack: {m}: errors read from {files[m].name}")
            continue
        start = time.perf_counter()
        generator.load_lora(pipe, path)
        out[m] = denoising_errors(pipe, None, prompts, n_queries=cfg.mia.generator_queries, seed=record["seed"],
                                  example_ids=ids, latents=latents)
        io.save_array(files[m], out[m])
        if progress:
            note(f"generator attack: {m}: {len(pos)} examples × {cfg.mia.generator_queries} queries × 2 prompts "
                  f"in {time.perf_counter() - start:.1f} s")
    want = (len(pos), cfg.mia.generator_queries, 2)
    bad = [m for m, e in out.items() if e.shape != want]
    if bad:
        raise ValueError(f"errors of {bad} under {synthetic_mia.attack_dir(run, 'generator')} are not {list(want)}; "
                         "delete them to recompute")
    return out


def attack_generator(run, n_pipelines: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Score the target's adapted generator (``results/mia_generator.csv``); the LiRA attacks need the first
    ``n_pipelines`` (default ``mia.n_pipelines``) shadow pipelines' adapters, the threshold attacks only the target."""
    cfg = run.cfg
    if cfg.mia.generator_examples <= 0:
        raise ValueError("mia.generator_examples is 0 (generator attack off); set it to the number of examples of P to attack")
    n = cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    errors = generator_errors(run, n, progress=progress)
    pos = generator_subset(run)
    names = [m for m in errors if m != "target"]
    shadow = np.stack([errors[m] for m in names]) if names else None
    mask = synthetic_mia.reference_mask(run, n, pos) if names else None
    scores = generator_scores(errors["target"], shadow, mask)
    return synthetic_mia.write_release_results(run, "mia_generator.csv", "generator", "generator", None, "generator",
                                               scores, pos, len(names))


# ---------------------------------------------------------------- both
def run_all(run, *, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Run whatever is configured and available: the generator attack (``mia.generator_examples`` > 0, the target's
    and the pipelines' adapters present) and the synthetic-set attack (target's and pipelines' synthetic sets of the
    pipeline cardinalities present). Returns ``{"generator": frame, "synthetic": frame}`` (empty when skipped)."""
    cfg = run.cfg
    out = {"generator": pd.DataFrame(), "synthetic": pd.DataFrame()}
    if cfg.mia.generator_examples <= 0:
        print("generator attack: off (mia.generator_examples is 0)")
    elif not artifacts.adapter_path(run).is_file():
        print(f"generator attack: skipped, no target adapter at {artifacts.adapter_path(run)}")
    else:
        try:
            out["generator"] = attack_generator(run, progress=progress)
        except FileNotFoundError as e:
            print(f"generator attack: skipped: {e}")
    ready = []
    for mult in synthetic_mia.synthetic_cardinalities(run):
        try:
            if not synthetic_mia.has_set(mult)(run):
                raise FileNotFoundError(f"the target has no synthetic set of {mult:g}× |D|")
            if cfg.mia.n_pipelines:
                synthetic_mia.reference_pipelines(run, cfg.mia.n_pipelines, synthetic_mia.has_set(mult),
                                                  f"synthetic set of {mult:g}× |D|")
            ready.append(mult)
        except FileNotFoundError as e:
            print(f"synthetic-set attack {mult:g}×: skipped: {e}")
    if ready:
        out["synthetic"] = synthetic_mia.attack_synthetic(run, ready, progress=progress)
    return out
