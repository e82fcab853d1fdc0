"""The classic scikit-learn example, extended to many related tasks.

scikit-learn users know ``make_classification(n_samples=1000, n_features=20,
n_informative=2, n_redundant=10, random_state=42)`` fitted with a
``KNeighborsClassifier``. Here the same generator vocabulary produces many
related tasks (one per store, patient, sensor...). A new task comes with only
a few labelled samples per class ("shots"); we compare what a user can do:

* k-NN fitted on the task's shots alone,
* logistic regression fitted on the task's shots alone,
* one logistic regression pooled over every training task and the shots,
* ``MetaClassifier``: a prior learned across the training tasks, adapted to
  each new task from its shots,
* k-NN on ``MetaEmbedding``: a representation learned across the training
  tasks (feature transfer), k-NN fitted on each new task's embedded shots.

Run it with ``python -m skmeta`` (or ``make demo``).
"""

import time

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from ._embedding import MetaEmbedding
from ._estimators import MetaClassifier
from .datasets import make_meta_classification

SHOTS = (1, 2, 5, 10, 20)


def make_demo_tasks(n_train_tasks=200, n_test_tasks=100, n_query=40,
                    task_spread=1.0, random_state=42):
    """Training tasks and new tasks from the classic example's generator.

    Every task has the classic example's 20 features, 2 informative and 10
    redundant. Training tasks have 40 samples; new tasks enough for 20 shots
    per class plus ``n_query`` held-out samples.
    """
    n_test_samples = 2 * max(SHOTS) + n_query
    sizes = np.r_[np.full(n_train_tasks, 40), np.full(n_test_tasks, n_test_samples)]
    X, y, tasks = make_meta_classification(
        n_tasks=n_train_tasks + n_test_tasks, n_samples_per_task=sizes,
        n_features=20, n_informative=2, n_redundant=10, task_spread=task_spread,
        random_state=random_state,
    )
    train = tasks < n_train_tasks
    return (X[train], y[train], tasks[train]), (X[~train], y[~train], tasks[~train])


def split_shots(y, tasks, n_shots, rng):
    """Boolean mask of ``n_shots`` support rows per class of every task."""
    support = np.zeros(len(y), dtype=bool)
    order = rng.permutation(len(y))
    # a stable sort by (task, class) of a random permutation gives, within
    # each (task, class) cell, a random order: take the first n_shots of it
    keys = np.lexsort((y[order], tasks[order]))
    ranked = order[keys]
    cell = tasks[ranked] * (y.max() + 1) + y[ranked]
    starts = np.r_[0, np.flatnonzero(np.diff(cell)) + 1]
    rank = np.arange(len(y)) - np.repeat(starts, np.diff(np.r_[starts, len(y)]))
    support[ranked[rank < n_shots]] = True
    return support


def _per_task_accuracy(estimator_factory, X, y, tasks, support):
    """Fit one estimator per task on its support rows; mean query accuracy."""
    scores = []
    for t in np.unique(tasks):
        fit_rows = support & (tasks == t)
        query_rows = ~support & (tasks == t)
        est = estimator_factory(int(fit_rows.sum()))
        est.fit(X[fit_rows], y[fit_rows])
        scores.append(np.mean(est.predict(X[query_rows]) == y[query_rows]))
    return float(np.mean(scores))


def _query_accuracy(y_true, y_pred, tasks):
    """Mean over tasks of the accuracy on each task's query rows."""
    correct = (y_true == y_pred).astype(float)
    _, codes = np.unique(tasks, return_inverse=True)
    return float(np.mean(np.bincount(codes, correct) / np.bincount(codes)))


def run_demo(shots=SHOTS, n_train_tasks=200, n_test_tasks=100, task_spread=1.0,
             random_state=42, print_fn=print):
    """Print accuracy and time of every approach for each number of shots.

    Returns the results as a list of dicts (one per shot count and method).
    """
    (X_tr, y_tr, t_tr), (X_te, y_te, t_te) = make_demo_tasks(
        n_train_tasks, n_test_tasks, task_spread=task_spread,
        random_state=random_state)
    rng = np.random.default_rng(random_state)

    start = time.perf_counter()
    meta = MetaClassifier(LogisticRegression(), gamma="auto", prior="full")
    meta.fit(X_tr, y_tr, tasks=t_tr)
    meta_train_time = time.perf_counter() - start

    print_fn(f"{n_train_tasks} training tasks of 40 samples, {n_test_tasks} new "
             "tasks; features as in make_classification(n_features=20, "
             "n_informative=2, n_redundant=10, random_state=42)")
    print_fn(f"MetaClassifier meta-training: {meta_train_time:.2f} s "
             f"({meta.n_iter_} iterations, learned gamma {meta.gamma_:.3g})")
    start = time.perf_counter()
    embedding = MetaEmbedding(n_components=2, max_iter=300, random_state=0)
    embedding.fit(X_tr, y_tr, tasks=t_tr)
    print_fn(f"MetaEmbedding meta-training: {time.perf_counter() - start:.2f} s")
    header = f"{'shots/class':>11}  {'method':<28}{'accuracy':>9}{'time (s)':>10}"
    print_fn(header)
    print_fn("-" * len(header))
    results = []
    for n_shots in shots:
        support = split_shots(y_te, t_te, n_shots, rng)
        query = ~support
        rows = []

        start = time.perf_counter()
        # an odd k below the support size avoids ties between the two classes
        acc = _per_task_accuracy(
            lambda n: KNeighborsClassifier(n_neighbors=min(5, n - 1 | 1)), X_te,
            y_te, t_te, support)
        rows.append(("k-NN per task", acc, time.perf_counter() - start))

        start = time.perf_counter()
        acc = _per_task_accuracy(lambda n: LogisticRegression(), X_te, y_te, t_te,
                                 support)
        rows.append(("logistic per task", acc, time.perf_counter() - start))

        start = time.perf_counter()
        pooled = LogisticRegression(max_iter=1000).fit(
            np.vstack([X_tr, X_te[support]]), np.r_[y_tr, y_te[support]])
        acc = _query_accuracy(y_te[query], pooled.predict(X_te[query]), t_te[query])
        rows.append(("logistic pooled", acc, time.perf_counter() - start))

        start = time.perf_counter()
        adapted = meta.partial_fit(X_te[support], y_te[support],
                                   tasks=t_te[support])
        acc = _query_accuracy(
            y_te[query], adapted.predict(X_te[query], tasks=t_te[query]),
            t_te[query])
        rows.append(("MetaClassifier (adapt)", acc, time.perf_counter() - start))

        start = time.perf_counter()
        # the embedding is frozen: fitting the pipeline fits k-NN alone
        acc = _per_task_accuracy(
            lambda n: make_pipeline(
                FrozenEstimator(embedding),
                KNeighborsClassifier(n_neighbors=min(5, n - 1 | 1))),
            X_te, y_te, t_te, support)
        rows.append(("k-NN on MetaEmbedding", acc, time.perf_counter() - start))

        for method, acc, seconds in rows:
            print_fn(f"{n_shots:>11}  {method:<28}{acc:>9.3f}{seconds:>10.3f}")
            results.append(dict(shots=n_shots, method=method, accuracy=acc,
                                seconds=seconds))
    return results
