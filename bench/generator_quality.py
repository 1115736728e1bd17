"""Sample quality of a generator, and how much a LoRA adapter moves it towards D (mini tier).

Samples ``--n-per-class`` images per class at the mini tier's settings (guidance 2, 20 steps) with
prompts ``"<class>: <caption>"`` cycled per class from the attribute captions of the run's D, then
measures them with real-data classifiers:

- ``agreement``: share of samples a classifier assigns to the prompted class. Classifiers: ``probe``
  (a small CNN trained here on 20,000 real pool images, 3 epochs; its real test accuracy is printed) and,
  with ``--teacher``, the run's teacher (:func:`tckr.train.teacher`, trained on D only).
- ``frechet_D``: Fréchet distance between the samples' and D's probe features (penultimate layer);
  ``frechet_H_D`` is the same distance for held-out real images H (what a perfect generator would reach);
  ``nn_D``: mean distance of each sample to its nearest D image in that feature space; ``frechet_H``: the
  samples' distance to held-out real images H (a LoRA that only memorised D would lower frechet_D, not frechet_H).

    python bench/generator_quality.py --model models/tiny-sd-fashion
    python bench/generator_quality.py --model models/tiny-sd-fashion --lora runs/x/lora/lora_tiny_fashion_mnist.safetensors
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import linalg
from torch import nn

from tckr import captions, generator, io, paths, runs


class Probe(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1),
                                 nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
        self.features = nn.Sequential(block(1, 16), block(16, 32), block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def _x(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images[..., :1].astype(np.float32) / 255.0).permute(0, 3, 1, 2).sub(0.286).div(0.353)


def probe(run, seed: int = 0) -> Probe:
    f = run.path("quality", "probe.safetensors")
    model = Probe(len(run.class_names))
    if f.is_file():
        model.load_state_dict(io.load_weights(f)[0])
        return model.eval()
    pool = run.real("pool")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pool), 20000, replace=False)
    x, y = _x(pool.images[idx]), torch.from_numpy(pool.labels[idx])
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    steps = 3 * len(x) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    model.train()
    for s in range(steps):
        b = torch.randint(len(x), (128,))
        loss = nn.functional.cross_entropy(model(x[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    test = run.real("test")
    acc = float((logits(model, test.images).argmax(1) == test.labels).mean())
    io.save_weights(f, model.state_dict(), {"test_accuracy": acc})
    print(f"probe: real test accuracy {acc:.4f}")
    return model


@torch.no_grad()
def logits(model: Probe, images: np.ndarray) -> np.ndarray:
    return np.concatenate([model(_x(images[s:s + 1000])).numpy() for s in range(0, len(images), 1000)])


@torch.no_grad()
def features(model: Probe, images: np.ndarray) -> np.ndarray:
    return np.concatenate([model.features(_x(images[s:s + 1000])).numpy() for s in range(0, len(images), 1000)]).astype(np.float64)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean.real))


def d_prompts(run, n_per_class: int) -> tuple[list[str], np.ndarray]:
    d = run.real("D")
    caps = captions.attribute_captions(d.images)
    prompts, labels = [], []
    for c, name in enumerate(run.class_names):
        own = [caps[i] for i in np.flatnonzero(d.labels == c)]
        prompts += [captions.prompt_for(name, own[i % len(own)]) for i in range(n_per_class)]
        labels += [c] * n_per_class
    return prompts, np.array(labels)


@torch.no_grad()
def sample(pipe, prompts: list[str], *, steps: int, guidance: float, seed: int, batch: int = 100) -> np.ndarray:
    out = []
    for s in range(0, len(prompts), batch):
        g = torch.Generator().manual_seed(seed + s)
        img = pipe(prompts[s:s + batch], num_inference_steps=steps, guidance_scale=guidance, output_type="np", generator=g).images
        out.append((np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def measure(run, images: np.ndarray, labels: np.ndarray, model: Probe, d_feat: np.ndarray, teacher=None,
            h_feat: np.ndarray | None = None) -> dict:
    pred = logits(model, images).argmax(1)
    f = features(model, images)
    dist = np.sqrt(((f[:, None, :] - d_feat[None, :, :]) ** 2).sum(-1)).min(1)
    out = {"agreement_probe": float((pred == labels).mean()),
           "agreement_probe_per_class": [float((pred[labels == c] == c).mean()) for c in range(len(run.class_names))],
           "frechet_D": frechet(f, d_feat), "nn_D": float(dist.mean())}
    if h_feat is not None:
        out["frechet_H"] = frechet(f, h_feat)
    if teacher is not None:
        from tckr import train

        t = train.predict_logits(teacher, images, run.cfg).argmax(1)
        out["agreement_teacher"] = float((t == labels).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/tiny-sd-fashion", help="base folder, or a pretraining work folder (its newest checkpoint)")
    ap.add_argument("--lora", default=None, help="also measure the model with this adapter (same prompts, same seeds)")
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--run", default="runs/quality-mini", help="run folder (splits, cached probe and teacher)")
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--teacher", action="store_true", help="also score with the run's teacher (tckr.train.teacher)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                    help="generator weights' dtype (the mini tier samples in bfloat16: configs/mini.yaml generator.dtype)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file for the numbers")
    ap.add_argument("--probe-only", action="store_true", help="only train (or load) the probe classifier")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = runs.open_run(None if (paths.resolve(a.run) / "config.yaml").is_file() else a.config, a.run)
    model = probe(run)
    if a.probe_only:
        return
    acc = io.load_weights(run.path("quality", "probe.safetensors"))[1]["test_accuracy"]
    d = run.real("D")
    d_feat = features(model, d.images)
    h_feat = features(model, run.real("H").images)
    teacher = None
    if a.teacher:
        from tckr import train

        teacher = train.teacher(run, progress=False)
    prompts, labels = d_prompts(run, a.n_per_class)
    result = {"model": a.model, "n": len(prompts), "steps": a.steps, "guidance": a.guidance, "dtype": a.dtype, "probe_test_accuracy": acc,
              "frechet_H_D": frechet(h_feat, d_feat)}
    variants = [("base", None)] + ([("lora", a.lora)] if a.lora else [])
    for name, lora in variants:
        if (paths.resolve(a.model) / "checkpoint").is_dir():
            from tckr import pretrain

            pipe = pretrain.snapshot(a.model)
            if lora is not None:
                generator.load_lora(pipe, lora)
        else:
            pipe = generator.load(a.model, lora)
        pipe.to(dtype=getattr(torch, a.dtype))
        t0 = time.time()
        imgs = sample(pipe, prompts, steps=a.steps, guidance=a.guidance, seed=a.seed)
        result[name] = measure(run, imgs, labels, model, d_feat, teacher, h_feat) | {"sampling_seconds": time.time() - t0}
        io.save_array(run.path("quality", f"samples_{name}.npy"), imgs)
    print(json.dumps(result, indent=1))
    if a.out:
        io.write_json(paths.resolve(a.out), result)


if __name__ == "__main__":
    main()
