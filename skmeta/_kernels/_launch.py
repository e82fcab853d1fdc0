"""What the two call layers share: ``_calls`` (linear models) and
``_network_calls`` (networks) launch kernels on numba's threads the same
way, convert a meta-batch the same way, and return the same result type
for unrolled inner loops.

Kept apart from both so that ``_calls``, which hands a network's problem to
``_network_calls``, and ``_network_calls`` do not import each other.
"""

import threading
from dataclasses import dataclass

import numba
import numpy as np

from ._fork import threads_unsafe
from ._layout import as_index_array
from ._rows import MetaBatch

# numba's "workqueue" threading layer (its fallback where OpenMP and TBB are
# missing) aborts the process when two threads launch parallel kernels at
# once; skmeta's own worker threads therefore take turns.
_PARALLEL_LAUNCH = threading.Lock()


def meta_batch_of(task_sel, seeds, n_query):
    """The kernels' ``MetaBatch`` of a meta-batch given as array-likes."""
    return MetaBatch(as_index_array(task_sel),
                     np.ascontiguousarray(seeds, dtype=np.int64),
                     as_index_array(n_query))


def run_chunked(serial, parallel, n_chunks, *args):
    """``parallel(n_chunks, *args)`` on ``n_chunks`` of numba's threads.

    ``serial(0, 1, *args)``, all in one chunk (same results), for a single
    chunk, while another thread holds numba's thread pool, or in a process
    forked after its parent ran OpenMP threads (see ``_fork``).
    """
    if (n_chunks < 2 or threads_unsafe()
            or not _PARALLEL_LAUNCH.acquire(blocking=False)):
        return serial(0, 1, *args)
    try:
        previous = numba.get_num_threads()
        if previous == n_chunks:
            return parallel(n_chunks, *args)
        numba.set_num_threads(n_chunks)
        try:
            return parallel(n_chunks, *args)
        finally:
            numba.set_num_threads(previous)
    finally:
        _PARALLEL_LAUNCH.release()


@dataclass
class UnrollResult:
    """Adapted parameters and query losses; meta-gradients, per block and summed.

    ``loss_sum`` is the sum of ``query_loss``, ``grad_theta0`` and
    ``grad_alpha`` the sums over blocks (block order) of the ``*_blocks``.
    """

    theta: np.ndarray
    query_loss: np.ndarray
    grad_theta0_blocks: np.ndarray
    grad_alpha_blocks: np.ndarray
    loss_sum: float
    grad_theta0: np.ndarray
    grad_alpha: np.ndarray

    @classmethod
    def from_outputs(cls, out, loss_sum, step_gradient):
        """What an unrolled kernel wrote in ``out`` (``UnrollOutputs``).

        Without ``step_gradient`` the step sizes' meta-gradients are None.
        """
        d = out.sums.shape[1]
        return cls(out.theta, out.query_loss, out.grad_theta0[:, :d],
                   out.grad_alpha[:, :d] if step_gradient else None, loss_sum,
                   out.sums[0], out.sums[1] if step_gradient else None)

