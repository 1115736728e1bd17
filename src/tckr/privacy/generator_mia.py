"""Membership inference at two release points of the pipeline: the adapted generator is released, and
the synthetic set is released (REFERENCE.md, "Attacking a synthetic-data pipeline").

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

**Synthetic set** (threat model: the synthetic set is public). Per example x of P (or a class-balanced
subset of ``mia.synthetic_examples``): RMS pixel distances (RGB in [0, 1]) to the nearest synthetic
images prompted with x's class; statistics ``[−d_1, −mean of the 5 nearest]``. Attacks per cardinality of
``mia.pipeline_cardinalities`` (empty: ``synthesis.cardinalities``): ``syn_distance`` (global threshold on
``−d_1``, uncalibrated) and ``syn_lira_{online,offline}_fixed`` (the pipelines' synthetic sets of the same
cardinality as IN/OUT references).

Files in the run folder:

- ``mia/pipelines/captions_P.csv``: captions of P (``index, label, class_name, caption, prompt``), D's from
  the run's captions, H's from the run's captioner (shared with :mod:`tckr.pipelines`);
- ``mia/generator/subset.npy``: positions in P of the attacked examples; ``mia/generator/queries.json``:
  timesteps, noise seed, dtype; ``mia/generator/errors_<model>.npy`` float32 [n, K, 2] (conditional, null),
  ``<model>`` = ``target`` or ``pipeline_<iii>``;
- ``mia/synthetic/subset.npy``; ``mia/synthetic/x<m>/<model>.npy`` float64 [n, 2] statistics;
- ``mia/scores/<target>_<attack>.npy`` raw scores, ``mia/scores/<target>.csv`` (``index, label, member`` and one
  column per attack), ``mia/roc/<target>_<attack>.csv``, with ``<target>`` = ``generator`` or ``synthetic_x<m>``;
- ``results/mia_generator.csv`` and ``results/mia_synthetic.csv``: the columns of ``results/mia.csv`` plus
  ``release`` (``n_shadows`` = reference models used: 0 for the threshold attacks).

The attack functions on arrays (:func:`generator_scores`, :func:`synthetic_statistics`,
:func:`synthetic_scores`, :func:`query_timesteps`, :func:`query_noise`) take no run folder and no torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from tckr.core import io
from tckr.core.progress import note
from tckr.datasets import splitting
from tckr.generation import generator, lora, synthesis
from tckr.privacy import attack_results, attacks, mia, pipelines
from tckr.runfolder import artifacts, runs, synthetic

GENERATOR_ATTACKS = ("gen_loss", "gen_contrast", "gen_lira_online_fixed", "gen_lira_offline_fixed",
                     "gen_contrast_lira_online_fixed", "gen_contrast_lira_offline_fixed")
SYNTHETIC_ATTACKS = ("syn_distance", "syn_lira_online_fixed", "syn_lira_offline_fixed")
# Query timesteps span [50, 500] of 1000 (ᾱ from 0.95 to 0.28 on the tiny base's scaled-linear schedule): SecMI
# (Duan et al. 2023) finds t ≈ 100 and PIA (Kong et al. 2024) t ≈ 200 the most telling; past t ≈ 700 (ᾱ < 0.1)
# x is mostly gone. On a LoRA overfit on 6 images (tests/test_generator_mia.py's setting, 100 steps), the
# single-t AUC was 0.86 at t = 10-25, 0.89-0.94 at t = 50-700 and 0.83 at t = 900.
QUERY_RANGE = (0.05, 0.5)
NOISE_STREAM = 70_001  # seed tag of the query noise, so it never shares a stream with the membership mask
NEAREST = 5  # synthetic neighbours in the second synthetic-set statistic
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


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×3 -> float32 N×(H·W·3) in [0, 1] / sqrt(H·W·3): Euclidean distance is the RMS pixel difference."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    return x / np.sqrt(max(x.shape[1], 1))


def nearest_distances(queries: np.ndarray, refs: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """[n, min(k, len(refs))]: Euclidean distances from each query row to its k nearest reference rows, ascending.
    Candidates come from a float32 product; the chosen distances are recomputed exactly in float64."""
    q_in, r_in = np.asarray(queries).reshape(len(queries), -1), np.asarray(refs).reshape(len(refs), -1)
    q, r = q_in.astype(np.float32, copy=False), r_in.astype(np.float32, copy=False)
    if len(r) == 0 or q.shape[1] != r.shape[1]:
        raise ValueError(f"queries {q.shape} and refs {r.shape} need the same width and at least one ref")
    kk = min(int(k), len(r))
    r2 = (r.astype(np.float64) ** 2).sum(1).astype(np.float32)
    out = np.empty((len(q), kk))
    for s in range(0, len(q), chunk):
        qb = q[s:s + chunk]
        d2 = (qb ** 2).sum(1)[:, None] + r2[None, :] - 2.0 * qb @ r.T
        idx = np.argpartition(d2, kk - 1, axis=1)[:, :kk] if kk < len(r) else np.broadcast_to(np.arange(len(r)), d2.shape)
        diff = q_in[s:s + chunk].astype(np.float64)[:, None, :] - r_in[idx].astype(np.float64)
        out[s:s + chunk] = np.sort(np.sqrt((diff ** 2).sum(-1)), axis=1)
    return out


def synthetic_statistics(images: np.ndarray, labels: np.ndarray, synthetic_images: np.ndarray,
                         synthetic_labels: np.ndarray, k: int = NEAREST) -> np.ndarray:
    """float64 [n, 2]: ``[−d_1, −mean of the k nearest]``, RMS pixel distances from each real image to the synthetic
    images of its class (uint8 N×H×W×3, same size)."""
    images, synthetic_images = np.asarray(images), np.asarray(synthetic_images)
    labels, synthetic_labels = np.asarray(labels), np.asarray(synthetic_labels)
    if images.shape[1:] != synthetic_images.shape[1:]:
        raise ValueError(f"real images {images.shape[1:]} and synthetic images {synthetic_images.shape[1:]} differ in size")
    out = np.empty((len(images), 2))
    for c in np.unique(labels):
        rows, refs = np.flatnonzero(labels == c), np.flatnonzero(synthetic_labels == c)
        if not len(refs):
            raise ValueError(f"the synthetic set has no image of class {c}, which {len(rows)} real image(s) have")
        d = nearest_distances(pixels(images[rows]), pixels(synthetic_images[refs]), k)
        out[rows, 0], out[rows, 1] = -d[:, 0], -d.mean(1)
    return out


def synthetic_scores(target_stat: np.ndarray, shadow_stat: np.ndarray | None = None,
                     shadow_in: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Scores of :data:`SYNTHETIC_ATTACKS` from the target set's statistics [n, 2] and, for LiRA, the shadow
    sets' [m, n, 2] with their membership ``shadow_in`` bool [m, n]."""
    t = np.asarray(target_stat, dtype=np.float64)
    out = {"syn_distance": t[:, 0].copy()}
    if shadow_stat is None:
        return out
    s = np.asarray(shadow_stat, dtype=np.float64)
    for online in (True, False):
        out[f"syn_lira_{'online' if online else 'offline'}_fixed"] = attacks.lira_from_stable(
            t, s, shadow_in, online=online, fixed_variance=True)
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
def _dir(run, kind: str, *parts: str) -> Path:
    return artifacts.mia_dir(run, kind, *parts)


def pool_prompts(run, *, progress: bool = True) -> pd.DataFrame:
    """Captions and prompts of every image of P (D first, then H): :func:`tckr.pipelines.pool_captions`, the one
    cached ``mia/pipelines/captions_P.csv`` the shadow pipelines use too."""
    return pipelines.pool_captions(run, progress=progress)


def _subset(run, kind: str, size: int, tag: int) -> np.ndarray:
    """Positions in P, stratified by (class, membership) so classes and members/non-members stay balanced, drawn
    from P without its mislabeled canaries, then every canary; written once to ``mia/<kind>/subset.npy``."""
    f = _dir(run, kind, "subset.npy")
    if f.is_file():
        return io.load_array(f)
    if not artifacts.mia_dir(run, "pool.npz").is_file():
        mia.pool(run)
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    strata = saved["labels"] * 2 + saved["member"].astype(np.int64)
    canary = mia.canary_mask(run)
    rest = np.flatnonzero(~canary)  # every position of P when mia.canaries is 0: the draw is unchanged
    pos = rest[splitting.stratified_subset(strata[rest], int(size), run.seed_for(run.cfg.mia.seed) + tag)]
    pos = np.r_[pos, np.flatnonzero(canary)].astype(np.int64)  # the canaries are always attacked (their own rows)
    io.save_array(f, pos)
    return pos


def generator_subset(run) -> np.ndarray:
    """Positions in P of the generator attack's examples (``mia.generator_examples``, class-balanced, seeded)."""
    return _subset(run, "generator", run.cfg.mia.generator_examples, tag=1)


def synthetic_subset(run) -> np.ndarray:
    """Positions in P of the synthetic-set attack's examples (``mia.synthetic_examples``; 0 = all of P)."""
    return _subset(run, "synthetic", run.cfg.mia.synthetic_examples, tag=2)


def reference_mask(run, n_pipelines: int, positions: np.ndarray) -> np.ndarray:
    """bool [n_pipelines, len(positions)]: pipeline i trained on P[keep[i]], so rows ``keep[:n_pipelines]`` restricted
    to the attacked positions are the references' membership."""
    keep = mia.ensure_mask(run, max(2, n_pipelines + n_pipelines % 2))
    return np.ascontiguousarray(keep[:n_pipelines][:, positions])


def _pipelines(run, n: int, has: Callable, what: str) -> dict[str, object]:
    """Sub-runs of pipelines 0..n-1 that have ``what`` (``has(sub)``); FileNotFoundError naming the others."""
    found, missing = {}, []
    for i in range(n):
        name = pipelines.pipeline_name(i)
        if not pipelines.pipeline_dir(run, i).is_dir():
            missing.append(name)
            continue
        sub = pipelines.open_pipeline(run, i)
        if has(sub):
            found[name] = sub
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {n} shadow pipelines have no {what} yet ({', '.join(missing[:8])}"
                                f"{' ...' if len(missing) > 8 else ''}) under {run.dir / 'mia' / 'pipelines'}; "
                                "train them first (tckr.pipelines), or lower mia.n_pipelines")
    return found


def pipeline_adapters(run, n_pipelines: int | None = None) -> dict[str, Path]:
    """``pipeline_<iii>`` -> LoRA adapter of the first ``n_pipelines`` shadow pipelines (all must exist)."""
    n = run.cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    subs = _pipelines(run, n, lambda sub: artifacts.adapter_path(sub).is_file(), "LoRA adapter")
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
    files = {m: _dir(run, "generator", f"errors_{m}.npy") for m in models}
    todo = [m for m in models if not files[m].is_file()]
    out = {}
    if todo:
        runs.set_threads(cfg)
        pipe = synthesis.load_pipeline(run, use_lora=False)
        record = _queries_record(run, pipe, len(pos))
        rec_file = _dir(run, "generator", "queries.json")
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
        raise ValueError(f"errors of {bad} under {_dir(run, 'generator')} are not {list(want)}; delete them to recompute")
    return out


def _write_results(run, file: str, target: str, role: str, cardinality, release: str, scores: dict[str, np.ndarray],
                   positions: np.ndarray, n_refs: int) -> pd.DataFrame:
    """One release point's rows through :func:`tckr.mia.write_attack_results` (``n_shadows``: the reference
    models of the LiRA attacks, 0 for the threshold attacks)."""
    scored = attack_results.TargetScores(target, scores, {"role": role, "cardinality": cardinality, "label_mode": None,
                                                          "release": release},
                                         n_shadows={a: n_refs if "lira" in a else 0 for a in scores})
    return attack_results.write_attack_results(run, file, [scored], positions=positions, extra_columns=["release"])


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
    mask = reference_mask(run, n, pos) if names else None
    scores = generator_scores(errors["target"], shadow, mask)
    return _write_results(run, "mia_generator.csv", "generator", "generator", None, "generator", scores, pos, len(names))


# ---------------------------------------------------------------- synthetic-set attack on a run
def synthetic_cardinalities(run) -> list[float]:
    """The cardinalities the synthetic-set attack covers: ``mia.pipeline_cardinalities`` or ``synthesis.cardinalities``."""
    return [float(m) for m in (run.cfg.mia.pipeline_cardinalities or run.cfg.synthesis.cardinalities)]


def _has_set(multiple: float) -> Callable:
    return lambda sub: any(np.isclose(m, multiple) for m in synthetic.available_multiples(sub))


def synthetic_stats(run, multiple: float, n_pipelines: int | None = None, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Statistics [n, 2] of the target's synthetic set of ``multiple`` × |D| and of each pipeline's, written per model
    to ``mia/synthetic/x<m>/<model>.npy`` (finished ones are read back)."""
    n = run.cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    if not _has_set(multiple)(run):
        raise FileNotFoundError(f"run {run.dir} has no finished synthetic set of {multiple:g}× |D|; run notebooks/03_generate.ipynb")
    models = {"target": run, **(_pipelines(run, n, _has_set(multiple), f"synthetic set of {multiple:g}× |D|") if n else {})}
    pos = synthetic_subset(run)
    p = None
    out = {}
    for m, r in models.items():
        f = _dir(run, "synthetic", f"x{multiple:g}", f"{m}.npy")
        if f.is_file():
            out[m] = io.load_array(f)
            continue
        start = time.perf_counter()
        p = p or mia.pool(run)
        syn = synthetic.load_synthetic(r, multiple)
        out[m] = synthetic_statistics(p.images[pos], p.labels[pos], syn.images, syn.labels)
        io.save_array(f, out[m])
        if progress:
            note(f"synthetic-set attack {multiple:g}×: {m}: {len(pos)} examples against {len(syn)} synthetic images "
                  f"in {time.perf_counter() - start:.1f} s")
    return out


def attack_synthetic(run, multiples: list[float] | None = None, n_pipelines: int | None = None, *,
                     progress: bool = True) -> pd.DataFrame:
    """Score the target's synthetic set of each cardinality (``results/mia_synthetic.csv``)."""
    n = run.cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    pos = synthetic_subset(run)
    frames = []
    for mult in (synthetic_cardinalities(run) if multiples is None else [float(m) for m in multiples]):
        stats = synthetic_stats(run, mult, n, progress=progress)
        names = [m for m in stats if m != "target"]
        shadow = np.stack([stats[m] for m in names]) if names else None
        scores = synthetic_scores(stats["target"], shadow, reference_mask(run, n, pos) if names else None)
        frames.append(_write_results(run, "mia_synthetic.csv", f"synthetic_x{mult:g}", "synthetic", mult, "synthetic",
                                     scores, pos, len(names)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    for mult in synthetic_cardinalities(run):
        try:
            if not _has_set(mult)(run):
                raise FileNotFoundError(f"the target has no synthetic set of {mult:g}× |D|")
            if cfg.mia.n_pipelines:
                _pipelines(run, cfg.mia.n_pipelines, _has_set(mult), f"synthetic set of {mult:g}× |D|")
            ready.append(mult)
        except FileNotFoundError as e:
            print(f"synthetic-set attack {mult:g}×: skipped: {e}")
    if ready:
        out["synthetic"] = attack_synthetic(run, ready, progress=progress)
    return out
