"""benchmarks/peak.py: training FLOPs counted exactly, the fraction-of-peak arithmetic, the probe,
and how benchmarks/summary.py summarises and judges the fractions."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import layers, peak, summary
from tests.test_benchmark_throughput import _run
from ttabench.reference_impls.resnet import resnet


def test_linear_training_flops_are_counted_by_hand():
    # forward: 2*(4*3) + 2*(3*5) per image; backward: the second layer's weight and
    # input gradients (2*15 each) and the first layer's weight gradient (2*12) -- not
    # its input gradient, which nothing needs. Biases and ReLU are not counted.
    m = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 5))
    assert (
        peak.training_flops_per_image(m, input_shape=(4,), batch=2)
        == 2 * (12 + 15) + 2 * 15 + 2 * 15 + 2 * 12
    )


def test_conv_training_flops_are_counted_by_hand():
    # conv 2->3, 3x3, same padding on 4x4: 48 outputs x 18 multiply-adds = 1728 FLOPs each way
    # (weight gradient only backward); linear 48->5: 480 forward, 480 + 480 backward.
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(48, 5, bias=False))
    assert peak.training_flops_per_image(m, input_shape=(2, 4, 4), batch=3) == 2 * 1728 + 3 * 480


def test_counting_leaves_the_model_alone():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    peak.training_flops_per_image(m)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters())


def test_resnet20_flops_per_image_matches_a_hand_count_of_its_convolutions():
    # Forward multiply-adds per image: stem 32*32*16*27; stage 1: 6 convs 32*32*16*144;
    # stage 2: one 16*16*32*144 (stride 2) + 5 of 16*16*32*288; stage 3 likewise at 8x8/64;
    # fc 64*10. Backward: weight and input gradients (2x forward) except the stem's input gradient.
    stem = 32 * 32 * 16 * 27
    body = 6 * 32 * 32 * 16 * 144 + 16 * 16 * 32 * (144 + 5 * 288) + 8 * 8 * 64 * (288 + 5 * 576)
    fc = 64 * 10
    macs = stem * 2 + (body + fc) * 3
    assert peak.training_flops_per_image(resnet(20)) == 2 * macs


def test_fraction_arithmetic_is_exact():
    assert peak.gemm_flops(2048) == 17_179_869_184
    assert peak.achieved_flop_s(500.0, 2e8) == 1e11
    assert peak.fraction_of_peak(500.0, 2e8, 4e11) == 0.25
    assert peak.probe_precision("bf16") == "bf16" and peak.probe_precision("fp32") == "fp32"


def test_gemm_probe_reports_its_best_repetition(monkeypatch):
    # A clock that makes the three timed repetitions take 3, 1 and 2 s: best 1, median 2.
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(peak.time, "perf_counter", lambda: next(ticks))
    r = peak.gemm_peak("fp32", "cpu", n=64, reps=3)
    assert (r["precision"], r["n"], r["reps"]) == ("fp32", 64, 3)
    assert (r["best_s"], r["median_s"]) == (1.0, 2.0)
    assert r["flop_s"] == 2 * 64**3


def test_summary_fraction_is_the_median_of_per_repetition_fractions():
    def run(seed, img_s, peak_flop_s, mode="fp32-cl"):
        flops = 2e8
        return _run(
            mode,
            seed,
            img_s,
            flop_s=img_s * flops,
            fraction_of_peak=img_s * flops / peak_flop_s,
            peak={"precision": "fp32", "flop_s": peak_flop_s},
        )

    # rep 1 ran under load: both its training and its probe were slower
    runs = [run(0, 400.0, 1e11), run(1, 100.0, 0.5e11), run(2, 450.0, 1e11)]
    row = summary.summarize(runs, ["fp32-cl"])[0]
    assert row["fraction"] == {"median": 0.8, "min": 0.4, "max": 0.9, "n": 3}
    assert row["peak_flop_s"]["median"] == 1e11 and row["peak_precision"] == "fp32"
    table = summary.format_table([row])
    assert "80 [40-90]" in table and "100 [50-100] fp32" in table
    assert summary.fraction_verdicts([row]) == [
        "goal fp32 >= 85 % of the fp32 GEMM peak: not reached (best: fp32-cl at 80.0 %)"
    ]
    bf = summary.summarize([run(0, 400.0, 1e11, mode="bf16-cl")], ["bf16-cl"])
    assert summary.fraction_verdicts(bf) == [
        "goal bf16 >= 70 % of the bf16 GEMM peak: reached (best: bf16-cl at 80.0 %)"
    ]


def test_layer_breakdown_counts_convolution_flops_as_the_flop_counter_does():
    for channels, size in layers.STAGES:
        x, w = torch.randn(2, channels, size, size), torch.randn(channels, channels, 3, 3)
        with FlopCounterMode(display=False) as counter:
            torch.nn.functional.conv2d(x, w, padding=1)
        assert layers.conv_flops(channels, size, batch=2) == counter.get_total_flops()
    # 6 convolutions per stage, forward + backward (3x): ResNet-20's 0.2424 GFLOP per image
    # less its stem and linear layer, with the stride-2 convolutions counted as ordinary ones
    per_image = sum(3 * layers.CONVS_PER_STAGE * layers.conv_flops(c, s, batch=1) for c, s in layers.STAGES)
    assert per_image == 3 * 6 * 2 * 9 * (16 * 16 * 32 * 32 + 32 * 32 * 16 * 16 + 64 * 64 * 8 * 8)
