"""
=========================================
Exam scores of 139 London schools
=========================================

The ILEA "School" data (Goldstein, 1991) is the standard multi-task
regression benchmark: exam scores of 15,362 pupils in 139 schools, with 27
features of the pupil and the school. Each school is a task. The protocol of
Argyriou, Evgeniou & Pontil (2008): per school, a random 75% / 25%
train/test split, 10 splits; the score is the explained variance,
``1 - MSE / (variance of y within each school)``.

The data are not distributed with skmeta:
:func:`~skmeta.datasets.fetch_school` downloads them once from the MALSAR
repository and caches them (set the environment variable
``SKMETA_SCHOOL_DATA`` to the path of a converted ``school.npz`` to use a copy
you already have). The published figures for this protocol are about 23% for
one ridge regression pooled over all schools and 34% for regularized
multi-task learning (Evgeniou & Pontil, 2004).
"""

# %%
# Load the data
# -------------
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from skmeta import MetaRegressor
from skmeta.datasets import fetch_school

try:
    school_data = fetch_school()
except OSError as exc:
    # no network and no local copy: say why instead of failing
    school_data = None
    print(f"The School data could not be loaded: {exc}")
else:
    X, y, school = school_data.data, school_data.target, school_data.tasks
    print(f"{X.shape[0]} pupils, {X.shape[1]} features, "
          f"{np.unique(school).size} schools")

# %%
# The protocol
# ------------
# :class:`~sklearn.model_selection.StratifiedShuffleSplit`, stratified on the
# school, takes 25% of every school's pupils as test set;
# :func:`~skmeta.metrics.within_task_explained_variance` is the score.
from sklearn.model_selection import StratifiedShuffleSplit

from skmeta.metrics import within_task_explained_variance

splits = StratifiedShuffleSplit(n_splits=10, test_size=0.25, random_state=0)

if school_data is not None:
    scores = {"pooled ridge": [], "ridge per school": [],
              "MetaRegressor (proximal, empirical Bayes)": []}
    for train, test in splits.split(X, school):
        scaler = StandardScaler().fit(X[train])
        X_tr, X_te = scaler.transform(X[train]), scaler.transform(X[test])
        predictions = {
            "pooled ridge": Ridge(alpha=1.0).fit(X_tr, y[train]).predict(X_te),
            # gamma=0: every school fitted on its own by the base estimator
            "ridge per school": MetaRegressor(Ridge(alpha=1.0), gamma=0.0)
            .fit(X_tr, y[train], tasks=school[train])
            .predict(X_te, tasks=school[test]),
            "MetaRegressor (proximal, empirical Bayes)": MetaRegressor(
                Ridge(alpha=1.0), gamma="auto", prior="full")
            .fit(X_tr, y[train], tasks=school[train])
            .predict(X_te, tasks=school[test]),
        }
        for name, pred in predictions.items():
            scores[name].append(
                within_task_explained_variance(y[test], pred, school[test]))
    for name, values in scores.items():
        print(f"{name:45s} {100 * np.mean(values):5.1f} ± "
              f"{100 * np.std(values):.1f} % explained variance")
