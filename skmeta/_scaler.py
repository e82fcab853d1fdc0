"""Per-task standardisation with statistics shrunk toward the population."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils._set_output import _get_output_config
from sklearn.utils.validation import check_is_fitted

from . import _niw
from ._task_input import check_unsupervised_input, task_column_position
from ._validation import encode_tasks, is_dataframe, lookup_tasks

_TASKS_REQUESTED = {"tasks": True}


class TaskScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardise features task by task, with empirical Bayes shrinkage.

    Like :class:`~sklearn.preprocessing.StandardScaler` applied to every
    task separately, except that a task's mean and variance of each feature
    are shrunk toward the population's, as much as its number of rows and
    the spread between tasks call for: a task with 3 rows does not get a
    wild scale. For each feature, the tasks' means ``m_t`` and variances
    ``sigma_t**2`` follow the conjugate Normal-scaled-inverse-chi-squared
    model

    ``sigma_t**2 ~ Scale-inv-chi2(nu0, s0**2)``,
    ``m_t | sigma_t**2 ~ N(mu0, sigma_t**2 / kappa0)``,

    whose hyper-parameters are learned across tasks by empirical Bayes: they
    maximize the marginal likelihood plus a weak hyperprior on ``s0**2``
    (worth one task), which is :class:`~skmeta.MetaGaussianDensity`'s fit
    in one dimension, feature by feature. A task with
    ``n`` rows, mean ``xbar`` and sum of squares ``SS`` is then centred on
    and scaled by

    ``mean = (kappa0 mu0 + n xbar) / (kappa0 + n)``,
    ``var = (nu0 s0**2 + SS + kappa0 n / (kappa0 + n) (xbar - mu0)**2)
    / (nu0 + n)``,

    a weighted average of the population's and the task's own statistics
    with weights ``kappa0`` (``nu0``) and ``n``: ``kappa0`` and ``nu0`` are
    the number of rows the population is worth. ``var`` is ``1 / E[1 /
    sigma_t**2]`` under the posterior; with many rows it tends to the
    task's own ``np.var``, and without task identities (one task) the
    scaler equals ``StandardScaler``. Labels are not needed: every row,
    labelled or not, informs the statistics.

    Read more in the :ref:`User Guide <task_scaler>`.

    Parameters
    ----------
    task_column : int or str, default=None
        Column of ``X`` holding each row's task label (an integer position,
        or a name for DataFrames). It is not scaled, and is kept at its
        place in the output, so that the next step of a pipeline (e.g.
        ``MetaClassifier(task_column=...)``) can read it. Alternatively pass
        ``tasks=`` to the methods. Without any task identity all rows form
        one task.

    with_mean : bool, default=True
        Subtract each task's (shrunk) mean.

    with_std : bool, default=True
        Divide by each task's (shrunk) standard deviation.

    new_tasks : {"population", "transductive"}, default="population"
        How rows of a task not seen in ``fit`` are transformed.
        ``"population"``: with the population's statistics ``mu0`` and
        ``s0``. ``"transductive"``: with statistics computed, as for seen
        tasks, from the rows the task brings in the same ``transform`` call,
        shrunk by the learned prior; a row's output then depends on the
        other rows of its task in the batch.

    max_iter : int, default=200
        Maximum number of iterations of the empirical Bayes ascent.

    tol : float, default=1e-8
        Stop when an iteration increases the log marginal likelihood of a
        feature by less than ``tol`` per training row.

    Attributes
    ----------
    tasks_ : ndarray of shape (n_tasks,) or None
        Sorted labels of the tasks seen in ``fit``; None without tasks (the
        per-task attributes below then have one row).

    mean_ : ndarray of shape (n_tasks, n_features)
        Shrunk mean of each feature in each seen task.

    var_ : ndarray of shape (n_tasks, n_features)
        Shrunk variance of each feature in each seen task.

    scale_ : ndarray of shape (n_tasks, n_features) or None
        ``sqrt(var_)``, 1 for features constant in the training data; None
        when ``with_std=False``.

    n_samples_seen_ : ndarray of shape (n_tasks,)
        Number of rows of each seen task.

    population_mean_ : ndarray of shape (n_features,)
        ``mu0``, the prior mean of the task means.

    population_var_ : ndarray of shape (n_features,)
        ``s0**2``, the prior scale of the task variances (``1 / E[1 /
        sigma_t**2]`` under the prior).

    population_scale_ : ndarray of shape (n_features,)
        ``sqrt(population_var_)``, 1 for constant features.

    mean_prior_count_ : ndarray of shape (n_features,)
        ``kappa0``: the rows the population mean is worth (infinite for
        features constant in the training data).

    var_prior_count_ : ndarray of shape (n_features,)
        ``nu0``: the rows the population variance is worth (infinite for
        constant features).

    n_iter_ : int
        Number of empirical Bayes iterations run (a collapsed feature's
        second fit included).

    n_features_in_ : int
        Number of columns seen during fit (task column included).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen during fit, when ``X`` has string column names.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : The same without tasks.
    skmeta.MetaGaussianDensity : Per-task means and full covariances under a
        learned Normal-inverse-Wishart prior.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.preprocessing import TaskScaler
    >>> rng = np.random.RandomState(0)
    >>> tasks = np.repeat([0, 1, 2, 3], [200, 200, 200, 3])
    >>> scale, shift = np.array([1.0, 2.0, 3.0, 2.0]), np.array([0.0, 1.0, 2.0, 3.0])
    >>> X = rng.normal(size=(603, 1)) * scale[tasks, None] + shift[tasks, None]
    >>> scaler = TaskScaler().fit(X, tasks=tasks)
    >>> scaler.mean_.shape
    (4, 1)
    >>> Z = scaler.transform(X, tasks=tasks)
    >>> bool(abs(Z[tasks == 2].std() - 1) < 0.05)
    True
    >>> scaler.n_samples_seen_
    array([200, 200, 200,   3])
    """

    _parameter_constraints: dict = {
        "task_column": [Integral, str, None],
        "with_mean": ["boolean"],
        "with_std": ["boolean"],
        "new_tasks": [StrOptions({"population", "transductive"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }

    __metadata_request__fit = _TASKS_REQUESTED
    __metadata_request__transform = _TASKS_REQUESTED
    __metadata_request__inverse_transform = _TASKS_REQUESTED

    def __init__(self, *, task_column=None, with_mean=True, with_std=True,
                 new_tasks="population", max_iter=200, tol=1e-8):
        self.task_column = task_column
        self.with_mean = with_mean
        self.with_std = with_std
        self.new_tasks = new_tasks
        self.max_iter = max_iter
        self.tol = tol

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, tasks=None):
        """Learn the prior across tasks and the statistics of every task.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows of all tasks, task column included when ``task_column`` is
            set.

        y : Ignored
            Not used, present for API consistency by convention.

        tasks : array-like of shape (n_samples,), default=None
            Task label (int or str) of each row (or use ``task_column``).

        Returns
        -------
        self : object
            The fitted scaler.
        """
        X, labels = check_unsupervised_input(self, X, tasks, reset=True)
        if labels is None:
            self.tasks_ = None
            codes = np.zeros(X.shape[0], dtype=np.intp)
        else:
            self.tasks_, codes = encode_tasks(labels)
        n_tasks = 1 if self.tasks_ is None else len(self.tasks_)
        counts, means, squares = _niw.task_statistics(X, codes, n_tasks,
                                                      diagonal=True)
        X64 = np.asarray(X, dtype=np.float64)
        # exactly constant features have no scale to learn; as in
        # StandardScaler they are centred and left unscaled
        self._constant = np.ptp(X64, axis=0) == 0
        varying = ~self._constant
        n_features = X.shape[1]
        total_var = np.var(X64, axis=0)

        self.population_mean_ = X64[0].copy()
        self.population_var_ = np.zeros(n_features)
        self.mean_prior_count_ = np.full(n_features, np.inf)
        self.var_prior_count_ = np.full(n_features, np.inf)
        self.mean_ = np.broadcast_to(X64[0], (n_tasks, n_features)).copy()
        self.var_ = np.zeros((n_tasks, n_features))
        self.n_iter_ = 0
        if varying.any():
            stats = _niw.diagonal_stats(counts, means[:, varying],
                                        squares[:, varying])
            hyper = total_var[varying][:, None, None]
            result = _niw.fit_empirical_bayes(
                stats, hyper, max_iter=self.max_iter, tol=self.tol,
                owner=type(self).__name__)
            prior, collapsed = result.prior, result.collapsed
            n_iter = result.n_iter
            if collapsed.any():
                prior, collapsed, refits = self._without_flat_tasks(
                    prior, collapsed, ~_niw.tasks_without_spread(stats, hyper),
                    counts, means[:, varying], squares[:, varying],
                    total_var[varying])
                n_iter += refits
            if collapsed.any():
                columns = np.flatnonzero(varying)[collapsed]
                warnings.warn(
                    f"{type(self).__name__}: features {columns.tolist()} "
                    "(positions among the scaled columns) have no spread "
                    "within some task: their learned population variance "
                    "has collapsed, and a task or a task not seen in fit is "
                    "scaled there by a near-zero deviation.", UserWarning,
                    stacklevel=3)
            post = _niw.posterior(prior, stats)
            self.population_mean_[varying] = prior.mean[:, 0]
            self.population_var_[varying] = prior.scale[:, 0, 0] / prior.dof
            self.mean_prior_count_[varying] = prior.kappa
            self.var_prior_count_[varying] = prior.dof
            self.mean_[:, varying] = post.mean[:, :, 0].T
            self.var_[:, varying] = (post.scale[:, :, 0, 0] / post.dof).T
            self.n_iter_ = n_iter
        self.n_samples_seen_ = counts.astype(np.int64)
        self.population_scale_ = _as_scale(self.population_var_,
                                           self._constant)
        self.scale_ = (_as_scale(self.var_, self._constant) if self.with_std
                       else None)
        return self

    def _without_flat_tasks(self, prior, collapsed, spread, counts, means,
                            squares, total_var):
        """The prior of each collapsed feature learned again from the tasks
        whose rows spread along it.

        A task whose rows are equal in a feature (a sensor stuck in one
        store) makes the evidence grow without bound as the population's
        variance shrinks; with a few tasks, the floor that bounds it still
        leaves a population scale of 1e-3 of the others', by which every
        task not seen in fit is divided. Such a task says nothing of the
        spread within tasks: it is left out of that feature's fit, and its
        own posterior (which its rows still inform) follows from the
        prior learned without it, the prior's mean too. ``spread[j, t]``:
        whether task ``t``'s rows spread along feature ``j``, by the
        covariance floor's rule (``_niw.tasks_without_spread``). Returns the
        prior,
        the features still collapsed (fewer than 2 tasks with spread, or
        collapsed again) and the iterations the refits ran.
        """
        mean, kappa, dof, scale = (np.array(a, copy=True) for a in prior)
        still = collapsed.copy()
        n_iter = 0
        for j in np.flatnonzero(collapsed):
            keep = spread[j]
            if keep.sum() < 2:
                continue
            refit = _niw.fit_empirical_bayes(
                _niw.diagonal_stats(counts[keep], means[keep, j:j + 1],
                                    squares[keep, j:j + 1]),
                total_var[j:j + 1, None, None], max_iter=self.max_iter,
                tol=self.tol, owner=type(self).__name__)
            n_iter += refit.n_iter
            if refit.collapsed[0]:
                continue
            mean[j], kappa[j], dof[j], scale[j] = (
                a[0] for a in refit.prior)
            still[j] = False
        return _niw.NIWPrior(mean, kappa, dof, scale), still, n_iter

    def fit_transform(self, X, y=None, *, tasks=None):
        """Fit, then transform ``X``.

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
        X_new : ndarray or DataFrame of shape (n_samples, n_columns)
            The transformed rows, task column kept as it was.
        """
        return self.fit(X, tasks=tasks).transform(X, tasks=tasks)

    # ------------------------------------------------------------ statistics
    def _prior(self):
        varying = ~self._constant
        dof = self.var_prior_count_[varying]
        return _niw.NIWPrior(
            self.population_mean_[varying][:, None],
            self.mean_prior_count_[varying], dof,
            (dof * self.population_var_[varying])[:, None, None])

    def _row_statistics(self, features, labels):
        """Mean and scale of each row's task (and the new tasks' layout)."""
        n_samples = features.shape[0]
        if self.tasks_ is None:
            if labels is not None:
                raise ValueError(
                    f"This {type(self).__name__} was fitted without task "
                    "identities (a single task); do not pass tasks."
                )
            codes = np.zeros(n_samples, dtype=np.intp)
        elif labels is None:
            raise ValueError(
                f"This {type(self).__name__} was fitted on {len(self.tasks_)} "
                "tasks: pass tasks= or set task_column so that each row is "
                "scaled by its task's statistics."
            )
        else:
            codes = lookup_tasks(self.tasks_, labels)
        unseen = codes < 0
        seen_codes = np.where(unseen, 0, codes)
        mean = self.mean_[seen_codes]
        var = self.var_[seen_codes]
        mean[unseen] = self.population_mean_
        var[unseen] = self.population_var_
        new = None
        if unseen.any() and self.new_tasks == "transductive":
            new = self._new_task_statistics(features[unseen], labels[unseen])
            new_mean, new_var, new_codes = new[:3]
            mean[unseen] = new_mean[new_codes]
            var[unseen] = new_var[new_codes]
        return mean, _as_scale(var, self._constant), unseen, new

    def _new_task_statistics(self, rows, labels):
        """Posterior statistics of new tasks from their own rows."""
        uniques, codes = encode_tasks(labels)
        counts, means, squares = _niw.task_statistics(rows, codes, len(uniques),
                                                      diagonal=True)
        mean = np.broadcast_to(self.population_mean_, means.shape).copy()
        var = np.broadcast_to(self.population_var_, means.shape).copy()
        varying = ~self._constant
        if varying.any():
            stats = _niw.diagonal_stats(counts, means[:, varying],
                                        squares[:, varying])
            post = _niw.posterior(self._prior(), stats)
            mean[:, varying] = post.mean[:, :, 0].T
            var[:, varying] = (post.scale[:, :, 0, 0] / post.dof).T
        return mean, var, codes, counts

    # ------------------------------------------------------------- transform
    def transform(self, X, *, tasks=None):
        """Standardise each row with its task's statistics.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Rows to transform, task column included when ``task_column`` is
            set.

        tasks : array-like of shape (n_samples,), default=None
            Task labels (or use ``task_column``); see ``new_tasks`` for tasks
            not seen in ``fit``.

        Returns
        -------
        X_new : ndarray or DataFrame of shape (n_samples, n_columns)
            The standardised rows. The task column, when ``task_column`` is
            set, is kept unchanged at its place.
        """
        check_is_fitted(self)
        features, labels = check_unsupervised_input(self, X, tasks, reset=False)
        mean, scale, _, _ = self._row_statistics(features, labels)
        Z = np.asarray(features, dtype=np.float64)
        if self.with_mean:
            Z = Z - mean
        if self.with_std:
            Z = Z / scale
        return self._output(X, Z.astype(features.dtype, copy=False), labels)

    def inverse_transform(self, X, *, tasks=None):
        """Undo :meth:`transform`.

        Rows of tasks not seen in ``fit`` are mapped back with the
        statistics :meth:`transform` used: the population's, or with
        ``new_tasks="transductive"`` the ones the transformed rows of the
        task imply (pass all of them, as they came out of ``transform``).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_columns)
            Transformed rows, task column included when ``task_column`` is
            set.

        tasks : array-like of shape (n_samples,), default=None
            Task labels (or use ``task_column``).

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_columns)
            The rows in their original units, task column kept.
        """
        check_is_fitted(self)
        features, labels = check_unsupervised_input(self, X, tasks, reset=False)
        Z = np.asarray(features, dtype=np.float64)
        mean, scale, unseen, _ = self._row_statistics(features, labels)
        if unseen.any() and self.new_tasks == "transductive":
            mean[unseen], scale[unseen] = self._invert_new_tasks(
                Z[unseen], labels[unseen])
        out = Z
        if self.with_std:
            out = out * scale
        if self.with_mean:
            out = out + mean
        out = out.astype(features.dtype, copy=False)
        if self.task_column is None:
            return out
        return _insert_column(out, _column_values(X, self.task_column),
                              task_column_position(X, self.task_column))

    def _invert_new_tasks(self, Z, labels):
        """Statistics of new tasks from their transformed rows.

        ``transform`` maps a new task's rows ``x`` to ``z = (x - a mean(x))
        / scale(x)**b`` (``a = with_mean``, ``b = with_std``), its statistics
        being the posterior ones computed from ``x``. The mean and sum of
        squares of ``z`` determine them in closed form (per feature), except
        with ``with_mean=False, with_std=True`` where the scale solves a
        quadratic whose root can be ambiguous.
        """
        uniques, codes = encode_tasks(labels)
        n, z_mean, z_squares = _niw.task_statistics(Z, codes, len(uniques),
                                                    diagonal=True)
        mean = np.broadcast_to(self.population_mean_, z_mean.shape).copy()
        scale = _as_scale(
            np.broadcast_to(self.population_var_, z_mean.shape).copy(),
            self._constant)
        varying = ~self._constant
        if not varying.any():
            return mean[codes], scale[codes]
        mu0 = self.population_mean_[varying]
        kappa0 = self.mean_prior_count_[varying]
        nu0 = self.var_prior_count_[varying]
        psi0 = nu0 * self.population_var_[varying]
        n = n[:, None]
        zbar, ss = z_mean[:, varying], z_squares[:, varying]
        kappa_n, nu_n = kappa0 + n, nu0 + n
        c = kappa0 * n / kappa_n
        if self.with_mean and self.with_std:
            # xbar - mean = kappa0 (xbar - mu0) / kappa_n = s zbar
            denominator = nu_n - ss - n * kappa_n * zbar**2 / kappa0
            if np.any(denominator <= 0):
                raise ValueError(
                    "These rows of a new task are not the transform of any "
                    "rows: their spread exceeds what the shrunk statistics "
                    "allow. Pass all the task's rows, as transform returned "
                    "them."
                )
            s = np.sqrt(psi0 / denominator)
            xbar = mu0 + kappa_n * s * zbar / kappa0
            m = xbar - s * zbar
        elif self.with_mean:
            xbar = mu0 + kappa_n * zbar / kappa0
            m = xbar - zbar
            s = np.sqrt((psi0 + ss + c * (xbar - mu0) ** 2) / nu_n)
        elif self.with_std:
            # x = s z: nu_n s^2 = psi0 + s^2 ss + c (s zbar - mu0)^2
            a = nu_n - ss - c * zbar**2
            b = 2 * c * mu0 * zbar
            k = psi0 + c * mu0**2
            if np.any(a <= 0):
                raise ValueError(
                    "The transform of a new task with new_tasks="
                    "'transductive', with_mean=False and with_std=True cannot "
                    "be inverted here: two scalings of its rows give these "
                    "transformed rows. Use with_mean=True or new_tasks="
                    "'population'."
                )
            s = 2 * k / (b + np.sqrt(b**2 + 4 * a * k))
            m = mean[:, varying]  # not subtracted by transform
        else:
            return mean[codes], scale[codes]
        mean[:, varying] = m
        scale[:, varying] = s
        return mean[codes], scale[codes]

    # ---------------------------------------------------------------- output
    def _output(self, X, Z, labels):
        """``Z`` with the task column put back, in the configured container."""
        if self.task_column is None:
            return Z
        position = task_column_position(X, self.task_column)
        values = _column_values(X, self.task_column)
        dense = _get_output_config("transform", self)["dense"]
        names = list(self.get_feature_names_out())
        if dense == "pandas":
            import pandas as pd

            index = X.index if isinstance(X, pd.DataFrame) else None
            frame = pd.DataFrame(Z, index=index,
                                 columns=names[:position] + names[position + 1:])
            if isinstance(X, pd.DataFrame):
                # the column's own array: extension dtypes (category, Int64)
                # survive, which its numpy values would not keep
                values = pd.Series(X.iloc[:, position].array.copy(),
                                   index=frame.index)
            else:
                values = np.asarray(values)
            frame.insert(position, names[position], values)
            return frame
        if dense == "polars":
            import polars as pl

            columns = {name: Z[:, j] for j, name in
                       enumerate(names[:position] + names[position + 1:])}
            frame = pl.DataFrame(columns)
            return frame.insert_column(position,
                                       pl.Series(names[position], values))
        return _insert_column(Z, values, position)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _as_scale(var, constant):
    """Standard deviations, 1 for constant features (as StandardScaler)."""
    scale = np.sqrt(var)
    return np.where(constant, 1.0, scale)


def _column_values(X, task_column):
    """The task column of ``X`` as it was passed (no conversion)."""
    if is_dataframe(X):
        position = task_column_position(X, task_column)
        name = list(X.columns)[position]
        if type(X).__module__.split(".")[0] == "pandas":
            return X.iloc[:, position].to_numpy()
        return X.get_column(name).to_numpy()
    X = np.asarray(X)
    return X[:, task_column_position(X, task_column)]


def _insert_column(Z, values, position):
    """An array with ``values`` inserted as column ``position`` of ``Z``."""
    values = np.asarray(values)
    dtype = object
    if values.dtype.kind in "iufb":
        dtype = np.result_type(Z.dtype, values.dtype)
        # integer labels beyond the float's mantissa (hashed 64-bit ids)
        # would be rounded, and distinct tasks merged: kept as objects
        limit = 2 ** (np.finfo(dtype).nmant + 1) if dtype.kind == "f" else None
        if (limit is not None and values.dtype.kind in "iu" and values.size
                and (values.max() > limit or values.min() < -limit)):
            dtype = object
    out = np.empty((Z.shape[0], Z.shape[1] + 1), dtype=dtype)
    out[:, :position] = Z[:, :position]
    out[:, position] = values
    out[:, position + 1:] = Z[:, position:]
    return out
