"""SQUAREM on an EM map whose first coordinate is set anew from the rest."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skmeta._methods._squarem import squarem

RATE = 0.98  # a slow EM map: it moves 2% of the way at each step
FIXED = 1.0


def profile(s):
    # the coordinate the map sets anew, nonlinear in the slow one (as the
    # prior mean's optimum is in the precision)
    return np.sin(8.0 * s)


class Coordinates:
    """Iterates are arrays ``(a, s)``; ``profiled`` leading entries."""

    def __init__(self, profiled):
        self.profiled = profiled

    @staticmethod
    def encode(x):
        return np.asarray(x, dtype=float)

    @staticmethod
    def decode(z):
        return np.asarray(z, dtype=float)

    @staticmethod
    def strength(x):
        return x[1]


def slow(s):
    return FIXED + RATE * (s - FIXED)


def run(slow_step, s, profiled, *, limit=20_000, until_fixed=True):
    """The points SQUAREM evaluates the map ``(a, s) -> (profile(s'), s')``,
    ``s' = slow_step(s)``, at from ``(profile(s), s)``: ``limit`` of them,
    or (``until_fixed``) until one is at ``FIXED`` to 1e-12."""
    evaluations = []

    def em_map(x):
        evaluations.append(x.copy())
        s = slow_step(x[1])
        return np.array([profile(s), s])

    def finished():
        return len(evaluations) >= limit or until_fixed and bool(
            evaluations) and abs(evaluations[-1][1] - FIXED) < 1e-12

    squarem(em_map, np.array([profile(s), s]), Coordinates(profiled),
            finished)
    return np.array(evaluations)


def test_the_coordinates_set_anew_are_not_extrapolated():
    # from below, the slow coordinate grows (a stronger prior): extrapolated
    # with the other, it lands off its profile and the step is rejected; the
    # retry from the last EM iterate's value is accepted
    joint = run(slow, 0.0, profiled=0)
    apart = run(slow, 0.0, profiled=1)
    assert abs(apart[-1][1] - FIXED) < 1e-12
    assert len(apart) < len(joint) / 3
    # both reach the fixed point (plain EM takes about 1,370 steps)
    assert abs(joint[-1][1] - FIXED) < 1e-12
    assert len(joint) < 1_370


def test_no_retry_toward_a_weaker_prior():
    # a prior that runs away: the slow coordinate (a log precision) falls
    # ever faster, with no fixed point; no retry is made toward it, and the
    # iterates are exactly those of the joint extrapolation
    def run_away(s):
        return 1.02 * s - 0.1

    joint = run(run_away, 0.0, profiled=0, limit=60)
    assert_allclose(run(run_away, 0.0, profiled=1, limit=60), joint,
                    rtol=0, atol=0)


@pytest.mark.parametrize("profiled", [0, 1])
def test_a_map_that_lands_on_its_fixed_point_at_once(profiled):
    # one EM step lands on the fixed point: the extrapolation that follows
    # has length one and stays there, and no retry is made
    evaluations = run(lambda s: FIXED, 0.0, profiled, limit=3,
                      until_fixed=False)
    assert len(evaluations) == 3
