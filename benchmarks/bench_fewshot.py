"""Few-shot learning of new tasks: every skmeta method against the two baselines.

On one classification and one regression family of related tasks, each
method meta-trains once on the training tasks, then adapts to new tasks from
1, 5 or 20 shots (per class for classification, samples for regression) and
is scored on 20 held-out rows of every new task (accuracy, R^2; the mean over
the 100 new tasks). The baselines are what a user does without skmeta, with
the same base estimator:

* per-task: the base estimator fitted on the new task's shots alone;
* pooled: the base estimator fitted once on all training rows, used as is.

Data (fixed seed): ``make_meta_classification(n_informative=2, n_redundant=10,
task_spread=0.5)`` and ``make_meta_regression(n_informative=10, noise=10,
task_spread=0.5)``, 20 features, 300 training + 100 new tasks of 80 rows. The
tasks differ enough that one pooled model is off for each, and a few shots
are too few for 21 parameters: the regime meta-learning is for.

Method parameters: the defaults (``gamma="auto"``, and for ``"proximal"``
``prior="auto"``; ``inner_steps=5``, ``inner_lr="auto"``,
``meta_batch_size=32``, ``query_fraction=0.5``, ``max_iter=500``), except:

* base estimators ``LogisticRegression(C=1)`` and ``Ridge(alpha=1)``;
* regression, ``meta_lr=0.5`` for imaml / maml / metasgd: the coefficients
  are ~U(0, 100) and Adam moves theta0 by about ``meta_lr`` per iteration,
  so the default 0.01 cannot get there in 500 iterations.

Times: "train s" is meta-training (for pooled, its one fit); "adapt ms" is
adapting all 100 new tasks at 5 shots (one ``adapt(..., tasks=...)`` call;
for per-task, the loop of 100 fits). Numba kernels are compiled (or loaded
from the disk cache) by a warm-up fit before timing. BLAS is limited to one
thread: on small problems OpenBLAS threads only add overhead (on a 2-core
machine with numba loaded, a 10-row ``LogisticRegression`` fit takes ~0.1 s
with two BLAS threads and ~2 ms with one).

Run: ``python benchmarks/bench_fewshot.py [--seed 0]``
"""

import argparse
import platform
import time
import warnings

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from threadpoolctl import threadpool_limits

import skmeta
from skmeta import MetaClassifier, MetaRegressor
from skmeta.datasets import make_meta_classification, make_meta_regression

SHOTS = (1, 5, 10, 20)
TIMED_SHOTS = 5
N_TRAIN, N_NEW, N_ROWS, N_QUERY = 300, 100, 80, 20
METHODS = ("proximal", "imaml", "maml", "metasgd", "reptile")

PROBLEMS = {
    "classification": dict(
        generator=make_meta_classification, meta=MetaClassifier,
        base=LogisticRegression(C=1.0), score=accuracy_score,
        data=dict(n_features=20, n_informative=2, n_redundant=10,
                  task_spread=0.5),
        params={m: {} for m in METHODS},
    ),
    "regression": dict(
        generator=make_meta_regression, meta=MetaRegressor,
        base=Ridge(alpha=1.0), score=r2_score,
        data=dict(n_features=20, n_informative=10, noise=10.0, task_spread=0.5),
        params={"proximal": {}, "imaml": dict(meta_lr=0.5),
                "maml": dict(meta_lr=0.5), "metasgd": dict(meta_lr=0.5),
                "reptile": {}},
    ),
}


def split_new_tasks(y, tasks, classification, rng):
    """Per new task: query rows, and for each shot count its support rows.

    The query rows are the same at every shot count (balanced over classes
    for classification), and supports are nested (1 shot within 5 within 20).
    """
    query, support = [], {k: [] for k in SHOTS}
    for t in range(N_TRAIN, N_TRAIN + N_NEW):
        rows = rng.permutation(np.flatnonzero(tasks == t))
        if classification:
            classes = np.unique(y)
            q = np.concatenate([rows[y[rows] == c][:N_QUERY // len(classes)]
                                for c in classes])
            pool = np.setdiff1d(rows, q, assume_unique=True)
            pool = pool[rng.permutation(len(pool))]
            for k in SHOTS:
                support[k].append(np.concatenate(
                    [pool[y[pool] == c][:k] for c in classes]))
        else:
            q, pool = rows[:N_QUERY], rows[N_QUERY:]
            for k in SHOTS:
                support[k].append(pool[:k])
        query.append(q)
    return query, support


def timed(func):
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def mean_score(score, y, query, predict):
    return float(np.mean([score(y[q], predict(i, q)) for i, q in enumerate(query)]))


def run_problem(name, spec, seed):
    X, y, tasks = spec["generator"](n_tasks=N_TRAIN + N_NEW, n_samples_per_task=N_ROWS,
                                    random_state=seed, **spec["data"])
    classification = name == "classification"
    query, support = split_new_tasks(y, tasks, classification,
                                     np.random.default_rng(seed))
    train = tasks < N_TRAIN
    base, score = spec["base"], spec["score"]
    rows = {}

    fit_s, pooled = timed(lambda: clone(base).fit(X[train], y[train]))
    # the pooled model ignores the shots: one score, repeated in every column
    pooled_score = mean_score(score, y, query, lambda i, q: pooled.predict(X[q]))
    rows["pooled"] = {"train": fit_s, "adapt": None,
                      **{k: pooled_score for k in SHOTS}}

    per_task = {}
    for k in SHOTS:
        seconds, models = timed(lambda: [clone(base).fit(X[s], y[s])
                                         for s in support[k]])
        per_task[k] = mean_score(score, y, query,
                                 lambda i, q: models[i].predict(X[q]))
        if k == TIMED_SHOTS:
            per_task["adapt"] = seconds
    rows["per-task"] = {"train": None, **per_task}

    for method in METHODS:
        meta = spec["meta"](clone(base), method=method, random_state=0,
                            **spec["params"][method])
        fit_s, _ = timed(lambda: meta.fit(X[train], y[train], tasks=tasks[train]))
        row = {"train": fit_s}
        for k in SHOTS:
            s = np.concatenate(support[k])
            seconds, models = timed(
                lambda: meta.adapt_tasks(X[s], y[s], tasks=tasks[s]))
            row[k] = mean_score(score, y, query,
                                lambda i, q: models[N_TRAIN + i].predict(X[q]))
            if k == TIMED_SHOTS:
                row["adapt"] = seconds
        rows[method] = row
    return rows


def warm_up():
    """Compile or load every kernel the methods use, outside the timings."""
    X, y, tasks = make_meta_classification(n_tasks=6, n_samples_per_task=12,
                                           n_features=4, random_state=0)
    Xr, yr, tr = make_meta_regression(n_tasks=6, n_samples_per_task=12,
                                      n_features=4, random_state=0)
    for method in METHODS:
        MetaClassifier(method=method, max_iter=2).fit(X, y, tasks=tasks).adapt(X, y)
        MetaRegressor(Ridge(), method=method, max_iter=2).fit(
            Xr, yr, tasks=tr).adapt(Xr, yr)


def fmt(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def table(results):
    head = ["method"]
    for name, metric in (("classification", "acc"), ("regression", "R²")):
        short = "clf" if name == "classification" else "reg"
        head += [f"{short} train s", f"{short} adapt ms"]
        head += [f"{metric} {k}-shot" for k in SHOTS]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for method in ("per-task", "pooled") + METHODS:
        cells = [method]
        for name in ("classification", "regression"):
            row = results[name][method]
            adapt = None if row["adapt"] is None else 1000 * row["adapt"]
            cells += [fmt(row["train"], 2), fmt(adapt, 0)]
            cells += [fmt(row[k], 3) for k in SHOTS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    args = parser.parse_args(argv)
    with threadpool_limits(limits=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warm_up()
        results = {name: run_problem(name, spec, args.seed)
                   for name, spec in PROBLEMS.items()}
    print(f"skmeta {skmeta.__version__}, scikit-learn {sklearn.__version__}, "
          f"Python {platform.python_version()}; data seed {args.seed}; "
          f"{N_TRAIN} training tasks, {N_NEW} new tasks scored on {N_QUERY} rows each")
    print()
    print(table(results))


if __name__ == "__main__":
    main()
