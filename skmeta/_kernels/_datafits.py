"""Per-row losses of the supported datafits, their derivatives and curvature.

Every function works on one task: ``Z[k, r]`` holds its linear predictor,
``y`` and ``sw`` the targets and sample weights (global arrays read from
``start``). Losses are returned as a plain weighted sum; the caller applies
the family's scale (1, or 1 / total weight for mean-scaled estimators).
"""

import math

from ._codes import LOGISTIC, MULTINOMIAL, SQUARED
from ._jit import helper


@helper
def _poisson_constant(y):
    # y log y - y makes the loss the half deviance, zero where mu = y
    if y > 0.0:
        return y * math.log(y) - y
    return 0.0


@helper
def datafit_derivatives(code, y, sw, start, stop, Z, n_outputs, G, D,
                        with_value=True):
    """Loss of one task, with its derivatives with respect to ``Z``.

    Fills ``G[k, r] = w_r dloss_r / dz_k``. For single-output datafits
    ``D[0, r] = w_r d2loss_r / dz2``; for the multinomial ``D[:, r]`` holds the
    class probabilities (the curvature is ``w_r (diag(p) - p p^T)``). Without
    ``with_value`` the loss is not computed (0 is returned), which saves a
    logarithm per row where only derivatives are needed.
    """
    total = 0.0
    for i in range(start, stop):
        r = i - start
        w = sw[i]
        yi = y[i]
        if code == SQUARED:
            res = Z[0, r] - yi
            total += 0.5 * w * res * res
            G[0, r] = w * res
            D[0, r] = w
        elif code == LOGISTIC:
            z = Z[0, r]
            e = math.exp(-abs(z))
            if with_value:
                total += w * (max(z, 0.0) + math.log1p(e) - yi * z)
            p = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
            G[0, r] = w * (p - yi)
            D[0, r] = w * p * (1.0 - p)
        elif code == MULTINOMIAL:
            m = Z[0, r]
            for k in range(1, n_outputs):
                m = max(m, Z[k, r])
            s = 0.0
            for k in range(n_outputs):
                e = math.exp(Z[k, r] - m)
                D[k, r] = e
                s += e
            yk = int(yi)
            if with_value:
                total += w * (m + math.log(s) - Z[yk, r])
            for k in range(n_outputs):
                D[k, r] /= s
                G[k, r] = w * D[k, r]
            G[yk, r] -= w
        else:  # POISSON
            z = Z[0, r]
            mu = math.exp(z)
            total += w * (mu - yi * z + _poisson_constant(yi))
            G[0, r] = w * (mu - yi)
            D[0, r] = w * mu
    return total
