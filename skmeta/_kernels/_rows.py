"""One task's rows: loading them, and the design-matrix products every solver uses.

A solver sees a task as a :data:`TaskRows`: its ``n`` rows, numbered from 0,
dense or sparse. Dense rows are held transposed in a float64 buffer ``XT``
of shape ``(p1, n_max)`` whose row ``p`` is ones when there is an intercept,
so every inner loop runs over contiguous memory (and vectorizes); sparse
rows are CSR arrays whose ``indptr`` has ``n + 1`` entries (pointing into
``data`` and ``indices``, which may be the whole batch's). ``y`` and ``sw``
hold the rows' targets and weights. The first ``m`` rows of a task are again
a ``TaskRows`` (the same arrays with ``n = m``): a support set is a prefix.

The products -- linear predictor, ``X~^T G`` and ``X~^T diag(a) X~`` with
``X~ = [X, 1]`` -- take a row range ``lo:hi`` of a task; per-row arrays
(``Z``, ``G``...) have shape ``(n_outputs, n_max)`` and hold row ``lo + r``
at position ``r``. Parameters are flat: output ``k`` owns
``theta[k * p1:(k + 1) * p1]``, the coefficients then the intercept.
"""

from collections import namedtuple

import numpy as np
from numba import config

from ._jit import (
    always_inlined,
    helper,
    specializing_helper,
    specializing_summing_helper,
    summing_helper,
)

TaskRows = namedtuple("TaskRows", "is_sparse XT data indices indptr y sw n")

TaskBuffers = namedtuple("TaskBuffers", "order XT data indices indptr y sw")
TaskBuffers.__doc__ = """Where ``shuffled_task`` gathers a task's rows, reordered."""

MetaBatch = namedtuple("MetaBatch", "task_sel seeds n_query")
MetaBatch.__doc__ = """A meta-batch: tasks ``task_sel[s]``, their rows shuffled with
``seeds[s]`` (kept in order when negative), the last ``n_query[s]`` of them
the query and the others the support."""


# --------------------------------------------------------------------------
# loading a task
# --------------------------------------------------------------------------
@helper
def load_dense_block(Xd, start, stop, n_features, fit_intercept, XT):
    """Copy rows ``start:stop`` of ``Xd`` into ``XT`` transposed."""
    n = stop - start
    for r in range(n):
        for j in range(n_features):
            XT[j, r] = Xd[start + r, j]
    if fit_intercept:
        for r in range(n):
            XT[n_features, r] = 1.0


@helper
def batch_task(batch, t, n_features, fit_intercept, XT):
    """Task ``t`` of ``batch`` in its stored order; dense rows go to ``XT``."""
    start = batch.offsets[t]
    stop = batch.offsets[t + 1]
    if not batch.is_sparse:
        load_dense_block(batch.Xd, start, stop, n_features, fit_intercept, XT)
    return TaskRows(batch.is_sparse, XT, batch.data, batch.indices,
                    batch.indptr[start:stop + 1], batch.y[start:stop],
                    batch.sw[start:stop], stop - start)


@helper
def shuffled_rows(start, stop, seed, order):
    """A permutation of the rows ``start:stop`` drawn from ``seed``.

    Fisher-Yates with a splitmix64 stream: cheap to seed per task, which
    keeps every task's split a function of its own seed only. A negative
    seed keeps the stored order.
    """
    n = stop - start
    for r in range(n):
        order[r] = start + r
    if seed < 0:
        return
    state = np.uint64(seed)
    for r in range(n - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = int(z % np.uint64(r + 1))
        order[r], order[j] = order[j], order[r]


if config.DISABLE_JIT:
    # numba's debug mode (NUMBA_DISABLE_JIT=1) runs this as Python, where
    # numpy warns of the uint64 wrap-around the hash is made of
    shuffled_rows = np.errstate(over="ignore")(shuffled_rows)


@helper
def shuffled_task(batch, t, seed, n_features, fit_intercept, XTb, buffers):
    """Task ``t`` of ``batch`` with its rows shuffled by ``seed``.

    The rows are gathered into ``buffers``, except that a dense task of a
    batch kept transposed (``XTb`` not empty: every task's ``(p1, n_t)``
    block, task after task, the block of the task starting at row ``start``
    beginning at ``p1 * start``) is read there in place when not shuffled
    (``seed < 0``), and gathered from there otherwise.
    """
    start = batch.offsets[t]
    n = batch.offsets[t + 1] - start
    p1 = n_features + fit_intercept
    order = buffers.order
    shuffled_rows(start, start + n, seed, order)
    y = buffers.y
    sw = buffers.sw
    for r in range(n):
        y[r] = batch.y[order[r]]
        sw[r] = batch.sw[order[r]]
    XT = buffers.XT
    indptr = buffers.indptr
    if batch.is_sparse:
        pos = 0
        indptr[0] = 0
        for r in range(n):
            i = order[r]
            for e in range(batch.indptr[i], batch.indptr[i + 1]):
                buffers.data[pos] = batch.data[e]
                buffers.indices[pos] = batch.indices[e]
                pos += 1
            indptr[r + 1] = pos
    elif XTb.shape[0] > 0:
        block = XTb[p1 * start:p1 * (start + n)].reshape((p1, n))
        if seed < 0:
            XT = block
        else:
            for j in range(p1):
                for r in range(n):
                    XT[j, r] = block[j, order[r] - start]
    else:
        for r in range(n):
            i = order[r]
            for j in range(n_features):
                XT[j, r] = batch.Xd[i, j]
        if fit_intercept:
            for r in range(n):
                XT[n_features, r] = 1.0
    return TaskRows(batch.is_sparse, XT, buffers.data, buffers.indices,
                    indptr, y, sw, n)


# --------------------------------------------------------------------------
# products with the design matrix
# --------------------------------------------------------------------------
@specializing_helper
@always_inlined
def predictor(rows, lo, hi, theta, n_outputs, n_features, fit_intercept, Z):
    """``Z[k, r - lo] = x~_r . theta_k`` for rows ``lo:hi``."""
    if rows.is_sparse:
        sparse_predictor(rows, lo, hi, theta, n_outputs, n_features,
                         fit_intercept, Z)
    else:
        dense_predictor(rows.XT, lo, hi, n_features + fit_intercept, theta,
                        n_outputs, Z)


@specializing_helper
@always_inlined
def gradient(rows, lo, hi, G, scale, n_outputs, n_features, fit_intercept, out):
    """Add ``scale * X~^T G_k`` (rows ``lo:hi``) to ``out``'s block ``k``."""
    if rows.is_sparse:
        sparse_gradient(rows, lo, hi, G, scale, n_outputs, n_features,
                        fit_intercept, out)
    else:
        dense_gradient(rows.XT, lo, hi, n_features + fit_intercept, G, scale,
                       n_outputs, out)


@helper
def gram(rows, lo, hi, a, w, n_features, fit_intercept, out, row0, col0,
         diagonal_block):
    """Add ``X~^T diag(a) X~`` (rows ``lo:hi``) to the block at ``out[row0, col0]``.

    Only the lower triangle is written for a diagonal block. ``w`` is a
    workspace of shape ``(2, n_max)``.
    """
    if rows.is_sparse:
        sparse_gram(rows, lo, hi, a, n_features, fit_intercept, out, row0, col0,
                    diagonal_block)
    else:
        dense_gram(rows.XT, lo, hi, n_features + fit_intercept, a, w, out, row0,
                   col0, diagonal_block)


@specializing_summing_helper
@always_inlined
def dense_predictor(XT, lo, hi, p1, theta, n_outputs, Z):
    """``Z[k, r - lo] = XT[:, r] . theta_k`` for loaded rows ``lo:hi``.

    Four coefficients per pass over the rows: with tasks of a few dozen rows
    the cost is in the passes (each reads and writes ``Z``), not in the
    multiply-adds. Indices are unsigned: numba then need not check them for
    negative values (wraparound), which would keep LLVM from vectorizing.
    """
    n = np.uintp(hi - lo)
    lo = np.uintp(lo)
    for k in range(n_outputs):
        base = k * p1
        j = 0
        if p1 < 4:
            for r in range(n):
                Z[k, r] = 0.0
        while j + 4 <= p1:
            t0 = theta[base + j]
            t1 = theta[base + j + 1]
            t2 = theta[base + j + 2]
            t3 = theta[base + j + 3]
            if j == 0:  # the first pass writes Z: no separate zeroing pass
                for r in range(n):
                    Z[k, r] = ((t0 * XT[0, lo + r] + t1 * XT[1, lo + r])
                               + (t2 * XT[2, lo + r] + t3 * XT[3, lo + r]))
            else:
                for r in range(n):
                    Z[k, r] += ((t0 * XT[j, lo + r] + t1 * XT[j + 1, lo + r])
                                + (t2 * XT[j + 2, lo + r]
                                   + t3 * XT[j + 3, lo + r]))
            j += 4
        while j < p1:
            t = theta[base + j]
            for r in range(n):
                Z[k, r] += t * XT[j, lo + r]
            j += 1


@specializing_summing_helper
@always_inlined
def dense_gradient(XT, lo, hi, p1, G, scale, n_outputs, out):
    """Add ``scale * X~^T G_k`` (loaded rows ``lo:hi``) to ``out``.

    ``G[k, r - lo]`` belongs to row ``r``. Four coefficients per pass over
    the rows, as in ``dense_predictor``.
    """
    n = np.uintp(hi - lo)
    lo = np.uintp(lo)
    for k in range(n_outputs):
        base = k * p1
        j = 0
        while j + 4 <= p1:
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for r in range(n):
                g = G[k, r]
                s0 += XT[j, lo + r] * g
                s1 += XT[j + 1, lo + r] * g
                s2 += XT[j + 2, lo + r] * g
                s3 += XT[j + 3, lo + r] * g
            out[base + j] += scale * s0
            out[base + j + 1] += scale * s1
            out[base + j + 2] += scale * s2
            out[base + j + 3] += scale * s3
            j += 4
        while j < p1:
            s = 0.0
            for r in range(n):
                s += XT[j, lo + r] * G[k, r]
            out[base + j] += scale * s
            j += 1


@summing_helper
def dense_gram(XT, lo, hi, p1, a, w, out, row0, col0, diagonal_block):
    """Add ``X~^T diag(a) X~`` (loaded rows ``lo:hi``) to a block of ``out``.

    This is the hot loop of the whole package: output rows go in pairs and
    columns in fours, so that each pass over the rows feeds eight sums from
    six loads.
    """
    n = np.uintp(hi - lo)
    lo = np.uintp(lo)
    for j1 in range(0, p1, 2):
        pair = j1 + 1 < p1
        for r in range(n):
            w[0, r] = a[r] * XT[j1, lo + r]
        if pair:
            for r in range(n):
                w[1, r] = a[r] * XT[j1 + 1, lo + r]
        # columns both rows need: up to j1 on a diagonal block
        last = j1 + 1 if diagonal_block else p1
        j2 = 0
        while j2 + 4 <= last:
            s00 = 0.0
            s01 = 0.0
            s02 = 0.0
            s03 = 0.0
            s10 = 0.0
            s11 = 0.0
            s12 = 0.0
            s13 = 0.0
            for r in range(n):
                x0 = XT[j2, lo + r]
                x1 = XT[j2 + 1, lo + r]
                x2 = XT[j2 + 2, lo + r]
                x3 = XT[j2 + 3, lo + r]
                u = w[0, r]
                v = w[1, r]
                s00 += u * x0
                s01 += u * x1
                s02 += u * x2
                s03 += u * x3
                s10 += v * x0
                s11 += v * x1
                s12 += v * x2
                s13 += v * x3
            out[row0 + j1, col0 + j2] += s00
            out[row0 + j1, col0 + j2 + 1] += s01
            out[row0 + j1, col0 + j2 + 2] += s02
            out[row0 + j1, col0 + j2 + 3] += s03
            if pair:
                out[row0 + j1 + 1, col0 + j2] += s10
                out[row0 + j1 + 1, col0 + j2 + 1] += s11
                out[row0 + j1 + 1, col0 + j2 + 2] += s12
                out[row0 + j1 + 1, col0 + j2 + 3] += s13
            j2 += 4
        while j2 < last:
            s0 = 0.0
            s1 = 0.0
            for r in range(n):
                x = XT[j2, lo + r]
                s0 += w[0, r] * x
                s1 += w[1, r] * x
            out[row0 + j1, col0 + j2] += s0
            if pair:
                out[row0 + j1 + 1, col0 + j2] += s1
            j2 += 1
        if diagonal_block and pair:
            s = 0.0
            for r in range(n):
                s += w[1, r] * XT[j1 + 1, lo + r]
            out[row0 + j1 + 1, col0 + j1 + 1] += s


@specializing_helper
def sparse_predictor(rows, lo, hi, theta, n_outputs, n_features, fit_intercept,
                     Z):
    """``Z[k, r - lo] = x_r . coef_k + intercept_k`` for CSR rows ``lo:hi``."""
    p1 = n_features + fit_intercept
    data = rows.data
    indices = rows.indices
    indptr = rows.indptr
    for i in range(lo, hi):
        r = i - lo
        for k in range(n_outputs):
            base = k * p1
            acc = theta[base + n_features] if fit_intercept else 0.0
            for e in range(indptr[i], indptr[i + 1]):
                acc += data[e] * theta[base + indices[e]]
            Z[k, r] = acc


@specializing_helper
def sparse_gradient(rows, lo, hi, G, scale, n_outputs, n_features, fit_intercept,
                    out):
    """Add ``scale * X~^T G_k`` for CSR rows ``lo:hi``."""
    p1 = n_features + fit_intercept
    data = rows.data
    indices = rows.indices
    indptr = rows.indptr
    for i in range(lo, hi):
        r = i - lo
        for k in range(n_outputs):
            g = scale * G[k, r]
            if g == 0.0:
                continue
            base = k * p1
            if fit_intercept:
                out[base + n_features] += g
            for e in range(indptr[i], indptr[i + 1]):
                out[base + indices[e]] += g * data[e]


@helper
def sparse_gram(rows, lo, hi, a, n_features, fit_intercept, out, row0, col0,
                diagonal_block):
    """Add ``X~^T diag(a) X~`` (CSR rows ``lo:hi``) to a block of ``out``.

    Column indices must be sorted within rows, so that pairs ``e2 <= e1`` are
    the lower triangle of a diagonal block.
    """
    p = n_features
    data = rows.data
    indices = rows.indices
    indptr = rows.indptr
    for i in range(lo, hi):
        ai = a[i - lo]
        if ai == 0.0:
            continue
        first = indptr[i]
        end = indptr[i + 1]
        for e1 in range(first, end):
            j1 = indices[e1]
            v1 = ai * data[e1]
            last = e1 + 1 if diagonal_block else end
            for e2 in range(first, last):
                out[row0 + j1, col0 + indices[e2]] += v1 * data[e2]
            if fit_intercept:
                out[row0 + p, col0 + j1] += v1
                if not diagonal_block:
                    out[row0 + j1, col0 + p] += v1
        if fit_intercept:
            out[row0 + p, col0 + p] += ai


# --------------------------------------------------------------------------
# products in the row space (n x n), for tasks with fewer rows than
# parameters (see _rowspace)
# --------------------------------------------------------------------------
@helper
def row_gram(rows, n, weights, n_features, fit_intercept, out):
    """``out[r, s] = sum_j x~_rj x~_sj weights[j]`` for rows ``0:n`` (symmetric)."""
    for r in range(n):
        for s in range(r + 1):
            out[r, s] = 0.0
    if rows.is_sparse:
        data = rows.data
        indices = rows.indices
        indptr = rows.indptr
        for r in range(n):
            for s in range(r + 1):
                # a merge of the two rows' sorted column indices
                acc = 0.0
                a = indptr[r]
                b = indptr[s]
                while a < indptr[r + 1] and b < indptr[s + 1]:
                    ja = indices[a]
                    jb = indices[b]
                    if ja == jb:
                        acc += data[a] * data[b] * weights[ja]
                        a += 1
                        b += 1
                    elif ja < jb:
                        a += 1
                    else:
                        b += 1
                out[r, s] = acc
    else:
        XT = rows.XT
        for j in range(n_features):
            wj = weights[j]
            for r in range(n):
                xr = XT[j, r] * wj
                for s in range(r + 1):
                    out[r, s] += xr * XT[j, s]
    if fit_intercept:
        wi = weights[n_features]
        for r in range(n):
            for s in range(r + 1):
                out[r, s] += wi
    for r in range(n):
        for s in range(r):
            out[s, r] = out[r, s]


@helper
def rows_combination(rows, n, coef, n_features, fit_intercept, out):
    """``out[r, :] = sum_s coef[r, s] x~_s`` for rows ``0:n``: ``coef @ X~``."""
    p1 = n_features + fit_intercept
    for r in range(n):
        for j in range(p1):
            out[r, j] = 0.0
    if rows.is_sparse:
        data = rows.data
        indices = rows.indices
        indptr = rows.indptr
        for s in range(n):
            for e in range(indptr[s], indptr[s + 1]):
                j = indices[e]
                v = data[e]
                for r in range(n):
                    out[r, j] += coef[r, s] * v
    else:
        XT = rows.XT
        for j in range(n_features):
            for r in range(n):
                acc = 0.0
                for s in range(n):
                    acc += coef[r, s] * XT[j, s]
                out[r, j] = acc
    if fit_intercept:
        for r in range(n):
            acc = 0.0
            for s in range(n):
                acc += coef[r, s]
            out[r, n_features] = acc


@helper
def rows_inner(rows, n, T, n_features, fit_intercept, out, diagonal):
    """``out[j, k] = sum_r x~_rj T[r, k]`` for rows ``0:n``: ``X~^T T``.

    With ``diagonal``, only ``out[0, j] = sum_r x~_rj T[r, j]``.
    """
    p1 = n_features + fit_intercept
    if diagonal:
        for j in range(p1):
            out[0, j] = 0.0
    else:
        for j in range(p1):
            for k in range(p1):
                out[j, k] = 0.0
    if rows.is_sparse:
        data = rows.data
        indices = rows.indices
        indptr = rows.indptr
        for r in range(n):
            for e in range(indptr[r], indptr[r + 1]):
                j = indices[e]
                v = data[e]
                if diagonal:
                    out[0, j] += v * T[r, j]
                else:
                    for k in range(p1):
                        out[j, k] += v * T[r, k]
    else:
        XT = rows.XT
        for j in range(n_features):
            if diagonal:
                acc = 0.0
                for r in range(n):
                    acc += XT[j, r] * T[r, j]
                out[0, j] = acc
            else:
                for r in range(n):
                    x = XT[j, r]
                    for k in range(p1):
                        out[j, k] += x * T[r, k]
    if fit_intercept:
        j = n_features
        if diagonal:
            acc = 0.0
            for r in range(n):
                acc += T[r, j]
            out[0, j] = acc
        else:
            for r in range(n):
                for k in range(p1):
                    out[j, k] += T[r, k]
