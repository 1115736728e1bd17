"""Does the LoRA adapt the generator to D? Fine-tunes the mini tier's adapter and compares base vs adapted samples.

Runs notebook 01's and 02's functions on ``--run`` (captions of D, :func:`tckr.lora.finetune`, timed), then
:mod:`generator_quality` on the base model with and without the adapter (same prompts from D's captions,
same seeds) at the run's guidance, step count and dtype: agreement with the run's teacher and a probe
classifier, Fréchet distances to D's and H's features, and paired-bootstrap intervals of lora − base.
On a finished study run it reuses the run's adapter and teacher.

    python bench/lora_adaptation.py --run runs/quality-mini --out bench/measured/lora_adaptation.json
    python bench/lora_adaptation.py --run runs/mini-<id> --n-per-class 200 --out bench/measured/lora_adaptation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generator_quality as gq  # noqa: E402

from tckr.core import io, paths
from tckr.generation import captions, lora  # noqa: E402
from tckr.runfolder import runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--run", default="runs/quality-mini")
    ap.add_argument("--n-per-class", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-bootstrap", type=int, default=200)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    gq.RECORD_ARGV = list(sys.argv)  # the record names this command, not the generator_quality call it makes
    run = runs.open_run(None if (paths.resolve(a.run) / "config.yaml").is_file() else a.config, a.run)
    torch.set_num_threads(a.threads)
    captions.caption_run(run, progress=False)
    t0 = time.time()
    adapter = lora.finetune(run, progress=False)
    seconds = time.time() - t0
    torch.set_num_threads(a.threads)
    sys.argv = [sys.argv[0], "--model", run.cfg.generator.base, "--lora", str(adapter), "--run", str(run.dir),
                "--config", a.config, "--n-per-class", str(a.n_per_class), "--threads", str(a.threads),
                "--guidance", str(run.cfg.synthesis.guidance_scale), "--steps", str(run.cfg.synthesis.steps),
                "--dtype", "bfloat16" if run.cfg.generator.dtype == "bfloat16" else "float32",
                "--teacher", "--n-bootstrap", str(a.n_bootstrap)]
    if a.out:
        sys.argv += ["--out", a.out]
    print(json.dumps({"adapter": str(adapter), "finetune_seconds": seconds,
                      "steps": io.read_json(run.dir / "lora" / "training.json")["steps"]}))
    gq.main()


if __name__ == "__main__":
    main()
