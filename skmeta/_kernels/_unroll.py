"""Task-batched unrolled inner loops and their exact meta-gradients.

For the gradient-based meta-learners (MAML, first-order MAML, Meta-SGD,
Reptile). Each selected task's rows are shuffled (a per-task seed) and split
into a support part, on which ``n_steps`` (proximal) gradient steps are taken
from the prior mean,

    u_k       = theta_k - s_t alpha * grad J_t(theta_k)
    theta_k+1 = soft_threshold(u_k, s_t alpha lam1 l1w),

with ``J_t`` the task's smooth objective on the support (datafit, l2 penalty,
transfer term toward ``theta0``), and a query part, on which the adapted
parameters are scored. ``alpha`` holds per-parameter step sizes and ``s_t``
a per-task scale: 1, or ``1 / L_t`` for ``inner_lr="auto"``, computed on the
rows the task adapts on (so the same in meta-training and in adaptation).

The meta-gradient of the query loss with respect to ``theta0`` and
``alpha`` is computed by back-propagating through the steps, with exact
Hessian-vector products ``X^T D X v`` (second order), or with the Hessian
terms dropped (first order). Sums over tasks are made per block of tasks,
in task order, so that they do not depend on how tasks are spread over
threads: ``unroll_tasks`` does one run of whole blocks (a chunk) or all of
them, ``unroll_tasks_parallel`` the chunks on numba's threads. The kernels
allocate nothing; ``_batch.Unroller`` makes their workspace once per fit.
"""

import math

import numpy as np

from ._codes import LOGISTIC, MULTINOMIAL, POISSON
from ._datafits import datafit_derivatives
from numba import prange

from ._jit import allocating_helper, borrowing_kernel, helper, parallel_kernel
from ._newton import transfer_gradient
from ._rows import (
    dense_gradient,
    dense_predictor,
    sparse_gradient,
    sparse_predictor,
)

FORWARD = 0
FIRST_ORDER = 1
SECOND_ORDER = 2
_POWER_ITERATIONS = 10


@helper
def shuffled_rows(start, stop, seed, rows):
    """A permutation of the rows ``start:stop`` drawn from ``seed``.

    Fisher-Yates with a splitmix64 stream: cheap to seed per task, which
    keeps every task's split a function of its own seed only.
    """
    n = stop - start
    for r in range(n):
        rows[r] = start + r
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
        rows[r], rows[j] = rows[j], rows[r]


@helper
def gather_rows(is_sparse, Xd, data, indices, indptr, y, sw, rows, n, n_features,
                Xloc, ldata, lindices, lindptr, ly, lsw):
    """Copy rows ``rows[:n]`` into local, contiguous arrays (dense or CSR)."""
    for r in range(n):
        ly[r] = y[rows[r]]
        lsw[r] = sw[rows[r]]
    if is_sparse:
        pos = 0
        lindptr[0] = 0
        for r in range(n):
            i = rows[r]
            for e in range(indptr[i], indptr[i + 1]):
                ldata[pos] = data[e]
                lindices[pos] = indices[e]
                pos += 1
            lindptr[r + 1] = pos
    else:
        for r in range(n):
            i = rows[r]
            for j in range(n_features):
                Xloc[r, j] = Xd[i, j]


@helper
def largest_task(is_sparse, indptr, offsets, task_sel):
    """Most rows, and most stored entries, among the selected tasks."""
    n_max = 1
    nnz_max = 1
    for s in range(task_sel.shape[0]):
        t = task_sel[s]
        n_max = max(n_max, offsets[t + 1] - offsets[t])
        if is_sparse:
            nnz_max = max(nnz_max, indptr[offsets[t + 1]] - indptr[offsets[t]])
    return n_max, nnz_max


@allocating_helper
def local_task_buffers(is_sparse, Xd, data, indices, indptr, n_max, nnz_max,
                       n_features):
    """Buffers that ``load_task`` fills: row order, features, targets, weights."""
    rows = np.empty(n_max, dtype=np.intp)
    Xloc = np.empty((0 if is_sparse else n_max, n_features), dtype=Xd.dtype)
    ldata = np.empty(nnz_max if is_sparse else 0, dtype=data.dtype)
    lindices = np.empty(nnz_max if is_sparse else 0, dtype=indices.dtype)
    lindptr = np.empty(n_max + 1 if is_sparse else 0, dtype=indptr.dtype)
    return rows, Xloc, ldata, lindices, lindptr, np.empty(n_max), np.empty(n_max)


@helper
def load_task(is_sparse, Xd, data, indices, indptr, y, sw, start, n, seed,
              n_features, rows, Xloc, ldata, lindices, lindptr, ly, lsw):
    """Shuffle a task's rows with ``seed`` and copy them to local buffers."""
    shuffled_rows(start, start + n, seed, rows)
    gather_rows(is_sparse, Xd, data, indices, indptr, y, sw, rows, n, n_features,
                Xloc, ldata, lindices, lindptr, ly, lsw)


@helper
def load_task_transposed(is_sparse, Xd, data, indices, indptr, XTb, y, sw,
                         start, n, seed, n_features, fit_intercept, rows, Xloc,
                         XT, ldata, lindices, lindptr, ly, lsw):
    """``load_task``, a dense task going to the transposed ``XT``.

    ``XTb``, when not empty, holds every task transposed (ones as the last
    row with an intercept), task after task: the ``(p1, n)`` block of the
    task at row ``start`` begins at ``p1 * start``. Unshuffled
    (``seed < 0``) the caller reads that block in place (True is returned)
    and only the targets and weights are copied; otherwise its columns are
    gathered into ``XT``.
    """
    p1 = n_features + fit_intercept
    shuffled_rows(start, start + n, seed, rows)
    if is_sparse:
        gather_rows(is_sparse, Xd, data, indices, indptr, y, sw, rows, n,
                    n_features, Xloc, ldata, lindices, lindptr, ly, lsw)
        return False
    for r in range(n):
        ly[r] = y[rows[r]]
        lsw[r] = sw[rows[r]]
    if XTb.shape[0] > 0:
        block = XTb[p1 * start:p1 * (start + n)].reshape((p1, n))
        if seed < 0:
            return True
        for j in range(p1):
            for r in range(n):
                XT[j, r] = block[j, rows[r] - start]
        return False
    for r in range(n):
        i = rows[r]
        for j in range(n_features):
            XT[j, r] = Xd[i, j]
    if fit_intercept:
        for r in range(n):
            XT[n_features, r] = 1.0
    return False


@helper
def local_predictor(is_sparse, XT, ldata, lindices, lindptr, lo, hi, theta,
                    n_outputs, n_features, fit_intercept, Z):
    if is_sparse:
        sparse_predictor(ldata, lindices, lindptr, lo, hi, theta, n_outputs,
                         n_features, fit_intercept, Z)
    else:
        dense_predictor(XT, lo, hi, n_features + fit_intercept, theta, n_outputs,
                        Z)


@helper
def local_gradient(is_sparse, XT, ldata, lindices, lindptr, lo, hi, G, scale,
                   n_outputs, n_features, fit_intercept, out):
    if is_sparse:
        sparse_gradient(ldata, lindices, lindptr, lo, hi, G, scale, n_outputs,
                        n_features, fit_intercept, out)
    else:
        dense_gradient(XT, lo, hi, n_features + fit_intercept, G, scale,
                       n_outputs, out)


@helper
def curvature_times(code, lsw, lo, hi, Dk, U, n_outputs, scale):
    """``U <- scale * (per-row curvature) U`` for rows ``lo:hi``, in place.

    ``Dk`` holds what ``datafit_derivatives`` wrote in ``D``: the weighted
    second derivative, or for the multinomial the class probabilities.
    """
    n = np.uintp(hi - lo)
    lo = np.uintp(lo)  # unsigned indices: see dense_predictor
    for r in range(n):
        if code == MULTINOMIAL:
            w = scale * lsw[lo + r]
            s = 0.0
            for k in range(n_outputs):
                s += Dk[k, r] * U[k, r]
            for k in range(n_outputs):
                U[k, r] = w * Dk[k, r] * (U[k, r] - s)
        else:
            U[0, r] *= scale * Dk[0, r]


@helper
def support_curvature(is_sparse, XT, ldata, lindices, lindptr, ly, lsw, lo, hi,
                      code, n_features, fit_intercept, vec, nxt, Z):
    """Largest eigenvalue of ``X_tilde^T diag(c) X_tilde`` over rows ``lo:hi``.


    ``c_i`` is the sample weight times a bound on the datafit's curvature
    (1 squared error, 1/4 logistic, 1/2 multinomial; for the Poisson
    deviance, whose curvature is unbounded, ``max(y_i, mean y, 1e-3)``, its
    value near the solution). Power iteration from a fixed start vector.
    """
    p1 = n_features + fit_intercept
    n = hi - lo
    if n == 0:
        return 0.0
    mean_y = 0.0
    for i in range(lo, hi):
        mean_y += ly[i]
    mean_y /= n
    for j in range(p1):
        vec[j] = 1.0 / math.sqrt(p1)
    value = 0.0
    for _ in range(_POWER_ITERATIONS):
        local_predictor(is_sparse, XT, ldata, lindices, lindptr, lo, hi, vec, 1,
                        n_features, fit_intercept, Z)
        for r in range(n):
            i = lo + r
            if code == MULTINOMIAL:
                c = 0.5
            elif code == LOGISTIC:
                c = 0.25
            elif code == POISSON:
                c = max(ly[i], mean_y, 1e-3)
            else:
                c = 1.0
            Z[0, r] *= c * lsw[i]
        for j in range(p1):
            nxt[j] = 0.0
        local_gradient(is_sparse, XT, ldata, lindices, lindptr, lo, hi, Z, 1.0, 1,
                       n_features, fit_intercept, nxt)
        norm = 0.0
        for j in range(p1):
            norm += nxt[j] * nxt[j]
        norm = math.sqrt(norm)
        if norm == 0.0:
            return 0.0
        value = norm
        for j in range(p1):
            vec[j] = nxt[j] / norm
    return value


@helper
def sum_blocks(query_loss, grad_theta0, grad_alpha, sums):
    """Sums over tasks and blocks, in order: the result of ``unroll_tasks``."""
    for j in range(sums.shape[1]):
        sums[0, j] = 0.0
        sums[1, j] = 0.0
    for b in range(grad_theta0.shape[0]):
        for j in range(sums.shape[1]):
            sums[0, j] += grad_theta0[b, j]
            sums[1, j] += grad_alpha[b, j]
    total = 0.0
    for s in range(query_loss.shape[0]):
        total += query_loss[s]
    return total


@borrowing_kernel
def unroll_tasks(c, n_chunks, sums, Xd, data, indices, indptr, is_sparse, y, sw,
                 offsets, task_sel, seeds, n_query, code, n_outputs, n_features,
                 fit_intercept, mean_loss, lam2, lam1, l2w, l1w, theta0,
                 prec_diag, prec_mat, prec_full, alpha, auto_step, step_offset,
                 n_steps, mode, block_size, XTb, rows_c, Xloc_c, ldata_c,
                 lindices_c, lindptr_c, ly_c, lsw_c, XT_c, Z_c, G_c, U_c, Ds_c,
                 thetas_c, grads_c, pre_c, work_c, power_c, theta_out,
                 query_loss, grad_theta0, grad_alpha):
    """Unrolled inner loops of the selected tasks, with meta-gradients.

    Task ``task_sel[s]`` has its rows shuffled with ``seeds[s]`` (no shuffle
    when negative); its last ``n_query[s]`` rows are the query, the others the
    support. ``theta_out[s]`` receives the adapted parameters and
    ``query_loss[s]`` the query loss there (in the estimator's scaling). The
    inner step on parameter ``j`` is ``alpha[j]``, times ``1 / L_t`` with
    ``auto_step``: ``L_t`` bounds the smoothness of the task's support
    objective (see ``support_curvature``; ``step_offset`` adds the penalty's
    and the transfer term's largest curvature). With
    ``mode`` FIRST_ORDER or SECOND_ORDER, block ``b`` of ``grad_theta0`` and
    ``grad_alpha`` receives the sum over its tasks of the gradients of the
    query loss with respect to ``theta0`` and ``alpha``.

    ``XTb`` is the batch transposed for ``load_task_transposed``, or empty.
    The tasks are cut into ``n_chunks`` runs of whole blocks; this call does
    run ``c``. With a single chunk (all tasks), it returns the sum of the
    query losses and ``sums`` receives the sums over blocks (in block
    order) of ``grad_theta0`` and ``grad_alpha``; otherwise it returns 0 and
    ``unroll_tasks_parallel`` sums once all chunks are done. The workspace
    arrays ``*_c`` have one slice per chunk, sized for the largest task (see
    ``_batch.Unroller``). Compiled without reference counting (see
    ``_jit``): it allocates nothing.
    """
    n_sel = task_sel.shape[0]
    n_blocks = (n_sel + block_size - 1) // block_size
    s_lo = min(n_sel, (c * n_blocks // n_chunks) * block_size)
    s_hi = min(n_sel, ((c + 1) * n_blocks // n_chunks) * block_size)
    rows = rows_c[c]
    Xloc = Xloc_c[c]
    ldata = ldata_c[c]
    lindices = lindices_c[c]
    lindptr = lindptr_c[c]
    ly = ly_c[c]
    lsw = lsw_c[c]
    XT = XT_c[c]
    Z = Z_c[c]
    G = G_c[c]
    U = U_c[c]
    Ds = Ds_c[c]
    thetas = thetas_c[c]
    grads = grads_c[c]
    pre = pre_c[c]
    work = work_c[c]
    power = power_c[c]

    d = theta0.shape[0]
    p1 = n_features + fit_intercept
    q = work[0]
    adj = work[1]
    adj_u = work[2]
    v = work[3]
    hv = work[4]
    direct = work[5]
    vec = power[0]
    nxt = power[1]
    for s in range(s_lo, s_hi):
        b = s // block_size
        if s == b * block_size:
            for j in range(d):
                grad_theta0[b, j] = 0.0
                grad_alpha[b, j] = 0.0
        t = task_sel[s]
        start = offsets[t]
        n = offsets[t + 1] - start
        nq = min(n_query[s], n)
        ns = n - nq
        # the task's rows are the columns of X
        X = XT
        if load_task_transposed(is_sparse, Xd, data, indices, indptr, XTb, y,
                                sw, start, n, seeds[s], n_features,
                                fit_intercept, rows, Xloc, XT, ldata, lindices,
                                lindptr, ly, lsw):
            X = XTb[p1 * start:p1 * (start + n)].reshape((p1, n))
        scale_s = 1.0
        scale_q = 1.0
        if mean_loss:
            ws = 0.0
            wq = 0.0
            for r in range(ns):
                ws += lsw[r]
            for r in range(ns, n):
                wq += lsw[r]
            scale_s = 1.0 / ws if ws > 0.0 else 0.0
            scale_q = 1.0 / wq if wq > 0.0 else 0.0
        step = 1.0
        if auto_step:
            smoothness = step_offset + scale_s * support_curvature(
                is_sparse, X, ldata, lindices, lindptr, ly, lsw, 0, ns, code,
                n_features, fit_intercept, vec, nxt, Z)
            step = 1.0 / smoothness if smoothness > 0.0 else 1.0

        # forward: the inner steps, keeping what the backward pass needs
        for j in range(d):
            thetas[0, j] = theta0[j]
        for k in range(n_steps):
            th = thetas[k]
            local_predictor(is_sparse, X, ldata, lindices, lindptr, 0, ns,
                            th, n_outputs, n_features, fit_intercept, Z)
            datafit_derivatives(code, ly, lsw, 0, ns, Z, n_outputs, G, Ds[k],
                                False)
            transfer_gradient(th, theta0, prec_diag, prec_mat, prec_full, d, q)
            for j in range(d):
                grads[k, j] = lam2 * l2w[j] * th[j] + q[j]
            local_gradient(is_sparse, X, ldata, lindices, lindptr, 0, ns,
                           G, scale_s, n_outputs, n_features, fit_intercept,
                           grads[k])
            for j in range(d):
                u = th[j] - step * alpha[j] * grads[k, j]
                pre[k, j] = u
                thr = step * alpha[j] * lam1 * l1w[j]
                # soft threshold, as selects rather than branches (the sign of
                # u is random); a NaN gives 0, and a negative threshold (a
                # learned step below 0) acts as it always has
                shrunk = (u - thr) if u > thr else 0.0
                thetas[k + 1, j] = (u + thr) if u < -thr else shrunk
        for j in range(d):
            theta_out[s, j] = thetas[n_steps, j]

        # the query loss and its gradient at the adapted parameters
        for j in range(d):
            adj[j] = 0.0
        if nq > 0:
            local_predictor(is_sparse, X, ldata, lindices, lindptr, ns, n, thetas[n_steps], n_outputs, n_features,
                            fit_intercept, Z)
            query_loss[s] = scale_q * datafit_derivatives(
                code, ly, lsw, ns, n, Z, n_outputs, G, U)
            local_gradient(is_sparse, X, ldata, lindices, lindptr, ns, n, G, scale_q, n_outputs, n_features,
                           fit_intercept, adj)
        else:
            query_loss[s] = 0.0
        if mode == FORWARD:
            continue

        # backward through the steps: adj is d(query loss)/d(theta_{k+1})
        for j in range(d):
            direct[j] = 0.0
        for k in range(n_steps - 1, -1, -1):
            for j in range(d):
                thr = step * alpha[j] * lam1 * l1w[j]
                active = abs(pre[k, j]) > thr
                adj_u[j] = adj[j] if active or thr == 0.0 else 0.0
                grad_alpha[b, j] -= step * adj_u[j] * grads[k, j]
                if active and thr > 0.0:
                    sign = 1.0 if pre[k, j] > 0.0 else -1.0
                    grad_alpha[b, j] -= adj[j] * sign * step * lam1 * l1w[j]
            if mode == FIRST_ORDER:
                for j in range(d):
                    adj[j] = adj_u[j]
                continue
            # exact second order: adj <- adj_u - H_k (step alpha adj_u), and
            # the transfer term's direct dependence on theta0
            for j in range(d):
                v[j] = step * alpha[j] * adj_u[j]
                hv[j] = lam2 * l2w[j] * v[j]
            local_predictor(is_sparse, X, ldata, lindices, lindptr, 0, ns,
                            v, n_outputs, n_features, fit_intercept, U)
            curvature_times(code, lsw, 0, ns, Ds[k], U, n_outputs, 1.0)
            local_gradient(is_sparse, X, ldata, lindices, lindptr, 0, ns,
                           U, scale_s, n_outputs, n_features, fit_intercept, hv)
            for i in range(d):
                pv = 0.0
                if prec_full:
                    for j in range(d):
                        pv += prec_mat[i, j] * v[j]
                else:
                    pv = prec_diag[i] * v[i]
                hv[i] += pv
                direct[i] += pv
            for j in range(d):
                adj[j] = adj_u[j] - hv[j]
        for j in range(d):
            grad_theta0[b, j] += adj[j] + direct[j]
    if n_chunks == 1:
        return sum_blocks(query_loss, grad_theta0, grad_alpha, sums)
    return 0.0


@parallel_kernel
def unroll_tasks_parallel(n_chunks, sums, *args):
    """``unroll_tasks`` with its chunks on numba's threads (same results).

    ``args`` are ``unroll_tasks``'s after ``sums``.
    """
    for c in prange(n_chunks):
        # prange's index is unsigned: as it is, it would compile unroll_tasks
        # a second time
        unroll_tasks(np.intp(c), n_chunks, sums, *args)
    return sum_blocks(args[-3], args[-2], args[-1], sums)
