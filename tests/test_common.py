"""scikit-learn's estimator checks over every public estimator of skmeta.

No check is skipped here (``check_array_api_input`` skips itself unless
``SCIPY_ARRAY_API`` is set). A few are expected to fail, each with its
reason (see ``_expected_failed_checks``): a classifier whose ``y == -1``
marks unlabeled rows, unpenalized base estimators on data where their
objective has no unique minimizer, and default-strength l1 regressors, which
score below the training check's bar (as they do alone).

The checks fit without task identities, that is one task and nothing to
transfer: every method then solves the base estimator's own objective, so the
sample-weight equivalence holds even for the methods that draw random
support/query splits when there are tasks (``test_bilevel`` covers those).
"""

import inspect

import numpy as np
import pytest
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)
from sklearn.utils.estimator_checks import (
    check_param_validation,
    parametrize_with_checks,
)

from skmeta import (
    MetaClassifier,
    MetaGaussianDensity,
    MetaRegressor,
    TaskGaussianDensity,
)
from skmeta.preprocessing import TaskScaler

ESTIMATORS = [
    MetaClassifier(),
    MetaClassifier(LogisticRegression(C=10.0, l1_ratio=1.0, solver="saga"),
                   gamma=0.5),
    MetaClassifier(LogisticRegression(C=np.inf), gamma="auto", prior="diagonal"),
    MetaClassifier(LogisticRegression(C=2.0, l1_ratio=0.5, solver="saga"),
                   prior="full"),
    # probabilities averaged over each task's posterior
    MetaClassifier(posterior_proba=True),
    MetaRegressor(),
    MetaRegressor(LinearRegression(), gamma=0.1),
    MetaRegressor(Lasso(alpha=0.01), gamma="auto"),
    MetaRegressor(ElasticNet(alpha=0.01, l1_ratio=0.5), prior="diagonal"),
    MetaRegressor(PoissonRegressor(alpha=0.01), gamma=0.01),
    MetaRegressor(Ridge(alpha=1.0), gamma="auto", prior="full"),
    # every family's base estimator as constructed by default
    MetaRegressor(LinearRegression()),
    MetaRegressor(Lasso()),
    MetaRegressor(ElasticNet()),
    MetaRegressor(PoissonRegressor()),
    MetaClassifier(prior="mixture", n_prior_components=2, prior_df=4.0,
                   random_state=0),
    MetaRegressor(prior="mixture", random_state=0),
    # one model for all tasks
    MetaClassifier(prior="pooled"),
    MetaRegressor(PoissonRegressor(alpha=0.01), prior="pooled"),
    # the gradient-based methods (fewer meta-iterations than the default 500:
    # no check depends on how far the prior mean has moved)
    MetaClassifier(method="imaml", max_iter=100),
    MetaRegressor(method="maml", max_iter=100),
    MetaClassifier(LogisticRegression(C=2.0, l1_ratio=0.5, solver="saga"),
                   method="metasgd", max_iter=100),
    MetaRegressor(Lasso(alpha=0.01), method="maml", first_order=True,
                  max_iter=100),
    MetaRegressor(PoissonRegressor(alpha=0.01), method="imaml", max_iter=100),
    MetaClassifier(method="maml", inner_steps=2, max_iter=100, n_jobs=2),
    # every row in the query, so no random split: all checks pass
    MetaRegressor(method="metasgd", query_fraction=1.0, max_iter=100),
    # Reptile adapts on all rows: all checks pass
    MetaClassifier(method="reptile", max_iter=100),
    # y == -1 marks unlabeled rows (the weight of those validated on the
    # training tasks); see _expected_failed_checks
    MetaClassifier(unlabeled_weight=0.5, random_state=0),
    MetaGaussianDensity(),
    MetaGaussianDensity(contamination=0.05),
    TaskGaussianDensity(),
    TaskGaussianDensity(mean_precision_prior=0.1, contamination=0.2),
    TaskScaler(),
    TaskScaler(with_mean=False, new_tasks="transductive"),
    TaskScaler(with_std=False),
]

_UNLABELED_MARKER = (
    "with unlabeled_weight set, -1 marks an unlabeled row, as in "
    "sklearn.semi_supervised, and string labels are refused as "
    "SelfTrainingClassifier refuses them; this check fits labels [-1, 1] and "
    "string labels, which scikit-learn spares its own semi-supervised "
    "classifiers (estimator_checks._choose_check_classifiers_labels)"
)


_NO_UNIQUE_FIT = (
    "the checks fit one task, which with nothing to transfer is the base "
    "estimator's own objective; {what} it has no unique minimizer, and the "
    "weighted and the repeated fits stop at different points of the set of "
    "minimizers"
)


_STRONG_L1 = (
    "the check sets alpha=0.01 on regressors that have an alpha; the base "
    "estimator keeps its default alpha=1.0, with which {name} itself scores "
    "below the check's 0.5 on these data (Lasso: 0.0, ElasticNet: 0.40)"
)


def _expected_failed_checks(estimator):
    """The checks a configuration fails by design, each with its reason."""
    if getattr(estimator, "unlabeled_weight", None) is not None:
        return {"check_classifiers_classes": _UNLABELED_MARKER}
    base = estimator.get_params().get("estimator")
    if isinstance(base, (Lasso, ElasticNet)) and base.alpha >= 1.0:
        return {"check_regressors_train": _STRONG_L1.format(
            name=type(base).__name__)}
    # (LinearRegression's own minimum-norm lstsq makes the choice among its
    # minimizers that the repeated rows make too)
    if not (isinstance(base, LogisticRegression) and base.C == np.inf):
        return {}
    reason = _NO_UNIQUE_FIT.format(
        what="unpenalized, on the checks' separable classes,")
    return {"check_sample_weight_equivalence_on_dense_data": reason,
            "check_sample_weight_equivalence_on_sparse_data": reason}


# strict where scikit-learn supports it (>= 1.8): a check that starts passing
# must be taken off the list
_STRICT = ({"xfail_strict": True} if "xfail_strict" in inspect.signature(
    parametrize_with_checks).parameters else {})


# the checks fit without task identities, where the prior settings some of
# these estimators set are said to be ignored
@pytest.mark.filterwarnings("ignore:.*a fit without task identities")
@parametrize_with_checks(ESTIMATORS,
                         expected_failed_checks=_expected_failed_checks,
                         **_STRICT)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [MetaClassifier(), MetaRegressor(),
                                       MetaGaussianDensity(),
                                       TaskGaussianDensity(), TaskScaler()],
                         ids=lambda est: type(est).__name__)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)
