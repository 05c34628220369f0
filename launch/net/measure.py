"""TCP throughput across the network lab: `ttabench netlab measure` (and `up`'s check).

One direction: a receiver in the destination host's namespace accepts one
connection and counts bytes until EOF; a sender in the source namespace sends
until a byte count or a time cap is reached. Both ends are this module,
started inside the namespaces as

    python -m ttabench.launch.net.measure _recv ADDR PORT TIMEOUT
    python -m ttabench.launch.net.measure _send ADDR PORT BYTES SECONDS

The receiver times from its first read to EOF (the first read's bytes are not
part of the timed span), so connection set-up is not counted.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from ttabench import UserError
from ttabench.launch.net.lab import last_line

MEASURE_PORT = 45201


def measure_pair(
    state: dict, src: int, dst: int, nbytes: int, seconds: float, port: int = MEASURE_PORT
) -> dict:
    """TCP throughput from host `src` to host `dst`: at most `nbytes` or `seconds`."""
    nodes = state["nodes"]
    py = [sys.executable, "-m", "ttabench.launch.net.measure"]
    dst_addr = nodes[dst]["address"]
    recv = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            nodes[dst]["namespace"],
            *py,
            "_recv",
            dst_addr,
            str(port),
            str(seconds + 10),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if recv.stdout.readline().strip() != "ready":
            raise UserError(
                f"throughput receiver in {nodes[dst]['namespace']} did not start: "
                f"{last_line(recv.stderr.read())}"
            )
        send = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                nodes[src]["namespace"],
                *py,
                "_send",
                dst_addr,
                str(port),
                str(nbytes),
                str(seconds),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        if send.returncode != 0:
            raise UserError(f"throughput sender failed: {last_line(send.stderr)}")
        out, err = recv.communicate(timeout=seconds + 30)
        if recv.returncode != 0:
            raise UserError(f"throughput receiver failed: {last_line(err)}")
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    r = json.loads(out.strip().splitlines()[-1])
    bits = 8 * r["bytes"] / r["seconds"] if r["seconds"] > 0 else None
    return {
        "from": nodes[src]["namespace"],
        "to": nodes[dst]["namespace"],
        "bytes": r["bytes"],
        "seconds": r["seconds"],
        "bits_per_s": bits,
        "ratio": bits / (8 * state["rate_bytes_per_s"]) if bits else None,
    }


def measure(state: dict, nbytes: int = 8 * 1024**2, seconds: float = 5.0) -> list[dict]:
    """Host 0 -> host 1 and back: both directions cross an uplink and a downlink."""
    return [measure_pair(state, 0, 1, nbytes, seconds), measure_pair(state, 1, 0, nbytes, seconds)]


def _recv_main(addr: str, port: int, timeout: float) -> int:
    """Inside the receiving namespace: accept one connection, count bytes until EOF."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1)
        s.settimeout(timeout)
        print("ready", flush=True)
        conn, _ = s.accept()
        with conn:
            conn.settimeout(timeout)
            got, got_first, first, last = 0, 0, None, None
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                last = time.perf_counter()
                if first is None:
                    first = last
                    got_first = len(b)
                got += len(b)
    # The first read's bytes arrived at `first`: they are not part of the timed span.
    print(json.dumps({"bytes": got - got_first, "seconds": (last - first) if first else 0.0}))
    return 0


def _send_main(addr: str, port: int, nbytes: int, seconds: float) -> int:
    """Inside the sending namespace: send until `nbytes` are sent or `seconds` passed."""
    buf = b"\0" * (64 * 1024)
    deadline = time.perf_counter() + seconds
    with socket.create_connection((addr, port), timeout=seconds + 10) as s:
        sent = 0
        while sent < nbytes and time.perf_counter() < deadline:
            sent += s.send(buf[: min(len(buf), nbytes - sent)])
    return 0


def format_measurements(state: dict, rows: list[dict]) -> str:
    out = []
    for r in rows:
        got = f"{r['bits_per_s'] / 1e6:.1f} Mbit/s" if r["bits_per_s"] else "-"
        ratio = f"{r['ratio']:.2f}x the configured rate" if r["ratio"] else "-"
        out.append(
            f"measured {r['from']} -> {r['to']}: {got} ({r['bytes'] / 1e6:.1f} MB in "
            f"{r['seconds']:.2f} s); configured {state['rate']} = "
            f"{8 * state['rate_bytes_per_s'] / 1e6:g} Mbit/s: {ratio}"
        )
    return "\n".join(out)


def _helper_main(argv: list[str]) -> int:
    """`python -m ttabench.launch.net.measure _recv|_send ...`: the measurement's two ends."""
    if argv[:1] == ["_recv"]:
        return _recv_main(argv[1], int(argv[2]), float(argv[3]))
    if argv[:1] == ["_send"]:
        return _send_main(argv[1], int(argv[2]), int(argv[3]), float(argv[4]))
    print(
        "usage: python -m ttabench.launch.net.measure _recv ADDR PORT TIMEOUT | _send ADDR PORT BYTES SECONDS",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
