"""Squared-error families: Ridge, LinearRegression, Lasso, ElasticNet."""

import numpy as np
import sklearn
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge
from sklearn.utils.fixes import parse_version

from .._kernels._codes import SQUARED
from ._base import LinearFamily, mixing_ratio, penalty_strength

# one loss and link: the coefficients of any of them can be a prior mean for
# any other
_SQUARED = (Ridge, LinearRegression, Lasso, ElasticNet)


# squared errors summed over the rows must stay this far (a factor of 100)
# below float64's largest number, and the targets' squares above its
# smallest normal ones
_MAX_LOG10_SUM_OF_SQUARES = 306.0
_MIN_LOG10_SQUARE = -300.0


class _SquaredTargets:
    """Targets whose squared errors stay within float64's range."""

    def check_targets(self, y):
        top = float(np.max(np.abs(y), initial=0.0))
        if top == 0.0:
            return
        if 2.0 * np.log10(top) + np.log10(len(y)) > _MAX_LOG10_SUM_OF_SQUARES:
            raise ValueError(
                f"y has values of magnitude up to {top:.3g}: their squared "
                "errors summed over its rows, and the noise variance in y's "
                "units squared, overflow float64. Rescale y (and its "
                "predictions back).")
        if 2.0 * np.log10(top) < _MIN_LOG10_SQUARE:
            raise ValueError(
                f"y has values of magnitude at most {top:.3g}: their squares, "
                "and the noise variance in y's units squared, underflow "
                "float64. Rescale y (and its predictions back).")


def _refuse_positive(params, name):
    if params.get("positive", False):
        raise ValueError(
            f"{name}(positive=True) is not supported by skmeta: the transfer "
            "term pulls coefficients toward a prior that may be negative."
        )


class RidgeFamily(_SquaredTargets, LinearFamily):
    """``||y - Xw - b||^2 + alpha ||w||^2`` divided by 2: ``lambda = alpha``.

    ``LinearRegression`` is the same objective with ``alpha = 0``.
    """

    supported = (Ridge, LinearRegression)
    prior_types = _SQUARED

    def _read_objective(self, params):
        name = type(self.estimator).__name__
        _refuse_positive(params, name)
        if isinstance(self.estimator, LinearRegression):
            return 0.0, 0.0
        alpha = params["alpha"]
        if np.size(alpha) == 1:
            # one target: an array of one alpha is Ridge's alpha, as its own
            # fit reads it
            alpha = np.ravel(alpha)[0]
        if np.ndim(alpha) != 0:
            raise ValueError(
                "Ridge with one alpha per target is not supported by skmeta; "
                f"got alpha of shape {np.shape(alpha)}."
            )
        return penalty_strength(self.estimator, "alpha", alpha), 0.0

    def datafit_code(self, n_classes):
        return SQUARED

    def singular_cutoff(self):
        # From scikit-learn 1.9 on, LinearRegression's lstsq counts singular
        # values below tol times the largest as zero on dense rows (columns of
        # very different scales lose the small ones' directions there); before,
        # only those at rounding level. Its own fit is what a fit without
        # tasks must give
        if (isinstance(self.estimator, LinearRegression)
                and parse_version(sklearn.__version__).release >= (1, 9)):
            return float(self.estimator.get_params()["tol"])
        return super().singular_cutoff()


class LassoFamily(_SquaredTargets, LinearFamily):
    """``1/(2 n) ||y - Xw - b||^2 + alpha (rho ||w||_1 + (1 - rho)/2 ||w||^2)``.

    ``n`` is the task's total sample weight (``mean_loss``); ``lambda = alpha``
    and ``rho`` is ``l1_ratio`` (1 for ``Lasso``).
    """

    supported = (Lasso, ElasticNet)
    prior_types = _SQUARED
    mean_loss = True

    def _read_objective(self, params):
        _refuse_positive(params, type(self.estimator).__name__)
        alpha = penalty_strength(self.estimator, "alpha", params["alpha"])
        if isinstance(self.estimator, Lasso):
            return alpha, 1.0
        return alpha, mixing_ratio(self.estimator, "l1_ratio", params["l1_ratio"])

    def datafit_code(self, n_classes):
        return SQUARED

    def _finish_build(self, est, *, classes, n_iter):
        est.n_iter_ = int(n_iter)
