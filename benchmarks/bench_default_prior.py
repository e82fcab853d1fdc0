"""The default prior's fit on tasks where it compares matrix priors.

``MetaClassifier()`` with every parameter at its default on 18 problems of
200 binary tasks with 20 features -- 10, 20 or 40 training rows per task;
2 informative and 10 redundant features (as the classic
``make_classification`` example), 5 and 5, or 10 and 0; two seeds -- where
``prior="auto"`` compares isotropic, diagonal, full and low-rank priors
(two tasks per coefficient: see the user guide). Each task has 500 more
rows, held out and scored. Reported per problem: the fit's wall time, the
held-out log-loss, the structure chosen, the empirical Bayes iterations of
every candidate and of the final fit, and whether the fit warned that it did
not converge; beside it, what a user fits otherwise: one
``LogisticRegression()`` pooled over all tasks, and one per task (the
pooled model for a task whose training rows have a single class); then the
totals, and on how many problems the defaults beat each.

Why so many held-out rows: ``make_meta_classification`` gives every task
exact class counts, so a task's held-out rows have the class counts its
training rows leave over. With ``r`` training and ``h`` held-out rows, a
training class share ``delta`` above the task's moves the held-out share
``r / h`` times ``delta`` below it: with 10 and 10 the two shares
correlate at -0.97, and a model that learns each task's own intercept
from its training rows is scored on rows that lean the other way. With 500
held-out rows the held-out share moves by at most 40 / 500 of the training
one's deviation. ``--held-out-rows 10`` gives the earlier protocol.

Run: ``python benchmarks/bench_default_prior.py [--seeds 0 1]
[--held-out-rows 500]``. The fit runs
the skmeta that ``import skmeta`` finds: to compare two checkouts, run the
script from each with ``PYTHONPATH`` set to it.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import skmeta._methods._proximal as proximal
from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification

HELD_OUT_ROWS = 500


def problem(n_rows, informative, redundant, seed, held_out_rows=HELD_OUT_ROWS):
    """Training and held-out rows of 200 tasks of 20 features."""
    X, y, tasks = make_meta_classification(
        n_tasks=200, n_samples_per_task=n_rows + held_out_rows, n_features=20,
        n_informative=informative, n_redundant=redundant, random_state=seed)
    position = np.arange(len(y)) % (n_rows + held_out_rows)
    return X, y, tasks, position < n_rows


def baselines(X, y, tasks, train):
    """Held-out log-losses and fit times of the pooled model and of one
    model per task."""
    start = time.perf_counter()
    pooled = LogisticRegression().fit(X[train], y[train])
    pooled_seconds = time.perf_counter() - start
    proba = pooled.predict_proba(X[~train])
    start = time.perf_counter()
    per_task = proba.copy()
    test_tasks = tasks[~train]
    for task in np.unique(tasks):
        rows = train & (tasks == task)
        if np.unique(y[rows]).size < 2:
            continue
        model = LogisticRegression().fit(X[rows], y[rows])
        per_task[test_tasks == task] = model.predict_proba(
            X[~train][test_tasks == task])
    per_task_seconds = time.perf_counter() - start
    return (log_loss(y[~train], proba), pooled_seconds,
            log_loss(y[~train], per_task), per_task_seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--held-out-rows", type=int, default=HELD_OUT_ROWS,
                        help="rows per task held out and scored")
    args = parser.parse_args()

    # the iterations of each empirical Bayes fit (candidates, then the final)
    iterations = []
    fit_proximal = proximal.fit_proximal

    def counted(*fit_args, **kwargs):
        result = fit_proximal(*fit_args, **kwargs)
        iterations.append(result.n_iter)
        return result

    proximal.fit_proximal = counted

    # compile before timing
    X, y, tasks, train = problem(5, 2, 10, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MetaClassifier(max_iter=2).fit(X[train], y[train], tasks=tasks[train])

    print("| rows | informative | redundant | seed | fit s | held-out log-loss "
          "| prior chosen | iterations | did not converge | pooled log-loss "
          "| per-task log-loss | per-task fit s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: "
          "| ---: | ---: |")
    total_time = total_loss = 0.0
    totals = np.zeros(4)
    n_warned = 0
    # problems on which the defaults' held-out log-loss is below the pooled
    # model's, and below the per-task models'
    wins = np.zeros(2, dtype=int)
    for n_rows in (10, 20, 40):
        for informative, redundant in ((2, 10), (5, 5), (10, 0)):
            for seed in args.seeds:
                X, y, tasks, train = problem(n_rows, informative, redundant,
                                             seed, args.held_out_rows)
                iterations.clear()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    start = time.perf_counter()
                    meta = MetaClassifier().fit(X[train], y[train],
                                                tasks=tasks[train])
                    seconds = time.perf_counter() - start
                warned = any(issubclass(w.category, ConvergenceWarning)
                             for w in caught)
                loss = log_loss(y[~train], meta.predict_proba(
                    X[~train], tasks=tasks[~train]), labels=meta.classes_)
                others = baselines(X, y, tasks, train)
                total_time += seconds
                total_loss += loss
                totals += others
                n_warned += warned
                wins += [loss < others[0], loss < others[2]]
                print(f"| {n_rows} | {informative} | {redundant} | {seed} "
                      f"| {seconds:.2f} | {loss:.4f} | {meta.prior_kind_} "
                      f"| {iterations} | {'yes' if warned else ''} "
                      f"| {others[0]:.4f} | {others[2]:.4f} | {others[3]:.2f} |",
                      flush=True)
    print(f"\nMetaClassifier(): total fit time {total_time:.1f} s, sum of "
          f"held-out log-losses {total_loss:.4f}, fits that did not converge: "
          f"{n_warned}")
    n_problems = 9 * len(args.seeds)
    print(f"pooled LogisticRegression: {totals[1]:.1f} s, {totals[0]:.4f}; "
          f"the defaults' loss is lower on {wins[0]} of {n_problems} problems")
    print(f"LogisticRegression per task: {totals[3]:.1f} s, {totals[2]:.4f}; "
          f"the defaults' loss is lower on {wins[1]} of {n_problems} problems")


if __name__ == "__main__":
    main()
