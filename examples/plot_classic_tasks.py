"""
=======================================================
The classic example, extended to many related tasks
=======================================================

scikit-learn's classic example fits a :class:`~sklearn.neighbors.KNeighborsClassifier`
to ``make_classification(n_samples=1000, n_features=20, n_informative=2,
n_redundant=10, random_state=42)``. Here the same generator vocabulary makes
many related tasks. A new task arrives with a few labelled samples per class;
we compare k-NN and logistic regression fitted on those samples alone, one
logistic regression pooled over all tasks, and :class:`~skmeta.MetaClassifier`,
which adapts a prior learned across the training tasks.
"""

# %%
# Tasks: 200 to learn from, 100 new ones
# ---------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification

n_train, n_new, n_query = 200, 100, 40
shots = [1, 2, 5, 10, 20]
sizes = np.r_[np.full(n_train, 40), np.full(n_new, 2 * max(shots) + n_query)]
X, y, tasks = make_meta_classification(
    n_tasks=n_train + n_new, n_samples_per_task=sizes, n_features=20,
    n_informative=2, n_redundant=10, task_spread=1.0, random_state=42)
train = tasks < n_train
X_tr, y_tr, t_tr = X[train], y[train], tasks[train]
X_new, y_new, t_new = X[~train], y[~train], tasks[~train]

# %%
# Meta-train once
# ---------------
# The prior (mean, full precision, strength) is learned by empirical Bayes.
meta = MetaClassifier(LogisticRegression(), gamma="auto", prior="full")
meta.fit(X_tr, y_tr, tasks=t_tr)
print(f"learned gamma: {meta.gamma_:.3g} after {meta.n_iter_} iterations")

# %%
# Few-shot evaluation
# -------------------
# For each number of shots per class, the first shots of every new task are
# its support set and the rest its query set.
rng = np.random.default_rng(0)


def support_mask(n_shots):
    mask = np.zeros(len(y_new), dtype=bool)
    for t in np.unique(t_new):
        for c in (0, 1):
            rows = np.flatnonzero((t_new == t) & (y_new == c))
            mask[rng.choice(rows, n_shots, replace=False)] = True
    return mask


def per_task(make_estimator, support):
    scores = []
    for t in np.unique(t_new):
        s, q = support & (t_new == t), ~support & (t_new == t)
        est = make_estimator(s.sum()).fit(X_new[s], y_new[s])
        scores.append(np.mean(est.predict(X_new[q]) == y_new[q]))
    return np.mean(scores)


results = {name: [] for name in ["k-NN per task", "logistic per task",
                                 "logistic pooled", "MetaClassifier"]}
for k in shots:
    support = support_mask(k)
    query = ~support
    results["k-NN per task"].append(
        per_task(lambda n: KNeighborsClassifier(n_neighbors=min(5, n - 1 | 1)),
                 support))
    results["logistic per task"].append(
        per_task(lambda n: LogisticRegression(), support))
    pooled = LogisticRegression(max_iter=1000).fit(
        np.vstack([X_tr, X_new[support]]), np.r_[y_tr, y_new[support]])
    results["logistic pooled"].append(np.mean(pooled.predict(X_new[query])
                                              == y_new[query]))
    adapted = meta.adapt(X_new[support], y_new[support], tasks=t_new[support])
    results["MetaClassifier"].append(np.mean([
        np.mean(adapted[t].predict(X_new[query & (t_new == t)])
                == y_new[query & (t_new == t)])
        for t in np.unique(t_new)]))

# %%
# Accuracy against shots
# ----------------------
fig, ax = plt.subplots(figsize=(6, 4))
for name, acc in results.items():
    ax.plot(shots, acc, marker="o", label=name)
ax.set_xscale("log")
ax.set_xticks(shots, labels=[str(k) for k in shots])
ax.set_xlabel("labelled samples per class of the new task")
ax.set_ylabel("accuracy on the new task's other samples")
ax.legend()
plt.tight_layout()
plt.show()
