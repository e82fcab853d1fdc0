"""Base estimators that average their loss: the defaults against pooled and per task.

``PoissonRegressor``, ``ElasticNet`` and ``Lasso`` average their loss over
the rows they are fitted on and weigh their penalty once over all of them
(``Ridge`` and ``LogisticRegression`` sum theirs: see the other
benchmarks). Tasks are drawn from a hierarchical model: each task's
coefficients are a shared vector (two informative features of five) plus
a spread of 0.15 (Poisson: log rate; Gaussian: 0.3 with unit noise).
Each problem has 5, 20 or 100 training tasks of 15 rows (and 20 held-out
rows each), and 50 new tasks, each adapted from its first ``k`` = 5 or 10
rows and scored on 20 others. Compared, on the same rows:

* ``MetaRegressor(base)`` at its defaults: the training tasks' own models,
  and ``adapt_tasks`` for the new ones;
* the base estimator fitted once on all training rows (pooled), which a
  new task uses unchanged;
* the base estimator fitted on each task's own rows (per task).

With ``--unequal-sizes`` each training task has its own number of rows,
drawn from 1 to 30 (the same 20 held-out rows each): there each task's
moments enter empirical Bayes in the units of its own prior (see the user
guide, "Tasks of different sizes under averaged losses").

Scores are the mean Poisson deviance or squared error on the held-out rows
(smaller is better), summed over the problems; a problem counts as won
where the defaults' score is below the other's. Run::

    python benchmarks/bench_averaged_losses.py [--seeds 3] [--unequal-sizes]
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import ElasticNet, Lasso, PoissonRegressor
from sklearn.metrics import mean_poisson_deviance, mean_squared_error

from skmeta import MetaRegressor

BASES = {
    "PoissonRegressor()": PoissonRegressor(),
    "ElasticNet(alpha=0.1)": ElasticNet(alpha=0.1),
    "Lasso(alpha=0.05)": Lasso(alpha=0.05),
}
N_TRAIN, N_HELD_OUT, N_NEW, N_QUERY = 15, 20, 50, 20
# training rows per task with --unequal-sizes
MIN_TRAIN, MAX_TRAIN = 1, 30
SHOTS = (5, 10)
MODELS = ("defaults", "pooled", "per task")


def draw(n_tasks, n_rows, poisson, rng):
    """Rows of tasks of the hierarchical model, grouped by task."""
    shared = np.array([0.5, 0.3, 0.0, 0.0, 0.0])
    spread = 0.15 if poisson else 0.3
    coef = shared + spread * rng.normal(size=(n_tasks, 5)) * (shared != 0)
    if not poisson:
        coef = 2.0 * coef
    tasks = np.repeat(np.arange(n_tasks), n_rows)
    X = rng.normal(size=(tasks.size, 5))
    eta = np.einsum("nf,nf->n", X, coef[tasks])
    if poisson:
        y = rng.poisson(np.exp(eta + 0.5)).astype(float)
    else:
        y = eta + rng.normal(size=tasks.size)
    return X, y, tasks


def per_task(base, X, y, tasks, X_test, tasks_test):
    """Predictions of one base estimator per task, fitted on its own rows."""
    pred = np.empty(len(X_test))
    for task in np.unique(tasks_test):
        rows = tasks == task
        pred[tasks_test == task] = clone(base).fit(X[rows], y[rows]).predict(
            X_test[tasks_test == task])
    return pred


def poisson_score(y, pred):
    """Mean Poisson deviance, a rate that underflowed to 0 counted as the
    smallest positive one (a fit on one row of count 0 predicts 0, which
    the deviance refuses)."""
    return mean_poisson_deviance(y, np.maximum(pred, np.finfo(float).tiny))


def run_problem(base, n_tasks, seed, unequal_sizes=False):
    """Scores of every model: the training tasks' held-out rows, then the
    new tasks' query rows at each number of shots."""
    poisson = isinstance(base, PoissonRegressor)
    score = poisson_score if poisson else mean_squared_error
    rng = np.random.default_rng(seed)
    most = MAX_TRAIN if unequal_sizes else N_TRAIN
    X, y, tasks = draw(n_tasks, most + N_HELD_OUT, poisson, rng)
    sizes = (rng.integers(MIN_TRAIN, MAX_TRAIN + 1, n_tasks) if unequal_sizes
             else np.full(n_tasks, N_TRAIN))
    position = np.tile(np.arange(most + N_HELD_OUT), n_tasks)
    train = position < np.repeat(sizes, most + N_HELD_OUT)
    test = position >= most
    X_new, y_new, tasks_new = draw(N_NEW, max(SHOTS) + N_QUERY, poisson, rng)
    position = np.tile(np.arange(max(SHOTS) + N_QUERY), N_NEW)
    query = position >= max(SHOTS)

    start = time.perf_counter()
    meta = MetaRegressor(base).fit(X[train], y[train], tasks=tasks[train])
    fit_time = time.perf_counter() - start
    pooled = clone(base).fit(X[train], y[train])
    scores = {("training tasks", "defaults"): score(
        y[test], meta.predict(X[test], tasks=tasks[test])),
        ("training tasks", "pooled"): score(y[test], pooled.predict(X[test])),
        ("training tasks", "per task"): score(y[test], per_task(
            base, X[train], y[train], tasks[train], X[test], tasks[test]))}
    for k in SHOTS:
        support = position < k
        adapted = meta.adapt_tasks(X_new[support], y_new[support],
                                   tasks=tasks_new[support])
        pred = np.empty(query.sum())
        for task, model in adapted.items():
            rows = tasks_new[query] == task
            pred[rows] = model.predict(X_new[query][rows])
        where = f"new tasks, {k} shots"
        scores[(where, "defaults")] = score(y_new[query], pred)
        scores[(where, "pooled")] = score(y_new[query],
                                          pooled.predict(X_new[query]))
        scores[(where, "per task")] = score(y_new[query], per_task(
            base, X_new[support], y_new[support], tasks_new[support],
            X_new[query], tasks_new[query]))
    return scores, fit_time, meta.prior_kind_


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--unequal-sizes", action="store_true",
                        help=f"training tasks of {MIN_TRAIN} to {MAX_TRAIN} "
                        "rows each, instead of 15")
    args = parser.parse_args()
    print("| base | where | problems | defaults | pooled | per task "
          "| defaults beat pooled | defaults beat per task | defaults fit s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, base in BASES.items():
        rows, fit_time, kinds = {}, 0.0, []
        for n_tasks in (5, 20, 100):
            for seed in range(args.seeds):
                with warnings.catch_warnings():
                    # the per-task fits of five rows may stop unconverged
                    warnings.simplefilter("ignore")
                    scores, seconds, kind = run_problem(
                        base, n_tasks, seed, args.unequal_sizes)
                fit_time += seconds
                kinds.append(kind)
                for (where, model), value in scores.items():
                    rows.setdefault(where, {}).setdefault(model, []).append(
                        value)
        for where, by_model in rows.items():
            values = {m: np.array(by_model[m]) for m in MODELS}
            n = len(values["defaults"])
            beat = [int(np.sum(values["defaults"] < values[m]))
                    for m in ("pooled", "per task")]
            print(f"| {name} | {where} | {n} | "
                  + " | ".join(f"{values[m].sum():.4f}" for m in MODELS)
                  + f" | {beat[0]} of {n} | {beat[1]} of {n} | "
                  f"{fit_time:.1f} |")
        chosen = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
        print(f"|   | priors chosen: {chosen} | | | | | | | |")


if __name__ == "__main__":
    main()
