"""Benchmark: student training on a large synthetic set read through the streaming reader
(``tckr.synthesis.ShardedImages``: memory-mapped shards, the subset an index) against the in-memory loader
the project used before it (every shard concatenated into RAM, then the subset copied out), side by side in
one run. Each loader trains in its own child process, so peak RSS is that loader's alone.

Goal: peak RAM independent of the set's size (streaming), throughput within 10% of in-memory.

    .venv/bin/python bench/bench_streaming.py --images 200000 --size 64 [--train-images 2560] [--out bench/measured/streaming.json]

Shards of ``--shard-size`` uint8 images (class-coloured blobs with noise, ``.npy`` as ``tckr.synthesis`` writes
them) go to a temporary folder (``--folder`` to keep them). Both children train the same student
(``classifier.student_arch`` of configs/tiny.yaml at ``--size``, hard labels: a teacher's forward pass would add
the same cost to both) for one epoch on the same seeded class-balanced subset of ``--train-images`` images (rounded down to a multiple of 10 classes)
(``--steps`` × ``--batch-size`` by default), the way a smaller cardinality is a subset of the largest set.
Reported per loader: peak anonymous RSS (the RAM that loader and training allocate, sampled), peak RSS (also the
memory-mapped set's file pages the kernel mapped in: reclaimable page cache), seconds to open the set, training
images/s; the ratios streaming / in-memory; and the streaming child again on a set a tenth the size
(``--reference-images``), to show whether its RAM grows with the set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LOADERS = ("memory", "stream")


def write_shards(folder: Path, n: int, size: int, shard_size: int, seed: int = 0) -> list[Path]:
    """``n`` images in shards, written one shard at a time (the parent never holds the set)."""
    from tckr.core import io

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    blob = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2)[None, :, :, None]
    palette = rng.integers(0, 256, (10, 3))
    files = []
    for j, start in enumerate(range(0, n, shard_size)):
        labels = np.arange(start, min(start + shard_size, n)) % 10
        x = blob * palette[labels][:, None, None, :] + rng.integers(0, 60, (len(labels), size, size, 3))
        files.append(io.save_array(folder / f"shard_{j:05d}.npy", np.clip(x, 0, 255).astype(np.uint8)))
    return files


def config(args):
    from tckr.core.config import load_config

    return load_config("configs/tiny.yaml", {"data.image_size": args.size, "classifier.input_size": args.size,
                                             "train.batch_size": args.batch_size, "train.epochs": 1,
                                             "study.num_threads": args.threads})


def _status_mb(field: str) -> float:
    """A memory field of ``/proc/self/status`` (kB there) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux keeps that across ``exec``, so a child
    would report its parent's peak."""
    return _status_mb("VmHWM")


class AnonPeak:
    """The peak of this process's anonymous resident memory (``RssAnon``, sampled every 20 ms in a thread): the RAM
    the loader and training allocate. Peak RSS also counts the file pages of a memory-mapped set that the kernel has
    mapped in (``RssFile``: clean page cache, dropped under memory pressure; on a freshly written set it can reach the
    whole set, since the kernel maps whole cached folios around each row read)."""

    def __init__(self):
        import threading

        self.peak = _status_mb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _status_mb("RssAnon"))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _status_mb("RssAnon"))


def child(args) -> dict:
    """Open the set with one loader, train one epoch; peak RSS and peak anonymous RSS of this process."""
    from tckr.classification import train
    from tckr.runfolder import synthetic

    anon = AnonPeak()
    files = sorted(Path(args.folder).glob("shard_*.npy"))
    n = sum(np.load(f, mmap_mode="r").shape[0] for f in files)
    labels_all = np.arange(n) % 10
    rng = np.random.default_rng(1)
    k = args.train_images // 10
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels_all == c))[:k] for c in range(10)]))
    t0 = time.perf_counter()
    if args.child == "memory":  # the loader before streaming: concatenate every shard, then copy the subset out
        images = np.concatenate([np.load(f, mmap_mode="r") for f in files])[idx]
    else:
        images = synthetic.ShardedImages.open(files, idx)
    open_s = time.perf_counter() - t0
    labels = labels_all[idx]
    val = np.asarray(synthetic.ShardedImages.open(files[:1], np.arange(min(200, n))))
    cfg = config(args)
    _, hist = train.fit(cfg, cfg.classifier.student_arch, images, labels, val, labels_all[:len(val)], seed=0,
                        progress=False, num_classes=10)
    return {"loader": args.child, "peak_rss_mb": peak_rss_mb(), "peak_anon_mb": round(anon.stop(), 1),
            "rss_file_mb_end": _status_mb("RssFile"),
            "open_seconds": round(open_s, 3), "train_images": int(len(idx)),
            "images_per_second": float(hist["images_per_second"].iloc[0]), "epoch_seconds": float(hist["seconds"].iloc[0])}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200000, help="images in the synthetic set")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--shard-size", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps (sets --train-images when that is 0)")
    p.add_argument("--train-images", type=int, default=0, help="size of the subset trained on (0: steps × batch size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reference-images", type=int, default=-1,
                   help="also stream a set of this many images (default: a tenth of --images; 0: none): the same "
                        "training's peak RSS on a smaller set shows whether streaming RAM grows with the set")
    p.add_argument("--folder", default=None, help="keep the shards here (default: a temporary folder)")
    p.add_argument("--out", default=None, help="write the result JSON here")
    p.add_argument("--child", choices=LOADERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.train_images = args.train_images or args.steps * args.batch_size
    if args.child:
        print(json.dumps(child(args)))
        return {}
    from tckr.classification import batches

    batches.normalisation(config(args))  # channel statistics computed and cached here, not inside a measured child
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        t0 = time.perf_counter()
        write_shards(folder, args.images, args.size, args.shard_size)
        print(f"wrote {args.images} images of {args.size}x{args.size} ({args.images * args.size ** 2 * 3 / 2 ** 20:.0f} MiB) "
              f"in {time.perf_counter() - t0:.1f}s")
        base = [sys.executable, __file__, "--images", str(args.images), "--size", str(args.size), "--batch-size", str(args.batch_size),
                "--train-images", str(args.train_images), "--threads", str(args.threads), "--folder", str(folder)]
        res = {}
        for loader in LOADERS:
            out = subprocess.run(base + ["--child", loader], check=True, capture_output=True, text=True).stdout
            res[loader] = json.loads(out.strip().splitlines()[-1])
            print(res[loader])
        small = args.images // 10 if args.reference_images < 0 else args.reference_images
        if small:
            ref = folder / "reference"
            ref.mkdir()
            write_shards(ref, small, args.size, args.shard_size)
            cmd = [a if a != str(folder) else str(ref) for a in base] + ["--child", "stream"]
            cmd[cmd.index("--images") + 1] = str(small)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res["stream_reference"] = {**json.loads(out.strip().splitlines()[-1]), "images": small}
            print(res["stream_reference"])
    summary = {"images": args.images, "size": args.size, "set_mib": round(args.images * args.size ** 2 * 3 / 2 ** 20, 1),
               "train_images": res["stream"]["train_images"], "batch_size": args.batch_size, "threads": args.threads, **res,
               "rss_ratio_stream_over_memory": round(res["stream"]["peak_rss_mb"] / res["memory"]["peak_rss_mb"], 3),
               "anon_ratio_stream_over_memory": round(res["stream"]["peak_anon_mb"] / res["memory"]["peak_anon_mb"], 3),
               "throughput_ratio_stream_over_memory": round(res["stream"]["images_per_second"] / res["memory"]["images_per_second"], 3)}
    print(f"peak RSS stream/memory {summary['rss_ratio_stream_over_memory']}, "
          f"throughput stream/memory {summary['throughput_ratio_stream_over_memory']} (goal >= 0.9)")
    if args.out:
        from tckr.core import io
        from tckr.reporting import report

        m, s = res["memory"], res["stream"]
        r = res.get("stream_reference")
        summary["record"] = report.bench_record(
            f"{args.images:,} images at {args.size}² ({summary['set_mib'] / 1024:.1f} GiB), training on {s['train_images']:,}: "
            f"peak anonymous RAM {s['peak_anon_mb']:.0f} MB streaming vs {m['peak_anon_mb']:.0f} MB in memory"
            + (f" ({r['peak_anon_mb']:.0f} MB streaming a {r['images']:,}-image set)" if r else "")
            + f"; peak RSS with mapped file pages {s['peak_rss_mb']:.0f} vs {m['peak_rss_mb']:.0f} MB"
            + (f" ({r['peak_rss_mb']:.0f} MB)" if r else "")
            + f"; {s['images_per_second']:.0f} vs {m['images_per_second']:.0f} images/s "
            f"(ratio {summary['throughput_ratio_stream_over_memory']}, goal ≥ 0.9)")
        io.write_json(args.out, summary)
    return summary


if __name__ == "__main__":
    main()
