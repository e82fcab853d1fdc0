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

import warnings
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from joblib import effective_n_jobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.random import sample_without_replacement

from .._kernels._adam import adam_update
from .._kernels._calls import ImplicitSolver, Unroller, solve_inner, unroll
from .._kernels._layout import block_size_for
from .._kernels._network_calls import NetworkImplicit
from .._kernels._unroll import FIRST_ORDER, FORWARD, SECOND_ORDER
from .._stack import user_stacklevel
from ._base import MetaFit, MetaMethod
from ._inner import INNER_TOL, map_task_chunks, solve_exactly

_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999
_ADAM_EPS = 1e-8
# conjugate-gradient iterations of iMAML's implicit gradient for networks
CG_MAX_ITER = 20
# how many times farther from its exact solution than it started a task's
# inner steps may end before they count as diverging (convergent steps never
# move away from it)
_DIVERGENCE_FACTOR = 10.0


def _adapted_steps(batch, problem, fitted, n_steps, block, tasks):
    """``n_steps`` inner steps of ``tasks`` from the fitted initialization."""
    n = len(tasks)
    return unroll(batch, problem, tasks, np.full(n, -1), np.zeros(n),
                  fitted.theta0, fitted.precision, fitted.inner_lr,
                  fitted.auto_step, n_steps, FORWARD, block).theta


def _adapted_chunk(batch, problem, fitted, n_steps, block, lo, hi):
    """:func:`_adapted_steps` of the tasks ``lo`` to ``hi``."""
    return _adapted_steps(batch, problem, fitted, n_steps, block,
                          np.arange(lo, hi))


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
    query row (no support: the tasks are scored at the minimizer of the
    penalties alone, the prior mean shrunk by the base penalty).
    """
    sizes = np.asarray(sizes)
    if query_fraction >= 1.0:
        return sizes.copy()
    n_query = np.clip(np.rint(query_fraction * sizes), 1, np.maximum(sizes - 1, 1))
    return np.where(sizes >= 2, n_query, 0).astype(np.intp)


# learned step sizes below this fraction of their start have collapsed
STEP_COLLAPSE = 1e-8


def parameter_scale(theta0):
    """The size of the parameters ``theta0`` (their root mean square), at
    least 1: the scale for which ``meta_lr``'s default is set."""
    theta0 = np.asarray(theta0, dtype=np.float64)
    return max(1.0, float(np.sqrt(np.mean(theta0 ** 2)))) if theta0.size else 1.0


def pooled_start(batch, problem, max_tasks=64, max_iter=20):
    """The base estimator fitted on the pooled rows of up to ``max_tasks`` tasks.

    Gradient-based meta-learners start from it: the meta-optimizer's steps
    are then refinements, whatever the scale of the parameters. It is only a
    starting point: ``max_iter`` Newton steps bound its cost (the pooled data
    may be separable, with no finite optimum, when there is no penalty).
    """
    T = batch.n_tasks
    subset = np.unique(np.linspace(0, T - 1, min(T, max_tasks)).round().astype(int))
    d = problem.n_params
    return solve_inner(batch.subset(subset).pooled(), problem, np.zeros(d),
                       np.zeros(d), np.zeros((1, d)), max_iter=max_iter,
                       tol=INNER_TOL).theta[0]


def numba_threads(n_jobs):
    """Threads for one meta-batch's kernel: ``n_jobs`` as joblib reads it."""
    return max(1, effective_n_jobs(n_jobs))


class UnrolledMetaGradient:
    """Mean query loss of a meta-batch after unrolled steps, and its gradients.

    Binds what stays fixed over a fit (data, problem, prior precision, inner
    procedure, meta-batch size) once; each call then costs the kernel and
    little else. Calls return ``(loss, grad_theta0, grad_alpha, adapted)``,
    ``adapted`` the tasks' adapted parameters; returned arrays are only
    valid until the next call. ``sums`` gives the sums over the tasks
    rather than the means. ``transposed`` keeps a transposed copy of a dense
    batch (see ``Unroller``). Without ``step_gradient``, ``grad_alpha`` is
    None (only Meta-SGD learns the step sizes).
    """

    def __init__(self, batch, problem, precision, *, n_sel, n_steps, auto_step,
                 mode, n_threads=1, transposed=True, step_gradient=True):
        self.n_sel = n_sel
        self._unroll = Unroller(batch, problem, precision, auto_step=auto_step,
                                n_steps=n_steps, mode=mode, n_sel=n_sel,
                                block=block_size_for(n_sel), n_threads=n_threads,
                                transposed=transposed, step_gradient=step_gradient)

    def sums(self, task_sel, seeds, n_query, theta0, alpha):
        res = self._unroll(task_sel, seeds, n_query, theta0, alpha)
        return res.loss_sum, res.grad_theta0, res.grad_alpha, res.theta

    def __call__(self, task_sel, seeds, n_query, theta0, alpha, warm=None):
        B = self.n_sel
        loss, g_theta0, g_alpha, theta = self.sums(task_sel, seeds, n_query,
                                                   theta0, alpha)
        return (loss / B, g_theta0 / B, None if g_alpha is None else g_alpha / B,
                theta)


class ImplicitMetaGradient:
    """Mean query loss of a meta-batch after exact solves, and its implicit gradient.

    As :class:`UnrolledMetaGradient`; ``grad_alpha`` is ``None``, and
    ``warm`` (the tasks' last support solutions, or ``None``) starts the
    solves.
    """

    def __init__(self, batch, problem, precision, *, n_sel):
        self.n_sel = n_sel
        self.block = block_size_for(n_sel)
        self._solve = ImplicitSolver(batch, problem, precision)

    def sums(self, task_sel, seeds, n_query, theta0, alpha, warm=None):
        """As a call, summed over the tasks (of any number)."""
        n = len(task_sel)
        start = np.tile(theta0, (n, 1)) if warm is None else warm
        block = self.block if n == self.n_sel else block_size_for(n)
        res = self._solve(task_sel, seeds, n_query, theta0, start, block)
        return (res.query_loss.sum(), res.grad_theta0_blocks.sum(axis=0), None,
                res.theta)

    def __call__(self, task_sel, seeds, n_query, theta0, alpha, warm=None):
        B = self.n_sel
        loss, g_theta0, _, theta = self.sums(task_sel, seeds, n_query, theta0,
                                             alpha, warm)
        return loss / B, g_theta0 / B, None, theta


@dataclass
class MetaContribution:
    """Sums over some of a meta-batch's tasks, from which the meta-step is made.

    ``grad_theta0`` is the summed gradient of the query losses with respect
    to the prior mean (Reptile: the summed displacement of the adapted
    parameters from it), ``grad_alpha`` that with respect to the step sizes
    (or None). Contributions of disjoint sets of tasks add up to that of
    their union (to round-off in the order of the sums): a meta-batch spread
    over several holders of tasks is the sum of their contributions.
    """

    n_tasks: int
    loss: float
    grad_theta0: np.ndarray
    grad_alpha: object = None

    @classmethod
    def of(cls, n_tasks, loss, grad_theta0, grad_alpha=None):
        # the kernels' outputs are overwritten by their next call: copies
        return cls(int(n_tasks), float(loss), np.array(grad_theta0, copy=True),
                   None if grad_alpha is None else np.array(grad_alpha, copy=True))

    def __add__(self, other):
        grad_alpha = (None if self.grad_alpha is None
                      else self.grad_alpha + other.grad_alpha)
        return MetaContribution(self.n_tasks + other.n_tasks,
                                self.loss + other.loss,
                                self.grad_theta0 + other.grad_theta0, grad_alpha)


class _PerSize:
    """A kernel bound to a number of tasks, made once per number asked for.

    A fit in memory asks for one number (the meta-batch size); a holder of
    some of the tasks (a Dask partition) for as many as the meta-batches
    give it.
    """

    def __init__(self, make):
        self._make = make
        self._made = {}

    def __call__(self, n):
        if n not in self._made:
            self._made[n] = self._make(n)
        return self._made[n]


class _Bilevel(MetaMethod):
    """The meta-training loop shared by the bilevel methods.

    Subclasses make the sums over a meta-batch's tasks (``meta_gradient``),
    the meta-optimizer's step from them (``meta_step``) and say how a task is
    adapted (``adapt``).
    """

    # (random_effects is read to refuse it, see check: not "ignored")
    parameters = frozenset(
        {"meta_lr", "meta_batch_size", "query_fraction", "random_state",
         "adapt_layers", "random_effects"})
    networks = True
    default_max_iter = 500
    default_meta_lr = 0.01
    #: whether the step sizes are meta-learned (Meta-SGD)
    learns_steps = False
    #: whether the inner procedure takes step sizes (``inner_lr``)
    steps = True

    def takes_steps(self, problem):
        """Whether tasks adapt by gradient steps (``inner_steps``, ``inner_lr``)."""
        return self.steps

    def check_problem(self, problem):
        super().check_problem(problem)
        if (problem.is_network and self.takes_steps(problem)
                and isinstance(self.settings.inner_lr, str)):
            raise ValueError(
                f"method={self.name!r} with a network needs a number for "
                "inner_lr: inner_lr='auto' steps by 1 / L_t, a bound on the "
                "smoothness of a task's objective, and a network's objective "
                "has none. The step applies to the summed loss, as the "
                "network's alpha does: Finn et al.'s step 0.01 on the mean "
                "squared error of 10 rows is inner_lr=0.002 here."
            )

    def check(self, settings):
        if settings.prior not in ("auto", "isotropic") or not (
                settings.random_effects is None
                or isinstance(settings.random_effects, str)) or (
                settings.prior_df is not None) or not (
                isinstance(settings.n_prior_components, str)):
            raise ValueError(
                f"method={self.name!r} meta-learns the prior mean (and, for "
                "'metasgd', the step sizes) by gradient, under an isotropic "
                "transfer term; a structured prior (prior='diagonal', 'full', "
                "'lowrank', 'mixture', random_effects, n_prior_components, "
                "a Student-t prior_df) is learned by empirical Bayes with "
                "method='proximal' only. Use prior='auto' or 'isotropic', or "
                "method='proximal'."
            )

    def transfer_strength(self, batch, problem, prior_mean):
        """``gamma``, or with ``gamma="auto"`` its empirical-Bayes estimate.

        The strength of an isotropic prior centred on the prior mean, learned
        by ``method="proximal"`` on the same tasks: how strongly the tasks'
        data say that their parameters cluster. The prior is the transfer
        term alone, as this method's is, beside the base penalty (proximal's
        own learned prior includes that penalty and is centred elsewhere; its
        transfer part would be too weak here). A network has no such
        estimate (its tasks' problems are not convex): ``"auto"`` is then 0,
        MAML's own formulation, where the meta-learned starting point and the
        finite number of steps from it are the transfer (``"imaml"`` refuses
        it: see ``IMAML.check_problem``).
        """
        s = self.settings
        if s.gamma != "auto":
            return float(s.gamma)
        if problem.is_network:
            return 0.0
        from ._proximal import Proximal

        # the proximal method's own iteration count, not the meta-iterations
        settings = replace(s, prior="isotropic", random_effects=None,
                           max_iter=None)
        proximal = Proximal(settings)
        proximal.count_penalty = False
        return proximal.fit(batch, problem, prior_mean).gamma

    def used_parameters(self, network):
        # gamma="auto" is the proximal method's empirical-Bayes strength,
        # learned to tol (see transfer_strength)
        used = super().used_parameters(network)
        if not network and self.settings.gamma == "auto":
            used = used | {"tol"}
        return used

    def single_task_fit(self, fitted, problem):
        s = self.settings
        auto = self.steps and isinstance(s.inner_lr, str)
        alpha = np.full(problem.n_params, 1.0 if auto or not self.steps
                        else float(s.inner_lr))
        return replace(fitted, inner_lr=alpha if self.steps else None,
                       inner_steps=int(s.inner_steps) if self.steps else 0,
                       auto_step=auto)

    @property
    def meta_lr(self):
        lr = self.settings.meta_lr
        return self.default_meta_lr if lr is None else float(lr)

    def query_rows(self, sizes):
        """Number of query rows of each training task."""
        return query_sizes(sizes, self.settings.query_fraction)

    def fit(self, batch, problem, prior_mean=None, *, single_task=False):
        s = self.settings
        self.check(s)
        rng = check_random_state(s.random_state)
        T = batch.n_tasks
        d = problem.n_params
        steps = self.takes_steps(problem)
        auto = steps and isinstance(s.inner_lr, str)
        alpha = np.full(d, 1.0 if auto or not steps else float(s.inner_lr))
        if problem.is_network and s.adapt_layers == "output":
            # ANIL: zero steps leave the hidden layers where the prior has
            # them (a linear model is its output layer: all of it adapts)
            alpha[:problem.head] = 0.0
        start_alpha = alpha.copy()
        n_query = self.query_rows(np.diff(batch.offsets))
        B = min(s.meta_batch_size, T)
        gamma = self.transfer_strength(batch, problem, prior_mean)
        precision = gamma * np.ones(d)
        # the meta-optimizer starts from the given prior mean, or from the
        # pooled fit (its steps are then refinements, whatever the scale)
        theta0 = np.array(pooled_start(batch, problem) if prior_mean is None
                          else prior_mean, dtype=np.float64)
        # tasks held elsewhere (partitions of a Dask collection) bring their
        # own sums over each meta-batch's tasks and their own adaptation
        distributed = getattr(batch, "meta_gradient", None)
        if distributed is None:
            contribute = self.meta_gradient(
                batch, problem, precision, auto, theta0, B,
                n_threads=numba_threads(s.n_jobs))
        else:
            contribute = distributed(self, problem, precision, auto, theta0, B)
        step = self.meta_step(problem, theta0)
        max_iter = self.max_iter
        losses = np.empty(max_iter)
        n_iter = max_iter
        for it in range(max_iter):
            task_sel = np.sort(sample_without_replacement(T, B, random_state=rng))
            seeds = rng.randint(0, 2**31 - 1, size=B)
            new_theta0, new_alpha, losses[it] = step(theta0, alpha, contribute(
                task_sel, seeds, n_query[task_sel], theta0, alpha))
            if not (np.isfinite(losses[it]) and np.all(np.isfinite(new_theta0))
                    and np.all(np.isfinite(new_alpha))):
                # keep the last finite meta-knowledge rather than a NaN model
                what = (f"the {self.progress}" if not np.isfinite(losses[it])
                        else "the prior mean" if not np.all(np.isfinite(
                            new_theta0)) else "the step sizes")
                warnings.warn(
                    f"method={self.name!r} diverged at meta-iteration {it + 1}: "
                    f"{what} is not finite. Stopped there, with the last "
                    "finite prior; lower meta_lr (or inner_lr).",
                    ConvergenceWarning, stacklevel=3)
                n_iter = it
                break
            theta0, alpha = new_theta0, new_alpha
            if s.verbose and (it + 1) % max(1, max_iter // 10) == 0:
                print(f"[{self.name}] meta-iteration {it + 1}: {self.progress} "
                      f"{losses[it]:.6g}")
        if self.learns_steps:
            self._warn_if_steps_collapse(alpha, start_alpha)
        fitted = MetaFit(theta0, np.ones(d), gamma, None, n_iter,
                         inner_lr=alpha if steps else None,
                         inner_steps=int(s.inner_steps) if steps else 0,
                         auto_step=auto)
        fitted.theta = (self.adapt(batch, problem, fitted) if distributed is None
                        else batch.adapt_all(self, problem, fitted))
        return fitted

    progress = "query loss"

    def meta_gradient(self, batch, problem, precision, auto, start, n_sel, *,
                      n_threads=1, transposed=True):
        """``contribute(task_sel, seeds, n_query, theta0, alpha)``: the
        :class:`MetaContribution` of some of ``batch``'s tasks.

        ``start`` is the prior mean meta-training starts from, ``n_sel`` the
        number of tasks of a meta-batch (calls may take fewer). The
        contribution of a meta-batch is the sum of those of any partition of
        its tasks.
        """
        raise NotImplementedError

    def meta_step(self, problem, start):
        """``step(theta0, alpha, contribution)``: one meta-iteration's update,
        from the contribution of the whole meta-batch, meta-training having
        started from the prior mean ``start``.

        Returns the new ``(theta0, alpha, progress)``; the step keeps the
        meta-optimizer's state between calls.
        """
        d = problem.n_params
        theta_opt = Adam(self.meta_lr, d)
        alpha_opt = (Adam(self.meta_lr / parameter_scale(start), d)
                     if self.learns_steps else None)

        def step(theta0, alpha, total):
            B = total.n_tasks
            theta0 = theta_opt.step(theta0, total.grad_theta0 / B)
            if alpha_opt is not None:
                # Adam on log(alpha): the step sizes stay positive (a negative
                # one would climb the task's loss) and move by relative amounts,
                # whatever their scale (a network's inner_lr, or multiples of
                # 1 / L_t); d loss / d log(alpha) = alpha * g_alpha. The zero
                # steps of ANIL's hidden layers stay zero. Its rate is
                # meta_lr over the prior mean's scale: meta_lr is set in the
                # coefficients' units, a logarithm has none (at the prior
                # mean's rate, meta_lr=0.5 for coefficients of size 50 moved
                # the logarithms by 0.5 an iteration, and a few meta-batches
                # of one sign took steps to a thousandth).
                # The logarithms are kept here, not read back from alpha: an
                # exp that underflows to 0 would otherwise read as one of
                # ANIL's zero steps and stay there.
                if not logs:
                    logs["moving"] = alpha > 0
                    logs["value"] = np.log(np.where(logs["moving"], alpha, 1.0))
                moving = logs["moving"]
                logs["value"] = alpha_opt.step(
                    logs["value"],
                    np.where(moving, alpha * total.grad_alpha / B, 0.0))
                alpha = np.where(moving, np.exp(logs["value"]), 0.0)
            return theta0, alpha, total.loss / B

        logs = {}
        return step

    def _warn_if_steps_collapse(self, alpha, start):
        """Warn where learned step sizes fell below ``STEP_COLLAPSE`` of
        their start: those coefficients no longer adapt."""
        collapsed = (start > 0) & (alpha < STEP_COLLAPSE * start)
        if np.any(collapsed):
            warnings.warn(
                f"method={self.name!r}: the learned step sizes inner_lr_ of "
                f"{int(collapsed.sum())} of {int(np.sum(start > 0))} "
                f"parameters fell below {STEP_COLLAPSE:g} of their start "
                f"(smallest {float(np.min(alpha[collapsed] / start[collapsed])):.3g} "
                "of it): new tasks no longer adapt those parameters. Lower "
                "meta_lr.", ConvergenceWarning, stacklevel=user_stacklevel())

    def adapt(self, batch, problem, fitted, labels=None):
        """The inner procedure's steps from ``fitted``, on all of each task's rows."""
        T = batch.n_tasks
        block = block_size_for(T)

        # a function of the module, not a closure: process backends
        # (multiprocessing) pickle what they run with the standard pickle
        theta = np.concatenate(map_task_chunks(
            partial(_adapted_chunk, batch, problem, fitted, fitted.inner_steps,
                    block), T, block, self.settings.n_jobs, batch))
        if not problem.is_network:
            self._warn_if_steps_diverge(batch, problem, fitted, theta, labels)
        elif fitted.inner_steps > 1:
            self._warn_if_steps_grow(
                fitted, theta,
                lambda tasks: _adapted_steps(batch, problem, fitted, 1, block,
                                             tasks))
        return theta

    @property
    def _steps_named(self):
        """The inner step sizes, as a divergence warning names them."""
        return ("the learned step sizes inner_lr_" if self.learns_steps
                else f"inner_lr={self.settings.inner_lr!r}")

    def _warn_if_steps_grow(self, fitted, theta, first_step):
        """Warn where a network's inner steps grew as diverging steps do.

        A network's inner problem has no exact solution to measure against
        (see ``_warn_if_steps_diverge``); but gradient steps too long for the
        curvature grow geometrically, where steps that converge shrink or
        stay of a size. A task counts as diverging where its ``k`` steps
        moved it more than ``_DIVERGENCE_FACTOR * k`` times its first step
        (weights of 1e17 after five steps, without a word, before).
        ``first_step(tasks)`` takes one step for the tasks given: only for
        those whose steps moved them by more than a tenth of the start's
        size (one step more for every task was a fifth more time at five
        steps), as a run that moved less is not yet meaningless.
        """
        k = int(fitted.inner_steps)
        with np.errstate(over="ignore", invalid="ignore"):
            start = np.broadcast_to(fitted.theta0, theta.shape)
            size = 1.0 + np.linalg.norm(start, axis=1)
            moved = np.linalg.norm(theta - start, axis=1)
            far = np.flatnonzero(~(moved <= 0.1 * size))
        if far.size == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            step = np.full(len(theta), np.inf)
            step[far] = np.linalg.norm(first_step(far) - start[far], axis=1)
            diverged = ~(moved <= _DIVERGENCE_FACTOR * k * step + 1e-12 * size)
        if np.any(diverged):
            lr = self._steps_named
            warnings.warn(
                f"method={self.name!r}: the network's inner gradient steps "
                f"diverge on {int(diverged.sum())} of {len(diverged)} "
                f"task(s): their {k} steps moved the weights "
                f"{float(np.nanmax(np.where(diverged, moved, 0.0))):.3g} "
                f"where the first moved them "
                f"{float(np.nanmax(np.where(diverged, step, 0.0))):.3g}, as "
                f"steps too long for the curvature grow. {lr} is too long "
                "for these tasks, and their models are meaningless; use a "
                "smaller inner_lr.",
                ConvergenceWarning, stacklevel=4)

    def _warn_if_steps_diverge(self, batch, problem, fitted, theta, labels):
        """Warn where the inner steps moved a task away from its optimum.

        Gradient (and proximal gradient) steps shorter than ``2 / L`` on a
        convex ``L``-smooth objective never move away from any of its
        minimizers; steps too long multiply the distance at every step, and
        the models stay finite long after they are meaningless (coefficients
        of 1e8 after five steps of ``inner_lr=1`` on tasks whose ``L`` is 25,
        without a word). A task counts as diverging where its steps ended
        ``_DIVERGENCE_FACTOR`` times farther from its exact solution (the
        inner problem the steps approximate) than they started.
        """
        optimum = solve_exactly(batch, problem, fitted.center, fitted.precision,
                                fitted.theta0, n_jobs=self.settings.n_jobs,
                                labels=labels)
        with np.errstate(over="ignore", invalid="ignore"):
            start = np.linalg.norm(fitted.theta0 - optimum, axis=1)
            end = np.linalg.norm(theta - optimum, axis=1)
            scale = 1e-12 * (1.0 + np.linalg.norm(optimum, axis=1))
            diverged = ~(end <= _DIVERGENCE_FACTOR * start + scale)
        if np.any(diverged):
            step = self._steps_named
            if fitted.auto_step:
                # 1 / L_t from a curvature bound that is not one: the Poisson
                # deviance's, max(y, mean y), where the prior predicts far
                # larger counts than a support's (all zero, say)
                advice = ("inner_lr='auto' scales the steps by 1 / L_t, L_t "
                          "from a bound on the curvature that fails here "
                          "(e.g. Poisson counts far below what the prior "
                          "predicts): set inner_lr to a number, a step "
                          "short of 2 / L for these tasks' support "
                          "objectives.")
            else:
                advice = ("Use inner_lr='auto' (steps of 1 / L_t) or a smaller "
                          "inner_lr.")
            warnings.warn(
                f"method={self.name!r}: the inner gradient steps diverge on "
                f"{int(diverged.sum())} of {len(diverged)} task(s), ending up "
                f"to {float(np.nanmax(np.where(diverged, end, 0.0))):.3g} from "
                "the task's exact solution: "
                f"{step} is too long for the tasks' curvature (the "
                f"transfer strength gamma_={float(fitted.gamma):.3g} "
                f"included), and their models are meaningless. {advice}",
                ConvergenceWarning,
                stacklevel=4)



class IMAML(_Bilevel):
    """``method="imaml"``: exact inner solves, implicit meta-gradients, Adam.

    A network's inner problem is not convex: it is solved by ``inner_steps``
    gradient steps of ``inner_lr``, and the implicit gradient's system by
    conjugate gradient to the relative residual ``tol`` (at most
    ``CG_MAX_ITER`` iterations).
    """

    name = "imaml"
    steps = False
    network_parameters = frozenset({"inner_steps", "inner_lr", "tol"})
    exact = True

    def takes_steps(self, problem):
        return problem.is_network

    def check_problem(self, problem):
        super().check_problem(problem)
        gamma = self.settings.gamma
        if problem.is_network and (gamma == "auto" or float(gamma) == 0):
            raise ValueError(
                f"method='imaml' with a network needs a number gamma > 0, got "
                f"gamma={gamma!r}: its transfer term is what keeps a task's "
                "non-convex inner problem near the prior and, where it "
                "exceeds the Hessian's negative curvature, the implicit "
                "gradient's system (gamma + Hessian) positive definite, and "
                "gamma='auto', an empirical-Bayes estimate, exists for linear "
                "base estimators only (e.g. gamma=1.0, in the units of the "
                "network's alpha)."
            )
        if gamma != "auto" and float(gamma) == 0:
            raise ValueError(
                "method='imaml' needs gamma > 0 (or gamma='auto'), got "
                "gamma=0: without the transfer term a task's exact solution "
                "does not depend on the prior mean, so the implicit "
                "meta-gradient is zero and nothing would be meta-learned "
                "(the fit returned the pooled start). For steps from a "
                "learned start without a transfer term, use method='maml'."
            )

    def meta_gradient(self, batch, problem, precision, auto, start, n_sel, *,
                      n_threads=1, transposed=True):
        if problem.is_network:
            s = self.settings
            network = _PerSize(lambda n: NetworkImplicit(
                batch, problem, precision, n_steps=s.inner_steps, n_sel=n,
                cg_tol=s.tol, cg_max=CG_MAX_ITER, n_threads=n_threads))

            def contribute(task_sel, seeds, n_query, theta0, alpha):
                res = network(len(task_sel))(task_sel, seeds, n_query, theta0,
                                             alpha)
                return MetaContribution.of(len(task_sel), res.loss_sum,
                                           res.grad_theta0)

            return contribute
        meta_grad = ImplicitMetaGradient(batch, problem, precision, n_sel=n_sel)
        # each task's last support solution starts its next solve
        warm = None

        def contribute(task_sel, seeds, n_query, theta0, alpha):
            nonlocal warm
            if warm is None:
                warm = np.tile(start, (batch.n_tasks, 1))
            loss, g_theta0, _, adapted = meta_grad.sums(
                task_sel, seeds, n_query, theta0, alpha, warm[task_sel])
            warm[task_sel] = adapted
            return MetaContribution.of(len(task_sel), loss, g_theta0)

        return contribute

    def adapt(self, batch, problem, fitted, labels=None):
        if problem.is_network:
            # the inner procedure meta-training solved with: the steps
            return super().adapt(batch, problem, fitted, labels)
        return solve_exactly(batch, problem, fitted.center, fitted.precision,
                             fitted.theta0, n_jobs=self.settings.n_jobs,
                             labels=labels)


class MAML(_Bilevel):
    """``method="maml"``: unrolled gradient steps, exact (or first-order) gradient."""

    name = "maml"
    parameters = _Bilevel.parameters | {"inner_steps", "inner_lr", "first_order"}

    @property
    def mode(self):
        return FIRST_ORDER if self.settings.first_order else SECOND_ORDER

    def meta_gradient(self, batch, problem, precision, auto, start, n_sel, *,
                      n_threads=1, transposed=True):
        unrolled = _PerSize(lambda n: UnrolledMetaGradient(
            batch, problem, precision, n_sel=n, n_steps=self.settings.inner_steps,
            auto_step=auto, mode=self.mode, n_threads=n_threads,
            transposed=transposed, step_gradient=self.learns_steps))

        def contribute(task_sel, seeds, n_query, theta0, alpha):
            loss, g_theta0, g_alpha, _ = unrolled(len(task_sel)).sums(
                task_sel, seeds, n_query, theta0, alpha)
            return MetaContribution.of(len(task_sel), loss, g_theta0, g_alpha)

        return contribute


class MetaSGD(MAML):
    """``method="metasgd"``: MAML whose per-parameter step sizes are learned too."""

    name = "metasgd"
    parameters = _Bilevel.parameters | {"inner_steps", "inner_lr"}
    learns_steps = True

    @property
    def mode(self):
        return SECOND_ORDER


class Reptile(_Bilevel):
    """``method="reptile"``: steps on all of a task's rows, then move toward them."""

    name = "reptile"
    parameters = frozenset(
        {"meta_lr", "meta_batch_size", "random_state", "inner_steps", "inner_lr",
         "adapt_layers", "random_effects"})
    default_meta_lr = 0.5
    progress = "mean step"

    def check_problem(self, problem):
        super().check_problem(problem)
        if problem.is_network and self.settings.adapt_layers == "output":
            raise ValueError(
                "method='reptile' moves the prior toward the adapted "
                "parameters: with adapt_layers='output' the hidden layers "
                "never move and keep their random initialization. Use "
                "adapt_layers='all', or ANIL with method='maml', 'metasgd' "
                "or 'imaml'."
            )

    def query_rows(self, sizes):
        return np.zeros(len(sizes), dtype=np.intp)  # Reptile adapts on all rows

    def meta_gradient(self, batch, problem, precision, auto, start, n_sel, *,
                      n_threads=1, transposed=True):
        forward = _PerSize(lambda n: Unroller(
            batch, problem, precision, auto_step=auto,
            n_steps=self.settings.inner_steps, mode=FORWARD, n_sel=n,
            n_threads=n_threads, transposed=transposed))

        def contribute(task_sel, seeds, n_query, theta0, alpha):
            res = forward(len(task_sel))(task_sel, seeds, n_query, theta0, alpha)
            return MetaContribution.of(len(task_sel), 0.0,
                                       (res.theta - theta0).sum(axis=0))

        return contribute

    def meta_step(self, problem, start):
        lr = self.meta_lr

        def step(theta0, alpha, total):
            displacement = total.grad_theta0 / total.n_tasks
            return (theta0 + lr * displacement, alpha,
                    float(np.linalg.norm(displacement)))

        return step
