"""Every function of ``skmeta._kernels._datafits`` against the numpy reference.

The reference (``conftest.datafit_rows`` and ``conftest.InnerObjective``) is
written from the datafits' definitions and is first checked here against
finite differences; the kernels must then give its values, and their
derivatives must be its finite differences.
"""

import numpy as np
import pytest
from conftest import (
    CODE_IDS,
    CODES,
    InnerObjective,
    datafit_rows,
    draw_targets,
    make_tasks,
    random_spd,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from scipy.special import softmax

from skmeta._kernels._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from skmeta._kernels._datafits import (
    curvature_bound,
    curvature_times,
    datafit_derivatives,
    hessian_weights,
    loss_scale,
)


# --------------------------------------------------------------------------
# the kernels, called from jitted wrappers (they have no Python wrapper)
# --------------------------------------------------------------------------
@njit
def _datafit(code, y, sw, start, stop, Z, n_outputs, G, D, with_value):
    return datafit_derivatives(code, y, sw, start, stop, Z, n_outputs, G, D,
                               with_value)


@njit
def _curvature(code, sw, start, stop, D, n_outputs, mean_loss, U):
    """``loss_scale``, every block's ``hessian_weights`` and ``curvature_times``."""
    n = stop - start
    scale = loss_scale(mean_loss, sw, start, stop)
    blocks = np.zeros((n_outputs, n_outputs, n))
    a = np.empty(n)
    for k in range(n_outputs):
        for m in range(n_outputs):
            hessian_weights(code, sw, start, stop, D, k, m, scale, a)
            for r in range(n):  # a loop: slice assignment costs seconds to compile
                blocks[k, m, r] = a[r]
    CU = U.copy()
    curvature_times(code, sw, start, stop, D, CU, n_outputs, scale)
    return scale, blocks, CU


@njit
def _bound(code, y, mean_y):
    return curvature_bound(code, y, mean_y)


def evaluate(code, Z, y, sw, *, start=0, mean_loss=False, with_value=True,
             U=None):
    """The kernels on the rows ``start:start + n`` of ``y`` and ``sw``.

    ``Z`` has shape ``(K, n)``. Returns the loss, ``G``, ``D``, the scale,
    the Hessian blocks ``(K, K, n)`` and the curvature times ``U``.
    """
    K, n = Z.shape
    G = np.full((K, n), np.nan)  # NaN shows what the kernel did not write
    D = np.full((K, n), np.nan)
    total = _datafit(code, y, sw, start, start + n, Z, K, G, D, with_value)
    U = np.ones((K, n)) if U is None else U
    scale, blocks, CU = _curvature(code, sw, start, start + n, D, K, mean_loss,
                                   U)
    return total, G, D, scale, blocks, CU


def central_difference(f, x, h):
    """Derivatives of ``f`` along each entry of ``x`` (``h`` per entry)."""
    out = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h.flat[i]
        out.append((f(x + e) - f(x - e)) / (2 * h.flat[i]))
    return np.array(out)


def random_rows(code, rng, n, n_classes=3, z_scale=2.0):
    """Predictors ``(K, n)``, targets drawn from the datafit's model, weights."""
    K = n_classes if code == MULTINOMIAL else 1
    Z = rng.normal(scale=z_scale, size=(K, n))
    return Z, draw_targets(code, Z.T, rng), rng.uniform(0.2, 2.0, n)


# --------------------------------------------------------------------------
# the reference itself
# --------------------------------------------------------------------------
@pytest.mark.parametrize("prec_kind", ["diag", "full"])
@pytest.mark.parametrize("mean_loss", [False, True], ids=["sum", "mean"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_reference_matches_finite_differences(code, mean_loss, prec_kind):
    rng = np.random.default_rng([code, mean_loss, prec_kind == "full"])
    X, y, sw, _ = make_tasks(code, [15], 3, seed=rng, weightless=2)
    d = (3 if code == MULTINOMIAL else 1) * 4
    precision = (random_spd(d, rng) if prec_kind == "full"
                 else rng.uniform(0.5, 2.0, d))
    ref = InnerObjective(X, y, sw, code, mean_loss=mean_loss, lam2=0.7,
                         l2w=rng.uniform(0, 2, d), lam1=0.3,
                         l1w=rng.uniform(0, 2, d), theta0=rng.normal(size=d),
                         precision=precision)
    theta = rng.normal(scale=0.3, size=d)
    h = np.full(d, 1e-6)
    np.testing.assert_allclose(ref.grad(theta),
                               central_difference(ref.smooth, theta, h),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ref.hess(theta),
                               central_difference(ref.grad, theta, h),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ref.data_grad(theta),
                               central_difference(ref.loss, theta, h),
                               rtol=1e-6, atol=1e-8)
    # the scaling, and the parts of the objective, by their definitions
    total = sw.sum()
    assert ref.c == (1.0 / total if mean_loss else 1.0)
    np.testing.assert_allclose(
        ref.objective(theta) - ref.loss(theta),
        0.35 * ref.l2w @ theta**2 + 0.3 * ref.l1w @ np.abs(theta)
        + 0.5 * (theta - ref.theta0) @ ref.P @ (theta - ref.theta0), rtol=1e-13)

    # per row, in the predictor: the derivatives and, where the model can
    # fit a row exactly, a zero loss there (the Poisson half deviance's
    # constant y log y - y)
    K = ref.K
    Z = ref.predictor(theta)
    for r in range(Z.shape[0]):
        def row(z, r=r):
            return datafit_rows(code, z[None], y[r:r + 1])
        loss, grad, hess = row(Z[r])
        hz = np.full(K, 1e-6)
        np.testing.assert_allclose(
            grad[0], central_difference(lambda z: row(z)[0][0], Z[r], hz),
            rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(
            hess[0], central_difference(lambda z: row(z)[1][0], Z[r], hz),
            rtol=1e-6, atol=1e-9)
    if code in (SQUARED, POISSON):
        positive = y > 0
        fitted = y[positive] if code == SQUARED else np.log(y[positive])
        np.testing.assert_allclose(
            datafit_rows(code, fitted[:, None], y[positive])[0], 0.0,
            atol=1e-15 * (1 + y.max() * np.log(y.max())))


# --------------------------------------------------------------------------
# datafit_derivatives, loss_scale, hessian_weights, curvature_times
# --------------------------------------------------------------------------
def assert_matches_reference(code, Z, y, sw, start, mean_loss, out, U):
    """The kernels' outputs ``out`` (see ``evaluate``) against the reference."""
    total, G, D, scale, blocks, CU = out
    K, n = Z.shape
    y, sw = y[start:start + n], sw[start:start + n]
    loss, grad, hess = datafit_rows(code, Z.T, y)
    # Differences of nearly equal terms (log(1 + e^z) - y z, mu - y, 1 - p)
    # are exact only to the size of the terms: the tolerance of each row.
    size = sw * (1.0 + np.abs(y) * (1.0 + np.log1p(np.abs(y)))
                 + np.abs(Z).max(axis=0) * (1.0 + np.abs(y))
                 + (np.exp(Z[0]) if code == POISSON else 0.0))
    np.testing.assert_allclose(total, np.sum(sw * loss), rtol=1e-12,
                               atol=1e-14 * size.sum())
    expected_scale = 1.0
    if mean_loss:
        expected_scale = 1.0 / sw.sum() if sw.sum() > 0 else 0.0
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-14)
    assert_close(G, (sw[:, None] * grad).T, 1e-13, 1e-15 * size)
    if code == MULTINOMIAL:
        assert_close(D, softmax(Z, axis=0), 1e-13, 1e-15)
    else:
        assert_close(D[0], sw * hess[:, 0, 0], 1e-13, 1e-15 * size)
    weighted = scale * sw[:, None, None] * hess  # (n, K, K)
    assert_close(blocks, weighted.transpose(1, 2, 0), 1e-13, 1e-15 * scale * size)
    assert_close(CU, np.einsum("nkm,mn->kn", weighted, U), 1e-12,
                 1e-15 * scale * size * np.abs(U).sum(axis=0))


def assert_close(actual, desired, rtol, atol):
    """``|actual - desired| <= atol + rtol |desired|``, with ``atol`` per row."""
    error = np.abs(actual - desired)
    bound = atol + rtol * np.abs(desired)
    assert actual.shape == desired.shape
    assert np.all(error <= bound), (actual, desired, np.max(error - bound))


@settings(max_examples=60, deadline=None)
@given(code=st.sampled_from(CODES), n=st.integers(0, 12), start=st.integers(0, 3),
       n_classes=st.integers(2, 6), mean_loss=st.booleans(),
       z_scale=st.sampled_from([0.01, 1.0, 4.0]),
       weights=st.sampled_from(["ones", "uniform", "some zero", "all zero"]),
       seed=st.integers(0, 2**32 - 1))
def test_datafit_kernels_match_the_reference(code, n, start, n_classes,
                                             mean_loss, z_scale, weights, seed):
    rng = np.random.default_rng(seed)
    Z, y_rows, sw_rows = random_rows(code, rng, n, n_classes, z_scale)
    if weights == "ones":
        sw_rows = np.ones(n)
    elif weights == "some zero":
        sw_rows[rng.random(n) < 0.4] = 0.0
    elif weights == "all zero":
        sw_rows[:] = 0.0
    # the rows read from ``start``: what lies before must not be read
    y = np.concatenate([np.full(start, np.nan), y_rows])
    sw = np.concatenate([np.full(start, np.nan), sw_rows])
    U = rng.normal(size=Z.shape)
    out = evaluate(code, Z, y, sw, start=start, mean_loss=mean_loss, U=U)
    assert_matches_reference(code, Z, y, sw, start, mean_loss, out, U)
    # without the value, the same derivatives and no loss
    total, G, D, *_ = evaluate(code, Z, y, sw, start=start, with_value=False)
    assert total == 0.0
    np.testing.assert_array_equal(G, out[1])
    np.testing.assert_array_equal(D, out[2])


@pytest.mark.parametrize("mean_loss", [False, True], ids=["sum", "mean"])
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_datafit_derivatives_are_finite_differences_of_the_reference(code,
                                                                     mean_loss):
    # G is the gradient of the weighted loss in Z, and the blocks of
    # hessian_weights (curvature_times along the unit directions) its
    # Hessian, per row, times the loss scale
    rng = np.random.default_rng([code, mean_loss, 3])
    Z, y, sw = random_rows(code, rng, 7, n_classes=4)
    K, n = Z.shape
    total, G, D, scale, blocks, _ = evaluate(code, Z, y, sw,
                                             mean_loss=mean_loss)

    def weighted_loss(Zflat):
        return np.sum(sw * datafit_rows(code, Zflat.reshape(K, n).T, y)[0])

    def weighted_grad(Zflat):
        grad = datafit_rows(code, Zflat.reshape(K, n).T, y)[1]
        return (sw[:, None] * grad).T.ravel()

    h = 1e-6 * np.maximum(1.0, np.abs(Z.ravel()))
    np.testing.assert_allclose(G.ravel(),
                               central_difference(weighted_loss, Z.ravel(), h),
                               rtol=1e-6, atol=1e-8)
    # jac[(k, r), (m, s)]: only r == s is non-zero
    jac = central_difference(weighted_grad, Z.ravel(), h).T.reshape(K, n, K, n)
    per_row = np.einsum("krmr->kmr", jac)
    np.testing.assert_allclose(blocks, scale * per_row, rtol=1e-6, atol=1e-8)
    off_row = jac.copy()
    for r in range(n):
        off_row[:, r, :, r] = 0.0
    np.testing.assert_allclose(off_row, 0.0, atol=1e-8)
    for k in range(K):
        for r in range(n):
            U = np.zeros((K, n))
            U[k, r] = 1.0
            CU = evaluate(code, Z, y, sw, mean_loss=mean_loss, U=U)[5]
            np.testing.assert_allclose(CU[:, r], blocks[:, k, r], rtol=1e-13,
                                       atol=1e-300)


def test_loss_scale():
    sw = np.array([0.5, 1.5, 0.0, 2.0, 0.0])
    for start, stop in [(0, 5), (1, 4), (2, 3), (3, 3), (4, 5)]:
        assert _curvature(SQUARED, sw, start, stop, np.ones((1, stop - start)),
                          1, False, np.ones((1, stop - start)))[0] == 1.0
        total = sw[start:stop].sum()
        expected = 1.0 / total if total > 0 else 0.0
        scale = _curvature(SQUARED, sw, start, stop, np.ones((1, stop - start)),
                           1, True, np.ones((1, stop - start)))[0]
        assert scale == pytest.approx(expected, rel=1e-15)


# --------------------------------------------------------------------------
# extreme predictors and float edge cases
# --------------------------------------------------------------------------
EXTREME_Z = np.array([-700.0, -300.0, -40.0, -1.0, -1e-300, -0.0, 0.0, 5e-324,
                      1e-8, 1.0, 40.0, 300.0, 700.0])


@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_datafit_at_extreme_predictors(code):
    # |z| up to 700: every output finite and as the (stable) reference says
    rng = np.random.default_rng(code)
    n = EXTREME_Z.size
    if code == MULTINOMIAL:
        Z = np.vstack([EXTREME_Z, rng.permutation(EXTREME_Z),
                       np.zeros(n)])
        y = rng.integers(0, 3, n).astype(float)
    else:
        Z = EXTREME_Z[None, :]
        y = {SQUARED: rng.normal(size=n), LOGISTIC: np.arange(n) % 2.0,
             POISSON: rng.poisson(3.0, n).astype(float)}[code]
    sw = rng.uniform(0.5, 2.0, n)
    U = rng.normal(size=Z.shape)
    out = evaluate(code, Z, y, sw, mean_loss=True, U=U)
    for value in out:
        assert np.all(np.isfinite(value))
    assert_matches_reference(code, Z, y, sw, 0, True, out, U)


@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_datafit_propagates_nan_predictors_to_their_row(code):
    rng = np.random.default_rng(code + 40)
    Z, y, sw = random_rows(code, rng, 6, n_classes=4)
    clean = evaluate(code, Z, y, sw)
    Z[-1, 2] = np.nan  # one class of row 2
    total, G, D, _, blocks, CU = evaluate(code, Z, y, sw)
    assert np.isnan(total)
    others = np.arange(6) != 2
    curvature = [(D, clean[2]), (CU, clean[5]), (blocks, clean[4])]
    if code == SQUARED:
        # the squared error's curvature does not depend on the predictor
        for got, expected in curvature:
            np.testing.assert_array_equal(got, expected)
        curvature = []
    for got, expected in [(G, clean[1])] + curvature:
        assert np.all(np.isnan(got[..., 2]))
        np.testing.assert_array_equal(got[..., others], expected[..., others])


@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_datafit_float_edge_cases(code):
    K = 3 if code == MULTINOMIAL else 1
    # no rows: no loss and nothing written
    total, G, *_ = evaluate(code, np.empty((K, 0)), np.empty(0), np.empty(0),
                            mean_loss=True)
    assert total == 0.0 and G.shape == (K, 0)
    # rows without weight add nothing, whatever their predictor
    Z = np.tile([-700.0, -1.0, 0.0, 3.0, 700.0], (K, 1))
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0]) * (2 if code == MULTINOMIAL else 1)
    total, G, D, scale, blocks, CU = evaluate(code, Z, y, np.zeros(5),
                                              mean_loss=True)
    assert total == 0.0 and scale == 0.0
    for value in (G, blocks, CU):
        np.testing.assert_array_equal(value, 0.0)
    if code != MULTINOMIAL:
        np.testing.assert_array_equal(D, 0.0)
    # where the model can fit a row exactly, its loss and gradient vanish
    if code == SQUARED:
        y = np.array([-1e300, -2.5, 0.0, 5e-324, 7.0])
        total, G, *_ = evaluate(code, y[None, :].copy(), y, np.ones(5))
        assert total == 0.0
        np.testing.assert_array_equal(G, 0.0)
    if code == POISSON:
        y = np.array([0.0, 1.0, 3.0, 1e6])
        # log(0) = -inf: exp underflows to exactly 0 below -708
        Z = np.array([[-745.0, 0.0, np.log(3.0), np.log(1e6)]])
        total, G, *_ = evaluate(code, Z, y, np.ones(4))
        # to round-off in y log y (1.4e7 for the last row)
        assert abs(total) < 1e-8
        np.testing.assert_allclose(G, 0.0, atol=1e-8)
        assert G[0, 0] == 0.0 and G[0, 1] == 0.0


# --------------------------------------------------------------------------
# curvature_bound
# --------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(code=st.sampled_from([SQUARED, LOGISTIC, MULTINOMIAL]),
       n_classes=st.integers(2, 8),
       z=st.lists(st.floats(-700, 700), min_size=8, max_size=8),
       y=st.integers(0, 7))
def test_curvature_bound_bounds_the_curvature(code, n_classes, z, y):
    # the largest eigenvalue of any row's Hessian in z, weight excluded
    K = n_classes if code == MULTINOMIAL else 1
    Z = np.array(z[:K])[None, :]
    y = float(min(y, K - 1) if code == MULTINOMIAL else y % 2)
    hess = datafit_rows(code, Z, np.array([y]))[2][0]
    top = np.linalg.eigvalsh(hess)[-1]
    assert top <= _bound(code, y, 0.5) * (1 + 1e-12)


@pytest.mark.parametrize("code", [SQUARED, LOGISTIC, MULTINOMIAL],
                         ids=CODE_IDS[:3])
def test_curvature_bound_is_attained(code):
    # the bound is the supremum: reached at z = 0 (two classes for the
    # multinomial), so no smaller constant would do
    K = 2 if code == MULTINOMIAL else 1
    hess = datafit_rows(code, np.zeros((1, K)), np.zeros(1))[2][0]
    assert np.linalg.eigvalsh(hess)[-1] == pytest.approx(_bound(code, 0.0, 0.0),
                                                         rel=1e-15)


@settings(max_examples=60, deadline=None)
@given(y=st.floats(0, 1e4), mean_y=st.floats(0, 1e4),
       below=st.floats(0, 50))
def test_curvature_bound_of_poisson_is_its_curvature_near_the_solution(
        y, mean_y, below):
    # e^z is unbounded; the bound is its value where the row (or the task's
    # mean) is fitted, max(y, mean y), floored at 1e-3, and bounds it below
    bound = _bound(POISSON, y, mean_y)
    assert bound == max(y, mean_y, 1e-3)
    z = np.log(bound) - below
    curvature = datafit_rows(POISSON, np.array([[z]]), np.array([y]))[2][0, 0, 0]
    assert curvature <= bound * (1 + 1e-12)


# --------------------------------------------------------------------------
# summation order
# --------------------------------------------------------------------------
@pytest.mark.parametrize("code", CODES, ids=CODE_IDS)
def test_datafit_does_not_depend_on_where_its_buffers_lie(code):
    # LLVM runs a loop that writes some arrays while reading others in one
    # of two versions, picked by comparing their addresses at run time; a
    # sum made in such a loop would differ in the last bits with the
    # arrays' placement (it did: the query loss of a task changed with the
    # heap's layout)
    K = 12 if code == MULTINOMIAL else 1
    rng = np.random.default_rng(code)
    for n in (5, 6, 13, 45):
        z, y, sw = random_rows(code, rng, n, n_classes=K)
        sizes = [n + 3, n + 3, K * n, K * n, K * n]  # y, sw (from row 3), Z, G, D
        results = set()
        for seed in range(40):
            order = np.random.default_rng(seed).permutation(5)
            gaps = np.random.default_rng(seed + 99).integers(0, 12, 5)
            buf = np.zeros(sum(sizes) + gaps.sum() + 8)
            pos = 0
            views = [None] * 5
            for k in order:
                pos += gaps[k]
                views[k] = buf[pos:pos + sizes[k]]
                pos += sizes[k]
            yv, swv = views[0], views[1]
            yv[3:] = y
            swv[3:] = sw
            Z, G, D = (v.reshape(K, n) for v in views[2:])
            Z[:] = z
            total = _datafit(code, yv, swv, 3, n + 3, Z, K, G, D, True)
            results.add((total.hex(), G.tobytes(), D.tobytes()))
        assert len(results) == 1, n
