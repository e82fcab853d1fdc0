"""Tasks of many classes and few rows: the defaults against pooled and per task.

``make_meta_classification`` tasks (60 tasks, 10 features of which 8
informative) with 10, 30 or 50 classes and 19 training rows per task --
fewer rows than classes, where a task's own model has 11 parameters per
class and little to learn them from -- and as many held-out rows per task,
drawn with it. For each problem, the held-out log-loss and accuracy of

* ``MetaClassifier()`` (the defaults), with the structure it chose,
* one ``LogisticRegression()`` on all tasks' rows (pooled),
* ``MetaClassifier(gamma=0.0)`` (one ``LogisticRegression`` per task),

and the defaults' fit time. Log-losses are taken over every class of the
problem (a class a task never saw gets the probability its model gives).
Run::

    python benchmarks/bench_many_classes.py [--classes 10 30 50] [--seeds 0 1]

The fit runs the skmeta that ``import skmeta`` finds: to compare two
checkouts, run the script from each with ``PYTHONPATH`` set to it.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification

N_TASKS = 60
N_ROWS = 19


def problem(n_classes, seed):
    """Training and held-out rows of tasks of ``n_classes`` classes."""
    X, y, tasks = make_meta_classification(
        n_tasks=N_TASKS, n_samples_per_task=2 * N_ROWS, n_features=10,
        n_informative=8, n_redundant=0, n_classes=n_classes,
        random_state=seed)
    train = np.arange(len(y)) % (2 * N_ROWS) < N_ROWS
    return X, y, tasks, train


def scores(proba, classes, labels, y):
    """Held-out log-loss (over ``labels``) and accuracy of ``proba``."""
    full = np.zeros((len(y), len(labels)))
    full[:, np.searchsorted(labels, classes)] = proba
    full = np.clip(full, 1e-15, None)
    full /= full.sum(axis=1, keepdims=True)
    return (log_loss(y, full, labels=labels),
            float(np.mean(classes[np.argmax(proba, axis=1)] == y)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 30, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    print("| classes | seed | fit s | defaults log-loss | accuracy | prior "
          "chosen | pooled log-loss | accuracy | per task log-loss | "
          "accuracy |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    totals = np.zeros(3)
    for n_classes in args.classes:
        for seed in args.seeds:
            X, y, tasks, train = problem(n_classes, seed)
            test = ~train
            labels = np.unique(y)
            with warnings.catch_warnings():
                # tasks of fewer rows than classes: fallbacks and unconverged
                # per-task fits are part of what is measured
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                meta = MetaClassifier().fit(X[train], y[train],
                                            tasks=tasks[train])
                seconds = time.perf_counter() - start
                per_task = MetaClassifier(gamma=0.0).fit(
                    X[train], y[train], tasks=tasks[train])
                pooled = LogisticRegression(max_iter=10_000).fit(
                    X[train], y[train])
            rows = [
                scores(meta.predict_proba(X[test], tasks=tasks[test]),
                       meta.classes_, labels, y[test]),
                scores(pooled.predict_proba(X[test]), pooled.classes_, labels,
                       y[test]),
                scores(per_task.predict_proba(X[test], tasks=tasks[test]),
                       per_task.classes_, labels, y[test]),
            ]
            totals += [loss for loss, _ in rows]
            (m_loss, m_acc), (p_loss, p_acc), (t_loss, t_acc) = rows
            print(f"| {n_classes} | {seed} | {seconds:.1f} | {m_loss:.4f} | "
                  f"{m_acc:.3f} | {meta.prior_kind_} | {p_loss:.4f} | "
                  f"{p_acc:.3f} | {t_loss:.4f} | {t_acc:.3f} |")
    print(f"\nsums of held-out log-losses: defaults {totals[0]:.4f}, pooled "
          f"{totals[1]:.4f}, per task {totals[2]:.4f}")


if __name__ == "__main__":
    main()
