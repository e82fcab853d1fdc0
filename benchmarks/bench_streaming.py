"""Streaming tasks: the prior learned online, against one fit on all tasks.

4,000 training tasks arrive in 20 chunks of 200. Compared, in one run and on
the same data:

* ``fit, all tasks`` -- one ``fit`` on the 4,000 (the reference: it needs
  every task's rows at once);
* ``partial_fit, online prior`` -- ``partial_fit`` per chunk with
  ``keep_task_params=False`` (skmeta's streaming: the prior moves by
  incremental empirical Bayes, the earlier tasks' statistics carried to
  the current prior; memory bounded by one chunk);
* ``... earlier tasks frozen`` -- the same with the carry switched off (the
  statistics of each task kept as its own E-step left them: plain
  single-pass incremental EM), an ablation of the design choice;
* ``fit, first chunk only`` -- what a user with bounded memory does without
  an online prior: fit on the first chunk, then fit new tasks from that
  prior (``adapt``; the old ``partial_fit``);
* ``fit, last chunk only`` -- or refit on the latest chunk alone.

Measured: the prior against the reference's (relative Frobenius error of
the prior mean ``meta_params_`` and precision ``prior_precision_``), the
predictions for 200 unseen tasks against the reference's (zero-shot: the
prior model; few-shot: adapted on 5 rows per task, predicting the others),
the few-shot score on those rows (R^2, or log-loss), the time of the whole
stream, the peak memory allocated while fitting (tracemalloc, in a second
pass so as not to slow the timed one; numba's own buffers are not counted)
and the size of the pickled fitted model.

Problems (fixed seeds): ``make_meta_regression(n_features=5,
n_informative=5, noise=0.5)``, 20 rows per task, ``prior="full"``; a
hierarchical logistic model (``theta_t ~ N(theta0, diag(0.8, 0.6, 0.5,
0.6, 0.5)^2)``, 4 standard normal features), 50 rows per task,
``prior="diagonal"``; and ``make_meta_classification(n_features=5,
n_informative=2, n_redundant=1)``, 30 rows per task, ``prior="diagonal"``,
where two features do not vary across tasks and the learned precision in
their directions grows without bound (empirical Bayes crawls there: the
precision is ill-determined, the models are not).

Run: ``python benchmarks/bench_streaming.py [--chunks 20] [--chunk-size 200]``
"""

import argparse
import pickle
import platform
import time
import tracemalloc
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss, r2_score
from threadpoolctl import threadpool_limits

import skmeta
from skmeta import MetaClassifier, MetaRegressor
from skmeta._methods import _statistics
from skmeta.datasets import make_meta_classification, make_meta_regression

N_NEW, SHOTS = 200, 5


def logistic_tasks(n_tasks, n_rows, seed=0):
    rng = np.random.default_rng(seed)
    coef = np.array([1.0, -0.5, 0.5, 0.0]) + rng.standard_normal(
        (n_tasks, 4)) * np.array([0.8, 0.6, 0.5, 0.6])
    intercept = 0.3 + 0.5 * rng.standard_normal(n_tasks)
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    X = rng.standard_normal((tasks.size, 4))
    z = np.einsum("ij,ij->i", X, coef[tasks]) + intercept[tasks]
    y = (rng.random(tasks.size) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    return X, y, tasks


def problems(n_tasks):
    X, y, t = make_meta_regression(n_tasks=n_tasks, n_samples_per_task=20,
                                   n_features=5, n_informative=5, noise=0.5,
                                   random_state=0)
    yield "regression, full prior", MetaRegressor, dict(prior="full"), X, y, t, 20
    X, y, t = logistic_tasks(n_tasks, 50)
    yield ("logistic, diagonal prior", MetaClassifier, dict(prior="diagonal"),
           X, y, t, 50)
    X, y, t = make_meta_classification(
        n_tasks=n_tasks, n_samples_per_task=30, n_features=5, n_informative=2,
        n_redundant=1, random_state=0)
    yield ("make_meta_classification, diagonal", MetaClassifier,
           dict(prior="diagonal"), X, y, t, 30)


class frozen_statistics:
    """Switch off the carry of earlier tasks' statistics (the ablation)."""

    def __enter__(self):
        self.saved = _statistics.TaskStatistics.swapped
        _statistics.TaskStatistics.swapped = lambda stats, prior: stats

    def __exit__(self, *exc):
        _statistics.TaskStatistics.swapped = self.saved


def run(strategy, Meta, params, X, y, tasks, n_chunks, size):
    chunk = [(tasks >= c * size) & (tasks < (c + 1) * size)
             for c in range(n_chunks)]
    if strategy == "all":
        train = tasks < n_chunks * size
        return Meta(**params).fit(X[train], y[train], tasks=tasks[train])
    if strategy == "first":
        return Meta(**params).fit(X[chunk[0]], y[chunk[0]], tasks=tasks[chunk[0]])
    if strategy == "last":
        return Meta(**params).fit(X[chunk[-1]], y[chunk[-1]],
                                  tasks=tasks[chunk[-1]])
    meta = Meta(keep_task_params=False, **params)
    for rows in chunk:
        meta.partial_fit(X[rows], y[rows], tasks=tasks[rows])
    return meta


def timed(strategy, *args):
    context = frozen_statistics() if strategy == "frozen" else _Null()
    with context:
        start = time.perf_counter()
        meta = run("online" if strategy == "frozen" else strategy, *args)
        elapsed = time.perf_counter() - start
        tracemalloc.start()
        run("online" if strategy == "frozen" else strategy, *args)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return meta, elapsed, peak


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=200)
    args = parser.parse_args()
    n_train = args.chunks * args.chunk_size
    print(f"skmeta {skmeta.__version__}, scikit-learn {sklearn.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}")
    print(f"{n_train} training tasks in {args.chunks} chunks of "
          f"{args.chunk_size}; {N_NEW} unseen tasks, {SHOTS} shots each\n")
    strategies = [("all", "fit, all tasks"),
                  ("online", "partial_fit, online prior"),
                  ("frozen", "... earlier tasks frozen"),
                  ("first", "fit, first chunk only"),
                  ("last", "fit, last chunk only")]
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, Meta, params, X, y, tasks, n_rows in problems(n_train + N_NEW):
        classifier = Meta is MetaClassifier
        new = tasks >= n_train
        support = new & (np.arange(tasks.size) % n_rows < SHOTS)
        query = new & ~support
        # a warm-up: numba kernels compiled or loaded before timing
        run("first", Meta, params, X, y, tasks, 1, 50)

        def predict(model, Z, **kwargs):
            return (model.predict_proba(Z, **kwargs) if classifier
                    else model.predict(Z, **kwargs))

        print(f"## {name}\n")
        print("| | prior mean err | precision err | zero-shot pred. err "
              f"| {SHOTS}-shot pred. err | {SHOTS}-shot "
              f"{'log-loss' if classifier else 'R^2'} | time s | peak MiB "
              "| pickle KiB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        reference = None
        for key, label in strategies:
            meta, elapsed, peak = timed(key, Meta, params, X, y, tasks,
                                        args.chunks, args.chunk_size)
            zero = predict(meta, X[new], tasks=tasks[new])
            models = meta.adapt_tasks(X[support], y[support],
                                      tasks=tasks[support])
            few = np.concatenate([predict(models[t], X[query & (tasks == t)])
                                  for t in sorted(models)])
            truth = np.concatenate([y[query & (tasks == t)]
                                    for t in sorted(models)])
            score = (log_loss(truth, few) if classifier
                     else r2_score(truth, few))
            if reference is None:
                reference = meta, zero, few
            ref, ref_zero, ref_few = reference
            print(f"| {label} | {relative(meta.meta_params_, ref.meta_params_):.2%}"
                  f" | {relative(meta.prior_precision_, ref.prior_precision_):.2%}"
                  f" | {relative(zero, ref_zero):.2%}"
                  f" | {relative(few, ref_few):.2%} | {score:.4f}"
                  f" | {elapsed:.2f} | {peak / 2**20:.1f}"
                  f" | {len(pickle.dumps(meta)) / 2**10:.0f} |")
        print()


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
