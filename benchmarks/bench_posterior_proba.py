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

Also the fit's time with and without keeping the posteriors, and, for the
gaussian binary tasks, what the same predictions score under the *true*
prior ``N(theta_0, I)``: at the posterior mode, averaged over the Laplace
posterior (probit), and averaged over the exact posterior (importance
sampling from the prior, 40,000 draws) -- which tells the approximation's
share of a difference from the learned prior's -- and the spread that
``prior="diagonal"`` learns from 200 such tasks of 40 and of 200 rows
(with ``LogisticRegression()`` and, without its penalty, ``C=np.inf``).
Last, what keeping the posteriors costs a larger fit: 10,000 binary tasks
of 20 rows and 20 features with ``gamma=1.0, prior="isotropic"``, and 1,000
at the defaults (best of three fits each).

Run: ``python benchmarks/bench_posterior_proba.py [--seeds 0 1 2]``
"""

import argparse
import time

import numpy as np
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification

N_TRAIN, N_NEW, ROWS, N_FEATURES = 200, 200, 40, 3


def true_prior_mean(seed, n_outputs):
    """``gaussian_tasks``'s ``theta_0``: its first draw."""
    return np.random.default_rng(seed).normal(size=(n_outputs, N_FEATURES + 1))


def gaussian_tasks(n_classes, seed, rows=ROWS):
    rng = np.random.default_rng(seed)
    K = 1 if n_classes == 2 else n_classes
    theta0 = rng.normal(size=(K, N_FEATURES + 1))
    n_tasks = N_TRAIN + N_NEW
    X = rng.normal(size=(n_tasks * rows, N_FEATURES))
    tasks = np.repeat(np.arange(n_tasks), rows)
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


def under_the_true_prior(X, y, support, query, tasks, theta0, seed):
    """Binary tasks: query probabilities at the posterior mode, Laplace-
    averaged (probit) and exactly averaged, under ``N(theta0, I)``."""
    rng = np.random.default_rng(seed + 1000)
    Z = np.c_[X, np.ones(len(X))]
    draws = theta0 + rng.normal(size=(40000, len(theta0)))
    mode, laplace, exact = [], [], []
    for task in np.unique(tasks[query]):
        s, q = support & (tasks == task), query & (tasks == task)
        theta = theta0.copy()
        for _ in range(100):  # Newton on log-loss + |theta - theta0|^2 / 2
            p = expit(Z[s] @ theta)
            A = (Z[s].T * (p * (1 - p))) @ Z[s] + np.eye(len(theta))
            step = np.linalg.solve(A, Z[s].T @ (p - y[s]) + theta - theta0)
            theta -= step
            if np.abs(step).max() < 1e-12:
                break
        p = expit(Z[s] @ theta)
        A = (Z[s].T * (p * (1 - p))) @ Z[s] + np.eye(len(theta))
        mu = Z[q] @ theta
        v = np.einsum("ij,jk,ik->i", Z[q], np.linalg.inv(A), Z[q])
        mode.append(expit(mu))
        laplace.append(expit(mu / np.sqrt(1 + np.pi * v / 8)))
        logits = Z[s] @ draws.T
        log_w = (y[s][:, None] * logits - np.logaddexp(0, logits)).sum(axis=0)
        w = np.exp(log_w - log_w.max())
        exact.append(expit(Z[q] @ draws.T) @ (w / w.sum()))
    y_query = np.concatenate([y[query & (tasks == t)]
                              for t in np.unique(tasks[query])])
    return {name: log_loss(y_query, np.concatenate(p), labels=[0, 1])
            for name, p in (("mode", mode), ("laplace", laplace),
                            ("exact", exact))}


def learned_spread(seed, rows, C):
    """The diagonal prior variance learned from 200 gaussian binary tasks."""
    X, y, tasks = gaussian_tasks(2, seed, rows)
    train = tasks < N_TRAIN
    meta = MetaClassifier(LogisticRegression(C=C), prior="diagonal",
                          posterior_proba=True)
    meta.fit(X[train], y[train], tasks=tasks[train])
    return np.diag(meta.prior_covariance_)


def fit_cost(n_tasks, settings, repeats=3):
    """Best-of fit times without and with ``posterior_proba``."""
    X, y, tasks = make_meta_classification(
        n_tasks=n_tasks, n_samples_per_task=20, n_features=20,
        n_informative=10, n_redundant=0, random_state=0)
    best = {}
    for keep in (False, True):
        meta = MetaClassifier(posterior_proba=keep, **settings)
        meta.fit(X, y, tasks=tasks)  # compiled, and the same work warm
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            meta.fit(X, y, tasks=tasks)
            times.append(time.perf_counter() - start)
        best[keep] = min(times)
    return best


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
    truth = None
    if generator is gaussian_tasks and n_classes == 2:
        truth = under_the_true_prior(X, y, support, query, tasks,
                                     true_prior_mean(seed, 1)[0], seed)
    spread = np.linalg.eigvalsh(meta.prior_covariance_)
    return timings, unseen, adapted, truth, spread


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
    truths = []
    for name, generator in (("gaussian", gaussian_tasks),
                            ("skmeta", skmeta_tasks)):
        for n_classes in (2, 3):
            for shots in (5, 10):
                for seed in args.seeds:
                    timings, unseen, adapted, truth, spread = run(
                        generator, n_classes, shots, seed)
                    if truth is not None:
                        truths.append((seed, shots, truth, spread))
                    print(f"| {name} | {n_classes} | {shots} | {seed} "
                          f"| {timings[False]:.2f} / {timings[True]:.2f} "
                          f"| {unseen[False][0]:.4f} / {unseen[True][0]:.4f} "
                          f"| {unseen[False][1]:.3f} / {unseen[True][1]:.3f} "
                          f"| {adapted[False][0]:.4f} / {adapted[True][0]:.4f} "
                          f"| {adapted[False][1]:.3f} / {adapted[True][1]:.3f} |",
                          flush=True)
    print("\nGaussian binary tasks, k-shot log-loss under the true prior "
          "N(theta_0, I), beside the learned prior's spread:\n")
    print("| k | seed | mode | Laplace (probit) | exact "
          "| learned prior covariance, eigenvalues (true: 1) |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for seed, shots, truth, spread in truths:
        print(f"| {shots} | {seed} | {truth['mode']:.4f} "
              f"| {truth['laplace']:.4f} | {truth['exact']:.4f} "
              f"| {' '.join(f'{e:.2f}' for e in spread)} |")
    print("\nThe diagonal prior's variances learned from 200 gaussian binary "
          "tasks (true: 1):\n")
    print("| rows per task | C | seed | coefficients, then intercept |")
    print("| ---: | ---: | ---: | --- |")
    for rows in (ROWS, 200):
        for C in (1.0, np.inf):
            for seed in args.seeds:
                spread = learned_spread(seed, rows, C)
                print(f"| {rows} | {C} | {seed} "
                      f"| {' '.join(f'{e:.2f}' for e in spread)} |")
    print("\nFit time, best of three, without and with posterior_proba:\n")
    print("| tasks | settings | posterior_proba=False s | True s |")
    print("| ---: | --- | ---: | ---: |")
    for n_tasks, settings in ((10000, dict(gamma=1.0, prior="isotropic")),
                              (1000, {})):
        best = fit_cost(n_tasks, settings)
        print(f"| {n_tasks} | {settings or 'defaults'} | {best[False]:.3f} "
              f"| {best[True]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
