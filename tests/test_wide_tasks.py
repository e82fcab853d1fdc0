"""Tasks with many parameters: Newton steps in the row space, diagonal sums.

The row-space solver must give the dense solver's results (solutions,
inverse Hessian sums, traces) on every datafit, dense and sparse; past
``FULL_INVERSE_MAX_PARAMS`` the proximal method works with the diagonals of
the inverse Hessians and must reach the same joint minimizer.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

import skmeta._kernels._calls as calls_module
import skmeta._methods._inner as inner_module
import skmeta._methods._mixture as mixture_module
import skmeta._methods._proximal as proximal_module
from skmeta import MetaClassifier, MetaRegressor
from skmeta._kernels._calls import (
    InverseRequest,
    row_space_pays,
    solve_inner,
    summation_block,
)
from skmeta._kernels._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from skmeta._kernels._layout import Problem, make_batch
from skmeta._kernels._workspaces import rowspace_workspace
from skmeta.datasets import make_meta_classification

CASES = [(SQUARED, 1), (LOGISTIC, 1), (POISSON, 1), (MULTINOMIAL, 3)]


def wide_tasks(code, n_outputs, *, sparse, n_tasks=5, n_rows=6, n_features=40,
               seed=0):
    """Tasks of ``n_rows`` rows each, or of the sizes ``n_rows`` lists."""
    rng = np.random.default_rng([code, sparse, seed])
    sizes = np.broadcast_to(n_rows, n_tasks)
    X = rng.normal(size=(int(sizes.sum()), n_features))
    if sparse:
        X[rng.uniform(size=X.shape) < 0.6] = 0.0
    z = 0.3 * X @ rng.normal(size=n_features)
    if code == SQUARED:
        y = z + rng.normal(size=z.shape)
    elif code == LOGISTIC:
        y = (z > 0).astype(float)
    elif code == POISSON:
        y = rng.poisson(np.exp(0.3 * z)).astype(float)
    else:
        y = rng.integers(0, n_outputs, z.size).astype(float)
    sw = rng.uniform(0.5, 1.5, z.size)
    tasks = np.repeat(np.arange(n_tasks), sizes)
    l2w = np.tile(np.r_[np.ones(n_features), 0.0], n_outputs)
    problem = Problem(code, n_outputs, n_features, True, code == POISSON, 0.3,
                      0.0, l2w, l2w.copy())
    batch, _ = make_batch(sp.csr_matrix(X) if sparse else X, y, sw, tasks,
                          n_tasks)
    d = problem.n_params
    return batch, problem, rng.normal(scale=0.1, size=d), rng.uniform(0.5, 2, d)


@pytest.mark.parametrize("diagonal", [False, True], ids=["full", "diagonal"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("code, n_outputs", CASES,
                         ids=["squared", "logistic", "poisson", "multinomial"])
def test_row_space_solver_gives_the_dense_solvers_results(code, n_outputs, sparse,
                                                          diagonal):
    batch, problem, theta0, precision = wide_tasks(code, n_outputs,
                                                   sparse=sparse)
    T, d = batch.n_tasks, problem.n_params
    request = InverseRequest(posterior=True, exact=True, diagonal=diagonal)
    kw = dict(tol=1e-12, inverse=request, inv_weight=np.arange(1.0, T + 1))
    dense = solve_inner(batch, problem, theta0, precision, np.zeros((T, d)),
                        rowspace=False, **kw)
    rows = solve_inner(batch, problem, theta0, precision, np.zeros((T, d)),
                       rowspace=True, **kw)
    assert np.all(rows.n_iter > 0)
    assert_allclose(rows.theta, dense.theta, rtol=1e-9, atol=1e-10)
    assert_allclose(rows.objective, dense.objective, rtol=1e-12)
    assert_allclose(rows.trace, dense.trace, rtol=1e-8, atol=1e-10)
    assert rows.inv_sum.shape == ((d,) if diagonal else (d, d))
    for a, b in [(rows.inv_sum, dense.inv_sum), (rows.inv_wsum, dense.inv_wsum)]:
        assert_allclose(a, b, rtol=1e-8, atol=1e-10 * np.abs(b).max())


def dense_and_row_space(batch, problem, theta0, precision, diagonal):
    """Exact solves of every task by the dense and the row-space solver,
    with the posterior's inverse Hessians (or their diagonals)."""
    T, d = batch.n_tasks, problem.n_params
    kw = dict(tol=1e-12, inverse=InverseRequest(posterior=True, exact=True,
                                                diagonal=diagonal))
    return tuple(solve_inner(batch, problem, theta0, precision,
                             np.zeros((T, d)), rowspace=rowspace, **kw)
                 for rowspace in (False, True))


@pytest.mark.parametrize("n_outputs", [3, 10])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_classes_with_one_curvature_share_their_row_space_gram(sparse,
                                                              n_outputs):
    # a prior that treats the classes alike gives every output the same
    # M_k, whose row-space Gram matrix is then copied from the last one's;
    # the last class differs, so that the copying stops there
    batch, problem, theta0, _ = wide_tasks(MULTINOMIAL, n_outputs, sparse=sparse,
                                           n_rows=[6, 2, 1, 5, 6], n_tasks=5)
    p1 = problem.n_features + 1
    per_class = np.random.default_rng(3).uniform(0.5, 2, p1)
    precision = np.tile(per_class, n_outputs)
    precision[-p1:] *= 1.5
    dense, rows = dense_and_row_space(batch, problem, theta0, precision, True)
    assert_allclose(rows.theta, dense.theta, rtol=1e-9, atol=1e-10)
    assert_allclose(rows.logdet, dense.logdet, rtol=1e-10)
    assert_allclose(rows.inv_sum, dense.inv_sum, rtol=1e-8)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("code, n_outputs", CASES,
                         ids=["squared", "logistic", "poisson", "multinomial"])
def test_kept_row_space_curvatures_multiply_by_the_inverse_sum(code, n_outputs,
                                                               sparse):
    # C^{-1} W kept whole (one output) or as the multinomial's factors
    # (2 K n + 1 rows of n), for tasks of several sizes in buffers sized for
    # the largest: products with the sum of the dense inverse Hessians
    batch, problem, theta0, precision = wide_tasks(
        code, n_outputs, sparse=sparse, n_tasks=4, n_rows=[6, 2, 1, 5])
    T, d = batch.n_tasks, problem.n_params
    rows = solve_inner(batch, problem, theta0, precision, np.zeros((T, d)),
                       tol=1e-12, rowspace=True,
                       inverse=InverseRequest(exact=True, diagonal=True,
                                              products=True))
    full = solve_inner(batch, problem, theta0, precision, np.zeros((T, d)),
                       tol=1e-12, rowspace=False,
                       inverse=InverseRequest(exact=True)).inv_sum
    x = np.random.default_rng(2).normal(size=(3, d))
    for v in x:
        assert_allclose(rows.inverse_sum_times(v), full @ v, rtol=1e-9,
                        atol=1e-12 * np.abs(full @ v).max())


def multinomial_blocks_case(diagonal, products, *, sparse=False,
                            mean_loss=False, weak=False):
    """Row-space (by blocks) and dense solves of ten-class wide tasks."""
    # rows of weight zero leave their columns of U empty; tasks of several
    # sizes (one of a single row) share the buffers sized for the largest
    batch, problem, theta0, precision = wide_tasks(
        MULTINOMIAL, 10, sparse=sparse, n_tasks=4, n_rows=[8, 3, 1, 6],
        n_features=30)
    batch.sw[::5] = 0.0
    if mean_loss or weak:
        # averaged losses scale the curvature by the task's weight
        problem = Problem(MULTINOMIAL, 10, 30, True, mean_loss,
                          1e-4 if weak else problem.lam2, 0.0, problem.l2w,
                          problem.l1w)
        if weak:
            theta0 = 8.0 * theta0
            precision = 1e-4 * precision
    assert rowspace_workspace(batch, problem, 8, diagonal)[2] is not None
    T, d = batch.n_tasks, problem.n_params
    request = InverseRequest(posterior=True, exact=True, diagonal=diagonal,
                             products=products)
    kw = dict(tol=1e-12, inverse=request, inv_weight=np.arange(1.0, T + 1))
    dense = solve_inner(batch, problem, theta0, precision, np.zeros((T, d)),
                        rowspace=False, **kw)
    rows = solve_inner(batch, problem, theta0, precision, np.zeros((T, d)),
                       rowspace=True, **kw)
    return batch, problem, theta0, precision, dense, rows


@pytest.mark.parametrize("products", [False, True],
                         ids=["no-products", "products"])
@pytest.mark.parametrize("diagonal", [False, True], ids=["full", "diagonal"])
def test_multinomial_capacitance_by_blocks_gives_the_dense_results(diagonal,
                                                                   products):
    # with diagonal inverses and no products, only the diagonal blocks of
    # C^{-1} W are formed; otherwise all of it
    batch, problem, theta0, precision, dense, rows = multinomial_blocks_case(
        diagonal, products)
    T, d = batch.n_tasks, problem.n_params
    assert_allclose(rows.theta, dense.theta, rtol=1e-9, atol=1e-10)
    assert_allclose(rows.trace, dense.trace, rtol=1e-8)
    # log det A_t: the blocks' and the rank-n capacitance's determinants
    assert_allclose(rows.logdet, dense.logdet, rtol=1e-10)
    for a, b in [(rows.inv_sum, dense.inv_sum), (rows.inv_wsum, dense.inv_wsum)]:
        assert_allclose(a, b, rtol=1e-8, atol=1e-10 * np.abs(b).max())
    if products:
        x = np.random.default_rng(1).normal(size=d)
        full = solve_inner(batch, problem, theta0, precision, np.zeros((T, d)),
                           rowspace=False, tol=1e-12,
                           inverse=InverseRequest(exact=True)).inv_sum
        assert_allclose(rows.inverse_sum_times(x), full @ x, rtol=1e-8)


@pytest.mark.parametrize("case", ["sparse-mean-loss", "weak"])
def test_multinomial_blocks_on_sparse_averaged_and_weakly_held_tasks(case):
    # csr rows with averaged losses; and a penalty and prior of 1e-4, whose
    # row-space Gram matrices are 1e4 times larger
    weak = case == "weak"
    batch, problem, theta0, precision, dense, rows = multinomial_blocks_case(
        True, True, sparse=not weak, mean_loss=not weak, weak=weak)
    assert_allclose(rows.theta, dense.theta, rtol=1e-8, atol=1e-9)
    assert_allclose(rows.logdet, dense.logdet, rtol=1e-8)
    assert_allclose(rows.trace, dense.trace, rtol=1e-8)
    assert_allclose(rows.inv_sum, dense.inv_sum, rtol=1e-8,
                    atol=1e-8 * np.abs(dense.inv_sum).max())


@pytest.mark.parametrize("diagonal", [False, True], ids=["full", "diagonal"])
def test_multinomial_whole_capacitance_still_gives_the_dense_results(
        monkeypatch, diagonal):
    # the whole K n x K n capacitance, which multinomial tasks no longer take
    # (the kernel keeps it for them, next to the blocks): still exact
    import skmeta._kernels._workspaces as workspaces_module

    monkeypatch.setattr(workspaces_module, "multinomial_by_blocks",
                        lambda problem: False)
    batch, problem, theta0, precision = wide_tasks(MULTINOMIAL, 3, sparse=False)
    assert rowspace_workspace(batch, problem, 6, diagonal)[2] is None
    dense, rows = dense_and_row_space(batch, problem, theta0, precision,
                                      diagonal)
    assert_allclose(rows.theta, dense.theta, rtol=1e-9, atol=1e-10)
    assert_allclose(rows.logdet, dense.logdet, rtol=1e-10)
    assert_allclose(rows.inv_sum, dense.inv_sum, rtol=1e-8,
                    atol=1e-10 * np.abs(dense.inv_sum).max())


def test_the_multinomial_row_space_is_counted_by_blocks(monkeypatch):
    # 20 rows, 20 features, ten classes: a whole capacitance (200 x 200)
    # costs about as much as a dense step (210 parameters), its blocks many
    # times less (see _calls.row_space_pays)
    batch, problem, _, precision = wide_tasks(
        MULTINOMIAL, 10, sparse=False, n_tasks=3, n_rows=20, n_features=20)
    assert row_space_pays(batch, problem, precision, kept_inverses=True)
    monkeypatch.setattr(calls_module, "multinomial_by_blocks",
                        lambda problem: False)
    assert not row_space_pays(batch, problem, precision)


def test_the_row_space_is_used_where_it_pays():
    batch, problem, _, precision = wide_tasks(LOGISTIC, 1, sparse=False,
                                              n_features=300)
    assert row_space_pays(batch, problem, precision)
    # a full precision, or an l1 part, keeps the dense solver
    assert not row_space_pays(batch, problem, np.diag(precision))
    l1 = Problem(problem.code, 1, 300, True, False, 0.3, 0.1, problem.l2w,
                 problem.l1w)
    assert not row_space_pays(batch, l1, precision)
    # so does a parameter without any curvature from the penalties
    assert not row_space_pays(batch, problem, np.where(problem.l2w > 0,
                                                       precision, 0.0))
    narrow, small, _, prec = wide_tasks(LOGISTIC, 1, sparse=False, n_features=8)
    assert not row_space_pays(narrow, small, prec)


@pytest.mark.parametrize("n_rows, with_kept, without_kept",
                         [(5, True, True), (15, False, True), (50, False, False)])
def test_kept_inverses_favour_the_dense_solver(monkeypatch, n_rows, with_kept,
                                               without_kept):
    # a dense solver that keeps its inverse Hessians between solves takes
    # chord steps: the row space must then save far more flops to pay
    # (ROWSPACE_MIN_SAVING). 20 features, 21 parameters: the classic tasks
    batch, problem, _, precision = wide_tasks(LOGISTIC, 1, sparse=False,
                                              n_rows=n_rows, n_features=20)
    assert row_space_pays(batch, problem, precision,
                          kept_inverses=True) is with_kept
    assert row_space_pays(batch, problem, precision) is without_kept
    # solve_inner decides on the inverses it is given
    row_space_calls = []
    solve_rows = calls_module.solve_tasks_rowspace
    monkeypatch.setattr(
        calls_module, "solve_tasks_rowspace",
        lambda *args: row_space_calls.append(1) or solve_rows(*args))
    T, d = batch.n_tasks, problem.n_params
    kept = calls_module.KeptInverses(np.empty((T, d, d)),
                                     np.zeros(T, dtype=np.uint8), np.empty((0, d)))
    chosen = []
    for given in (kept, None):
        row_space_calls.clear()
        solve_inner(batch, problem, np.zeros(d), precision, np.zeros((T, d)),
                    kept=given)
        chosen.append(bool(row_space_calls))
    assert chosen == [with_kept, without_kept]


def test_summed_inverses_stay_within_their_memory_budget(monkeypatch):
    monkeypatch.setattr(calls_module, "INVERSE_SUMS_MAX_BYTES", 16 * 300**2 * 4)
    # at most four d x d blocks (or that many bytes of diagonals)
    assert -(-1000 // summation_block(1000, 300)) <= 4
    assert summation_block(1000, 300, diagonal=True) == summation_block(1000, 1)


def assert_joint_optimality(meta, X, y, tasks, alpha):
    """Each task's ridge gradient is zero, and theta0 is the tasks' mean."""
    P = meta.prior_precision_
    for t, label in enumerate(meta.tasks_):
        Z = np.column_stack([X[tasks == label], np.ones((tasks == label).sum())])
        theta = meta.task_params_[t]
        penalty = np.r_[np.full(X.shape[1], alpha), 0.0] * theta
        grad = Z.T @ (Z @ theta - y[tasks == label]) + penalty + P * (
            theta - meta.meta_params_)
        scale = max(1.0, np.abs(Z.T @ y[tasks == label]).max())
        assert np.max(np.abs(grad)) < 1e-6 * scale
    assert_allclose(meta.meta_params_, meta.task_params_.mean(axis=0), atol=1e-6)


def test_proximal_fit_of_wide_tasks_reaches_the_joint_minimizer(monkeypatch):
    rng = np.random.default_rng(3)
    T, n, p = 12, 8, 600  # d = 601: only diagonals of the inverses are summed
    X = rng.normal(size=(T * n, p))
    w = rng.normal(size=p) / np.sqrt(p)
    tasks = np.repeat(np.arange(T), n)
    y = X @ w + 0.1 * rng.normal(size=T * n)
    meta = MetaRegressor(Ridge(alpha=1.0), gamma=2.0, prior="isotropic",
                         tol=1e-10).fit(
        X, y, tasks=tasks)
    assert_joint_optimality(meta, X, y, tasks, 1.0)
    # the same minimizer as with the full inverse Hessian sums
    monkeypatch.setattr(calls_module, "FULL_INVERSE_MAX_PARAMS", 10**6)
    monkeypatch.setattr(proximal_module, "VECTOR_PRIOR_MAX_FULL_PARAMS", 10**6)
    full = MetaRegressor(Ridge(alpha=1.0), gamma=2.0, prior="isotropic",
                         tol=1e-10).fit(
        X, y, tasks=tasks)
    assert_allclose(meta.task_params_, full.task_params_, atol=1e-7)


def test_empirical_bayes_on_wide_tasks_uses_diagonal_posteriors(monkeypatch):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10 * 6, 520))
    tasks = np.repeat(np.arange(10), 6)
    y = (X[:, 0] + rng.logistic(size=60) > 0).astype(int)
    meta = MetaClassifier(LogisticRegression(), gamma="auto",
                          prior="diagonal").fit(X, y, tasks=tasks)
    assert meta.prior_shape_.shape == (521,)
    assert np.isfinite(meta.gamma_) and meta.gamma_ > 0
    with pytest.raises(ValueError, match="prior='full'.*n_params=521"):
        MetaClassifier(gamma="auto", prior="full").fit(X, y, tasks=tasks)
    # no per-task d x d matrix is kept for wide tasks
    seen = []
    original = inner_module.InnerSolver.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append((self.diagonal, self.inverses))

    monkeypatch.setattr(inner_module.InnerSolver, "__init__", spy)
    MetaClassifier(gamma=1.0).fit(X, y, tasks=tasks)
    assert seen and all(diagonal and kept is None for diagonal, kept in seen)


def test_pinned_coefficients_of_wide_tasks_reach_the_stationary_prior_mean():
    # 305 parameters (vector prior, diagonal sums), all but one feature's
    # shared by the tasks and pinned to theta0 by a strong precision, and
    # correlated features: the prior mean's Newton step needs the products
    # with the summed inverse Hessians (the row-space factors, 3.2 MB here).
    # With the diagonal alone (the factors switched off, as past their
    # budget) it overshot, and the fit ran to max_iter with a prior mean
    # far from the tasks' mean (by 6.0, at a scale of 28)
    X, y, tasks = make_meta_classification(
        n_tasks=40, n_samples_per_task=20, n_features=60, n_classes=5,
        n_informative=10, n_redundant=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        meta = MetaClassifier(prior="isotropic", random_effects=[0],
                              max_iter=150).fit(X, y, tasks=tasks)
    assert meta.n_iter_ < 150
    # stationarity of the reduced objective in theta0 (no base penalty in
    # the prior of wide tasks): the prior mean is the tasks' mean
    assert_allclose(meta.meta_params_, meta.task_params_.mean(axis=0),
                    atol=1e-6)


def test_row_space_factors_are_kept_within_one_budget_for_all_shards(
        monkeypatch):
    X, y, tasks = make_meta_classification(
        n_tasks=40, n_samples_per_task=20, n_features=60, n_classes=5,
        n_informative=10, random_state=0)
    batch, _ = make_batch(X, y.astype(float), np.ones(len(y)), tasks, 40)
    l2w = np.tile(np.r_[np.ones(60), 0.0], 5)
    problem = Problem(MULTINOMIAL, 5, 60, True, False, 1.0, 0.0, l2w, l2w.copy())
    # 40 tasks' factors by the multinomial's blocks: 2 K n + 1 = 201 rows of
    # n = 20 (C^{-1} W whole would be 100 x 100)
    need = 8 * 40 * 201 * 20
    for budget, kept in ((need, True), (need - 1, False)):
        monkeypatch.setattr(inner_module, "CURVATURE_MAX_BYTES", budget)
        solver = inner_module.InnerSolver(batch, problem, n_jobs=2,
                                          max_full_params=256)
        # two shards, each within the budget alone: the budget is for all
        assert len(solver.ranges) > 1 and solver.products is kept
        d = problem.n_params
        x = np.random.default_rng(0).normal(size=d)
        with solver:
            solutions = solver.solve(np.zeros(d), np.full(d, 2.0),
                                     np.zeros((40, d)), inverse="sum",
                                     rowspace=True)
            # the shards' products on the solver's threads
            threaded = kept and solutions.inverse_sum_times(x)
        assert (solutions.inverse_sum_times is not None) is kept
        if kept:
            # one after the other once the threads are gone: summed in the
            # same order, the same bits
            assert_array_equal(solutions.inverse_sum_times(x), threaded)


def test_vector_priors_sum_only_diagonals_past_their_own_threshold(monkeypatch):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(12 * 5, 300))  # 301 parameters, 5 rows per task
    tasks = np.repeat(np.arange(12), 5)
    y = X[:, 0] + rng.normal(size=60)
    seen = []

    class Spy(inner_module.InnerSolver):
        # the solvers of the proximal fit (not MetaRegressor's posteriors)
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.diagonal)

    monkeypatch.setattr(proximal_module, "InnerSolver", Spy)
    # an isotropic or diagonal prior needs only diagonals of the inverses
    for prior in ("isotropic", "diagonal", "auto"):
        seen.clear()
        MetaRegressor(Ridge(), prior=prior).fit(X, y, tasks=tasks)
        assert seen and all(seen), prior
    # a full one gets full inverses up to FULL_INVERSE_MAX_PARAMS
    seen.clear()
    full = MetaRegressor(Ridge(), prior="full").fit(X, y, tasks=tasks)
    assert full.prior_shape_.shape == (301, 301)
    assert seen and not any(seen)
    # and so does prior="auto" with enough tasks to compare matrix priors
    monkeypatch.setattr(proximal_module, "MATRIX_PRIOR_TASKS_PER_EFFECT", 0.01)
    seen.clear()
    auto = MetaRegressor(Ridge(), max_iter=3).fit(X, y, tasks=tasks)
    assert "full" in auto.prior_scores_
    assert seen and not any(seen)


def test_mixture_priors_keep_no_row_space_factors(monkeypatch):
    # a mixture's component means are weighted averages of the tasks' modes:
    # nothing multiplies by the sums of inverse Hessians, so wide tasks keep
    # no row-space factors (200 such ten-class tasks of 50 rows and 60
    # features kept 400 MB per component, and took 1.6 times as long)
    X, y, tasks = make_meta_classification(
        n_tasks=12, n_samples_per_task=8, n_features=600, n_informative=5,
        random_state=0)
    kept = []

    def spy(keep_products):
        class Spy(inner_module.InnerSolver):
            def __init__(self, *args, **kwargs):
                if keep_products is not None:
                    kwargs["keep_products"] = keep_products
                super().__init__(*args, **kwargs)

            def solve(self, *args, **kwargs):
                solutions = super().solve(*args, **kwargs)
                kept.append(solutions.inverse_sum_times is not None)
                return solutions
        return Spy

    def fit(keep_products):
        monkeypatch.setattr(mixture_module, "InnerSolver", spy(keep_products))
        kept.clear()
        meta = MetaClassifier(prior="mixture", n_prior_components=2,
                              max_iter=5, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return meta.fit(X, y, tasks=tasks)

    # the EM starts from a Gaussian prior, whose Newton steps would use the
    # factors: both fits start from the first one's
    starts = []
    gaussian_start = mixture_module._gaussian_start

    def first_start(*args, **kwargs):
        if not starts:
            starts.append(gaussian_start(*args, **kwargs))
        return starts[0]

    monkeypatch.setattr(mixture_module, "_gaussian_start", first_start)
    meta = fit(None)
    assert kept and not any(kept)
    # the factors, were they kept, would change nothing
    reference = fit(True)
    assert any(kept)
    assert_allclose(meta.task_params_, reference.task_params_, rtol=0, atol=0)
    assert_allclose(meta.meta_params_, reference.meta_params_, rtol=0, atol=0)
