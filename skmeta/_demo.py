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
from .model_selection import adaptation_curve

SHOTS = (1, 2, 5, 10, 20)


_TRAIN_ROWS = 40
_QUERY_ROWS = 40


def _test_rows(max_shots, n_query):
    """Samples of a new task: its largest shots per class, plus its queries."""
    shots = max(SHOTS) if max_shots is None else max(max(SHOTS), max_shots)
    return 2 * shots + n_query


def demo_rows(n_train_tasks, n_test_tasks, max_shots=None,
              n_query=_QUERY_ROWS):
    """How many samples :func:`make_demo_tasks` draws."""
    return (n_train_tasks * _TRAIN_ROWS
            + n_test_tasks * _test_rows(max_shots, n_query))


def make_demo_tasks(n_train_tasks=200, n_test_tasks=100, n_query=_QUERY_ROWS,
                    task_spread=1.0, random_state=42, max_shots=None):
    """Training tasks and new tasks from the classic example's generator.

    Every task has the classic example's 20 features, 2 informative and 10
    redundant. Training tasks have 40 samples; new tasks enough for 20
    shots per class (or ``max_shots``, if more) plus ``n_query`` held-out
    samples: up to 20 shots, the tasks drawn do not depend on the shots
    asked, so that each row of the table is the default table's.
    """
    sizes = np.r_[np.full(n_train_tasks, _TRAIN_ROWS),
                  np.full(n_test_tasks, _test_rows(max_shots, n_query))]
    X, y, tasks = make_meta_classification(
        n_tasks=n_train_tasks + n_test_tasks, n_samples_per_task=sizes,
        n_features=20, n_informative=2, n_redundant=10, task_spread=task_spread,
        random_state=random_state,
    )
    train = tasks < n_train_tasks
    return (X[train], y[train], tasks[train]), (X[~train], y[~train], tasks[~train])


def run_demo(shots=SHOTS, n_train_tasks=200, n_test_tasks=100, task_spread=1.0,
             random_state=42, print_fn=print):
    """Print accuracy and times of every approach for each number of shots.

    Every approach sees the same shots of the same new tasks
    (:func:`~skmeta.model_selection.adaptation_curve` with the new tasks held
    out and one repeat). The accuracy is the mean over the new tasks of the
    accuracy on each task's other samples; "fit" is the time taken to learn
    all new tasks from their shots, "score" the time taken to score them
    (predictions and scikit-learn's accuracy scorer, task by task). Returns
    the results as a list of dicts (one per shot count and method).
    """
    (X_tr, y_tr, t_tr), (X_te, y_te, t_te) = make_demo_tasks(
        n_train_tasks, n_test_tasks, task_spread=task_spread,
        random_state=random_state, max_shots=max(shots))

    start = time.perf_counter()
    meta = MetaClassifier(LogisticRegression(), gamma="auto", prior="full")
    meta.fit(X_tr, y_tr, tasks=t_tr)
    meta_train_time = time.perf_counter() - start

    print_fn(f"{n_train_tasks} training tasks of 40 samples, {n_test_tasks} new "
             "tasks; features as in make_classification(n_features=20, "
             f"n_informative=2, n_redundant=10, random_state={random_state})")
    print_fn(f"MetaClassifier meta-training: {meta_train_time:.2f} s "
             f"({meta.n_iter_} iterations, learned gamma {meta.gamma_:.3g})")
    start = time.perf_counter()
    embedding = MetaEmbedding(n_components=2, max_iter=300, random_state=0)
    embedding.fit(X_tr, y_tr, tasks=t_tr)
    print_fn(f"MetaEmbedding meta-training: {time.perf_counter() - start:.2f} s")

    approaches = {
        # k-NN's n_neighbors=5 is capped at the largest odd number of shots
        "k-NN per task": (KNeighborsClassifier(), "per_task"),
        "logistic per task": (LogisticRegression(), "per_task"),
        "logistic pooled": (LogisticRegression(max_iter=1000), "pooled"),
        # meta-trained above on the training tasks: frozen, it only adapts
        "MetaClassifier (adapt)": (FrozenEstimator(meta), "adapt"),
        # learned on the training tasks too, and frozen: fitting the pipeline
        # on a task's shots fits k-NN alone (one neighbour: a pipeline's
        # n_neighbors is not capped at the number of shots)
        "k-NN on MetaEmbedding": (make_pipeline(
            FrozenEstimator(embedding), KNeighborsClassifier(n_neighbors=1)),
            "per_task"),
    }
    X, y, tasks = np.vstack([X_tr, X_te]), np.r_[y_tr, y_te], np.r_[t_tr, t_te]
    curves = {}
    for method, (estimator, strategy) in approaches.items():
        shots_, scores, _, fit_times, score_times = adaptation_curve(
            estimator, X, y, groups=tasks, shots=shots, strategy=strategy,
            held_out_tasks=np.unique(t_te), n_repeats=1, return_times=True,
            random_state=random_state)
        curves[method] = (np.nanmean(scores[:, 0], axis=1), fit_times[:, 0],
                          score_times[:, 0])

    header = (f"{'shots/class':>11}  {'method':<28}{'accuracy':>9}{'fit (s)':>9}"
              f"{'score (s)':>10}")
    print_fn(header)
    print_fn("-" * len(header))
    results = []
    for j, n_shots in enumerate(shots_.tolist()):
        for method, (accuracy, fit, score) in curves.items():
            acc, fit, score = float(accuracy[j]), float(fit[j]), float(score[j])
            print_fn(f"{n_shots:>11}  {method:<28}{acc:>9.3f}{fit:>9.3f}"
                     f"{score:>10.3f}")
            results.append({"shots": n_shots, "method": method, "accuracy": acc,
                            "fit_seconds": fit, "score_seconds": score})
    return results
