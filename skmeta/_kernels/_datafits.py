"""Every formula of the supported datafits: losses, derivatives, curvature.

Every function works on rows ``start:stop`` of one task: ``Z[k, r]`` holds
the linear predictor of row ``start + r``, ``y`` and ``sw`` the targets and
sample weights (read from ``start``). Losses are returned as a plain
weighted sum; the caller multiplies by ``loss_scale`` (1, or 1 / total
weight for mean-scaled estimators).
"""

import math

import numpy as np

from ._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from ._elementary import exp, log1p_unit
from ._jit import helper, summing_helper


@helper
def _poisson_constant(y):
    # y log y - y makes the loss the half deviance, zero where mu = y
    if y > 0.0:
        return y * math.log(y) - y
    return 0.0


@summing_helper
def _row_sum(A, n):
    """``A[0, :n].sum()``, in a loop that only reads (see datafit_derivatives)."""
    total = 0.0
    for r in range(n):
        total += A[0, r]
    return total


@summing_helper
def datafit_derivatives(code, y, sw, start, stop, Z, n_outputs, G, D,
                        with_value):
    """Loss of one task, with its derivatives with respect to ``Z``.

    Fills ``G[k, r] = w_r dloss_r / dz_k``. For single-output datafits
    ``D[0, r] = w_r d2loss_r / dz2``; for the multinomial ``D[:, r]`` holds the
    class probabilities (the curvature is ``w_r (diag(p) - p p^T)``). Without
    ``with_value`` the loss is not computed (0 is returned), which saves a
    logarithm per row where only derivatives are needed.
    """
    # One pass per datafit and purpose: the branch is taken once per task,
    # not per row, and no loop both sums and writes. LLVM runs a loop that
    # writes through one array while reading others in a vectorized or a
    # plain version, chosen by comparing the arrays' addresses at run time;
    # a sum in such a loop would come out in either order, so results would
    # depend on where the buffers happen to lie in memory. Per-row losses go
    # to G first and are summed by a loop that only reads.
    # Unsigned indices: numba then need not check them for negative values
    # (wraparound), which would keep LLVM from vectorizing the loops.
    total = 0.0
    n = np.uintp(stop - start)
    start = np.uintp(start)
    if code == SQUARED:
        if with_value:
            for r in range(n):
                i = start + r
                res = Z[0, r] - y[i]
                G[0, r] = 0.5 * sw[i] * res * res
            total = _row_sum(G, n)
        for r in range(n):
            i = start + r
            w = sw[i]
            G[0, r] = w * (Z[0, r] - y[i])
            D[0, r] = w
    elif code == LOGISTIC:
        for r in range(n):
            D[0, r] = exp(-abs(Z[0, r]))
        if with_value:
            for r in range(n):
                i = start + r
                z = Z[0, r]
                G[0, r] = sw[i] * (max(z, 0.0) + log1p_unit(D[0, r]) - y[i] * z)
            total = _row_sum(G, n)
        for r in range(n):
            i = start + r
            w = sw[i]
            e = D[0, r]
            # sigmoid(z) from exp(-|z|), without overflow
            p = (1.0 if Z[0, r] >= 0.0 else e) / (1.0 + e)
            G[0, r] = w * (p - y[i])
            D[0, r] = w * p * (1.0 - p)
    elif code == MULTINOMIAL:
        for r in range(n):
            i = start + r
            w = sw[i]
            m = Z[0, r]
            for k in range(1, n_outputs):
                m = max(m, Z[k, r])
            for k in range(n_outputs):
                D[k, r] = exp(Z[k, r] - m)
            s = 0.0
            for k in range(n_outputs):
                s += D[k, r]
            yk = int(y[i])
            if with_value:
                total += w * (m + math.log(s) - Z[yk, r])
            for k in range(n_outputs):
                D[k, r] /= s
                G[k, r] = w * D[k, r]
            G[yk, r] -= w
    else:  # POISSON
        for r in range(n):
            D[0, r] = exp(Z[0, r])
        if with_value:
            for r in range(n):
                i = start + r
                G[0, r] = sw[i] * (D[0, r] - y[i] * Z[0, r]
                                   + _poisson_constant(y[i]))
            total = _row_sum(G, n)
        for r in range(n):
            i = start + r
            w = sw[i]
            mu = D[0, r]
            G[0, r] = w * (mu - y[i])
            D[0, r] = w * mu
    return total


@helper
def loss_scale(mean_loss, sw, start, stop):
    """The factor of the summed loss: 1, or 1 / total weight of the rows."""
    if not mean_loss:
        return 1.0
    total = 0.0
    for i in range(start, stop):
        total += sw[i]
    return 1.0 / total if total > 0.0 else 0.0


@helper
def hessian_weights(code, sw, start, stop, D, k, m, scale, a):
    """Row weights ``a`` of block ``(k, m)`` of the datafit's Hessian in theta.

    The block is ``X~^T diag(a) X~``; ``D`` holds what ``datafit_derivatives``
    wrote (weighted curvature, or the multinomial's class probabilities,
    whose curvature is ``w (diag(p) - p p^T)``). Single-output datafits have
    the one block ``(0, 0)``.
    """
    n = stop - start
    for r in range(n):
        if code == MULTINOMIAL:
            weight = scale * sw[start + r]
            if k == m:
                a[r] = weight * D[k, r] * (1.0 - D[k, r])
            else:
                a[r] = -weight * D[k, r] * D[m, r]
        else:
            a[r] = scale * D[0, r]


@helper
def curvature_times(code, sw, start, stop, D, U, n_outputs, scale):
    """``U <- scale * (per-row curvature) U`` for rows ``start:stop``, in place.

    With ``U`` the predictor of a direction ``v``, ``X~^T U`` is then the
    datafit's Hessian-vector product. ``D`` is as in ``hessian_weights``.
    """
    n = np.uintp(stop - start)
    start = np.uintp(start)  # unsigned indices: see _rows.dense_predictor
    for r in range(n):
        if code == MULTINOMIAL:
            w = scale * sw[start + r]
            s = 0.0
            for k in range(n_outputs):
                s += D[k, r] * U[k, r]
            for k in range(n_outputs):
                U[k, r] = w * D[k, r] * (U[k, r] - s)
        else:
            U[0, r] *= scale * D[0, r]


@helper
def curvature_bound(code, y, mean_y):
    """A bound on one row's second derivative of the loss (weight excluded).

    1 for the squared error, 1/4 logistic, 1/2 multinomial (the largest
    eigenvalue of ``diag(p) - p p^T``); the Poisson deviance's curvature is
    unbounded, and ``max(y, mean y, 1e-3)`` is its value near the solution.
    """
    if code == MULTINOMIAL:
        return 0.5
    if code == LOGISTIC:
        return 0.25
    if code == POISSON:
        return max(y, mean_y, 1e-3)
    return 1.0
