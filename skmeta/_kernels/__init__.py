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
  entry points the methods call, and their result types), ``_launch``
  (what ``_calls`` and ``_network_calls`` share: thread launches, the
  unrolled loops' result).
* Networks (multi-layer perceptrons): ``_network`` (their problem, the
  call layer's other problem type), ``_layers`` (dense layers and
  activations), ``_mlp`` (one task's forward, backward and
  Hessian-vector passes, the output layer's loss from ``_datafits``), the
  solvers ``_mlp_unroll`` (unrolled steps) and ``_mlp_implicit`` (iMAML,
  using ``_mlp_unroll``'s per-task steps), and ``_network_calls``, the
  entry points ``_calls`` hands a network to.

Nothing in this package knows about scikit-learn objects.
"""

from ._cache import clear_stale_cache

# before any kernel module is imported, and loads from numba's cache
clear_stale_cache()
