"""SQUAREM (Varadhan & Roland, 2008): an EM iteration, extrapolated.

One cycle makes two EM steps, extrapolates along them and stabilizes with a
third; an extrapolation that fails (raises, or leaves the fixed-point
residual larger than a plain EM step would) falls back to the plain EM
iterate. The step-length bound grows only while it keeps being reached.

Some coordinates may be ones that the EM map sets anew from the others at
every evaluation (the prior mean: a Newton step to its optimum for the
current precision). Where they move nonlinearly with the others, the
extrapolation lands off that optimum, and the next evaluation's jump back
to it reads as a residual that rejects the step, although the slow
coordinates (a precision that EM moves by a small fraction of the way at
each step) were extrapolated well. A rejected extrapolation is then tried
once more with those coordinates taken from the last EM iterate, judged on
the residual of the others -- only toward a prior stronger than that
iterate's: toward weaker ones lie the priors that run away (tasks too
small to tell how they differ), which the plain EM path leaves to the
fit's check for a degenerate precision.
"""

import numpy as np
from scipy import linalg

STEP_GROWTH = 4.0


def squarem(em_map, start, coords, finished):
    """Apply ``em_map`` from ``start`` until ``finished()`` says so.

    ``em_map(x)`` is one EM evaluation (it records its own results and what
    ``finished`` reads); ``coords.encode``/``coords.decode`` map an iterate
    to an unconstrained vector and back. The vector's first
    ``coords.profiled`` entries (if it says; else none) are those the EM map
    sets anew from the rest, and ``coords.strength(x)`` is then the
    strength of iterate ``x``'s prior.
    """
    k = getattr(coords, "profiled", 0)
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
        z = z0 - 2.0 * alpha * r + alpha**2 * v
        accepted = _stabilized(em_map, coords, z, z2 - z1, 0)
        if accepted is None and k > 0 and not finished():
            # the same extrapolation of the others, from the last EM
            # iterate's values of the coordinates the map sets anew
            accepted = _stabilized(em_map, coords,
                                   np.concatenate([z2[:k], z[k:]]),
                                   z2 - z1, k,
                                   stronger_than=coords.strength(x2))
        if finished():
            return
        if accepted is None:
            x0, step_max = x2, 1.0
        else:
            x0 = accepted


def _stabilized(em_map, coords, z, plain_residual, k, stronger_than=None):
    """The EM map's value at the extrapolated ``z``, or None where it failed.

    It fails if it raises, or if its fixed-point residual (on entries ``k:``)
    is larger than a plain EM step's, ``plain_residual``: an extrapolation
    must leave the iterates no worse than EM would. With ``stronger_than``,
    it is tried only where ``z``'s prior is stronger than that.
    """
    try:
        candidate = coords.decode(z)
        if (stronger_than is not None
                and not coords.strength(candidate) > stronger_than):
            return None
        x3 = em_map(candidate)
    except (FloatingPointError, linalg.LinAlgError, ValueError):
        return None
    z3 = coords.encode(x3)
    if not np.all(np.isfinite(z3)) or (
            np.linalg.norm((z3 - coords.encode(candidate))[k:])
            > np.linalg.norm(plain_residual[k:])):
        return None
    return x3
