"""Forked children of a process that ran numba's OpenMP threads.

GNU OpenMP is not fork-safe: a child forked after the parent launched its
thread pool hangs or is killed at its own first parallel region. numba picks
``tbb`` before ``omp`` when TBB is installed (``pip install tbb``), and then
nothing here applies; where it ran OpenMP, the child learns it at the fork
and skmeta's kernels run on one thread there (same results: the task-batched
kernels are bit-identical for any thread count), with one warning saying so.
"""

import os
import warnings

import numba

_state = {"serial": False, "warned": False}


def _after_fork_in_child():
    try:
        layer = numba.threading_layer()
    except ValueError:  # the parent never launched numba's threads
        return
    if layer == "omp":
        _state["serial"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def threads_unsafe():
    """Whether this process must not launch numba's threads (and say why,
    once)."""
    if not _state["serial"]:
        return False
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(
            "this process was forked from one that ran numba's OpenMP "
            "threading layer, which is not fork-safe; skmeta runs its kernels "
            "on one thread here (same results). To use threads in forked "
            "workers, install TBB (pip install tbb: numba then prefers it) or "
            "start them with the 'spawn' or 'forkserver' method.",
            RuntimeWarning, stacklevel=4)
    return True
