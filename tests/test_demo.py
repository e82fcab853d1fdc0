"""``python -m skmeta`` (make demo): its table comes from adaptation_curve."""

import numpy as np
from sklearn.linear_model import LogisticRegression

from skmeta._demo import make_demo_tasks, run_demo
from skmeta.model_selection import adaptation_curve


def test_demo_scores_the_new_tasks_with_adaptation_curve():
    lines = []
    results = run_demo(shots=(1, 3), n_train_tasks=20, n_test_tasks=6,
                       random_state=0, print_fn=lines.append)
    methods = ["k-NN per task", "logistic per task", "logistic pooled",
               "MetaClassifier (adapt)"]
    assert [(r["shots"], r["method"]) for r in results] == [
        (k, m) for k in (1, 3) for m in methods]
    assert lines[2].split() == ["shots/class", "method", "accuracy", "fit", "(s)",
                                "score", "(s)"]
    assert len(lines) == 4 + len(results)
    for line, r in zip(lines[4:], results):
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
