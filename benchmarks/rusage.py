"""What a benchmark process measures of itself: CPU seconds and peak resident memory."""

from __future__ import annotations

import resource


def cpu_s(who=resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (RUSAGE_SELF) or of its reaped children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def peak_rss_mib() -> float | None:
    """VmHWM of this process: the peak resident set, which torch's allocations count in."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
