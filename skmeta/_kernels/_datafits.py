"""Per-row losses of the supported datafits, their derivatives and curvature.

Every function works on one task: ``Z`` holds its linear predictor, ``y`` and
``sw`` its targets and sample weights (global arrays indexed from ``start``).
Losses are returned *unscaled* (a plain weighted sum); the caller multiplies
by the family's scale (1, or 1 / sum of weights for mean-scaled estimators).
"""

import math

from numba import njit

from ._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _log1pexp(z):
    # log(1 + exp(z)) without overflow for large |z|
    if z > 0.0:
        return z + math.log1p(math.exp(-z))
    return math.log1p(math.exp(z))


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _poisson_constant(y):
    # y log y - y: makes the loss the half deviance, which is zero at mu = y
    if y > 0.0:
        return y * math.log(y) - y
    return 0.0


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def datafit_loss(code, y, sw, start, stop, Z, n_outputs):
    """Weighted sum of the per-row losses of one task."""
    total = 0.0
    for i in range(start, stop):
        r = i - start
        w = sw[i]
        if w == 0.0:
            continue
        yi = y[i]
        if code == SQUARED:
            res = Z[r, 0] - yi
            total += 0.5 * w * res * res
        elif code == LOGISTIC:
            total += w * (_log1pexp(Z[r, 0]) - yi * Z[r, 0])
        elif code == MULTINOMIAL:
            m = Z[r, 0]
            for k in range(1, n_outputs):
                if Z[r, k] > m:
                    m = Z[r, k]
            s = 0.0
            for k in range(n_outputs):
                s += math.exp(Z[r, k] - m)
            total += w * (m + math.log(s) - Z[r, int(yi)])
        else:  # POISSON
            z = Z[r, 0]
            total += w * (math.exp(z) - yi * z + _poisson_constant(yi))
    return total


@njit(cache=True, nogil=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def datafit_derivatives(code, y, sw, start, stop, Z, n_outputs, G, D):
    """Loss of one task, with its derivatives with respect to ``Z``.

    Fills ``G[r, k] = w_r * dloss_r / dz_k``. For single-output datafits
    ``D[r, 0] = w_r * d2loss_r / dz2``; for the multinomial ``D[r, :]`` holds
    the class probabilities (the curvature is ``w_r (diag(p) - p p^T)``).
    """
    total = 0.0
    for i in range(start, stop):
        r = i - start
        w = sw[i]
        yi = y[i]
        if code == SQUARED:
            res = Z[r, 0] - yi
            total += 0.5 * w * res * res
            G[r, 0] = w * res
            D[r, 0] = w
        elif code == LOGISTIC:
            z = Z[r, 0]
            p = _sigmoid(z)
            total += w * (_log1pexp(z) - yi * z)
            G[r, 0] = w * (p - yi)
            D[r, 0] = w * p * (1.0 - p)
        elif code == MULTINOMIAL:
            m = Z[r, 0]
            for k in range(1, n_outputs):
                if Z[r, k] > m:
                    m = Z[r, k]
            s = 0.0
            for k in range(n_outputs):
                e = math.exp(Z[r, k] - m)
                D[r, k] = e
                s += e
            yk = int(yi)
            total += w * (m + math.log(s) - Z[r, yk])
            for k in range(n_outputs):
                D[r, k] /= s
                G[r, k] = w * D[r, k]
            G[r, yk] -= w
        else:  # POISSON
            z = Z[r, 0]
            mu = math.exp(z)
            total += w * (mu - yi * z + _poisson_constant(yi))
            G[r, 0] = w * (mu - yi)
            D[r, 0] = w * mu
    return total
