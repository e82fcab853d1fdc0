"""One BLAS thread while any empirical Bayes fit of the process runs."""

import threading
from contextlib import contextmanager

import threadpoolctl

_lock = threading.Lock()
_state = {"fits": 0, "limits": None}


def _release_control():
    """Let any thread set OpenBLAS's thread count next.

    OpenBLAS built on pthreads has one thread count for the whole process;
    threadpoolctl (3.8 and later) lets only one thread change it at a time,
    the last to set it, until that thread's ``with`` block ends, and
    silently ignores the others. The limit here is set and lifted by
    whichever fit starts first and ends last, in different threads.
    """
    release = getattr(threadpoolctl.OpenBLASController,
                      "clear_controlling_thread", None)
    if release is not None:
        release(force=True)


@contextmanager
def one_blas_thread():
    """Hold BLAS to one thread until the last of the overlapping fits ends.

    BLAS's thread count is a setting of the whole process, and
    ``threadpool_limits`` restores on exit what it found on entry: two fits
    overlapping on threads (``GridSearchCV`` under joblib's threading
    backend) restored each other's limit, so the one ending last ran the
    rest of its outer loop on all BLAS threads (its result changed with the
    timing) and then left the process on one. Counted here, the limit is
    set by the first fit to start and lifted by the last to end.
    """
    with _lock:
        if _state["fits"] == 0:
            _release_control()
            _state["limits"] = threadpoolctl.threadpool_limits(
                limits=1, user_api="blas")
            _release_control()
        _state["fits"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["fits"] -= 1
            if _state["fits"] == 0:
                _release_control()
                _state["limits"].restore_original_limits()
                _release_control()
                _state["limits"] = None
