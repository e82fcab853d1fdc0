"""LogisticRegression: binary and multinomial log-loss, l2/l1/elastic-net."""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_class_weight

from .._kernels._codes import LOGISTIC, MULTINOMIAL
from ._base import LinearFamily, mixing_ratio, refuse


def _penalty_kind(penalty, lam, l1_ratio):
    """The penalty ``LogisticRegression.fit`` checks its solver against: an
    explicit ``penalty`` (the older spelling) wins, even with ``C=inf``;
    else no penalty at ``C=inf``, and ``l1_ratio`` says which."""
    if penalty in ("l1", "l2", "elasticnet"):
        return penalty
    if penalty is None or lam == 0.0:
        return "none"
    if l1_ratio == 0.0:
        return "l2"
    return "l1" if l1_ratio == 1.0 else "elasticnet"


class LogisticFamily(LinearFamily):
    """``C * sum_i w_i logloss_i + R(w)`` divided by ``C``.

    So ``lambda = 1 / C`` (0 for ``C=inf``) and ``R = (1 - l1_ratio)/2 ||w||^2
    + l1_ratio ||w||_1``. Binary problems use one coefficient vector (the
    positive class is ``classes_[1]``), three or more classes the full
    multinomial parametrization, as scikit-learn does. The ``liblinear``
    solver penalizes the intercept (through ``intercept_scaling``); that is
    reproduced too.
    """

    supported = (LogisticRegression,)
    prior_types = supported

    def _read_objective(self, params):
        C = params["C"]
        l1_ratio = params.get("l1_ratio", 0.0)
        # the solvers work with 1/C: C must be positive (inf: no penalty) and
        # not so small that 1/C overflows
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            lam = np.float64(1.0) / np.float64(C) if np.ndim(C) == 0 else np.nan
        if not (np.isfinite(lam) and lam >= 0):
            refuse(self.estimator, "C", C,
                   "must be a number > 0 (or inf) whose inverse 1/C is finite")
        if l1_ratio is not None:
            l1_ratio = mixing_ratio(self.estimator, "l1_ratio", l1_ratio)
        penalty = params.get("penalty", "deprecated")
        # scikit-learn >= 1.8 spells the penalty with l1_ratio and C=inf; the
        # older `penalty=` spelling is still honoured where it is set
        if penalty == "l2":
            l1_ratio = 0.0
        elif penalty == "l1":
            l1_ratio = 1.0
        elif penalty is None:
            lam = 0.0
        if l1_ratio is None:
            l1_ratio = 0.0
        self._check_solver(params.get("solver", "lbfgs"),
                           _penalty_kind(penalty, lam, l1_ratio))
        return float(lam), l1_ratio

    def _check_solver(self, solver, kind):
        """Refuse the solver and penalty pairs ``LogisticRegression.fit``
        refuses (``kind`` as :func:`_penalty_kind` reads it): skmeta's own
        solvers could fit them, but the models it hands out
        (``task_estimator``, ``adapt``) could then not be refitted, and a
        grid over solvers would score settings the base estimator rejects."""
        if kind == "elasticnet" and solver != "saga":
            refuse(self.estimator, "solver", solver,
                   "must be 'saga' with an elastic-net penalty, as "
                   "LogisticRegression.fit requires")
        if kind == "l1" and solver not in ("liblinear", "saga"):
            refuse(self.estimator, "solver", solver,
                   "must be 'liblinear' or 'saga' with an l1 penalty, as "
                   "LogisticRegression.fit requires")
        if kind == "none" and solver == "liblinear":
            refuse(self.estimator, "solver", solver,
                   "must not be 'liblinear' without a penalty (C=inf or "
                   "penalty=None), which LogisticRegression.fit refuses")

    def _intercept_penalty(self, params):
        if (params.get("solver") == "liblinear"
                and params.get("fit_intercept", True)):
            # liblinear appends a constant feature equal to intercept_scaling
            # and penalizes its weight like any other: b = s * w_s
            s = params.get("intercept_scaling", 1.0)
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                scale = np.float64(s) if np.ndim(s) == 0 else np.nan
                l2, l1 = 1.0 / (scale * scale), 1.0 / scale
            if not (scale > 0 and np.isfinite(l2)):
                refuse(self.estimator, "intercept_scaling", s,
                       "must be a number > 0 whose 1/intercept_scaling**2 (the "
                       "weight liblinear's penalty puts on the intercept) is "
                       "finite")
            return float(l2), float(l1)
        return 0.0, 0.0

    def datafit_code(self, n_classes):
        if n_classes == 2:
            return LOGISTIC
        if self.estimator.get_params(deep=False).get("solver") == "liblinear":
            # scikit-learn refuses it too: liblinear fits one-vs-rest models,
            # which the multinomial fitted here would silently replace
            raise ValueError(
                f"The 'liblinear' solver of {type(self.estimator).__name__} "
                f"does not support multiclass classification ({n_classes} "
                "classes): use another solver, as scikit-learn's "
                "LogisticRegression.fit also asks.")
        return MULTINOMIAL

    def n_outputs(self, n_classes):
        if n_classes is None or n_classes == 2:
            return 1
        return int(n_classes)

    def _shape_coef(self, coef):
        return coef

    def _shape_intercept(self, intercept):
        return intercept

    def row_weights(self, y_encoded, sample_weight, task_codes, n_tasks, classes):
        class_weight = self.estimator.get_params(deep=False).get("class_weight")
        if class_weight is None:
            return sample_weight
        n_classes = len(classes)
        y_int = y_encoded.astype(np.intp)  # class indices (0/1 when binary)
        if isinstance(class_weight, dict):
            per_class = compute_class_weight(class_weight, classes=classes,
                                             y=classes[y_int])
            return sample_weight * per_class[y_int]
        # "balanced" is computed within each task, as the base estimator
        # fitted on that task alone would
        cell = task_codes * n_classes + y_int
        size = n_tasks * n_classes
        weighted = np.bincount(cell, weights=sample_weight,
                               minlength=size).reshape(n_tasks, n_classes)
        # a class whose rows in the task all weigh 0 is absent from it, as
        # such rows are absent
        n_present = (weighted > 0).sum(axis=1)
        total = weighted.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = total[:, None] / (n_present[:, None] * weighted)
        factor = np.where(np.isfinite(factor), factor, 0.0)
        return sample_weight * factor[task_codes, y_int]

    def _finish_build(self, est, *, classes, n_iter):
        est.classes_ = np.asarray(classes)
        est.n_iter_ = np.asarray([n_iter], dtype=np.int32)
        if not self.fit_intercept:
            est.intercept_ = np.zeros(est.coef_.shape[0])
