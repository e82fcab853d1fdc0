"""Task-batched implicit meta-gradients (iMAML) of exactly solved tasks.

Each selected task's rows are shuffled and split into support and query
(as in :mod:`._unroll`). The task's inner problem is solved exactly on the
support, and the derivative of its solution with respect to the prior mean
follows from the implicit function theorem: at the solution the gradient of
``J_t(theta) + 1/2 (theta - theta0)^T Pi (theta - theta0)`` vanishes, so

    d theta_t / d theta0 = A_t^{-1} Pi,

with ``A_t`` the objective's Hessian at the solution (restricted to the
active set when an l1 penalty holds coordinates at zero). The meta-gradient
of the query loss ``Q_t`` is then ``Pi A_t^{-1} grad Q_t(theta_t)``, one
Cholesky solve per task (Rajeswaran et al., 2019, solve the same system by
conjugate gradient).

numba keeps the code of the helpers this kernel calls (from ``_newton``,
``_unroll``, ``_rows``, ``_datafits``) in this kernel's disk cache, and
checks only this file when loading it: after changing a helper, clear the
cache (``find skmeta -name "*.nb[ic]" -delete``).
"""

import numpy as np

from ._datafits import datafit_derivatives
from ._jit import kernel
from ._linalg import cholesky_solve
from ._newton import hessian_inverse, newton_workspace, solve_task
from ._rows import load_dense_block
from ._unroll import (
    largest_task,
    load_task,
    local_gradient,
    local_predictor,
    local_task_buffers,
)


@kernel
def implicit_tasks(Xd, data, indices, indptr, is_sparse, y, sw, offsets, task_sel,
                   seeds, n_query, code, n_outputs, n_features, fit_intercept,
                   mean_loss, lam2, lam1, l2w, l1w, theta0, prec_diag, prec_mat,
                   prec_full, theta, max_iter, tol, block_size, query_loss,
                   grad_theta0, out_iter):
    """Exact support solves, query losses and implicit meta-gradients.

    ``theta[s]`` is the warm start and receives the support solution of task
    ``task_sel[s]``; block ``b`` of ``grad_theta0`` receives the sum over its
    tasks of the gradient of the query loss with respect to ``theta0``.
    """
    n_sel = task_sel.shape[0]
    d = theta0.shape[0]
    n_max, nnz_max = largest_task(is_sparse, indptr, offsets, task_sel)
    rows, Xloc, ldata, lindices, lindptr, ly, lsw = local_task_buffers(
        is_sparse, Xd, data, indices, indptr, n_max, nnz_max, n_features)
    (XT, Z, Zt, G, Gt, D, Dt, U, a, w, A, L, W, Ainv, grad, delta, q, r,
     trial) = newton_workspace(is_sparse, n_outputs, n_max, d,
                               n_features + fit_intercept)
    v = np.empty(d)
    x = np.empty(d)
    grad_theta0[:] = 0.0
    for s in range(n_sel):
        b = s // block_size
        t = task_sel[s]
        start = offsets[t]
        n = offsets[t + 1] - start
        nq = min(n_query[s], n)
        ns = n - nq
        load_task(is_sparse, Xd, data, indices, indptr, y, sw, start, n,
                  seeds[s], n_features, rows, Xloc, ldata, lindices, lindptr, ly,
                  lsw)
        th = theta[s]
        obj, loss, it, refreshed = solve_task(
            is_sparse, Xloc, ldata, lindices, lindptr, ly, lsw, 0, ns, code,
            n_outputs, n_features, fit_intercept, mean_loss, lam2, lam1, l2w,
            l1w, theta0, prec_diag, prec_mat, prec_full, th, max_iter, tol,
            False, True, XT, Z, Zt, G, Gt, D, Dt, U, a, w, A, L, Ainv, grad,
            delta, q, r, trial)
        out_iter[s] = it
        if nq == 0:
            query_loss[s] = 0.0
            continue
        scale_q = 1.0
        if mean_loss:
            wq = 0.0
            for i in range(ns, n):
                wq += lsw[i]
            scale_q = 1.0 / wq if wq > 0.0 else 0.0
        # the query rows, loaded where the dense primitives read them
        if not is_sparse:
            load_dense_block(Xloc, ns, n, n_features, fit_intercept, XT)
            local_predictor(False, XT, ldata, lindices, lindptr, 0, nq, th,
                            n_outputs, n_features, fit_intercept, Z)
        else:
            local_predictor(True, XT, ldata, lindices, lindptr, ns, n, th,
                            n_outputs, n_features, fit_intercept, Z)
        query_loss[s] = scale_q * datafit_derivatives(code, ly, lsw, ns, n, Z,
                                                      n_outputs, G, U)
        for j in range(d):
            v[j] = 0.0
        if not is_sparse:
            local_gradient(False, XT, ldata, lindices, lindptr, 0, nq, G, scale_q,
                           n_outputs, n_features, fit_intercept, v)
        else:
            local_gradient(True, XT, ldata, lindices, lindptr, ns, n, G, scale_q,
                           n_outputs, n_features, fit_intercept, v)
        if lam1 > 0.0:
            # (nq > 0 here) a runtime flag rather than a literal True: the
            # same compiled specialization of hessian_inverse as _newton's
            hessian_inverse(A, L, W, Ainv, th, lam1, l1w, l2w, d, nq > 0)
            for i in range(d):
                acc = 0.0
                for j in range(d):
                    acc += Ainv[i, j] * v[j]
                x[i] = acc
        else:
            cholesky_solve(L, v, x, d)
        for i in range(d):
            if prec_full:
                acc = 0.0
                for j in range(d):
                    acc += prec_mat[i, j] * x[j]
            else:
                acc = prec_diag[i] * x[i]
            grad_theta0[b, i] += acc
