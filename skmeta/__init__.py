"""Meta-learning for scikit-learn.

skmeta learns, across many small related tasks, a prior over the parameters
of a scikit-learn base estimator, and fits each task -- including new ones
with a handful of samples -- as that estimator regularized toward the prior.
"""

from ._dask import repartition_by_task
from ._density import MetaGaussianDensity, TaskGaussianDensity
from ._embedding import MetaEmbedding
from ._estimators import MetaClassifier, MetaRegressor

__version__ = "0.1.0.dev0"

__all__ = [
    "MetaClassifier",
    "MetaEmbedding",
    "MetaGaussianDensity",
    "MetaRegressor",
    "TaskGaussianDensity",
    "repartition_by_task",
    "__version__",
]
