"""bench/roofline.py's helpers: the FLOP counts of known operations and the table row's arithmetic (no timings)."""

from __future__ import annotations

import pytest
import torch


def test_a_matmul_counts_two_flops_per_multiply_add(bench):
    rf = bench("roofline")
    a, b = torch.randn(48, 32), torch.randn(32, 40)
    assert rf.count_flops(lambda: a @ b) == 2 * 48 * 32 * 40


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_a_convolution_backward_counts_its_forward_once_per_gradient(bench, groups):
    """Forward + backward of a conv is 3× its forward whatever ``groups`` is (torch's own formula counted the
    weight gradient of a grouped conv ``groups`` times)."""
    rf = bench("roofline")
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    forward = 2 * 2 * 8 * 8 * 16 * (16 // groups) * 9
    assert rf.count_flops(lambda: conv(x)) == forward
    assert rf.count_flops(lambda: conv(x).sum().backward()) == 3 * forward  # forward, input and weight gradients
    x.requires_grad_(False)  # the input's gradient is not asked for: the weight's alone
    assert rf.count_flops(lambda: conv(x).sum().backward()) == 2 * forward


def test_stage_row_divides_flops_by_the_median_and_the_peak(bench):
    rf = bench("roofline")
    row = rf.stage_row("s", "d", 6 * 10**9, [1.0, 3.0, 2.0], peak_gflops=6.0, items=10)
    assert row["median_s"] == 2.0 and row["gflops"] == pytest.approx(3.0)
    assert row["fraction_of_peak"] == pytest.approx(0.5) and row["items_per_s"] == pytest.approx(5.0)
    lira = rf.stage_row("lira", "d", None, [2.0], peak_gflops=6.0, items=10)
    assert lira["gflops"] is None and lira["fraction_of_peak"] is None and lira["items_per_s"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        rf.timings(lambda: None, 0)


def test_dtype_bfloat16_runs_the_peak_and_the_autocast_stages_in_bfloat16(bench):
    """--dtype bfloat16: the peak's operands are bfloat16 and a stage wrapped by _in_precision computes in bfloat16
    (float32 weights kept, as lora.mixed_precision bf16 trains); float32 leaves both alone."""
    rf = bench("roofline")
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    try:
        rf.PRECISION["dtype"] = torch.bfloat16
        assert rf._in_precision(lambda: lin(x))().dtype == torch.bfloat16 and lin.weight.dtype == torch.float32
        assert set(rf.peak(1, n=64)) == {"matmul", "conv3x3"}
    finally:
        rf.PRECISION["dtype"] = torch.float32
    assert rf._in_precision(lambda: lin(x))().dtype == torch.float32
