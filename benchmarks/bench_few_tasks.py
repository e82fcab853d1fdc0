"""A handful of small tasks: the defaults against the fixed prior, pooled, per task.

Problems of 2, 3, 5 or 8 classification tasks (binary or three classes) of
4 to 20 training rows each, 2 to 12 features, drawn from a hierarchical
logistic model (each task's coefficients: a shared vector plus a spread of
0, 0.7 or 3 times standard normal noise). Every task has as many held-out
rows as training rows, drawn from the same model; problems whose training
rows lack a class are skipped. For each problem, the held-out log-loss of

* ``MetaClassifier()`` (the defaults: learned strength and structure),
* ``MetaClassifier(gamma=1.0, prior="isotropic")`` (the former defaults),
* one ``LogisticRegression()`` on all tasks' rows (pooled),
* ``MetaClassifier(gamma=0.0)`` (one ``LogisticRegression`` per task),

summarized by the number of tasks. Run::

    python benchmarks/bench_few_tasks.py [--n-problems 300] [--seed 0]
"""

import argparse
import itertools
import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from skmeta import MetaClassifier

MODELS = ("defaults", "fixed prior", "pooled", "per task")


def problem(n_tasks, n_rows, n_features, n_classes, spread, rng):
    """Training and held-out rows of tasks of a hierarchical logistic model."""
    n_outputs = 1 if n_classes == 2 else n_classes
    shared = rng.normal(size=(n_outputs, n_features + 1))
    coef = shared + spread * rng.normal(size=(n_tasks, n_outputs, n_features + 1))
    tasks = np.repeat(np.arange(n_tasks), 2 * n_rows)
    X = rng.normal(size=(tasks.size, n_features))
    Z = np.einsum("nf,nof->no", X, coef[tasks, :, :-1]) + coef[tasks, :, -1]
    if n_classes == 2:
        y = (Z[:, 0] + rng.logistic(size=tasks.size) > 0).astype(np.int64)
    else:
        y = np.argmax(Z + rng.gumbel(size=Z.shape), axis=1).astype(np.int64)
    train = np.tile(np.arange(2 * n_rows) < n_rows, n_tasks)
    return X, y, tasks, train


def held_out_losses(X, y, tasks, train):
    test = ~train
    labels = np.unique(y)
    with warnings.catch_warnings():
        # tiny tasks: fallbacks and unconverged per-task fits are expected
        warnings.simplefilter("ignore")
        fitted = {
            "defaults": MetaClassifier(),
            "fixed prior": MetaClassifier(gamma=1.0, prior="isotropic"),
            "per task": MetaClassifier(gamma=0.0),
        }
        for meta in fitted.values():
            meta.fit(X[train], y[train], tasks=tasks[train])
        pooled = LogisticRegression().fit(X[train], y[train])
    proba = {name: meta.predict_proba(X[test], tasks=tasks[test])
             for name, meta in fitted.items()}
    proba["pooled"] = pooled.predict_proba(X[test])
    return [log_loss(y[test], proba[name], labels=labels) for name in MODELS]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-problems", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    grid = list(itertools.product((2, 3, 5, 8), (4, 8, 12, 20), (2, 5, 12),
                                  (2, 3), (0.0, 0.7, 3.0)))
    order = rng.permutation(len(grid))
    rows = []
    start = time.perf_counter()
    for i in itertools.islice(itertools.cycle(order), args.n_problems):
        n_tasks, n_rows, n_features, n_classes, spread = grid[i]
        X, y, tasks, train = problem(n_tasks, n_rows, n_features, n_classes,
                                     spread, rng)
        if np.unique(y[train]).size < np.unique(y).size:
            continue
        rows.append((n_tasks, *held_out_losses(X, y, tasks, train)))
    rows = np.array(rows)
    print(f"{len(rows)} problems in {time.perf_counter() - start:.0f} s "
          f"(held-out log-loss, mean over problems)\n")
    print("| tasks | problems | " + " | ".join(MODELS)
          + " | defaults beat pooled | defaults beat fixed prior |")
    print("| ---: | ---: |" + " ---: |" * (len(MODELS) + 2))
    for n_tasks in (2, 3, 5, 8, None):
        sub = rows if n_tasks is None else rows[rows[:, 0] == n_tasks]
        means = " | ".join(f"{v:.3f}" for v in sub[:, 1:].mean(axis=0))
        print(f"| {'all' if n_tasks is None else n_tasks} | {len(sub)} | {means} | "
              f"{np.mean(sub[:, 1] < sub[:, 3]):.0%} | "
              f"{np.mean(sub[:, 1] < sub[:, 2]):.0%} |")


if __name__ == "__main__":
    main()
