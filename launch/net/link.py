"""Emulated network links: units, named profiles, the alpha-beta model, and the delay.

Model. A ring all-reduce over p workers (Patarasuk & Yuan, "Bandwidth
optimal all-reduce algorithms for clusters of workstations", JPDC 2009;
Thakur, Rabenseifner & Gropp, "Optimization of collective communication
operations in MPICH", IJHPCA 2005) runs 2(p-1) steps (a reduce-scatter and
an all-gather), and in each step every worker sends n/p bytes. With a link
of latency alpha (seconds per message) and bandwidth B (bytes/second),

    T(n, p) = 2(p-1) * alpha + 2(p-1)/p * n / B

and T = 0 for p = 1 (nothing crosses a link).

Emulation. Every collective takes at least T: the real time counts, and the
emulator only adds the missing part (it sleeps until max(real completion,
modelled completion)). Collectives share one emulated link, so one that
starts while the link is still busy with the previous one waits for it
(the model's completion is max(start, link free) + T). The same code runs in
the DDP communication hook and around Horovod's all-reduce, so both backends
honour the same setting.

A link is a named profile, explicit values, or a profile file (JSON, format
"ttabench-network-profile": latency_s and bandwidth_bytes_per_s) such as
`ttabench bench allreduce --fit FILE` writes from measurements.

Units follow tc(8): rates as bit, kbit, mbit, gbit, tbit (SI, bits per
second), kibit/mibit/gibit (IEC), bps/kbps/mbps/gbps (bytes per second; a
bare number is bits per second); times as s/sec, ms/msec, us/usec (a bare
number is microseconds); sizes as b (bytes), k/kb, m/mb, g/gb (1024-based,
as in tc), kbit/mbit (bits).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ttabench import UserError
from ttabench.divisions.results import atomic_write_json, read_json

_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

_RATE_UNITS = {
    "": 1 / 8,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "mbit": 1e6 / 8,
    "gbit": 1e9 / 8,
    "tbit": 1e12 / 8,
    "kibit": 1024 / 8,
    "mibit": 1024**2 / 8,
    "gibit": 1024**3 / 8,
    "tibit": 1024**4 / 8,
    "bps": 1.0,
    "kbps": 1e3,
    "mbps": 1e6,
    "gbps": 1e9,
    "tbps": 1e12,
    "kibps": 1024.0,
    "mibps": 1024.0**2,
    "gibps": 1024.0**3,
}
_TIME_UNITS = {
    "": 1e-6,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "msecs": 1e-3,
    "us": 1e-6,
    "usec": 1e-6,
    "usecs": 1e-6,
}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "kbit": 1024 / 8,
    "mbit": 1024**2 / 8,
    "gbit": 1024**3 / 8,
}


def _parse(text: str, units: dict, what: str, example: str) -> float:
    m = re.fullmatch(_NUM + r"\s*([a-zA-Z]*)", text.strip()) if isinstance(text, str) else None
    if not m or m.group(2).lower() not in units:
        raise UserError(
            f"cannot parse {what} {text!r} (e.g. {example}; units: {', '.join(u for u in units if u)})"
        )
    value = float(m.group(1)) * units[m.group(2).lower()]
    if not math.isfinite(value):  # 1e999gbit: a link that cannot be emulated (or a sleep forever)
        raise UserError(f"{what} {text!r} is not a finite number")
    return value


def parse_rate(text: str) -> float:
    """tc rate -> bytes per second (> 0)."""
    v = _parse(text, _RATE_UNITS, "bandwidth", "1gbit, 100mbit, 125mbps")
    if v <= 0:
        raise UserError(f"bandwidth must be > 0, got {text!r}")
    return v


def parse_time(text: str) -> float:
    """tc time -> seconds (>= 0)."""
    return _parse(text, _TIME_UNITS, "latency", "0.5ms, 50us, 0.01s")


def parse_size(text: str) -> int:
    """tc size -> bytes (> 0)."""
    v = int(round(_parse(text, _SIZE_UNITS, "size", "4kb, 1mb, 16mb")))
    if v <= 0:
        raise UserError(f"size must be > 0 bytes, got {text!r}")
    return v


def parse_series(text: str, parse_one, flag: str) -> list:
    """'1,2,8' -> [1, 2, 8]; 'A:B:xK' -> A, A*K, ... up to B (both ends parsed by parse_one)."""
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if ":" not in part:
            out.append(parse_one(part))
            continue
        pieces = part.split(":")
        if len(pieces) != 3 or not pieces[2].startswith("x"):
            raise UserError(f"{flag}: a range is FROM:TO:xFACTOR (e.g. 8:256M:x4), got {part!r}")
        lo, hi = parse_one(pieces[0]), parse_one(pieces[1])
        try:
            k = float(pieces[2][1:])
        except ValueError:
            k = 0.0
        if k <= 1 or lo <= 0 or hi < lo:
            raise UserError(f"{flag}: range {part!r} needs 0 < FROM <= TO and a FACTOR > 1")
        v = lo
        while v <= hi * (1 + 1e-12):
            out.append(type(lo)(round(v)) if isinstance(lo, int) else v)
            v *= k
    if not out:
        raise UserError(f"{flag} is empty")
    return sorted(set(out))


def format_rate(bytes_per_s: float) -> str:
    bits = bytes_per_s * 8
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= scale:
            return f"{bits / scale:g} {unit}"
    return f"{bits:g} bit/s"


@dataclass(frozen=True)
class Link:
    """A point-to-point link every worker uses: latency per message and bandwidth."""

    name: str
    bandwidth: float | None  # bytes per second; None = not emulated
    latency: float  # seconds per message step

    @property
    def emulated(self) -> bool:
        return self.bandwidth is not None

    def allreduce_time(self, nbytes: int, world: int) -> float:
        """Ring all-reduce time of an n-byte buffer over `world` workers."""
        if not self.emulated or world <= 1:
            return 0.0
        steps = 2 * (world - 1)
        return steps * self.latency + steps / world * nbytes / self.bandwidth

    def op_time(self, op: str, nbytes: float, world: int) -> float:
        """Modelled time of one operation a worker hands n bytes to, on this link (ring schedules):
        all_reduce  2(p-1) alpha + 2(p-1)/p n/B
        all_gather  (p-1) alpha + (p-1) n/B      (n bytes from each worker)
        send        alpha + n/B                  (one point-to-point message)"""
        if not self.emulated or world <= 1:
            return 0.0
        if op == "all_reduce":
            return self.allreduce_time(nbytes, world)
        if op == "all_gather":
            return (world - 1) * (self.latency + nbytes / self.bandwidth)
        if op == "send":
            return self.latency + nbytes / self.bandwidth
        raise ValueError(f"unknown operation {op!r}")

    def describe(self) -> dict:
        return {
            "profile": self.name,
            "mechanism": "emulated" if self.emulated else "none",
            "bandwidth_bytes_per_s": self.bandwidth,
            "bandwidth": format_rate(self.bandwidth) if self.emulated else None,
            "latency_s": self.latency if self.emulated else None,
            "model": "ring all-reduce, alpha-beta: 2(p-1)*alpha + 2(p-1)/p*n/B" if self.emulated else None,
            # --algorithm's other operations (Link.op_time)
            "other_ops": "all_gather (p-1)*(alpha + n/B); send alpha + n/B" if self.emulated else None,
        }

    def describe_for(self, world: int) -> dict:
        """config.json's resolved.network for a run of `world` workers. With one worker no
        collective crosses a link: a requested link is recorded as not applied (the run is
        measured as on loopback), with what was asked."""
        if world > 1 or not self.emulated:
            return self.describe()
        return dict(
            PROFILES["loopback"].describe(),
            applied=False,
            requested=self.describe(),
            note=NOT_APPLIED,
        )


NOT_APPLIED = "not applied: with 1 worker no collective crosses a link"

# Named profiles: typical per-message latency of the link class (one hop,
# kernel TCP) and its line rate.
PROFILES = {
    "loopback": Link("loopback", None, 0.0),
    "100gbe": Link("100gbe", 100e9 / 8, 5e-6),
    "25gbe": Link("25gbe", 25e9 / 8, 10e-6),
    "10gbe": Link("10gbe", 10e9 / 8, 20e-6),
    "1gbe": Link("1gbe", 1e9 / 8, 50e-6),
    "100mbit": Link("100mbit", 100e6 / 8, 100e-6),
    "20mbit": Link("20mbit", 20e6 / 8, 200e-6),
    "wan": Link("wan", 100e6 / 8, 20e-3),
}


def profiles_text() -> str:
    """'loopback (not emulated), 100gbe (100 Gbit/s, 5 us), ...' for help texts and docs."""
    return ", ".join(
        f"{n} ({format_rate(p.bandwidth)}, {p.latency * 1e6:g} us)" if p.emulated else f"{n} (not emulated)"
        for n, p in PROFILES.items()
    )


def resolve(profile: str | None, bandwidth: str | None, latency: str | None) -> Link:
    """The link a run uses: a profile (a name or a profile file), explicit values, or a
    profile with overrides."""
    if profile is not None and profile not in PROFILES:
        if not is_profile_file(profile):
            near = difflib.get_close_matches(profile.lower(), list(PROFILES), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}? " if near else ""
            raise UserError(
                f"unknown network profile {profile!r} ({hint}one of {', '.join(PROFILES)}, "
                "or a profile file written by `ttabench bench allreduce --fit`)"
            )
        base = load_profile(profile)
    else:
        base = PROFILES[profile or "loopback"]
    if bandwidth is None and latency is None:
        return base
    if bandwidth is None and not base.emulated:
        raise UserError("--latency needs --bandwidth (or a --network profile) to define the link")
    bw = parse_rate(bandwidth) if bandwidth is not None else base.bandwidth
    lat = parse_time(latency) if latency is not None else base.latency
    name = base.name if profile else "custom"
    if profile:
        name += "+override"
    return Link(name, bw, lat)


# -- profile files (`bench allreduce --fit` writes them; run/predict --network FILE read them)

PROFILE_FORMAT = "ttabench-network-profile"


def is_profile_file(text: str) -> bool:
    """A --network value names a file when it ends in .json or a file of that name exists."""
    return text.endswith(".json") or os.path.isfile(text)


def save_profile(path: str, link: Link, extra: dict | None = None) -> None:
    atomic_write_json(
        path,
        {
            "format": PROFILE_FORMAT,
            "version": 1,
            "name": link.name,
            "latency_s": link.latency,
            "bandwidth_bytes_per_s": link.bandwidth,
            "bandwidth": format_rate(link.bandwidth),
            "model": "ring all-reduce, alpha-beta: 2(p-1)*alpha + 2(p-1)/p*n/B",
            **(extra or {}),
        },
    )


def load_profile(path: str) -> Link:
    """A profile file -> Link; anything malformed is one UserError naming the file."""
    d = read_json(path)
    lat, bw = d.get("latency_s"), d.get("bandwidth_bytes_per_s")
    if d.get("format") != PROFILE_FORMAT:
        raise UserError(f'{path}: not a ttabench network profile (no "format": "{PROFILE_FORMAT}")')
    for key, v, ok in (("latency_s", lat, "a number >= 0"), ("bandwidth_bytes_per_s", bw, "a number > 0")):
        good = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not good or v < 0 or (key.startswith("bandwidth") and v <= 0):
            raise UserError(f"{path}: {key} must be {ok}, got {v!r}")
    name = d.get("name") if isinstance(d.get("name"), str) and d.get("name") else os.path.basename(path)
    return Link(f"file:{name}", float(bw), float(lat))


class LinkEmulator:
    """Makes each collective last at least its modelled time on a shared link.

    `clock` and `sleep` are injectable so the added delay can be tested
    without waiting.
    """

    def __init__(
        self,
        link: Link,
        world: int,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.link = link
        self.world = world
        self.clock = clock
        self.sleep = sleep
        self._free_at = 0.0
        self._lock = threading.Lock()
        self.added_s = 0.0  # total delay added by emulation
        self.modelled_s = 0.0

    def complete(self, started: float, nbytes: int, op: str = "all_reduce") -> float:
        """Call when an operation (all_reduce, all_gather, send) that started at `started`
        has really finished; sleeps for the part of its modelled time (Link.op_time) that
        has not yet passed and returns the delay added."""
        t_model = self.link.op_time(op, nbytes, self.world)
        if t_model <= 0:
            return 0.0
        with self._lock:
            done_model = max(started, self._free_at) + t_model
            self._free_at = done_model
            self.modelled_s += t_model
        delay = done_model - self.clock()
        if delay > 0:
            self.sleep(delay)
            self.added_s += delay
            return delay
        return 0.0
