"""
=================================================
Anomaly detectors for new machines from 10 rows
=================================================

A fleet of machines, each with five sensors. Every machine has its own
normal operating point and its own covariance between sensors -- a reading
that is ordinary for the fleet can be abnormal for one machine. A new
machine comes with ten normal readings: too few for a covariance matrix in
five dimensions.

:class:`~skmeta.MetaGaussianDensity` learns, from the logs of 200 machines
(unlabelled: a tenth of their readings are anomalies), how machines differ:
a Normal-inverse-Wishart prior over their means and covariances. A new
machine's detector is its posterior from its ten readings,
:meth:`~skmeta.MetaGaussianDensity.adapt`. We compare it with what one
would do otherwise: a Gaussian with the Ledoit-Wolf covariance of the ten
readings, and one Gaussian fitted on all the fleet's readings.
"""

# %%
# The fleet
# ---------
# :func:`~skmeta.datasets.make_meta_anomalies` draws the machines: sensors
# correlated through two latent operating factors, in different units, each
# machine's covariance scattered around the fleet's (50% coefficient of
# variation of each sensor's variance) and its mean scattered in its own
# units. An anomaly is a reading moved by 4 of its machine's standard
# deviations, in a random direction of the machine's whitened space.
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from skmeta import MetaGaussianDensity
from skmeta.datasets import make_meta_anomalies

n_train, n_new = 200, 100
sizes = np.r_[np.full(n_train, 40), np.full(n_new, 150)]
X, y, machine = make_meta_anomalies(
    n_tasks=n_train + n_new, n_samples_per_task=sizes, n_features=5,
    contamination=0.1, random_state=0)
train = machine < n_train
print(f"{train.sum()} readings of {n_train} machines to learn from, "
      f"{np.mean(y[train] == -1):.0%} of them anomalies (unlabelled)")

# %%
# Learn the prior across machines
# -------------------------------
# ``fit`` needs no labels; the training readings are taken as normal up to
# ``contamination``.
detector = MetaGaussianDensity(contamination=0.1).fit(X[train],
                                                      tasks=machine[train])
print(f"kappa0 = {detector.mean_precision_prior_:.2f} "
      f"(machine means spread by 1 / sqrt(kappa0) of their own std)")
print(f"nu0 = {detector.degrees_of_freedom_prior_:.1f} "
      f"(machine covariances are worth about that many readings of prior)")
print(f"{detector.n_iter_} empirical Bayes iterations")

# %%
# New machines: each brings a few normal readings
# -----------------------------------------------
# For each new machine, the first ``n_support`` normal readings are its
# support; the score is the ROC AUC of outliers among its other readings
# (100 of them, 15 anomalies), averaged over the new machines. The ROC AUC
# of a machine is the Mann-Whitney statistic of its scores, normal readings
# against anomalies, divided by the number of pairs (what
# :func:`~sklearn.metrics.roc_auc_score` computes), here for all machines
# at once.
pooled = EmpiricalCovariance().fit(X[train])
new_machines = np.arange(n_train, n_train + n_new)
readings = [np.flatnonzero(machine == t) for t in new_machines]
normal = np.array([rows[y[rows] == 1] for rows in readings])
anomalies = np.array([rows[y[rows] == -1] for rows in readings])
query = np.hstack([normal[:, 50:], anomalies])
is_normal = y[query] == 1


def roc_auc_per_machine(scores):
    """ROC AUC of each machine from its query scores, shape (n_new, n_query)."""
    pairs = is_normal[0].sum() * (~is_normal[0]).sum()
    return mannwhitneyu(scores[:, is_normal[0]], scores[:, ~is_normal[0]],
                        axis=1).statistic / pairs


def new_machine_aucs(n_support):
    support = normal[:, :n_support]
    models = detector.adapt_tasks(X[support.ravel()],
                                   tasks=machine[support.ravel()])
    meta = np.array([models[t].score_samples(X[q])
                     for t, q in zip(new_machines, query)])
    ledoit_wolf = np.array([-LedoitWolf().fit(X[s]).mahalanobis(X[q])
                            for s, q in zip(support, query)])
    one_pooled = -pooled.mahalanobis(X[query.ravel()]).reshape(query.shape)
    aucs = {"MetaGaussianDensity": roc_auc_per_machine(meta),
            "Ledoit-Wolf per machine": roc_auc_per_machine(ledoit_wolf),
            "one pooled covariance": roc_auc_per_machine(one_pooled)}
    return aucs, models


at_ten, models = new_machine_aucs(10)
for name, values in at_ten.items():
    print(f"{name:25s} mean ROC AUC {values.mean():.3f}")

# %%
# How the three compare as machines bring more readings
# -----------------------------------------------------
# With more readings, each machine's own covariance carries more of the
# answer and the prior's lead narrows; with few, it is what makes a detector
# possible.
shots = [3, 5, 10, 20, 50]
curves = {name: [] for name in at_ten}
for n_support in shots:
    aucs = at_ten if n_support == 10 else new_machine_aucs(n_support)[0]
    for name, values in aucs.items():
        curves[name].append(values.mean())

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for name, values in curves.items():
    left.plot(shots, values, marker="o", label=name)
left.set_xscale("log")
left.set_xticks(shots, [str(s) for s in shots])
left.minorticks_off()
left.set_xlabel("normal readings of the new machine")
left.set_ylabel("mean ROC AUC on new machines")
left.legend()
right.boxplot(list(at_ten.values()), tick_labels=["meta", "Ledoit-Wolf",
                                                  "pooled"])
right.set_ylabel("ROC AUC per new machine (10 readings)")
fig.tight_layout()

# %%
# Thresholds that mean the same for every machine
# -----------------------------------------------
# ``predict`` flags a reading when its tail probability under its machine's
# predictive distribution -- the chance that a normal reading of that
# machine is less likely -- is below a level common to all machines,
# ``tail_probability_``, learned with the prior. The adapted detectors
# inherit it, so a machine with ten readings needs no threshold of its own.
flagged = np.array([models[t].predict(X[q]) == -1
                    for t, q in zip(new_machines, query)])
print(f"level {detector.tail_probability_:.3f}: "
      f"{flagged[is_normal].mean():.1%} of normal readings flagged, "
      f"{flagged[~is_normal].mean():.1%} of anomalies")
