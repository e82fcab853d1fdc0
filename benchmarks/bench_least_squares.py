"""Unpenalized least squares per task: skmeta at ``gamma=0`` against the loop.

``MetaRegressor(LinearRegression(), gamma=0.0)`` fits each task's ordinary
least squares, as one ``LinearRegression().fit`` per task does. Two
figures, side by side with that loop, in one run:

* **accuracy** on ill-conditioned tasks: 200 tasks of 8-60 rows and six
  features, the third within 1e-8 of the span of the first two, the
  features' scales spread from 1e-4 to 1e4, in another order in each task
  (``--unit-scales``: all of unit scale). Reported: the smallest and the
  largest ratio over tasks of skmeta's squared error on a task's rows to
  the loop's (1 and 1 where skmeta fits as ``LinearRegression`` does), and
  the largest difference of their predictions there;
* **speed** on well-conditioned tasks: ``--n-tasks`` tasks of ``--rows``
  rows and ``--features`` features; CPU seconds of the fit (best of three,
  after a fit that compiles the kernels) and of the loop.

The fit runs the skmeta first on ``sys.path`` (set ``PYTHONPATH`` to
compare a checkout). Run::

    python benchmarks/bench_least_squares.py [--n-tasks 10000] [--rows 40]
        [--features 20] [--unit-scales]
"""

import argparse
import time

import numpy as np
from sklearn.linear_model import LinearRegression

import skmeta
from skmeta import MetaRegressor


def ill_conditioned_tasks(rng, n_tasks, unit_scales):
    """Each task its own rows, scales and coefficients (as a red-team probe
    drew them)."""
    X, y = [], []
    sizes = rng.choice([8, 15, 30, 60], size=n_tasks)
    for n in sizes:
        rows = rng.standard_normal((n, 6))
        rows[:, 2] = rows[:, 0] - 0.5 * rows[:, 1] + 1e-8 * rng.standard_normal(n)
        if not unit_scales:
            rows *= rng.permutation(np.logspace(-4, 4, 6))
        X.append(rows)
        y.append((rows / rows.std(axis=0)) @ rng.standard_normal(6) + 3.0
                 + rng.standard_normal(n))
    return np.vstack(X), np.concatenate(y), np.repeat(np.arange(n_tasks), sizes)


def accuracy(unit_scales):
    X, y, tasks = ill_conditioned_tasks(np.random.default_rng(0), 200, unit_scales)
    meta = MetaRegressor(LinearRegression(), gamma=0.0).fit(X, y, tasks=tasks)
    predicted = meta.predict(X, tasks=tasks)
    ratios, gaps = [], []
    for t in range(200):
        rows = tasks == t
        own = LinearRegression().fit(X[rows], y[rows]).predict(X[rows])
        ratios.append(np.sum((predicted[rows] - y[rows]) ** 2)
                      / np.sum((own - y[rows]) ** 2))
        gaps.append(np.abs(predicted[rows] - own).max())
    return min(ratios), max(ratios), max(gaps)


def speed(n_tasks, rows, features):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n_tasks * rows, features))
    y = X @ rng.standard_normal(features) + rng.standard_normal(len(X))
    tasks = np.repeat(np.arange(n_tasks), rows)
    MetaRegressor(LinearRegression(), gamma=0.0).fit(X[:4 * rows], y[:4 * rows],
                                                     tasks=tasks[:4 * rows])
    fit = []
    for _ in range(3):
        start = time.process_time()
        MetaRegressor(LinearRegression(), gamma=0.0).fit(X, y, tasks=tasks)
        fit.append(time.process_time() - start)
    start = time.process_time()
    for t in range(n_tasks):
        LinearRegression().fit(X[t * rows:(t + 1) * rows], y[t * rows:(t + 1) * rows])
    return min(fit), time.process_time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-tasks", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--unit-scales", action="store_true")
    args = parser.parse_args(argv)
    print(f"skmeta from {skmeta.__file__}")
    low, high, gap = accuracy(args.unit_scales)
    print(f"ill-conditioned tasks ({'unit' if args.unit_scales else '1e-4..1e4'} "
          f"scales): squared-error ratio skmeta / loop {low:.4g} to {high:.4g}, "
          f"largest prediction difference {gap:.3g}")
    fit, loop = speed(args.n_tasks, args.rows, args.features)
    print(f"{args.n_tasks} tasks x {args.rows} rows x {args.features} features: "
          f"skmeta {fit:.3f} CPU s, loop {loop:.3f} CPU s")


if __name__ == "__main__":
    main()
