"""What every family adapter provides; the kernels never see estimators.

A family adapter reads a (possibly unfitted) scikit-learn estimator's
hyper-parameters, states its objective in the kernels' terms (a
:class:`~skmeta._kernels._batch.Problem`), and converts between a flat
parameter vector and that estimator's fitted attributes. It is the only place
that knows attribute names and objective scalings of a base estimator.

Objective scaling. Each estimator's documented objective is divided by a
constant so that its l2 penalty reads ``lambda/2 ||w||^2``; the transfer term
``gamma/2 (theta - theta0)^T Lambda (theta - theta0)`` is then added in those
units, so ``gamma`` compares directly with ``lambda`` (``1/C`` for
``LogisticRegression``, ``alpha`` for ``Ridge``, ``Lasso``, ``ElasticNet``,
``PoissonRegressor``).
"""

import numpy as np
from sklearn import get_config
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import (
    InvalidParameterError,
    validate_parameter_constraints,
)

from .._kernels._layout import Problem


def check_constraints(estimator, role):
    """Validate ``estimator``'s parameters as its own ``fit`` would.

    skmeta never calls the base estimator's ``fit`` (its own solvers take
    over), so the estimator's ``_parameter_constraints`` would otherwise go
    unchecked. Like scikit-learn, this honours
    ``sklearn.set_config(skip_parameter_validation=True)``. ``role`` is the
    meta-estimator parameter that holds ``estimator``, for the message.
    """
    if get_config().get("skip_parameter_validation", False):
        return
    constraints = getattr(type(estimator), "_parameter_constraints", None)
    if constraints:
        validate_parameter_constraints(
            constraints, estimator.get_params(deep=False),
            caller_name=f"{type(estimator).__name__} passed as {role}",
        )


def refuse(estimator, name, value, requirement):
    """Raise the error of a base-estimator parameter skmeta cannot use."""
    raise InvalidParameterError(
        f"The {name!r} parameter of {type(estimator).__name__} passed as "
        f"estimator {requirement}. Got {value!r} instead."
    )


def penalty_strength(estimator, name, value):
    """``value`` as a float, refused unless finite and non-negative.

    scikit-learn's constraints say the same, but they can be switched off
    and do not cover a 0-d array ``alpha``; a negative, NaN or infinite
    strength would reach the solvers as a NaN or non-convex objective.
    """
    strength = np.float64(value) if np.ndim(value) == 0 else np.nan
    if not (np.isfinite(strength) and strength >= 0):
        refuse(estimator, name, value, "must be a finite number >= 0")
    return float(strength)


def mixing_ratio(estimator, name, value):
    """An ``l1_ratio`` as a float, refused unless within [0, 1]."""
    ratio = np.float64(value) if np.ndim(value) == 0 else np.nan
    if not 0 <= ratio <= 1:
        refuse(estimator, name, value, "must be a number in [0, 1]")
    return float(ratio)


class LinearFamily:
    """Adapter for one family of linear base estimators.

    Subclasses set ``supported`` (the estimator classes, matched exactly, since
    a subclass may change the objective) and implement ``_read_objective``.
    """

    supported = ()
    #: Estimators whose fitted parameters may serve as this family's prior
    #: mean (same loss and link, so coefficients mean the same thing).
    prior_types = ()
    #: The loss is divided by the task's total sample weight (vs. summed).
    mean_loss = False
    is_network = False

    def __init__(self, estimator):
        self.estimator = estimator
        params = estimator.get_params(deep=False)
        self.fit_intercept = bool(params.get("fit_intercept", True))
        self.lam, self.l1_ratio = self._read_objective(params)
        self.intercept_l2, self.intercept_l1 = self._intercept_penalty(params)

    @classmethod
    def handles(cls, estimator):
        return type(estimator) in cls.supported

    def _read_objective(self, params):
        """Return ``(lambda, l1_ratio)`` of the base estimator's penalty,
        refusing values the solvers cannot use."""
        raise NotImplementedError

    def _intercept_penalty(self, params):
        """Per-parameter weights of the l2 and l1 penalties on the intercept."""
        return 0.0, 0.0

    def warn_ignored_settings(self):
        """Warn about settings of the estimator that do not apply (none here:
        the solver settings a linear model ignores are documented)."""

    def initial_params(self, n_features, n_classes, random_state):
        """Where the gradient-based methods start without a prior estimator:
        None, the pooled fit (see ``_methods._bilevel.pooled_start``)."""
        return None

    def n_features_of(self, n_params, n_classes):
        """Number of features of a model with ``n_params`` parameters."""
        return n_params // self.n_outputs(n_classes) - int(self.fit_intercept)

    # --- the objective, as the kernels see it -------------------------------
    def datafit_code(self, n_classes):
        raise NotImplementedError

    def n_outputs(self, n_classes):
        return 1

    def problem(self, n_features, n_classes=None):
        n_outputs = self.n_outputs(n_classes)
        p1 = n_features + int(self.fit_intercept)
        l2w = np.ones((n_outputs, p1))
        l1w = np.ones((n_outputs, p1))
        if self.fit_intercept:
            l2w[:, -1] = self.intercept_l2
            l1w[:, -1] = self.intercept_l1
        return Problem(
            code=self.datafit_code(n_classes),
            n_outputs=n_outputs,
            n_features=n_features,
            fit_intercept=self.fit_intercept,
            mean_loss=self.mean_loss,
            lam2=float(self.lam * (1.0 - self.l1_ratio)),
            lam1=float(self.lam * self.l1_ratio),
            l2w=l2w.ravel(),
            l1w=l1w.ravel(),
            singular_cutoff=self.singular_cutoff(),
        )

    def singular_cutoff(self):
        """The relative cut-off of singular values where the tasks are
        ordinary least squares (see ``Problem``)."""
        return float(np.finfo(np.float64).eps)

    # --- targets ------------------------------------------------------------
    def check_targets(self, y):
        """Raise a ValueError naming the problem if ``y`` is out of range."""

    def row_weights(self, y_encoded, sample_weight, task_codes, n_tasks, classes):
        """Sample weights the objective actually uses (e.g. class weights)."""
        return sample_weight

    # --- parameters <-> fitted attributes ------------------------------------
    def split_params(self, theta, n_features):
        """Coefficients and intercepts of flat parameter rows, stacked.

        ``theta`` has shape ``(n_models, n_params)``; returns arrays shaped like
        the base estimator's ``coef_`` and ``intercept_`` with a leading
        ``n_models`` axis.
        """
        n_models = theta.shape[0]
        p1 = n_features + int(self.fit_intercept)
        blocks = theta.reshape(n_models, -1, p1)
        coef = blocks[:, :, :n_features]
        if self.fit_intercept:
            intercept = blocks[:, :, n_features]
        else:
            intercept = np.zeros(blocks.shape[:2])
        return self._shape_coef(coef), self._shape_intercept(intercept)

    def _shape_coef(self, coef):
        return coef[:, 0, :]

    def _shape_intercept(self, intercept):
        return intercept[:, 0]

    def params_from(self, fitted, n_features, classes=None):
        """Flat parameter vector of a fitted estimator of this family."""
        if type(fitted) not in self.prior_types:
            names = ", ".join(cls.__name__ for cls in self.prior_types)
            raise TypeError(
                f"prior_estimator must be a fitted {names} for a "
                f"{type(self.estimator).__name__} base estimator (the same "
                f"loss and link); got {type(fitted).__name__}."
            )
        check_constraints(fitted, "prior_estimator")
        coef = np.asarray(fitted.coef_, dtype=np.float64)
        n_outputs = self.n_outputs(None if classes is None else len(classes))
        coef = coef.reshape(n_outputs, -1)
        if coef.shape[1] != n_features:
            raise ValueError(
                f"prior_estimator has {coef.shape[1]} coefficients per output, "
                f"but the data has {n_features} features."
            )
        parts = [coef]
        if self.fit_intercept:
            intercept = np.broadcast_to(
                np.asarray(getattr(fitted, "intercept_", 0.0), dtype=np.float64),
                (n_outputs,),
            )
            parts.append(intercept.reshape(n_outputs, 1))
        theta0 = np.hstack(parts).ravel()
        if not np.all(np.isfinite(theta0)):
            raise ValueError(
                "prior_estimator has NaN or infinite coefficients or "
                "intercept; it cannot serve as the prior mean."
            )
        return theta0

    def build(self, theta, *, n_features, classes=None, n_iter=1,
              feature_names=None):
        """A fitted clone of the base estimator with parameters ``theta``."""
        est = clone(self.estimator)
        coef, intercept = self.split_params(theta[np.newaxis, :], n_features)
        est.coef_ = coef[0].copy()
        est.intercept_ = intercept[0].copy() if np.ndim(intercept[0]) else float(
            intercept[0]
        )
        est.n_features_in_ = n_features
        if feature_names is not None:
            est.feature_names_in_ = np.asarray(feature_names, dtype=object)
        self._finish_build(est, classes=classes, n_iter=n_iter)
        return est

    def _finish_build(self, est, *, classes, n_iter):
        """Set the estimator-specific fitted attributes besides coef/intercept."""

    # --- predictions from decision values -----------------------------------
    def predict_from_decision(self, Z):
        """Regression output from the linear predictor ``Z`` (n, 1)."""
        return Z[:, 0]

    def score(self, y, y_pred, sample_weight=None):
        """The base estimator's own ``score`` of predictions: R^2."""
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def predictive_std(self, z, variance, noise_variance):
        """Standard deviation of the target when the predictor is ``N(z, variance)``.

        For squared errors, ``sqrt(variance + noise_variance)``.
        """
        return np.sqrt(variance + noise_variance)
