"""What every outer loop (meta-learning method) provides, and what it returns.

A method learns the meta-knowledge ``Phi = (theta0, Lambda, gamma, alpha)``
from a batch of training tasks (``fit``), and adapts tasks from it
(``adapt``). The estimators know methods only through this interface and
the registry in :mod:`skmeta._methods`: they never compare method names.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MetaSettings:
    """The estimator's parameters that methods read (see the estimators' docs)."""

    gamma: object
    prior: str
    random_effects: object
    inner_steps: int
    inner_lr: object
    first_order: bool
    meta_lr: object
    meta_batch_size: int
    query_fraction: float
    max_iter: object
    tol: float
    n_jobs: object
    random_state: object
    verbose: int
    adapt_layers: str = "all"
    n_prior_components: object = "auto"
    prior_df: object = None


@dataclass
class MetaFit:
    """The learned meta-knowledge and the training tasks' parameters.

    Attributes
    ----------
    theta0 : ndarray of shape (n_params,)
        Prior mean.
    shape : ndarray of shape (n_params,) or (n_params, n_params)
        Shape ``Lambda`` of the prior precision (diagonal, or full).
    gamma : float
        Strength of the transfer term.
    theta : ndarray of shape (n_tasks, n_params)
        Every training task's parameters, adapted from the meta-knowledge.
    n_iter : int
        Outer iterations or meta-iterations run.
    inner_lr : ndarray of shape (n_params,) or None
        Per-parameter inner step sizes of the gradient-step methods
        (multipliers of ``1 / L_t`` with ``auto_step``).
    inner_steps : int
        Inner steps of the gradient-step methods.
    auto_step : bool
        Whether steps are scaled by ``1 / L_t`` (``inner_lr="auto"``).
    prior_kind : str
        The structure of the prior covariance (see ``_structures``).
    prior_scores : dict or None
        The selection score of each structure compared, when several were.
    dispersion : float or None
        The noise variance learned with the prior (squared errors), if it
        was.
    center : ndarray of shape (n_params,)
        Where the transfer term pulls (``theta0``, unless the base penalty
        is part of the learned prior: see ``_prior.Prior.center``).
    combined_precision : ndarray
        The precision of the prior of the tasks' parameters (``gamma *
        Lambda``, plus the base penalty's l2 part when it is part of it).
    mixture : PriorMixture or None
        The mixture (or Student-t) prior, when one was fitted (see
        ``_mixture``); ``theta0``, ``shape`` and ``gamma`` then hold its
        moment-matched single Gaussian.
    task_clusters : ndarray of shape (n_tasks, n_components) or None
        Each training task's responsibilities under the mixture.
    task_weights : ndarray of shape (n_tasks,) or None
        Each training task's Student-t EM weight, with ``prior_df``.
    nested : NestedFit or None
        The hierarchical prior of nested tasks (see ``_nested``); ``theta0``,
        ``shape`` and ``gamma`` then hold the population mean and the tasks'
        prior about their group.
    online : OnlinePrior or None
        What moves the prior online in ``partial_fit`` (see ``_online``),
        for the methods and priors that do; None for the others.
    batch : TaskBatch or None
        The tasks' rows as this fit took them, where the estimator may ask
        for more of them (the posteriors): what a batch computes once from
        its rows (``TaskBatch.memo``) is not computed again. Not kept.
    """

    theta0: np.ndarray
    shape: np.ndarray
    gamma: float
    theta: np.ndarray
    n_iter: int
    inner_lr: np.ndarray = None
    inner_steps: int = 0
    auto_step: bool = False
    prior_kind: str = "isotropic"
    prior_scores: dict = None
    dispersion: float = None
    center: np.ndarray = None
    combined_precision: np.ndarray = None
    mixture: object = None
    task_clusters: np.ndarray = None
    task_weights: np.ndarray = None
    nested: object = None
    online: object = None
    batch: object = None

    def __post_init__(self):
        if self.center is None:
            self.center = self.theta0
        if self.combined_precision is None:
            self.combined_precision = self.precision

    @property
    def precision(self):
        """``gamma * Lambda``, the transfer term's precision."""
        return self.gamma * self.shape


class MetaMethod:
    """One way of learning the meta-knowledge (a ``method=`` of the estimators).

    Subclasses set ``name``, ``parameters`` (the estimator parameters they
    read besides those all methods read), ``default_max_iter``, and
    implement ``fit`` and ``adapt``.
    """

    name = None
    #: estimator parameters this method reads (others are ignored)
    parameters = frozenset()
    #: ... and those it reads besides for a network base estimator
    network_parameters = frozenset()
    #: whether it meta-trains networks (non-convex inner problems)
    networks = False
    #: whether ``adapt`` returns the exact minimizer of each task's inner
    #: problem (rather than a fixed number of steps toward it): the Laplace
    #: posteriors are then those of the fitted prior (for a linear base
    #: estimator: see ``exact_for``)
    exact = False
    default_max_iter = None

    def __init__(self, settings):
        self.settings = settings

    @property
    def max_iter(self):
        max_iter = self.settings.max_iter
        return self.default_max_iter if max_iter is None else int(max_iter)

    def used_parameters(self, network):
        """The estimator parameters read, for a network base estimator or not."""
        return self.parameters | (self.network_parameters if network else set())

    def exact_for(self, problem):
        """Whether ``adapt`` solves the inner problems of ``problem`` exactly.

        A network's inner problem is not convex: every method adapts it by
        ``inner_steps`` gradient steps, whatever it does for linear models.
        """
        return self.exact and not problem.is_network

    def check(self, settings):
        """Raise a ValueError naming settings this method cannot honour."""

    def check_problem(self, problem):
        """Raise a ValueError if this method cannot learn on ``problem``."""
        if problem.is_network and not self.networks:
            raise ValueError(
                f"method={self.name!r} solves every task's convex problem "
                "exactly; a network's is not convex. Meta-train networks with "
                "method='maml', 'metasgd', 'reptile' or 'imaml'."
            )

    def fit(self, batch, problem, prior_mean=None, *, single_task=False):
        """Learn the meta-knowledge from ``batch``; returns a :class:`MetaFit`.

        ``prior_mean`` is a given prior mean (parameter transfer), or None to
        learn it; ``single_task`` says that the batch is one task fitted
        without task identities.
        """
        raise NotImplementedError

    def single_task_fit(self, fitted, problem):
        """``fitted``, the base estimator's own fit of a single task, with
        what this method's adaptation reads (e.g. its initial step sizes)."""
        return fitted

    def adapt(self, batch, problem, fitted, labels=None):
        """Parameters of every task of ``batch`` adapted from ``fitted``.

        ``fitted`` is a :class:`MetaFit` (its ``theta`` is not used); only
        ``n_jobs`` is read from the current settings. ``labels``, the tasks'
        labels in the batch's order (or None), name tasks in warnings.
        """
        raise NotImplementedError
