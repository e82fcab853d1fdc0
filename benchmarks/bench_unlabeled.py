"""Unlabeled rows of new tasks: what they add to 1 labeled row per class.

Two families of binary tasks, 5 features, fixed seeds:

* **clusters**: ``make_meta_classification(n_informative=2, n_redundant=1,
  class_sep=1.5, task_spread=1.0)``: each class of a task is a Gaussian
  cluster, and the clusters move from task to task, so the decision
  boundaries do too;
* **no clusters**: the labels of ``make_meta_regression(n_informative=2,
  noise=1)`` thresholded at 0: every task's features are N(0, I) whatever
  the labels, so unlabeled rows say nothing about them.

``MetaClassifier(LogisticRegression(C=1), unlabeled_weight="auto")`` is
meta-trained on 100 fully labeled tasks of 60 rows (the weight of unlabeled
rows is chosen then, on episodes of those tasks). Each of 50 new tasks then
gets one labeled row per class and 40 unlabeled rows; its model is adapted
from the 2 labeled rows alone (``adapt_tasks`` without the unlabeled rows)
and from all 42 (``adapt_tasks`` with ``y == -1`` on the 40), and both are
scored on 40 other rows of the task (accuracy, mean over the new tasks).

Run: ``python benchmarks/bench_unlabeled.py [--seeds 0 1 2 3 4] [--method proximal]``
"""

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification, make_meta_regression

N_TRAIN, N_NEW, TRAIN_ROWS = 100, 50, 60
N_UNLABELED, N_TEST = 40, 40


def clusters(sizes, seed):
    return make_meta_classification(
        n_tasks=len(sizes), n_samples_per_task=sizes, n_features=5,
        n_informative=2, n_redundant=1, class_sep=1.5, task_spread=1.0,
        random_state=seed)


def no_clusters(sizes, seed):
    X, target, tasks = make_meta_regression(
        n_tasks=len(sizes), n_samples_per_task=sizes, n_features=5,
        n_informative=2, noise=1.0, random_state=seed)
    return X, (target > 0).astype(int), tasks


def new_task_rows(y, tasks, new_tasks, rng):
    """Row indices of each new task: 1 labeled per class, unlabeled, test."""
    labeled, unlabeled, test = [], [], []
    for task in new_tasks:
        rows = rng.permutation(np.flatnonzero(tasks == task))
        shots = [rows[y[rows] == k][0] for k in np.unique(y)]
        rest = rows[~np.isin(rows, shots)]
        labeled += shots
        unlabeled += list(rest[:N_UNLABELED])
        test += list(rest[N_UNLABELED:N_UNLABELED + N_TEST])
    return np.array(labeled), np.array(unlabeled), np.array(test)


def mean_accuracy(models, X, y, tasks):
    return float(np.mean([models[t].score(X[tasks == t], y[tasks == t])
                          for t in models]))


def run(generator, seed, method):
    # new tasks get enough rows for their shots, unlabeled and test rows
    sizes = [TRAIN_ROWS] * N_TRAIN + [2 * (2 + N_UNLABELED + N_TEST)] * N_NEW
    X, y, tasks = generator(sizes, seed)
    train = tasks < N_TRAIN
    start = time.perf_counter()
    meta = MetaClassifier(LogisticRegression(C=1.0), method=method,
                          unlabeled_weight="auto", random_state=seed)
    meta.fit(X[train], y[train], tasks=tasks[train])
    fit_time = time.perf_counter() - start
    rng = np.random.RandomState(seed)
    labeled, unlabeled, test = new_task_rows(y, tasks, range(N_TRAIN, N_TRAIN + N_NEW),
                                             rng)
    support = np.concatenate([labeled, unlabeled])
    y_support = y[support].copy()
    y_support[labeled.shape[0]:] = -1
    start = time.perf_counter()
    with_unlabeled = meta.adapt_tasks(X[support], y_support, tasks=tasks[support])
    adapt_time = time.perf_counter() - start
    labeled_only = meta.adapt_tasks(X[labeled], y[labeled], tasks=tasks[labeled])
    return (meta.unlabeled_weight_,
            mean_accuracy(labeled_only, X[test], y[test], tasks[test]),
            mean_accuracy(with_unlabeled, X[test], y[test], tasks[test]),
            fit_time, adapt_time)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--method", default="proximal")
    args = parser.parse_args()
    run(clusters, 0, args.method)  # compile the kernels before timing
    print(f"method={args.method!r}: accuracy of {N_NEW} new tasks from 1 labeled "
          f"row per class, without and with {N_UNLABELED} unlabeled rows")
    print("| data | seed | weight | 2 labeled | + 40 unlabeled | gain | fit s "
          "| adapt s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, generator in [("clusters", clusters), ("no clusters", no_clusters)]:
        gains = []
        for seed in args.seeds:
            weight, alone, both, fit_time, adapt_time = run(generator, seed,
                                                            args.method)
            gains.append(both - alone)
            print(f"| {name} | {seed} | {weight:g} | {alone:.4f} | {both:.4f} | "
                  f"{both - alone:+.4f} | {fit_time:.2f} | {adapt_time:.2f} |")
        print(f"| {name} | mean | | | | {np.mean(gains):+.4f} | | |")


if __name__ == "__main__":
    main()
