"""launch.cluster.outcome: every node's view of how a multi-node run ended, merged under a lock."""

from __future__ import annotations

import json

from ttabench.launch.cluster.outcome import merged


def test_a_node_alone_sees_its_own_ranks(tmp_path):
    ranks = [{"rank": 0, "exitcode": 1, "signal": None, "message": "boom"}]
    with merged(str(tmp_path), 0, ranks, False) as (every, interrupted):
        assert every == ranks
        assert interrupted is False
    view = json.loads((tmp_path / "node-0.outcome.json").read_text())
    assert view == {"node_rank": 0, "ranks": ranks, "interrupted": False}


def test_the_last_node_merges_every_view_root_cause_first(tmp_path):
    peer = {"rank": 0, "exitcode": 1, "signal": None, "message": "connection closed by peer"}
    killed = {"rank": 1, "exitcode": -9, "signal": "SIGKILL", "message": ""}
    stopped = {"rank": 2, "exitcode": -15, "signal": "SIGTERM", "message": ""}
    with merged(str(tmp_path), 0, [peer], False):
        pass
    with merged(str(tmp_path), 2, [stopped], True):
        pass
    with merged(str(tmp_path), 1, [killed], False) as (every, interrupted):
        # SIGKILL first (the cause), then other signals, then ranks that exited on their own
        assert every == [killed, stopped, peer]
        assert interrupted is True  # node 2 was interrupted
    assert sorted(p.name for p in tmp_path.glob("node-*.outcome.json")) == [
        "node-0.outcome.json",
        "node-1.outcome.json",
        "node-2.outcome.json",
    ]


def test_a_rank_reported_twice_counts_once_with_the_later_view(tmp_path):
    first = {"rank": 3, "exitcode": 1, "signal": None, "message": "first"}
    again = {"rank": 3, "exitcode": 1, "signal": None, "message": "again"}
    with merged(str(tmp_path), 0, [first], False):
        pass
    with merged(str(tmp_path), 1, [again], False) as (every, _):
        assert every == [again]  # node files are read in order; node 1's view of rank 3 wins
