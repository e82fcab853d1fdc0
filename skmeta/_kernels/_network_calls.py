"""Python entry points of the network kernels (see ``_calls`` for the linear ones).

``_calls`` hands a :class:`~._network.NetworkProblem` here (importing this
module when it first meets one): the methods call the same functions and
classes, with the same results, whatever the base estimator. What both
share is in ``_launch``, so that this module does not import ``_calls``.

The unrolled inner loops run in the float type of the rows as given
(``TaskBatch.float_type``): float32 rows are trained in float32 arithmetic,
as PyTorch's default, which doubles the width of the vector instructions in
the dense products. The results (adapted parameters, losses, summed
meta-gradients) are float64 whatever the arithmetic, so that the outer
loop and its optimizer keep the meta-parameters in float64. The implicit
kernels compute in float64 always: their conjugate gradients stop at a
relative residual that float32 round-off would not let them reach.
"""

import numba
import numpy as np

from ._launch import UnrollResult, meta_batch_of, run_chunked
from ._layout import (
    BatchArrays,
    as_float_array,
    as_float_array_of,
    as_index_array,
    block_size_for,
    design_arrays,
    prior_arrays,
    transposed_batch,
)
from ._mlp import network_decision_rows
from ._mlp_implicit import (
    NetworkImplicitConfig,
    network_implicit_parallel,
    network_implicit_tasks,
)
from ._mlp_unroll import (
    FORWARD,
    SECOND_ORDER,
    NetworkOutputs,
    NetworkUnrollConfig,
    network_unroll_parallel,
    network_unroll_tasks,
)
from ._workspaces import (
    _PAD,
    TRANSPOSED_MAX_BYTES,
    network_chunks,
    network_layout,
    network_workspace,
)


def adapts_output_only(head, alpha):
    """Whether steps ``alpha`` leave every layer before ``head`` (the output
    layer's first parameter) still.

    That is ANIL's inner loop: the kernels then skip the hidden layers'
    passes that a zero step would multiply.
    """
    return head > 0 and not alpha[:head].any()


class NetworkUnroller:
    """``_calls.Unroller`` for a network: same calls, same results.

    ``auto_step`` must be False: a network's steps are the numbers in
    ``alpha`` (see ``_methods._bilevel``). Without ``step_gradient`` the
    kernels skip the meta-gradient with respect to ``alpha`` (only Meta-SGD
    learns the steps) and ``grad_alpha`` is None. The workspace keeps what
    ``mode`` reads again (``_layout_of``): every step's passes in second order
    only, and in ``FORWARD`` the rows go by blocks, so that adapting a task
    needs buffers of neither its size nor the number of steps.
    """

    def __init__(self, batch, problem, precision, *, auto_step, n_steps, mode,
                 n_sel, block=None, n_threads=1, transposed=True,
                 step_gradient=True):
        if auto_step:
            raise ValueError("networks take steps of given sizes, not 'auto'")
        block = block_size_for(n_sel) if block is None else int(block)
        d = problem.n_params
        n_blocks = max(1, -(-n_sel // block))
        self.n_sel = n_sel
        self.n_steps = int(n_steps)
        self.mode = int(mode)
        self.block = block
        self._head = problem.head
        self.dtype = dtype = self._arithmetic(batch)
        self._step_gradient = bool(step_gradient) and self._sums_gradients(mode)
        self._layout = layout = self._layout_of(batch, problem, dtype)
        # per-block meta-gradients: none to sum when only adapting
        n_grad_blocks = n_blocks if self._sums_gradients(mode) else 0
        self.n_chunks = network_chunks(batch, problem, layout, n_steps,
                                       n_threads, n_blocks,
                                       numba.config.NUMBA_NUM_THREADS,
                                       n_grad_blocks, dtype)
        blocks = np.zeros((2, n_grad_blocks, d + _PAD))
        self._out = NetworkOutputs(np.zeros((2, d)), np.empty((n_sel, d)),
                                   np.empty(n_sel), blocks[0], blocks[1])
        self._batch = batch.arrays_as(dtype)
        net = problem.arrays
        # lam2 in the kernels' float type too: a float64 factor would turn
        # the float32 loops over the parameters into float64 ones
        self._net = net._replace(l2w=net.l2w.astype(dtype),
                                 lam2=dtype(net.lam2))
        self._precision = np.asarray(precision, dtype=dtype)
        self._penalized = bool(net.lam2 != 0.0 and np.any(net.l2w)
                               or np.any(self._precision))
        self._XTb = (transposed_batch(batch, problem, TRANSPOSED_MAX_BYTES, dtype)
                     if transposed else np.empty(0, dtype=dtype))
        self._work = network_workspace(batch, problem, layout, self.n_chunks,
                                       dtype)

    def _arithmetic(self, batch):
        """The float type the kernels compute in: that of the rows."""
        return np.float32 if batch.float_type == np.float32 else np.float64

    def _sums_gradients(self, mode):
        return mode != FORWARD

    def _layout_of(self, batch, problem, dtype):
        """The ``_workspaces.NetworkLayout`` of ``self.mode``."""
        second_order = self.mode == SECOND_ORDER
        return network_layout(batch, problem, self.n_steps,
                              every_step=second_order,
                              step_gradient=self._step_gradient,
                              hvp=second_order, by_blocks=self.mode == FORWARD,
                              dtype=dtype)

    def _config(self, alpha):
        return NetworkUnrollConfig(
            alpha, self.n_steps, self.mode, self.block,
            adapts_output_only(self._head, alpha), self._XTb, self._penalized,
            self._step_gradient, self._layout.block_rows)

    _kernels = (network_unroll_tasks, network_unroll_parallel)

    def __call__(self, task_sel, seeds, n_query, theta0, alpha):
        if len(task_sel) != self.n_sel:
            raise ValueError(f"expected {self.n_sel} tasks, got {len(task_sel)}")
        meta_batch = meta_batch_of(task_sel, seeds, n_query)
        config = self._config(as_float_array_of(alpha, self.dtype))
        loss_sum = run_chunked(
            *self._kernels, self.n_chunks, self._batch, self._net,
            prior_arrays(theta0, self._precision, self.dtype), meta_batch,
            config, self._work, self._out)
        return UnrollResult.from_outputs(self._out, loss_sum,
                                         self._step_gradient)


class NetworkImplicit(NetworkUnroller):
    """Implicit meta-gradients (iMAML) of a network's meta-batches, bound once.

    Calls as :class:`NetworkUnroller` (``grad_alpha`` is None): each task's
    inner problem is solved by ``n_steps`` steps ``alpha``, the conjugate
    gradient stopped at relative residual ``cg_tol`` or ``cg_max``
    iterations (see ``_mlp_implicit``).
    """

    _kernels = (network_implicit_tasks, network_implicit_parallel)

    def _arithmetic(self, batch):
        return np.float64

    def _sums_gradients(self, mode):
        return True

    def _layout_of(self, batch, problem, dtype):
        # one step's passes, over all the support rows at once: the
        # conjugate gradient's Hessian-vector products are taken at the
        # last iterate only
        return network_layout(batch, problem, self.n_steps, every_step=False,
                              hvp=True, dtype=dtype)

    def __init__(self, batch, problem, precision, *, n_steps, n_sel, cg_tol,
                 cg_max, n_threads=1):
        super().__init__(batch, problem, precision, auto_step=False,
                         n_steps=n_steps, mode=0, n_sel=n_sel,
                         n_threads=n_threads, step_gradient=False)
        self.cg_tol = float(cg_tol)
        self.cg_max = int(cg_max)

    def _config(self, alpha):
        return NetworkImplicitConfig(
            alpha, self.n_steps, self.block,
            adapts_output_only(self._head, alpha), self._XTb, self._penalized,
            self.cg_tol, self.cg_max, self._layout.block_rows)


def network_decision_values(X, row_model, params, problem):
    """Output pre-activations of each row under network ``row_model[i]``."""
    Xd, data, indices, indptr, is_sparse = design_arrays(X)
    empty = np.empty(0)
    design = BatchArrays(Xd, data, indices, indptr, is_sparse, empty, empty,
                         np.empty(0, dtype=np.intp))
    return network_decision_rows(design, as_index_array(row_model),
                                 as_float_array(params), problem.arrays)
