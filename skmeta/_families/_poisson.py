"""PoissonRegressor: half Poisson deviance with a log link, l2 penalty."""

import numpy as np
from scipy.special import xlogy
from sklearn.linear_model import PoissonRegressor
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils.validation import _check_sample_weight

from .._kernels._codes import POISSON
from ._base import LinearFamily, penalty_strength


class PoissonFamily(LinearFamily):
    """``1/(2 n) sum_i w_i deviance_i + alpha/2 ||w||^2``: ``lambda = alpha``.

    ``n`` is the task's total sample weight (``mean_loss``).
    """

    supported = (PoissonRegressor,)
    prior_types = supported
    mean_loss = True

    def _read_objective(self, params):
        return penalty_strength(self.estimator, "alpha", params["alpha"]), 0.0

    def datafit_code(self, n_classes):
        return POISSON

    def check_targets(self, y):
        if np.any(y < 0):
            raise ValueError(
                "PoissonRegressor needs non-negative targets; y has "
                f"{int(np.sum(y < 0))} negative value(s)."
            )

    def predict_from_decision(self, Z):
        return np.exp(Z[:, 0])

    def score(self, y, y_pred, sample_weight=None):
        """D^2, the fraction of Poisson deviance explained, as
        ``PoissonRegressor.score`` gives it.

        Constant targets, whose mean leaves no deviance to explain, follow
        ``r2_score``'s convention (1 for exact predictions, 0 otherwise):
        ``d2_tweedie_score`` divides by zero there, and
        ``PoissonRegressor.score`` gives NaN or 0.
        """
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        check_consistent_length(y, y_pred, sample_weight)
        self.check_targets(y)
        weight = _check_sample_weight(sample_weight, y_pred)
        explained = _half_deviance(y, y_pred) @ weight
        mean = np.full_like(y, np.average(y, weights=weight))
        total = _half_deviance(y, mean) @ weight
        if total == 0.0:
            return 1.0 if explained == 0.0 else 0.0
        return float(1.0 - explained / total)

    def predictive_std(self, z, variance, noise_variance):
        """For ``log mu ~ N(z, v)``: ``Var y = E mu + Var mu`` (log-normal ``mu``)."""
        mean = np.exp(z + variance / 2.0)
        return np.sqrt(mean + np.expm1(variance) * np.exp(2.0 * z + variance))

    def _finish_build(self, est, *, classes, n_iter):
        est.n_iter_ = int(n_iter)
        # what PoissonRegressor.predict reads to apply the inverse link
        est._base_loss = est._get_loss()


def _half_deviance(y, mu):
    """Each row's half Poisson deviance, ``y log(y / mu) - y + mu`` (0 log 0 = 0)."""
    return xlogy(y, y) - xlogy(y, mu) - y + mu
