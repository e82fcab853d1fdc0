"""Nested tasks: the hierarchical prior against the flat one, and the loop.

10,000 stores in 100 regions (``make_nested_tasks``: 20 rows per store,
10 features, regions spread 2.0 about the population, stores 0.2 about their
region, noise 0.5). In one run, on the same tasks:

* ``MetaRegressor(Ridge(), tasks=np.c_[region, store])``: the hierarchical
  prior (population -> region -> store), learned by empirical Bayes;
* ``MetaRegressor(Ridge(), tasks=store)``: the flat prior at its defaults
  (``prior="auto"``) and with the nested fit's structure
  (``prior="diagonal"``);
* what a user does otherwise: one ``Ridge().fit`` per store, and one pooled
  ``Ridge().fit``.

Fit times are the best of ``--repeat`` after a warm-up fit (numba compiled
and cached). Accuracy: one new store per region (held out of the fit),
adapted from 4 rows, R^2 on its other 16 rows.

Run: ``python benchmarks/bench_nested.py [--n-jobs 1] [--repeat 3]``
"""

import argparse
import time

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from skmeta import MetaRegressor
from skmeta.datasets import make_nested_tasks


def best_time(fit, repeat):
    fit()  # warm-up: compiled kernels, caches
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - start)
    return min(times), model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-groups", type=int, default=100)
    parser.add_argument("--n-tasks-per-group", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    G, K = args.n_groups, args.n_tasks_per_group
    X, y, tasks = make_nested_tasks(
        n_groups=G, n_tasks_per_group=K + 1, n_samples_per_task=20,
        n_features=10, group_spread=2.0, task_spread=0.2, noise=0.5,
        random_state=0)
    new = tasks[:, 1] % (K + 1) == K
    Xf, yf, tf = X[~new], y[~new], tasks[~new]
    first = np.r_[True, tasks[1:, 1] != tasks[:-1, 1]]
    index = np.arange(len(y))
    position = index - np.maximum.accumulate(np.where(first, index, 0))
    support, query = new & (position < 4), new & (position >= 4)
    print(f"{G * K} stores in {G} regions, {len(yf)} rows; n_jobs={args.n_jobs}")

    rows = []

    def new_store_r2(adapted, key):
        pred = np.empty(query.sum())
        q = np.flatnonzero(query)
        for store in np.unique(tasks[q, 1]):
            mine = tasks[q, 1] == store
            pred[mine] = adapted[key(tasks[q][mine][0])].predict(X[q][mine])
        return r2_score(y[query], pred)

    seconds, nested = best_time(lambda: MetaRegressor(
        Ridge(), n_jobs=args.n_jobs).fit(Xf, yf, tasks=tf), args.repeat)
    adapted = nested.adapt_tasks(X[support], y[support], tasks=tasks[support])
    rows.append(("nested prior (`tasks=np.c_[region, store]`)", seconds,
                 nested.n_iter_, new_store_r2(adapted, lambda r: tuple(r))))
    for prior in ("auto", "diagonal"):
        seconds, flat = best_time(lambda p=prior: MetaRegressor(
            Ridge(), prior=p, n_jobs=args.n_jobs).fit(Xf, yf, tasks=tf[:, 1]),
            args.repeat)
        adapted = flat.adapt_tasks(X[support], y[support],
                                   tasks=tasks[support, 1])
        rows.append((f"flat prior, `prior={prior!r}` ({flat.prior_kind_})",
                     seconds, flat.n_iter_,
                     new_store_r2(adapted, lambda r: r[1])))

    def loop():
        starts = np.flatnonzero(np.r_[True, tf[1:, 1] != tf[:-1, 1]])
        ends = np.r_[starts[1:], len(yf)]
        return [Ridge().fit(Xf[a:b], yf[a:b]) for a, b in zip(starts, ends)]

    seconds, _ = best_time(loop, 1)
    s = np.flatnonzero(support)
    own = {store: Ridge().fit(X[s][tasks[s, 1] == store],
                              y[s][tasks[s, 1] == store])
           for store in np.unique(tasks[s, 1])}
    rows.append(("loop of `Ridge().fit` per store", seconds, "",
                 new_store_r2(own, lambda r: r[1])))
    seconds, pooled = best_time(lambda: Ridge().fit(Xf, yf), args.repeat)
    rows.append(("pooled `Ridge().fit`", seconds, "",
                 r2_score(y[query], pooled.predict(X[query]))))

    print("| | fit time | EM iterations | new store, 4 rows: R^2 |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds, n_iter, r2 in rows:
        print(f"| {name} | {seconds:.2f} s | {n_iter} | {r2:.3f} |")


if __name__ == "__main__":
    main()
