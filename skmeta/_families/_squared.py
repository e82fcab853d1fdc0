"""Squared-error families: Ridge, LinearRegression, Lasso, ElasticNet."""

import numpy as np
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, Ridge

from .._kernels._codes import SQUARED
from ._base import LinearFamily, mixing_ratio, penalty_strength

# one loss and link: the coefficients of any of them can be a prior mean for
# any other
_SQUARED = (Ridge, LinearRegression, Lasso, ElasticNet)


def _refuse_positive(params, name):
    if params.get("positive", False):
        raise ValueError(
            f"{name}(positive=True) is not supported by skmeta: the transfer "
            "term pulls coefficients toward a prior that may be negative."
        )


class RidgeFamily(LinearFamily):
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
        if np.ndim(alpha) != 0:
            raise ValueError(
                "Ridge with one alpha per target is not supported by skmeta; "
                f"got alpha of shape {np.shape(alpha)}."
            )
        return penalty_strength(self.estimator, "alpha", alpha), 0.0

    def datafit_code(self, n_classes):
        return SQUARED



class LassoFamily(LinearFamily):
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
