"""Meta-learning for scikit-learn.

skmeta learns, across many small related tasks, a prior over the parameters
of a scikit-learn base estimator, and fits each task -- including new ones
with a handful of samples -- as that estimator regularized toward the prior.
"""

from ._density import MetaGaussianDensity, TaskGaussianDensity
from ._estimators import MetaClassifier, MetaRegressor

__version__ = "0.1.0.dev0"

__all__ = [
    "MetaClassifier",
    "MetaGaussianDensity",
    "MetaRegressor",
    "TaskGaussianDensity",
    "__version__",
]
