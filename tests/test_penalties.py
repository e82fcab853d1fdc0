"""Every function of ``skmeta._kernels._penalties`` against references.

The l1 proximal operator against its optimality conditions (exactly, in
rational arithmetic); the smooth penalties (the base estimator's l2 part and
the transfer term) against the numpy reference ``conftest.InnerObjective``
and finite differences, with diagonal and full precisions.
"""

from fractions import Fraction

import numpy as np
import pytest
from conftest import InnerObjective, make_problem, random_spd
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from skmeta._kernels._codes import MULTINOMIAL, SQUARED
from skmeta._kernels._layout import Problem, prior_arrays
from skmeta._kernels._penalties import (
    add_smooth_curvature,
    class_shift_curvature,
    has_l1,
    held_at_zero,
    l1_threshold,
    penalty_values,
    precision_times,
    smooth_curvature_bound,
    smooth_curvature_trace,
    smooth_gradient,
    soft_threshold,
    transfer_gradient,
)


# --------------------------------------------------------------------------
# the kernels, called from jitted wrappers (they have no Python wrapper)
# --------------------------------------------------------------------------
@njit
def _prox(u, t):
    """``soft_threshold`` and ``held_at_zero`` of its output, elementwise."""
    x = np.empty_like(u)
    held = np.empty(u.shape[0], dtype=np.bool_)
    for i in range(u.shape[0]):
        x[i] = soft_threshold(u[i], t[i])
        held[i] = held_at_zero(x[i], t[i])
    return x, held


@njit
def _held(value, threshold):
    return held_at_zero(value, threshold)


@njit
def _penalties(theta, problem, prior, A, Ainv, v, step):
    """Every penalty kernel at ``theta``; ``A`` gets the curvature added."""
    d = theta.shape[0]
    diff = np.empty(d)
    q = np.empty(d)
    smooth, l1 = penalty_values(theta, problem, prior, d, diff, q)
    grad = np.empty(d)
    smooth_gradient(theta, problem, q, d, grad)
    A = A.copy()
    add_smooth_curvature(A, problem, prior, d)
    trace = smooth_curvature_trace(problem, prior, Ainv, d)
    Pv = np.empty(d)
    precision_times(prior, v, Pv, d)
    transfer = np.empty(d)
    transfer_gradient(theta, prior, d, diff, transfer)
    p1 = problem.n_features + problem.fit_intercept
    shift = np.empty(p1)
    for j in range(p1):
        shift[j] = class_shift_curvature(problem, prior, j)
    thresholds = np.empty(d)
    for j in range(d):
        thresholds[j] = l1_threshold(problem, j, step)
    return (smooth, l1, q, grad, A, trace, Pv, transfer, shift, thresholds,
            has_l1(problem, d))


def evaluate(problem, theta0, precision, theta, *, A=None, Ainv=None, v=None,
             step=1.0):
    d = theta.size
    A = np.zeros((d, d)) if A is None else A
    Ainv = np.zeros((d, d)) if Ainv is None else Ainv
    v = np.zeros(d) if v is None else v
    names = ("smooth", "l1", "q", "grad", "A", "trace", "Pv", "transfer",
             "shift", "thresholds", "has_l1")
    values = _penalties(theta, problem.arrays, prior_arrays(theta0, precision),
                        A, Ainv, v, step)
    return dict(zip(names, values))


def case(prec_kind, rng, *, code=MULTINOMIAL, n_features=3, lam1=0.4):
    """A problem with random penalty weights (some zero), and a prior."""
    probe = make_problem(code, n_features)
    d = probe.n_params
    l2w = rng.uniform(0.0, 2.0, d) * (rng.random(d) < 0.8)
    l1w = rng.uniform(0.0, 2.0, d) * (rng.random(d) < 0.8)
    problem = make_problem(code, n_features, lam2=0.7, lam1=lam1, l2w=l2w,
                           l1w=l1w)
    theta0 = rng.normal(size=d)
    precision = (random_spd(d, rng) if prec_kind == "full"
                 else rng.uniform(0.0, 2.0, d))
    reference = InnerObjective.from_problem(
        problem, np.zeros((0, n_features)), np.zeros(0), np.zeros(0),
        theta0=theta0, precision=precision)
    return problem, theta0, precision, reference


def central_difference(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h)
                     for e in np.eye(x.size)])


# --------------------------------------------------------------------------
# the l1 proximal operator
# --------------------------------------------------------------------------
finite = st.floats(-1e300, 1e300, allow_nan=False)
thresholds = st.floats(0.0, 1e300) | st.sampled_from([0.0, 5e-324, 1.0])


@settings(max_examples=150, deadline=None)
@given(u=st.lists(finite, min_size=1, max_size=20), data=st.data())
def test_soft_threshold_is_the_proximal_operator_of_the_l1_norm(u, data):
    # x = prox_{t|.|}(u) iff 0 is in x - u + t d|x|: x - u + t sign(x) = 0
    # where x != 0, |u| <= t where x == 0. Checked in exact rational
    # arithmetic, up to the one rounding of the result.
    t = data.draw(st.lists(thresholds, min_size=len(u), max_size=len(u)))
    u, t = np.array(u), np.array(t)
    x, _ = _prox(u, t)
    for ui, ti, xi in zip(u, t, x):
        if xi == 0.0:
            assert abs(ui) <= ti
        else:
            assert np.sign(xi) == np.sign(ui)
            exact = Fraction(ui) - Fraction(ti) * int(np.sign(xi))
            assert abs(Fraction(xi) - exact) <= Fraction(np.spacing(abs(xi))) / 2
    # an exact zero if and only if |u| <= t
    np.testing.assert_array_equal(x == 0.0, np.abs(u) <= t)


def test_soft_threshold_special_values():
    u = np.array([np.nan, np.nan, 3.0, -3.0, np.inf, -np.inf, 1e308, -0.0])
    t = np.array([0.0, 1.0, np.inf, np.inf, 1.0, 1e300, 0.0, 0.0])
    x, _ = _prox(u, t)
    # as documented: a NaN gives 0; an infinite threshold zeroes anything
    # finite; an infinite value stays infinite
    np.testing.assert_array_equal(x, [0.0, 0.0, 0.0, 0.0, np.inf, -np.inf,
                                      1e308, 0.0])


@settings(max_examples=150, deadline=None)
@given(u=st.lists(finite, min_size=1, max_size=20), data=st.data())
def test_held_at_zero_agrees_with_soft_threshold(u, data):
    # a coordinate is held at zero exactly when the proximal step puts it
    # there with a positive threshold (at t = 0 nothing is held)
    t = np.array(data.draw(st.lists(thresholds, min_size=len(u),
                                    max_size=len(u))))
    u = np.array(u)
    x, held = _prox(u, t)
    np.testing.assert_array_equal(held, (t > 0) & (np.abs(u) <= t))
    np.testing.assert_array_equal(held, (t > 0) & (x == 0.0))


def test_held_at_zero_needs_a_zero_value_and_a_positive_threshold():
    assert _held(0.0, 1.0) and _held(-0.0, 5e-324)
    assert not _held(0.0, 0.0)
    assert not _held(1e-300, 1.0)
    assert not _held(np.nan, 1.0)


# --------------------------------------------------------------------------
# values, gradient, curvature of the smooth penalties
# --------------------------------------------------------------------------
@pytest.mark.parametrize("prec_kind", ["diag", "full"])
def test_penalty_values_and_gradients_match_the_reference(prec_kind):
    rng = np.random.default_rng([prec_kind == "full", 1])
    problem, theta0, precision, ref = case(prec_kind, rng)
    d = problem.n_params
    P = ref.P
    for theta in (rng.normal(size=d), theta0, np.zeros(d)):
        v = rng.normal(size=d)
        out = evaluate(problem, theta0, precision, theta, v=v)
        np.testing.assert_allclose(out["smooth"], ref.smooth_penalty(theta),
                                   rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(out["l1"], ref.l1(theta), rtol=1e-13)
        np.testing.assert_allclose(out["q"], P @ (theta - theta0), rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(out["transfer"], P @ (theta - theta0),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out["Pv"], P @ v, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out["grad"], ref.smooth_penalty_grad(theta),
                                   rtol=1e-12, atol=1e-14)

    # the gradient is the derivative of the kernel's own value
    theta = rng.normal(size=d)
    fd = central_difference(
        lambda t: evaluate(problem, theta0, precision, t)["smooth"], theta)
    np.testing.assert_allclose(evaluate(problem, theta0, precision, theta)["grad"],
                               fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("prec_kind", ["diag", "full"])
def test_smooth_curvature_is_the_derivative_of_the_gradient(prec_kind):
    rng = np.random.default_rng([prec_kind == "full", 2])
    problem, theta0, precision, ref = case(prec_kind, rng)
    d = problem.n_params
    theta = rng.normal(size=d)
    fd = central_difference(
        lambda t: evaluate(problem, theta0, precision, t)["grad"], theta)
    np.testing.assert_allclose(fd, ref.smooth_penalty_hess(), rtol=1e-7,
                               atol=1e-9)
    # added to the lower triangle of what is there; the upper one untouched
    A = rng.normal(size=(d, d))
    added = evaluate(problem, theta0, precision, theta, A=A)["A"]
    lower = np.tril_indices(d)
    np.testing.assert_allclose(added[lower], (A + fd)[lower], rtol=1e-7,
                               atol=1e-9)
    upper = np.triu_indices(d, 1)
    np.testing.assert_array_equal(added[upper], A[upper])


@pytest.mark.parametrize("prec_kind", ["diag", "full"])
def test_smooth_curvature_trace(prec_kind):
    rng = np.random.default_rng([prec_kind == "full", 3])
    problem, theta0, precision, ref = case(prec_kind, rng)
    d = problem.n_params
    Ainv = rng.normal(size=(d, d))  # not symmetric: the indices must be right
    trace = evaluate(problem, theta0, precision, theta0, Ainv=Ainv)["trace"]
    np.testing.assert_allclose(trace, np.trace(ref.smooth_penalty_hess() @ Ainv),
                               rtol=1e-12)


def test_l1_thresholds_and_has_l1():
    rng = np.random.default_rng(4)
    problem, theta0, precision, _ = case("diag", rng)
    out = evaluate(problem, theta0, precision, theta0, step=0.3)
    np.testing.assert_allclose(out["thresholds"], 0.3 * 0.4 * problem.l1w,
                               rtol=1e-15)
    assert out["has_l1"]
    d = problem.n_params
    for lam1, l1w, expected in [(0.0, np.ones(d), False),
                                (0.5, np.zeros(d), False),
                                (0.5, np.eye(d)[3], True)]:
        other = make_problem(MULTINOMIAL, 3, lam1=lam1, l1w=l1w)
        assert evaluate(other, theta0, precision, theta0)["has_l1"] is expected
        assert other.has_l1 is expected


# --------------------------------------------------------------------------
# the class shift of the multinomial
# --------------------------------------------------------------------------
def shift_direction(problem, j):
    """``e``: one more on coefficient (or intercept) ``j`` of every class."""
    p1 = problem.n_features + problem.fit_intercept
    e = np.zeros(problem.n_params)
    e[j::p1] = 1.0
    return e


@pytest.mark.parametrize("lam1", [0.0, 0.4], ids=["l2", "l1"])
@pytest.mark.parametrize("prec_kind", ["diag", "full", "full-singular"])
def test_class_shift_curvature(prec_kind, lam1):
    # Along a class shift the smooth penalties curve by e^T H e (the
    # directional second derivative); the l1 part has no curvature there
    # but still pins the shift, and the kernel adds its weight. Zero must
    # mean that the penalties do not change at all along the shift.
    rng = np.random.default_rng([len(prec_kind), int(10 * lam1)])
    problem, theta0, precision, _ = case(prec_kind.split("-")[0], rng,
                                         lam1=lam1)
    d, p1 = problem.n_params, problem.n_features + 1
    # the intercepts free of either penalty, so their shift curves only
    # through the prior (and not at all with the singular one)
    icpt = np.arange(p1 - 1, d, p1)
    l2w, l1w = problem.l2w.copy(), problem.l1w.copy()
    l2w[icpt] = 0.0
    l1w[icpt] = 0.0
    problem = make_problem(MULTINOMIAL, 3, lam2=problem.lam2, lam1=lam1,
                           l2w=l2w, l1w=l1w)
    if prec_kind == "full-singular":
        # M^T M with M e = 0 for the intercepts' shift e, in small dyadic
        # numbers so that e^T Pi e is exactly zero
        M = rng.integers(-3, 4, size=(d + 2, d)) / 4.0
        M[:, icpt[-1]] = -M[:, icpt[:-1]].sum(axis=1)
        precision = M.T @ M
    ref = InnerObjective.from_problem(problem, np.zeros((0, 3)), np.zeros(0),
                                      np.zeros(0), theta0=theta0,
                                      precision=precision)
    theta = rng.normal(size=d)
    shift = evaluate(problem, theta0, precision, theta)["shift"]
    h = 1e-3
    for j in range(p1):
        e = shift_direction(problem, j)
        second = (ref.smooth_penalty(theta + h * e) - 2 * ref.smooth_penalty(theta)
                  + ref.smooth_penalty(theta - h * e)) / h**2
        l1_weight = lam1 * problem.l1w[e > 0].sum()
        np.testing.assert_allclose(shift[j] - l1_weight, second, rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_allclose(shift[j] - l1_weight,
                                   e @ ref.smooth_penalty_hess() @ e, rtol=1e-12,
                                   atol=1e-12)

        def penalty(s, e=e):
            return ref.smooth_penalty(theta + s * e) + ref.l1(theta + s * e)

        moves = [penalty(s) - penalty(0.0) for s in (-2.0, -0.5, 0.7, 3.0)]
        if shift[j] == 0.0:
            np.testing.assert_allclose(moves, 0.0, atol=1e-12)
        else:
            assert np.max(np.abs(moves)) > 1e-3
    flat = shift == 0.0
    assert flat[-1] == (prec_kind == "full-singular") and not flat[:-1].any()


# --------------------------------------------------------------------------
# the step-size bound
# --------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(d=st.integers(0, 7), full=st.booleans(), lam2=st.floats(0.0, 10.0),
       constant_l2w=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_smooth_curvature_bound_bounds_the_largest_eigenvalue(d, full, lam2,
                                                              constant_l2w, seed):
    # lam2 max(l2w) + max eig(Pi) bounds the largest eigenvalue of lam2
    # diag(l2w) + Pi (Weyl), within a factor 2 (both parts are positive
    # semi-definite), and equals it when l2w is constant
    rng = np.random.default_rng(seed)
    l2w = np.full(d, 0.7) if constant_l2w else rng.uniform(0.0, 2.0, d)
    problem = Problem(SQUARED, 1, d, False, False, lam2, 0.0, l2w, np.zeros(d))
    precision = random_spd(d, rng) if full else rng.uniform(0.0, 3.0, d)
    bound = smooth_curvature_bound(problem, precision)
    H = np.diag(lam2 * l2w) + (precision if full else np.diag(precision))
    top = np.linalg.eigvalsh(H)[-1] if d else 0.0
    assert top * (1 - 1e-12) <= bound <= 2 * top * (1 + 1e-12) + 1e-300
    if constant_l2w:
        assert bound == pytest.approx(top, rel=1e-12, abs=1e-300)
