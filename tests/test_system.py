"""launch/system.py: the system name made from the hardware (results/<system>/...), from the model
strings real machines write in /proc/cpuinfo."""

from __future__ import annotations

import pytest

from ttabench.launch import system


def _desc(model: str, cores: int = 2, gpus: tuple = ()) -> dict:
    return {"cpu": {"model": model, "cores": cores}, "accelerators": [{"name": g} for g in gpus]}


@pytest.mark.parametrize(
    "model, name",
    [
        ("Intel(R) Xeon(R) Processor", "intel-xeon-2c"),
        ("Intel(R) Xeon(R) Platinum 8480+", "intel-xeon-platinum-8480+-2c"),
        ("Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz", "intel-xeon-e5-2690-v4-2c"),
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "intel-core-i7-8700-2c"),
        ("13th Gen Intel(R) Core(TM) i7-1365U", "13th-gen-intel-core-i7-1365u-2c"),
        ("AMD EPYC 7B13", "amd-epyc-7b13-2c"),
        ("AMD EPYC 9B14 96-Core Processor", "amd-epyc-9b14-2c"),
        ("AMD Ryzen 7 5800X 8-Core Processor", "amd-ryzen-7-5800x-2c"),
        ("AMD Ryzen 5 5600G with Radeon Graphics", "amd-ryzen-5-5600g-2c"),
        ("AMD Ryzen 7 PRO 7840U w/ Radeon 780M Graphics", "amd-ryzen-7-pro-7840u-2c"),
        ("AMD EPYC", "amd-epyc-2c"),
        ("Neoverse-N1", "neoverse-n1-2c"),
        ("  ", "cpu-2c"),
        ("", "cpu-2c"),
    ],
)
def test_cpu_system_names_are_short_and_clean(model, name):
    got = system.default_system_name(_desc(model))
    assert got == name
    assert "--" not in got and got == got.strip("-") and got == got.lower()


def test_gpu_system_name():
    desc = _desc("AMD EPYC 9B14 96-Core Processor", gpus=("NVIDIA H100 80GB HBM3",) * 8)
    assert system.default_system_name(desc) == "nvidia-h100-80gb-hbm3-x8"


INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
"""
# aarch64 (an AWS Graviton2 / Ampere Altra core): no "model name", the core is a part number.
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""


@pytest.mark.parametrize(
    "text, model",
    [
        (INTEL, "Intel(R) Xeon(R) Processor"),
        (ARM, "Neoverse-N1"),
        (ARM.replace("0xd0c", "0xfff"), "Arm part 0xfff"),
        (ARM.replace("0x41", "0x61"), ""),  # not an Arm Ltd. design: no name from here
        ("", ""),
    ],
)
def test_model_from_cpuinfo(text, model):
    assert system.model_from_cpuinfo(text) == model


def test_this_machine_has_a_clean_name():
    name = system.default_system_name(_desc(system.cpu_model(), cores=system.usable_cores()))
    assert "--" not in name and name.endswith(f"-{system.usable_cores()}c")
