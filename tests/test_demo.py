"""``python -m skmeta`` (make demo): its table comes from adaptation_curve."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skmeta.__main__ import main
from skmeta._demo import make_demo_tasks, run_demo
from skmeta.model_selection import adaptation_curve


def test_demo_scores_the_new_tasks_with_adaptation_curve():
    lines = []
    results = run_demo(shots=(1, 3), n_train_tasks=20, n_test_tasks=6,
                       random_state=0, print_fn=lines.append)
    methods = ["k-NN per task", "logistic per task", "logistic pooled",
               "MetaClassifier (adapt)", "k-NN on MetaEmbedding"]
    assert [(r["shots"], r["method"]) for r in results] == [
        (k, m) for k in (1, 3) for m in methods]
    # (lines 1 and 2: the meta-training of MetaClassifier and MetaEmbedding)
    assert lines[3].split() == ["shots/class", "method", "accuracy", "fit", "(s)",
                                "score", "(s)"]
    assert len(lines) == 5 + len(results)
    for line, r in zip(lines[5:], results):
        assert f"{r['accuracy']:.3f}" in line
        assert r["fit_seconds"] > 0 and r["score_seconds"] > 0
    # the pooled row: one logistic regression on the training tasks and the
    # shots of the new tasks, scored on each new task
    (X_tr, y_tr, t_tr), (X_te, y_te, t_te) = make_demo_tasks(20, 6, random_state=0)
    _, scores, test_tasks = adaptation_curve(
        LogisticRegression(max_iter=1000), np.vstack([X_tr, X_te]),
        np.r_[y_tr, y_te], groups=np.r_[t_tr, t_te], shots=[1, 3],
        strategy="pooled", held_out_tasks=np.unique(t_te), n_repeats=1,
        random_state=0)
    np.testing.assert_array_equal(test_tasks[0], np.unique(t_te))
    pooled = [r["accuracy"] for r in results if r["method"] == "logistic pooled"]
    np.testing.assert_allclose(pooled, scores[:, 0].mean(axis=1))


def test_the_demo_names_its_seed_and_sizes_new_tasks_for_the_shots_asked():
    lines = []
    results = run_demo(shots=(40,), n_train_tasks=4, n_test_tasks=2,
                       random_state=7, print_fn=lines.append)
    assert "random_state=7)" in lines[0]
    assert {r["shots"] for r in results} == {40}
    _, (_, y_te, t_te) = make_demo_tasks(4, 2, random_state=7, max_shots=40)
    # 40 shots of each class and the 40 query rows (tasks were sized for 20
    # shots whatever was asked: 40 failed)
    assert np.all(np.bincount(t_te - t_te.min()) == 2 * 40 + 40)


def test_each_row_of_the_demo_is_the_default_tables():
    # up to 20 shots the tasks drawn do not depend on the shots asked
    kwargs = dict(n_train_tasks=20, n_test_tasks=6, random_state=0,
                  print_fn=lambda line: None)
    both = run_demo(shots=(3, 20), **kwargs)
    alone = run_demo(shots=(3,), **kwargs)
    assert ([(r["method"], r["accuracy"]) for r in both if r["shots"] == 3]
            == [(r["method"], r["accuracy"]) for r in alone])


@pytest.mark.parametrize("argv, message", [
    (["--shots", "0"], "--shots: must be between 1 and 1000, got 0"),
    (["--shots", "5", "5"], "--shots: values must be distinct"),
    (["--train-tasks", "-3"], "--train-tasks: must be at least 1, got -3"),
    (["--test-tasks", "0"], "--test-tasks: must be at least 1, got 0"),
    (["--task-spread", "-1"], "--task-spread: must be between 0 and 1e+06"),
    (["--task-spread", "nan"], "--task-spread: must be between 0 and 1e+06"),
    (["--task-spread", "inf"], "--task-spread: must be between 0 and 1e+06"),
    (["--task-spread", "1e300"], "--task-spread: must be between 0 and 1e+06"),
    (["--task-spread", "x"], "--task-spread: not a number: 'x'"),
    (["--shots", "abc"], "--shots: not an integer: 'abc'"),
    (["--shots", "1001"], "--shots: must be between 1 and 1000, got 1001"),
    (["--seed", "-1"], "--seed: must be between 0 and 2**32 - 1, got -1"),
    (["--seed", str(2**32)], "--seed: must be between 0 and 2**32 - 1"),
    # drawn, they ended in numpy's MemoryError traceback
    (["--train-tasks", "1000000000000"], "draw 40,000,000,008,000 samples, "
     "more than 10,000,000: ask for fewer tasks"),
    (["--test-tasks", "20000", "--shots", "1000"], "draw 40,808,000 samples"),
])
def test_the_command_line_refuses_bad_values_with_a_usage_message(
        argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
