"""Streaming tasks: ``partial_fit`` moves the prior online (incremental EM).

References: one batch fit on all the tasks (the issue's target: twenty
chunks of 200 tasks within 5% of one fit on 4,000), the statistics of the
fitted tasks computed directly from their parameters, and the EM fixed point
of the batch fit.
"""

import pickle
import warnings
from dataclasses import replace

import numpy as np
import pytest
from conftest import InnerObjective
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import PoissonRegressor, Ridge
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MetaClassifier, MetaRegressor
from skmeta._methods._inner import InnerSolver
from skmeta._methods._proximal import prior_from_moments
from skmeta._methods._statistics import OnlinePrior, TaskStatistics
from skmeta.datasets import make_meta_regression

N_TASKS, CHUNK = 4000, 200


def relative(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


def logistic_tasks(n_tasks, n_per_task, seed=0):
    """Tasks of a hierarchical logistic model, ``theta_t ~ N(theta0, D)``."""
    rng = np.random.default_rng(seed)
    coef = np.array([1.0, -0.5, 0.5, 0.0]) + rng.standard_normal(
        (n_tasks, 4)) * np.array([0.8, 0.6, 0.5, 0.6])
    intercept = 0.3 + 0.5 * rng.standard_normal(n_tasks)
    tasks = np.repeat(np.arange(n_tasks), n_per_task)
    X = rng.standard_normal((tasks.size, 4))
    z = np.einsum("ij,ij->i", X, coef[tasks]) + intercept[tasks]
    y = (rng.random(tasks.size) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    return X, y, tasks


def regression_tasks(n_tasks, seed=0):
    return make_meta_regression(n_tasks=n_tasks, n_samples_per_task=20,
                                n_features=5, n_informative=5, noise=0.5,
                                random_state=seed)


def stream(meta, X, y, tasks, chunk, **kwargs):
    for start in range(0, int(tasks.max()) + 1, chunk):
        rows = (tasks >= start) & (tasks < start + chunk)
        meta.partial_fit(X[rows], y[rows], tasks=tasks[rows], **kwargs)
    return meta


# --------------------------------------------------------------------------
# the target: twenty chunks of 200 tasks against one fit on 4,000
# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind, prior", [("regressor", "diagonal"),
                                         ("regressor", "full"),
                                         ("classifier", "diagonal")])
def test_twenty_chunks_match_one_fit_on_all_tasks(kind, prior):
    if kind == "regressor":
        X, y, tasks = regression_tasks(N_TASKS + 50)
        Meta, rows_per_task = MetaRegressor, 20
    else:
        X, y, tasks = logistic_tasks(N_TASKS + 50, 50)
        Meta, rows_per_task = MetaClassifier, 50
    train = tasks < N_TASKS
    batch = Meta(prior=prior).fit(X[train], y[train], tasks=tasks[train])
    online = stream(Meta(prior=prior), X[train], y[train], tasks[train], CHUNK)
    assert online.n_tasks_seen_ == N_TASKS
    assert_array_equal(online.tasks_, batch.tasks_)
    assert relative(online.meta_params_, batch.meta_params_) < 0.05
    assert relative(online.prior_precision_, batch.prior_precision_) < 0.05
    assert relative(online.gamma_, batch.gamma_) < 0.05

    new = ~train
    if kind == "regressor":
        def predict(model, Z, **kwargs):
            return model.predict(Z, **kwargs)
    else:
        def predict(model, Z, **kwargs):
            return model.predict_proba(Z, **kwargs)
    # zero-shot: an unseen task gets the prior model
    assert relative(predict(online, X[new], tasks=tasks[new]),
                    predict(batch, X[new], tasks=tasks[new])) < 0.05
    # few-shot: unseen tasks adapted from 5 rows each
    support = new & (np.arange(tasks.size) % rows_per_task < 5)
    query = new & ~support
    from_online = online.adapt_tasks(X[support], y[support],
                                     tasks=tasks[support])
    from_batch = batch.adapt_tasks(X[support], y[support], tasks=tasks[support])
    got = np.concatenate([predict(from_online[t], X[query & (tasks == t)])
                          for t in from_online])
    expected = np.concatenate([predict(from_batch[t], X[query & (tasks == t)])
                               for t in from_online])
    assert relative(got, expected) < 0.05


# --------------------------------------------------------------------------
# the statistics: exact where the prior does not move
# --------------------------------------------------------------------------
def test_one_chunk_is_fit_and_its_statistics_are_the_tasks():
    X, y, tasks = regression_tasks(60, seed=1)
    fitted = MetaRegressor(prior="full").fit(X, y, tasks=tasks)
    first = MetaRegressor(prior="full").partial_fit(X, y, tasks=tasks)
    for name in ("meta_params_", "prior_precision_", "task_params_",
                 "noise_variance_"):
        assert_array_equal(getattr(first, name), getattr(fitted, name))
    stats = OnlinePrior.from_state(first._online).statistics
    theta = first.task_params_
    assert stats.n_tasks == 60 == first.n_tasks_seen_
    assert_allclose(stats.mean, theta.mean(axis=0), rtol=1e-12)
    centred = theta - theta.mean(axis=0)
    assert_allclose(stats.scatter, centred.T @ centred, rtol=1e-10)
    # the E-step's posterior term is the sum of the tasks' Laplace posterior
    # covariances (task_posterior_cov), computed apart by predict's code
    covariances = sum(first.task_posterior_cov(t) for t in first.tasks_)
    assert_allclose(stats.posterior, covariances, rtol=1e-4)
    assert stats.total_weight == X.shape[0]
    assert_allclose(stats.y_scatter / stats.n_rows, np.var(y), rtol=1e-12)


def test_statistics_equal_the_batch_ones_when_the_prior_does_not_move():
    # a given prior mean and a fixed isotropic strength: nothing is learned,
    # so a stream must give exactly what one fit on all the tasks gives
    X, y, tasks = regression_tasks(80, seed=2)
    prior = Ridge(alpha=1.0).fit(X, y)
    params = dict(prior_estimator=prior, gamma=3.0, prior="isotropic")
    batch = MetaRegressor(**params).fit(X, y, tasks=tasks)
    online = stream(MetaRegressor(**params), X, y, tasks, 20)
    assert_array_equal(online.meta_params_, batch.meta_params_)
    assert_allclose(online.task_params_, batch.task_params_, rtol=1e-9,
                    atol=1e-12)
    a, b = (OnlinePrior.from_state(m._online).statistics
            for m in (online, batch))
    assert a.n_tasks == b.n_tasks == 80
    assert_allclose(a.mean, b.mean, rtol=1e-9)
    assert_allclose(a.scatter, b.scatter, rtol=1e-8)
    assert_allclose(a.sum_scale, b.sum_scale, rtol=1e-12)
    assert_allclose(a.total_weight, b.total_weight, rtol=1e-12)


def test_the_online_m_step_is_the_batch_one():
    # the fitted prior is a fixed point of empirical Bayes: the online M-step
    # on the fit's statistics must give it back
    X, y, tasks = regression_tasks(200, seed=3)
    meta = MetaRegressor(prior="diagonal", tol=1e-10, max_iter=2000).fit(
        X, y, tasks=tasks)
    online = OnlinePrior.from_state(meta._online)
    prior, stats = online.prior, online.statistics
    moments, diag = stats.moments(prior.theta0)
    again = prior_from_moments(prior, moments, diag, stats.n_tasks,
                               stats.noise_variance(), stats.mean_scale,
                               structure=online.structure,
                               learn_gamma=online.learn_gamma,
                               ridge=prior.ridge)
    assert_allclose(again.precision, prior.precision, rtol=1e-4)
    assert_allclose(again.dispersion, prior.dispersion, rtol=1e-4)
    # the prior mean's stationarity: the tasks' pull on it balances the base
    # penalty's, once (Ridge sums its loss), at most one task's prior
    # precision: n M (mean - theta0) = min(D, M) theta0. These tasks spread
    # wider than alpha=1 lets them, on every coefficient: M < D there
    M = np.diag(prior.combined_precision)
    assert np.all(np.diag(M)[:-1] < prior.ridge[:-1])
    assert_allclose(stats.n_tasks * M @ (stats.mean - prior.theta0),
                    np.minimum(prior.ridge, np.diag(M)) * prior.theta0,
                    rtol=1e-4, atol=1e-6)


def test_the_online_m_step_is_the_batch_one_for_tasks_of_unequal_sizes():
    # PoissonRegressor averages its loss: tasks of 3 to 20 rows each count
    # in the M-step in the units of their own prior (s_t their rows; the
    # batch M-step is checked against its closed form in test_priors), and
    # the online statistics keep their moments so: the fit's prior is
    # their fixed point too
    X, y, tasks = regression_tasks(40, seed=5)
    rng = np.random.default_rng(5)
    rows = np.concatenate([np.flatnonzero(tasks == t)[:rng.integers(3, 21)]
                           for t in range(40)])
    counts = rng.poisson(np.exp(0.2 * y / y.std()))
    meta = MetaRegressor(PoissonRegressor(alpha=0.1), prior="diagonal",
                         tol=1e-10, max_iter=2000).fit(
        X[rows], counts[rows], tasks=tasks[rows])
    online = OnlinePrior.from_state(meta._online)
    prior, stats = online.prior, online.statistics
    moments, diag = stats.moments(prior.theta0)
    again = prior_from_moments(prior, moments, diag, stats.n_tasks,
                               prior.dispersion, stats.mean_scale,
                               structure=online.structure,
                               learn_gamma=online.learn_gamma,
                               ridge=prior.ridge)
    assert_allclose(again.precision, prior.precision, rtol=1e-4)


def test_a_chunk_of_other_sizes_leaves_the_batch_fixed_point_in_place():
    # PoissonRegressor on 20 tasks of 2-5 rows and 20 of 25-39: the batch
    # fit's prior, its statistics taken for the small tasks, and one online
    # M-step with the large ones as the chunk must give that prior back --
    # the online M-step reading every task seen in the units of the mean
    # scale of all of them (with the chunk's own it moved the precision by
    # 63 %)
    from skmeta._methods._online import _OnlineIteration
    from skmeta._methods._proximal import _Iteration
    from skmeta._semi_supervised import TaskRows
    from skmeta._validation import encode_tasks

    rng = np.random.default_rng(5)
    sizes = np.r_[rng.integers(2, 6, 20), rng.integers(25, 40, 20)]
    tasks = np.repeat(np.arange(40), sizes)
    X = rng.standard_normal((sizes.sum(), 3))
    coef = np.array([0.5, -0.3, 0.2]) + 0.3 * rng.standard_normal((40, 3))
    y = rng.poisson(np.exp(np.einsum("ij,ij->i", X, coef[tasks]) + 0.5)
                    ).astype(float)
    meta = MetaRegressor(PoissonRegressor(alpha=0.1), prior="diagonal",
                         tol=1e-10, max_iter=3000).fit(X, y, tasks=tasks)
    online = OnlinePrior.from_state(meta._online)
    prior, problem = online.prior, meta._problem()

    def solved(mask, make_step):
        codes = encode_tasks(tasks[mask])[1]
        rows = TaskRows(X[mask], y[mask], np.ones(mask.sum()), codes,
                        len(np.unique(codes)))
        batch = meta._task_batch(meta._fitted_family(), rows)
        with InnerSolver(batch, problem) as solver:
            step = make_step(solver)
            return step, step.solve(prior, np.tile(prior.theta0,
                                                   (batch.n_tasks, 1)),
                                    tol=1e-12)

    small, large = tasks < 20, tasks >= 20
    first, solutions = solved(small, lambda solver: _Iteration(
        solver, learn_theta0=online.learn_theta0, structure=online.structure,
        learn_gamma=online.learn_gamma, count_penalty=online.count_penalty))
    past = replace(online, statistics=TaskStatistics.of(solutions, prior,
                                                         first))
    step, solutions = solved(large, lambda solver: _OnlineIteration(solver,
                                                                    past))
    proposal = step.propose(prior, solutions)
    assert_allclose(proposal.precision, prior.precision, rtol=1e-4)
    assert_allclose(proposal.theta0, prior.theta0, rtol=1e-4, atol=1e-6)


def test_chunks_of_averaged_losses_hold_the_mean_by_one_tasks_penalty():
    # PoissonRegressor averages its loss over each task's rows; the prior
    # mean's own prior is one task's penalty all the same, and after two
    # chunks of partial_fit the mean balances every task seen so far
    # against it: n M (mean - theta0) = D theta0
    X, y, tasks = regression_tasks(60, seed=4)
    counts = np.random.default_rng(4).poisson(np.exp(0.2 * y / y.std()))
    meta = MetaRegressor(PoissonRegressor(alpha=0.1), prior="isotropic",
                         tol=1e-8, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stream(meta, X, counts, tasks, chunk=30)
    online = OnlinePrior.from_state(meta._online)
    prior, stats = online.prior, online.statistics
    assert stats.n_tasks == 60
    M = np.diag(prior.combined_precision)
    # (both sides are small: the mean sits within one task's penalty of the
    # tasks' mean, so EM's tolerance on it shows at 1e-5 of their size)
    assert_allclose(stats.n_tasks * M @ (stats.mean - prior.theta0),
                    prior.ridge * prior.theta0, rtol=1e-4, atol=1e-7)


def test_chunk_tasks_are_solved_from_the_prior_mean():
    # a learned prior whose transfer center lies far beyond its mean (weak
    # transfer along the base penalty's pull: 250 where the mean is 0.2).
    # partial_fit solved the chunk's tasks, known and new, from that
    # center: exp overflowed and the fit raised on non-finite parameters.
    # From the mean, every task of a chunk ends at its exact optimum under
    # the prior it is solved with.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12 * 15, 3))
    tasks = np.repeat(np.arange(12), 15)
    y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.2)).astype(float)
    first = tasks < 8
    meta = MetaRegressor(PoissonRegressor(), prior="full").fit(
        X[first], y[first], tasks=tasks[first])
    meta.set_params(tol=1e-8, max_iter=1000)
    state = meta._online
    mean = np.array([0.2, 0.1, 0.0, 0.5])
    ridge = np.asarray(state["ridge"])
    start = np.column_stack([ridge * mean, rng.normal(size=(4, 3))])
    V = np.linalg.qr(start)[0]
    precision = V @ np.diag([8e-4, 3.0, 4.0, 5.0]) @ V.T
    assert np.abs(np.linalg.solve(precision, (precision + np.diag(ridge))
                                  @ mean)).max() > 100
    state.update(theta0=mean, shape=precision, gamma=1.0)

    def assert_optimal(task_labels):
        final = meta.gamma_ * meta.prior_shape_
        for task in task_labels:
            rows = tasks == task
            objective = InnerObjective.from_problem(
                meta._problem(), X[rows], y[rows], None,
                theta0=meta.transfer_center_, precision=final)
            gradient = objective.grad(meta.task_params_[task])
            assert np.abs(gradient).max() < 1e-8

    # a known task's new rows: refitted under the prior as it stands
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta.partial_fit(X[tasks == 0], y[tasks == 0], tasks=tasks[tasks == 0])
    assert_allclose(meta.meta_params_, mean)
    assert_optimal([0])
    # new tasks: online empirical Bayes from the same prior
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta.partial_fit(X[~first], y[~first], tasks=tasks[~first])
    assert_optimal([8, 9, 10, 11])


def _quadratic_statistics(centres, hessian, prior, scale=None):
    """Statistics of tasks ``1/2 (theta - c_t)' H (theta - c_t)`` solved
    exactly under ``prior``, of scales ``scale`` (ones by default): modes,
    inverse Hessians, from the definitions."""
    M = np.diag(prior.precision) if prior.precision.ndim == 1 \
        else prior.precision
    A = hessian + M
    modes = np.linalg.solve(A, (centres @ hessian.T + M @ prior.theta0).T).T
    n = len(centres)
    scale = np.ones(n) if scale is None else scale
    inverse = np.linalg.inv(A)
    scaled_mean = scale @ modes / scale.sum()
    dev = modes - scaled_mean
    return TaskStatistics(
        n_tasks=n, mean=modes.mean(axis=0), scaled_mean=scaled_mean,
        scatter=(dev * scale[:, None]).T @ dev,
        posterior=prior.dispersion * n * inverse, sum_scale=float(scale.sum()),
        expected_rss=0.0, total_weight=float(n), n_rows=0, y_mean=0.0,
        y_scatter=0.0, inverse_sum=n * inverse, theta0=prior.theta0,
        precision=prior.precision, dispersion=prior.dispersion)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_tasks=st.integers(1, 30),
       d=st.integers(1, 5), full=st.booleans())
def test_prior_swap_is_exact_for_tasks_of_equal_hessians(seed, n_tasks, d,
                                                         full):
    from skmeta._methods._prior import Prior
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((d, d + 2))
    hessian = G @ G.T + 0.1 * np.eye(d)
    centres = rng.standard_normal((n_tasks, d)) * 3.0

    def random_prior():
        if full:
            B = rng.standard_normal((d, d))
            shape = B @ B.T + 0.5 * np.eye(d)
        else:
            shape = rng.uniform(0.2, 5.0, d)
        return Prior(theta0=rng.standard_normal(d), shape=shape,
                     gamma=float(rng.uniform(0.1, 10.0)),
                     dispersion=float(rng.uniform(0.5, 2.0)))

    before, after = random_prior(), random_prior()
    # tasks of unequal scales (averaged losses): both means move alike
    scale = rng.uniform(0.5, 20.0, n_tasks)
    carried = _quadratic_statistics(centres, hessian, before,
                                    scale).swapped(after)
    direct = _quadratic_statistics(centres, hessian, after, scale)
    assert_allclose(carried.mean, direct.mean, rtol=1e-7, atol=1e-9)
    assert_allclose(carried.scaled_mean, direct.scaled_mean, rtol=1e-7,
                    atol=1e-9)
    assert_allclose(carried.scatter, direct.scatter, rtol=1e-6, atol=1e-8)
    assert_allclose(carried.posterior, direct.posterior, rtol=1e-7, atol=1e-10)
    assert_allclose(carried.inverse_sum, direct.inverse_sum, rtol=1e-7,
                    atol=1e-10)
    # and unchanged under its own prior
    same = direct.swapped(after)
    assert same is direct


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_tasks=st.integers(2, 40),
       cut=st.floats(0.0, 1.0), d=st.integers(1, 4))
def test_merged_statistics_are_those_of_all_tasks(seed, n_tasks, cut, d):
    from skmeta._methods._prior import Prior
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((d, d))
    hessian = G @ G.T + np.eye(d)
    centres = 100.0 + rng.standard_normal((n_tasks, d))  # far from 0
    prior = Prior(theta0=np.full(d, 100.0), shape=np.ones(d), gamma=2.0)
    k = min(max(int(cut * n_tasks), 1), n_tasks - 1)
    scale = rng.uniform(0.5, 20.0, n_tasks)
    merged = _quadratic_statistics(centres[:k], hessian, prior,
                                   scale[:k]).merge(
        _quadratic_statistics(centres[k:], hessian, prior, scale[k:]))
    whole = _quadratic_statistics(centres, hessian, prior, scale)
    assert merged.n_tasks == n_tasks
    assert merged.sum_scale == pytest.approx(whole.sum_scale, rel=1e-12)
    assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    assert_allclose(merged.scaled_mean, whole.scaled_mean, rtol=1e-12)
    assert_allclose(merged.scatter, whole.scatter, rtol=1e-7, atol=1e-9)
    assert_allclose(merged.inverse_sum, whole.inverse_sum, rtol=1e-12)


# --------------------------------------------------------------------------
# memory, dropped tasks, persistence, bad input
# --------------------------------------------------------------------------
def _fitted_bytes(meta):
    """Bytes of every array in the fitted state, dataclasses followed."""
    seen = 0
    stack = [value for key, value in vars(meta).items() if key.endswith("_")
             or key.startswith("_")]
    while stack:
        value = stack.pop()
        if isinstance(value, np.ndarray):
            seen += value.nbytes if value.dtype != object else 8 * value.size
        elif hasattr(value, "__dataclass_fields__"):
            stack.extend(getattr(value, name)
                         for name in value.__dataclass_fields__)
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return seen


@pytest.mark.parametrize("Meta", [MetaRegressor, MetaClassifier])
def test_memory_does_not_grow_with_the_chunks_without_task_params(Meta):
    if Meta is MetaRegressor:
        X, y, tasks = regression_tasks(300, seed=4)
    else:
        X, y, tasks = logistic_tasks(300, 20, seed=4)
    meta = Meta(prior="full", keep_task_params=False)
    kept = Meta(prior="full")
    sizes, growth = [], []
    for start in range(0, 300, 30):
        rows = (tasks >= start) & (tasks < start + 30)
        meta.partial_fit(X[rows], y[rows], tasks=tasks[rows])
        kept.partial_fit(X[rows], y[rows], tasks=tasks[rows])
        sizes.append(_fitted_bytes(meta))
        growth.append(_fitted_bytes(kept))
        # the last chunk's tasks only
        assert_array_equal(meta.tasks_, np.arange(start, start + 30))
        assert meta.task_params_.shape == (30, meta.meta_params_.shape[0])
    assert meta.n_tasks_seen_ == kept.n_tasks_seen_ == 300
    assert len(set(sizes)) == 1, sizes
    # keeping them, the state grows by the tasks' parameters (and the
    # regressor's posterior covariances) alone
    d = meta.meta_params_.shape[0]
    per_task = 8 * d + (8 * d * d if Meta is MetaRegressor else 0)
    assert set(np.diff(growth)) == {30 * (per_task + 8)}
    # the prior does not depend on whether the tasks' parameters are kept
    assert_allclose(meta.meta_params_, kept.meta_params_, rtol=1e-12)
    assert_allclose(meta.prior_precision_, kept.prior_precision_, rtol=1e-12)


def test_dropped_tasks_are_unseen_and_say_so():
    X, y, tasks = regression_tasks(40, seed=5)
    meta = stream(MetaRegressor(keep_task_params=False), X, y, tasks, 20)
    assert_array_equal(meta.tasks_, np.arange(20, 40))
    with pytest.raises(ValueError, match="keep_task_params=False.*dropped"):
        meta.task_estimator(3)
    # predicted as any task not among tasks_: by the prior model
    rows = tasks == 3
    assert_allclose(meta.predict(X[rows], tasks=tasks[rows]),
                    meta.meta_estimator_.predict(X[rows]), rtol=1e-12)
    kept = stream(MetaRegressor(), X, y, tasks, 20)
    with pytest.raises(ValueError, match="not seen in fit") as info:
        kept.task_estimator(99)
    assert "keep_task_params" not in str(info.value)


def test_pickling_mid_stream_continues_identically():
    X, y, tasks = logistic_tasks(90, 20, seed=6)
    first, second, third = (tasks < 30), (tasks >= 30) & (tasks < 60), tasks >= 60
    meta = MetaClassifier(prior="diagonal")
    meta.partial_fit(X[first], y[first], tasks=tasks[first])
    meta.partial_fit(X[second], y[second], tasks=tasks[second])
    restored = pickle.loads(pickle.dumps(meta))
    for model in (meta, restored):
        model.partial_fit(X[third], y[third], tasks=tasks[third])
    for name in ("meta_params_", "prior_precision_", "task_params_", "gamma_"):
        assert_array_equal(getattr(restored, name), getattr(meta, name))
    assert restored.n_tasks_seen_ == 90


def test_a_stream_saved_before_the_scaled_moments_continues():
    # a model pickled by an earlier skmeta keeps its tasks' moments in the
    # units of a task of the mean scale, without their scale-weighted mean:
    # they are converted on loading (exactly for tasks of equal scales)
    X, y, tasks = regression_tasks(60, seed=7)
    counts = np.random.default_rng(7).poisson(np.exp(0.2 * y / y.std()))
    first, second = tasks < 30, tasks >= 30
    meta = MetaRegressor(PoissonRegressor(alpha=0.1), prior="diagonal")
    meta.partial_fit(X[first], counts[first], tasks=tasks[first])
    old = pickle.loads(pickle.dumps(meta))
    stats = old._online["statistics"]
    scale = stats["sum_scale"] / stats["n_tasks"]
    del stats["scaled_mean"]
    stats["scatter"] = stats["scatter"] / scale
    stats["posterior"] = stats["posterior"] / scale
    for model in (meta, old):
        model.partial_fit(X[second], counts[second], tasks=tasks[second])
    for name in ("meta_params_", "prior_precision_", "task_params_"):
        assert_allclose(getattr(old, name), getattr(meta, name), rtol=1e-9,
                         atol=1e-12)


def test_bad_input_is_refused_and_leaves_the_model_unchanged():
    X, y, tasks = regression_tasks(40, seed=7)
    meta = MetaRegressor(prior="diagonal").partial_fit(X, y, tasks=tasks)
    before = pickle.dumps(meta)
    Xn, yn, tn = regression_tasks(5, seed=8)
    tn = tn + 100
    with pytest.raises(ValueError, match="features"):
        meta.partial_fit(Xn[:, :3], yn, tasks=tn)
    bad = Xn.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        meta.partial_fit(bad, yn, tasks=tn)
    with pytest.raises(ValueError, match="tasks"):
        meta.partial_fit(Xn, yn, tasks=tn[:-1])
    with pytest.raises(ValueError, match="tasks=|task_column"):
        meta.partial_fit(Xn, yn)
    with pytest.raises(ValueError, match="different type"):
        meta.partial_fit(Xn, yn, tasks=tn.astype(str))
    with pytest.raises(ValueError, match="Negative values.*sample_weight"):
        meta.partial_fit(Xn, yn, tasks=tn, sample_weight=-np.ones(yn.size))
    assert pickle.dumps(meta) == before
    with pytest.raises(InvalidParameterError, match="keep_task_params"):
        MetaRegressor(keep_task_params="no").fit(X, y, tasks=tasks)


# --------------------------------------------------------------------------
# where the prior stays fixed (documented in partial_fit)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("params", [dict(method="reptile", max_iter=20,
                                         random_state=0),
                                    dict(prior="mixture",
                                         n_prior_components=2)],
                         ids=["reptile", "mixture"])
def test_methods_without_an_online_prior_keep_it_fixed(params):
    X, y, tasks = regression_tasks(30, seed=9)
    meta = MetaRegressor(**params).fit(X[tasks < 20], y[tasks < 20],
                                       tasks=tasks[tasks < 20])
    theta0 = meta.meta_params_.copy()
    new = tasks >= 20
    expected = meta.adapt_tasks(X[new], y[new], tasks=tasks[new])
    meta.partial_fit(X[new], y[new], tasks=tasks[new])
    assert_array_equal(meta.meta_params_, theta0)
    assert meta.n_tasks_seen_ == 30
    for t, model in expected.items():
        assert_allclose(meta.task_estimator(t).coef_, model.coef_, rtol=1e-10)


def test_a_chunk_that_empirical_bayes_cannot_use_leaves_the_prior(monkeypatch):
    from sklearn.exceptions import ConvergenceWarning

    from skmeta._methods import _online

    X, y, tasks = regression_tasks(60, seed=10)
    meta = MetaRegressor(prior="diagonal").partial_fit(
        X[tasks < 40], y[tasks < 40], tasks=tasks[tasks < 40])
    theta0, precision = meta.meta_params_.copy(), meta.prior_precision_.copy()
    new = tasks >= 40
    expected = meta.adapt_tasks(X[new], y[new], tasks=tasks[new])

    def runs_away(*args, **kwargs):
        raise FloatingPointError("the learned prior precision is degenerate")

    monkeypatch.setattr(_online, "_empirical_bayes", runs_away)
    with pytest.warns(ConvergenceWarning, match="could not be moved"):
        meta.partial_fit(X[new], y[new], tasks=tasks[new])
    assert_array_equal(meta.meta_params_, theta0)
    assert_array_equal(meta.prior_precision_, precision)
    # the chunk's tasks entered the statistics by their E-step alone
    assert meta.n_tasks_seen_ == meta._online["statistics"]["n_tasks"] == 60
    for t, model in expected.items():
        assert_allclose(meta.task_estimator(t).coef_, model.coef_, rtol=1e-6,
                        atol=1e-9)


def test_a_chunk_whose_rows_a_run_away_prior_separates_leaves_the_prior(
        monkeypatch):
    # as in a batch fit, a learned prior under which the chunk's classifiers
    # separate their rows with vanishing loss is degenerate, whether or not
    # anything overflowed on the way: here the chunk's empirical Bayes ends
    # at a precision fallen a trillion-fold, on separable tasks
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from skmeta._methods import _online

    X, y, tasks = logistic_tasks(60, 30, seed=3)
    X[tasks >= 40, 0] += 20.0 * (y[tasks >= 40] - 0.5)
    meta = MetaClassifier(LogisticRegression(penalty=None),
                          prior="diagonal").partial_fit(
        X[tasks < 40], y[tasks < 40], tasks=tasks[tasks < 40])
    theta0, precision = meta.meta_params_.copy(), meta.prior_precision_.copy()
    new = tasks >= 40
    expected = meta.adapt_tasks(X[new], y[new], tasks=tasks[new])
    empirical_bayes = _online._empirical_bayes

    def runs_away(step, prior, theta, **kwargs):
        fit = empirical_bayes(step, prior, theta, **kwargs)
        fit.prior = replace(fit.prior, gamma=1e-12 * fit.prior.gamma)
        fit.solutions = step.solve(fit.prior, fit.solutions.theta)
        return fit

    monkeypatch.setattr(_online, "_empirical_bayes", runs_away)
    with pytest.warns(ConvergenceWarning, match="could not be moved"):
        meta.partial_fit(X[new], y[new], tasks=tasks[new])
    assert_array_equal(meta.meta_params_, theta0)
    assert_array_equal(meta.prior_precision_, precision)
    assert meta.n_tasks_seen_ == 60
    for t, model in expected.items():
        assert_allclose(meta.task_estimator(t).coef_, model.coef_, rtol=1e-6,
                        atol=1e-9)


def test_earlier_tasks_keep_the_models_of_their_call_and_a_new_pass_refits():
    # the prior swap moves the running sums, not the stored models
    X, y, tasks = make_meta_regression(n_tasks=40, n_samples_per_task=8,
                                       n_features=3, noise=1.0, random_state=0)
    first = tasks < 20
    meta = MetaRegressor(Ridge(alpha=0.1)).fit(X[first], y[first],
                                               tasks=tasks[first])
    before = meta.task_params_.copy()
    covariance = meta.task_posterior_cov(0)
    prior = meta.prior_precision_.copy()
    meta.partial_fit(X[~first], y[~first], tasks=tasks[~first])
    assert not np.allclose(meta.prior_precision_, prior)
    assert_array_equal(meta.task_params_[:20], before)
    assert_array_equal(meta.task_posterior_cov(0), covariance)
    # passing task 0's rows again refits it under the current prior: as
    # adapt, which solves a task under the prior without moving it
    rows = tasks == 0
    reference = meta.adapt(X[rows], y[rows])
    meta.partial_fit(X[rows], y[rows], tasks=tasks[rows])
    assert_allclose(meta.task_params_[0][:3], reference.coef_, rtol=1e-8)


def test_errors_name_dropped_tasks_and_the_first_fits_classes():
    X, y, tasks = make_meta_regression(n_tasks=8, n_samples_per_task=10,
                                       n_features=3, random_state=0)
    meta = MetaRegressor(keep_task_params=False).fit(
        X[tasks < 4], y[tasks < 4], tasks=tasks[tasks < 4])
    meta.partial_fit(X[tasks >= 4], y[tasks >= 4], tasks=tasks[tasks >= 4])
    with pytest.raises(ValueError, match="keep_task_params=False only the tasks"):
        meta.task_posterior_cov(0)
    classifier = MetaClassifier().fit(X, (y > np.median(y)).astype(int),
                                      tasks=tasks)
    with pytest.raises(ValueError, match="first fitted with .by fit or a first"):
        classifier.partial_fit(X[:5], np.r_[0, 1, 0, 1, 0], tasks=[99] * 5,
                               classes=[0, 1, 2])


def test_parameters_set_after_fit_are_said_to_be_unused():
    # adapt and partial_fit continue the fit as it was made: a method set
    # since then crashed adapt inside the kernels (reptile's steps on a
    # proximal fit, which has no inner_lr_), and other changes were ignored
    # without a word
    X, y, tasks = make_meta_regression(n_tasks=12, n_samples_per_task=15,
                                       n_features=3, random_state=0)
    meta = MetaRegressor(Ridge(alpha=1.0), prior="isotropic", gamma=1.0).fit(
        X, y, tasks=tasks)
    before = meta.adapt(X[:8], y[:8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # run-time settings are read afresh
        meta.set_params(n_jobs=2, verbose=0, keep_task_params=False)
        meta.adapt(X[:8], y[:8])
        meta.set_params(keep_task_params=True)
        # a base estimator whose random_state is a generator: its clone
        # holds a copy, the same setting
        base = Ridge(solver="sag", random_state=np.random.RandomState(0))
        seeded = MetaRegressor(base, prior="isotropic", gamma=1.0).fit(
            X, y, tasks=tasks)
        seeded.adapt(X[:8], y[:8])
    meta.set_params(method="reptile", prior="auto")
    with pytest.warns(UserWarning, match="method, prior changed since fit; "
                      "adapt continues that fit"):
        after = meta.adapt(X[:8], y[:8])
    assert_allclose(after.coef_, before.coef_, rtol=1e-12)
    meta.set_params(method="proximal", prior="isotropic", estimator__alpha=50.0)
    with pytest.warns(UserWarning, match="estimator changed since fit; "
                      "partial_fit continues"):
        meta.partial_fit(X[:30], y[:30], tasks=tasks[:30] + 100)
    # a new fit takes them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta.fit(X, y, tasks=tasks).adapt(X[:8], y[:8])
