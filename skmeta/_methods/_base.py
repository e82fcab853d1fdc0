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
    """

    theta0: np.ndarray
    shape: np.ndarray
    gamma: float
    theta: np.ndarray
    n_iter: int
    inner_lr: np.ndarray = None
    inner_steps: int = 0
    auto_step: bool = False

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
    default_max_iter = None

    def __init__(self, settings):
        self.settings = settings

    @property
    def max_iter(self):
        max_iter = self.settings.max_iter
        return self.default_max_iter if max_iter is None else int(max_iter)

    def check(self, settings):
        """Raise a ValueError naming settings this method cannot honour."""

    def fit(self, batch, problem, prior_mean=None, *, single_task=False):
        """Learn the meta-knowledge from ``batch``; returns a :class:`MetaFit`.

        ``prior_mean`` is a given prior mean (parameter transfer), or None to
        learn it; ``single_task`` says that the batch is one task fitted
        without task identities.
        """
        raise NotImplementedError

    def adapt(self, batch, problem, fitted):
        """Parameters of every task of ``batch`` adapted from ``fitted``.

        ``fitted`` is a :class:`MetaFit` (its ``theta`` is not used); only
        ``n_jobs`` is read from the current settings.
        """
        raise NotImplementedError
