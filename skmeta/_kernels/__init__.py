"""numba kernels: datafits, penalties and task-batched solvers on plain arrays.

Nothing in this package knows about scikit-learn objects; the estimator layer
talks to it through :mod:`skmeta._kernels._batch`.
"""
