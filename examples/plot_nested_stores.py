"""
==============================================================
Stores nested in regions: a new store starts from its region
==============================================================

A store's sales model resembles the other stores of its region far more than
stores elsewhere. Passing one column of task labels per level,
``tasks=np.c_[region, store]``, makes :class:`~skmeta.MetaRegressor` learn a
hierarchical prior -- population, regions, stores -- by empirical Bayes (see
:ref:`nested_tasks`). A new store of a known region is then predicted from
its region's model and adapted from it with its first few rows. We compare
it, against the number of rows a new store comes with, with the flat prior
(``tasks=store``: one prior for all stores) and with one pooled model.
"""

# %%
# Stores in regions
# -----------------
# :func:`~skmeta.datasets.make_nested_tasks` draws each region's
# coefficients about the population's (spread 2.0) and each store's about its
# region's (spread 0.2). The last store of every region is new: it is left
# out of the fit.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from skmeta import MetaRegressor
from skmeta.datasets import make_nested_tasks

n_regions, stores_per_region, n_rows = 30, 9, 30
X, y, tasks = make_nested_tasks(
    n_groups=n_regions, n_tasks_per_group=stores_per_region,
    n_samples_per_task=n_rows, n_features=10, group_spread=2.0,
    task_spread=0.2, noise=0.5, random_state=0)
new = tasks[:, 1] % stores_per_region == stores_per_region - 1
position = np.arange(len(y)) % n_rows  # row number within its store

# %%
# Meta-train the nested and the flat prior, and a pooled model
# -------------------------------------------------------------
nested = MetaRegressor(Ridge()).fit(X[~new], y[~new], tasks=tasks[~new])
flat = MetaRegressor(Ridge()).fit(X[~new], y[~new], tasks=tasks[~new, 1])
pooled = Ridge().fit(X[~new], y[~new])
print(f"nested: {nested.prior_kind_}, {len(nested.groups_[0])} regions; "
      f"flat: {flat.prior_kind_}")

# %%
# New stores against the rows they come with
# ------------------------------------------
# Each new store gives its first ``k`` rows to ``adapt_tasks``; its last 20
# rows score the adapted model. ``k = 0`` is the zero-shot answer:
# ``predict`` with the new store's labels (its region's model for the
# nested prior, the population's for the flat one).
query = new & (position >= 10)
shots = [0, 1, 2, 4, 6, 10]
scores = {"nested prior": [], "flat prior": [], "pooled Ridge": []}
for k in shots:
    support = new & (position < k)
    for name, meta, labels in (("nested prior", nested, tasks),
                               ("flat prior", flat, tasks[:, 1])):
        if k == 0:
            pred = meta.predict(X[query], tasks=labels[query])
        else:
            models = meta.adapt_tasks(X[support], y[support],
                                      tasks=labels[support])
            pred = np.empty(query.sum())
            for key, model in models.items():
                store = key[1] if isinstance(key, tuple) else key
                mine = tasks[query, 1] == store
                pred[mine] = model.predict(X[query][mine])
        scores[name].append(r2_score(y[query], pred))
    scores["pooled Ridge"].append(r2_score(y[query], pooled.predict(X[query])))

fig, ax = plt.subplots(figsize=(5, 3.5))
for name, values in scores.items():
    ax.plot(shots, values, marker="o", label=name)
ax.set_xlabel("rows per new store")
ax.set_ylabel("$R^2$ on the store's other rows")
ax.set_ylim(min(-0.1, min(min(v) for v in scores.values())), 1.02)
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The flat prior knows only that stores differ a lot: a new store leaves
# the population's model row by row (R squared 0.22 with none, 0.32 with
# one, 0.40 with two), and ten rows still leave it below the nested prior
# with none. The nested prior knows the store's region, whose model is
# already most of the answer; each level's learned spread says how far to
# trust it.
print("R^2 by rows per new store:")
for name, values in scores.items():
    print(f"  {name:13s}", " ".join(f"{v:6.3f}" for v in values))
print("regions' spread (mean variance about the population):",
      round(float(np.mean(nested.noise_variance_
                          / nested.group_precisions_[0])), 3))
