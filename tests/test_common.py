"""scikit-learn's estimator checks over every public estimator of skmeta.

No check is skipped or expected to fail.
"""

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
    MetaRegressor(),
    MetaRegressor(LinearRegression(), gamma=0.1),
    MetaRegressor(Lasso(alpha=0.01), gamma="auto"),
    MetaRegressor(ElasticNet(alpha=0.01, l1_ratio=0.5), prior="diagonal"),
    MetaRegressor(PoissonRegressor(alpha=0.01), gamma=0.01),
    MetaRegressor(Ridge(alpha=1.0), gamma="auto", prior="full"),
    MetaGaussianDensity(),
    MetaGaussianDensity(contamination=0.05),
    TaskGaussianDensity(),
    TaskGaussianDensity(mean_precision_prior=0.1, contamination=0.2),
    TaskScaler(),
    TaskScaler(with_mean=False, new_tasks="transductive"),
    TaskScaler(with_std=False),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [MetaClassifier(), MetaRegressor(),
                                       MetaGaussianDensity(),
                                       TaskGaussianDensity(), TaskScaler()],
                         ids=lambda est: type(est).__name__)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)
