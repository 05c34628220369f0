"""The Python steps of benchmarks/device_check.sh: environment, GEMM peaks, the data path, figures.

    python -m benchmarks.device_steps env      --device cuda --out DIR
    python -m benchmarks.device_steps peak     --device cuda --out DIR
    python -m benchmarks.device_steps datapath --device cuda --out DIR [--synthetic | --data-dir D]
    python -m benchmarks.device_steps figures  --out DIR

Run from the repository root. Each writes one JSON file into DIR (env.json,
peak.json, datapath.json, figures.json + figures.md); ``figures`` gathers
what the other steps and the training runs (DIR/results/.../summary.json,
DIR/throughput.json, DIR/steps.tsv) left.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time

import torch

from benchmarks import peak
from ttabench.launch.worker.compute import epoch_plan
from ttabench.reference_impls import cifar10
from ttabench.reference_impls.augment import Normalize, crop_flip

BATCH = 128


def _write(out: str, name: str, obj) -> str:
    path = os.path.join(out, name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_info(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(
            gpu=p.name,
            gpu_memory_gib=p.total_memory / 2**30,
            sm_count=p.multi_processor_count,
            capability=f"{p.major}.{p.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            nccl=".".join(map(str, torch.cuda.nccl.version())),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return info


def peaks(device: torch.device, n: int | None) -> dict:
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    return {p: peak.gemm_peak(p, device, n=n) for p in precisions}


def datapath(device: torch.device, data: cifar10.Cifar10, epochs: int, channels_last: bool = True) -> dict:
    """ttabench's training data path alone, on ``device``: per epoch the plan (permutation and
    augmentation draws, on the host, then copied), per step the gather, crop+flip and normalise.
    Its images/s is what the data path could feed; training slower than that is not data-bound."""
    images = data.train_images.to(device)
    normalize = Normalize(cifar10.MEAN, cifar10.STD, device=device, channels_last=channels_last)
    n = len(data.train_labels)
    steps = 0
    plan_s = 0.0
    _sync(device)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        tp = time.perf_counter()
        batches, aug = epoch_plan(n, BATCH, 0, epoch, 0, 1)
        batches, aug = batches.to(device), aug.to(device)
        plan_s += time.perf_counter() - tp
        for idx in batches:
            x = normalize(crop_flip(images[idx], aug[idx]))
            steps += 1
    _sync(device)
    elapsed = time.perf_counter() - t0
    assert x.shape == (BATCH, 3, 32, 32)
    return {
        "device": str(device),
        "epochs": epochs,
        "steps": steps,
        "batch": BATCH,
        "seconds": elapsed,
        "plan_s": plan_s,
        "img_s": steps * BATCH / elapsed,
    }


def _summaries(out: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "results", "*", "*", "*", "*", "summary.json"))):
        with open(path, encoding="utf-8") as f:
            s = json.load(f)
        # A run that failed before its clock started (a compile error in the warm-up) has a
        # summary but no config: its row keeps the summary's fields.
        config = os.path.join(os.path.dirname(path), "config.json")
        r = {}
        if os.path.exists(config):
            with open(config, encoding="utf-8") as f:
                r = json.load(f).get("resolved") or {}
        rows.append(
            {
                "run": os.path.basename(os.path.dirname(path)),
                "device": r.get("device"),
                "precision": r.get("precision"),
                "compile": r.get("compile"),
                "workers": s.get("world_size"),
                "dist_backend": r.get("dist_backend"),
                "status": s.get("status"),
                "steps": s.get("steps"),
                "img_s": s.get("throughput_img_s"),
                "final_accuracy": (s.get("metrics") or {}).get("final_accuracy"),
                "warmup_s": r.get("warmup_s"),
            }
        )
    return rows


def figures(out: str) -> dict:
    """Everything the check measured, in one JSON, and a Markdown table of it."""

    def load(name):
        path = os.path.join(out, name)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    steps = []
    if os.path.exists(os.path.join(out, "steps.tsv")):
        with open(os.path.join(out, "steps.tsv"), encoding="utf-8") as f:
            for line in f:
                name, status, seconds = line.rstrip("\n").split("\t")
                steps.append({"step": name, "status": status, "seconds": float(seconds)})
    tp = load("throughput.json")
    fig = {
        "env": load("env.json"),
        "peak": load("peak.json"),
        "datapath": load("datapath.json"),
        "runs": _summaries(out),
        "throughput": tp["summary"] if tp else None,
        "steps": steps,
    }
    _write(out, "figures.json", fig)
    with open(os.path.join(out, "figures.md"), "w", encoding="utf-8") as f:
        f.write(format_figures(fig))
    return fig


def format_figures(fig: dict) -> str:
    lines = ["# device check", ""]
    if fig["env"]:
        e = fig["env"]
        lines.append(f"device {e['device']} {e.get('gpu', '')}, torch {e['torch']}, cuda {e.get('cuda')}")
        lines.append("")
    lines += ["| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']:.0f} |" for s in fig["steps"]]
    if fig["peak"]:
        lines += ["", "| GEMM precision | N | GFLOP/s |", "|---|---|---|"]
        lines += [f"| {p} | {r['n']} | {r['flop_s'] / 1e9:.1f} |" for p, r in fig["peak"].items()]
    if fig["datapath"]:
        d = fig["datapath"]
        lines += ["", f"data path alone: {d['img_s']:.0f} images/s ({d['steps']} batches of {d['batch']})"]
    if fig["runs"]:
        lines += [
            "",
            "| run | precision | compile | workers | dist | status | images/s | warm-up s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in fig["runs"]:
            img_s = f"{r['img_s']:.0f}" if r["img_s"] else "-"
            warm = f"{r['warmup_s']:.0f}" if r["warmup_s"] else "-"
            lines.append(
                f"| {r['run']} | {r['precision']} | {r['compile']} | {r['workers']} | {r['dist_backend']} "
                f"| {r['status']} | {img_s} | {warm} |"
            )
    if fig["throughput"]:
        lines += ["", "| bench mode | images/s | % of peak |", "|---|---|---|"]
        for r in fig["throughput"]:
            img_s = f"{r['img_s']['median']:.0f}" if r["img_s"] else "failed"
            frac = f"{100 * r['fraction']['median']:.1f}" if r.get("fraction") else "-"
            lines.append(f"| {r['mode']} | {img_s} | {frac} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.device_steps")
    p.add_argument("step", choices=("env", "peak", "datapath", "figures"))
    p.add_argument("--out", required=True, help="folder the step writes into")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--probe-n", type=int, default=None, help="GEMM size (default: 2048 cpu, 8192 cuda)")
    p.add_argument("--epochs", type=int, default=3, help="datapath: epochs")
    p.add_argument("--synthetic", action="store_true")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.step == "figures":
        fig = figures(args.out)
        print(format_figures(fig))
        return 0 if all(s["status"] in ("ok", "skipped") for s in fig["steps"]) else 1
    device = torch.device(args.device)
    if args.step == "env":
        result = env_info(device)
    elif args.step == "peak":
        result = peaks(device, args.probe_n)
    else:
        data = cifar10.synthetic() if args.synthetic or not args.data_dir else cifar10.load(args.data_dir)
        result = datapath(device, data, args.epochs)
    print(json.dumps(result, indent=1))
    _write(args.out, f"{args.step}.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
