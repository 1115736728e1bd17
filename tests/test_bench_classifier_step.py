"""bench/classifier_step.py: each variant trains (a step's loss is finite and the weights move) and the backend is restored."""

from __future__ import annotations

import torch

from tckr.core.config import load_config


def test_variants_time_a_step_and_the_backend_comes_back(bench):
    mod = bench("classifier_step")
    cfg = load_config("configs/tiny.yaml", {"train.batch_size": 8})
    before = (torch.backends.mkldnn.enabled, torch.backends.mkldnn.conv.fp32_precision)
    with mod.backend(False, "bf16"):
        assert not torch.backends.mkldnn.enabled and torch.backends.mkldnn.conv.fp32_precision == "bf16"
    assert (torch.backends.mkldnn.enabled, torch.backends.mkldnn.conv.fp32_precision) == before
    for kwargs in ({}, {"fmt": torch.contiguous_format}, {"stem_stride": 2}, {"teacher": True}):
        r = mod.step_seconds(cfg, steps=2, **kwargs)
        assert r["median_s"] > 0 and len(r["all_s"]) == 2 and r["warm_up_s"] > 0
