"""
=============================================================
How sure is a task's model? Probabilities under the posterior
=============================================================

A model adapted from a few rows, or the prior's model for a task never
seen, is uncertain about its own parameters. With
``MetaClassifier(posterior_proba=True)``, ``predict_proba`` averages the
class probabilities over each task's Laplace posterior (see
:ref:`user_guide`, "Predictive uncertainty") instead of taking them at the
fitted parameters. Here the tasks are drawn from a Gaussian prior; we
compare both kinds of probabilities on new tasks known from 0, 2, 5 and 20
rows: averaging helps where a task is known from no row or nearly none,
and not beyond.
"""

# %%
# Three-class tasks drawn from a Gaussian prior
# ---------------------------------------------
# Each task's coefficients and intercepts (one set per class) are
# ``theta_0 + N(0, I)``.
import copy

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import softmax
from sklearn.metrics import log_loss

from skmeta import MetaClassifier

n_features, n_classes = 3, 3
theta0 = np.random.default_rng(0).normal(size=(n_classes, n_features + 1))


def softmax_tasks(n_tasks, n_rows, seed):
    rng = np.random.default_rng(seed)
    theta = theta0 + rng.normal(size=(n_tasks, n_classes, n_features + 1))
    X = rng.normal(size=(n_tasks, n_rows, n_features))
    logits = (np.einsum("trj,tkj->trk", X, theta[:, :, :-1])
              + theta[:, None, :, -1])
    cumulative = np.cumsum(softmax(logits, axis=2), axis=2)
    y = (rng.random((n_tasks, n_rows))[..., None] > cumulative).sum(axis=2)
    return (X.reshape(-1, n_features), y.ravel(),
            np.repeat(np.arange(n_tasks), n_rows))


X, y, tasks = softmax_tasks(200, 40, seed=1)
meta = MetaClassifier(posterior_proba=True).fit(X, y, tasks=tasks)
print(f"prior: {meta.prior_kind_}")

# %%
# New tasks known from k rows
# ---------------------------
# 300 new tasks; each gives its first ``k`` rows to ``partial_fit`` (which
# keeps their posteriors; ``k = 0``: an unseen task, the prior's model) and
# is scored on its last 60 rows. A copy of the meta-trained model serves
# each ``k``, since ``partial_fit`` also moves the prior.
X_new, y_new, tasks_new = softmax_tasks(300, 80, seed=2)
tasks_new = tasks_new + 1000
position = np.tile(np.arange(80), 300)
query = position >= 20
probabilities = {}
for k in (0, 2, 5, 20):
    model = copy.deepcopy(meta)
    if k:
        support = position < k
        model.partial_fit(X_new[support], y_new[support],
                          tasks=tasks_new[support])
    for averaged in (False, True):
        model.set_params(posterior_proba=averaged)
        probabilities[k, averaged] = model.predict_proba(
            X_new[query], tasks=tasks_new[query])
    print(f"k = {k:2d}: log-loss at the mode "
          f"{log_loss(y_new[query], probabilities[k, False]):.4f}, "
          f"under the posterior "
          f"{log_loss(y_new[query], probabilities[k, True]):.4f}")

# %%
# Reliability: confidence against accuracy
# ----------------------------------------
# For each row, the probability of the most probable class against how often
# that class is right; a calibrated model's curve follows the diagonal
# (below it: over-confident). For an unseen task the probabilities at the
# mode are over-confident; those under the posterior err the other way, by
# less, and score a lower log-loss. At 2 rows the two log-losses are close.
# From 5 rows on the mode's probabilities are about calibrated and the
# posterior's under-confident, with a higher log-loss. Empirical Bayes
# on a Laplace approximation learns a prior narrower than the truth when
# tasks have few rows, and the mode's shrinkage toward it already does what
# the averaging then overdoes (see the user guide's measurements).
bins = np.linspace(1 / n_classes, 1, 8)
fig, axes = plt.subplots(1, 4, figsize=(12, 3.3), sharey=True)
for ax, k in zip(axes, (0, 2, 5, 20)):
    for averaged, label in ((False, "at the mode"),
                            (True, "under the posterior")):
        proba = probabilities[k, averaged]
        confidence = proba.max(axis=1)
        right = proba.argmax(axis=1) == y_new[query]
        which = np.digitize(confidence, bins[1:-1])
        filled = [b for b in range(len(bins) - 1) if np.any(which == b)]
        ax.plot([confidence[which == b].mean() for b in filled],
                [right[which == b].mean() for b in filled],
                marker="o", label=label)
    ax.plot([1 / n_classes, 1], [1 / n_classes, 1], color="grey",
            linewidth=0.8)
    ax.set_title("unseen task" if k == 0 else f"{k} rows")
    ax.set_xlabel("probability of the predicted class")
axes[0].set_ylabel("fraction right")
axes[0].legend(loc="upper left", fontsize=8)
fig.tight_layout()
plt.show()
