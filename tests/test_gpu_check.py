"""bench/gpu_check.py: the CPU smoke mode writes the JSON schema with finite measurements; no GPU is exit code 3."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from tckr.core import paths


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", paths.ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_gpu_exits_with_code_3(monkeypatch, tmp_path, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _module().main(["--out", str(tmp_path / "x.json")]) == 3
    assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_cpu_smoke_writes_every_measurement(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert _module().main(["--cpu-smoke", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["mode"] == "cpu-smoke" and r["settings"]["resolution"] == 32
    assert r["lora"]["s_per_step"] > 0 and r["lora"]["finite_loss"] and r["lora"]["trainable_params"] > 0
    assert r["lora"]["micro_batches_per_step"] == 2
    assert set(r["synthesis"]) == {"batch_1", "batch_2"}
    assert all(v["images_per_s"] > 0 and v["image_shape"] == [32, 32, 3] for v in r["synthesis"].values())
    assert r["captioning"]["images_per_s"] > 0 and r["captioning"]["new_tokens"] == 3
    assert r["classifier"]["images_per_s"] > 0
    assert all(math.isfinite(v) for v in r["seconds"].values())
