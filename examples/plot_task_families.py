"""
==========================================================
Tasks in families: a mixture prior picks a new task's kind
==========================================================

Stores come as premium and discount stores, sensors in a few models: the
tasks' parameters form *families* that one Gaussian prior cannot describe.
``prior="mixture"`` learns a mixture of Gaussian priors by empirical Bayes
(see :ref:`mixture_priors`); a new task's few rows then tell which family it
belongs to, and it is adapted from that family's prior. We compare it with
the default single-Gaussian prior on new tasks, against the number of rows
each new task comes with.
"""

# %%
# Logistic tasks in four families
# -------------------------------
# Each family has its own coefficient vector; a task's coefficients are its
# family's plus a little noise.
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit

from skmeta import MetaClassifier

n_features, n_families = 8, 4
centres = 3.0 * np.random.default_rng(123).standard_normal((n_families,
                                                            n_features))


def family_tasks(n_tasks, n_rows, seed):
    rng = np.random.default_rng(seed)
    family = np.arange(n_tasks) % n_families
    coef = centres[family] + 0.3 * rng.standard_normal((n_tasks, n_features))
    X = rng.standard_normal((n_tasks, n_rows, n_features))
    y = (rng.random((n_tasks, n_rows))
         < expit(np.einsum("trj,tj->tr", X, coef))).astype(int)
    return (X.reshape(-1, n_features), y.ravel(),
            np.repeat(np.arange(n_tasks), n_rows), family)


X, y, tasks, family = family_tasks(100, 20, seed=0)
X_new, y_new, tasks_new, _ = family_tasks(40, 110, seed=1)

# %%
# Meta-train both priors
# ----------------------
single = MetaClassifier().fit(X, y, tasks=tasks)
mixture = MetaClassifier(prior="mixture", random_state=0).fit(X, y, tasks=tasks)
print(f"default: {single.prior_kind_}; mixture: {mixture.prior_kind_}")
print("BIC by number of components:",
      {k: round(float(v), 1) for k, v in mixture.prior_scores_.items()})
# the training tasks' clusters against their true families
print("clusters x families:\n",
      np.histogram2d(mixture.task_clusters_.argmax(axis=1), family,
                     bins=[n_families, n_families])[0].astype(int))

# %%
# Few-shot accuracy on new tasks
# ------------------------------
# Each new task gives its first ``k`` rows to ``adapt_tasks``; its last 100
# rows score the adapted model.
position = np.tile(np.arange(110), 40)
query = position >= 10
shots = [1, 2, 4, 6, 10]
accuracy = {"single Gaussian (default)": [], "mixture": []}
for k in shots:
    support = position < k
    for name, meta in zip(accuracy, (single, mixture)):
        models = meta.adapt_tasks(X_new[support], y_new[support],
                                  tasks=tasks_new[support])
        accuracy[name].append(np.mean([
            models[t].score(X_new[query & (tasks_new == t)],
                            y_new[query & (tasks_new == t)])
            for t in range(40)]))

fig, ax = plt.subplots(figsize=(5, 3.5))
for name, values in accuracy.items():
    ax.plot(shots, values, marker="o", label=name)
ax.set_xlabel("rows per new task")
ax.set_ylabel("accuracy on the task's other rows")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# With a handful of rows a new task cannot place itself in the wide single
# Gaussian, but it can tell which of four families it comes from: the
# posterior over the components (``predict_task_cluster``). At four rows it
# may still hesitate between two families (among the first four new tasks
# below, the first two do);
# the share of the 40 new tasks whose posterior is above 0.9 for one family
# grows with the rows, and so does the share where that family is the one
# the task was drawn from (each family is matched to the cluster holding
# most of its training tasks).
first = np.isin(tasks_new, [0, 1, 2, 3]) & (position < 4)
print(mixture.predict_task_cluster(X_new[first], y_new[first],
                                   tasks=tasks_new[first]).round(3))
counts = np.histogram2d(mixture.task_clusters_.argmax(axis=1), family,
                        bins=[n_families, n_families])[0]
family_cluster = counts.argmax(axis=0)
for k in (2, 4, 10):
    rows = position < k
    posterior = mixture.predict_task_cluster(X_new[rows], y_new[rows],
                                             tasks=tasks_new[rows])
    right = posterior.argmax(axis=1) == family_cluster[np.arange(40) % n_families]
    certain = np.mean(posterior.max(axis=1) > 0.9)
    print(f"{k:2d} rows: posterior above 0.9 for {certain:.0%} of the new "
          f"tasks, on the right family for {right.mean():.0%}")
