"""The reference algorithms' specification: parameters, ranges, bytes per step (exact numbers).

The toy model: a 16x3x3x3 convolution, a 16-vector, a 10x64 matrix: 432 + 16 + 640 = 1088
parameters, S = 4352 bytes.
"""

from __future__ import annotations

import pytest

from ttabench import UserError
from ttabench.divisions import algorithms as alg

SHAPES = [(16, 3, 3, 3), (16,), (10, 64)]
S = 4352


def test_model_bytes():
    assert alg.model_bytes(SHAPES) == S


@pytest.mark.parametrize(
    "algorithm, world, expected",
    [
        ("allreduce", 2, 4352),  # 2 x 1/2 x 4352
        ("allreduce", 4, 6528),  # 2 x 3/4 x 4352
        ("fp16", 2, 2176),  # 1/2 x 4352
        ("fp16", 4, 3264),  # 3/4 x 4352
        ("decentralized", 3, 8704),  # two sends of S
        ("decentralized", 4, 8704),
        ("topk", 2, 104),  # k = 5 + 1 + 7 = 13; 13 x (4 + 4) bytes; (N-1) = 1
        ("topk", 4, 312),  # 3 x 104
        ("allreduce", 1, 0),  # one worker sends nothing
    ],
)
def test_bytes_of_steady_algorithms(algorithm, world, expected):
    assert alg.bytes_per_step(algorithm, {}, SHAPES, 10, world) == expected


def test_powersgd_splits_like_torch():
    # 16x27 conv, r=2: (16+27) x 2 x 2 = 172 < 432, compressed: P 32, Q 54
    # 16-vector: 16x1, r=1: 17 x 2 = 34 >= 16, sent as is
    # 10x64, r=2: 74 x 2 x 2 = 296 < 640, compressed: P 20, Q 128
    assert alg.powersgd_split(SHAPES, 2) == (16, 52, 182)
    # rank 8: the conv (43 x 8 x 2 = 688 >= 432) and the matrix (74 x 8 x 2 = 1184) stay whole
    assert alg.powersgd_split(SHAPES, 8) == (1088, 0, 0)


def test_powersgd_bytes_before_and_after_its_start():
    params = {"powersgd_rank": 2, "powersgd_start_step": 2}
    assert alg.step_messages("powersgd", params, SHAPES, 1, 2) == [("all_reduce", S)]
    assert alg.step_messages("powersgd", params, SHAPES, 2, 2) == [
        ("all_reduce", 64),
        ("all_reduce", 208),
        ("all_reduce", 728),
    ]
    assert alg.step_bytes("powersgd", params, SHAPES, 2, 4) == 1500  # 3/2 x 1000
    # 4 steps at 2 workers: 4352, 4352, 1000, 1000 -> mean 2676
    assert alg.bytes_per_step("powersgd", params, SHAPES, 4, 2) == 2676


def test_local_sgd_averages_every_h_steps_after_warm_up():
    assert alg.bytes_per_step("local-sgd", {}, SHAPES, 8, 2) == 1088  # steps 3, 7: 2 x 4352 / 8
    params = {"local_steps": 3, "local_sgd_warmup_steps": 2}
    sent = [alg.step_bytes("local-sgd", params, SHAPES, i, 2) for i in range(8)]
    assert sent == [S, S, 0, 0, S, 0, 0, S]
    assert alg.bytes_per_step("local-sgd", params, SHAPES, 8, 2) == 2176


def test_topk_count_is_exact_for_round_products():
    assert 0.07 * 100 > 7  # floating point: a plain ceil would send 8
    assert alg.topk_count(100, 0.07) == 7
    assert alg.topk_count(101, 0.07) == 8  # 7.07 -> 8
    assert alg.topk_count(16, 0.01) == 1  # at least one entry
    assert alg.topk_count(3, 0.99) == 3


def test_sent_bytes_per_op():
    assert alg.sent_bytes("all_reduce", 100, 5) == 160
    assert alg.sent_bytes("all_gather", 100, 5) == 400
    assert alg.sent_bytes("send", 100, 5) == 100
    with pytest.raises(ValueError):
        alg.sent_bytes("broadcast", 100, 5)


def test_every_algorithm_has_a_pattern_and_a_formula():
    assert set(alg.PATTERNS) == set(alg.FORMULAS) == set(alg.ALGORITHMS)


def test_resolved_params_fill_defaults():
    assert alg.resolved_params("powersgd", {}) == {"powersgd_rank": 2, "powersgd_start_step": 10}
    assert alg.resolved_params("local-sgd", {"local_steps": 8}) == {
        "local_steps": 8,
        "local_sgd_warmup_steps": 0,
    }
    assert alg.resolved_params("allreduce", {}) == {}


@pytest.mark.parametrize(
    "algorithm, params, workers, backend, message",
    [
        ("allreduse", {}, 2, "torchrun", "unknown --algorithm 'allreduse' (did you mean allreduce?)"),
        ("powersgd", {"powersgd_rank": 0}, 2, "torchrun", "--powersgd-rank must be in [1, 64], got 0"),
        ("powersgd", {"powersgd_start_step": 1}, 2, "torchrun", "--powersgd-start-step must be in [2, "),
        ("local-sgd", {"local_steps": 0}, 2, "torchrun", "--local-steps must be in [1, 1024], got 0"),
        ("topk", {"topk_ratio": 1.0}, 2, "torchrun", "--topk-ratio must be in (0, 1), got 1.0"),
        ("topk", {"topk_ratio": 0.0}, 2, "torchrun", "--topk-ratio must be in (0, 1), got 0.0"),
        ("topk", {"topk_ratio": float("nan")}, 2, "torchrun", "--topk-ratio must be a number"),
        ("allreduce", {"topk_ratio": 0.1}, 2, "torchrun", "--topk-ratio is a parameter of --algorithm topk"),
        ("decentralized", {}, 2, "torchrun", "needs at least 3 workers (a ring with two distinct"),
        ("powersgd", {}, 2, "horovod", "--algorithm powersgd runs under torchrun"),
    ],
)
def test_bad_choices_are_one_clear_error(algorithm, params, workers, backend, message):
    with pytest.raises(UserError, match=None) as e:
        alg.check(algorithm, params, workers, backend)
    assert message in str(e.value)


def test_good_choices_pass():
    alg.check("decentralized", {}, 3, "torchrun")
    alg.check("fp16", {}, 2, "horovod")
    alg.check("topk", {"topk_ratio": 0.5}, 2, "torchrun")
    alg.check("local-sgd", {"local_steps": 1, "local_sgd_warmup_steps": 0}, 2, "torchrun")


def test_readme_table_has_every_algorithm_and_parameter():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in alg.ALGORITHMS:
        assert f"\n| `{name}`" in readme, name
    for p in alg.PARAMS:
        assert f"`{p.flag}`" in readme and f"{p.text(p.default)}, {p.range_text()}" in readme, p.name
