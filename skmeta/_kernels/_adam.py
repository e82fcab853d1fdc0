"""Adam's update as a kernel: one call per meta-iteration instead of the
dozen small NumPy operations (a few microseconds each) it would take."""

import math

from ._jit import kernel


@kernel
def adam_update(param, grad, m, v, learning_rate, beta1, beta2, eps, c1, c2):
    """One Adam step on ``param``, ``m`` and ``v``, in place.

    ``c1`` and ``c2`` are the bias corrections ``1 - beta ** t`` of step
    ``t`` (from 1), computed by the caller with Python's ``pow``: numba's
    power of an integer exponent rounds differently. The operations are
    NumPy's ``m_hat / (sqrt(v_hat) + eps)`` form, in the same order, so the
    result is the same to the last bit.
    """
    for j in range(param.shape[0]):
        m[j] = beta1 * m[j] + (1.0 - beta1) * grad[j]
        v[j] = beta2 * v[j] + (1.0 - beta2) * (grad[j] * grad[j])
        param[j] = param[j] - learning_rate * (m[j] / c1) / (
            math.sqrt(v[j] / c2) + eps)
