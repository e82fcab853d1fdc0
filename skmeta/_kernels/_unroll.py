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
threads.
"""

import math

import numpy as np

from ._codes import LOGISTIC, MULTINOMIAL, POISSON
from ._datafits import datafit_derivatives
from ._jit import helper, kernel
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


@helper
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
def load_task_transposed(is_sparse, Xd, data, indices, indptr, y, sw, start, n,
                         seed, n_features, fit_intercept, rows, Xloc, XT,
                         ldata, lindices, lindptr, ly, lsw):
    """``load_task``, writing a dense task straight into the transposed ``XT``."""
    shuffled_rows(start, start + n, seed, rows)
    if is_sparse:
        gather_rows(is_sparse, Xd, data, indices, indptr, y, sw, rows, n,
                    n_features, Xloc, ldata, lindices, lindptr, ly, lsw)
        return
    for r in range(n):
        i = rows[r]
        ly[r] = y[i]
        lsw[r] = sw[i]
        for j in range(n_features):
            XT[j, r] = Xd[i, j]
    if fit_intercept:
        for r in range(n):
            XT[n_features, r] = 1.0


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
    for r in range(hi - lo):
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


@kernel
def unroll_tasks(Xd, data, indices, indptr, is_sparse, y, sw, offsets, task_sel,
                 seeds, n_query, code, n_outputs, n_features, fit_intercept,
                 mean_loss, lam2, lam1, l2w, l1w, theta0, prec_diag, prec_mat,
                 prec_full, alpha, auto_step, step_offset, n_steps, mode,
                 block_size,
                 theta_out, query_loss, grad_theta0, grad_alpha):
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
    """
    n_sel = task_sel.shape[0]
    d = theta0.shape[0]
    p1 = n_features + fit_intercept
    n_max, nnz_max = largest_task(is_sparse, indptr, offsets, task_sel)
    steps = max(n_steps, 1)
    rows, Xloc, ldata, lindices, lindptr, ly, lsw = local_task_buffers(
        is_sparse, Xd, data, indices, indptr, n_max, nnz_max, n_features)
    XT = np.empty((0 if is_sparse else p1, n_max))
    Z = np.empty((n_outputs, n_max))
    G = np.empty((n_outputs, n_max))
    U = np.empty((n_outputs, n_max))
    Ds = np.empty((steps, n_outputs, n_max))
    thetas = np.empty((steps + 1, d))
    grads = np.empty((steps, d))
    pre = np.empty((steps, d))
    q = np.empty(d)
    adj = np.empty(d)
    adj_u = np.empty(d)
    v = np.empty(d)
    hv = np.empty(d)
    direct = np.empty(d)
    vec = np.empty(p1)
    nxt = np.empty(p1)
    grad_theta0[:] = 0.0
    grad_alpha[:] = 0.0
    for s in range(n_sel):
        b = s // block_size
        t = task_sel[s]
        start = offsets[t]
        n = offsets[t + 1] - start
        nq = min(n_query[s], n)
        ns = n - nq
        load_task_transposed(is_sparse, Xd, data, indices, indptr, y, sw,
                             start, n, seeds[s], n_features, fit_intercept, rows,
                             Xloc, XT, ldata, lindices, lindptr, ly, lsw)
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
                is_sparse, XT, ldata, lindices, lindptr, ly, lsw, 0, ns, code,
                n_features, fit_intercept, vec, nxt, Z)
            step = 1.0 / smoothness if smoothness > 0.0 else 1.0

        # forward: the inner steps, keeping what the backward pass needs
        for j in range(d):
            thetas[0, j] = theta0[j]
        for k in range(n_steps):
            th = thetas[k]
            local_predictor(is_sparse, XT, ldata, lindices, lindptr, 0, ns, th,
                            n_outputs, n_features, fit_intercept, Z)
            datafit_derivatives(code, ly, lsw, 0, ns, Z, n_outputs, G, Ds[k],
                                False)
            transfer_gradient(th, theta0, prec_diag, prec_mat, prec_full, d, q)
            for j in range(d):
                grads[k, j] = lam2 * l2w[j] * th[j] + q[j]
            local_gradient(is_sparse, XT, ldata, lindices, lindptr, 0, ns, G,
                           scale_s, n_outputs, n_features, fit_intercept,
                           grads[k])
            for j in range(d):
                u = th[j] - step * alpha[j] * grads[k, j]
                pre[k, j] = u
                thr = step * alpha[j] * lam1 * l1w[j]
                if u > thr:
                    thetas[k + 1, j] = u - thr
                elif u < -thr:
                    thetas[k + 1, j] = u + thr
                else:
                    thetas[k + 1, j] = 0.0
        for j in range(d):
            theta_out[s, j] = thetas[n_steps, j]

        # the query loss and its gradient at the adapted parameters
        for j in range(d):
            adj[j] = 0.0
        if nq > 0:
            local_predictor(is_sparse, XT, ldata, lindices, lindptr, ns, n,
                            thetas[n_steps], n_outputs, n_features, fit_intercept,
                            Z)
            query_loss[s] = scale_q * datafit_derivatives(
                code, ly, lsw, ns, n, Z, n_outputs, G, U)
            local_gradient(is_sparse, XT, ldata, lindices, lindptr, ns, n, G,
                           scale_q, n_outputs, n_features, fit_intercept, adj)
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
            local_predictor(is_sparse, XT, ldata, lindices, lindptr, 0, ns, v,
                            n_outputs, n_features, fit_intercept, U)
            curvature_times(code, lsw, 0, ns, Ds[k], U, n_outputs, 1.0)
            local_gradient(is_sparse, XT, ldata, lindices, lindptr, 0, ns, U,
                           scale_s, n_outputs, n_features, fit_intercept, hv)
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
