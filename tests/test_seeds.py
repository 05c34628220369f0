"""Several runs of one configuration: one run folder per seed, seeds distinct and logged."""

from __future__ import annotations

import glob
import json
import os

import pytest

from ttabench import UserError
from ttabench.launch.launcher import seed_list


def test_seed_list_rules():
    assert seed_list(None, None, None) is None
    assert seed_list(7, None, None) is None
    assert seed_list(5, 3, None) == [5, 6, 7]
    assert seed_list(None, None, "3, 1,2") == [3, 1, 2]
    fresh = seed_list(None, 20, None)
    assert len(fresh) == 20 and len(set(fresh)) == 20
    for bad in ("1,1", "a,b", ""):
        with pytest.raises(UserError):
            seed_list(None, None, bad)
    with pytest.raises(UserError):
        seed_list(None, 0, None)


@pytest.mark.slow
def test_two_seeds_two_folders(subset_runs):
    # the session's real-subset runs (tests/conftest.py), made by one `run --seeds 2 --seed 101`
    runs = sorted(glob.glob(os.path.join(str(subset_runs), "*", "resnet20", "closed", "*")))
    assert len(runs) == 2
    seeds = []
    for run in runs:
        summary = json.load(open(os.path.join(run, "summary.json")))
        assert summary["status"] == "success"
        seeds.append(summary["seed"])
        log = open(os.path.join(run, "mllog.txt")).read()
        assert f'"key": "seed", "value": {summary["seed"]}' in log
    assert sorted(seeds) == [101, 102]
