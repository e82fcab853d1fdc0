"""The hierarchical prior's E-step solves every task in one kernel call.

Each task is pulled toward its own group's centre within one call (per
shard); these tests hold it to the per-group calls it replaces, which pass
each group's centre to a call of its own.
"""

import numpy as np
import pytest
from conftest import make_problem, make_tasks

import skmeta._methods._inner as inner_module
from skmeta._kernels._calls import InverseRequest, solve_inner
from skmeta._kernels._codes import LOGISTIC, POISSON, SQUARED
from skmeta._kernels._layout import make_batch
from skmeta._kernels._newton import KeptInverses
from skmeta._methods._inner import INNER_MAX_ITER, INNER_TOL
from skmeta._methods._nested import Tree, _Hierarchy, _State, adapt_nested

# numerical agreement demanded of the one-call solve
TOL = 1e-10


def _nested_problem(code, seed):
    rng = np.random.default_rng([code, seed])
    group_sizes = [5, 1, 8, 3]
    n_tasks = sum(group_sizes)
    sizes = [6, 0, 9, 3, 11, 0, 7, 14, 2, 5, 8, 0, 4, 10, 6, 1, 12]
    assert len(sizes) == n_tasks
    X, y, sw, tasks = make_tasks(code, sizes, 3, seed=rng, weightless=3)
    problem = make_problem(code, 3, lam2=0.3)
    batch, _ = make_batch(X, y, sw, tasks, n_tasks)
    groups = np.repeat(np.arange(len(group_sizes)), group_sizes)
    tree = Tree((np.zeros(len(group_sizes), dtype=np.intp), groups))
    return rng, batch, problem, tree


class _PerGroup:
    """The E-step as one kernel call per innermost group, each with its own
    kept inverse Hessians moved by its group's change of centre."""

    def __init__(self, batch, problem, hierarchy):
        self.batch, self.problem, self.h = batch, problem, hierarchy
        T, d = batch.n_tasks, problem.n_params
        self.inverses = np.empty((T, d, d))
        self.ok = np.zeros(T, dtype=np.uint8)
        self.kept = None

    def solve(self, state, theta):
        d = self.problem.n_params
        centres = self.h.centres(state, state.means[-1])
        moved = None
        if self.kept is None or not np.array_equal(self.kept[0], state.transfer):
            self.ok[:] = 0
        else:
            moved = centres - self.kept[1]
        self.kept = (state.transfer.copy(), centres.copy())
        parts = []
        for g, (a, b) in enumerate(self.h.tree.task_ranges()):
            kept = KeptInverses(self.inverses[a:b], self.ok[a:b],
                                np.empty((0, d)) if moved is None
                                else moved[g][np.newaxis].copy())
            parts.append(solve_inner(
                self.batch.shard(a, b), self.problem, centres[g], state.transfer,
                theta[a:b], max_iter=INNER_MAX_ITER, tol=INNER_TOL,
                inverse=InverseRequest(posterior=True, covariances=True),
                kept=kept, rowspace=False))
        return tuple(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("theta", "loss", "trace", "covariances"))


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("code", [SQUARED, LOGISTIC, POISSON],
                         ids=["squared", "logistic", "poisson"])
def test_one_call_equals_per_group_calls(code, n_jobs, monkeypatch):
    # several shards even for this small problem
    monkeypatch.setattr(inner_module, "MIN_SHARD_ENTRIES", 0)
    rng, batch, problem, tree = _nested_problem(code, 3)
    d = problem.n_params
    hierarchy = _Hierarchy(batch, problem, tree, structure=None,
                           learn_gamma=True, gamma=1.0, learn_mu0=True,
                           n_jobs=n_jobs)
    reference = _PerGroup(batch, problem, hierarchy)
    state = hierarchy.initial_state(np.zeros(d))
    theta = state.means[-1][hierarchy.group_of_task].copy()
    transfer = rng.uniform(0.5, 2.0, d)
    means = rng.normal(scale=0.5, size=(len(tree.task_ranges()), d))
    # fresh solves; then moved group means under the same precision (the
    # kept inverses predict each task's move from its own group's); then a
    # new precision (nothing kept is used)
    states = [
        _State(state.mu0, (means,), transfer, state.precisions, 1.0),
        _State(state.mu0, (means + rng.normal(scale=0.1, size=means.shape),),
               transfer, state.precisions, 1.0),
        _State(state.mu0, (means,), 1.5 * transfer, state.precisions, 1.0),
    ]
    with hierarchy.solver:
        for current in states:
            ours = hierarchy.solve(current, theta)
            theirs = reference.solve(current, theta)
            for name, a, b in zip(("theta", "loss", "trace", "covariances"),
                                  ours, theirs):
                np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL,
                                           err_msg=name)
            theta = ours[0]
    # a task without weighted rows sits at its group's mean: its transfer
    # term's pull toward the centre balances the base penalty's
    empty = batch.task_weights() == 0
    assert empty.any()
    np.testing.assert_allclose(theta[empty],
                               means[hierarchy.group_of_task][empty],
                               rtol=1e-8, atol=1e-10)


def test_adaptation_in_one_call_equals_per_node_calls():
    rng, batch, problem, tree = _nested_problem(LOGISTIC, 5)
    d = problem.n_params
    hierarchy = _Hierarchy(batch, problem, tree, structure=None,
                           learn_gamma=True, gamma=1.0, learn_mu0=True,
                           n_jobs=1)
    state = hierarchy.initial_state(np.zeros(d))
    state = _State(state.mu0, state.means, rng.uniform(0.5, 2.0, d),
                   state.precisions, 1.0)
    prior = hierarchy.task_prior(state)
    node_means = rng.normal(scale=0.5, size=(3, d))
    node_of_task = rng.integers(0, 3, batch.n_tasks)
    theta = adapt_nested(batch, problem, prior, node_means, node_of_task)
    factor = (prior.precision + prior.ridge) / prior.precision
    for node in range(3):
        index = np.flatnonzero(node_of_task == node)
        alone = solve_inner(batch.subset(index), problem,
                            node_means[node] * factor, prior.precision,
                            np.tile(node_means[node], (len(index), 1)),
                            max_iter=INNER_MAX_ITER, tol=INNER_TOL)
        np.testing.assert_allclose(theta[index], alone.theta, rtol=TOL,
                                   atol=TOL)
