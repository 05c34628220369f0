"""launch.commands.report: the report's table, from report rows, without the CLI."""

from __future__ import annotations

import argparse
import os

from ttabench.divisions import experiments, scoring
from ttabench.launch.commands import report
from ttabench.launch.record.tables import to_markdown

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(**kw) -> dict:
    row = {
        "system": "s",
        "benchmark": "resnet20",
        "division": "closed",
        "dataset": "cifar10",
        "workers": 2,
        "network": "loopback",
        "setting": "",
        "runs": 3,
        "scored": 3,
        "statuses": {"success": 3},
        "target": 0.9,
        "tta_s": 12.5,
        "tta_stat": "olympic_mean",
        "tta_reached": 3,
        "threshold_spec": "0.8:0.9:0.05",
        "attmt_s": 10.0,
        "attmt_stat": "mean",
        "attmt_reached": 2,
        "budget_s": None,
        "aat": None,
        "aat_stat": None,
        "final_accuracy": 0.9123,
        "throughput_img_s": 1234.4,
        "notes": [],
    }
    row.update(kw)
    return row


def test_cells_say_the_statistic_and_how_many_runs_reached_it():
    md = to_markdown(report.report_table([_row()]))
    assert "90%: 12.50 s (3/3)" in md  # olympic mean: no mark
    assert "0.8:0.9:0.05: 10.00 s* (2/3)" in md  # plain mean: starred, and the note says why
    assert "* plain mean" in md
    assert "no budget" in md
    assert "91.23%" in md and "1,234" in md
    assert "3 (3 success)" in md
    assert "setting" not in md.splitlines()[0]  # shown only when two rows need it


def test_not_reached_and_subset_data_are_marked():
    md = to_markdown(report.report_table([_row(tta_s=None, tta_reached=0, dataset="cifar10-subset")]))
    assert "90%: not reached (0/3)" in md
    assert "cifar10-subset†" in md and "† the CIFAR-10 subset" in md


def test_the_table_of_the_committed_results_has_a_row_per_experiment():
    runs = scoring.load_inputs([os.path.join(REPO, "results")], every_run=True)
    rows = experiments.report_rows(runs)
    table = report.report_table(rows)
    assert len(table.rows) == len(rows) > 0
    assert set(report.REPORT_COLUMNS) <= set(rows[0])


def test_the_report_command_runs_from_its_parser(capsys):
    p = argparse.ArgumentParser()
    report.add_commands(p.add_subparsers())
    args = p.parse_args(["report", os.path.join(REPO, "results"), "--format", "csv"])
    assert args.func(args) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.split(",") == list(report.REPORT_COLUMNS)


def test_figures_of_many_long_labels_draw_without_a_warning(tmp_path):
    """A group with many configurations and long labels (the report of a real tree): the legend
    grows the figure instead of collapsing the axes, which matplotlib would warn about
    ("constrained_layout not applied") on the user's terminal."""
    import warnings

    from ttabench.divisions import metrics
    from ttabench.launch.commands import plot

    points = [{"train_time_s": 10.0 * i, "accuracy": 0.1 + 0.03 * i} for i in range(1, 12)]
    label = "amd-epyc-2c closed ×2 100mbit (batch_size=32, eval_every=1epoch, max_epochs=null, max_steps=30)"
    groups = [(f"{label} {i}", [scoring.Run(f"r{i}", points)]) for i in range(30)]
    ts = metrics.thresholds(*metrics.parse_thresholds("0.10:0.40:0.01"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot.figure(groups, ts, title="resnet20 on cifar10-subset")
        plot.save(fig, str(tmp_path / "many.png"), dpi=40)
    assert fig.get_size_inches()[1] > 2 * 5.2  # grew with its 30 wrapped legend entries
