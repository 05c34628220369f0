"""Where a ResNet-20 step loses the machine's peak, layer kind by layer kind.

    python -m benchmarks.layers                       # fp32 and bf16, 2 threads, best of 10
    python -m benchmarks.layers --precisions bf16 --reps 20 --json layers.json

For each stage of ResNet-20 (16 channels at 32x32, 32 at 16x16, 64 at 8x8;
batch 128, channels_last, as ttabench trains) it times, best of ``--reps``
(the minimum is what a quiet moment gives, so a shared machine inflates it
least): the 3x3 convolution forward, its backward (input and weight
gradients), and the non-convolution work of a block half -- batch norm in
training mode, the residual add and ReLU, forward and backward. Each
convolution's FLOP/s is compared with the GEMM peak measured in the same
process and precision. A stage holds 6 such convolutions and 6 such block
halves (the stride-2 first convolution and the stem are counted as
ordinary ones: within a few per cent of the FLOPs), which gives an estimate
of the whole step and of the share each kind of work takes.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from benchmarks import output, peak
from ttabench.launch.usage import comma_list

STAGES = ((16, 32), (32, 16), (64, 8))  # (channels, spatial size)
CONVS_PER_STAGE = 6
BATCH = 128
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def conv_flops(channels: int, size: int, batch: int = BATCH) -> int:
    """Forward FLOPs of a 3x3, same-padding, channels -> channels convolution."""
    return 2 * batch * channels * size * size * channels * 9


def stage(channels: int, size: int, precision: str, reps: int) -> dict:
    dtype = DTYPES[precision]
    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    x = torch.randn(BATCH, channels, size, size, generator=g).to(dtype).contiguous(memory_format=cl)
    w = (torch.randn(channels, channels, 3, 3, generator=g) * 0.1).to(dtype).contiguous(memory_format=cl)
    grad = torch.randn_like(x)
    fwd = peak.best_time(lambda: F.conv2d(x, w, padding=1), reps)
    bwd = peak.best_time(
        lambda: torch.ops.aten.convolution_backward(
            grad, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False]
        ),
        reps,
    )
    # The rest of a block half in training: y = relu(bn(conv_out) + shortcut), forward and
    # backward; batch-norm statistics and parameters in fp32, as autocast keeps them.
    y = x.detach().clone().requires_grad_(True)
    shortcut = x.detach().clone()
    bn_w = torch.ones(channels, requires_grad=True)
    bn_b = torch.zeros(channels, requires_grad=True)
    rm, rv = torch.zeros(channels), torch.ones(channels)

    def bn_relu_add():
        out = F.relu(F.batch_norm(y, rm, rv, bn_w, bn_b, training=True) + shortcut)
        out.backward(grad)

    rest = peak.best_time(bn_relu_add, reps)
    flops = conv_flops(channels, size)
    return {
        "channels": channels,
        "size": size,
        "conv_fwd_s": fwd,
        "conv_bwd_s": bwd,
        "rest_s": rest,
        "conv_fwd_flop_s": flops / fwd,
        "conv_bwd_flop_s": 2 * flops / bwd,
    }


def measure(precision: str, reps: int) -> dict:
    probe = peak.gemm_peak(precision, "cpu", reps=reps)
    stages = [stage(c, s, precision, reps) for c, s in STAGES]
    conv_s = sum(CONVS_PER_STAGE * (s["conv_fwd_s"] + s["conv_bwd_s"]) for s in stages)
    rest_s = sum(CONVS_PER_STAGE * s["rest_s"] for s in stages)
    flops = sum(3 * CONVS_PER_STAGE * conv_flops(s["channels"], s["size"]) for s in stages)
    return {
        "precision": precision,
        "threads": torch.get_num_threads(),
        "peak_flop_s": probe["flop_s"],
        "stages": stages,
        "step_estimate_s": conv_s + rest_s,
        "conv_share": conv_s / (conv_s + rest_s),
        # the fraction of peak a step would reach with these layers alone, and with no
        # batch norm / add / ReLU at all (convolutions as they are)
        "fraction_estimate": flops / (conv_s + rest_s) / probe["flop_s"],
        "fraction_convs_only": flops / conv_s / probe["flop_s"],
    }


def format_result(r: dict) -> str:
    peak_g = r["peak_flop_s"] / 1e9
    lines = [
        f"{r['precision']}: GEMM peak {peak_g:.0f} GFLOP/s ({r['threads']} threads)",
        "  stage     conv fwd GFLOP/s (% peak)  conv bwd GFLOP/s (% peak)  BN+add+ReLU fwd+bwd ms  conv ms fwd+bwd",
    ]
    for s in r["stages"]:
        f, b = s["conv_fwd_flop_s"] / 1e9, s["conv_bwd_flop_s"] / 1e9
        lines.append(
            f"  {s['channels']:>2}x{s['size']:<2}     {f:7.0f} ({100 * f / peak_g:3.0f} %)"
            f"            {b:7.0f} ({100 * b / peak_g:3.0f} %)"
            f"            {1e3 * s['rest_s']:7.2f}              {1e3 * (s['conv_fwd_s'] + s['conv_bwd_s']):7.2f}"
        )
    lines.append(
        f"  step estimate {1e3 * r['step_estimate_s']:.0f} ms: convolutions {100 * r['conv_share']:.0f} %, "
        f"the rest {100 * (1 - r['conv_share']):.0f} %; fraction of peak {100 * r['fraction_estimate']:.0f} %, "
        f"{100 * r['fraction_convs_only']:.0f} % if batch norm, add and ReLU cost nothing"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__.split("\n\n")[0])
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for precision in comma_list(args.precisions):
        r = measure(precision, args.reps)
        results.append(r)
        print(format_result(r), flush=True)
    output.write_json(args.json, results, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
