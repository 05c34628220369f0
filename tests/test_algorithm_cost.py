"""Each operation of the reference algorithms has its own alpha-beta cost (launch/net/link.py,
cost.py), and the emulator charges it (exact numbers: latency 1 ms, bandwidth 1 MB/s)."""

from __future__ import annotations

import pytest

from ttabench.divisions import algorithms as alg
from ttabench.launch.net import cost
from ttabench.launch.net.link import PROFILES, Link, LinkEmulator

LINK = Link("t", bandwidth=1e6, latency=1e-3)


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.mark.parametrize(
    "op, nbytes, world, expected",
    [
        ("all_reduce", 1000, 4, 0.0075),  # 6 x 1 ms + 2 x 3/4 x 1 ms
        ("all_reduce", 1000, 2, 0.003),  # 2 x 1 ms + 1 ms
        ("all_gather", 1000, 4, 0.006),  # 3 x (1 ms + 1 ms)
        ("all_gather", 1000, 2, 0.002),
        ("send", 1000, 4, 0.002),  # 1 ms + 1 ms, whatever the number of workers
        ("send", 1000, 1, 0.0),  # one worker sends nothing
    ],
)
def test_op_time(op, nbytes, world, expected):
    assert cost.op_time(op, nbytes, world, LINK) == pytest.approx(expected, abs=1e-15)


def test_op_time_of_an_unemulated_link_is_zero_and_unknown_ops_are_refused():
    assert cost.op_time("all_gather", 10**9, 8, PROFILES["loopback"]) == 0.0
    with pytest.raises(ValueError):
        cost.op_time("broadcast", 10, 2, LINK)


SHAPES = [(16, 3, 3, 3), (16,), (10, 64)]  # S = 4352 bytes (tests/test_algorithms.py)


def test_powersgd_pays_three_latencies_where_allreduce_pays_one():
    params = {"powersgd_start_step": 2}
    compressed = alg.step_messages("powersgd", params, SHAPES, 5, 2)  # 64, 208, 728 bytes
    plain = alg.step_messages("powersgd", params, SHAPES, 0, 2)  # 4352 bytes
    # 3 x 2 ms latency + 1000 bytes / 1 MB/s
    assert cost.algorithm_comm_time(compressed, 2, LINK) == pytest.approx(0.007)
    # 2 ms latency + 4352 bytes / 1 MB/s
    assert cost.algorithm_comm_time(plain, 2, LINK) == pytest.approx(0.006352)


def test_decentralized_and_topk_steps():
    # two sends of S: 2 x (1 ms + 4.352 ms), the same at 3 and at 64 workers
    for world in (3, 64):
        messages = alg.step_messages("decentralized", {}, SHAPES, 0, world)
        assert cost.algorithm_comm_time(messages, world, LINK) == pytest.approx(0.010704)
    # top-k 1 %: 13 values + 13 indices = 52 + 52 bytes, two all_gathers over 4 workers:
    # 2 x 3 x 1 ms + 3 x 104 bytes / 1 MB/s
    messages = alg.step_messages("topk", {}, SHAPES, 0, 4)
    assert cost.algorithm_comm_time(messages, 4, LINK) == pytest.approx(0.006312)


def test_emulator_charges_each_operation_its_own_cost():
    clock = FakeClock(10.0)
    emu = LinkEmulator(LINK, world=4, clock=clock, sleep=clock.sleep)
    emu.complete(10.0, 1000, "send")
    assert clock.t == pytest.approx(10.002)
    emu.complete(10.0, 1000, "send")  # the second neighbour's message waits for the link
    assert clock.t == pytest.approx(10.004)
    emu.complete(clock.t, 1000, "all_gather")
    assert clock.t == pytest.approx(10.010)
    emu.complete(clock.t, 1000)  # an all-reduce by default
    assert clock.t == pytest.approx(10.0175)
