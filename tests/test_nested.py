"""Nested tasks (stores in regions): the hierarchical empirical-Bayes prior."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import poisson_tasks_of_unequal_sizes
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg, optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold

from skmeta import MetaClassifier, MetaRegressor
from skmeta._validation import (
    NestedLabels,
    check_any_task_labels,
    encode_nested,
    lookup_nested,
    nested_label_array,
)
from skmeta.datasets import make_nested_tasks
from skmeta.model_selection import FewShotSplit


def _first_rows(task, k):
    """Mask of the first ``k`` rows of each task (rows grouped by task)."""
    start = np.r_[True, task[1:] != task[:-1]]
    index = np.arange(task.size)
    return index - np.maximum.accumulate(np.where(start, index, 0)) < k


@pytest.fixture(scope="module")
def stores():
    return make_nested_tasks(n_groups=6, n_tasks_per_group=6,
                             n_samples_per_task=10, n_features=3,
                             group_spread=2.0, task_spread=0.2, noise=0.3,
                             random_state=0)


def test_new_store_from_its_region_beats_the_flat_prior():
    """The issue's target: a new store with 4 rows, R^2 >= 0.85 where the
    flat prior gets about 0.3."""
    X, y, tasks = make_nested_tasks(
        n_groups=50, n_tasks_per_group=10, n_samples_per_task=20,
        n_features=20, group_spread=2.0, task_spread=0.2, noise=0.5,
        random_state=0)
    new = tasks[:, 1] % 10 == 9  # one new store in every region
    support = new & _first_rows(tasks[:, 1], 4)
    query = new & ~support
    nested = MetaRegressor(Ridge(alpha=1e-6)).fit(X[~new], y[~new],
                                                  tasks=tasks[~new])
    flat = MetaRegressor(Ridge(alpha=1e-6)).fit(X[~new], y[~new],
                                                tasks=tasks[~new, 1])
    by_nested = nested.adapt_tasks(X[support], y[support], tasks=tasks[support])
    by_flat = flat.adapt_tasks(X[support], y[support], tasks=tasks[support, 1])
    rows = np.flatnonzero(query)
    pred_nested = np.empty(rows.size)
    pred_flat = np.empty(rows.size)
    for store in np.unique(tasks[rows, 1]):
        mine = tasks[rows, 1] == store
        region = tasks[rows[mine][0], 0]
        pred_nested[mine] = by_nested[(region, store)].predict(X[rows[mine]])
        pred_flat[mine] = by_flat[store].predict(X[rows[mine]])
    r2_nested = r2_score(y[query], pred_nested)
    r2_flat = r2_score(y[query], pred_flat)
    assert r2_nested >= 0.85
    assert r2_flat < 0.5
    # without any row, the store gets its region's model
    zero_shot = r2_score(y[query], nested.predict(X[query], tasks=tasks[query]))
    assert zero_shot >= 0.85


def _exact_marginal(X, y, task, group, d_params):
    """Negative log marginal likelihood of the isotropic two-level model
    ``theta_t ~ N(mu_g, vT I)``, ``mu_g ~ N(mu0, vG I)``, noise ``phi``, and
    the GLS mean ``mu0``, as a function of ``log (vT, vG, phi)``."""
    Z = np.column_stack([X, np.ones(len(y))])
    gram = Z @ Z.T
    same_task = task[:, None] == task[None, :]
    same_group = group[:, None] == group[None, :]

    def covariance(log_v):
        vT, vG, phi = np.exp(log_v)
        return gram * (vT * same_task + vG * same_group) + phi * np.eye(len(y))

    def objective(log_v):
        C = covariance(log_v)
        factor = linalg.cho_factor(C)
        mu0 = np.linalg.solve(Z.T @ linalg.cho_solve(factor, Z),
                              Z.T @ linalg.cho_solve(factor, y))
        r = y - Z @ mu0
        return 0.5 * (r @ linalg.cho_solve(factor, r)
                      + 2 * np.sum(np.log(np.diag(factor[0])))), mu0

    return objective, covariance, Z


def test_squared_loss_fixed_point_is_the_exact_marginal_likelihood(stores):
    """Ridge: the Laplace approximation is exact, so EM's fixed point is the
    maximum of the closed-form marginal likelihood, and the group means the
    closed-form posterior means."""
    X, y, tasks = stores
    keep = tasks[:, 0] < 4
    X, y, tasks = X[keep], y[keep], tasks[keep]
    meta = MetaRegressor(Ridge(alpha=1e-10), prior="isotropic", tol=1e-10,
                         max_iter=5000).fit(X, y, tasks=tasks)
    objective, covariance, Z = _exact_marginal(X, y, tasks[:, 1], tasks[:, 0],
                                               X.shape[1] + 1)
    phi = meta.noise_variance_
    vT = phi / float(np.mean(meta.gamma_ * meta.prior_shape_))
    vG = phi / float(np.mean(meta.group_precisions_[0]))
    learned = np.log([vT, vG, phi])
    best = optimize.minimize(lambda v: objective(v)[0], learned,
                             method="Nelder-Mead",
                             options=dict(xatol=1e-10, fatol=1e-12,
                                          maxiter=4000))
    # the learned hyperparameters are the maximum (to the optimizer's
    # tolerance): no better point nearby, and the same point
    assert objective(learned)[0] <= best.fun + 1e-6
    np.testing.assert_allclose(learned, best.x, atol=2e-3)
    mu0 = objective(learned)[1]
    np.testing.assert_allclose(meta.meta_params_, mu0, rtol=1e-5, atol=1e-6)
    # closed-form group posterior means: mu0 + vG Z_g^T C^{-1} (y - Z mu0)
    C = covariance(learned)
    alpha = linalg.solve(C, y - Z @ mu0, assume_a="pos")
    for g, region in enumerate(meta.groups_[0][:, 0]):
        rows = tasks[:, 0] == region
        expected = mu0 + vG * Z[rows].T @ alpha[rows]
        np.testing.assert_allclose(meta.group_params_[0][g], expected,
                                   rtol=1e-5, atol=1e-6)


def test_one_group_is_the_flat_prior(stores):
    X, y, tasks = stores
    one = np.column_stack([np.zeros(len(y), dtype=int), tasks[:, 1]])
    nested = MetaRegressor(Ridge(alpha=1.0), prior="diagonal", tol=1e-8,
                           max_iter=2000).fit(X, y, tasks=one)
    flat = MetaRegressor(Ridge(alpha=1.0), prior="diagonal", tol=1e-8,
                         max_iter=2000, random_effects=None).fit(
        X, y, tasks=tasks[:, 1])
    np.testing.assert_allclose(nested.meta_params_, flat.meta_params_,
                               rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(nested.task_params_, flat.task_params_,
                               rtol=1e-2, atol=2e-2)
    np.testing.assert_allclose(nested.noise_variance_, flat.noise_variance_,
                               rtol=1e-2)
    # the single group sits on the population mean
    np.testing.assert_allclose(nested.group_params_[0][0], nested.meta_params_,
                               atol=1e-2)


def test_identical_tasks_in_groups_of_any_size_learn_the_pooled_fit():
    # copies of one task in groups of 2, 3 and 5 tasks, under a base
    # estimator that averages its loss: each group's mean carries its share
    # n_g / T of one task's penalty, so the groups, pinned together, are held
    # as a flat prior's mean is, and learn the pooled fit with that penalty
    # once: alpha / T for PoissonRegressor, which weighs its penalty once
    # over all rows. One task's penalty for each group left every level up
    # to 9 % off it (the fit with alpha G / T); the pooled fit's, 37 %.
    rng = np.random.default_rng(0)
    X1 = rng.normal(size=(12, 3))
    y1 = rng.poisson(np.exp(0.3 * X1[:, 0] + 0.5)).astype(float)
    sizes = [2, 3, 5]
    n_tasks = sum(sizes)
    X, y = np.tile(X1, (n_tasks, 1)), np.tile(y1, n_tasks)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    tasks = np.repeat(np.column_stack([groups, np.arange(n_tasks)]), 12, axis=0)
    base = PoissonRegressor(alpha=0.1)
    meta = MetaRegressor(base, prior="isotropic").fit(X, y, tasks=tasks)
    pooled = PoissonRegressor(alpha=0.1 / n_tasks).fit(X1, y1)
    expected = np.r_[pooled.coef_, pooled.intercept_]
    np.testing.assert_allclose(meta.meta_params_, expected, rtol=1e-2)
    for group_mean in meta.group_params_[0]:
        np.testing.assert_allclose(group_mean, expected, rtol=1e-2)


def test_one_group_of_an_averaged_loss_is_the_flat_prior():
    # PoissonRegressor on stores of 3 to 25 rows: the nested M-step takes
    # each task's moments in the units of its own prior (its rows' weight),
    # as the flat prior's does (checked against its closed form in
    # test_priors); with one group both land on the same fixed point
    X, y, stores = poisson_tasks_of_unequal_sizes(4, 24, 3, 26, 2)
    one = np.column_stack([np.zeros(len(y), dtype=int), stores])
    params = dict(prior="diagonal", tol=1e-8, max_iter=2000)
    with warnings.catch_warnings():
        # the single group's spread about the population mean is learned
        # toward zero, a boundary EM approaches slowly: stopped at max_iter,
        # within the tolerances below
        warnings.simplefilter("ignore", ConvergenceWarning)
        nested = MetaRegressor(PoissonRegressor(alpha=0.1), **params).fit(
            X, y, tasks=one)
    flat = MetaRegressor(PoissonRegressor(alpha=0.1), random_effects=None,
                         **params).fit(X, y, tasks=stores)
    np.testing.assert_allclose(nested.meta_params_, flat.meta_params_,
                               rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(nested.task_params_, flat.task_params_,
                               rtol=1e-2, atol=1e-2)


def test_group_spread_limits():
    """Groups that do not differ: the learned group spread is tiny beside the
    tasks', the group means collapse on the population mean. Groups far
    apart: each group mean is its tasks' mean."""
    X, y, tasks = make_nested_tasks(n_groups=5, n_tasks_per_group=8,
                                    n_samples_per_task=15, n_features=2,
                                    group_spread=0.0, task_spread=0.5,
                                    noise=0.3, random_state=1)
    meta = MetaRegressor(Ridge(alpha=1e-8), prior="isotropic").fit(
        X, y, tasks=tasks)
    task_precision = meta.gamma_ * float(np.mean(meta.prior_shape_))
    assert float(np.mean(meta.group_precisions_[0])) > 20 * task_precision
    np.testing.assert_allclose(meta.group_params_[0],
                               np.tile(meta.meta_params_, (5, 1)), atol=0.05)
    X, y, tasks = make_nested_tasks(n_groups=5, n_tasks_per_group=8,
                                    n_samples_per_task=15, n_features=2,
                                    group_spread=100.0, task_spread=0.5,
                                    noise=0.3, random_state=1)
    meta = MetaRegressor(Ridge(alpha=1e-8), prior="isotropic").fit(
        X, y, tasks=tasks)
    for g in range(5):
        members = meta.tasks_[:, 0] == meta.groups_[0][g, 0]
        np.testing.assert_allclose(meta.group_params_[0][g],
                                   meta.task_params_[members].mean(axis=0),
                                   rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("estimator", [
    Ridge(), LinearRegression(), Lasso(alpha=0.01), ElasticNet(alpha=0.01),
    PoissonRegressor(), LogisticRegression()])
def test_every_linear_family(stores, estimator):
    X, y, tasks = stores
    if isinstance(estimator, LogisticRegression):
        y = (y > np.median(y)).astype(int)
        meta = MetaClassifier(estimator)
    else:
        if isinstance(estimator, PoissonRegressor):
            y = np.random.default_rng(0).poisson(np.exp(0.3 * (y - y.mean())))
        meta = MetaRegressor(estimator)
    meta.fit(X, y, tasks=tasks)
    assert meta.prior_kind_ == "nested diagonal"
    assert meta.tasks_.shape == (36, 2)
    assert [g.shape for g in meta.groups_] == [(6, 1)]
    assert meta.group_params_[0].shape == (6, meta.meta_params_.size)
    assert np.all(np.isfinite(meta.task_params_))
    assert np.all(meta.group_precisions_[0] > 0)
    # an unseen store of a known region is predicted by its region's model
    region = meta.groups_[0][2, 0]
    unseen = np.column_stack([np.full(5, region), np.full(5, 999)])
    np.testing.assert_allclose(
        meta.predict(X[:5], tasks=unseen),
        meta.group_estimator(region).predict(X[:5]))
    # an unseen region is predicted by the population's
    np.testing.assert_allclose(
        meta.predict(X[:5], tasks=np.full((5, 2), 999)),
        meta.meta_estimator_.predict(X[:5]))
    # a seen store by its own
    task = tuple(meta.tasks_[3])
    rows = (tasks[:, 0] == task[0]) & (tasks[:, 1] == task[1])
    np.testing.assert_allclose(meta.predict(X[rows], tasks=tasks[rows]),
                               meta.task_estimator(task).predict(X[rows]))


def test_adapt_starts_from_the_group(stores):
    X, y, tasks = stores
    meta = MetaRegressor(Ridge(alpha=1.0)).fit(X, y, tasks=tasks)
    region = meta.groups_[0][1, 0]
    rows = slice(0, 3)
    label = np.column_stack([np.full(3, region), np.full(3, 500)])
    from_group = meta.adapt(X[rows], y[rows], tasks=label)
    from_population = meta.adapt(X[rows], y[rows])
    # the inner problem's optimality condition, by hand: the transfer term
    # pulls toward the group's centre
    assert not np.allclose(from_group.coef_, from_population.coef_)
    theta = np.r_[from_group.coef_, from_group.intercept_]
    Z = np.column_stack([X[rows], np.ones(3)])
    precision = meta.prior_precision_
    ridge = np.r_[np.ones(3), 0.0]
    mean = meta.group_params_[0][1]
    # gradient: -Z^T (y - Z theta) + alpha theta + Pi (theta - c), with the
    # centre c = (Pi + D) mean / Pi, i.e. (Pi + D) theta - (Pi + D) mean
    gradient = (-Z.T @ (y[rows] - Z @ theta) + (precision + ridge) * theta
                - (precision + ridge) * mean)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-6)


def test_adapting_a_seen_task_starts_from_its_group_not_its_own_model(stores):
    # as without nesting: a seen task's own rows, adapted under its own
    # label, give its fitted model (they were pulled toward that model,
    # counting its rows twice: 0.14 off)
    X, y, tasks = stores
    meta = MetaRegressor(Ridge(alpha=1.0)).fit(X, y, tasks=tasks)
    task = tuple(meta.tasks_[2])
    rows = (tasks[:, 0] == task[0]) & (tasks[:, 1] == task[1])
    adapted = meta.adapt(X[rows], y[rows], tasks=tasks[rows])
    fitted = meta.task_estimator(task)
    np.testing.assert_allclose(adapted.coef_, fitted.coef_, atol=1e-10)
    np.testing.assert_allclose(adapted.intercept_, fitted.intercept_, atol=1e-10)


def test_three_levels_and_task_column_list():
    pd = pytest.importorskip("pandas")
    X, y, tasks = make_nested_tasks(n_groups=4, n_tasks_per_group=6,
                                    n_samples_per_task=8, n_features=2,
                                    random_state=3)
    country = tasks[:, 0] // 2
    labels = np.column_stack([country, tasks])
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=labels)
    assert [g.shape for g in meta.groups_] == [(2, 1), (4, 2)]
    assert len(meta.group_precisions_) == 2
    frame = pd.DataFrame(X, columns=["a", "b"]).assign(
        country=[f"c{c}" for c in country], region=tasks[:, 0],
        store=tasks[:, 1])
    by_column = MetaRegressor(Ridge(), task_column=["country", "region",
                                                    "store"]).fit(frame, y)
    np.testing.assert_allclose(by_column.task_params_, meta.task_params_,
                               rtol=1e-10, atol=1e-12)
    assert by_column.group_estimator(("c1", 2)).coef_.shape == (2,)
    assert by_column.group_estimator("c0").coef_.shape == (2,)
    # a row of tasks_ or groups_ is a path, as the docstrings say
    for model in (meta, by_column):
        row = model.tasks_[3]
        np.testing.assert_array_equal(model.task_estimator(row).coef_,
                                      model.task_estimator(tuple(row)).coef_)
        np.testing.assert_array_equal(model.task_posterior_cov(row),
                                      model.task_posterior_cov(tuple(row)))
        for level in model.groups_:
            np.testing.assert_array_equal(
                model.group_estimator(level[1]).coef_,
                model.group_estimator(tuple(level[1])).coef_)
    np.testing.assert_allclose(by_column.predict(frame),
                               meta.predict(X, tasks=labels))
    # GridSearchCV: scorers pass no tasks; task_column makes them task-aware
    search = GridSearchCV(
        MetaRegressor(Ridge(), task_column=["country", "region", "store"]),
        {"prior": ["isotropic", "diagonal"]},
        cv=KFold(3, shuffle=True, random_state=0)).fit(frame, y)
    assert search.best_score_ > 0.9


def test_pickle_round_trip(stores):
    X, y, tasks = stores
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    again = pickle.loads(pickle.dumps(meta))
    probe = np.column_stack([tasks[:, 0], np.where(tasks[:, 1] % 2, 999,
                                                   tasks[:, 1])])
    np.testing.assert_array_equal(again.predict(X, tasks=probe),
                                  meta.predict(X, tasks=probe))
    mean, std = meta.predict(X, tasks=probe, return_std=True)
    mean2, std2 = again.predict(X, tasks=probe, return_std=True)
    np.testing.assert_array_equal(std, std2)
    # a new store's spread is wider than a seen one's, a new region's wider
    seen = probe[:, 1] != 999
    assert std[~seen].mean() > std[seen].mean()
    _, std_new_region = meta.predict(X, tasks=np.full_like(tasks, 999),
                                     return_std=True)
    assert std_new_region.mean() > std[~seen].mean()


def test_skops_round_trip_needs_only_the_estimator_type(stores):
    sio = pytest.importorskip("skops.io", reason="skops is not installed")
    X, y, tasks = stores
    labels = np.column_stack([np.array(["n", "s", "e", "w", "x", "z"],
                                       dtype=object)[tasks[:, 0]],
                              tasks[:, 1].astype(object)])
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=labels)
    data = sio.dumps(meta)
    assert sio.get_untrusted_types(data=data) == [
        "skmeta._estimators.MetaRegressor"]
    restored = sio.loads(data, trusted=["skmeta._estimators.MetaRegressor"])
    probe = labels.copy()
    probe[::2, 1] = 999  # new stores of known regions
    np.testing.assert_array_equal(restored.predict(X, tasks=probe),
                                  meta.predict(X, tasks=probe))
    np.testing.assert_array_equal(restored.group_estimator("s").coef_,
                                  meta.group_estimator("s").coef_)


def test_few_shot_split_groups_by_the_innermost_level(stores):
    X, y, tasks = stores
    # store labels repeat across regions: the task is the (region, store) pair
    local = np.column_stack([tasks[:, 0], tasks[:, 1] % 6])
    cv = FewShotSplit(n_splits=3, n_shots=2, test_size=4, stratify=False,
                      random_state=0)
    for train, test in cv.split(X, y, local):
        held = {tuple(r) for r in local[test].tolist()}
        assert len(held) == 4
        trained = {tuple(r) for r in local[train].tolist()}
        # each held-out task gives exactly 2 support rows to training
        for task in held:
            in_train = np.all(local[train] == task, axis=1).sum()
            assert in_train == 2
        assert len(trained) == 36
    meta = MetaRegressor(Ridge())
    for train, test in cv.split(X, y, local):
        meta.fit(X[train], y[train], tasks=local[train])
        assert meta.score(X[test], y[test], tasks=local[test]) > 0.5


def test_bad_nested_input(stores):
    X, y, tasks = stores
    bad = tasks.astype(float)
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"tasks \(level 0\) contains NaN"):
        MetaRegressor().fit(X, y, tasks=bad)
    with pytest.raises(ValueError, match="40 rows of labels but X has 360"):
        MetaRegressor().fit(X, y, tasks=tasks[:40])
    mixed = tasks.astype(object)
    mixed[0, 1] = "x"
    with pytest.raises(ValueError, match=r"level 1\) mixes strings and numbers"):
        MetaRegressor().fit(X, y, tasks=mixed)
    with pytest.raises(ValueError, match="prior='full' is not supported with "
                                         "nested tasks"):
        MetaRegressor(prior="full").fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="prior='mixture' is not supported"):
        MetaRegressor(prior="mixture").fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="prior_df"):
        MetaRegressor(prior_df=3.0).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="method='proximal'"):
        MetaRegressor(method="maml").fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="partial_fit does not take nested"):
        MetaRegressor().partial_fit(X, y, tasks=tasks)
    # one column is not nesting: the error fit gives, not partial_fit's
    for method in ("fit", "partial_fit"):
        with pytest.raises(ValueError, match=r"one column per level of nested "
                           r"tasks \(at least 2\), got shape \(360, 1\)"):
            getattr(MetaRegressor(), method)(X, y, tasks=tasks[:, :1])
    with pytest.raises(ValueError, match="names the same column twice"):
        MetaRegressor(task_column=[0, 0]).fit(np.c_[tasks, X], y)
    with pytest.raises(ValueError, match="nested tasks need n_params <= 512"):
        MetaRegressor(Ridge()).fit(np.tile(X, 171), y, tasks=tasks)
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    with pytest.raises(ValueError, match="nested tasks of 2 levels; got task "
                                         "labels of 1 level"):
        meta.predict(X, tasks=tasks[:, 1])
    with pytest.raises(ValueError, match="not seen in fit"):
        meta.group_estimator(77)
    with pytest.raises(ValueError, match="path of 2 labels"):
        meta.task_estimator(3)
    with pytest.raises(ValueError, match="group_estimator"):
        meta.task_estimator((0, 999))
    flat = MetaRegressor(Ridge()).fit(X, y, tasks=tasks[:, 1])
    with pytest.raises(ValueError, match="fitted on nested tasks"):
        flat.group_estimator(0)
    with pytest.raises(ValueError, match="tasks of one level; got task labels "
                                         "of 2 levels"):
        flat.predict(X, tasks=tasks)
    with pytest.raises(ValueError, match="tasks of one level; got task labels "
                                         "of 2 levels"):
        flat.adapt_tasks(X, y, tasks=tasks)
    # inputs are not modified
    before = tasks.copy()
    MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    np.testing.assert_array_equal(tasks, before)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("abc"),
                          st.integers(-2, 2)), min_size=1, max_size=40))
def test_nested_encoding_round_trip(rows):
    """Any 2-D labels: every sample's task is its whole path, the tree's
    parents are consistent with the paths, and lookups find every path."""
    columns = [np.asarray([r[level] for r in rows]) for level in range(3)]
    labels = check_any_task_labels(np.array(rows, dtype=object), len(rows))
    levels, paths, codes, parents = encode_nested(labels)
    table = nested_label_array(levels, paths)
    for i, row in enumerate(rows):
        assert tuple(table[codes[i]]) == row
    assert len({tuple(p) for p in paths.tolist()}) == len(paths)
    assert np.all(np.diff(parents[-1]) >= 0)  # tasks grouped by group
    for depth in range(1, 3):
        nodes = np.unique(paths[:, :depth + 1], axis=0)
        above = np.unique(paths[:, :depth], axis=0)
        np.testing.assert_array_equal(above[parents[depth]], nodes[:, :depth])
    known = [np.unique(paths[:, :depth], axis=0) for depth in (1, 2)] + [paths]
    found = lookup_nested(levels, known, NestedLabels(columns))
    np.testing.assert_array_equal(found[:, -1], codes)


def test_sparse_threads_and_options(stores):
    X, y, tasks = stores
    dense = MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    sparse = MetaRegressor(Ridge(), n_jobs=2).fit(sp.csr_matrix(X), y,
                                                  tasks=tasks)
    np.testing.assert_allclose(sparse.task_params_, dense.task_params_,
                               rtol=1e-7, atol=1e-9)
    # a fixed gamma: the tasks' transfer precision stays gamma * I, the
    # groups' spreads are learned
    fixed = MetaRegressor(Ridge(), gamma=2.0).fit(X, y, tasks=tasks)
    np.testing.assert_allclose(fixed.prior_precision_, 2.0)
    assert fixed.group_precisions_[0].shape == (4,)
    # a prior_estimator fixes the population mean
    source = Ridge().fit(X + 1.0, y)
    given_mean = MetaRegressor(Ridge(), prior_estimator=source).fit(
        X, y, tasks=tasks)
    np.testing.assert_allclose(given_mean.meta_params_,
                               np.r_[source.coef_, source.intercept_])
    # the isotropic prior: one spread per level
    iso = MetaRegressor(Ridge(), prior="isotropic").fit(X, y, tasks=tasks)
    assert iso.prior_kind_ == "nested isotropic"
    assert np.ptp(iso.group_precisions_[0]) < 1e-12 * iso.group_precisions_[0][0]


def test_levels_whose_label_counts_multiply_past_int64():
    # 11 levels of 10 to 80 labels: 1.3e19 paths possible, past 2**63. The
    # fit encoded them (np.unique beyond 2**62); every later lookup
    # (predict, adapt, task_estimator) overflowed in np.ravel_multi_index
    rng = np.random.default_rng(0)
    task = np.repeat(np.arange(80), 3)
    labels = np.column_stack([task // 8, task // 4, task // 2]
                             + [task + 1000 * k for k in range(8)])
    counts = [len(np.unique(column)) for column in labels.T]
    assert np.prod(counts, dtype=float) > 2.0**63
    nested = check_any_task_labels(labels, 240)
    levels, paths, codes, _ = encode_nested(nested)
    known = [np.unique(paths[:, :depth + 1], axis=0) for depth in range(11)]
    found = lookup_nested(levels, known, nested)
    np.testing.assert_array_equal(found[:, -1], codes)
    np.testing.assert_array_equal(found[:, :3], np.c_[task // 8, task // 4,
                                                      task // 2])
    # an unseen label five levels down: its path is known above it only
    moved = labels.copy()
    moved[:3, 5] = 999_999
    found_moved = lookup_nested(levels, known, check_any_task_labels(moved, 240))
    np.testing.assert_array_equal(found_moved[:3, :5], found[:3, :5])
    assert np.all(found_moved[:3, 5:] == -1)
    np.testing.assert_array_equal(found_moved[3:], found[3:])
    X = rng.standard_normal((240, 2))
    y = X @ [1.0, -1.0] + 0.3 * rng.standard_normal(240)
    # its last eight levels do not branch (one label under each parent)
    with pytest.warns(UserWarning, match="column 3 of tasks holds a single "
                      "member of column 4 .*column 10 of tasks: such"):
        meta = MetaRegressor(Ridge(), max_iter=50).fit(X, y, tasks=labels)
    predictions = meta.predict(X, tasks=labels)
    np.testing.assert_allclose(
        predictions[:3], meta.task_estimator(meta.tasks_[0]).predict(X[:3]))
    assert meta.score(X, y, tasks=labels) > 0.9
    assert meta.adapt(X[:3], y[:3], tasks=labels[:3]).coef_.shape == (2,)


def test_levels_given_innermost_first_warn(stores):
    X, y, tasks = stores
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    # the store outermost: every "group" holds one task, whose spread and
    # the group's cannot be told apart
    with pytest.warns(UserWarning, match="every group of column 0 of tasks "
                      "holds a single member of column 1 of tasks: .*reverse"
                      ) as record:
        MetaRegressor(Ridge()).fit(X, y, tasks=tasks[:, ::-1])
    assert record[0].filename == __file__
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X).assign(region=tasks[:, 0], store=tasks[:, 1])
    frame.columns = frame.columns.astype(str)
    with pytest.warns(UserWarning, match="task column 'store' holds a single "
                      "member of task column 'region'"):
        MetaRegressor(Ridge(), task_column=["store", "region"]).fit(frame, y)


def test_the_nested_fit_does_not_depend_on_the_targets_units():
    # parameters of size 1e-4 moved by less than the absolute tol after three
    # iterations, where units of 1 take nineteen: the fit stopped early and
    # silently (a review); the convergence test is now relative to the
    # models' size below 1, as the flat and mixture fits' are
    from sklearn.linear_model import LinearRegression

    from skmeta.datasets import make_nested_tasks

    X, y, tasks = make_nested_tasks(n_groups=5, n_tasks_per_group=6,
                                    n_samples_per_task=8, n_features=3,
                                    random_state=0)
    fits = {c: MetaRegressor(LinearRegression(), prior="diagonal").fit(
        X, c * y, tasks=tasks) for c in (1.0, 1e-4)}
    np.testing.assert_allclose(fits[1e-4].meta_params_ / 1e-4, fits[1.0].meta_params_,
                    rtol=1e-4)
    np.testing.assert_allclose(fits[1e-4].group_params_[0] / 1e-4,
                    fits[1.0].group_params_[0], rtol=1e-4, atol=1e-6)

