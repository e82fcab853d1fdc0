"""Per-task Gaussian densities under a Normal-inverse-Wishart prior learned
across tasks (empirical Bayes), for anomaly detection from a few rows."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _niw
from ._task_input import (
    FLOAT_DTYPES,
    check_unsupervised_input,
    model_feature_names,
)
from ._validation import encode_tasks, lookup_tasks

_TASKS_REQUESTED = {"tasks": True}


# ------------------------------------------------------------------ scoring
def _model_tables(mean, kappa, dof, scale):
    """Student-t constants of K posteriors given as stacked arrays."""
    post = _niw.NIWPosterior(mean, kappa, dof, scale)
    df, loc, shape = _niw.predictive(post)
    lognorm, L_inv = _niw.student_t_tables(df, shape)
    return df, loc, lognorm, L_inv


def _score_rows(X, rows, tables):
    """Log density and squared distance of each row under its model."""
    df, loc, lognorm, L_inv = tables
    d = X.shape[1]
    X = np.asarray(X, dtype=np.float64)
    m = _niw.squared_mahalanobis(X, rows, loc, L_inv)
    return _niw.student_t_logpdf(m, df[rows], lognorm[rows], d), m


def _offsets(level, df, lognorm, d):
    """Log density at which a model's predictive tail probability is ``level``."""
    m = _niw.student_t_tail_quantile(level, df, d)
    return _niw.student_t_logpdf(m, df, lognorm, d)


def _variance_floor(X):
    """Feature variances of ``X``, zero ones replaced by a positive value.

    A zero variance (a constant column, or a single row) is replaced by the
    mean of the positive ones, or by 1 when there is none.
    """
    X = np.asarray(X, dtype=np.float64)
    var = np.var(X, axis=0)
    # a constant's variance may come out as a rounding residue (1e-34 for
    # a column of 0.1): constancy is told by the values, not by it
    positive = (var > 0) & (np.ptp(X, axis=0) > 0)
    if not np.all(positive):
        var = np.where(positive, var, var[positive].mean() if positive.any()
                       else 1.0)
    return var


def _check_varying(X, owner):
    """Refuse features that are constant over every row of ``X``."""
    if X.shape[0] < 2:
        raise ValueError(
            f"{owner} needs at least 2 samples to estimate a density, got "
            f"n_samples = {X.shape[0]}: 1 sample."
        )
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0)
    if constant.size:
        raise ValueError(
            f"{owner}: feature(s) {constant.tolist()[:10]} take one value "
            "in every training row; a Gaussian density is degenerate along "
            "them. Drop them (e.g. with sklearn.feature_selection."
            "VarianceThreshold) before fitting."
        )


# --------------------------------------------------- one task, fixed prior
class TaskGaussianDensity(OutlierMixin, BaseEstimator):
    """Gaussian density of one task under a Normal-inverse-Wishart prior.

    The mean ``m`` and covariance ``Sigma`` of the task's rows have the
    conjugate prior ``Sigma ~ IW(covariance_prior, degrees_of_freedom_prior)``
    and ``m | Sigma ~ N(mean_prior, Sigma / mean_precision_prior)``.
    :meth:`fit` computes their posterior from the rows in closed form, and
    :meth:`score_samples` is the log density of a new row under the posterior
    predictive distribution, a multivariate Student t. Lower scores are more
    abnormal.

    This is the model :meth:`MetaGaussianDensity.adapt` returns for a new
    task, with the prior learned across tasks; it is a complete estimator on
    its own (it pickles, and needs nothing from the meta-estimator).

    Read more in the :ref:`User Guide <density>`.

    Parameters
    ----------
    mean_prior : array-like of shape (n_features,), default=None
        Prior mean ``mu0`` of the task mean. None: the mean of ``X``.

    mean_precision_prior : float > 0, default=1.0
        ``kappa0``: the prior on the task mean is worth this many rows.

    covariance_prior : array-like of shape (n_features, n_features), \
            default=None
        Scale matrix ``Psi0`` of the inverse-Wishart prior on the covariance
        (symmetric positive definite). None: the diagonal of the feature
        variances of ``X`` (a zero variance being replaced by the mean of the
        others, or 1) times ``max(degrees_of_freedom_prior - n_features - 1,
        1)``, so that with the default degrees of freedom the prior mean of
        the covariance is that diagonal.

    degrees_of_freedom_prior : float, default=None
        ``nu0 > n_features - 1``: the prior on the covariance is worth
        about this many rows. None: ``n_features + 2``.

    contamination : float in (0, 0.5], default=0.1
        The proportion of outliers in the training rows: the threshold is
        set so that this fraction of them is predicted as outliers. Unused
        when ``tail_probability`` is given.

    tail_probability : float in (0, 1), default=None
        If given, a row is an outlier when its posterior predictive tail
        probability, the probability that a new row of the task is less
        likely than it, is below this value; this sets the threshold from
        the model rather than from the training rows, which is what a task
        with a handful of rows needs. :meth:`MetaGaussianDensity.adapt`
        passes the level it learned across tasks.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Posterior mean ``mu_n`` of the task mean.

    covariance_ : ndarray of shape (n_features, n_features)
        ``Psi_n / nu_n``, the inverse of the posterior mean of the precision
        matrix: the sample covariance of the rows (``1 / n`` normalisation)
        shrunk toward the prior.

    mean_precision_ : float
        ``kappa_n = mean_precision_prior + n_samples``.

    degrees_of_freedom_ : float
        ``nu_n = degrees_of_freedom_prior + n_samples``.

    mean_prior_ : ndarray of shape (n_features,)
        The prior mean used.

    covariance_prior_ : ndarray of shape (n_features, n_features)
        The prior scale matrix used.

    degrees_of_freedom_prior_ : float
        The prior degrees of freedom used.

    tail_probability_ : float
        The tail probability below which a row is an outlier.

    offset_ : float
        The log density at that tail probability:
        ``decision_function = score_samples - offset_``.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    MetaGaussianDensity : Learns the prior across many tasks.
    sklearn.covariance.EllipticEnvelope : A Gaussian outlier detector fitted
        on the rows alone.

    References
    ----------
    K. P. Murphy, "Conjugate Bayesian analysis of the Gaussian distribution",
    2007, section 9.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import TaskGaussianDensity
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(10, 2))
    >>> det = TaskGaussianDensity(mean_prior=[0, 0], covariance_prior=np.eye(2),
    ...                           degrees_of_freedom_prior=3.0).fit(X)
    >>> det.mean_.shape, det.covariance_.shape
    ((2,), (2, 2))
    >>> det.predict([[0.0, 0.0], [6.0, -6.0]])
    array([ 1, -1])
    """

    _parameter_constraints: dict = {
        "mean_prior": ["array-like", None],
        "mean_precision_prior": [Interval(Real, 0, None, closed="neither")],
        "covariance_prior": ["array-like", None],
        "degrees_of_freedom_prior": [Interval(Real, 0, None, closed="neither"),
                                     None],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "tail_probability": [Interval(Real, 0, 1, closed="neither"), None],
    }

    def __init__(
        self,
        *,
        mean_prior=None,
        mean_precision_prior=1.0,
        covariance_prior=None,
        degrees_of_freedom_prior=None,
        contamination=0.1,
        tail_probability=None,
    ):
        self.mean_prior = mean_prior
        self.mean_precision_prior = mean_precision_prior
        self.covariance_prior = covariance_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.contamination = contamination
        self.tail_probability = tail_probability

    def _resolve_prior(self, X):
        d = X.shape[1]
        if self.degrees_of_freedom_prior is None:
            dof = d + 2.0
        else:
            dof = float(self.degrees_of_freedom_prior)
            if dof <= d - 1:
                raise ValueError(
                    f"degrees_of_freedom_prior must be > n_features - 1 = "
                    f"{d - 1}; got {dof}."
                )
        if self.mean_prior is None:
            mean = np.mean(X, axis=0, dtype=np.float64)
        else:
            mean = np.asarray(self.mean_prior, dtype=np.float64)
            _check_prior_array("mean_prior", mean, (d,), "(n_features,)")
        if self.covariance_prior is None:
            scale = np.diag(_variance_floor(X)) * max(dof - d - 1, 1.0)
        else:
            scale = np.asarray(self.covariance_prior, dtype=np.float64)
            _check_prior_array("covariance_prior", scale, (d, d),
                               "(n_features, n_features)")
            # symmetric up to rounding, as a matrix rebuilt from its
            # eigendecomposition is
            tol = 1e-10 * np.abs(scale).max(initial=0.0)
            if not np.allclose(scale, scale.T, rtol=0, atol=tol) or np.any(
                    np.linalg.eigvalsh(0.5 * (scale + scale.T)) <= 0):
                raise ValueError(
                    "covariance_prior must be symmetric positive definite."
                )
            scale = 0.5 * (scale + scale.T)
        return _niw.NIWPrior(mean[None], np.array([float(
            self.mean_precision_prior)]), np.array([dof]), scale[None])

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Compute the posterior of the task's mean and covariance.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The task's rows, taken as normal.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = validate_data(self, X, dtype=FLOAT_DTYPES)
        prior = self._resolve_prior(X)
        codes = np.zeros(X.shape[0], dtype=np.intp)
        stats = _niw.full_stats(*_niw.task_statistics(X, codes, 1))
        post = _niw.posterior(prior, stats)
        self._set_fitted(prior, post)
        tables = self._tables()
        if self.tail_probability is None:
            _, m = _score_rows(X, codes, tables)
            tails = _niw.student_t_tail(m, tables[0][0], X.shape[1])
            level = float(np.percentile(tails, 100.0 * self.contamination))
        else:
            level = float(self.tail_probability)
        self._set_threshold(level, tables)
        return self

    def _set_fitted(self, prior, post):
        self.mean_prior_ = prior.mean[0]
        self.covariance_prior_ = prior.scale[0]
        self.degrees_of_freedom_prior_ = float(prior.dof[0])
        self.mean_ = post.mean[0, 0]
        self.mean_precision_ = float(post.kappa[0, 0])
        self.degrees_of_freedom_ = float(post.dof[0, 0])
        self.covariance_ = post.scale[0, 0] / self.degrees_of_freedom_

    def _set_threshold(self, level, tables):
        self.tail_probability_ = level
        df, _, lognorm, _ = tables
        self.offset_ = float(_offsets(level, df, lognorm, self.mean_.shape[0])[0])

    def _tables(self):
        return _model_tables(
            self.mean_[None], np.array([self.mean_precision_]),
            np.array([self.degrees_of_freedom_]),
            (self.covariance_ * self.degrees_of_freedom_)[None])

    def score_samples(self, X):
        """Log density of each row under the posterior predictive.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Log density; the lower, the more abnormal.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        rows = np.zeros(X.shape[0], dtype=np.intp)
        return _score_rows(X, rows, self._tables())[0]

    def decision_function(self, X):
        """Log density minus ``offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
            ``score_samples(X) - offset_``.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Predict inliers (+1) and outliers (-1).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            +1 for inliers, -1 for outliers.
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def score(self, X, y=None):
        """Mean log density of the rows under the posterior predictive.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        score : float
            Mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))


# ----------------------------------------------------- many tasks, learned
class MetaGaussianDensity(OutlierMixin, BaseEstimator):
    """Gaussian density of every task under a prior learned across tasks.

    Each task ``t`` (a machine, a sensor) has normal rows
    ``x ~ N(m_t, Sigma_t)`` with its own mean and covariance, drawn from a
    Normal-inverse-Wishart prior shared by the tasks::

        Sigma_t ~ IW(Psi0, nu0),    m_t | Sigma_t ~ N(mu0, Sigma_t / kappa0).

    :meth:`fit` learns ``(mu0, kappa0, nu0, Psi0)`` by empirical Bayes:
    it maximises the sum over tasks of the log marginal likelihood of each
    task's rows, which is closed form given the hyper-parameters, by a block
    coordinate ascent in which every step increases it: a
    minorise-maximise step for ``mu0``, an EM step for ``Psi0``, and exact
    one-dimensional maximisations (safeguarded Newton) for ``kappa0`` and
    for ``nu0`` jointly with the overall scale of ``Psi0``, all computed for
    every task at once and accelerated by SQUAREM. A weak Wishart
    hyperprior on ``Psi0``, worth one task and centred on the feature
    variances, keeps it positive definite when the tasks alone cannot (one
    task). Where a task's rows have no spread along some direction
    (identical rows, a feature constant within the task, columns that sum
    to a constant), the marginal likelihood grows without bound as ``Psi0``
    shrinks along it; the fit then adds ``1e-6`` times the features' pooled
    within-task variances to that task's covariance (as the ``reg_covar``
    of :class:`~sklearn.mixture.GaussianMixture`), and warns where the
    learned prior collapses there. Each task's posterior is then closed
    form, and a row is scored by its log density under its task's posterior
    predictive distribution, a multivariate Student t; a task not seen in
    ``fit`` gets the prior predictive. A task with few rows is thus scored
    with a mean and covariance shrunk toward the population's, as far as the
    tasks differ.

    Outliers are rows whose predictive tail probability (the probability
    that a new normal row of their task is less likely) is below a level
    common to all tasks, ``tail_probability_``, set so that a fraction
    ``contamination`` of the training rows are outliers. Thresholding tail
    probabilities rather than densities makes the same level mean the same
    thing for a narrow and a wide task.

    Read more in the :ref:`User Guide <density>`.

    Parameters
    ----------
    task_column : int or str, default=None
        Column of ``X`` holding each row's task label (an integer position,
        or a name for DataFrames); it is removed before the model sees the
        features. Alternatively pass ``tasks=`` to the methods. Without any
        task identity all rows form one task.

    contamination : float in (0, 0.5], default=0.1
        The proportion of outliers in the training rows, used to set the
        threshold of :meth:`predict`.

    max_iter : int, default=200
        Maximum number of iterations of the empirical Bayes ascent.

    tol : float, default=1e-8
        Stop when an iteration increases the empirical Bayes objective by
        less than ``tol`` per training row.

    verbose : int, default=0
        Print the objective at every iteration when positive.

    Attributes
    ----------
    tasks_ : ndarray of shape (n_tasks,) or None
        Sorted labels of the tasks seen in ``fit``; None without tasks (the
        per-task attributes below then have one row).

    mean_prior_ : ndarray of shape (n_features,)
        ``mu0``, the prior mean of the task means.

    mean_precision_prior_ : float
        ``kappa0``: the covariance of the task means is ``Sigma_t / kappa0``.

    degrees_of_freedom_prior_ : float
        ``nu0``, the degrees of freedom of the inverse-Wishart prior.

    covariance_prior_ : ndarray of shape (n_features, n_features)
        ``Psi0``, its scale matrix; ``Psi0 / (nu0 - n_features - 1)`` is the
        prior mean of a task covariance when ``nu0 > n_features + 1``.

    means_ : ndarray of shape (n_tasks, n_features)
        Posterior mean of each seen task's mean.

    covariances_ : ndarray of shape (n_tasks, n_features, n_features)
        ``Psi_n / nu_n`` of each seen task: the inverse of the posterior mean
        of its precision matrix.

    mean_precision_ : ndarray of shape (n_tasks,)
        ``kappa_n = kappa0 + n_t`` of each seen task.

    degrees_of_freedom_ : ndarray of shape (n_tasks,)
        ``nu_n = nu0 + n_t`` of each seen task.

    tail_probability_ : float
        The predictive tail probability below which a row is an outlier.

    offset_ : float or ndarray of shape (n_tasks,)
        The log density at that tail probability, per seen task (a float
        without tasks): ``decision_function = score_samples - offset_`` of
        the row's task.

    log_evidence_ : float
        Sum over tasks of the log marginal likelihood at the learned prior.

    n_iter_ : int
        Number of empirical Bayes iterations run.

    n_features_in_ : int
        Number of columns seen during fit (task column included).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen during fit, when ``X`` has string column names.

    See Also
    --------
    TaskGaussianDensity : The model of one task, returned by :meth:`adapt`.
    sklearn.covariance.EllipticEnvelope : One Gaussian outlier detector.
    sklearn.mixture.BayesianGaussianMixture : The same conjugate prior, on
        mixture components instead of tasks.

    References
    ----------
    K. P. Murphy, "Conjugate Bayesian analysis of the Gaussian distribution",
    2007, section 9.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import MetaGaussianDensity
    >>> from skmeta.datasets import make_meta_anomalies
    >>> X, y, machines = make_meta_anomalies(n_tasks=50, n_samples_per_task=20,
    ...                                      n_features=3, random_state=0)
    >>> det = MetaGaussianDensity().fit(X[y == 1], tasks=machines[y == 1])
    >>> det.means_.shape, det.covariances_.shape
    ((50, 3), (50, 3, 3))
    >>> det.predict(X[:5], tasks=machines[:5]).shape
    (5,)
    >>> new = det.adapt(X[:10])  # a detector for a new machine, from 10 rows
    >>> type(new).__name__
    'TaskGaussianDensity'
    """

    _parameter_constraints: dict = {
        "task_column": [Integral, str, None],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    __metadata_request__fit = _TASKS_REQUESTED
    __metadata_request__predict = _TASKS_REQUESTED
    __metadata_request__decision_function = _TASKS_REQUESTED
    __metadata_request__score = _TASKS_REQUESTED

    def __init__(self, *, task_column=None, contamination=0.1, max_iter=200,
                 tol=1e-8, verbose=0):
        self.task_column = task_column
        self.contamination = contamination
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, tasks=None):
        """Learn the prior across tasks and the posterior of every task.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows of all tasks, task column included when ``task_column`` is
            set. They are taken as normal, up to ``contamination``.

        y : Ignored
            Not used, present for API consistency by convention.

        tasks : array-like of shape (n_samples,), default=None
            Task label (int or str) of each row (or use ``task_column``).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        owner = type(self).__name__
        X, labels = check_unsupervised_input(self, X, tasks, reset=True)
        _check_varying(X, owner)
        if labels is None:
            self.tasks_ = None
            codes = np.zeros(X.shape[0], dtype=np.intp)
        else:
            self.tasks_, codes = encode_tasks(labels)
        n_tasks = 1 if self.tasks_ is None else len(self.tasks_)
        stats = _niw.full_stats(*_niw.task_statistics(X, codes, n_tasks))
        hyper_cov = np.diag(np.var(np.asarray(X, dtype=np.float64), axis=0))
        result = _niw.fit_empirical_bayes(stats, hyper_cov[None],
                                          max_iter=self.max_iter, tol=self.tol,
                                          verbose=self.verbose, owner=owner)
        if result.collapsed[0]:
            warnings.warn(
                f"{owner}: the rows of some tasks have no spread along some "
                "direction of the features (identical rows, a feature "
                "constant within a task, or columns that sum to a constant): "
                "the learned prior's typical task covariance has collapsed "
                "along it, and rows off it score as far outliers, in tasks "
                "not seen in fit too. Drop or combine such columns, or leave "
                "such tasks out.", UserWarning, stacklevel=3)
        prior = result.prior
        self.mean_prior_ = prior.mean[0]
        self.mean_precision_prior_ = float(prior.kappa[0])
        self.degrees_of_freedom_prior_ = float(prior.dof[0])
        self.covariance_prior_ = prior.scale[0]
        post = _niw.posterior(prior, stats)
        self.means_ = post.mean[0]
        self.mean_precision_ = post.kappa[0]
        self.degrees_of_freedom_ = post.dof[0]
        self.covariances_ = post.scale[0] / post.dof[0][:, None, None]
        self.log_evidence_ = float(_niw.log_evidence(prior, stats).sum())
        self.n_iter_ = result.n_iter

        models = np.arange(n_tasks)
        tables = self._tables(models)
        _, m = _score_rows(X, codes, tables)
        d = X.shape[1]
        tails = _niw.student_t_tail(m, tables[0][codes], d)
        self.tail_probability_ = float(
            np.percentile(tails, 100.0 * self.contamination))
        offsets = _offsets(self.tail_probability_, tables[0], tables[2], d)
        self.offset_ = float(offsets[0]) if self.tasks_ is None else offsets
        return self

    # ------------------------------------------------------------ models
    def _n_tasks(self):
        return 1 if self.tasks_ is None else len(self.tasks_)

    def _tables(self, models):
        """Student-t constants of the given models; index ``n_tasks`` is the
        prior predictive of unseen tasks."""
        n_tasks = self._n_tasks()
        seen = np.minimum(models, n_tasks - 1)
        unseen = (models == n_tasks)[:, None]
        mean = np.where(unseen, self.mean_prior_, self.means_[seen])
        kappa = np.where(unseen[:, 0], self.mean_precision_prior_,
                         self.mean_precision_[seen])
        dof = np.where(unseen[:, 0], self.degrees_of_freedom_prior_,
                       self.degrees_of_freedom_[seen])
        scale = np.where(unseen[:, :, None], self.covariance_prior_,
                         self.covariances_[seen]
                         * self.degrees_of_freedom_[seen][:, None, None])
        return _model_tables(mean, kappa, dof, scale)

    def _row_models(self, labels, n_samples):
        """Model of each row: its task's index, ``n_tasks`` when unseen."""
        if self.tasks_ is None:
            if labels is not None:
                raise ValueError(
                    f"This {type(self).__name__} was fitted without task "
                    "identities (a single task); do not pass tasks."
                )
            return np.zeros(n_samples, dtype=np.intp)
        if labels is None:
            raise ValueError(
                f"This {type(self).__name__} was fitted on {len(self.tasks_)} "
                "tasks: pass tasks= or set task_column so that each row is "
                "scored by its task's model."
            )
        codes = lookup_tasks(self.tasks_, labels)
        return np.where(codes < 0, len(self.tasks_), codes)

    def _scores(self, X, tasks):
        """``(log density, offset)`` of each row."""
        check_is_fitted(self)
        X, labels = check_unsupervised_input(self, X, tasks, reset=False)
        rows = self._row_models(labels, X.shape[0])
        used, local = np.unique(rows, return_inverse=True)
        tables = self._tables(used)
        scores, _ = _score_rows(X, local.ravel(), tables)
        offsets = _offsets(self.tail_probability_, tables[0], tables[2],
                           X.shape[1])
        return scores, offsets[local.ravel()]

    # ---------------------------------------------------------- scoring
    def score_samples(self, X, *, tasks=None):
        """Log density of each row under its task's posterior predictive.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows to score, task column included when ``task_column`` is set.

        tasks : array-like of shape (n_samples,), default=None
            Task labels (or use ``task_column``); a task not seen in ``fit``
            is scored by the prior predictive.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Log density (a multivariate Student t); the lower, the more
            abnormal. Densities of different tasks are on different scales:
            compare tasks with :meth:`decision_function`.
        """
        return self._scores(X, tasks)[0]

    def decision_function(self, X, *, tasks=None):
        """Log density minus the threshold of the row's task.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows to score, task column included when ``task_column`` is set.

        tasks : array-like of shape (n_samples,), default=None
            Task labels (or use ``task_column``); unseen tasks use the prior.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
            Negative for outliers: rows whose predictive tail probability is
            below ``tail_probability_``.
        """
        scores, offsets = self._scores(X, tasks)
        return scores - offsets

    def predict(self, X, *, tasks=None):
        """Predict inliers (+1) and outliers (-1), each row by its task.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows to classify, task column included when ``task_column`` is
            set.

        tasks : array-like of shape (n_samples,), default=None
            Task labels (or use ``task_column``); unseen tasks use the prior.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            +1 for inliers, -1 for outliers.
        """
        return np.where(self.decision_function(X, tasks=tasks) >= 0, 1, -1)

    def fit_predict(self, X, y=None, *, tasks=None):
        """Fit, then predict inliers (+1) and outliers (-1) of ``X``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows of all tasks.

        y : Ignored
            Not used, present for API consistency by convention.

        tasks : array-like of shape (n_samples,), default=None
            Task labels (or use ``task_column``).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            +1 for inliers, -1 for outliers.
        """
        return self.fit(X, tasks=tasks).predict(X, tasks=tasks)

    def score(self, X, y=None, *, tasks=None):
        """Mean log density of the rows, each under its task's predictive.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows to score.

        y : Ignored
            Not used, present for API consistency by convention.

        tasks : array-like of shape (n_samples,), default=None
            Task labels (or use ``task_column``).

        Returns
        -------
        score : float
            Mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X, tasks=tasks)))

    # ------------------------------------------------------------ adapt
    def adapt(self, X, *, tasks=None):
        """Fit a new task from its rows under the learned prior.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Normal rows of the new task, task column included when
            ``task_column`` is set.

        tasks : array-like of shape (n_samples,), default=None
            The task's label on every row, when task identities are given
            this way (all equal: use :meth:`adapt_tasks` for several tasks).

        Returns
        -------
        estimator : TaskGaussianDensity
            A fitted :class:`TaskGaussianDensity` with the learned prior and
            ``tail_probability_``. The prior itself does not change.

        See Also
        --------
        adapt_tasks : Several new tasks at once.
        """
        models = self._adapted(X, tasks)
        if len(models) > 1:
            labels = list(models)
            raise ValueError(
                f"adapt fits one task, but the rows hold {len(labels)} tasks "
                f"({labels[:5]}...); use adapt_tasks for several.")
        return next(iter(models.values()))

    def adapt_tasks(self, X, *, tasks=None):
        """Fit several new tasks from their rows under the learned prior.

        As :meth:`adapt`, each task from its own rows, all in one batch.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Normal rows of the new tasks, task column included when
            ``task_column`` is set.

        tasks : array-like of shape (n_samples,), default=None
            Task label of each row (or use ``task_column``).

        Returns
        -------
        estimators : dict
            Maps each task label to its fitted :class:`TaskGaussianDensity`.
        """
        if self.task_column is None and tasks is None:
            raise ValueError(
                "adapt_tasks needs task identities: pass tasks= or set "
                "task_column (adapt fits a single task).")
        return self._adapted(X, tasks)

    def _adapted(self, X, tasks):
        """Each new task's model, keyed by its label (None for rows without
        task identities)."""
        check_is_fitted(self)
        X, labels = check_unsupervised_input(self, X, tasks, reset=False)
        if labels is None:
            uniques, codes = None, np.zeros(X.shape[0], dtype=np.intp)
        else:
            uniques, codes = encode_tasks(labels)
        n_new = 1 if uniques is None else len(uniques)
        prior = _niw.NIWPrior(
            self.mean_prior_[None], np.array([self.mean_precision_prior_]),
            np.array([self.degrees_of_freedom_prior_]),
            self.covariance_prior_[None])
        stats = _niw.full_stats(*_niw.task_statistics(X, codes, n_new))
        post = _niw.posterior(prior, stats)
        tables = _model_tables(post.mean[0], post.kappa[0], post.dof[0],
                               post.scale[0])
        offsets = _offsets(self.tail_probability_, tables[0], tables[2],
                           X.shape[1])
        names = model_feature_names(self)
        models = [self._task_model(prior, post, k, offsets[k], names)
                  for k in range(n_new)]
        keys = [None] if uniques is None else uniques.tolist()
        return dict(zip(keys, models))

    def _task_model(self, prior, post, k, offset, names):
        model = TaskGaussianDensity(
            mean_prior=self.mean_prior_,
            mean_precision_prior=self.mean_precision_prior_,
            covariance_prior=self.covariance_prior_,
            degrees_of_freedom_prior=self.degrees_of_freedom_prior_,
            contamination=self.contamination,
            tail_probability=self.tail_probability_,
        )
        model._set_fitted(prior, _niw.NIWPosterior(
            post.mean[:, k:k + 1], post.kappa[:, k:k + 1],
            post.dof[:, k:k + 1], post.scale[:, k:k + 1]))
        model.tail_probability_ = self.tail_probability_
        model.offset_ = float(offset)
        model.n_features_in_ = self.mean_prior_.shape[0]
        if names is not None:
            model.feature_names_in_ = names
        return model


def _check_prior_array(name, value, shape, shape_named):
    """Raise, naming what is wrong, unless ``value`` is finite of ``shape``."""
    if value.shape != shape:
        raise ValueError(
            f"{name} must be an array of shape {shape_named} = {shape}; got "
            f"shape {value.shape}.")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite; got NaN or infinite values.")
