"""Bilevel meta-learners: iMAML, MAML / first-order MAML, Meta-SGD, Reptile.

All four learn the prior mean ``theta0`` (Meta-SGD also the per-parameter
inner step sizes ``alpha``) by stochastic optimization over meta-batches of
training tasks. Each meta-iteration samples ``meta_batch_size`` tasks, splits
each into a support and a query part at random (``query_fraction``), adapts
on the support with the method's inner procedure and scores the query:

* ``"maml"``: ``inner_steps`` (proximal) gradient steps from ``theta0``;
  exact second-order meta-gradient, or first order (``first_order=True``).
* ``"metasgd"``: the same with learned per-parameter step sizes.
* ``"imaml"``: the inner problem solved exactly; implicit meta-gradient.
* ``"reptile"``: ``inner_steps`` gradient steps on all of a task's data,
  then ``theta0 <- theta0 + meta_lr * mean(theta_t - theta0)``.

The meta-objective is the mean over the meta-batch of each task's query
loss, in the base estimator's own scaling and without penalty (the penalties
act in the inner problem); MAML, Meta-SGD and iMAML minimize it with Adam.
"""

from dataclasses import dataclass

import numpy as np
from joblib import effective_n_jobs
from sklearn.utils import check_random_state
from sklearn.utils.random import sample_without_replacement

from .._kernels._adam import adam_update
from .._kernels._batch import (
    Unroller,
    block_size_for,
    implicit,
    solve_inner,
    unroll,
)
from .._kernels._unroll import FIRST_ORDER, FORWARD, SECOND_ORDER
from ._inner import INNER_TOL, InnerSolver, map_task_chunks

BILEVEL_METHODS = ("imaml", "maml", "metasgd", "reptile")
DEFAULT_META_LR = {"imaml": 0.01, "maml": 0.01, "metasgd": 0.01, "reptile": 0.5}
DEFAULT_MAX_ITER = 500

_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999
_ADAM_EPS = 1e-8


class Adam:
    """Adam (Kingma & Ba, 2015) on one parameter array."""

    def __init__(self, learning_rate, shape):
        self.learning_rate = learning_rate
        self.m = np.zeros(shape)
        self.v = np.zeros(shape)
        self.t = 0

    def step(self, param, grad):
        """The updated parameters (a new array; ``param`` is left alone)."""
        self.t += 1
        param = np.array(param, dtype=np.float64)
        adam_update(param, np.ascontiguousarray(grad, dtype=np.float64), self.m,
                    self.v, float(self.learning_rate), _ADAM_BETA1, _ADAM_BETA2,
                    _ADAM_EPS, 1.0 - _ADAM_BETA1**self.t,
                    1.0 - _ADAM_BETA2**self.t)
        return param


def query_sizes(sizes, query_fraction):
    """Number of query rows of tasks with ``sizes`` rows.

    A task needs two rows to have both a support and a query row; with a
    single row it is all support. ``query_fraction=1`` makes every row a
    query row (no support: the tasks are scored at the prior mean).
    """
    sizes = np.asarray(sizes)
    if query_fraction >= 1.0:
        return sizes.copy()
    n_query = np.clip(np.rint(query_fraction * sizes), 1, np.maximum(sizes - 1, 1))
    return np.where(sizes >= 2, n_query, 0).astype(np.intp)


@dataclass(frozen=True)
class InnerProcedure:
    """How a task is adapted from the meta-knowledge, in training and after.

    ``alpha`` holds the per-parameter step sizes (multipliers of ``1 / L_t``
    when ``auto``).
    """

    method: str
    n_steps: int
    alpha: np.ndarray
    auto: bool

    def adapt(self, batch, problem, theta0, precision, *, n_jobs=None):
        """Parameters of every task of ``batch`` adapted on all its rows."""
        T = batch.n_tasks
        if self.method in ("proximal", "imaml"):
            with InnerSolver(batch, problem, n_jobs=n_jobs) as solver:
                return solver.solve(theta0, precision,
                                    np.tile(theta0, (T, 1))).theta
        block = block_size_for(T)

        def run(lo, hi):
            tasks = np.arange(lo, hi)
            return unroll(batch, problem, tasks, np.full(hi - lo, -1),
                          np.zeros(hi - lo), theta0, precision, self.alpha,
                          self.auto, self.n_steps, FORWARD, block).theta

        return np.concatenate(map_task_chunks(run, T, block, n_jobs, batch))


def pooled_start(batch, problem, max_tasks=64, max_iter=20):
    """The base estimator fitted on the pooled rows of up to ``max_tasks`` tasks.

    Gradient-based meta-learners start from it: the meta-optimizer's steps
    are then refinements, whatever the scale of the parameters. It is only a
    starting point: ``max_iter`` Newton steps bound its cost (the pooled data
    may be separable, with no finite optimum, when there is no penalty).
    """
    T = batch.n_tasks
    subset = np.unique(np.linspace(0, T - 1, min(T, max_tasks)).round().astype(int))
    pooled = batch.subset(subset)
    pooled = type(pooled)(pooled.Xd, pooled.data, pooled.indices, pooled.indptr,
                          pooled.is_sparse, pooled.y, pooled.sw,
                          np.array([0, pooled.n_rows], dtype=np.intp))
    d = problem.n_params
    return solve_inner(pooled, problem, np.zeros(d), np.zeros(d),
                       np.zeros((1, d)), max_iter=max_iter,
                       tol=INNER_TOL).theta[0]


@dataclass
class BilevelFit:
    theta0: np.ndarray
    procedure: InnerProcedure
    theta: np.ndarray
    n_iter: int
    meta_loss: np.ndarray


def numba_threads(n_jobs):
    """Threads for one meta-batch's kernel: ``n_jobs`` as joblib reads it."""
    return max(1, effective_n_jobs(n_jobs))


class MetaGradient:
    """Mean query loss of a meta-batch and its meta-gradients, for one fit.

    Binds what stays fixed over a fit (data, problem, prior precision,
    inner procedure, meta-batch size) once; each call then costs the kernel
    and little else. Calls return ``(loss, grad_theta0, grad_alpha,
    adapted)``; ``grad_alpha`` is ``None`` for iMAML, ``adapted`` the
    tasks' adapted parameters. Returned arrays are only valid until the
    next call.
    """

    def __init__(self, batch, problem, method, precision, *, n_sel, n_steps,
                 auto_step, first_order, n_threads=1):
        self.batch = batch
        self.problem = problem
        self.method = method
        self.precision = precision
        self.n_sel = n_sel
        self.block = block_size_for(n_sel)
        if method != "imaml":
            mode = FIRST_ORDER if first_order else SECOND_ORDER
            self._unroll = Unroller(batch, problem, precision, auto_step=auto_step,
                                    n_steps=n_steps, mode=mode, n_sel=n_sel,
                                    block=self.block, n_threads=n_threads)

    def __call__(self, task_sel, seeds, n_query, theta0, alpha, warm=None):
        B = self.n_sel
        if self.method == "imaml":
            start = np.tile(theta0, (B, 1)) if warm is None else warm
            res = implicit(self.batch, self.problem, task_sel, seeds, n_query,
                           theta0, self.precision, start, self.block)
            return (res.query_loss.mean(), res.grad_theta0_blocks.sum(axis=0) / B,
                    None, res.theta)
        res = self._unroll(task_sel, seeds, n_query, theta0, alpha)
        return (res.loss_sum / B, res.grad_theta0 / B, res.grad_alpha / B,
                res.theta)


def meta_gradient(batch, problem, method, task_sel, seeds, n_query, theta0,
                  precision, alpha, auto_step, n_steps, first_order, warm=None):
    """One call of a :class:`MetaGradient` (see there)."""
    run = MetaGradient(batch, problem, method, precision, n_sel=len(task_sel),
                       n_steps=n_steps, auto_step=auto_step,
                       first_order=first_order)
    return run(task_sel, seeds, n_query, theta0, alpha, warm)


def fit_bilevel(batch, problem, theta0, precision, *, method, inner_steps,
                inner_lr, first_order, meta_lr, meta_batch_size, max_iter,
                query_fraction, random_state, verbose=0, n_jobs=None):
    """Meta-train with a bilevel method, then adapt every training task."""
    rng = check_random_state(random_state)
    T = batch.n_tasks
    d = problem.n_params
    auto = isinstance(inner_lr, str) and inner_lr == "auto"
    alpha = np.full(d, 1.0 if auto else float(inner_lr))
    sizes = np.diff(batch.offsets)
    if method == "reptile":
        n_query = np.zeros(T, dtype=np.intp)  # Reptile adapts on all rows
    else:
        n_query = query_sizes(sizes, query_fraction)
    B = min(meta_batch_size, T)
    lr = DEFAULT_META_LR[method] if meta_lr is None else meta_lr
    theta0 = np.array(theta0, dtype=np.float64)
    theta_opt = Adam(lr, d)
    alpha_opt = Adam(lr, d)
    warm = np.tile(theta0, (T, 1)) if method == "imaml" else None
    n_threads = numba_threads(n_jobs)
    if method == "reptile":
        forward = Unroller(batch, problem, precision, auto_step=auto,
                           n_steps=inner_steps, mode=FORWARD, n_sel=B,
                           n_threads=n_threads)
    else:
        meta_grad = MetaGradient(batch, problem, method, precision, n_sel=B,
                                 n_steps=inner_steps, auto_step=auto,
                                 first_order=first_order, n_threads=n_threads)
    losses = np.empty(max_iter)
    for it in range(max_iter):
        task_sel = np.sort(sample_without_replacement(T, B, random_state=rng))
        seeds = rng.randint(0, 2**31 - 1, size=B)
        if method == "reptile":
            res = forward(task_sel, seeds, n_query[task_sel], theta0, alpha)
            displacement = (res.theta - theta0).mean(axis=0)
            theta0 = theta0 + lr * displacement
            losses[it] = float(np.linalg.norm(displacement))
        else:
            loss, g_theta0, g_alpha, adapted = meta_grad(
                task_sel, seeds, n_query[task_sel], theta0, alpha,
                None if warm is None else warm[task_sel])
            if warm is not None:
                warm[task_sel] = adapted
            theta0 = theta_opt.step(theta0, g_theta0)
            if method == "metasgd":
                alpha = alpha_opt.step(alpha, g_alpha)
            losses[it] = loss
        if verbose and (it + 1) % max(1, max_iter // 10) == 0:
            what = "mean step" if method == "reptile" else "query loss"
            print(f"[{method}] meta-iteration {it + 1}: {what} {losses[it]:.6g}")
    procedure = InnerProcedure(method, inner_steps, alpha, auto)
    theta = procedure.adapt(batch, problem, theta0, precision, n_jobs=n_jobs)
    return BilevelFit(theta0, procedure, theta, max_iter, losses)
