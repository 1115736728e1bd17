"""Training throughput of tckr's batched uint8-tensor pipeline against the original's design: a
per-sample PIL + torchvision-transforms ``DataLoader`` (images stored PNG-encoded and decoded on every
access, as a Hugging Face ``datasets`` Image column does).

    .venv/bin/python bench/bench_dataloader.py                    # mini config's augmentations
    .venv/bin/python bench/bench_dataloader.py --augmix on --set train.crop_padding=0.1 train.mixup_alpha=0.2
                                                                  # the paper's augmentations

Both pipelines train the same model (the config's teacher architecture, same init) with the same
augmentations (flip, random crop with padding, optionally AugMix, MixUp on the batch), the same batch
size, optimiser and loss. Rounds alternate between the pipelines so that machine load hits both.
Pipelines: ``tckr`` (batched augmentation on uint8 tensors, channels-last model and input, as
``tckr.train.fit`` trains), ``tckr_nchw`` (the same batches, NCHW model: isolates the data pipeline),
``pil_workers<k>`` (the original design, NCHW, ``num_workers=k``). Printed: images/s of each, the
end-to-end training ratio, and the data-only ratio (augmented, normalised batches/s, no model).
"""

from __future__ import annotations

import argparse
import io as _io
import time

import numpy as np
import torch
import torch.nn.functional as F

from tckr.classification import augment, classifiers, loop
from tckr.classification.batches import Preprocess, normalisation, take
from tckr.runfolder import environment, runs


def png_bytes(images: np.ndarray) -> list[bytes]:
    from PIL import Image

    out = []
    for img in images:
        buf = _io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


class PILDataset(torch.utils.data.Dataset):
    """The original design: decode one PNG per item, torchvision transforms per PIL image."""

    def __init__(self, encoded: list[bytes], labels: np.ndarray, transform):
        self.encoded, self.labels, self.transform = encoded, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.open(_io.BytesIO(self.encoded[i])).convert("RGB")
        return self.transform(img), int(self.labels[i])


def pil_transform(cfg, norm):
    from torchvision import transforms as T

    ops = []
    if cfg.train.flip:
        ops.append(T.RandomHorizontalFlip())
    pad = augment.crop_pixels(cfg)
    if pad:
        ops.append(T.RandomCrop(cfg.data.image_size, padding=pad))
    if cfg.train.augmix:
        ops.append(T.AugMix())
    ops += [T.ToTensor(), T.Normalize(norm["mean"], norm["std"])]
    return T.Compose(ops)


def make_model(cfg, n_cls):
    environment.seed_everything(0)
    m = classifiers.build(cfg.classifier.teacher_arch, n_cls, pretrained=False, input_size=cfg.classifier.input_size,
                          stem_stride=cfg.classifier.stem_stride)
    return m, torch.optim.AdamW(m.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def step(model, opt, x, y, cfg, n_cls, gen):
    t = F.one_hot(y, n_cls).float() * (1 - cfg.train.label_smoothing) + cfg.train.label_smoothing / n_cls
    x, t = augment.mixup(x, t, cfg.train.mixup_alpha, gen)
    loss = loop.soft_cross_entropy(model(x), t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def tensor_batches(images, labels, cfg, pre, gen):
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    perm = torch.randperm(len(x_all), generator=gen)
    for s in range(0, len(perm) - cfg.train.batch_size + 1, cfg.train.batch_size):
        idx = perm[s:s + cfg.train.batch_size]
        x = augment.augment_batch(take(x_all, idx, torch.device("cpu")), cfg, gen)
        yield pre(x), y_all[idx]


def loader_batches(loader):
    yield from loader


def timed(batches, model=None, opt=None, cfg=None, n_cls=0, gen=None, max_images=0):
    n, t0 = 0, time.perf_counter()
    for x, y in batches:
        if model is not None:
            step(model, opt, x, y, cfg, n_cls, gen)
        n += len(y)
        if max_images and n >= max_images:
            break
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--augmix", choices=["config", "on", "off"], default="config")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value, e.g. train.crop_padding=0.1 train.mixup_alpha=0.2")
    ap.add_argument("--images", type=int, default=1536, help="training images per round and pipeline")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="DataLoader num_workers settings to compare")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process (DataLoader workers are extra processes)")
    args = ap.parse_args()
    import yaml

    ov = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    if args.augmix != "config":
        ov["train.augmix"] = args.augmix == "on"
    from tckr.core.config import load_config

    cfg = load_config(args.config, ov)
    torch.set_num_threads(args.threads)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        run = runs.open_run(cfg, Path(tmp) / "run")
        D = run.real("D")
    n_cls = len(D.class_names)
    norm = normalisation(cfg)
    pre = Preprocess(norm, cfg.classifier.input_size)
    encoded = png_bytes(D.images)
    ds = PILDataset(encoded, D.labels, pil_transform(cfg, norm))
    print(f"{cfg.classifier.teacher_arch} @ {cfg.classifier.input_size}px, batch {cfg.train.batch_size}, torch threads {args.threads}, "
          f"flip={cfg.train.flip} crop_pad={augment.crop_pixels(cfg)}px augmix={cfg.train.augmix} mixup={cfg.train.mixup_alpha}")

    def loader(workers):
        return torch.utils.data.DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True, num_workers=workers,
                                           drop_last=True, persistent_workers=False,
                                           generator=torch.Generator().manual_seed(0))

    pipelines = [("tckr", None, True), ("tckr_nchw", None, False)] + [(f"pil_workers{w}", w, False) for w in args.workers]
    results: dict[str, list[float]] = {}
    data_only: dict[str, list[float]] = {}
    for r in range(args.rounds):
        gen = torch.Generator().manual_seed(r)
        for name, w, channels_last in pipelines:
            model, opt = make_model(cfg, n_cls)
            model.train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            if w is None:
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                batches = lambda fmt=fmt: ((x.contiguous(memory_format=fmt), y)  # noqa: E731
                                           for x, y in tensor_batches(D.images, D.labels, cfg, pre, gen))
            else:
                batches = lambda w=w: loader_batches(loader(w))  # noqa: E731
            seen = 0
            t0 = time.perf_counter()
            while seen < args.images:
                for x, y in batches():
                    step(model, opt, x, y, cfg, n_cls, gen)
                    seen += len(y)
                    if seen >= args.images:
                        break
            ips = seen / (time.perf_counter() - t0)
            results.setdefault(name, []).append(ips)
            if name != "tckr_nchw":
                with torch.no_grad():
                    data_only.setdefault(name, []).append(timed(batches(), max_images=len(D)))
            print(f"round {r + 1}: {name:14s} train {ips:7.1f} img/s" +
                  (f"   data only {data_only[name][-1]:8.1f} img/s" if name in data_only else ""), flush=True)

    med = {k: float(np.median(v)) for k, v in results.items()}
    med_data = {k: float(np.median(v)) for k, v in data_only.items()}
    bases = [k for k in med if k.startswith("pil")]
    best_base = max(bases, key=lambda k: med[k])
    print("\nmedian over rounds (images/s):")
    for k in med:
        print(f"  {k:14s} train {med[k]:7.1f}" + (f"   data only {med_data[k]:8.1f}" if k in med_data else ""))
    print(f"\ntraining throughput ratio, tckr pipeline (batched uint8 augmentation + channels-last, as train.fit) / "
          f"best per-sample PIL DataLoader ({best_base}): {med['tckr'] / med[best_base]:.2f}x")
    print(f"  of which the data pipeline alone (tckr_nchw / {best_base}, same NCHW model): {med['tckr_nchw'] / med[best_base]:.2f}x")
    for k in bases:
        print(f"  vs {k}: train {med['tckr'] / med[k]:.2f}x, data only {med_data['tckr'] / med_data[k]:.2f}x")


if __name__ == "__main__":
    main()
