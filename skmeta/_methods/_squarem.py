"""SQUAREM (Varadhan & Roland, 2008): an EM iteration, extrapolated.

One cycle makes two EM steps, extrapolates along them and stabilizes with a
third; an extrapolation that fails (raises, or leaves the fixed-point
residual larger than a plain EM step would) falls back to the plain EM
iterate. The step-length bound grows only while it keeps being reached.
"""

import numpy as np
from scipy import linalg

STEP_GROWTH = 4.0


def squarem(em_map, start, coords, finished):
    """Apply ``em_map`` from ``start`` until ``finished()`` says so.

    ``em_map(x)`` is one EM evaluation (it records its own results and what
    ``finished`` reads); ``coords.encode``/``coords.decode`` map an iterate
    to an unconstrained vector and back.
    """
    x0 = start
    step_max = 1.0
    while not finished():
        x1 = em_map(x0)
        if finished():
            return
        x2 = em_map(x1)
        if finished():
            return
        z0, z1, z2 = coords.encode(x0), coords.encode(x1), coords.encode(x2)
        r = z1 - z0
        v = z2 - z1 - r
        norm_v = np.linalg.norm(v)
        if norm_v == 0.0 or not np.all(np.isfinite(v)):
            x0 = x2
            continue
        alpha = max(-step_max, min(-1.0, -np.linalg.norm(r) / norm_v))
        if alpha == -step_max:
            step_max *= STEP_GROWTH
        try:
            candidate = coords.decode(z0 - 2.0 * alpha * r + alpha**2 * v)
            x3 = em_map(candidate)
        except (FloatingPointError, linalg.LinAlgError, ValueError):
            x0, step_max = x2, 1.0
            continue
        if finished():
            return
        # keep the extrapolation only if it left the iterates no worse than
        # a plain EM step would: the fixed-point residual must not grow
        z3 = coords.encode(x3)
        if not np.all(np.isfinite(z3)) or (
                np.linalg.norm(z3 - coords.encode(candidate))
                > np.linalg.norm(z2 - z1)):
            x0, step_max = x2, 1.0
        else:
            x0 = x3
