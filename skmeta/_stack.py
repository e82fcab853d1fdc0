"""Where a warning points: the caller's code, not skmeta's or scikit-learn's."""

import os
import sys

import sklearn

_INTERNAL = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
             os.path.dirname(os.path.abspath(sklearn.__file__)) + os.sep)


def user_stacklevel():
    """The ``stacklevel`` for ``warnings.warn`` called by the caller of this
    function that names the first frame outside skmeta and scikit-learn.

    A warning raised deep in a fit is reached through a different number of
    frames from ``fit``, ``partial_fit`` or a Dask fit, and through
    scikit-learn's wrappers; a fixed level points into skmeta from some.
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(
            frame.f_code.co_filename).startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level
