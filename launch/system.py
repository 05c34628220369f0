"""Describe the hardware and software a run used (results/<system>/system.json)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import sys

from ttabench.divisions.results import safe_name

# Arm cores name themselves by part number only (aarch64's /proc/cpuinfo has no "model name").
ARM_PARTS = {
    0xD03: "Cortex-A53",
    0xD08: "Cortex-A72",
    0xD0B: "Cortex-A76",
    0xD0C: "Neoverse-N1",
    0xD40: "Neoverse-V1",
    0xD49: "Neoverse-N2",
    0xD4F: "Neoverse-V2",
    0xD84: "Neoverse-V3",
    0xD8E: "Neoverse-N3",
}


def model_from_cpuinfo(text: str) -> str:
    """The CPU's model in the text of /proc/cpuinfo: its "model name", else (Arm) the core named by
    its "CPU part" when it is an Arm Ltd. design, else ""."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if fields.get("model name"):
        return fields["model name"]
    try:
        if int(fields.get("CPU implementer", ""), 16) == 0x41:
            part = int(fields.get("CPU part", ""), 16)
            return ARM_PARTS.get(part, f"Arm part {part:#x}")
    except ValueError:
        pass
    return ""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = model_from_cpuinfo(f.read())
    except OSError:
        model = ""
    return model or platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def native_bf16(flags: list[str] | None = None) -> bool | None:
    """Whether this CPU computes bf16 in hardware (AVX512_BF16 or AMX), from /proc/cpuinfo's
    flags; None where they cannot be read. Without it PyTorch emulates bf16 matmuls and
    convolutions, many times slower than fp32."""
    flags = _cpu_flags() if flags is None else flags
    if not flags:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def describe() -> dict:
    import torch  # here: usable_cores() and cpu_model() serve callers that never load torch

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1)})
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "cpu": {
            "model": cpu_model(),
            "cores": usable_cores(),
            "logical_cpus": os.cpu_count(),
            "flags": _cpu_flags(),
        },
        "memory_gib": _memory_gib(),
        "accelerators": gpus,
        "software": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "numpy": _version("numpy"),
            "horovod": _version("horovod"),
            "mlperf-logging": _version("mlperf-logging"),
            "ttabench": _version("ttabench"),
            "mkldnn": torch.backends.mkldnn.is_available(),
        },
    }


def system_name(given: str | None, desc: dict | None = None) -> str:
    """The <system> of a run's results path: --system when given, else the name of this
    machine's hardware (`desc`: its description, when the caller has it already)."""
    return given or default_system_name(describe() if desc is None else desc)


def default_system_name(desc: dict) -> str:
    """A stable name from the hardware, e.g. 'nvidia-h100-80gb-hbm3-x1' or 'intel-xeon-platinum-8480+-2c'
    (the CPU's short name and the cores this process may use)."""
    if desc["accelerators"]:
        name = f"{desc['accelerators'][0]['name']}-x{len(desc['accelerators'])}"
    else:
        name = f"{cpu_short_name(desc['cpu']['model']) or 'cpu'}-{desc['cpu']['cores']}c"
    return re.sub(r"-{2,}", "-", safe_name(re.sub(r"\s+", "-", name.strip()).lower()))


# What a CPU's model string says beside its name: trade marks, "CPU", "Processor", the clock
# ("@ 3.20GHz"), the core count of the chip ("96-Core": the name carries the cores usable here), integrated graphics.
_CPU_NOISE = re.compile(
    r"\((?:r|tm)\)|\b(?:cpu|processor)\b|@.*$|\b\d+-core\b|(?:\bwith|\bw/)\s*radeon\b.*$", re.I
)


def cpu_short_name(model: str) -> str:
    """'Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz' -> 'intel-core-i7-8700'; '' when nothing is left."""
    words = _CPU_NOISE.sub(" ", model or "").split()
    return re.sub(r"-{2,}", "-", safe_name("-".join(words).lower())) if words else ""
