"""The task-batched inner solver and the proximal outer loop, against references.

Every objective is the plain numpy reference of ``conftest.InnerObjective``
(written independently of the kernels, and itself checked against finite
differences in ``test_datafits.py``), minimized here with scipy.optimize;
the kernels must land on the same minimizer, satisfy its optimality
conditions, and report the same objective.
"""

import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import (
    CODE_IDS,
    CODES,
    N_CLASSES,
    InnerObjective,
    intercept_mask,
    make_problem,
    make_tasks,
    random_spd,
)
from scipy import optimize
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression

import skmeta._methods._inner as inner_module
from skmeta import MetaClassifier, MetaRegressor
from skmeta._kernels._calls import (
    InverseRequest,
    decision_values,
    solve_inner,
    summation_block,
)
from skmeta._kernels._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from skmeta._kernels._layout import Problem, block_size_for, make_batch
from skmeta._methods._inner import InnerSolver, solve_exactly
from skmeta._methods._prior import Prior
from skmeta._methods._proximal import fit_proximal
from skmeta._methods._structures import Structure

KERNEL_TOL = 1e-11


# --------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------
def scipy_minimize_smooth(ref, x0=None):
    x0 = np.zeros(ref.d) if x0 is None else x0
    res = optimize.minimize(ref.smooth, x0, jac=ref.grad, hess=ref.hess,
                            method="trust-exact", options={"gtol": 1e-12,
                                                           "maxiter": 1000})
    return res.x


def scipy_minimize_l1(ref):
    """Smooth reformulation: theta = u - v, u, v >= 0 on l1-penalized entries."""
    pen = ref.l1w > 0
    m = int(pen.sum())

    def unpack(x):
        theta = x[:ref.d].copy()
        theta[pen] += x[ref.d:ref.d + m] - x[ref.d + m:]
        return theta

    def fun(x):
        theta = unpack(x)
        g = ref.grad(theta)
        extra = ref.lam1 * ref.l1w[pen]
        value = ref.smooth(theta) + np.sum(extra * (x[ref.d:ref.d + m]
                                                    + x[ref.d + m:]))
        gx = np.concatenate([np.where(pen, 0.0, g), g[pen] + extra,
                             -g[pen] + extra])
        return value, gx

    bounds = ([(0, 0) if pj else (None, None) for pj in pen]
              + [(0, None)] * (2 * m))
    res = optimize.minimize(fun, np.zeros(ref.d + 2 * m), jac=True,
                            method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-15, "gtol": 1e-12,
                                     "maxiter": 20000, "maxcor": 30})
    return unpack(res.x)


def task_reference(problem, X, y, sw, tasks, t, theta0, precision):
    rows = tasks == t
    return InnerObjective.from_problem(problem, X[rows], y[rows], sw[rows],
                                       theta0=theta0, precision=precision)


def solve(X, y, sw, tasks, problem, theta0, precision, *, inverse=None,
          exact_inverse=False, **kwargs):
    n_tasks = int(tasks.max()) + 1
    batch, _ = make_batch(X, y, sw, tasks, n_tasks)
    start = np.zeros((n_tasks, problem.n_params))
    kwargs.setdefault("tol", KERNEL_TOL)
    if inverse is not None:
        kwargs["inverse"] = InverseRequest(posterior=inverse == "posterior",
                                           exact=exact_inverse)
    return solve_inner(batch, problem, theta0, precision, start, **kwargs)


def test_an_exact_solve_that_does_not_converge_warns():
    # a start whose loss overflows (exp of 250 x) leaves the Newton solver
    # no descent: it stops at max_iter, which adapt and partial_fit passed
    # on silently. From a sound start, the same problem converges.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(15, 3))
    y = rng.poisson(np.exp(0.3 * X[:, 0] + 0.2)).astype(float)
    problem = make_problem(POISSON, 3, mean_loss=True, lam2=1.0)
    batch, _ = make_batch(X, y, np.ones(15), np.zeros(15, dtype=np.intp), 1)
    far = np.array([250.0, 125.0, 0.0, 0.5])
    precision = np.diag([1e-3, 3.0, 4.0, 5.0])
    with pytest.warns(ConvergenceWarning, match="1 of 1 task"):
        solve_exactly(batch, problem, far, precision, far)
    # named, where the caller knows the tasks' labels (adapt, partial_fit)
    with pytest.warns(ConvergenceWarning,
                      match=r"1 of 1 task\(s\) \(task \['store-7'\]\)"):
        solve_exactly(batch, problem, far, precision, far,
                      labels=np.array(["store-7"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        theta = solve_exactly(batch, problem, far, precision, np.zeros(4))
    objective = InnerObjective.from_problem(problem, X, y, None, theta0=far,
                                            precision=precision)
    # (the transfer and penalty terms of the gradient are about 0.3 each)
    assert np.abs(objective.grad(theta[0])).max() < 1e-5


# --------------------------------------------------------------------------
# smooth problems: the minimizer scipy finds
# --------------------------------------------------------------------------
@pytest.mark.parametrize("mean_loss", [False, True], ids=["sum", "mean"])
@pytest.mark.parametrize("prec_kind", ["full", "diag"])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_smooth_solution_matches_scipy(code, fit_intercept, prec_kind, mean_loss):
    rng = np.random.default_rng([code, fit_intercept, prec_kind == "full",
                                 mean_loss])
    n_features = 3
    # a one-sample task and a weightless row exercise the degenerate paths
    X, y, sw, tasks = make_tasks(code, [1, 18, 35], n_features, seed=rng,
                                 weightless=2)
    problem0 = make_problem(code, n_features, fit_intercept=fit_intercept)
    d = problem0.n_params
    l2w = rng.uniform(0.5, 2.0, d)
    l2w[intercept_mask(problem0)] = 0.0
    # lam2 = 0 on the mean-scaled variant: the prior alone makes it definite
    lam2 = 0.0 if mean_loss and prec_kind == "full" else 0.4
    problem = make_problem(code, n_features, fit_intercept=fit_intercept,
                           mean_loss=mean_loss, lam2=lam2, l2w=l2w)
    theta0 = rng.normal(scale=0.3, size=d)
    scale = 0.05 if mean_loss else 1.0
    precision = (random_spd(d, rng, scale) if prec_kind == "full"
                 else rng.uniform(0.5, 2.0, d) * scale)

    result = solve(X, y, sw, tasks, problem, theta0, precision)
    assert np.all(result.n_iter > 0)
    for t in range(3):
        ref = task_reference(problem, X, y, sw, tasks, t, theta0, precision)
        theta = result.theta[t]
        expected = scipy_minimize_smooth(ref)
        size = max(1.0, np.abs(expected).max())
        np.testing.assert_allclose(theta, expected, rtol=1e-6, atol=1e-7 * size)
        # stationarity, independently of scipy's own stopping rule
        g_scale = max(1.0, np.abs(ref.hess(theta)).max())
        assert np.abs(ref.grad(theta)).max() < 1e-8 * g_scale
        np.testing.assert_allclose(result.objective[t], ref.objective(theta),
                                   rtol=1e-10)
        np.testing.assert_allclose(result.loss[t], ref.loss(theta), rtol=1e-10,
                                   atol=1e-14)


# --------------------------------------------------------------------------
# l1: optimality conditions and comparison with a smooth reformulation
# --------------------------------------------------------------------------
def assert_l1_optimal(gradient, theta, bound, atol):
    """The l1 problem's optimality conditions at ``theta``: the smooth
    part's ``gradient`` balances ``bound * sign(theta)`` where ``theta`` is
    nonzero and lies within ``bound`` where it is zero."""
    nz = theta != 0
    np.testing.assert_allclose(gradient[nz] + bound[nz] * np.sign(theta[nz]),
                               0.0, atol=atol)
    assert np.all(np.abs(gradient[~nz]) <= bound[~nz] + atol)


@pytest.mark.parametrize("intercept_l1", [False, True],
                         ids=["free-icpt", "l1-icpt"])
@pytest.mark.parametrize("lam2", [0.0, 0.3])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_l1_solution_satisfies_kkt_and_beats_scipy(code, lam2, intercept_l1):
    rng = np.random.default_rng([code, int(lam2 * 10), intercept_l1, 7])
    n_features = 6
    X, y, sw, tasks = make_tasks(code, [30, 45], n_features, seed=rng,
                                 weightless=2)
    mean_loss = code in (SQUARED, POISSON)
    problem0 = make_problem(code, n_features)
    d = problem0.n_params
    icpt = intercept_mask(problem0)
    l1w = rng.uniform(0.5, 1.5, d)
    l1w[icpt] = 0.5 if intercept_l1 else 0.0
    l2w = np.where(icpt, 0.0, 1.0)
    lam1 = {SQUARED: 0.25, LOGISTIC: 3.0, MULTINOMIAL: 3.0, POISSON: 0.2}[code]
    problem = make_problem(code, n_features, mean_loss=mean_loss, lam2=lam2,
                           lam1=lam1, l2w=l2w, l1w=l1w)
    theta0 = rng.normal(scale=0.05, size=d)
    precision = np.full(d, 0.01 if mean_loss else 0.2)

    result = solve(X, y, sw, tasks, problem, theta0, precision)
    assert np.all(result.n_iter > 0)
    n_zero = 0
    for t in range(2):
        ref = task_reference(problem, X, y, sw, tasks, t, theta0, precision)
        theta = result.theta[t]
        g = ref.grad(theta)
        n_zero += int(np.sum(theta == 0))
        atol = 1e-7 * max(1.0, np.abs(ref.hess(theta)).max())
        assert_l1_optimal(g, theta, lam1 * l1w, atol)
        if not intercept_l1:
            # an unpenalized intercept is never clipped and is stationary
            assert np.all(theta[icpt] != 0)
            np.testing.assert_allclose(g[icpt], 0.0, atol=atol)
        np.testing.assert_allclose(result.objective[t], ref.objective(theta),
                                   rtol=1e-10)
        reference = scipy_minimize_l1(ref)
        assert ref.objective(theta) <= ref.objective(reference) + 1e-10 * abs(
            ref.objective(reference))
        np.testing.assert_allclose(theta, reference, atol=1e-4)
    # the penalty must actually bite for the test to mean anything
    assert 0 < n_zero < 2 * d - 2


@pytest.mark.parametrize("intercept_l1", [False, True],
                         ids=["free-icpt", "l1-icpt"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_l1_solution_on_columns_of_a_large_mean(code, intercept_l1):
    # A column of a large mean (a year, a price level) moves with the
    # intercept; under a prior on the intercept too, the l1 coordinates
    # themselves are ill-conditioned. Coordinate descent alone stopped far
    # from the minimizer there: a Lasso objective of 8.63 where it is 8.60
    # (offset 1e3), LogisticRegression(penalty="l1") coefficients of 0.
    rng = np.random.default_rng([code, intercept_l1, 11])
    n_features = 3
    X, y, sw, tasks = make_tasks(code, [40, 30], n_features, seed=rng)
    X = X + 1e3
    mean_loss = code in (SQUARED, POISSON)
    problem0 = make_problem(code, n_features)
    d = problem0.n_params
    icpt = intercept_mask(problem0)
    l1w = np.where(icpt, 0.5 if intercept_l1 else 0.0, 1.0)
    lam1 = {SQUARED: 0.1, LOGISTIC: 2.0, MULTINOMIAL: 2.0, POISSON: 0.05}[code]
    problem = make_problem(code, n_features, mean_loss=mean_loss, lam1=lam1,
                           l2w=np.zeros(d), l1w=l1w)
    theta0 = rng.normal(scale=0.05, size=d)
    precision = np.full(d, 0.5 if mean_loss else 2.0)
    result = solve(X, y, sw, tasks, problem, theta0, precision)
    assert np.all(result.n_iter > 0)
    for t in range(2):
        ref = task_reference(problem, X, y, sw, tasks, t, theta0, precision)
        theta = result.theta[t]
        # the gradient's entries are sums of x (about 1e3) times residuals:
        # their round-off is far below this tolerance
        assert_l1_optimal(ref.grad(theta), theta, lam1 * l1w, atol=1e-6)


def _l1_minimizer_by_enumeration(A, g, theta, lam):
    """Minimizer of ``g.delta + delta.A.delta/2 + sum lam |theta + delta|``
    by trying every sign pattern of the l1 coordinates (exact for small d):
    the pattern whose smooth minimizer keeps its signs and satisfies the
    optimality conditions at zero."""
    d = len(g)
    c = g - A @ theta  # in x = theta + delta
    l1 = np.flatnonzero(lam > 0)
    for signs in itertools.product((-1.0, 0.0, 1.0), repeat=len(l1)):
        s = np.zeros(d)
        s[l1] = signs
        active = (lam == 0) | (s != 0)
        x = np.zeros(d)
        x[active] = np.linalg.solve(A[np.ix_(active, active)],
                                    -(c + lam * s)[active])
        if np.any(np.sign(x[l1]) != s[l1]):
            continue
        slope = c + A @ x
        if np.all(np.abs(slope[~active]) <= lam[~active] + 1e-9 * np.abs(c).max()):
            return x - theta
    raise AssertionError("no sign pattern is optimal")


def _l1_model(delta, A, g, theta, lam):
    return g @ delta + delta @ A @ delta / 2 + lam @ np.abs(theta + delta)


def test_the_l1_direction_is_the_exact_minimizer_of_its_model():
    # the proximal Newton direction against every sign pattern, on random
    # quadratics: ill-conditioned ones, columns offset by 1,000 beside free
    # (unpenalized) coordinates, starts at zero. The feature-sign search
    # ended at a full step across zero, or at a coordinate left 1e-17 from
    # it, as if optimal: 46 of 300 such problems off by up to 64 %.
    from numba import njit

    from skmeta._kernels._newton import prox_newton_direction
    from skmeta._kernels._workspaces import newton_workspace

    @njit
    def direction(A, grad, theta, problem, d, work):
        prox_newton_direction(A, grad, theta, problem, d, 1e-10, work)

    rng = np.random.default_rng(21)
    for _ in range(150):
        d = int(rng.integers(2, 8))
        n_free = int(rng.integers(0, min(3, d)))
        if rng.random() < 0.5:
            Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
            A = (Q * np.logspace(0, rng.uniform(0, 6), d)) @ Q.T
        else:
            X = rng.standard_normal((3 * d, d)) + 1e3
            X[:, :n_free] = 1.0
            A = X.T @ X / (3 * d) + 1e-3 * np.eye(d)
        A = (A + A.T) / 2
        g = rng.standard_normal(d) * rng.choice([1e-3, 1.0, 10.0])
        theta = np.where(rng.random(d) < 0.4, 0.0, rng.standard_normal(d))
        l1w = np.r_[np.zeros(n_free), np.ones(d - n_free)]
        lam1 = 10 ** rng.uniform(-3, 1)
        problem = Problem(SQUARED, 1, d, False, True, 0.0, lam1, np.zeros(d),
                          l1w)
        work = newton_workspace(problem, 1, dense=True)
        direction(A.copy(), g.copy(), theta.copy(), problem.arrays, d, work)
        lam = lam1 * l1w
        expected = _l1_minimizer_by_enumeration(A, g, theta, lam)
        best = _l1_model(expected, A, g, theta, lam)
        assert _l1_model(work.delta, A, g, theta, lam) <= best + 1e-9 * max(
            1.0, abs(best))


# --------------------------------------------------------------------------
# input layouts
# --------------------------------------------------------------------------
def messy_csr(X, rng):
    """CSR of X with explicit zeros, a duplicate entry and unsorted indices.

    Every row stores some of its zeros explicitly and splits one non-zero
    into two entries of the same column that add up to it.
    """
    data, indices, indptr = [], [], [0]
    for row in X:
        nonzero = np.flatnonzero(row)
        zeros = np.flatnonzero(row == 0)
        cols = list(nonzero) + list(rng.choice(zeros, size=min(2, zeros.size),
                                               replace=False))
        values = list(row[cols])
        if nonzero.size:
            j = nonzero[0]
            part = rng.uniform(0.2, 0.8) * row[j]
            values[0] = row[j] - part
            cols.append(j)
            values.append(part)
        perm = rng.permutation(len(cols))
        data.extend(np.asarray(values)[perm])
        indices.extend(np.asarray(cols)[perm])
        indptr.append(len(indices))
    M = sp.csr_matrix((np.array(data), np.array(indices, dtype=np.int32),
                       np.array(indptr, dtype=np.int32)), shape=X.shape)
    assert not M.has_canonical_format
    assert np.any(M.data == 0)
    np.testing.assert_allclose(M.toarray(), X, rtol=1e-15, atol=1e-15)
    return M


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_sparse_input_matches_dense(code, fit_intercept):
    rng = np.random.default_rng([code, fit_intercept, 3])
    X, y, sw, tasks = make_tasks(code, [20, 1, 33], 5, seed=rng, weightless=2,
                                 density=0.4)
    # interleave the tasks so that make_batch has to reorder the CSR rows
    perm = rng.permutation(len(y))
    X, y, sw, tasks = X[perm], y[perm], sw[perm], tasks[perm]
    problem = make_problem(code, 5, fit_intercept=fit_intercept,
                           mean_loss=code == POISSON, lam2=0.2)
    d = problem.n_params
    theta0 = rng.normal(scale=0.2, size=d)
    precision = random_spd(d, rng, 0.3)
    Xs = messy_csr(X, rng)
    dense = solve(X, y, sw, tasks, problem, theta0, precision, inverse="posterior")
    sparse = solve(Xs, y, sw, tasks, problem, theta0, precision,
                   inverse="posterior")
    np.testing.assert_allclose(sparse.theta, dense.theta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sparse.objective, dense.objective, rtol=1e-12)
    np.testing.assert_allclose(sparse.inv_blocks, dense.inv_blocks, rtol=1e-8,
                               atol=1e-13)
    np.testing.assert_allclose(sparse.trace, dense.trace, rtol=1e-8, atol=1e-12)
    # the caller's matrix is left as it was
    assert not Xs.has_canonical_format


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("code", [LOGISTIC, MULTINOMIAL], ids=CODE_IDS[1:3])
def test_float32_input(code, layout):
    rng = np.random.default_rng([code, layout == "csr"])
    X, y, sw, tasks = make_tasks(code, [25, 30], 4, seed=rng, weightless=2,
                                 density=0.6)
    problem = make_problem(code, 4, lam2=0.3, lam1=0.5)
    d = problem.n_params
    theta0 = np.zeros(d)
    precision = np.full(d, 0.1)
    X32 = X.astype(np.float32)
    as_layout = sp.csr_matrix if layout == "csr" else np.asarray
    r32 = solve(as_layout(X32), y, sw, tasks, problem, theta0, precision)
    r_rounded = solve(as_layout(X32.astype(np.float64)), y, sw, tasks, problem,
                      theta0, precision)
    r64 = solve(as_layout(X), y, sw, tasks, problem, theta0, precision)
    # float32 data is read exactly and all arithmetic is float64
    np.testing.assert_allclose(r32.theta, r_rounded.theta, rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(r32.theta, r64.theta, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_tasks_solved_together_equal_tasks_solved_alone(code, layout):
    rng = np.random.default_rng([code, layout == "csr", 5])
    sizes = [12, 3, 40, 1, 25, 8, 17]
    X, y, sw, tasks = make_tasks(code, sizes, 4, seed=rng, weightless=2,
                                 density=0.7)
    problem = make_problem(code, 4, mean_loss=code == POISSON, lam2=0.1,
                           lam1=0.05 if code == SQUARED else 0.0)
    d = problem.n_params
    theta0 = rng.normal(scale=0.2, size=d)
    precision = random_spd(d, rng, 0.5)
    as_layout = sp.csr_matrix if layout == "csr" else np.asarray
    together = solve(as_layout(X), y, sw, tasks, problem, theta0, precision)
    for t in range(len(sizes)):
        rows = tasks == t
        alone = solve(as_layout(X[rows]), y[rows], sw[rows],
                      np.zeros(rows.sum(), dtype=int), problem, theta0,
                      precision)
        np.testing.assert_array_equal(alone.theta[0], together.theta[t])
        assert alone.objective[0] == together.objective[t]
        assert alone.loss[0] == together.loss[t]
        assert alone.n_iter[0] == together.n_iter[t]

    # rows interleaved across tasks, each task's rows kept in their order:
    # make_batch's stable sort restores the same batch, bit for bit
    pos = {t: iter(np.flatnonzero(tasks == t)) for t in range(len(sizes))}
    interleaved = np.array([next(pos[t]) for t in rng.permutation(tasks)])
    mixed = solve(as_layout(X[interleaved]), y[interleaved], sw[interleaved],
                  tasks[interleaved], problem, theta0, precision)
    np.testing.assert_array_equal(mixed.theta, together.theta)

    # any other order only changes summation order
    shuffled = rng.permutation(len(y))
    batch, order = make_batch(as_layout(X[shuffled]), y[shuffled], sw[shuffled],
                              tasks[shuffled], len(sizes))
    np.testing.assert_array_equal(batch.y, y[shuffled][order])
    np.testing.assert_array_equal(np.diff(batch.offsets), sizes)
    other = solve(as_layout(X[shuffled]), y[shuffled], sw[shuffled],
                  tasks[shuffled], problem, theta0, precision)
    np.testing.assert_allclose(other.theta, together.theta, rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_warm_start_iteration_limit_and_inputs(code):
    rng = np.random.default_rng([code, 29])
    X, y, sw, tasks = make_tasks(code, [20, 30, 25], 3, seed=rng, weightless=2)
    problem = make_problem(code, 3, lam2=0.3)
    d = problem.n_params
    theta0 = rng.normal(scale=0.2, size=d)
    precision = np.full(d, 0.5)
    batch, _ = make_batch(X, y, sw, tasks, 3)
    copies = [a.copy() for a in (batch.Xd, batch.y, batch.sw, theta0, precision)]
    cold = solve_inner(batch, problem, theta0, precision, np.zeros((3, d)),
                       tol=KERNEL_TOL)
    start = rng.normal(size=(3, d))
    start_copy = start.copy()
    warm = solve_inner(batch, problem, theta0, precision, start, tol=KERNEL_TOL)
    # a convex problem has one minimizer, wherever the solver starts
    np.testing.assert_allclose(warm.theta, cold.theta, rtol=1e-8, atol=1e-10)
    # the warm start and the batch are read, not written
    np.testing.assert_array_equal(start, start_copy)
    for before, after in zip(copies, (batch.Xd, batch.y, batch.sw, theta0,
                                      precision)):
        np.testing.assert_array_equal(before, after)
    # the iteration count is negative when the budget runs out
    if code != SQUARED:  # a quadratic is solved by its first Newton step
        short = solve_inner(batch, problem, theta0, precision, start,
                            max_iter=1, tol=KERNEL_TOL)
        np.testing.assert_array_equal(short.n_iter, -1)
        for t in range(3):
            # the line search only accepts steps that decrease the objective
            ref = task_reference(problem, X, y, sw, tasks, t, theta0, precision)
            assert short.objective[t] < ref.objective(start[t])
            assert short.objective[t] >= warm.objective[t]
    assert np.all(cold.n_iter > 0) and np.all(warm.n_iter > 0)


def test_empty_task_gets_the_penalized_prior_mean():
    # a task without rows minimizes the penalties alone:
    # (lam2 diag(l2w) + Pi) theta = Pi theta0
    rng = np.random.default_rng(31)
    X, y, sw, tasks = make_tasks(LOGISTIC, [10, 12], 2, seed=rng, weightless=2)
    tasks = np.where(tasks == 1, 2, 0)  # task 1 has no rows
    l2w = np.array([1.0, 1.0, 0.0])
    for mean_loss in (False, True):
        problem = make_problem(LOGISTIC, 2, mean_loss=mean_loss, lam2=0.4,
                               l2w=l2w)
        theta0 = np.array([0.5, -1.0, 2.0])
        precision = random_spd(3, rng)
        result = solve(X, y, sw, tasks, problem, theta0, precision)
        expected = np.linalg.solve(np.diag(0.4 * l2w) + precision,
                                   precision @ theta0)
        np.testing.assert_allclose(result.theta[1], expected, rtol=1e-10)
        assert result.loss[1] == 0.0


def test_task_weights_with_trailing_empty_task():
    X = np.arange(20.0).reshape(10, 2)
    sw = np.arange(1.0, 11.0)
    codes = np.repeat([0, 1], 5)
    batch, _ = make_batch(X, np.zeros(10), sw, codes, 3)
    np.testing.assert_array_equal(batch.offsets, [0, 5, 10, 10])
    np.testing.assert_allclose(batch.task_weights(),
                               np.bincount(codes, weights=sw, minlength=3))


def test_task_weights():
    rng = np.random.default_rng(37)
    codes = np.sort(rng.choice([0, 2, 3, 5], size=40))  # tasks 1 and 4 empty
    codes[-1] = 5
    sw = rng.uniform(0, 2, 40)
    batch, _ = make_batch(rng.normal(size=(40, 2)), np.zeros(40), sw, codes, 6)
    np.testing.assert_allclose(batch.task_weights(),
                               np.bincount(codes, weights=sw, minlength=6))


# --------------------------------------------------------------------------
# inverse Hessians
# --------------------------------------------------------------------------
def inverse_case(code, prec_kind, tol, **kwargs):
    """Kernel inverse-Hessian outputs and their numpy counterparts."""
    rng = np.random.default_rng([code, prec_kind == "full", 11])
    n_tasks = 150  # several tasks per summation block
    sizes = rng.integers(1, 12, size=n_tasks)
    X, y, sw, tasks = make_tasks(code, sizes, 2, seed=rng)
    problem = make_problem(code, 2, mean_loss=code == POISSON, lam2=0.3)
    d = problem.n_params
    theta0 = rng.normal(scale=0.3, size=d)
    precision = (random_spd(d, rng) if prec_kind == "full"
                 else rng.uniform(0.5, 1.5, d))
    inv_weight = rng.uniform(0.1, 3.0, n_tasks)
    result = solve(X, y, sw, tasks, problem, theta0, precision,
                   inverse="posterior", inv_weight=inv_weight, tol=tol, **kwargs)
    block = summation_block(n_tasks, d)
    assert block > 1
    n_blocks = -(-n_tasks // block)
    assert result.inv_blocks.shape == result.inv_wblocks.shape == (n_blocks, d, d)
    expected = np.zeros((n_blocks, d, d))
    expected_w = np.zeros((n_blocks, d, d))
    expected_trace = np.zeros(n_tasks)
    penalty = np.diag(problem.lam2 * problem.l2w) + (
        np.diag(precision) if precision.ndim == 1 else precision)
    for t in range(n_tasks):
        ref = task_reference(problem, X, y, sw, tasks, t, theta0, precision)
        H_inv = np.linalg.inv(ref.hess(result.theta[t]))
        expected[t // block] += H_inv
        expected_w[t // block] += inv_weight[t] * H_inv
        # tr(H_data H^-1), the effective number of parameters fitted by data
        expected_trace[t] = d - np.trace(penalty @ H_inv)
    return result, expected, expected_w, expected_trace


def assert_inverse_outputs(case, rtol):
    result, expected, expected_w, expected_trace = case
    for actual, desired in [(result.inv_blocks, expected),
                            (result.inv_wblocks, expected_w),
                            (result.trace, expected_trace)]:
        np.testing.assert_allclose(actual, desired, rtol=rtol,
                                   atol=rtol * np.abs(desired).max())


@pytest.mark.parametrize("prec_kind", ["full", "diag"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_inverse_hessian_block_sums(code, prec_kind):
    # By default the inverses are those of the last Hessian the solver
    # computed, which chord steps may leave a short way from the solution:
    # good to ~1e-3, enough for the outer loops. This checks layout,
    # weighting and block summation; the squared loss has a constant
    # Hessian, so there it must be exact.
    rtol = 1e-10 if code == SQUARED else 5e-3
    assert_inverse_outputs(inverse_case(code, prec_kind, KERNEL_TOL), rtol)


@pytest.mark.parametrize("prec_kind", ["full", "diag"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_exact_inverse_hessian_is_taken_at_the_solution(code, prec_kind):
    # exact_inverse asks for the Jacobian of the solutions with respect to
    # the prior mean: the Hessian must then be evaluated at the solution
    case = inverse_case(code, prec_kind, KERNEL_TOL, exact_inverse=True)
    assert_inverse_outputs(case, 1e-8)


@pytest.mark.parametrize("code", [SQUARED, LOGISTIC], ids=CODE_IDS[:2])
def test_inverse_hessian_with_l1_is_restricted_to_active_set(code):
    rng = np.random.default_rng([code, 13])
    n_tasks = 12  # one task per block, so blocks are individual tasks
    assert block_size_for(n_tasks) == 1
    X, y, sw, tasks = make_tasks(code, [30] * n_tasks, 6, seed=rng,
                                 weightless=2)
    problem = make_problem(code, 6, mean_loss=True, lam2=0.05, lam1=0.1)
    d = problem.n_params
    precision = np.full(d, 0.02)
    theta0 = np.zeros(d)
    inv_weight = rng.uniform(0.5, 2.0, n_tasks)
    # proximal Newton rebuilds its Hessian every step, so a tight solve puts
    # the last one at the solution
    result = solve(X, y, sw, tasks, problem, theta0, precision,
                   inverse="posterior", inv_weight=inv_weight, tol=1e-14)
    assert np.all(result.n_iter > 0)
    n_zero = 0
    for t in range(n_tasks):
        theta = result.theta[t]
        ref = task_reference(problem, X, y, sw, tasks, t, theta0, precision)
        H = ref.hess(theta)
        active = theta != 0
        n_zero += int(np.sum(~active))
        expected = np.zeros((d, d))
        expected[np.ix_(active, active)] = np.linalg.inv(H[np.ix_(active,
                                                                  active)])
        np.testing.assert_allclose(result.inv_blocks[t], expected, rtol=1e-7,
                                   atol=1e-10)
        assert np.all(result.inv_blocks[t][~active] == 0)
        assert np.all(result.inv_blocks[t][:, ~active] == 0)
        # the weighted sum is the Laplace covariance: the full inverse
        np.testing.assert_allclose(result.inv_wblocks[t],
                                   inv_weight[t] * np.linalg.inv(H), rtol=1e-7,
                                   atol=1e-10)
    assert n_zero > 0


# --------------------------------------------------------------------------
# predictions
# --------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_decision_values(n_outputs, fit_intercept, layout):
    rng = np.random.default_rng([n_outputs, fit_intercept, layout == "csr"])
    n, p, n_models = 40, 5, 4
    X = rng.normal(size=(n, p))
    X[rng.random(X.shape) < 0.5] = 0.0
    coef = rng.normal(size=(n_models, n_outputs, p))
    intercept = (rng.normal(size=(n_models, n_outputs)) if fit_intercept
                 else np.zeros((n_models, n_outputs)))
    blocks = [coef, intercept[:, :, None]] if fit_intercept else [coef]
    params = np.concatenate(blocks, axis=2).reshape(n_models, -1)
    row_model = rng.integers(0, n_models, size=n)
    code = MULTINOMIAL if n_outputs > 1 else SQUARED
    problem = Problem(code, n_outputs, p, fit_intercept, False, 0.0, 0.0,
                      np.ones(params.shape[1]), np.ones(params.shape[1]))
    Xin = messy_csr(X, rng) if layout == "csr" else X
    out = decision_values(Xin, row_model, params, problem)
    expected = np.einsum("np,nkp->nk", X, coef[row_model]) + intercept[row_model]
    assert out.shape == (n, n_outputs)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# the proximal outer loop: the joint multi-task objective
# --------------------------------------------------------------------------
def joint_reference(refs, P):
    """J(theta0, theta_1..T) over the stacked vector, with its derivatives.

    The references carry no prior; the coupling term is added here.
    """
    T, d = len(refs), refs[0].d

    def split(x):
        return x[:d], x[d:].reshape(T, d)

    def fun(x):
        th0, th = split(x)
        dev = th - th0
        return (sum(r.smooth(th[t]) for t, r in enumerate(refs))
                + 0.5 * np.einsum("ti,ij,tj->", dev, P, dev))

    def grad(x):
        th0, th = split(x)
        dev = th - th0
        g_t = np.array([r.grad(th[t]) for t, r in enumerate(refs)]) + dev @ P
        return np.concatenate([-(dev @ P).sum(axis=0), g_t.ravel()])

    def hess(x):
        th0, th = split(x)
        H = np.zeros(((T + 1) * d,) * 2)
        H[:d, :d] = T * P
        for t, r in enumerate(refs):
            s = slice((t + 1) * d, (t + 2) * d)
            H[s, s] = r.hess(th[t]) + P
            H[:d, s] = -P
            H[s, :d] = -P
        return H

    return fun, grad, hess


@pytest.mark.parametrize(
    "code, mean_loss, prec_kind",
    [(LOGISTIC, False, "full"), (SQUARED, True, "diag"),
     (MULTINOMIAL, False, "diag"), (POISSON, True, "full")],
    ids=["logistic-full", "squared-diag", "multinomial-diag", "poisson-full"])
def test_fit_proximal_minimizes_joint_objective(code, mean_loss, prec_kind):
    rng = np.random.default_rng([code, 17])
    n_tasks, p = 6, 2
    X, y, sw, tasks = make_tasks(code, [8, 15, 3, 20, 11, 6], p, seed=rng)
    problem = make_problem(code, p, mean_loss=mean_loss, lam2=0.2)
    d = problem.n_params
    shape = random_spd(d, rng) if prec_kind == "full" else rng.uniform(0.5, 2, d)
    gamma = 0.7
    batch, _ = make_batch(X, y, sw, tasks, n_tasks)
    solver = InnerSolver(batch, problem)
    prior = Prior(theta0=np.zeros(d), shape=shape, gamma=gamma)
    # "isotropic" without learn_gamma leaves the given precision fixed
    fit = fit_proximal(solver, prior, learn_theta0=True,
                       structure=Structure("isotropic"),
                       learn_gamma=False, max_iter=100, tol=1e-12)
    assert fit.converged
    np.testing.assert_array_equal(fit.prior.precision, gamma * shape)

    refs = [task_reference(problem, X, y, sw, tasks, t, None, None)
            for t in range(n_tasks)]
    P = gamma * (np.diag(shape) if shape.ndim == 1 else shape)
    fun, grad, hess = joint_reference(refs, P)
    res = optimize.minimize(fun, np.zeros((n_tasks + 1) * d), jac=grad,
                            hess=hess, method="trust-exact",
                            options={"gtol": 1e-12, "maxiter": 1000})
    expected_theta0, expected_theta = res.x[:d], res.x[d:].reshape(n_tasks, d)
    if code == MULTINOMIAL:
        # with unpenalized intercepts, shifting every class intercept of the
        # prior and of all tasks together leaves J unchanged: only the
        # class-centred parameters are identified
        def identified(theta):
            blocks = theta.reshape(-1, N_CLASSES, p + 1)
            return (blocks - blocks.mean(axis=1, keepdims=True)).reshape(
                theta.shape)
    else:
        def identified(theta):
            return theta
    np.testing.assert_allclose(identified(fit.prior.theta0),
                               identified(expected_theta0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(identified(fit.theta), identified(expected_theta),
                               rtol=1e-5, atol=1e-7)
    # stationarity in theta0 makes the prior mean the tasks' mean
    np.testing.assert_allclose(fit.prior.theta0, fit.theta.mean(axis=0),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fit.objective, res.fun, rtol=1e-9)


@pytest.mark.parametrize("code", [SQUARED, LOGISTIC], ids=CODE_IDS[:2])
def test_fit_proximal_with_l1_is_jointly_optimal(code):
    # J is convex: (theta0, theta_t) is its minimizer iff each theta_t is the
    # inner solution under theta0 (KKT, checked against the numpy gradient)
    # and the theta0-gradient Pi sum_t (theta0 - theta_t) vanishes
    rng = np.random.default_rng([code, 19])
    n_tasks, p = 8, 4
    X, y, sw, tasks = make_tasks(code, rng.integers(5, 30, n_tasks), p, seed=rng)
    mean_loss = code == SQUARED
    lam1 = 0.1 if mean_loss else 2.0
    problem = make_problem(code, p, mean_loss=mean_loss, lam2=0.05, lam1=lam1)
    penalized = problem.l1w
    d = problem.n_params
    shape = random_spd(d, rng)
    gamma = 0.05 if mean_loss else 0.5
    batch, _ = make_batch(X, y, sw, tasks, n_tasks)
    fit = fit_proximal(InnerSolver(batch, problem),
                       Prior(theta0=np.zeros(d), shape=shape, gamma=gamma),
                       learn_theta0=True, structure=Structure("isotropic"),
                       learn_gamma=False,
                       max_iter=100, tol=1e-12)
    assert fit.converged
    theta0, theta = fit.prior.theta0, fit.theta
    np.testing.assert_allclose(theta0, theta.mean(axis=0), rtol=1e-7,
                               atol=1e-9)
    assert np.any(theta == 0)
    for t in range(n_tasks):
        ref = task_reference(problem, X, y, sw, tasks, t, theta0,
                             gamma * shape)
        g = ref.grad(theta[t])
        nz = theta[t] != 0
        atol = 1e-6 * max(1.0, np.abs(ref.hess(theta[t])).max())
        np.testing.assert_allclose(
            g[nz] + lam1 * penalized[nz] * np.sign(theta[t][nz]), 0.0,
            atol=atol)
        assert np.all(np.abs(g[~nz]) <= lam1 * penalized[~nz] + atol)


# --------------------------------------------------------------------------
# empirical Bayes: recovering the population the tasks were drawn from
# --------------------------------------------------------------------------
MU = np.array([1.0, -0.5, 0.5])  # two coefficients, then the intercept
SIGMA = np.array([[0.50, 0.20, 0.10],
                  [0.20, 0.40, -0.10],
                  [0.10, -0.10, 0.30]])


def draw_linear_tasks(n_tasks, noise, rng, n_per_task=40):
    theta = rng.multivariate_normal(MU, SIGMA, size=n_tasks)
    X = rng.normal(size=(n_tasks * n_per_task, 2))
    tasks = np.repeat(np.arange(n_tasks), n_per_task)
    y = (np.sum(X * theta[tasks, :2], axis=1) + theta[tasks, 2]
         + rng.normal(scale=noise, size=len(tasks)))
    return X, y, tasks


def test_empirical_bayes_recovers_gaussian_prior_of_linear_tasks():
    noise = 0.7
    errors_mu, errors_sigma = [], []
    for n_tasks in (50, 300, 2500):
        X, y, tasks = draw_linear_tasks(n_tasks, noise, np.random.default_rng(n_tasks))
        meta = MetaRegressor(LinearRegression(), prior="full", gamma="auto",
                             max_iter=500, tol=1e-8).fit(X, y, tasks=tasks)
        # with the loss 1/2 ||r||^2 the task negative log-likelihood is that
        # divided by sigma^2, so the precision in the loss's units is
        # sigma^2 Sigma^{-1}
        # the shape is normalized to unit determinant, gamma_ holds the scale
        np.testing.assert_allclose(np.linalg.det(meta.prior_shape_), 1.0,
                                   rtol=1e-10)
        sigma_hat = noise**2 * np.linalg.inv(meta.prior_precision_)
        errors_mu.append(np.linalg.norm(meta.meta_params_ - MU))
        errors_sigma.append(np.linalg.norm(sigma_hat - SIGMA)
                            / np.linalg.norm(SIGMA))
    assert errors_mu[-1] < 0.05
    assert errors_sigma[-1] < 0.1
    assert errors_mu[-1] < errors_mu[0] / 3
    assert errors_sigma[-1] < errors_sigma[0] / 3


def test_empirical_bayes_fixed_point_of_linear_tasks():
    # At convergence EM reproduces its own estimates. Written out for the
    # Gaussian hierarchy theta_t ~ N(theta0, Sigma), y = X theta_t + N(0, phi)
    # with every task's exact posterior N(theta_t, phi A_t^-1):
    #   theta0 = mean_t theta_t
    #   M      = mean_t[(theta_t - theta0)(...)^T + phi A_t^-1]
    #   phi    = (sum_t ||r_t||^2 + phi sum_t tr(H_data,t A_t^-1)) / n
    #   Pi     = phi inv((1 - s) M + s mean(diag M) I),  s = 1 / (T + 1)
    # (s is the documented one-task hyperprior toward isotropy).
    noise, n_tasks, n_per_task = 0.7, 1000, 40
    X, y, tasks = draw_linear_tasks(n_tasks, noise, np.random.default_rng(1),
                                    n_per_task)
    problem = make_problem(SQUARED, 2)
    batch, _ = make_batch(X, y, np.ones(len(y)), tasks, n_tasks)
    fit = fit_proximal(InnerSolver(batch, problem),
                       Prior.initial(np.zeros(3), Structure("full"), 1.0),
                       learn_theta0=True, structure=Structure("full"),
                       learn_gamma=True,
                       max_iter=500, tol=1e-10)
    assert fit.converged
    phi, P, theta0, theta = (fit.prior.dispersion, fit.prior.precision,
                             fit.prior.theta0, fit.theta)

    Xt = np.hstack([X, np.ones((len(y), 1))]).reshape(n_tasks, n_per_task, 3)
    H_data = np.einsum("tni,tnj->tij", Xt, Xt)
    A_inv = np.linalg.inv(H_data + P)
    residuals = y.reshape(n_tasks, n_per_task) - np.einsum("tni,ti->tn", Xt,
                                                           theta)
    dev = theta - theta0
    M = dev.T @ dev / n_tasks + phi * A_inv.mean(axis=0)
    s = 1.0 / (n_tasks + 1)
    expected_P = phi * np.linalg.inv((1 - s) * M
                                     + s * np.trace(M) / 3 * np.eye(3))
    expected_phi = (np.sum(residuals**2) + phi * np.einsum(
        "tij,tji->", H_data, A_inv)) / len(y)
    np.testing.assert_allclose(theta0, theta.mean(axis=0), rtol=1e-7,
                               atol=1e-9)
    np.testing.assert_allclose(phi, expected_phi, rtol=1e-6)
    np.testing.assert_allclose(P, expected_P, rtol=1e-5)
    # and the estimates are near the population the tasks came from
    np.testing.assert_allclose(phi, noise**2, rtol=0.05)
    sigma_hat = phi * np.linalg.inv(P)
    assert np.linalg.norm(sigma_hat - SIGMA) / np.linalg.norm(SIGMA) < 0.15


def assert_logistic_em_fixed_point(meta, X, y, tasks):
    # Laplace EM for a diagonal prior with the log-loss (no noise variance):
    # theta0 = mean_t theta_t and 1 / Pi = (1 - s) m + s mean(m), with
    # m = mean_t[(theta_t - theta0)^2 + diag(A_t^-1)], A_t the Hessian of
    # task t's objective at its solution
    P = meta.prior_precision_
    theta0, theta = meta.meta_params_, meta.task_params_
    n_tasks = theta.shape[0]
    second = np.empty_like(theta)
    for t in range(n_tasks):
        rows = tasks == t
        ref = InnerObjective(X[rows], y[rows], None, LOGISTIC, theta0=theta0,
                             precision=P)
        second[t] = (theta[t] - theta0) ** 2 + np.diag(
            np.linalg.inv(ref.hess(theta[t])))
    m = second.mean(axis=0)
    s = 1.0 / (n_tasks + 1)
    np.testing.assert_allclose(theta0, theta.mean(axis=0), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(P, 1.0 / ((1 - s) * m + s * m.mean()),
                               rtol=1e-5)


def test_empirical_bayes_recovers_prior_mean_of_logistic_tasks():
    mu = np.array([1.0, -1.0, 0.3])
    sigma = np.diag([0.3, 0.3, 0.2])
    errors = []
    for n_tasks in (50, 300, 2500):
        rng = np.random.default_rng(100 + n_tasks)
        theta = rng.multivariate_normal(mu, sigma, size=n_tasks)
        X = rng.normal(size=(n_tasks * 40, 2))
        tasks = np.repeat(np.arange(n_tasks), 40)
        z = np.sum(X * theta[tasks, :2], axis=1) + theta[tasks, 2]
        y = (rng.random(len(z)) < expit(z)).astype(int)
        meta = MetaClassifier(LogisticRegression(C=np.inf), prior="diagonal",
                              gamma="auto", max_iter=300, tol=1e-7)
        meta.fit(X, y, tasks=tasks)
        errors.append(np.linalg.norm(meta.meta_params_ - mu))
        if n_tasks == 300:
            assert_logistic_em_fixed_point(meta, X, y, tasks)
    assert errors[0] > errors[1] > errors[2]
    # the Laplace approximation (as in penalized quasi-likelihood) attenuates
    # binary random-effect models a little: here theta0 ends ~7% short of mu
    assert errors[-1] < 0.15


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("code", [LOGISTIC, MULTINOMIAL], ids=CODE_IDS[1:3])
def test_inner_solver_results_do_not_depend_on_n_jobs(code, layout, monkeypatch):
    # small problems normally stay in one shard; force the split under test
    monkeypatch.setattr(inner_module, "MIN_SHARD_ENTRIES", 0)
    rng = np.random.default_rng([code, layout == "csr", 23])
    n_tasks = 300
    X, y, sw, tasks = make_tasks(code, rng.integers(1, 9, n_tasks), 3, seed=rng,
                                 density=0.7)
    problem = make_problem(code, 3, lam2=0.5)
    d = problem.n_params
    Xin = sp.csr_matrix(X) if layout == "csr" else X
    batch, _ = make_batch(Xin, y, sw, tasks, n_tasks)
    theta0 = rng.normal(scale=0.2, size=d)
    precision = random_spd(d, rng)
    start = np.tile(theta0, (n_tasks, 1))
    inv_weight = rng.uniform(0.5, 2.0, n_tasks)
    results = []
    for n_jobs in (1, 2, 3):
        solver = InnerSolver(batch, problem, n_jobs=n_jobs)
        results.append(solver.solve(theta0, precision, start, inverse="posterior",
                                    inv_weight=inv_weight))
    # several shards per worker, contiguous and covering every task
    ranges = InnerSolver(batch, problem, n_jobs=3).ranges
    assert len(ranges) == 3 * inner_module.SHARDS_PER_WORKER
    assert ranges[0][0] == 0 and ranges[-1][1] == n_tasks
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:]))
    for other in results[1:]:
        for name in ("theta", "objective", "n_iter", "trace", "inv_sum",
                     "inv_wsum"):
            np.testing.assert_array_equal(getattr(other, name),
                                          getattr(results[0], name))

    # a solver called again (as the outer loops do, with a moved prior mean)
    # reaches the same solutions as a fresh one, whatever it kept from the
    # first call
    solver = InnerSolver(batch, problem, n_jobs=2)
    solver.solve(theta0, precision, start)
    moved = theta0 + rng.normal(scale=0.3, size=d)
    again = solver.solve(moved, precision, results[0].theta)
    fresh = InnerSolver(batch, problem).solve(moved, precision, start)
    np.testing.assert_allclose(again.theta, fresh.theta, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(again.objective, fresh.objective, rtol=1e-12)


@pytest.mark.parametrize("code", [LOGISTIC, MULTINOMIAL], ids=CODE_IDS[1:3])
def test_moved_prior_mean_starts_from_the_predicted_solutions(code):
    # after the prior mean moves, the kept inverse Hessians predict each
    # solution to first order (solved_at=...): the solve must land on the
    # same solutions as a fresh one, in fewer steps than without the
    # prediction
    rng = np.random.default_rng([code, 31])
    n_tasks = 200
    X, y, sw, tasks = make_tasks(code, rng.integers(20, 40, n_tasks), 3,
                                 seed=rng)
    problem = make_problem(code, 3, lam2=0.1)
    d = problem.n_params
    batch, _ = make_batch(X, y, sw, tasks, n_tasks)
    theta0 = rng.normal(scale=0.2, size=d)
    precision = np.full(d, 2.0)
    start = np.tile(theta0, (n_tasks, 1))
    moved = theta0 + rng.normal(scale=0.05, size=d)
    fresh = InnerSolver(batch, problem).solve(moved, precision, start)
    steps = {}
    for predict in (False, True):
        with InnerSolver(batch, problem) as solver:
            first = solver.solve(theta0, precision, start, inverse="posterior")
            again = solver.solve(moved, precision, first.theta,
                                 solved_at=theta0 if predict else None)
        np.testing.assert_allclose(again.theta, fresh.theta, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(again.objective, fresh.objective, rtol=1e-12)
        steps[predict] = np.abs(again.n_iter).sum()
    assert steps[True] < steps[False]


def test_workers_use_joblib_under_another_backend(monkeypatch):
    # under joblib's default backend the shards run on a plain thread pool;
    # under any other active backend they go through joblib.Parallel
    from joblib import parallel_backend

    seen = []
    original = inner_module.Parallel

    class Recording(original):
        def __call__(self, iterable):
            seen.append(self.n_jobs)
            return super().__call__(iterable)

    monkeypatch.setattr(inner_module, "Parallel", Recording)
    calls = [(pow, (2, k), {}) for k in range(5)]
    with inner_module.Workers(2) as workers:
        assert workers.run(calls) == [1, 2, 4, 8, 16]
    assert seen == []
    with parallel_backend("loky", n_jobs=2):
        with inner_module.Workers(2) as workers:
            assert workers.run(calls) == [1, 2, 4, 8, 16]
    assert seen == [2]
    # outside a with block, a pool is made for the call
    assert inner_module.Workers(2).run(calls) == [1, 2, 4, 8, 16]

    # an error in one call is raised, in call order, and later calls that
    # have not started are dropped
    ran = []

    def record(k):
        if k == 1:
            raise RuntimeError("shard 1 failed")
        ran.append(k)
        return k

    with pytest.raises(RuntimeError, match="shard 1 failed"):
        with inner_module.Workers(2) as workers:
            workers.run([(record, (k,), {}) for k in range(3)])
    assert 0 in ran


# --------------------------------------------------------------------------
# singular systems
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["icpt", "noicpt"])
def test_rank_deficient_least_squares_gives_minimum_norm(fit_intercept, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 3))
    X = np.hstack([X, X[:, :1]])  # the last column repeats the first
    y = 2 * X[:, 0] + X[:, 1] + 1 + rng.normal(scale=0.1, size=30)
    problem = make_problem(SQUARED, 4, fit_intercept=fit_intercept)
    d = problem.n_params
    result = solve(X, y, np.ones(30), np.zeros(30, dtype=int), problem,
                   np.zeros(d), np.zeros(d))
    Xt = np.hstack([X, np.ones((30, 1))]) if fit_intercept else X
    # without penalty or prior the minimizers form a line; a least-squares
    # solver returns the one of least norm, which splits the repeated column
    expected = np.linalg.pinv(Xt) @ y
    # along the null direction the jittered system is determined only to
    # round-off over the jitter; predictions do not depend on it at all
    np.testing.assert_allclose(result.theta[0], expected, rtol=1e-4)
    np.testing.assert_allclose(Xt @ result.theta[0], Xt @ expected, rtol=1e-10)


# --------------------------------------------------------------------------
# one prior centre per task
# --------------------------------------------------------------------------
@pytest.mark.parametrize("rowspace", [False, True], ids=["newton", "rowspace"])
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_per_task_centres_equal_separate_calls(code, layout, rowspace):
    # one call with a centre per task solves each task exactly as a call
    # with that centre for every task does, to the last bit
    rng = np.random.default_rng([code, layout == "csr", rowspace, 41])
    sizes = [12, 3, 40, 1, 25, 0, 17]
    X, y, sw, tasks = make_tasks(code, sizes, 4, seed=rng, weightless=2,
                                 density=0.7)
    problem = make_problem(code, 4, lam2=0.2)
    d = problem.n_params
    n_tasks = len(sizes)
    batch, _ = make_batch(sp.csr_matrix(X) if layout == "csr" else X, y, sw,
                          tasks, n_tasks)
    centres = rng.normal(scale=0.5, size=(n_tasks, d))
    precision = rng.uniform(0.5, 2.0, d)
    start = rng.normal(scale=0.1, size=(n_tasks, d))
    request = InverseRequest(posterior=True, exact=True, covariances=True)
    kwargs = dict(tol=KERNEL_TOL, inverse=request, rowspace=rowspace)
    together = solve_inner(batch, problem, centres, precision, start, **kwargs)
    for t in range(n_tasks):
        alone = solve_inner(batch, problem, centres[t], precision, start,
                            **kwargs)
        for name in ("theta", "objective", "loss", "n_iter", "trace", "logdet",
                     "covariances"):
            np.testing.assert_array_equal(getattr(together, name)[t],
                                          getattr(alone, name)[t], err_msg=name)
    # each solution is its own task's minimizer (first-order condition)
    for t in np.flatnonzero(np.asarray(sizes) > 0):
        ref = task_reference(problem, X, y, sw, tasks, t, centres[t], precision)
        np.testing.assert_allclose(ref.grad(together.theta[t]), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match=r"per-task centres must have shape"):
        solve_inner(batch, problem, centres[:-1], precision, start)


@pytest.mark.parametrize("code", [SQUARED, LOGISTIC], ids=CODE_IDS[:2])
def test_per_task_centres_moved_by_their_own_change(code, monkeypatch):
    # the kept inverse Hessians move each task by its own centre's change:
    # the same solutions as a fresh solve, in fewer steps than without the
    # prediction, and the same on any number of shards
    monkeypatch.setattr(inner_module, "MIN_SHARD_ENTRIES", 0)
    rng = np.random.default_rng([code, 43])
    n_tasks = 150
    X, y, sw, tasks = make_tasks(code, rng.integers(20, 40, n_tasks), 3,
                                 seed=rng)
    problem = make_problem(code, 3, lam2=0.1)
    d = problem.n_params
    batch, _ = make_batch(X, y, sw, tasks, n_tasks)
    centres = rng.normal(scale=0.3, size=(n_tasks, d))
    moved = centres + rng.normal(scale=0.05, size=(n_tasks, d))
    precision = np.full(d, 2.0)
    start = centres.copy()
    fresh = InnerSolver(batch, problem).solve(moved, precision, start)
    steps, theta = {}, {}
    for n_jobs, predict in ((1, False), (1, True), (2, True)):
        with InnerSolver(batch, problem, n_jobs=n_jobs) as solver:
            first = solver.solve(centres, precision, start, inverse="posterior")
            again = solver.solve(moved, precision, first.theta,
                                 solved_at=centres if predict else None)
        np.testing.assert_allclose(again.theta, fresh.theta, rtol=1e-7,
                                   atol=1e-9)
        np.testing.assert_allclose(again.objective, fresh.objective, rtol=1e-12)
        steps[n_jobs, predict] = np.abs(again.n_iter).sum()
        theta[n_jobs, predict] = again.theta
    assert steps[1, True] < steps[1, False]
    np.testing.assert_array_equal(theta[2, True], theta[1, True])
    with InnerSolver(batch, problem) as solver:
        solver.solve(centres, precision, start, inverse="posterior")
        with pytest.raises(ValueError, match="solved_at has shape"):
            solver.solve(moved, precision, start, solved_at=centres[0])
