"""The held-out evaluation's statistics and its eval-set reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.evaluation import EvalReport, Interval, bootstrap, graded_report, load_eval_tasks, paired_gain


def report(per_task: dict[str, float]) -> EvalReport:
    return EvalReport(
        version=0, answers=len(per_task), invalid=0, reward=bootstrap(list(per_task.values())),
        per_task=per_task, by_task_type={},
    )  # fmt: skip


def test_bootstrap_brackets_the_mean_and_narrows_with_more_data():
    small = bootstrap([0.0, 2.0] * 4)
    large = bootstrap([0.0, 2.0] * 200)
    assert small.mean == large.mean == 1.0
    assert small.low < 1.0 < small.high
    assert (large.high - large.low) < (small.high - small.low) / 4
    assert bootstrap([1.5] * 10) == Interval(mean=1.5, low=1.5, high=1.5)
    with pytest.raises(ValueError, match="no values"):
        bootstrap([])


def test_paired_gain_compares_the_same_tasks():
    before = report({"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.25})
    after = report({"a": 1.0, "b": 2.0, "c": 1.5, "d": 1.25, "extra": 2.0})
    gain = paired_gain(before, after)
    assert gain == Interval(mean=1.0, low=1.0, high=1.0)  # +1 on every shared task; "extra" is not paired
    with pytest.raises(ValueError, match="share no task"):
        paired_gain(report({"a": 0.0}), report({"b": 0.0}))


def test_graded_report_gives_each_task_type_its_interval_over_its_tasks():
    graded = [("a", "qa", [2.0, 0.0]), ("b", "qa", [2.0, 2.0]), ("c", "poem", [0.0, None]), ("d", "poem", [None])]
    done = graded_report(graded, seed=0, version=3, run_id="r")
    assert done.per_task == {"a": 1.0, "b": 2.0, "c": 0.0}  # "d" had no gradable answer
    assert (done.answers, done.invalid) == (7, 2)
    assert done.reward.mean == 1.0 and done.reward.low < 1.0 < done.reward.high
    qa, poem = done.by_task_type["qa"], done.by_task_type["poem"]
    assert qa.mean == 1.5 and qa.low == 1.0 and qa.high == 2.0  # resampled over its two tasks
    assert poem == Interval(mean=0.0, low=0.0, high=0.0)
    with pytest.raises(ValueError, match="could be graded"):
        graded_report([("a", "qa", [None])], seed=0, version=0, run_id=None)


def test_bundled_heldout_set_loads_and_a_bad_line_is_named(tmp_path: Path):
    tasks = load_eval_tasks()
    assert len(tasks) == 32 and len({t.id for t in tasks}) == 32
    assert {t.task_type for t in tasks} == {"long_form_qa"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "prompt": "ok"}\n{"id": "y"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_eval_tasks(bad)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no eval tasks"):
        load_eval_tasks(tmp_path / "empty.jsonl")
