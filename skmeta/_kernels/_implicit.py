"""Task-batched implicit meta-gradients (iMAML) of exactly solved tasks.

Each selected task's rows are shuffled and split into support and query
(as in :mod:`._unroll`). The task's inner problem is solved exactly on the
support (the Newton solver of :mod:`._newton`), and the derivative of its
solution with respect to the prior mean follows from the implicit function
theorem: at the solution the gradient of ``J_t(theta) + 1/2 (theta -
theta0)^T Pi (theta - theta0)`` vanishes, so

    d theta_t / d theta0 = A_t^{-1} Pi,

with ``A_t`` the objective's Hessian at the solution (restricted to the
active set when an l1 penalty holds coordinates at zero). The meta-gradient
of the query loss ``Q_t`` is then ``Pi A_t^{-1} grad Q_t(theta_t)``, one
Cholesky solve per task (Rajeswaran et al., 2019, solve the same system by
conjugate gradient).
"""

from collections import namedtuple

from ._datafits import datafit_derivatives, loss_scale
from ._jit import borrowing_kernel
from ._linalg import cholesky_solve, symmetric_matvec
from ._newton import hessian_inverse, solve_task
from ._penalties import precision_times
from ._rows import TaskRows, gradient, predictor, shuffled_task

ImplicitWork = namedtuple("ImplicitWork", "buffers newton XTb")
ImplicitWork.__doc__ = """Buffers of ``implicit_tasks``: where tasks are gathered
(``_rows.TaskBuffers``), the Newton solver's (``_newton.NewtonWork``), and
the batch transposed (``_layout.transposed_batch``) or empty."""

ImplicitOutputs = namedtuple("ImplicitOutputs", "query_loss grad_theta0 n_iter")


@borrowing_kernel
def implicit_tasks(batch, problem, prior, meta_batch, theta, max_iter, tol,
                   block_size, work, out):
    """Exact support solves, query losses and implicit meta-gradients.

    ``theta[s]`` is the warm start and receives the support solution of task
    ``meta_batch.task_sel[s]``; block ``b`` of ``out.grad_theta0`` receives
    the sum over its tasks of the gradient of the query loss with respect to
    ``theta0``. ``work`` (an ``ImplicitWork``) is sized for the largest
    task: the kernel allocates nothing.
    """
    task_sel = meta_batch.task_sel
    n_sel = task_sel.shape[0]
    d = prior.theta0.shape[0]
    buffers = work.buffers
    XTb = work.XTb
    work = work.newton
    v = work.r
    x = work.shift
    out.grad_theta0[:] = 0.0
    for s in range(n_sel):
        b = s // block_size
        rows = shuffled_task(batch, task_sel[s], meta_batch.seeds[s],
                             problem.n_features, problem.fit_intercept, XTb,
                             buffers)
        n = rows.n
        nq = min(meta_batch.n_query[s], n)
        ns = n - nq
        support = TaskRows(rows.is_sparse, rows.XT, rows.data, rows.indices,
                           rows.indptr, rows.y, rows.sw, ns)
        th = theta[s]
        obj, loss, it, refreshed = solve_task(support, problem, prior, th,
                                              max_iter, tol, False, True, work,
                                              work.Ainv)
        out.n_iter[s] = it
        if nq == 0:
            out.query_loss[s] = 0.0
            continue
        scale_q = loss_scale(problem.mean_loss, rows.sw, ns, n)
        predictor(rows, ns, n, th, problem.n_outputs, problem.n_features,
                  problem.fit_intercept, work.Z)
        out.query_loss[s] = scale_q * datafit_derivatives(
            problem.code, rows.y, rows.sw, ns, n, work.Z, problem.n_outputs,
            work.G, work.U, True)
        for j in range(d):
            v[j] = 0.0
        gradient(rows, ns, n, work.G, scale_q, problem.n_outputs,
                 problem.n_features, problem.fit_intercept, v)
        if problem.lam1 > 0.0:
            # (nq > 0 here) a runtime flag rather than a literal True: the
            # same compiled specialization of hessian_inverse as _newton's
            hessian_inverse(work.A, work.L, work.W, work.Ainv, th, problem, d,
                            nq > 0)
            symmetric_matvec(work.Ainv, v, 1.0, x, d)
        else:
            cholesky_solve(work.L, v, x, d)
        precision_times(prior, x, v, d)
        grad_theta0 = out.grad_theta0[b]
        for i in range(d):
            grad_theta0[i] += v[i]
