"""What the gloo backend runs for each collective, and its time on tbf-shaped host links (pure).

Read from torch 2.13's ProcessGroupGloo (every dense CPU all_reduce calls
``gloo::allreduce`` with the algorithm left UNSPECIFIED, all_gather
``gloo::allgather``, broadcast ``gloo::broadcast``, send/recv the pairs'
unbound buffers) and gloo's own sources (gloo/allreduce.cc, allgather.cc,
broadcast.cc). Gloo's older algorithm classes (ring-chunked, halving-doubling,
bcube) are not reached from torch: UNSPECIFIED means ring, for every size and
every number of ranks.

Order of sends and receives. A gloo tcp pair writes a payload only after
its peer announced the matching receive, and that announcement leaves behind
whatever the announcing rank is already writing (on the same pair, and in its
host link's tbf queue). A pattern that posts a send before the receive it
waits for can so make one direction wait for the other; the all-reduce ring
posts each receive first, and so do the two exchanges below (on purpose,
comm_counting.exchange); evidence in results/predict/exchange-order/.

- allreduce: ring. The buffer is cut into S = max(ceil(n / 1 MiB), 2p)
  segments, rounded up to a multiple of p; a reduce-scatter then an
  all-gather, each (p-1) S/p segment sends to rank-1, two in flight. Each
  rank sends 2(p-1)/p n bytes over 2(p-1) dependent steps.
- allgather (n bytes from each rank): ring, p-1 steps, each rank sends n per
  step to rank+1 (as two halves, two in flight): (p-1) n bytes. allgather.cc
  posts each half's send before its receive. With p = 2 both ways share one
  pair: the later rank, finding both receives announced, writes both halves,
  announcing its own receives only behind each; the other rank's halves
  follow one half later: n/2 + n at the rate instead of n (measured 1.5x
  from 1 MiB).
- broadcast: binomial tree from the root over ceil(log2 p) rounds; a rank
  forwards only once it has the whole buffer, and issues all its sends at once
  without waiting for them (they share its uplink). The root sends n to
  ceil(log2 p) peers, rank 1 (virtual) to one fewer, and so on.
- ring-exchange (irecv from rank-1, then isend to rank+1): n bytes each way.
  With the send posted first two ranks took 1.96-2.0x the one-way time and
  3-16 ranks at 20 Mbit/s 1.15-1.9x; receive first, 1.00-1.01x at 2 hosts and
  1.02-1.13x at 4 and 8 hosts, 20 Mbit/s.
- neighbour-exchange (decentralized SGD's: irecv from both ring neighbours,
  then isend to both): n bytes each way to each neighbour, all at once; every
  host link carries 2n each way whatever the placement (a host's ranks form
  one stretch of the ring). With the sends first one direction of every pair
  waited for the other: 1.84-2.08x the overlapped time at 3-8 hosts, 1 and 4
  MiB, 100 Mbit/s; receives first 1.12-1.26x.

Links. A lab host has one full-duplex link of rate B to a switch, tbf on its
uplink and on its downlink (net/topology.py). Ranks are placed k per host
in rank order, so a ring crosses each host's link once each way; ranks on
one host talk through the kernel's loopback, unshaped and free here. A
pattern takes

    T = h alpha + max(0, L / e - burst) / B

h dependent message steps (each alpha: the one-way delay plus the software's
per-message time), L the bytes the busiest host link carries, e the share of
payload in what tbf counts (TCP over a 1500-byte MTU: 1448 payload bytes of
each 1514-byte frame, and the ACKs of the reverse direction on the same link),
and `burst` the bucket: a link that idled long enough to fill its bucket
passes that many bytes at once (tbf's burst); only what is left waits for the
rate. For broadcast, L and h differ per branch of the tree: the time is that of
its slowest branch, each sender's uplink shared by its children (fluid,
weighted max-min fair: `_broadcast_time`): equally from the root, whose
transfers start as its children announce their receives; a forwarding rank's
first transfer gets the larger share (HEAD_START). Its links carry data one
way only, so their payload share has no ACKs in it (MSS / FRAME where a
ring's is e).

RACES. Two patterns end one of two ways, by which of two messages arrives
first when the ranks start within about one message's delay of each other
(as `netlab bench` starts them: together; after a barrier too, less often);
`pattern_range` gives both ends, `is_race` tells a range from one time.
- allgather at 2 ranks: if neither rank finds the other's announcements when
  it posts its sends, both ways run at once (n at the rate), otherwise one
  half later (pattern_time). Training's ranks leave the backward pass apart:
  the latter.
- broadcast: the root's transfers start as its children's announcements
  arrive, in either order, and the first gets the head start a forwarding
  rank's first transfer gets: from gloo's order (its first child heads the
  largest subtree) to the reverse; the range holds equal shares
  (pattern_time) too. Measured at 4-16 hosts: results/predict/.
"""

from __future__ import annotations

import math

from ttabench import UserError
from ttabench.divisions import algorithms

PATTERNS = ("allreduce", "allgather", "broadcast", "ring-exchange", "neighbour-exchange")
# the ring patterns by their names in algorithms.sent_bytes
RING_OPS = {"allreduce": "all_reduce", "allgather": "all_gather", "ring-exchange": "send"}
MSS, FRAME, ACK = 1448, 1514, 66  # TCP payload and the frame tbf counts (MTU 1500, timestamps)
# Payload share of a shaped link in a ring, which carries data one way and the
# delayed ACKs (one per two frames) of the data coming back the other way.
EFFICIENCY = MSS / (FRAME + ACK / 2)
# Every rank of a broadcast but the root posts its sends after receiving, back to back, to
# children that announced their receives long before: its first transfer starts first and gets
# the larger share of the link (TCP's ramp-up; cubic does not even flows out within one
# transfer). Each next one weighs 1/HEAD_START of the one before. The root posts its sends at
# the round's start, before the announcements arrive, which then start its transfers in no set
# order (measured: the reverse of gloo's, 14 of 20 rounds): equal shares. Measured
# (results/predict/broadcast-sharing/, 16 hosts, 1 MiB, 100 Mbit/s, 20 rounds): rank 1's three
# transfers were done 2.1, 2.7 and 3.0 transfer times after it got the data, not all after 3;
# these weights give 2.1, 2.7, 3.0.
HEAD_START = 1.5
# A broadcast's sending links carry its data only (a rank's ACKs for what it received leave
# before it sends): what a ring's share counts for ACKs goes to payload (MSS / FRAME with
# EFFICIENCY). Measured at 2 hosts: 1.020-1.022x faster than the ring's share gave.
ONE_WAY = (FRAME + ACK / 2) / FRAME


def check_pattern(pattern: str) -> None:
    if pattern not in PATTERNS:
        raise UserError(f"unknown pattern {pattern!r} (one of {', '.join(PATTERNS)})")


def hops(pattern: str, p: int) -> int:
    """Dependent message steps of one pattern over p ranks (ring schedules; the tree's depth)."""
    if p <= 1:
        return 0
    return {
        "allreduce": 2 * (p - 1),
        "allgather": p - 1,
        "broadcast": math.ceil(math.log2(p)),
        "ring-exchange": 1,
        "neighbour-exchange": 1,
    }[pattern]


def link_bytes(pattern: str, nbytes: float, hosts: int, per_host: int = 1) -> float:
    """Bytes the busiest host link carries: in a ring what one rank sends (the ring schedules'
    `algorithms.sent_bytes`), for broadcast what its root sends."""
    p = hosts * per_host
    if hosts <= 1:
        return 0.0
    if pattern == "broadcast":
        return len(_children(0, p)) * nbytes
    if pattern == "neighbour-exchange":  # to both neighbours: a host's two crossing ranks, or its one rank
        return 2.0 * nbytes
    return algorithms.sent_bytes(RING_OPS[pattern], nbytes, p)


def pattern_time(
    pattern: str,
    nbytes: float,
    hosts: int,
    per_host: int,
    rate: float,
    latency: float,
    burst: float = 0.0,
    efficiency: float = 1.0,
) -> float:
    """Modelled time of one pattern on a lab of `hosts` x `per_host` ranks (see the module doc)."""
    check_pattern(pattern)
    p = hosts * per_host
    if p <= 1:
        return 0.0
    if pattern == "broadcast":
        return _broadcast_time(nbytes, hosts, per_host, rate, latency, burst, min(1.0, efficiency * ONE_WAY))
    wire = link_bytes(pattern, nbytes, hosts, per_host) / efficiency
    if pattern == "allgather" and p == 2 and hosts == 2:  # the other rank starts one half later
        return 2 * latency + max(0.0, wire / 2 - burst) / rate + max(0.0, wire - burst) / rate
    return hops(pattern, p) * latency + max(0.0, wire - burst) / rate


def pattern_range(
    pattern: str,
    nbytes: float,
    hosts: int,
    per_host: int,
    rate: float,
    latency: float,
    burst: float = 0.0,
    efficiency: float = 1.0,
) -> tuple[float, float]:
    """(fastest, slowest) the pattern can take where it ends one of several ways by a race
    the model knows of (RACES); (t, t) with t = pattern_time elsewhere."""
    at = (nbytes, hosts, per_host, rate, latency, burst, efficiency)
    t = pattern_time(pattern, *at)
    if pattern == "allgather" and hosts == 2 and per_host == 1:  # both ways at once
        wire = link_bytes(pattern, nbytes, hosts, per_host) / efficiency
        return min(t, 2 * latency + max(0.0, wire - burst) / rate), t
    if pattern == "broadcast" and hosts * per_host > 1:
        one_way = min(1.0, efficiency * ONE_WAY)
        ways = [_broadcast_time(*at[:-1], one_way, root=order) for order in ("gloo", "reverse")]
        return min(t, *ways), max(t, *ways)
    return t, t


def is_race(low: float, high: float) -> bool:
    """Whether `pattern_range`'s ends differ enough to be two ways (not rounding)."""
    return high > low * 1.001


def bus_factor(pattern: str, p: int) -> float:
    """nccl-tests' busbw / algbw (doc/PERFORMANCE.md): what each link carried over the buffer."""
    if p <= 1:
        return 0.0
    return {"allreduce": 2 * (p - 1) / p, "allgather": (p - 1) / p}.get(pattern, 1.0)


def result_bytes(pattern: str, nbytes: int, p: int) -> int:
    """The buffer algbw divides (nccl-tests: all_gather's is the whole result, p x n)."""
    return nbytes * p if pattern == "allgather" else nbytes


# -- broadcast: gloo's binomial tree, sends issued at once, uplinks shared -------------


def _children(v: int, p: int) -> list[int]:
    """Virtual ranks v sends to, in gloo's order (broadcast.cc: bit i of the rank, lowest first)."""
    out = []
    dim = math.ceil(math.log2(p)) if p > 1 else 0
    mask = (1 << dim) - 1
    for i in range(dim):
        mask ^= 1 << i
        if v & mask:
            continue
        peer = v ^ (1 << i)
        if peer < p and not v & (1 << i):
            out.append(peer)
    return out


def _broadcast_time(nbytes, hosts, per_host, rate, latency, burst, efficiency, root="equal") -> float:
    """`pattern_time` of broadcast (p >= 2), when the last rank has gloo's binomial broadcast
    from rank 0: a fluid simulation.

    Flows between hosts share each uplink and downlink max-min fairly, in
    proportion to their weights (1, 1/HEAD_START, ... in gloo's order from
    every rank but the root; the root's `root`: "equal" shares, or weighted so
    in "gloo"'s order or its "reverse"); each link starts with a full bucket
    (`burst` bytes pass at once); a flow between two ranks of one host is
    free. A rank's sends start `latency` after it has received the whole
    buffer."""
    p = hosts * per_host
    wire = nbytes / efficiency
    credit = {("up", h): burst for h in range(hosts)} | {("down", h): burst for h in range(hosts)}
    flows: list[dict] = []  # active: src host, dst host, rank it delivers, bytes left
    pending = [(latency, 0)]  # (time its sends start, rank)
    now, done = 0.0, 0.0
    while pending or flows:
        pending.sort()
        t_next_start = pending[0][0] if pending else math.inf
        rates = _fair_rates(flows, rate)
        t_next_end = min((now + f["left"] / r for f, r in zip(flows, rates)), default=math.inf)
        t = min(t_next_start, t_next_end)
        for f, r in zip(flows, rates):
            f["left"] -= r * (t - now)
        now = t
        for f in [f for f in flows if f["left"] <= 1e-9 * wire]:
            flows.remove(f)
            pending.append((now + latency, f["rank"]))
            done = max(done, now)
        while pending and pending[0][0] <= now:
            _, v = pending.pop(0)
            posted = 0  # v's transfers to other hosts so far, in the order they start
            order = _children(v, p)
            if v == 0 and root == "reverse":
                order = order[::-1]
            for c in order:
                src, dst = v // per_host, c // per_host
                if src == dst:  # same host: loopback, unshaped
                    pending.append((now + latency, c))
                    done = max(done, now)
                    continue
                free = min(credit["up", src], credit["down", dst], wire)
                credit["up", src] -= free
                credit["down", dst] -= free
                weight = 1.0 if v == 0 and root == "equal" else HEAD_START**-posted
                posted += 1
                flows.append({"src": src, "dst": dst, "rank": c, "left": wire - free, "weight": weight})
            pending.sort()
    return done


def _fair_rates(flows: list[dict], rate: float) -> list[float]:
    """Weighted max-min fair rates of flows over host uplinks and downlinks of `rate` each
    (a flow's share of a link in proportion to its `weight`)."""
    left = {}
    for f in flows:
        left[("up", f["src"])] = rate
        left[("down", f["dst"])] = rate
    rates: list[float | None] = [None] * len(flows)
    while any(r is None for r in rates):
        users = {}
        for i, f in enumerate(flows):
            if rates[i] is None:
                for link in (("up", f["src"]), ("down", f["dst"])):
                    users.setdefault(link, []).append(i)
        link, share = min(
            ((k, left[k] / sum(flows[i]["weight"] for i in v)) for k, v in users.items()), key=lambda x: x[1]
        )
        for i in users[link]:
            rates[i] = share * flows[i]["weight"]
            for other in (("up", flows[i]["src"]), ("down", flows[i]["dst"])):
                left[other] -= rates[i]
    return [max(r, 1e-12) for r in rates]
