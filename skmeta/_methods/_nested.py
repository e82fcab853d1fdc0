"""Nested tasks: a hierarchical empirical-Bayes prior (population -> groups -> tasks).

Tasks are the leaves of a tree of ``L`` levels of labels, outermost first
(region, store): level 0 is the population, levels ``1 .. L-1`` the groups,
level ``L`` the tasks. The model is a chain of Gaussians,

    mu_g ~ N(mu_parent(g), V_l)         for a group g of level l,
    theta_t ~ N(mu_group(t), V)         for a task t,

with ``mu_0`` the population mean (a hyperparameter, like ``theta0`` of the
flat prior), ``V`` the tasks' spread about their group (diagonal or
isotropic, with the base estimator's l2 penalty counted as part of it as in
:mod:`._proximal`) and one spread ``V_l`` per group level. Every level's
mean and spread is learned by empirical Bayes: EM on the marginal
likelihood, with the Laplace approximation of each task's posterior.

E-step. The tasks are solved with their transfer term centred on their
group's current mean ``m_g`` (one batched kernel call for all tasks, each
given its group's centre; sharded over ``n_jobs``), giving each task's mode
``theta_t`` and inverse Hessian ``C_t = A_t^{-1}`` (estimator units). With
``M`` the precision of the tasks' prior in estimator units (transfer term
plus the counted l2 penalty), the task's mode moves with its group mean as
``d theta_t / d mu = C_t M`` (implicit function theorem), and its
contribution to the log posterior of ``mu`` is, to second order about
``m_g``, a Gaussian factor of precision and linear coefficient

    J_t = M - M C_t M,       h_t = J_t m_g + M (theta_t - m_g)

-- the reduced objective's curvature and gradient of :mod:`._proximal`'s
Newton step on ``theta0``; exact for squared losses. The group means then
form a Gaussian tree, whose posterior is closed form (Gaussian-Gaussian):

* upward, a group of level ``l`` with prior precision ``P_l`` (estimator
  units) and children's information ``(J_g, h_g)`` (summed over its tasks,
  or over its child groups' messages) has ``K_g = P_l + J_g`` and sends its
  parent ``J <- P_l - P_l K_g^{-1} P_l``, ``h <- P_l K_g^{-1} h_g``;
* at the root, ``mu_0 = J_0^{-1} h_0`` (its maximum-likelihood value);
* downward, from the parent's posterior mean ``m_p`` and covariance
  ``S_p`` (zero at the root: ``mu_0`` is a point estimate), ``m_g =
  K_g^{-1} (P_l m_p + h_g)``, ``S_g = K_g^{-1} + G S_p G^T`` and
  ``Cov(mu_g, mu_p) = G S_p`` with ``G = K_g^{-1} P_l``.

M-step, in the model's natural units (estimator-unit covariances times
``phi / s``, ``phi`` the noise variance of squared losses, ``s`` the tasks'
mean weight for averaged losses, else 1):

* ``V_l`` fits ``mean_g E[(mu_g - mu_p)(mu_g - mu_p)^T] = (m_g - m_p)(...)^T
  + S_g + S_p - Cov(mu_g, mu_p) - Cov(mu_p, mu_g)`` over the groups of level
  ``l``;
* ``V`` fits ``mean_t E[(theta_t - mu_g)(...)^T] = (theta_t + C_t M (m_g' -
  m_g) - m_g')(...)^T + (phi / s_t) C_t + R_t S_g R_t^T`` with ``R_t = I -
  C_t M`` and ``m_g'`` the new mean;
* ``phi`` is the expected residual variance, ``(RSS + phi sum_t [tr(H_t
  C_t) + (s_t / s) tr(H_t C_t M S_g M C_t)]) / W``, ``H_t`` the data's
  Hessian;

each shaped by the structure (diagonal or isotropic, with its weak
hyperprior: see :mod:`._structures`). With a single group the fixed point is
the flat prior's (the group's spread shrinks to the hyperprior's floor); for
squared losses, where the Laplace approximation is exact, it is the
maximum of the exact marginal likelihood. The iterations are accelerated by
SQUAREM (:mod:`._squarem`). The hierarchy adds work per group (``d x d``
matrices), not per task: each iteration still solves every task once.

Tasks of more than ``FULL_INVERSE_MAX_PARAMS`` parameters are refused by
the caller: the group means' posterior needs each task's ``d x d``
curvature ``J_t`` (with its diagonal alone, the rank-deficient ``J_t`` of a
task with fewer rows than parameters makes the updates overshoot).

A new task of a known group is adapted from its group's posterior mean; of
an unknown group, from the deepest known ancestor's; of no known group, from
the population mean.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._kernels._codes import SQUARED
from ._inner import InnerSolver
from ._prior import (
    Prior,
    changed,
    mean_penalty,
    models_floor,
    noise_variance_floor,
    psd_solve,
    residual_squares,
    split_strength,
    task_scales,
    transfer_beyond_ridge,
)
from ._squarem import squarem
from ._structures import Structure

# Problems with at least _WARM_UP_FACTOR * _WARM_UP_TASKS tasks first learn
# the prior on about _WARM_UP_TASKS of them (as the flat prior does)
_WARM_UP_TASKS = 512
_WARM_UP_FACTOR = 4
# each EM iteration holds every task's d x d inverse Hessian: at most this
# many bytes of them (the caller refuses larger problems)
COVARIANCE_MEMORY = 2 * 2**30


@dataclass(frozen=True)
class Tree:
    """The nesting of tasks in groups.

    ``parents[l - 1]`` maps the nodes of level ``l`` (``l = 1 .. L``; level
    ``L`` holds the tasks) to their parents' indices at level ``l - 1``
    (level 0: the population, a single node). Tasks are sorted by group: the
    tasks of one innermost group are consecutive.
    """

    parents: tuple

    @property
    def n_levels(self):
        """Levels of labels (groups levels plus the tasks')."""
        return len(self.parents)

    @property
    def sizes(self):
        """Nodes per level, population first."""
        return [1] + [len(p) for p in self.parents]

    def task_ranges(self):
        """``(first, last)`` tasks of each innermost group."""
        groups = self.parents[-1]
        edges = np.searchsorted(groups, np.arange(self.sizes[-2] + 1))
        return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


@dataclass(frozen=True)
class NestedFit:
    """What the EM loop returns: the learned hierarchy and the tasks' fits.

    ``task_prior`` is the tasks' prior about their group (``theta0`` holds
    the population mean); ``means[l]`` and ``precisions[l]`` the posterior
    means of the groups of level ``l + 1`` and that level's prior precision
    about the parents (estimator units), ``covariances[l]`` the groups'
    posterior covariances (natural units). ``task_covariances`` is every
    task's Laplace posterior covariance (natural units, its group mean's
    uncertainty included). ``task_scale`` is the tasks' mean weight for averaged losses
    (else 1): natural-unit covariances are ``phi / task_scale`` times
    inverse precisions.
    """

    task_prior: Prior
    means: tuple
    precisions: tuple
    covariances: tuple
    theta: np.ndarray
    task_covariances: np.ndarray
    n_iter: int
    converged: bool
    task_scale: float = 1.0


@dataclass(frozen=True)
class _State:
    """An iterate of EM: the means the tasks are solved at, and the spreads."""

    mu0: np.ndarray
    means: tuple  # per group level: (n_l, d)
    transfer: np.ndarray  # (d,) the task-level transfer precision Pi
    precisions: tuple  # per group level: (d,) P_l
    dispersion: float


class _Hierarchy:
    """One batch of nested tasks, its solver and the EM map."""

    def __init__(self, batch, problem, tree, *, structure, learn_gamma, gamma,
                 learn_mu0, n_jobs):
        self.batch, self.problem, self.tree = batch, problem, tree
        self.structure = structure
        self.learn_gamma, self.gamma, self.learn_mu0 = learn_gamma, gamma, learn_mu0
        _T, d = batch.n_tasks, problem.n_params
        self.d = d
        self.squared = problem.code == SQUARED
        self.task_scale = task_scales(batch, problem)
        self.s_bar = float(self.task_scale.mean())
        self.total_weight = max(float(batch.sw.sum()), np.finfo(float).tiny)
        self.min_dispersion = noise_variance_floor(batch.y)
        # the base penalty's l2 part, counted in the tasks' prior when its
        # strength is learned (not for wide tasks: see _proximal._Iteration)
        self.penalty = problem.lam2 * problem.l2w
        self.ridge = self.penalty if learn_gamma else np.zeros(d)
        self.ranges = tree.task_ranges()
        self.group_of_task = tree.parents[-1]
        # every task of an iteration in one kernel call (per shard), each
        # centred on its group's mean; the dense solver keeps each task's
        # inverse Hessian between iterations (the row-space one of wide
        # tasks keeps none)
        self.solver = InnerSolver(batch, problem, n_jobs=n_jobs)
        self._solved_at = None  # (transfer precision, per-task centres)

    # ------------------------------------------------------------ the prior
    def task_prior(self, state):
        """The tasks' prior as the kernels take it (centre: ``mu0``)."""
        strength, shape = split_strength(state.transfer)
        ridge = self.ridge if np.any(self.ridge > 0) else None
        return Prior(theta0=state.mu0, shape=shape, gamma=strength,
                     dispersion=state.dispersion, ridge=ridge)

    def centres(self, state, means):
        """Where each group's tasks' transfer term pulls, for group means
        ``means`` (``(Pi + D) / Pi`` times the mean: see ``Prior.center``)."""
        return means * ((state.transfer + self.ridge) / state.transfer)

    def initial_state(self, mu0):
        d = self.d
        transfer = np.full(d, float(self.gamma))
        combined = transfer + self.ridge
        means = tuple(np.tile(mu0, (n, 1)) for n in self.tree.sizes[1:-1])
        return _State(np.array(mu0, dtype=float), means, transfer,
                      tuple(combined.copy() for _ in means), 1.0)

    # --------------------------------------------------------------- solves
    def solve(self, state, theta):
        """Every task solved under its group's centre; per-task results."""
        centres = self.centres(state, state.means[-1])[self.group_of_task]
        precision = state.transfer
        solved_at = None
        if self._solved_at is not None and np.array_equal(self._solved_at[0],
                                                          precision):
            solved_at = self._solved_at[1]
        result = self.solver.solve(centres, precision, theta,
                                   inverse="posterior", covariances=True,
                                   solved_at=solved_at, rowspace=False)
        self._solved_at = (precision.copy(), centres)
        return result.theta, result.loss, result.trace, result.covariances

    # ------------------------------------------------------- Gaussian tree
    @staticmethod
    def _matrix(vector, n):
        """``n`` copies of ``diag(vector)``."""
        return np.tile(np.diag(vector), (n, 1, 1))

    @staticmethod
    def _mv(A, v):
        return np.einsum("nij,nj->ni", A, v)

    @staticmethod
    def _diag(A):
        return np.diagonal(A, axis1=1, axis2=2)

    def tree_posterior(self, state, theta, cov):
        """The group means' posterior given the tasks' solutions.

        Returns ``(mu0, means, covs, cross)``: the population mean, each
        group level's posterior means ``(n_l, d)``, covariances and
        covariances with their parents (estimator units).
        """
        M = state.transfer + self.ridge
        sizes = self.tree.sizes
        L = self.tree.n_levels
        starts = np.array([a for a, _ in self.ranges])
        counts = np.array([b - a for a, b in self.ranges], dtype=float)
        m_inner = state.means[-1]
        S = np.add.reduceat(cov, starts, axis=0)
        theta_sum = np.add.reduceat(theta, starts, axis=0)
        J = (counts[:, None, None] * np.diag(M)
             - M[None, :, None] * S * M[None, None, :])
        h = self._mv(J, m_inner) + M * (theta_sum - counts[:, None] * m_inner)
        infos = [None] * L  # per level l = 1 .. L-1: (K^{-1}, h)
        # the means the tasks are drawn about have a prior of their own, each
        # its group's share of one task's base penalty (see
        # _prior.mean_penalty), as the flat prior's mean has the whole: one
        # group is then the flat prior
        held = mean_penalty(self.ridge, counts[:, None] / counts.sum(), M)[
            :, :, None] * np.eye(self.d)
        for level in range(L - 1, 0, -1):
            P = state.precisions[level - 1]
            Pm = self._matrix(P, sizes[level])
            Kinv = np.linalg.inv(Pm + J + (held if level == L - 1 else 0.0))
            Kinv = (Kinv + np.swapaxes(Kinv, 1, 2)) / 2
            infos[level] = (Kinv, h)
            message_J = Pm - Pm @ Kinv @ Pm
            message_h = self._mv(Pm, self._mv(Kinv, h))
            parents = self.tree.parents[level - 1]
            J = np.zeros((sizes[level - 1],) + message_J.shape[1:])
            np.add.at(J, parents, message_J)
            h = np.zeros((sizes[level - 1], self.d))
            np.add.at(h, parents, message_h)
        mu0 = state.mu0
        if self.learn_mu0:
            mu0 = psd_solve(J[0], h[0])
        parent_mean = mu0[None]
        parent_cov = np.zeros((1, self.d, self.d))
        means, covs, cross = [], [], []
        for level in range(1, L):
            P = state.precisions[level - 1]
            Kinv, h_level = infos[level]
            parents = self.tree.parents[level - 1]
            Pm = self._matrix(P, sizes[level])
            G = Kinv @ Pm
            mean = self._mv(Kinv, P * parent_mean[parents] + h_level)
            cross_level = G @ parent_cov[parents]
            cov_level = Kinv + cross_level @ np.swapaxes(G, 1, 2)
            means.append(mean)
            covs.append(cov_level)
            cross.append(cross_level)
            parent_mean, parent_cov = mean, cov_level
        return mu0, means, covs, cross

    # ---------------------------------------------------------------- M-step
    def m_step(self, state, theta, loss, trace, cov, posterior):
        """The next state from the solutions and the groups' posterior."""
        mu0, means, covs, cross = posterior
        L = self.tree.n_levels
        phi_old = state.dispersion
        to_natural = phi_old / self.s_bar
        M = state.transfer + self.ridge
        g = self.group_of_task
        step = means[-1] - state.means[-1]
        # the tasks' modes follow their group's mean: C_t M
        CM = cov * M[None, None, :]
        dev = theta + self._mv(cov, (M * step)[g]) - means[-1][g]
        # diag(R S R^T), R = I - C M, and diag(C M S M C), from C M S
        # (S and C symmetric); tr(H C M S M C) with H = A - Pi - D and
        # A C = I is tr(M S M C) - sum_i (Pi + D)_i (C M S M C)_ii:
        # no per-task inverse nor product of three matrices
        CMS = np.empty_like(cov)
        MS = M[None, :, None] * covs[-1]
        MSM = MS * M[None, None, :]
        trace_MSMC = np.empty(len(cov))
        for group, (a, b) in enumerate(self.ranges):
            # (C_t M S_g) for all the group's tasks: one matrix product
            CMS[a:b] = (cov[a:b].reshape(-1, self.d) @ MS[group]).reshape(
                b - a, self.d, self.d)
            trace_MSMC[a:b] = cov[a:b].reshape(b - a, -1) @ MSM[group].ravel()
        through = np.einsum("tij,tij->ti", CMS, CM)
        spread = (np.diagonal(covs[-1], axis1=1, axis2=2)[g]
                  - 2.0 * np.diagonal(CMS, axis1=1, axis2=2) + through)
        extra = trace_MSMC - through @ (state.transfer + self.penalty)
        task_cov = self._diag(cov)
        # each task's expected squared deviation in the units of its own
        # prior, s_t / s_bar times its natural-unit one (see
        # _proximal.empirical_bayes_update)
        units = (self.task_scale / self.s_bar)[:, None]
        second = (units * (dev * dev) + to_natural * task_cov
                  + units * (to_natural * spread))
        dispersion = phi_old
        if self.squared:
            rss = float(np.sum(residual_squares(self.task_scale, loss)))
            expected = rss + phi_old * float(
                np.sum(trace) + np.sum(self.task_scale / self.s_bar * extra))
            dispersion = max(expected / self.total_weight, self.min_dispersion,
                             np.finfo(float).tiny)
        T = theta.shape[0]
        transfer = state.transfer
        if self.learn_gamma:
            # (the base penalty in the moments' natural units)
            natural = self.structure.natural_precision_beside(
                None, second.mean(axis=0), T, self.ridge * self.s_bar / dispersion)
            M_new = dispersion / self.s_bar * natural
            transfer = transfer_beyond_ridge(
                M_new, self.ridge, signed=self.structure.signed_transfer)
        precisions = []
        parent_mean = mu0[None]
        parent_cov = None
        for level in range(1, L):
            parents = self.tree.parents[level - 1]
            mean, cov_level = means[level - 1], self._diag(covs[level - 1])
            moment = (mean - parent_mean[parents]) ** 2 + to_natural * cov_level
            if parent_cov is not None:
                moment += to_natural * (parent_cov[parents] - 2.0 * self._diag(
                    cross[level - 1]))
            natural = self.structure.natural_precision(
                None, moment.mean(axis=0), mean.shape[0])
            precisions.append(dispersion / self.s_bar * natural)
            parent_mean, parent_cov = mean, cov_level
        return _State(mu0, tuple(means), transfer, tuple(precisions), dispersion)


class _Coordinates:
    """Unconstrained coordinates of a state, for SQUAREM: the means, the log
    precisions and (squared losses) the log noise variance."""

    def __init__(self, hierarchy, template):
        self.h = hierarchy
        self.template = template
        self.shapes = [m.shape for m in template.means]

    def _beside(self):
        """What the transfer term is extrapolated beside: the base penalty,
        or nothing for an isotropic one."""
        return self.h.ridge if self.h.structure.signed_transfer else 0.0

    def encode(self, state):
        parts = [state.mu0] + [m.ravel() for m in state.means]
        if self.h.learn_gamma:
            # the tasks' precision, base penalty and transfer term together:
            # the transfer term alone may be negative (see
            # _prior.transfer_beyond_ridge); an isotropic one stays positive
            # and is extrapolated itself (extrapolated beside a penalty that
            # leaves the intercept free, it no longer was isotropic)
            parts.append(np.log(state.transfer + self._beside()))
        parts += [np.log(p) for p in state.precisions]
        if self.h.squared:
            parts.append([np.log(state.dispersion)])
        return np.concatenate([np.asarray(p, dtype=float).ravel() for p in parts])

    def decode(self, z):
        d = self.h.d
        at = d
        mu0 = z[:d].copy()
        means = []
        for shape in self.shapes:
            n = int(np.prod(shape))
            means.append(z[at:at + n].reshape(shape).copy())
            at += n
        transfer = self.template.transfer
        if self.h.learn_gamma:
            combined, at = np.exp(z[at:at + d]), at + d
            if not (np.all(np.isfinite(combined)) and np.all(combined > 0)):
                raise FloatingPointError("extrapolated precisions degenerate")
            transfer = (transfer_beyond_ridge(combined, self.h.ridge)
                        if self.h.structure.signed_transfer else combined)
        precisions = []
        for _ in self.shapes:
            precisions.append(np.exp(z[at:at + d]))
            at += d
        dispersion = float(np.exp(z[at])) if self.h.squared else 1.0
        if not (np.all(np.isfinite(transfer)) and np.all(transfer != 0)
                and all(np.all(np.isfinite(p)) and np.all(p > 0)
                        for p in precisions)):
            raise FloatingPointError("extrapolated precisions degenerate")
        return _State(mu0, tuple(means), transfer, tuple(precisions), dispersion)


@dataclass(frozen=True)
class NestedSpec:
    """What the estimator asks of the hierarchical prior: the ``structure``
    of every level's spread (diagonal or isotropic), whether the tasks'
    transfer strength is learned (else their transfer precision stays
    ``gamma * I`` and only the group levels' spreads are learned), and the
    population mean's start ``mu0``, learned or (``learn_mu0`` False, a
    ``prior_estimator``) kept."""

    structure: Structure
    learn_gamma: bool
    gamma: float
    mu0: np.ndarray
    learn_mu0: bool


def fit_nested(batch, problem, tree, spec, *, max_iter, tol, n_jobs=None,
               verbose=0):
    """Learn the hierarchical prior by EM (see the module docstring).

    ``spec`` is a :class:`NestedSpec`. Returns a :class:`NestedFit`.
    """
    mu0 = spec.mu0
    hierarchy = _Hierarchy(batch, problem, tree, structure=spec.structure,
                           learn_gamma=spec.learn_gamma, gamma=spec.gamma,
                           learn_mu0=spec.learn_mu0, n_jobs=n_jobs)
    start = hierarchy.initial_state(mu0)
    T = batch.n_tasks
    if T >= _WARM_UP_FACTOR * _WARM_UP_TASKS:
        # Learn a first prior on a few tasks of every innermost group: the
        # fit on all of them then starts near its solution and needs fewer
        # iterations over all tasks.
        per_group = max(2, -(-_WARM_UP_TASKS // len(hierarchy.ranges)))
        index = np.concatenate([np.arange(a, min(b, a + per_group))
                                for a, b in hierarchy.ranges])
        if len(index) < T:
            subtree = Tree(tree.parents[:-1] + (tree.parents[-1][index],))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                first = fit_nested(batch.subset(index), problem, subtree, spec,
                                   max_iter=max_iter, tol=tol, n_jobs=n_jobs)
            prior = first.task_prior
            start = _State(np.array(prior.theta0), tuple(first.means),
                           np.asarray(prior.precision, dtype=float),
                           tuple(first.precisions), float(prior.dispersion))
    coords = _Coordinates(hierarchy, start)
    # every task starts at its group's mean (there is a level of groups)
    state = {"n_iter": 0, "done": False,
             "theta": start.means[-1][hierarchy.group_of_task].copy()}

    def em_map(current):
        theta, loss, trace, cov = hierarchy.solve(current, state["theta"])
        state["n_iter"] += 1
        posterior = hierarchy.tree_posterior(current, theta, cov)
        proposal = hierarchy.m_step(current, theta, loss, trace, cov, posterior)
        if verbose:
            print(f"[nested] iteration {state['n_iter']}: noise variance "
                  f"{proposal.dispersion:.6g}")
        # (relative to the models' size where it is below 1: targets in
        # units of 1e-4 stopped after three iterations where units of 1 took
        # nineteen)
        floor = models_floor(theta)
        moved = changed(theta, state["theta"], tol, floor)
        means_moved = any(changed(new, old, tol, floor) for new, old in zip(
            proposal.means, current.means)) or changed(
                proposal.mu0, current.mu0, tol, floor)
        state.update(theta=theta, cov=cov, current=current, posterior=posterior,
                     done=state["n_iter"] > 1 and not moved and not means_moved)
        return proposal

    with hierarchy.solver:
        squarem(em_map, start, coords,
                lambda: state["done"] or state["n_iter"] >= max_iter)
    current = state["current"]
    if not state["done"]:
        warnings.warn(
            f"the nested prior's EM did not converge in max_iter={max_iter} "
            "iterations; increase max_iter or tol.", ConvergenceWarning,
            stacklevel=3)
    _, _, covs, _ = state["posterior"]
    to_natural = current.dispersion / hierarchy.s_bar
    cov = state["cov"]
    # the task's own posterior plus its group mean's, carried by C_t M
    M = current.transfer + hierarchy.ridge
    CM = cov * M[None, None, :]
    S_g = covs[-1][hierarchy.group_of_task]
    task_covariances = (
        (current.dispersion / hierarchy.task_scale)[:, None, None] * cov
        + to_natural * (CM @ S_g @ np.swapaxes(CM, 1, 2)))
    return NestedFit(
        hierarchy.task_prior(current), tuple(current.means),
        tuple(current.precisions), tuple(to_natural * c for c in covs),
        state["theta"], task_covariances, state["n_iter"], bool(state["done"]),
        hierarchy.s_bar)


def adapt_nested(batch, problem, prior, node_means, node_of_task, *,
                 n_jobs=None):
    """New tasks, each adapted from the mean of its node ``node_of_task[t]``
    (an index into the rows of ``node_means``): all in one kernel call per
    shard, each task centred on its node's mean."""
    node_means = np.asarray(node_means, dtype=float)
    ridge = prior.ridge if prior.ridge is not None else 0.0
    factor = (prior.precision + ridge) / prior.precision
    start = node_means[node_of_task]
    with InnerSolver(batch, problem, n_jobs=n_jobs) as solver:
        return solver.solve(start * factor, prior.precision, start).theta
