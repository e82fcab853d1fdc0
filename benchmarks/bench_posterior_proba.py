"""Class probabilities at the posterior mode or averaged over the posterior.

``MetaClassifier()`` (defaults) is fitted on 200 training tasks of 40 rows;
200 new tasks then enter by ``partial_fit`` with ``k`` rows each (k = 5,
10) and are scored on their 30 other rows; the same rows are also scored as
an unseen task (the prior's model). The same fitted model predicts with
``posterior_proba=False`` (the probabilities at each task's fitted
parameters) and ``True`` (averaged over its Laplace posterior, the probit
approximation). Scores: log-loss and the expected calibration error of the
most probable class (10 equal-width bins of confidence).

Two generators, 3 features:

* **gaussian**: tasks drawn from the model, ``theta_t ~ N(theta_0, I)``
  (``n_outputs`` logits for ``K`` classes), rows ``N(0, I)``;
* **skmeta**: ``make_meta_classification(n_informative=3, n_redundant=0)``,
  whose classes are Gaussian clusters moving from task to task (a
  logistic model is then misspecified).

Also the fit's time with and without keeping the posteriors.

Run: ``python benchmarks/bench_posterior_proba.py [--seeds 0 1 2]``
"""

import argparse
import time

import numpy as np
from scipy.special import expit, softmax
from sklearn.metrics import log_loss

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification

N_TRAIN, N_NEW, ROWS, N_FEATURES = 200, 200, 40, 3


def gaussian_tasks(n_classes, seed):
    rng = np.random.default_rng(seed)
    K = 1 if n_classes == 2 else n_classes
    theta0 = rng.normal(size=(K, N_FEATURES + 1))
    n_tasks = N_TRAIN + N_NEW
    X = rng.normal(size=(n_tasks * ROWS, N_FEATURES))
    tasks = np.repeat(np.arange(n_tasks), ROWS)
    theta = theta0 + rng.normal(size=(n_tasks, K, N_FEATURES + 1))
    Z = np.einsum("ij,ikj->ik", np.c_[X, np.ones(len(X))], theta[tasks])
    if K == 1:
        y = (rng.random(len(X)) < expit(Z[:, 0])).astype(int)
    else:
        y = (rng.random(len(X))[:, None]
             > np.cumsum(softmax(Z, axis=1), axis=1)).sum(axis=1)
    return X, y, tasks


def skmeta_tasks(n_classes, seed):
    return make_meta_classification(
        n_tasks=N_TRAIN + N_NEW, n_samples_per_task=ROWS,
        n_features=N_FEATURES, n_classes=n_classes, n_informative=3,
        n_redundant=0, random_state=seed)


def calibration_error(y, proba, classes, n_bins=10):
    confidence = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == y
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        rows = bins == b
        if rows.any():
            error += rows.mean() * abs(correct[rows].mean()
                                       - confidence[rows].mean())
    return error


def scores(meta, X, y, tasks, labels):
    out = {}
    for averaged in (False, True):
        meta.set_params(posterior_proba=averaged)
        proba = meta.predict_proba(X, tasks=tasks)
        out[averaged] = (log_loss(y, proba, labels=labels),
                         calibration_error(y, proba, meta.classes_))
    return out


def run(generator, n_classes, shots, seed):
    X, y, tasks = generator(n_classes, seed)
    train = tasks < N_TRAIN
    timings = {}
    for keep in (False, True):
        meta = MetaClassifier(posterior_proba=keep)
        start = time.perf_counter()
        meta.fit(X[train], y[train], tasks=tasks[train])
        timings[keep] = time.perf_counter() - start
    position = np.arange(len(y)) % ROWS
    support = ~train & (position < shots)
    query = ~train & (position >= ROWS - 30)
    unseen = scores(meta, X[query], y[query], tasks[query] + 10**6,
                    meta.classes_)
    meta.partial_fit(X[support], y[support], tasks=tasks[support])
    adapted = scores(meta, X[query], y[query], tasks[query], meta.classes_)
    return timings, unseen, adapted


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    MetaClassifier(posterior_proba=True).fit(
        *skmeta_tasks(3, 0)[:2], tasks=skmeta_tasks(3, 0)[2])  # compile
    print("| generator | classes | k | seed | fit s (mode / posterior) "
          "| unseen log-loss (mode / posterior) | unseen ECE "
          "| k-shot log-loss (mode / posterior) | k-shot ECE |")
    print("| --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |")
    for name, generator in (("gaussian", gaussian_tasks),
                            ("skmeta", skmeta_tasks)):
        for n_classes in (2, 3):
            for shots in (5, 10):
                for seed in args.seeds:
                    timings, unseen, adapted = run(generator, n_classes,
                                                   shots, seed)
                    print(f"| {name} | {n_classes} | {shots} | {seed} "
                          f"| {timings[False]:.2f} / {timings[True]:.2f} "
                          f"| {unseen[False][0]:.4f} / {unseen[True][0]:.4f} "
                          f"| {unseen[False][1]:.3f} / {unseen[True][1]:.3f} "
                          f"| {adapted[False][0]:.4f} / {adapted[True][0]:.4f} "
                          f"| {adapted[False][1]:.3f} / {adapted[True][1]:.3f} |",
                          flush=True)


if __name__ == "__main__":
    main()
