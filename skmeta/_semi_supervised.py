"""Unlabeled rows (``y == -1``) in :class:`~skmeta.MetaClassifier`.

The model
---------
Task ``t`` has labeled rows ``L`` (class ``y_i``, weight ``w_i``) and
unlabeled rows ``U``. Besides the task's classifier ``p_theta(k | x)`` (the
base estimator with parameters ``theta``), each class ``k`` of the task is
described by a Gaussian cluster of the features,
``g_k(x) = N(x; mu_k, Sigma)``: the class means ``mu_k`` are the task's own,
the within-class covariance ``Sigma`` is shared by all tasks (meta-knowledge,
learned in ``fit`` from the labeled rows, with the classes' means over all
tasks ``m_k``). An unlabeled row's class ``z`` is drawn from the classifier,
and the row is then also seen through the Gaussian of its class, so that its
likelihood is ``sum_k p_theta(k | x_j) g_k(x_j)``. With a weight ``omega`` on
everything the Gaussians add, the task's objective is

    J(theta, mu) = sum_L w_i l(y_i; x_i, theta) + lambda R(theta)
                   + gamma P(theta; Phi)
                   + omega [ - sum_L w_i log g_{y_i}(x_i)
                             - sum_U w_j log sum_k p_theta(k | x_j) g_k(x_j)
                             + kappa/2 sum_k (mu_k - m_k)' Sigma^-1 (mu_k - m_k) ]

whose first line is the task's supervised inner problem (the base
estimator's loss and penalty and the transfer term) and whose last term is a
Gaussian prior on the class means, worth ``kappa = 1`` row. A task without
labeled rows has the same objective without its first sum.

EM
--
Since ``-log sum_k a_k = min_q sum_k q_k (log q_k - log a_k)`` over the
simplex, at ``q_k`` proportional to ``a_k``, ``J`` is minimized by
alternating

* E-step: ``q_jk`` proportional to ``p_theta(k | x_j) g_k(x_j)``;
* M-step in ``theta``: the supervised inner problem with each unlabeled row
  added once per class, with weight ``omega w_j q_jk`` (the base estimator's
  loss is linear in the row weights). The method's own adaptation solves it
  on these weighted rows, so no kernel needs to know about unlabeled rows;
* M-step in ``mu``: ``mu_k = (kappa m_k + sum_i r_ik w_i x_i) / (kappa +
  sum_i r_ik w_i)``, with ``r`` the one-hot labels of labeled rows and ``q``
  for unlabeled ones.

Every step lowers ``J`` when the M-step in ``theta`` is the exact minimizer
(``method="proximal"`` and ``"imaml"``). The other methods adapt by a fixed
number of gradient steps from ``theta0``; the same alternation is then a
fixed-point iteration of their adaptation, which can cycle: there, a task
whose responsibilities move no less than in its previous iteration has its
steps toward the E-step's ones halved (down to ``1 / 2**MAX_HALVINGS``, and
grown back by ``STEP_GROWTH`` while it progresses), which leaves the fixed
points as they are.

Where the Gaussians do not tell the classes apart (``g_k(x_j)`` the same for
every ``k``), ``q = p_theta`` and the gradient of the unlabeled term in
``theta``, ``sum_k (p_theta(k | x_j) - q_jk) x_j``, vanishes: the supervised
solution is then the fixed point, and unlabeled rows change nothing.

The weight
----------
``unlabeled_weight="auto"`` chooses ``omega`` among ``WEIGHT_CANDIDATES``
(0 included) on few-shot episodes drawn from the training tasks: one labeled
row per class is kept, half of the other labeled rows are hidden (joined to
the task's unlabeled rows) and the other half is scored. A weight is taken
only if it raises the mean accuracy on the scored rows over ``omega = 0`` by
more than ``GAIN_Z`` standard errors of that paired gain and does not raise
their mean log-loss; otherwise unlabeled rows are ignored (``omega = 0``).
"""

import warnings
from collections import namedtuple
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._kernels._calls import decision_values
from ._kernels._codes import MULTINOMIAL
from ._kernels._layout import Problem, make_batch

UNLABELED = -1
#: the weights ``unlabeled_weight="auto"`` chooses from, in increasing order
WEIGHT_CANDIDATES = (0.0, 0.1, 0.3, 1.0)
#: pseudo-rows of the prior of a task's class means
MEAN_PRIOR_ROWS = 1.0
#: EM stops when no responsibility moves by more than EM_TOL in an iteration
EM_TOL = 1e-5
EM_MAX_ITER = 500
#: the damping of the fixed-point iteration of inexact adaptations: halved
#: when a task stalls (at most MAX_HALVINGS times), grown back while it
#: progresses
MAX_HALVINGS = 2
STEP_GROWTH = 1.1
#: the validation of the weight: at most VALIDATION_TASKS training tasks,
#: each split at random up to MAX_REPEATS times so that there are at least
#: MIN_EPISODES episodes (repeated splits of a task average out the noise of
#: its split, which dominates the paired gains of small query sets)
VALIDATION_TASKS = 256
MIN_EPISODES = 400
MAX_REPEATS = 8
#: standard errors by which a weight's accuracy gain must exceed zero
GAIN_Z = 2.0
#: above this many features (or for sparse input) Sigma is diagonal
FULL_COVARIANCE_MAX_FEATURES = 128
#: smallest variance kept, relative to the mean variance
_VARIANCE_FLOOR = 1e-9
#: and in any case: its inverse, the clusters' precision, stays far within
#: float64 (features of 1e-154 have variances of 1e-309, whose inverse
#: overflowed and made the fit's parameters NaN)
_SMALLEST_VARIANCE = 1e8 * np.finfo(float).tiny

TaskRows = namedtuple("TaskRows", "X y sample_weight codes n_tasks")
TaskRows.__doc__ = """Rows of several tasks, in any order.

``y`` holds class indices (as floats), ``UNLABELED`` for unlabeled rows;
``codes`` the task index (``0..n_tasks - 1``) of every row.
"""


# --------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------
def unlabeled_rows(y):
    """Boolean mask of the rows marked unlabeled (``y == -1``).

    As :class:`sklearn.semi_supervised.SelfTrainingClassifier`, string
    arrays are refused: they cannot hold the integer ``-1``.
    """
    y = np.asarray(y)
    if y.dtype.kind in "US":
        raise ValueError(
            "y has dtype string, which cannot hold the integer -1 that marks "
            "unlabeled rows when unlabeled_weight is set. Pass y with dtype "
            "object, -1 on unlabeled rows (as scikit-learn's semi-supervised "
            "estimators require), or set unlabeled_weight=None."
        )
    return np.asarray(y == UNLABELED, dtype=bool).reshape(y.shape)


def labeled_targets(y, classes):
    """The labels of the labeled rows; refuses a fit with none, or class -1."""
    y = np.asarray(y)
    unlabeled = unlabeled_rows(y)
    if unlabeled.all():
        raise ValueError(
            f"y has no labeled row: all {y.shape[0]} rows are marked unlabeled "
            "(-1). At least one labeled row of each of 2 classes is needed to "
            "fit."
        )
    if classes is not None and np.any(unlabeled_rows(np.asarray(classes,
                                                                dtype=object))):
        raise ValueError(
            "classes contains -1, which marks unlabeled rows when "
            "unlabeled_weight is set and cannot be a class. Encode that class "
            "with another label (e.g. with LabelEncoder), or set "
            "unlabeled_weight=None."
        )
    return y[~unlabeled]


# --------------------------------------------------------------------------
# the Gaussian model of the features
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureModel:
    """Class means over all tasks and the shared within-class covariance.

    ``covariance`` is ``(d, d)``, or its diagonal ``(d,)`` for sparse or wide
    data.
    """

    means: np.ndarray
    covariance: np.ndarray

    def precision(self):
        """``Sigma^-1`` (a matrix, or its diagonal)."""
        if self.covariance.ndim == 1:
            return 1.0 / self.covariance
        w, V = np.linalg.eigh(self.covariance)
        return (V / w) @ V.T

    def task_means(self, sums, totals):
        """Posterior mode of each task's class means from weighted sums.

        ``sums`` (n_tasks, K, d) and ``totals`` (n_tasks, K) are the sums of
        ``r_ik w_i x_i`` and ``r_ik w_i`` over a task's rows.
        """
        return ((sums + MEAN_PRIOR_ROWS * self.means)
                / (totals + MEAN_PRIOR_ROWS)[:, :, np.newaxis])

    def log_evidence(self, X, codes, task_means, precision):
        """``log g_k(x_i)`` up to a term constant in ``k``: ``(n, K)``.

        ``mu' P x - mu' P mu / 2`` is linear in ``x``: it is computed as the
        decision values of one linear model per task, dense or sparse.
        """
        n_tasks, K, d = task_means.shape
        if precision.ndim == 2:
            W = task_means @ precision
        else:
            W = task_means * precision
        offsets = -0.5 * np.einsum("tkd,tkd->tk", W, task_means)
        params = np.concatenate([W, offsets[:, :, np.newaxis]], axis=2)
        problem = Problem(code=MULTINOMIAL, n_outputs=K, n_features=d,
                          fit_intercept=True, mean_loss=False, lam2=0.0,
                          lam1=0.0, l2w=np.zeros(K * (d + 1)),
                          l1w=np.zeros(K * (d + 1)))
        return decision_values(X, codes, params.reshape(n_tasks, -1), problem)


def _group_sums(X, groups, weights, n_groups):
    """``(sum_i w_i x_i, sum_i w_i)`` over the rows of each group."""
    G = sp.csr_matrix((weights, (groups, np.arange(groups.shape[0]))),
                      shape=(n_groups, groups.shape[0]))
    sums = G @ X
    if sp.issparse(sums):
        sums = sums.toarray()
    return np.asarray(sums), np.bincount(groups, weights, n_groups)


def _pooled_covariance(X, groups, weights, n_groups, diagonal):
    """Within-group covariance pooled over groups, and its degrees of freedom.

    With weights, each group of ``n_g`` rows and weight ``W_g`` counts for
    ``W_g (n_g - 1) / n_g`` in the normalization (``n - n_groups`` for unit
    weights). ``None`` when no group has two rows of positive weight.
    """
    sums, totals = _group_sums(X, groups, weights, n_groups)
    counts = np.bincount(groups[weights > 0], minlength=n_groups)
    used = counts > 1
    dof = int(np.sum(counts[used] - 1))
    if dof == 0:
        return None, 0
    means = np.divide(sums, totals[:, np.newaxis], out=np.zeros_like(sums),
                      where=totals[:, np.newaxis] > 0)
    if diagonal:
        squares = X.multiply(X) if sp.issparse(X) else X * X
        second = np.asarray(squares.T @ weights).ravel()
        scatter = np.maximum(second - totals @ (means * means), 0.0)
    else:
        residuals = X - means[groups]
        scatter = (residuals * weights[:, np.newaxis]).T @ residuals
    normalizer = float(np.sum(totals[used] * (counts[used] - 1) / counts[used]))
    return scatter / normalizer, dof


def learn_feature_model(rows, n_classes):
    """The :class:`FeatureModel` of the rows of training tasks.

    The within-class covariance is pooled over the (task, class) cells of
    the labeled rows; without two labeled rows in any cell, over the tasks'
    rows (labeled or not) around their task's mean; then over all rows. It
    is shrunk toward ``s I`` (``s`` its mean variance) with ``d``
    pseudo-rows, a conjugate prior that keeps it well conditioned when the
    rows are few next to the features.
    """
    X, y, w, codes = rows.X, rows.y, rows.sample_weight, rows.codes
    d = X.shape[1]
    diagonal = sp.issparse(X) or d > FULL_COVARIANCE_MAX_FEATURES
    labeled = y >= 0
    classes_of = y[labeled].astype(np.intp)
    sums, totals = _group_sums(X[labeled], classes_of, w[labeled], n_classes)
    overall = _group_sums(X, np.zeros(X.shape[0], dtype=np.intp), w, 1)
    centre = overall[0][0] / overall[1][0] if overall[1][0] > 0 else np.zeros(d)
    means = np.where(totals[:, np.newaxis] > 0,
                     sums / np.where(totals > 0, totals, 1.0)[:, np.newaxis],
                     centre)

    cells = rows.codes[labeled] * n_classes + classes_of
    tries = [(X[labeled], cells, w[labeled], rows.n_tasks * n_classes),
             (X, codes, w, rows.n_tasks),
             (X, np.zeros(X.shape[0], dtype=np.intp), w, 1)]
    covariance, dof = None, 0
    for data, groups, weights, n_groups in tries:
        covariance, dof = _pooled_covariance(data, groups, weights, n_groups,
                                             diagonal)
        if covariance is not None:
            break
    level = np.nan
    if covariance is not None:
        variances = covariance if diagonal else np.diag(covariance)
        level = float(np.mean(variances))
    if not (np.isfinite(level) and level > _SMALLEST_VARIANCE):
        # no spread in the rows that float64 can invert: any scale does
        covariance, dof, level = (np.ones(d) if diagonal else np.eye(d)), 0, 1.0
    target = np.full(d, level) if diagonal else level * np.eye(d)
    covariance = (dof * covariance + d * target) / (dof + d)
    floor = max(_VARIANCE_FLOOR * level, _SMALLEST_VARIANCE)
    if diagonal:
        covariance = np.maximum(covariance, floor)
    else:
        eigenvalues, V = np.linalg.eigh((covariance + covariance.T) / 2.0)
        covariance = (V * np.maximum(eigenvalues, floor)) @ V.T
    return FeatureModel(means=means, covariance=covariance)


# --------------------------------------------------------------------------
# the classifier's side
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Learner:
    """Adapts tasks from fitted meta-knowledge with a method's own procedure."""

    method: object
    family: object
    problem: Problem
    fitted: object
    classes: np.ndarray

    @property
    def n_classes(self):
        return len(self.classes)

    def batch(self, X, y, sample_weight, codes, n_tasks):
        """The kernels' batch of labeled rows (class weights applied)."""
        weights = self.family.row_weights(y, sample_weight, codes, n_tasks,
                                          self.classes)
        return make_batch(X, y, weights, codes, n_tasks)

    def adapt(self, batch):
        return self.method.adapt(batch, self.problem, self.fitted)

    def supervised(self, rows):
        """Every task adapted on its labeled rows; ``theta0`` for tasks with none."""
        labeled = rows.y >= 0
        theta = np.tile(self.fitted.theta0, (rows.n_tasks, 1))
        present = np.bincount(rows.codes[labeled], minlength=rows.n_tasks) > 0
        if present.any():
            compact = np.cumsum(present) - 1
            batch, _ = self.batch(rows.X[labeled], rows.y[labeled],
                                  rows.sample_weight[labeled],
                                  compact[rows.codes[labeled]], int(present.sum()))
            theta[present] = self.adapt(batch)
        return theta

    def log_proba(self, X, codes, theta):
        """``log p_theta(k | x_i)`` under each row's task model: ``(n, K)``."""
        Z = decision_values(X, codes, theta, self.problem)
        if Z.shape[1] == 1:
            z = Z[:, 0]
            return np.column_stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)])
        return Z - logsumexp(Z, axis=1, keepdims=True)


# --------------------------------------------------------------------------
# EM
# --------------------------------------------------------------------------
@dataclass
class EMResult:
    """What :func:`run_em` returns.

    ``theta`` holds every task's parameters; ``means`` the class means
    ``(n, K, d)`` and ``responsibilities`` the ``q`` ``(n_unlabeled, K)``
    (unlabeled rows in input order) of the ``tasks`` that have unlabeled
    rows, or None when the unlabeled rows are not used.
    """

    theta: np.ndarray
    tasks: np.ndarray = None
    means: np.ndarray = None
    responsibilities: np.ndarray = None
    n_iter: int = 0
    converged: bool = True


def _soft_sums(X, codes, q, weights, n_tasks):
    """Sums of ``q_ik w_i x_i`` and ``q_ik w_i`` per task and class."""
    n, K = q.shape
    groups = (codes[:, np.newaxis] * K + np.arange(K)).ravel()
    G = sp.csr_matrix(((weights[:, np.newaxis] * q).ravel(),
                       (groups, np.repeat(np.arange(n), K))),
                      shape=(n_tasks * K, n))
    sums = G @ X
    if sp.issparse(sums):
        sums = sums.toarray()
    totals = np.asarray(G.sum(axis=1)).ravel()
    return np.asarray(sums).reshape(n_tasks, K, -1), totals.reshape(n_tasks, K)


class _EMTasks:
    """The rows of the tasks EM iterates on, laid out as each step needs them.

    ``tasks`` are indices of tasks of ``rows``; within this object they are
    renumbered ``0..len(tasks) - 1``. The M-step in ``theta`` sees the
    labeled rows and ``K`` copies of each unlabeled row, whose weights alone
    change from one iteration to the next.
    """

    def __init__(self, learner, rows, tasks):
        K = learner.n_classes
        n = tasks.shape[0]
        compact = np.full(rows.n_tasks, -1, dtype=np.intp)
        compact[tasks] = np.arange(n)
        codes = compact[rows.codes]
        labeled = np.flatnonzero((codes >= 0) & (rows.y >= 0))
        self.tasks = tasks
        self.unlabeled = np.flatnonzero((codes >= 0) & (rows.y < 0))
        XL, yL = rows.X[labeled], rows.y[labeled]
        sL, cL = rows.sample_weight[labeled], codes[labeled]
        self.XU = rows.X[self.unlabeled]
        self.sU = rows.sample_weight[self.unlabeled]
        self.cU = codes[self.unlabeled]
        copies = np.repeat(np.arange(self.unlabeled.shape[0]), K)
        Xa = (sp.vstack([XL, self.XU[copies]], format="csr")
              if sp.issparse(self.XU) else np.vstack([XL, self.XU[copies]]))
        ya = np.concatenate([yL, np.tile(np.arange(K, dtype=np.float64),
                                         self.unlabeled.shape[0])])
        self.labeled_weights = learner.family.row_weights(yL, sL, cL, n,
                                                          learner.classes)
        self.batch, self.order = make_batch(
            Xa, ya, np.zeros(ya.shape[0]), np.concatenate([cL, self.cU[copies]]), n)
        self.labeled_sums = _soft_sums(XL, cL, np.eye(K)[yL.astype(np.intp)], sL, n)

    def theta_step(self, learner, weight, q):
        """The M-step in ``theta``: adapted on the labeled rows and weighted copies."""
        weights = np.concatenate([self.labeled_weights,
                                  (weight * self.sU[:, np.newaxis] * q).ravel()])
        return learner.adapt(replace(self.batch, sw=np.ascontiguousarray(
            weights if self.order is None else weights[self.order])))

    def means_step(self, model, q):
        """The M-step in the class means."""
        sums, totals = _soft_sums(self.XU, self.cU, q, self.sU,
                                  self.tasks.shape[0])
        return model.task_means(sums + self.labeled_sums[0],
                                totals + self.labeled_sums[1])

    def changes(self, q_new, q):
        """Largest change of a responsibility in each task."""
        change = np.zeros(self.tasks.shape[0])
        np.maximum.at(change, self.cU, np.max(np.abs(q_new - q), axis=1,
                                                initial=0.0))
        return change

    def restrict(self, learner, rows, keep):
        """The same for the tasks ``keep`` (a mask) only."""
        return _EMTasks(learner, rows, self.tasks[keep])


def run_em(learner, rows, model, weight, *, start=None, max_iter=EM_MAX_ITER,
           tol=EM_TOL):
    """Every task of ``rows`` fitted with its unlabeled rows at ``weight``.

    ``start`` holds the tasks' supervised solutions (default: adapted on
    their labeled rows, ``theta0`` for tasks without any). With
    ``weight == 0`` or no unlabeled row, they are returned as they are.
    Tasks are independent given the prior: a task whose responsibilities no
    longer move by more than ``tol`` is left out of later iterations once
    half of the tasks iterated on are (the batch is then rebuilt smaller).
    """
    theta = learner.supervised(rows) if start is None else np.array(start)
    unlabeled = rows.y < 0
    if weight == 0 or not unlabeled.any():
        return EMResult(theta)
    T, K = rows.n_tasks, learner.n_classes
    tasks = np.flatnonzero(np.bincount(rows.codes[unlabeled], minlength=T))
    position = np.full(T, -1, dtype=np.intp)
    position[tasks] = np.arange(tasks.shape[0])
    precision = model.precision()

    damped = not learner.method.exact_for(learner.problem)
    current = _EMTasks(learner, rows, tasks)
    theta_now = theta[tasks]
    q_now = np.exp(learner.log_proba(current.XU, current.cU, theta_now))
    means_now = current.means_step(model, q_now)
    means = means_now.copy()
    q = np.zeros((rows.y.shape[0], K))
    q[current.unlabeled] = q_now
    step = np.ones(tasks.shape[0])  # toward the E-step's responsibilities
    last_change = np.full(tasks.shape[0], np.inf)
    n_iter, converged = 0, False
    while n_iter < max_iter and not converged:
        n_iter += 1
        q_new = softmax(
            learner.log_proba(current.XU, current.cU, theta_now)
            + model.log_evidence(current.XU, current.cU, means_now, precision),
            axis=1)
        # the residual of the fixed point, whatever the damping
        change = current.changes(q_new, q_now)
        if damped:
            stalled = change >= last_change
            step = np.where(stalled, np.maximum(step / 2, 0.5**MAX_HALVINGS),
                            np.minimum(step * STEP_GROWTH, 1.0))
            q_new = q_now + step[current.cU, np.newaxis] * (q_new - q_now)
            last_change = change
        theta_now = current.theta_step(learner, weight, q_new)
        means_now = current.means_step(model, q_new)
        moving = change > tol
        q_now = q_new
        theta[current.tasks] = theta_now
        means[position[current.tasks]] = means_now
        q[current.unlabeled] = q_now
        converged = not moving.any()
        if not converged and 2 * moving.sum() <= moving.shape[0]:
            current = current.restrict(learner, rows, moving)
            theta_now, means_now = theta_now[moving], means_now[moving]
            step, last_change = step[moving], last_change[moving]
            q_now = q[current.unlabeled]
    return EMResult(theta, tasks, means, q[unlabeled], n_iter, converged)


# stack levels of warnings that point at the caller of fit (through
# scikit-learn's _fit_context) and of adapt / adapt_tasks
_FIT_STACKLEVEL = 7
_ADAPT_STACKLEVEL = 6


def _warn_unconverged(result, stacklevel):
    if not result.converged:
        warnings.warn(
            f"EM over the unlabeled rows did not converge in {result.n_iter} "
            "iterations; the task models are those of the last one.",
            ConvergenceWarning, stacklevel=stacklevel)


# --------------------------------------------------------------------------
# the weight, validated on few-shot episodes of the training tasks
# --------------------------------------------------------------------------
Episodes = namedtuple("Episodes", "rows query_X query_y query_weight query_codes "
                                  "units")


def _first_in_group(sorted_keys):
    """Whether each entry starts a group of equal keys (keys sorted together)."""
    first = np.zeros(sorted_keys[0].shape[0], dtype=bool)
    first[:1] = True
    for keys in sorted_keys:
        first[1:] |= keys[1:] != keys[:-1]
    return first


def draw_episodes(rows, n_classes, random_state):
    """Few-shot episodes drawn from the tasks of ``rows``, or None.

    In each episode, a training task keeps one labeled row per class
    present; of its other labeled rows, half (rounded down) are hidden and
    join its unlabeled rows, the others are the query. Episodes without a
    query row or without an unlabeled row are dropped. ``units`` is the
    task each episode was drawn from.
    """
    rng = check_random_state(random_state)
    labeled = rows.y >= 0
    n_labeled = np.bincount(rows.codes[labeled], minlength=rows.n_tasks)
    candidates = np.flatnonzero(n_labeled >= 2)
    if candidates.shape[0] == 0:
        return None
    n_chosen = min(VALIDATION_TASKS, candidates.shape[0])
    chosen = np.sort(rng.choice(candidates, size=n_chosen, replace=False))
    repeats = int(np.clip(-(-MIN_EPISODES // n_chosen), 1, MAX_REPEATS))
    position = np.full(rows.n_tasks, -1, dtype=np.intp)
    position[chosen] = np.arange(n_chosen)
    members = np.flatnonzero(position[rows.codes] >= 0)
    index = np.tile(members, repeats)
    episode = (position[rows.codes[index]] * repeats
               + np.repeat(np.arange(repeats), members.shape[0]))
    n_episodes = n_chosen * repeats
    key = rng.random_sample(index.shape[0])
    y = rows.y[index]
    is_labeled = y >= 0

    # support: the labeled row of smallest key of each (episode, class)
    order = np.lexsort((key, y, episode))
    first = _first_in_group([episode[order], y[order]])
    support = np.zeros(index.shape[0], dtype=bool)
    support[order] = first & is_labeled[order]
    # the other labeled rows, ranked by key within their episode
    rest = np.flatnonzero(is_labeled & ~support)
    rest = rest[np.lexsort((key[rest], episode[rest]))]
    rest_episode = episode[rest]
    starts = np.flatnonzero(_first_in_group([rest_episode]))
    start_of = np.repeat(starts, np.diff(np.append(starts, rest.shape[0])))
    rank = np.arange(rest.shape[0]) - start_of
    n_rest = np.bincount(rest_episode, minlength=n_episodes)
    hidden = np.zeros(index.shape[0], dtype=bool)
    hidden[rest[rank < n_rest[rest_episode] // 2]] = True
    query = is_labeled & ~support & ~hidden
    unlabeled = ~is_labeled | hidden

    n_query = np.bincount(episode[query], minlength=n_episodes)
    n_unlabeled = np.bincount(episode[unlabeled], minlength=n_episodes)
    keep = (n_query > 0) & (n_unlabeled > 0)
    if not keep.any():
        return None
    compact = np.cumsum(keep) - 1
    kept = keep[episode]
    train = kept & (support | unlabeled)
    train_index, query_index = index[train], index[kept & query]
    X = rows.X
    train_y = np.where(support[train], y[train], float(UNLABELED))
    episode_rows = TaskRows(X[train_index], train_y,
                            rows.sample_weight[train_index],
                            compact[episode[train]], int(keep.sum()))
    units = (np.flatnonzero(keep) // repeats).astype(np.intp)
    return Episodes(episode_rows, X[query_index], y[kept & query].astype(np.intp),
                    rows.sample_weight[query_index],
                    compact[episode[kept & query]], units)


def _episode_scores(learner, episodes, theta):
    """Weighted accuracy and log-loss of each episode's query rows."""
    log_p = learner.log_proba(episodes.query_X, episodes.query_codes, theta)
    n = episodes.rows.n_tasks
    y, w, codes = episodes.query_y, episodes.query_weight, episodes.query_codes
    correct = (np.argmax(log_p, axis=1) == y).astype(np.float64)
    loss = -log_p[np.arange(y.shape[0]), y]
    total = np.bincount(codes, w, n)
    total = np.where(total > 0, total, 1.0)
    return (np.bincount(codes, w * correct, n) / total,
            np.bincount(codes, w * loss, n) / total)


def _by_unit(values, units):
    """Mean of ``values`` per unit (the tasks episodes were drawn from)."""
    n_units = units.max() + 1
    counts = np.bincount(units, minlength=n_units)
    present = counts > 0
    return np.bincount(units, values, n_units)[present] / counts[present]


def choose_weight(learner, rows, model, random_state):
    """The weight of unlabeled rows validated on few-shot episodes.

    Returns ``(weight, validation)``, ``validation`` a dict of arrays over
    ``WEIGHT_CANDIDATES`` (see ``MetaClassifier.unlabeled_validation_``).
    """
    episodes = draw_episodes(rows, learner.n_classes, random_state)
    candidates = np.asarray(WEIGHT_CANDIDATES)
    if episodes is None:
        warnings.warn(
            "unlabeled_weight='auto' found no training task with a labeled row "
            "beyond one per class and a row to leave unlabeled, so the weight "
            "of unlabeled rows cannot be validated: they are ignored "
            "(unlabeled_weight_=0). Set unlabeled_weight to a number to use "
            "them.", UserWarning, stacklevel=_FIT_STACKLEVEL)
        nan = np.full(candidates.shape[0], np.nan)
        return 0.0, dict(weight=candidates, accuracy=nan, log_loss=nan.copy(),
                         accuracy_gain_se=nan.copy(), n_episodes=0, n_tasks=0)
    start = learner.supervised(episodes.rows)
    accuracy, log_loss = [], []
    with warnings.catch_warnings():
        # an episode's EM that stops at max_iter is still scored as it is
        warnings.simplefilter("ignore", ConvergenceWarning)
        for weight in candidates:
            theta = run_em(learner, episodes.rows, model, weight, start=start).theta
            acc, loss = _episode_scores(learner, episodes, theta)
            accuracy.append(acc)
            log_loss.append(loss)
    units = episodes.units
    n_units = np.unique(units).shape[0]
    if n_units < 2:
        # a single task: its repeated splits are the units
        units = np.arange(units.shape[0])
    accuracy = np.array([_by_unit(a, units) for a in accuracy])
    log_loss = np.array([_by_unit(v, units) for v in log_loss])
    gain = accuracy[1:] - accuracy[0]
    m = gain.shape[1]
    se = (gain.std(axis=1, ddof=1) / np.sqrt(m)) if m > 1 else np.full(
        gain.shape[0], np.inf)
    mean_gain = gain.mean(axis=1)
    loss_change = (log_loss[1:] - log_loss[0]).mean(axis=1)
    accepted = (mean_gain > 0) & (mean_gain > GAIN_Z * se) & (loss_change <= 0)
    weight = 0.0
    if accepted.any():
        best = np.flatnonzero(accepted)[np.argmax(mean_gain[accepted])]
        weight = float(candidates[1 + best])
    validation = dict(weight=candidates, accuracy=accuracy.mean(axis=1),
                      log_loss=log_loss.mean(axis=1),
                      accuracy_gain_se=np.concatenate([[0.0], se]),
                      n_episodes=int(episodes.rows.n_tasks), n_tasks=int(n_units))
    return weight, validation


# --------------------------------------------------------------------------
# the estimator's entry points
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class UnlabeledFit:
    """What a fit learned about unlabeled rows."""

    weight: float
    model: FeatureModel
    validation: dict = None


def fit_with_unlabeled(method, family, problem, rows, prior_mean, *, weight,
                       classes, single_task, random_state):
    """Meta-train on the labeled rows, then fit every task with its unlabeled rows.

    The prior (``method.fit``) is learned from the tasks' labeled rows; the
    unlabeled rows then enter every task's model by EM from that prior, at
    ``weight`` (chosen on episodes when ``"auto"``). Returns the method's
    ``MetaFit``, with the parameters of every task of ``rows``, and an
    :class:`UnlabeledFit`.
    """
    labeled = rows.y >= 0
    present = np.bincount(rows.codes[labeled], minlength=rows.n_tasks) > 0
    n_present = int(present.sum())
    compact = np.cumsum(present) - 1
    learner_rows = rows if labeled.all() else TaskRows(
        rows.X[labeled], rows.y[labeled], rows.sample_weight[labeled],
        compact[rows.codes[labeled]], n_present)
    weights = family.row_weights(learner_rows.y, learner_rows.sample_weight,
                                 learner_rows.codes, n_present, classes)
    batch, _ = make_batch(learner_rows.X, learner_rows.y, weights,
                          learner_rows.codes, n_present)
    fitted = method.fit(batch, problem, prior_mean, single_task=single_task)
    theta = np.tile(fitted.theta0, (rows.n_tasks, 1))
    theta[present] = fitted.theta

    model = learn_feature_model(rows, len(classes))
    learner = Learner(method, family, problem, fitted, classes)
    validation = None
    if isinstance(weight, str):
        weight, validation = choose_weight(learner, rows, model, random_state)
        if method.settings.verbose:
            print(f"[unlabeled rows] validated weights {validation['weight']}: "
                  f"accuracy {np.round(validation['accuracy'], 4)}; "
                  f"chosen {weight}")
    result = run_em(learner, rows, model, float(weight), start=theta)
    _warn_unconverged(result, _FIT_STACKLEVEL)
    return (replace(fitted, theta=result.theta),
            UnlabeledFit(float(weight), model, validation))


def adapt_with_unlabeled(method, family, problem, fitted, rows, *, weight,
                         model, classes):
    """Every task of ``rows`` adapted from ``fitted``, with its unlabeled rows."""
    learner = Learner(method, family, problem, fitted, classes)
    result = run_em(learner, rows, model, weight)
    _warn_unconverged(result, _ADAPT_STACKLEVEL)
    return result.theta
