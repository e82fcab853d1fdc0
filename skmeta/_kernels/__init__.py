"""numba kernels on plain arrays, by concern, as skglm's datafit x penalty x solver.

* ``_datafits``: every loss formula (values, derivatives, curvature);
* ``_penalties``: the base estimator's penalty and the transfer term;
* ``_rows``: loading one task's rows and the design-matrix products;
* solvers, which do not import each other (but for the implicit one's use
  of Newton): ``_newton`` (exact solves), ``_unroll`` (unrolled gradient
  steps and their meta-gradients), ``_implicit`` (implicit meta-gradients);
  and ``_predict``, ``_adam``;
* Python side: ``_layout`` (task batches, problems, priors as the kernels'
  named tuples), ``_workspaces`` (the kernels' buffers), ``_calls`` (the
  entry points the methods call, and their result types).

Nothing in this package knows about scikit-learn objects.
"""

from ._cache import clear_stale_cache

# before any kernel module is imported, and loads from numba's cache
clear_stale_cache()
