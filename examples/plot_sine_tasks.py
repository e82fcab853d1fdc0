"""
========================================================
MAML on the sinusoid tasks, with a network on raw inputs
========================================================

The regression benchmark of the MAML paper (Finn, Abbeel & Levine, 2017):
each task is a sinusoid ``A sin(x - phase)`` with its own amplitude (0.1 to
5) and phase (0 to pi), seen at ten points ``x`` in [-5, 5]. As in the
paper, the model is a network on the raw input ``x``: an
:class:`~sklearn.neural_network.MLPRegressor` with two hidden layers of 40
ReLU units. :class:`~skmeta.MetaRegressor` with ``method="maml"`` learns
its initial weights across many tasks so that one or a few gradient steps
on a new task's ten points fit that task.
"""

# %%
# Training tasks and a new task
# -----------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.neural_network import MLPRegressor

from skmeta import MetaRegressor
from skmeta.datasets import make_sine_tasks

X, y, tasks = make_sine_tasks(n_tasks=5000, n_samples_per_task=20, random_state=0)
X_new, y_new, t_new, amplitude, phase = make_sine_tasks(
    n_tasks=200, n_samples_per_task=10, return_params=True, random_state=1)
grid = np.linspace(-5, 5, 200)[:, None]
truth = amplitude[:, None] * np.sin(grid.ravel()[None, :] - phase[:, None])

# %%
# Meta-training
# -------------
# Each meta-iteration draws 25 tasks, splits each into 10 support and 10
# query points, takes one gradient step on the support from the current
# initialization and scores the query; Adam moves the initialization along
# the exact (second-order) gradient of that score. The step is Finn et
# al.'s 0.01 on the mean squared error of 10 points: skmeta steps on
# scikit-learn's objective, the summed half squared error, so that is
# ``inner_lr = 0.01 * 2 / 10``. ``gamma=0``: plain MAML, no pull toward the
# initialization during adaptation. (The paper trains for 70,000
# meta-iterations; the benchmark in ``benchmarks/`` does.)
net = MLPRegressor(hidden_layer_sizes=(40, 40), activation="relu", alpha=0.0)
maml = MetaRegressor(net, method="maml", gamma=0.0, inner_steps=1,
                     inner_lr=0.002, meta_batch_size=25, meta_lr=1e-3,
                     max_iter=4000, random_state=0)
maml.fit(X, y, tasks=tasks)

# %%
# Adapting new tasks: 0, 1 and 10 steps
# -------------------------------------
# ``adapt_tasks`` takes the inner step the network was meta-trained with.
# Every adapted model is a plain fitted MLPRegressor, which goes on training
# with scikit-learn's own ``partial_fit``: full-batch SGD with step 0.02 on
# scikit-learn's mean half squared error is the same step 0.01 on the mean
# squared error, so nine more of them make ten.
one_step = maml.adapt_tasks(X_new, y_new, tasks=t_new)
ten_steps = {}
for t, adapted in maml.adapt_tasks(X_new, y_new, tasks=t_new).items():
    adapted.set_params(solver="sgd", learning_rate_init=0.02, momentum=0.0,
                       batch_size=10, shuffle=False)
    for _ in range(9):
        adapted.partial_fit(X_new[t_new == t], y_new[t_new == t])
    ten_steps[t] = adapted
curves = {
    "0 steps (the learned initialization)": np.tile(
        maml.meta_estimator_.predict(grid), (200, 1)),
    "1 step": np.array([one_step[t].predict(grid) for t in range(200)]),
    "10 steps": np.array([ten_steps[t].predict(grid) for t in range(200)]),
}
for name, preds in curves.items():
    print(f"{name:38s} mean squared error on new tasks: "
          f"{np.mean((preds - truth) ** 2):.3f}")

# %%
# One new task
# ------------
t = 3
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(grid, truth[t], "k", lw=2, label="true function")
ax.plot(X_new[t_new == t], y_new[t_new == t], "ko", label="10 shots")
for name, preds in curves.items():
    ax.plot(grid, preds[t], label=name)
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend(fontsize="small")
plt.tight_layout()
plt.show()

# %%
# The learned initialization predicts close to the average of the training
# sinusoids -- itself a sinusoid, about ``-1.6 cos x``, since every phase
# lies between 0 and pi -- and a single step from it on ten points already
# bends it toward the task's own sinusoid; more steps refine it. A network
# trained from a random initialization on ten points cannot do that: the
# prior learned across tasks is what makes ten points enough.
