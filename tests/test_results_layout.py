"""The results layout's one owner (RunPath) and the readers' error type (ReaderError),
on real folders and files."""

from __future__ import annotations

import os

import pytest

from ttabench import UserError
from ttabench.divisions.results import ReaderError, RunPath, new_run_dir, read_curve, read_json


def test_new_run_folders_never_collide_and_parse_back(tmp_path):
    made = [RunPath.new(str(tmp_path), "my host", "resnet20", "closed") for _ in range(20)]
    assert len({p.path for p in made}) == 20
    for p in made:
        assert os.path.isdir(p.path) and os.listdir(p.path) == []
        assert p.system == "my-host"  # a hostname made safe as one path component
        assert RunPath.parse(p.path) == p
        assert p.system_dir == os.path.join(str(tmp_path), "my-host")
    assert sorted(RunPath.find(str(tmp_path))) == []  # empty folders are not run folders yet
    open(os.path.join(made[0].path, "curve.csv"), "w").close()
    assert RunPath.find(str(tmp_path)) == [made[0].path]
    assert os.path.dirname(new_run_dir(str(tmp_path), "h", "b", "open")) == os.path.join(
        str(tmp_path), "h", "b", "open"
    )


def test_parse_keeps_relative_paths_and_marks_missing_parts():
    p = RunPath.parse(os.path.join("results", "sys", "resnet20", "closed", "r1") + os.sep)
    assert (p.root, p.system, p.benchmark, p.division, p.run_id) == (
        "results",
        "sys",
        "resnet20",
        "closed",
        "r1",
    )
    assert p.system_dir == os.path.join("results", "sys")
    top = RunPath.parse(os.sep + "r1")
    assert (top.system, top.benchmark, top.division, top.run_id) == ("?", "?", "", "r1")


def test_new_run_folder_under_a_file_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot create results folder"):
        RunPath.new(str(tmp_path / "file"), "s", "b", "closed")


def test_reader_error_carries_path_and_line(tmp_path):
    bad = tmp_path / "curve.csv"
    bad.write_text("epoch,step,samples,train_time_s,total_time_s,accuracy,loss\n1,1,1,1.0,1.0,1.5,1.0\n")
    with pytest.raises(ReaderError) as e:
        read_curve(str(bad))
    assert (e.value.path, e.value.line) == (str(bad), 2)
    assert e.value.problem == "accuracy must be a fraction in 0..1, got 1.5"
    assert str(e.value) == f"{bad}:2: {e.value.problem}" and e.value.where == f"{bad}:2"
    (tmp_path / "s.json").write_text("[1]")
    with pytest.raises(ReaderError) as e:
        read_json(str(tmp_path / "s.json"))
    assert (e.value.line, e.value.problem, str(e.value)) == (
        None,
        "expected a JSON object",
        f"{tmp_path / 's.json'}: expected a JSON object",
    )
    with pytest.raises(ReaderError) as e:
        read_json(str(tmp_path / "none.json"))
    assert str(e.value) == f"file not found: {tmp_path / 'none.json'}" and e.value.problem == "not found"
