"""Sample quality of a generator, and how much a LoRA adapter moves it towards D (mini tier).

Samples ``--n-per-class`` images per class at the mini tier's settings (guidance 2, 20 steps) with
prompts ``"<class>: <caption>"`` cycled per class from the attribute captions of the run's D, then
measures them with real-data classifiers:

- ``agreement``: share of samples a classifier assigns to the prompted class. Classifiers: ``probe``
  (a small CNN trained here on 20,000 real images of the public partition — of the pool when a config has
  no public partition —, 3 epochs; its real test accuracy is printed) and,
  with ``--teacher``, the run's teacher (:func:`tckr.train.teacher`, trained on D only).
- ``frechet_D``: Fréchet distance between the samples' and D's probe features (penultimate layer);
  ``frechet_H_D`` is the same distance for held-out real images H (what a perfect generator would reach);
  ``nn_D``: mean distance of each sample to its nearest D image in that feature space; ``frechet_H``: the
  samples' distance to held-out real images H (a LoRA that only memorised D would lower frechet_D, not frechet_H).
  With ``--teacher`` the same Fréchet distances in the teacher's penultimate features (``*_teacher``).
- With ``--lora``: ``lora_vs_base``, 95% paired-bootstrap intervals (``--n-bootstrap`` resamples of the
  samples, base and LoRA drawn together since they share prompts and seeds) of lora − base for the
  probe Fréchet distances and both agreements. An interval below 0 for ``frechet_D`` is a measured move towards D.

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

from tckr.core import io, paths
from tckr.generation import captions, generator, prompt_files
from tckr.privacy import audit
from tckr.runfolder import runs


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
    public = run.real("public") if len(run.splits().public) >= 20000 else run.real("pool")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(public), 20000, replace=False)
    x, y = _x(public.images[idx]), torch.from_numpy(public.labels[idx])
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
        prompts += [prompt_files.prompt_for(name, own[i % len(own)]) for i in range(n_per_class)]
        labels += [c] * n_per_class
    return prompts, np.array(labels)


@torch.no_grad()
def sample(pipe, prompts: list[str], *, steps: int, guidance: float, seed: int, batch: int = 100) -> np.ndarray:
    out = []
    for s in range(0, len(prompts), batch):
        g = torch.Generator().manual_seed(seed + s)
        img = pipe(prompts[s:s + batch], num_inference_steps=steps, guidance_scale=guidance, output_type="np", generator=g).images
        out.append(generator.to_uint8(img))
    return np.concatenate(out)


def measure(run, images: np.ndarray, labels: np.ndarray, model: Probe, feats: dict, teacher=None) -> tuple[dict, dict]:
    """Numbers of one set of samples, and its features (``probe``, ``teacher``) for paired comparisons."""
    pred = logits(model, images).argmax(1)
    f = features(model, images)
    out = {"agreement_probe": float((pred == labels).mean()),
           "agreement_probe_per_class": [float((pred[labels == c] == c).mean()) for c in range(len(run.class_names))],
           "frechet_D": frechet(f, feats["probe_D"]), "frechet_H": frechet(f, feats["probe_H"]),
           "nn_D": float(audit.nearest(f, feats["probe_D"])[0].mean())}
    kept = {"probe": f, "correct_probe": pred == labels}
    if teacher is not None:
        from tckr.classification import inference

        t = inference.predict_logits(teacher, images, run.cfg).argmax(1)
        tf = inference.embed(teacher, images, run.cfg).astype(np.float64)
        out["agreement_teacher"] = float((t == labels).mean())
        out["agreement_teacher_per_class"] = [float((t[labels == c] == c).mean()) for c in range(len(run.class_names))]
        out["frechet_D_teacher"] = frechet(tf, feats["teacher_D"])
        out["frechet_H_teacher"] = frechet(tf, feats["teacher_H"])
        kept |= {"teacher": tf, "correct_teacher": t == labels}
    return out, kept


def paired_bootstrap(base: dict, lora: dict, feats: dict, n_boot: int, seed: int = 0) -> dict:
    """95% intervals of lora − base, resampling the (paired: same prompt, same seed) samples together."""
    rng = np.random.default_rng(seed)
    n = len(base["probe"])
    diffs = {"frechet_D": [], "frechet_H": [], "agreement_probe": []} | ({"agreement_teacher": []} if "teacher" in base else {})
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        for split in ("D", "H"):
            diffs[f"frechet_{split}"].append(frechet(lora["probe"][i], feats[f"probe_{split}"]) - frechet(base["probe"][i], feats[f"probe_{split}"]))
        diffs["agreement_probe"].append(lora["correct_probe"][i].mean() - base["correct_probe"][i].mean())
        if "teacher" in base:
            diffs["agreement_teacher"].append(lora["correct_teacher"][i].mean() - base["correct_teacher"][i].mean())
    return {f"{k}_lora_minus_base_ci95": [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in diffs.items()}


RECORD_ARGV: list[str] | None = None  # the command to record when another script (lora_adaptation.py) calls main()


def summary(result: dict) -> str:
    """One line of the numbers, for the benchmark table (tckr.report.bench_record)."""
    base = result["base"]
    line = (f"{result['n']} samples ({result['dtype']}, {result['steps']} steps, guidance {result['guidance']:g}): base "
            f"{base['agreement_probe'] * 100:.1f}% recognised by the probe"
            + (f", {base['agreement_teacher'] * 100:.1f}% by the teacher" if "agreement_teacher" in base else "")
            + f"; Fréchet to D {base['frechet_D']:.3f} (probe features)")
    if "lora" in result:
        lo = result["lora"]
        line += (f". With the LoRA: {lo['agreement_probe'] * 100:.1f}% by the probe"
                 + (f", {lo['agreement_teacher'] * 100:.1f}% by the teacher" if "agreement_teacher" in lo else "")
                 + f"; Fréchet to D {base['frechet_D']:.3f} → {lo['frechet_D']:.3f}, to H {base['frechet_H']:.3f} → "
                 f"{lo['frechet_H']:.3f}")
        ci = result.get("lora_vs_base", {}).get("frechet_D_lora_minus_base_ci95")
        if ci:
            line += f" (paired 95% interval of the change to D [{ci[0]:+.3f}, {ci[1]:+.3f}])"
    return line


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
    ap.add_argument("--n-bootstrap", type=int, default=200, help="paired bootstrap of lora − base (0 = none)")
    ap.add_argument("--out", default=None, help="JSON file for the numbers")
    ap.add_argument("--probe-only", action="store_true", help="only train (or load) the probe classifier")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = runs.open_run(None if (paths.resolve(a.run) / "config.yaml").is_file() else a.config, a.run)
    model = probe(run)
    if a.probe_only:
        return
    acc = io.load_weights(run.path("quality", "probe.safetensors"))[1]["test_accuracy"]
    d, h = run.real("D"), run.real("H")
    feats = {"probe_D": features(model, d.images), "probe_H": features(model, h.images)}
    teacher = None
    if a.teacher:
        from tckr.classification import inference, train

        teacher = train.teacher(run, progress=False)
        feats |= {"teacher_D": inference.embed(teacher, d.images, run.cfg).astype(np.float64),
                  "teacher_H": inference.embed(teacher, h.images, run.cfg).astype(np.float64)}
    prompts, labels = d_prompts(run, a.n_per_class)
    result = {"model": a.model, "n": len(prompts), "steps": a.steps, "guidance": a.guidance, "dtype": a.dtype, "probe_test_accuracy": acc,
              "frechet_H_D": frechet(feats["probe_H"], feats["probe_D"])}
    if teacher is not None:
        result["frechet_H_D_teacher"] = frechet(feats["teacher_H"], feats["teacher_D"])
    kept = {}
    variants = [("base", None)] + ([("lora", a.lora)] if a.lora else [])
    for name, lora in variants:
        if (paths.resolve(a.model) / "checkpoint").is_dir():
            from tckr.generation import pretrain

            pipe = pretrain.snapshot(a.model)
            if lora is not None:
                generator.load_lora(pipe, lora)
        else:
            pipe = generator.load(a.model, lora)
        pipe.to(dtype=getattr(torch, a.dtype))
        t0 = time.time()
        imgs = sample(pipe, prompts, steps=a.steps, guidance=a.guidance, seed=a.seed)
        seconds = time.time() - t0
        result[name], kept[name] = measure(run, imgs, labels, model, feats, teacher)
        result[name]["sampling_seconds"] = seconds
        io.save_array(run.path("quality", f"samples_{name}.npy"), imgs)
    if a.lora and a.n_bootstrap:
        result["lora_vs_base"] = paired_bootstrap(kept["base"], kept["lora"], feats, a.n_bootstrap)
    print(json.dumps(result, indent=1))
    print(summary(result))
    if a.out:
        from tckr.reporting import report

        result["record"] = report.bench_record(summary(result), RECORD_ARGV)
        io.write_json(paths.resolve(a.out), result)


if __name__ == "__main__":
    main()
