"""The penalties: the base estimator's own ``lambda R`` and the transfer term ``P``.

``lambda R(theta) = lam2/2 sum_j l2w_j theta_j**2 + lam1 sum_j l1w_j |theta_j|``
(``problem``: the base estimator's l2/l1 parts, per-parameter weights zero
on an unpenalized intercept), and ``P(theta) = 1/2 (theta - theta0)^T Pi
(theta - theta0)`` (``prior``: ``Pi = gamma Lambda``, diagonal or full; see
``_layout.PriorArrays``). Every formula of either lives here: values,
gradients, curvature, the l1 proximal operator and its active set.
"""

import numpy as np

from ._jit import helper


@helper
def precision_times(prior, v, out, d):
    """``out = Pi v``."""
    if prior.full:
        mat = prior.mat
        for i in range(d):
            s = 0.0
            for j in range(d):
                s += mat[i, j] * v[j]
            out[i] = s
    else:
        for i in range(d):
            out[i] = prior.diag[i] * v[i]


@helper
def transfer_gradient(theta, prior, d, diff, q):
    """``q = Pi (theta - theta0)``, the transfer term's gradient (``diff``: work)."""
    theta0 = prior.theta0
    for j in range(d):
        diff[j] = theta[j] - theta0[j]
    precision_times(prior, diff, q, d)


@helper
def smooth_penalty_gradient(theta, problem, prior, d, diff, out):
    """``out = lam2 l2w * theta + Pi (theta - theta0)`` (``diff``: work).

    As ``transfer_gradient`` then ``smooth_gradient``, in one pass over the
    parameters for a diagonal ``Pi``: the unrolled network kernels take it
    at every inner step, on thousands of parameters.
    """
    lam2 = problem.lam2
    l2w = problem.l2w
    if prior.full:
        transfer_gradient(theta, prior, d, diff, out)
        for j in range(d):
            out[j] = lam2 * l2w[j] * theta[j] + out[j]
        return
    theta0 = prior.theta0
    diag = prior.diag
    for j in range(d):
        out[j] = lam2 * l2w[j] * theta[j] + diag[j] * (theta[j] - theta0[j])


@helper
def penalty_values(theta, problem, prior, d, diff, q):
    """Smooth part (l2 penalty plus transfer term) and l1 part at ``theta``.

    Also leaves ``q = Pi (theta - theta0)`` for the gradient.
    """
    lam2 = problem.lam2
    lam1 = problem.lam1
    l2w = problem.l2w
    l1w = problem.l1w
    smooth = 0.0
    l1 = 0.0
    for j in range(d):
        tj = theta[j]
        smooth += 0.5 * lam2 * l2w[j] * tj * tj
        l1 += lam1 * l1w[j] * abs(tj)
    transfer_gradient(theta, prior, d, diff, q)
    for i in range(d):
        smooth += 0.5 * diff[i] * q[i]
    return smooth, l1


@helper
def smooth_gradient(theta, problem, q, d, out):
    """``out = lam2 l2w * theta + q``: the smooth penalties' gradient, given ``q``."""
    for j in range(d):
        out[j] = problem.lam2 * problem.l2w[j] * theta[j] + q[j]


@helper
def add_smooth_curvature(A, problem, prior, d):
    """Add the smooth penalties' Hessian to the lower triangle of ``A``."""
    for j in range(d):
        A[j, j] += problem.lam2 * problem.l2w[j]
    if prior.full:
        for i in range(d):
            for j in range(i + 1):
                A[i, j] += prior.mat[i, j]
    else:
        for j in range(d):
            A[j, j] += prior.diag[j]


@helper
def smooth_curvature_trace(problem, prior, Ainv, d):
    """``tr((lam2 diag(l2w) + Pi) Ainv)``."""
    trace = 0.0
    for i in range(d):
        trace += problem.lam2 * problem.l2w[i] * Ainv[i, i]
        if prior.full:
            for j in range(d):
                trace += prior.mat[i, j] * Ainv[j, i]
        else:
            trace += prior.diag[i] * Ainv[i, i]
    return trace


@helper
def class_shift_curvature(problem, prior, j):
    """Curvature of both penalties along the class shift of column ``j``.

    Adding one value to coefficient ``j`` of every class (or to every
    intercept) leaves the multinomial loss unchanged; this is how much the
    penalties curve along that direction, up to a positive factor.
    """
    p1 = problem.n_features + problem.fit_intercept
    curvature = 0.0
    for k in range(problem.n_outputs):
        kj = k * p1 + j
        curvature += problem.lam2 * problem.l2w[kj] + problem.lam1 * problem.l1w[kj]
        if prior.full:
            for m in range(problem.n_outputs):
                curvature += prior.mat[kj, m * p1 + j]
        else:
            curvature += prior.diag[kj]
    return curvature


@helper
def l1_threshold(problem, j, step):
    """The l1 penalty's threshold on parameter ``j`` for a step of ``step``."""
    return step * problem.lam1 * problem.l1w[j]


@helper
def soft_threshold(u, threshold):
    """The l1 proximal operator: ``sign(u) max(|u| - threshold, 0)``.

    Written as selects rather than branches (the sign of ``u`` is random in
    the hot loops). A NaN gives 0; a negative threshold is not expected.
    """
    shrunk = (u - threshold) if u > threshold else 0.0
    return (u + threshold) if u < -threshold else shrunk


@helper
def held_at_zero(value, threshold):
    """Whether the l1 penalty holds a coordinate at zero.

    True for a zero value with a positive threshold: the active-set rule of
    the solutions (threshold ``lam1 l1w_j``) and of the proximal steps
    (``soft_threshold`` returns exactly 0 if and only if ``|u| <= threshold``).
    Such coordinates do not move with small changes of the prior, so their
    derivatives are zero.
    """
    return threshold > 0.0 and value == 0.0


@helper
def has_l1(problem, d):
    """Whether any parameter has an l1 penalty."""
    if problem.lam1 > 0.0:
        for j in range(d):
            if problem.l1w[j] > 0.0:
                return True
    return False


def smooth_curvature_bound(problem, precision):
    """Largest eigenvalue of the smooth penalties' Hessian (for step sizes)."""
    precision = np.asarray(precision, dtype=np.float64)
    if precision.ndim == 2:
        top = float(np.linalg.eigvalsh(precision)[-1]) if precision.size else 0.0
    else:
        top = float(precision.max(initial=0.0))
    return problem.lam2 * float(problem.l2w.max(initial=0.0)) + top


@helper
def smooth_curvature_diagonal(problem, prior, d, out):
    """``out = lam2 l2w + diag(Pi)``, the smooth penalties' curvature (diagonal ``Pi``).

    Returns whether every entry is positive.
    """
    positive = True
    for j in range(d):
        out[j] = problem.lam2 * problem.l2w[j] + prior.diag[j]
        positive = positive and out[j] > 0.0
    return positive
