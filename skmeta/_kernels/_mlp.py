"""One task through a network: forward pass, gradient, Hessian-vector product.

The passes run over rows ``lo:lo + n`` of a task loaded by ``_rows`` (its
design without a row of ones: ``NetworkProblem.fit_intercept`` is False).
They keep, per layer ``l``, in arrays of shape ``(n_layers, n_max, width)``:

* ``acts[l]``: the outputs of hidden layer ``l`` (``acts[-1]``: the output
  layer's pre-activations, row-major);
* ``deltas[l]``: the derivative of the loss with respect to layer ``l``'s
  pre-activations, and ``dAs[l]`` with respect to hidden layer ``l``'s
  outputs.

The output layer's loss is a datafit of :mod:`._datafits` on the
pre-activations ``Z[k, r]``: its derivatives come from
``datafit_derivatives`` and its curvature from ``curvature_times``, exactly
as for a linear model, whose design is here the last hidden layer.

``body=False`` restricts a pass to the output layer (the parameters an ANIL
inner loop adapts): the forward pass then reuses the hidden outputs in
``acts``, the backward pass stops at the output layer, and the
Hessian-vector product takes a direction that is zero outside it.
"""

from collections import namedtuple

import numpy as np

from ._datafits import curvature_times
from ._jit import helper, kernel
from ._layers import (
    activate,
    bend,
    dense_backward,
    dense_forward,
    dense_gradient,
    input_forward,
    input_gradient,
    scale_by_slope,
    slope,
)

HvpWork = namedtuple("HvpWork", "rz ra rd U")
HvpWork.__doc__ = """Buffers of ``network_hvp``: the directional derivatives of
every layer's pre-activations (``rz``), hidden outputs (``ra``) and
back-propagated signals (``rd``), each ``(n_layers, n_max, width)``, and the
output layer's ``U`` (``(n_outputs, n_max)``)."""


@helper
def layer_forward(rows, lo, n, li, params, net, below, out, accumulate):
    """Layer ``li``'s ``below @ W + b`` into ``out`` (``+= below @ W`` with
    ``accumulate``); ``below`` is ignored for the first layer, fed by the rows."""
    fan_in = net.sizes[li]
    fan_out = net.sizes[li + 1]
    if li == 0:
        input_forward(rows, lo, n, fan_in, params, net.offsets[0], fan_out, out,
                      accumulate)
    else:
        dense_forward(below, n, fan_in, params, net.offsets[li], fan_out, out,
                      accumulate)


@helper
def layer_gradient(rows, lo, n, li, net, below, delta, out, with_bias):
    """Add layer ``li``'s ``below^T delta`` (and bias) terms to ``out``."""
    fan_in = net.sizes[li]
    fan_out = net.sizes[li + 1]
    if li == 0:
        input_gradient(rows, lo, n, fan_in, delta, fan_out, out, net.offsets[0],
                       with_bias)
    else:
        dense_gradient(below, n, fan_in, delta, fan_out, out, net.offsets[li],
                       with_bias)


@helper
def network_forward(rows, lo, n, theta, net, acts, Z, body):
    """Pre-activations of the output layer, ``Z[k, r]``, for rows ``lo:lo + n``."""
    L = net.sizes.shape[0] - 1
    first = 0 if body else L - 1
    for li in range(first, L):
        layer_forward(rows, lo, n, li, theta, net, acts[li - 1], acts[li], False)
        if li < L - 1:
            activate(net.activation, acts[li], n, net.sizes[li + 1])
    out = acts[L - 1]
    for k in range(net.n_outputs):
        for r in range(n):
            Z[k, r] = out[r, k]


@helper
def network_backward(rows, lo, n, theta, net, acts, G, scale, dAs, deltas, out,
                     body):
    """Add ``scale`` times the loss's gradient to ``out``.

    ``G[k, r]`` is the datafit's derivative with respect to ``Z[k, r]``
    (``datafit_derivatives``); ``acts`` are the forward pass's.
    """
    L = net.sizes.shape[0] - 1
    last = deltas[L - 1]
    for r in range(n):
        for k in range(net.n_outputs):
            last[r, k] = scale * G[k, r]
    stop = 0 if body else L - 1
    for li in range(L - 1, stop - 1, -1):
        layer_gradient(rows, lo, n, li, net, acts[li - 1], deltas[li], out, True)
        if li > stop:
            fan_in = net.sizes[li]
            dense_backward(deltas[li], n, net.sizes[li + 1], theta,
                           net.offsets[li], fan_in, dAs[li - 1], False)
            below = deltas[li - 1]
            for r in range(n):
                for i in range(fan_in):
                    below[r, i] = dAs[li - 1][r, i]
            scale_by_slope(net.activation, acts[li - 1], below, n, fan_in)


@helper
def network_hvp(rows, n, theta, v, net, passes, D, sw, scale, body, work, out):
    """Add ``scale`` times the datafit's Hessian (rows ``0:n``) times ``v`` to ``out``.

    ``passes`` is ``(acts, dAs, deltas)`` of the forward and backward passes
    at ``theta`` (with the same ``scale``), ``D`` the datafit's curvature
    there. Forward then backward propagation of the directional derivatives
    (Pearlmutter's R-operator); with ``body=False``, ``v`` must be zero
    outside the output layer.
    """
    acts, dAs, deltas = passes
    L = net.sizes.shape[0] - 1
    K = net.n_outputs
    act = net.activation
    first = 0 if body else L - 1
    rz, ra, rd = work.rz, work.ra, work.rd
    # directional derivatives of the pre-activations and outputs
    for li in range(first, L):
        layer_forward(rows, 0, n, li, v, net, acts[li - 1], rz[li], False)
        if li > first:
            dense_forward(ra[li - 1], n, net.sizes[li], theta, net.offsets[li],
                          net.sizes[li + 1], rz[li], True)
        if li < L - 1:
            m = net.sizes[li + 1]
            for r in range(n):
                for j in range(m):
                    ra[li][r, j] = slope(act, acts[li][r, j]) * rz[li][r, j]
    U = work.U
    for k in range(K):
        for r in range(n):
            U[k, r] = rz[L - 1][r, k]
    curvature_times(net.code, sw, 0, n, D, U, K, scale)
    for r in range(n):
        for k in range(K):
            rd[L - 1][r, k] = U[k, r]
    # ... and of the back-propagated signals
    for li in range(L - 1, -1, -1):
        layer_gradient(rows, 0, n, li, net, acts[li - 1], rd[li], out, True)
        if li > first:
            dense_gradient(ra[li - 1], n, net.sizes[li], deltas[li],
                           net.sizes[li + 1], out, net.offsets[li], False)
        if li == 0:
            break
        fan_in = net.sizes[li]
        fan_out = net.sizes[li + 1]
        below = rd[li - 1]
        dense_backward(rd[li], n, fan_out, theta, net.offsets[li], fan_in, below,
                       False)
        if li >= first:
            dense_backward(deltas[li], n, fan_out, v, net.offsets[li], fan_in,
                           below, True)
        curved = li - 1 >= first
        for r in range(n):
            for i in range(fan_in):
                a = acts[li - 1][r, i]
                value = slope(act, a) * below[r, i]
                if curved:
                    value += bend(act, a) * rz[li - 1][r, i] * dAs[li - 1][r, i]
                below[r, i] = value


# --------------------------------------------------------------------------
# predictions
# --------------------------------------------------------------------------
@kernel
def network_decision_rows(design, row_model, params, net):
    """Output pre-activations ``out[i, k]`` of row ``i`` under model ``row_model[i]``.

    ``design`` is a ``BatchArrays`` whose targets, weights and offsets are
    not used; ``params`` has one flat parameter vector per model.
    """
    n = row_model.shape[0]
    L = net.sizes.shape[0] - 1
    sizes = net.sizes
    offsets = net.offsets
    out = np.empty((n, net.n_outputs))
    h = np.empty((2, max(net.width, 1)))
    for i in range(n):
        th = params[row_model[i]]
        # the first layer, from row i
        fan_out = sizes[1]
        b0 = offsets[0] + sizes[0] * fan_out
        for j in range(fan_out):
            h[0, j] = th[b0 + j]
        if design.is_sparse:
            for e in range(design.indptr[i], design.indptr[i + 1]):
                x = design.data[e]
                base = offsets[0] + design.indices[e] * fan_out
                for j in range(fan_out):
                    h[0, j] += x * th[base + j]
        else:
            for f in range(sizes[0]):
                x = design.Xd[i, f]
                base = offsets[0] + f * fan_out
                for j in range(fan_out):
                    h[0, j] += x * th[base + j]
        cur = 0
        for li in range(1, L):
            activate(net.activation, h[cur:cur + 1], 1, sizes[li])
            fan_in = sizes[li]
            fan_out = sizes[li + 1]
            b0 = offsets[li] + fan_in * fan_out
            nxt = 1 - cur
            for j in range(fan_out):
                h[nxt, j] = th[b0 + j]
            for f in range(fan_in):
                a = h[cur, f]
                base = offsets[li] + f * fan_out
                for j in range(fan_out):
                    h[nxt, j] += a * th[base + j]
            cur = nxt
        for k in range(net.n_outputs):
            out[i, k] = h[cur, k]
    return out
