"""MetaClassifier and MetaRegressor: validation, task encoding, orchestration.

The estimators never loop over tasks in Python: rows are sorted by task once
and every task is solved by one kernel call (see :mod:`skmeta._kernels`).
"""

import copy
import warnings
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score
from sklearn.utils import assert_all_finite, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._dask import computed, dask_aware, is_dask_collection
from ._families import family_for
from ._kernels._calls import decision_values
from ._kernels._codes import POISSON, SQUARED
from ._kernels._layout import make_batch
from ._methods import METHODS, MetaFit, MetaSettings
from ._methods._inner import (
    covariances_refused,
    posterior_covariances,
    solve_exactly,
)
from ._methods._mixture import PriorMixture, adapt_mixture
from ._methods._nested import Tree, adapt_nested
from ._methods._online import update_online
from ._methods._prior import Prior, noise_variance_floor, task_scales
from ._methods._statistics import OnlinePrior
from ._predictive import (
    logit_covariances,
    posterior_decision,
    posterior_log_proba,
    posterior_proba,
)
from ._semi_supervised import (
    UNLABELED,
    FeatureModel,
    TaskRows,
    adapt_with_unlabeled,
    fit_with_unlabeled,
    labeled_targets,
    unlabeled_rows,
)
from ._stack import user_stacklevel
from ._validation import (
    NestedLabels,
    add_tasks,
    check_any_task_labels,
    check_table,
    check_task_labels,
    encode_nested,
    encode_tasks,
    lookup_nested,
    lookup_tasks,
    nested_label_array,
    split_task_column,
    split_task_columns,
    without_weightless_tasks,
)

# the parameters that only some methods read (each method lists its own)
_METHOD_PARAMETERS = frozenset({
    "inner_steps", "inner_lr", "first_order", "meta_lr", "meta_batch_size",
    "query_fraction", "tol", "random_effects", "adapt_layers"})
_TASKS_REQUESTED = {"tasks": True}


def _in_memory(params):
    """Task parameters as a NumPy array; a Dask array (a fit on Dask
    collections) computed from the cluster that holds its blocks."""
    if not is_dask_collection(params):
        return np.asarray(params)
    try:
        return np.asarray(params.compute())
    except Exception as error:
        # Dask names only a missing block of its graph
        raise RuntimeError(
            "task_params_ could not be computed from the Dask cluster this "
            "model was fitted on (its client closed, or its workers lost the "
            "blocks): a fit on Dask collections keeps them there. Keep them "
            "with the model while its client is connected: pickle it (which "
            "computes them), or set model.task_params_ = "
            "model.task_params_.compute().") from error


def _warn_if_levels_do_not_branch(tree, names=None):
    """Warn where every group of a level holds a single member.

    Such a level and the one below it describe the same nodes, so their two
    spreads cannot be told apart (EM splits the spread between them
    arbitrarily). It is what labels given innermost first look like (a
    store outermost, its region below it), the easiest mistake to make with
    nested labels, though also valid input (a flat prior in disguise).
    ``names`` are the levels' task columns, outermost first, if any.
    """
    def named(level):
        if names is None:
            return f"column {level} of tasks"
        return f"task column {names[level]!r}"

    # ``parents[l]`` maps level ``l + 1``'s nodes to level ``l``'s; every
    # group has at least one member, so equal counts mean one each
    single = [level for level, parents in enumerate(tree.parents[1:], start=1)
              if len(parents) == tree.sizes[level] and tree.sizes[level] > 1]
    if single:
        pairs = "; ".join(f"every group of {named(level - 1)} holds a single "
                          f"member of {named(level)}" for level in single)
        warnings.warn(
            f"{pairs}: such levels' spreads cannot be told apart. Nested "
            "task labels are given outermost level first (tasks=np.c_[region, "
            "store]); if these are the other way round, reverse their order.",
            UserWarning, stacklevel=6)


def _path_of_labels(value):
    """A path of nested labels as a tuple: a tuple, a list or a row of
    ``tasks_`` / ``groups_`` (a 1-D array); None for anything else."""
    if isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return tuple(value.tolist() if value.dtype.kind != "O" else value)
    return None


def _without_weightless_tasks(X, y, sample_weight, labels):
    """The rows less those of tasks whose rows all have weight 0 (see
    :func:`._validation.without_weightless_tasks`)."""
    keep = without_weightless_tasks(labels, sample_weight)
    if keep is None:
        return X, y, sample_weight, labels
    labels = (NestedLabels([column[keep] for column in labels.columns])
              if isinstance(labels, NestedLabels) else labels[keep])
    return X[keep], np.asarray(y)[keep], sample_weight[keep], labels


class _BaseMetaEstimator(MetaEstimatorMixin, BaseEstimator):
    """Shared machinery of :class:`MetaClassifier` and :class:`MetaRegressor`."""

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "method": [StrOptions(set(METHODS))],
        "gamma": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "prior": [StrOptions({"auto", "isotropic", "diagonal", "full",
                              "lowrank", "mixture", "pooled"})],
        "n_prior_components": [Interval(Integral, 1, None, closed="left"),
                               StrOptions({"auto"})],
        "prior_df": [Interval(Real, 0, None, closed="neither"), None],
        "random_effects": [None, StrOptions({"auto"}), "array-like"],
        "task_column": [Integral, str, list, None],
        "prior_estimator": [HasMethods(["fit", "predict"]), None],
        "inner_steps": [Interval(Integral, 0, None, closed="left")],
        "inner_lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "first_order": ["boolean"],
        "adapt_layers": [StrOptions({"all", "output"})],
        "meta_lr": [Interval(Real, 0, None, closed="neither"), None],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "query_fraction": [Interval(Real, 0, 1, closed="right")],
        "max_iter": [Interval(Integral, 1, None, closed="left"), None],
        # a relative change: from 1 on, the first iterate, the prior mean at
        # its starting point, would pass for converged (and tol**2, in the
        # stationarity test, must stay a finite float)
        "tol": [Interval(Real, 0, 1, closed="left")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "keep_task_params": ["boolean"],
    }

    # `tasks` is what these estimators are about: requested by default, so
    # that metadata routing passes it without an explicit set_*_request call
    __metadata_request__fit = _TASKS_REQUESTED
    __metadata_request__partial_fit = _TASKS_REQUESTED
    __metadata_request__predict = _TASKS_REQUESTED
    __metadata_request__score = _TASKS_REQUESTED

    _is_classifier = False

    # the hyper-parameters, keyword-only as scikit-learn's estimators have them
    def __init__(  # noqa: PLR0913
        self,
        estimator=None,
        *,
        method="proximal",
        gamma="auto",
        prior="auto",
        n_prior_components="auto",
        prior_df=None,
        random_effects="auto",
        task_column=None,
        prior_estimator=None,
        inner_steps=5,
        inner_lr="auto",
        first_order=False,
        adapt_layers="all",
        meta_lr=None,
        meta_batch_size=32,
        query_fraction=0.5,
        max_iter=None,
        tol=1e-4,
        n_jobs=None,
        random_state=None,
        verbose=0,
        keep_task_params=True,
    ):
        self.estimator = estimator
        self.method = method
        self.gamma = gamma
        self.prior = prior
        self.n_prior_components = n_prior_components
        self.prior_df = prior_df
        self.random_effects = random_effects
        self.task_column = task_column
        self.prior_estimator = prior_estimator
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.first_order = first_order
        self.adapt_layers = adapt_layers
        self.meta_lr = meta_lr
        self.meta_batch_size = meta_batch_size
        self.query_fraction = query_fraction
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.keep_task_params = keep_task_params

    def set_params(self, **params):
        """Set the parameters of this estimator (see ``BaseEstimator``).

        The base estimator's own parameters (``estimator__C``) need an
        estimator to set them on: with ``estimator=None`` (the default one),
        pass it explicitly, e.g. ``estimator=LogisticRegression()``.
        """
        nested = sorted(key for key in params if key.startswith("estimator__"))
        if nested and params.get("estimator", self.estimator) is None:
            default = type(self._base_estimator()).__name__
            raise ValueError(
                f"{', '.join(nested)} sets a parameter of the base estimator, "
                f"but estimator=None (the default {default}()) has none to "
                f"set: pass estimator={default}() explicitly to tune its "
                "parameters.")
        return super().set_params(**params)

    # ------------------------------------------------------------------ input
    def _base_estimator(self):
        raise NotImplementedError

    def _check_input(self, X, y="no_validation", tasks=None, *, reset):
        """Validate ``X`` (and ``y``); return ``(features, y, task_labels)``.

        ``n_features_in_`` and ``feature_names_in_`` describe ``X`` as passed,
        task column included; the models see the features without it.
        """
        dtype = [np.float64, np.float32]
        regression = not self._is_classifier
        predicting = isinstance(y, str) and y == "no_validation"
        if self.task_column is None:
            if predicting:
                X = validate_data(self, X, accept_sparse="csr", dtype=dtype,
                                  reset=reset)
                y = None
            else:
                X, y = validate_data(self, X, y, accept_sparse="csr",
                                     dtype=dtype, y_numeric=regression,
                                     reset=reset)
            labels = None
            if tasks is not None:
                labels = check_any_task_labels(tasks, X.shape[0])
            return X, y, labels
        if tasks is not None:
            raise ValueError(
                "Pass task identities either through task_column or through "
                "tasks=, not both."
            )
        check_table(X)
        if not predicting and y is None:
            # the error scikit-learn gives for a missing target
            validate_data(self, X, y, skip_check_array=True, reset=reset)
        validate_data(self, X, reset=reset, skip_check_array=True)
        if isinstance(self.task_column, list):
            features, labels = split_task_columns(X, self.task_column)
        else:
            features, labels = split_task_column(X, self.task_column)
        features = check_array(features, accept_sparse="csr", dtype=dtype,
                               input_name="X")
        if predicting:
            y = None
        else:
            y = column_or_1d(y, warn=True)
            if regression:
                y = check_array(y, ensure_2d=False, dtype=np.float64,
                                input_name="y")
            else:
                # as validate_data checks a classifier's target: before its
                # classes are read (a NaN cast to int warned first)
                assert_all_finite(y, input_name="y")
            if y.shape[0] != features.shape[0]:
                raise ValueError(
                    f"X has {features.shape[0]} samples but y has {y.shape[0]}."
                )
        if not isinstance(labels, NestedLabels):
            labels = check_task_labels(labels, features.shape[0],
                                       name="task column")
        return features, y, labels

    def _model_feature_names(self):
        """Feature names the per-task models see (task column removed)."""
        names = getattr(self, "feature_names_in_", None)
        if names is None or self.task_column is None:
            return names
        names = list(names)
        columns = (self.task_column if isinstance(self.task_column, list)
                   else [self.task_column])
        drop = {names.index(c) if c in names else int(c) % len(names)
                for c in columns}
        return np.asarray([n for i, n in enumerate(names) if i not in drop],
                          dtype=object)

    def _encode_y(self, y, known_only=False):
        """Targets as the kernels take them (class indices for classifiers)."""
        raise NotImplementedError

    def _n_classes(self):
        return None

    # ------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, tasks=None, sample_weight=None):
        """Meta-train on all tasks, and fit every task seen.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Training data, task column included when ``task_column`` is set.
            A Dask DataFrame or 2-D Dask array (with ``y``, ``tasks`` and
            ``sample_weight`` Dask collections of the same partitions), each
            task whole in one partition (see :func:`repartition_by_task`), is
            fitted with its data kept on the cluster (every method, linear
            base estimators), and ``task_params_`` is then a Dask array;
            see :ref:`scaling-out`.
        y : array-like of shape (n_samples,)
            Targets; for a :class:`MetaClassifier` with ``unlabeled_weight``
            set, ``-1`` marks an unlabeled row.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), \
default=None
            Task label (int or str; bytes are decoded as UTF-8) of each
            sample, or one column of labels per level for nested tasks,
            outermost first (``np.c_[region, store]``: a hierarchical prior,
            see :ref:`nested_tasks`). When neither ``tasks`` nor
            ``task_column`` is given, all samples form a single task: the base
            estimator's own fit (nothing to transfer: ``gamma_`` is 0), or,
            with ``prior_estimator``, its fit with the transfer term toward
            that estimator's parameters.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights, in the base estimator's objective.
            A weight counts as that many repetitions of the row, as in
            scikit-learn: in the evidence that learns the prior too, so
            weights scaled by ``c`` learn the prior of every row repeated
            ``c`` times (a weaker prior where ``c > 1``), even where the base
            estimator's own fit does not change (``LinearRegression``);
            weights normalized to sum to 1 make the data all but
            uninformative. A row of weight 0 is as absent, and so is a task
            whose rows all have weight 0: it is not in ``tasks_``, and gets
            the prior model as any unseen task (``classes_`` counts every
            row's class, as scikit-learn's classifiers do). Under ``"imaml"``,
            ``"maml"`` and ``"metasgd"``, whose support/query splits draw
            from every row, a row of weight 0 still takes a place in the
            split: it is only nearly absent.

        Returns
        -------
        self : object
            The fitted meta-estimator.
        """
        # A fit replaces every fitted attribute of an earlier one: some are
        # set only by some fits (nested groups, unlabeled rows' class
        # means), and a refit that left them (on Dask collections, or with
        # nested tasks) routed predictions through the old model's groups.
        self._forget_fit()
        try:
            return self._fit(X, y, tasks, sample_weight)
        except BaseException:
            # a fit that fails part-way (bad data found late, a lost Dask
            # worker, an interrupt) must not leave the new data's labels
            # beside the old model's parameters: it leaves no model
            self._forget_fit()
            raise

    def __getstate__(self):
        state = super().__getstate__()
        params = state.get("task_params_")
        if is_dask_collection(params):
            state = dict(state)  # may be the live __dict__
            # a Dask array only refers to blocks held by the cluster, which
            # a saved model outlives: the saved model carries the values
            state["task_params_"] = _in_memory(params)
        return state

    def _settings(self, random_effects=None, params=None):
        """The settings the methods read; ``random_effects`` resolved (a mask).

        From ``params`` (the parameters of a fit, see ``_fit_params``) where
        given, else the current ones; those of ``_RUNTIME_PARAMETERS``
        always the current ones.
        """
        p = self.get_params(deep=False)
        if params is not None:
            p.update(params)
        if random_effects is None and isinstance(p["random_effects"], str):
            random_effects = p["random_effects"]
        return MetaSettings(
            gamma=p["gamma"], prior=p["prior"], random_effects=random_effects,
            inner_steps=p["inner_steps"],
            inner_lr=p["inner_lr"], first_order=p["first_order"],
            adapt_layers=p["adapt_layers"],
            meta_lr=p["meta_lr"], meta_batch_size=p["meta_batch_size"],
            query_fraction=p["query_fraction"], max_iter=self.max_iter,
            tol=self.tol, n_jobs=self.n_jobs, random_state=p["random_state"],
            verbose=self.verbose, n_prior_components=p["n_prior_components"],
            prior_df=p["prior_df"])

    def _warn_changed_since_fit(self, action):
        """Warn where parameters set since the last fit (which ``adapt`` and
        ``partial_fit`` do not use: they continue that fit) differ from it."""
        if not hasattr(self, "_fit_params"):
            return  # pickled before the settings were kept
        changed = [name for name, value in self._fit_params.items()
                   if not _same_setting(value, getattr(self, name))]
        base = self.estimator if self.estimator is not None \
            else self._base_estimator()
        if type(base) is not type(self.estimator_) or not _same_setting(
                base.get_params(deep=False),
                self.estimator_.get_params(deep=False)):
            changed.append("estimator")
        if changed:
            warnings.warn(
                f"{', '.join(changed)} changed since fit; {action} continues "
                "that fit with the values it had then: refit to use the new "
                "ones.", UserWarning, stacklevel=3)

    def _warn_prior_settings_unused(self):
        """Warn of prior settings a fit without task identities ignores.

        (Those it keeps are not: no transfer, ``gamma=0``, and an isotropic
        prior over every coefficient.)
        """
        kept = {
            "gamma": isinstance(self.gamma, str) or self.gamma == 0,
            "prior": self.prior in ("auto", "isotropic"),
            "random_effects": self.random_effects is None or (
                isinstance(self.random_effects, str)),
            "prior_df": self.prior_df is None,
            "n_prior_components": isinstance(self.n_prior_components, str),
        }
        unused = [f"{name}={getattr(self, name)!r}"
                  for name, is_kept in kept.items() if not is_kept]
        if unused:
            warnings.warn(
                f"{', '.join(unused)}: a fit without task identities (no "
                "tasks, no task_column) is the base estimator's own fit, "
                "with nothing to transfer, and ignores "
                f"{'it' if len(unused) == 1 else 'them'} (pass "
                "prior_estimator to pull the fit toward a model).",
                UserWarning, stacklevel=5)

    def _meta_method(self, *, warn=False, network=False, fitted=False):
        """The ``method``'s object, reading the current parameters (with
        ``fitted``, those of the last fit but the run-time ones, see
        ``_RUNTIME_PARAMETERS``: what ``adapt`` and ``partial_fit``
        continue).

        With ``warn``, a parameter that the method ignores (for a network
        base estimator, when ``network``) and that was set to something
        other than its default gets a warning.
        """
        # (a model pickled before the settings were kept: the current ones)
        params = getattr(self, "_fit_params", None) if fitted else None
        name = self.method if params is None else params["method"]
        method = METHODS[name](self._settings(params=params))
        if warn:
            defaults = _BaseMetaEstimator().get_params(deep=False)
            used = method.used_parameters(network)
            for name in sorted(_METHOD_PARAMETERS - used):
                value = getattr(self, name)
                if not _same_value(value, defaults[name]):
                    warnings.warn(
                        f"{name}={value!r} is not used by method="
                        f"{self.method!r} and is ignored.", UserWarning,
                        stacklevel=4)
        return method

    def _fit(self, X, y, tasks, sample_weight, classes=None):
        if any(is_dask_collection(a) for a in (X, y, tasks, sample_weight)):
            from ._dask import fit_dask

            self._check_posteriors_possible(
                "a fit on Dask collections keeps no per-task posteriors")
            return fit_dask(self, X, y, tasks, sample_weight)
        base = self._base_estimator()
        family = family_for(base, classifier=self._is_classifier,
                            owner=type(self).__name__, check=True)
        method = self._meta_method(warn=True, network=family.is_network)
        family.warn_ignored_settings()
        X, y, labels = self._check_input(X, y, tasks, reset=True)
        if labels is not None and not family.is_network:
            _warn_unscaled_features(X)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                             ensure_non_negative=True)
        # classes_ from every row, as scikit-learn sets them whatever the
        # weights; then the tasks without weight are left out
        self._set_targets(y, classes)
        X, y, sample_weight, labels = _without_weightless_tasks(
            X, y, sample_weight, labels)
        y_encoded = self._encode_y(y)
        family.check_targets(y_encoded)
        n_features = X.shape[1]
        problem = family.problem(n_features, self._n_classes())
        method.check_problem(problem)

        tree = None
        if labels is None:
            self.tasks_ = None
            codes = np.zeros(X.shape[0], dtype=np.intp)
        elif isinstance(labels, NestedLabels):
            tree, codes = self._encode_nested_tasks(labels)
        else:
            self.tasks_, codes = encode_tasks(labels)
        n_tasks = 1 if self.tasks_ is None else len(self.tasks_)
        prior_mean = self._given_prior_mean(family, n_features)
        rows = TaskRows(X, y_encoded, sample_weight, codes, n_tasks)
        settings = self._settings(self._random_effects_mask(problem))
        if self.tasks_ is None and prior_mean is None and not problem.is_network:
            # one task and nothing to transfer: the base estimator's own fit
            # (a network's, by scikit-learn's stochastic optimizers, is not
            # reproduced: its single task is meta-trained as any other)
            self._warn_prior_settings_unused()
            settings = replace(settings, gamma=0.0, prior="isotropic",
                               random_effects=None, prior_df=None,
                               n_prior_components="auto")
            method = METHODS["proximal"](settings)
            adaptation = METHODS[self.method](settings)
        else:
            method = adaptation = METHODS[self.method](settings)
        method.check(settings)
        self._check_posteriors_possible(
            _why_no_posteriors(adaptation, problem, n_tasks, self.method))
        if tree is not None:
            fitted = self._fit_nested(method, family, problem, rows, prior_mean,
                                      tree)
        else:
            if prior_mean is None:
                # a network starts from scikit-learn's random initialization
                prior_mean = family.initial_params(n_features, self._n_classes(),
                                                   self.random_state)
            fitted = self._fit_method(method, family, problem, rows, prior_mean)
        if method is not adaptation:
            fitted = adaptation.single_task_fit(fitted, problem)
        self._check_finite(fitted)
        return self._store_fit(base, fitted, family, problem, rows, adaptation)

    def _store_fit(self, base, fitted, family, problem, rows, adaptation):
        """Set the fitted attributes from a ``MetaFit``; ``rows`` is None for
        a fit on Dask collections (no per-task posteriors are kept)."""
        # the fitted models are those of this base estimator, whatever
        # happens to self.estimator later
        self.estimator_ = clone(base)
        # and these are the settings adapt and partial_fit continue
        self._fit_params = {
            name: copy.deepcopy(value) if isinstance(value, (list, np.ndarray))
            else value
            for name, value in self.get_params(deep=False).items()
            if name not in _RUNTIME_PARAMETERS}
        self.task_params_ = fitted.theta
        self.meta_params_ = fitted.theta0
        self.prior_shape_ = fitted.shape
        self.gamma_ = float(fitted.gamma)
        self.prior_precision_ = fitted.precision
        self.n_iter_ = fitted.n_iter
        if fitted.inner_lr is not None:
            self.inner_lr_ = fitted.inner_lr
        elif hasattr(self, "inner_lr_"):
            del self.inner_lr_  # from an earlier fit with another method
        self._adaptation = (int(fitted.inner_steps), bool(fitted.auto_step))
        self.transfer_center_ = fitted.center
        self.prior_kind_ = fitted.prior_kind
        self.prior_scores_ = dict(fitted.prior_scores or {})
        self._store_mixture(fitted)
        if fitted.nested is not None:
            self._store_nested(fitted.nested)
        self._store_posteriors(family, rows, problem, fitted, adaptation)
        # partial_fit moves the prior online where the method learned it
        # from sums over tasks (see skmeta._methods._online)
        self._online = (None if fitted.online is None
                        else fitted.online.to_state())
        self.n_tasks_seen_ = 1 if self.tasks_ is None else len(self.tasks_)
        self.meta_estimator_ = self._build(self.meta_params_, self.n_iter_)
        return self

    # ---------------------------------------------------------- nested tasks
    def _encode_nested_tasks(self, labels):
        """Encode nested labels: ``tasks_`` (one row per task, outermost
        level first), the groups, and the tree; returns ``(tree, codes)``."""
        levels, paths, codes, parents = encode_nested(labels)
        self.tasks_ = nested_label_array(levels, paths)
        self._nested_levels = levels
        self._nested_paths = [np.unique(paths[:, :depth], axis=0)
                              for depth in range(1, paths.shape[1])] + [paths]
        self.groups_ = [nested_label_array(levels, table)
                        for table in self._nested_paths[:-1]]
        return Tree(tuple(parents)), codes

    def _fit_nested(self, method, family, problem, rows, prior_mean, tree):
        """The hierarchical prior of nested tasks: a ``MetaFit``."""
        if not hasattr(method, "fit_nested") or problem.is_network:
            raise ValueError(
                "nested tasks (a 2-D tasks or a list task_column) are fitted "
                "by empirical Bayes with exact task solves: use "
                f"method='proximal' with a linear base estimator, not "
                f"method={self.method!r}"
                + (" with a network." if problem.is_network else "."))
        if getattr(self, "unlabeled_weight", None) is not None:
            raise ValueError(
                "unlabeled_weight is not supported with nested tasks: leave "
                "unlabeled_weight=None.")
        method.check_nested(method.settings)
        _warn_if_levels_do_not_branch(
            tree, self.task_column if isinstance(self.task_column, list)
            else None)
        batch = self._task_batch(family, rows)
        return method.fit_nested(batch, problem, tree, prior_mean)

    def _store_nested(self, nested):
        self.group_params_ = [np.array(m) for m in nested.means]
        self.group_precisions_ = [np.array(p) for p in nested.precisions]
        self._nested_state = (nested.task_prior.ridge,
                              [np.array(c) for c in nested.covariances])

    def _nested_nodes(self, labels, n_samples, *, own_task=True):
        """Each sample's model in the table of :meth:`_nested_params`: its
        task's (unless ``own_task`` is False: the prior a task is adapted
        from), else its deepest known group's, else the population's."""
        n_tasks = len(self.tasks_)
        n_levels = self.tasks_.shape[1]
        if labels is None:
            return np.full(n_samples, self._nested_params().shape[0] - 1,
                           dtype=np.intp)
        if not isinstance(labels, NestedLabels) or labels.n_levels != n_levels:
            given = 1 if not isinstance(labels, NestedLabels) else labels.n_levels
            raise ValueError(
                f"This {type(self).__name__} was fitted on nested tasks of "
                f"{n_levels} levels; got task labels of {given} level"
                f"{'s' if given != 1 else ''}. Pass one column per level, "
                "outermost first.")
        found = lookup_nested(self._nested_levels, self._nested_paths, labels)
        offsets = np.cumsum([0, n_tasks] + [len(g) for g in self.groups_[::-1]])
        nodes = np.full(n_samples, offsets[-1], dtype=np.intp)
        # from the outermost level inward: the deepest known node wins
        for depth in range(n_levels - 1):
            known = found[:, depth] >= 0
            block = n_levels - 2 - depth
            nodes[known] = offsets[1 + block] + found[known, depth]
        if own_task:
            known = found[:, -1] >= 0
            nodes[known] = found[known, -1]
        return nodes

    def _nested_params(self):
        """Task models, then the groups' (innermost level first), then the
        population's."""
        return np.vstack([_in_memory(self.task_params_),
                          *self.group_params_[::-1],
                          self.meta_params_[np.newaxis]])

    def group_estimator(self, group):
        """The fitted base estimator of a group of nested tasks: its prior mean.

        This is the model a new task of the group gets before any of its
        data is seen (``predict`` with an unseen task of a known group), and
        the centre from which :meth:`adapt` fits such a task.

        Parameters
        ----------
        group : label or tuple of labels
            The group's path of labels, outermost first: ``(region,)`` or
            ``(region, district)`` for three levels. With two levels
            (groups, tasks) a single label names the group.

        Returns
        -------
        estimator : estimator instance
            A fitted clone of the base estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import Ridge
        >>> from skmeta import MetaRegressor
        >>> from skmeta.datasets import make_nested_tasks
        >>> X, y, tasks = make_nested_tasks(n_groups=3, n_tasks_per_group=5,
        ...                                 random_state=0)
        >>> meta = MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
        >>> meta.groups_[0].ravel().tolist()
        [0, 1, 2]
        >>> region = meta.group_estimator(1)
        >>> new_store = np.c_[np.ones(2, dtype=int), [99, 99]]
        >>> bool(np.allclose(meta.predict(X[:2], tasks=new_store),
        ...                  region.predict(X[:2])))
        True
        """
        check_is_fitted(self)
        if getattr(self, "groups_", None) is None:
            raise ValueError(
                "group_estimator needs a model fitted on nested tasks (a 2-D "
                "tasks or a list task_column).")
        path = _path_of_labels(group)
        path = (group,) if path is None else path
        n_levels = self.tasks_.shape[1]
        if not 1 <= len(path) <= n_levels - 1:
            raise ValueError(
                f"A group is a path of 1 to {n_levels - 1} labels, outermost "
                f"first; got {group!r}.")
        columns = [np.asarray([label]) for label in path]
        # (the deeper levels are not looked at: any label of their type)
        columns += [level[:1] for level in self._nested_levels[len(path):]]
        found = lookup_nested(self._nested_levels, self._nested_paths,
                              NestedLabels(columns))[0, len(path) - 1]
        if found < 0:
            raise ValueError(
                f"Group {group!r} was not seen in fit; its known groups are "
                "listed in groups_.")
        return self._build(self.group_params_[len(path) - 1][found])

    def _adapt_nested(self, family, rows, labels):
        """New tasks of a nested model, each from its deepest known group
        (a task seen in fit too: adapting is from the prior, as without
        nesting, not from the task's own fitted model)."""
        weights = family.row_weights(rows.y, rows.sample_weight, rows.codes,
                                     rows.n_tasks, getattr(self, "classes_", None))
        batch, _ = make_batch(rows.X, rows.y, weights, rows.codes, rows.n_tasks)
        row_nodes = self._nested_nodes(labels, rows.X.shape[0], own_task=False)
        node_of_task = np.empty(rows.n_tasks, dtype=np.intp)
        node_of_task[rows.codes] = row_nodes
        task_prior = Prior(theta0=self.meta_params_, shape=self.prior_shape_,
                           gamma=self.gamma_, ridge=self._nested_state[0])
        return adapt_nested(batch, self._problem(), task_prior,
                            self._nested_params(), node_of_task,
                            n_jobs=self.n_jobs)

    _MIXTURE_ATTRIBUTES = ("task_clusters_", "cluster_weights_", "cluster_means_",
                           "cluster_precisions_", "n_prior_components_",
                           "task_weights_", "_mixture_state")

    def _store_mixture(self, fitted):
        """The mixture or Student-t prior's attributes (removed without one)."""
        for name in self._MIXTURE_ATTRIBUTES:
            self.__dict__.pop(name, None)
        mixture = fitted.mixture
        if mixture is None:
            return
        self.task_clusters_ = fitted.task_clusters
        self.cluster_weights_ = mixture.weights
        self.cluster_means_ = mixture.means
        self.cluster_precisions_ = mixture.precisions
        self.n_prior_components_ = mixture.n_components
        self._mixture_state = mixture.state
        if fitted.task_weights is not None:
            self.task_weights_ = fitted.task_weights

    def _fitted_mixture(self):
        if not hasattr(self, "_mixture_state"):
            return None
        return PriorMixture.from_arrays(self.cluster_weights_, self.cluster_means_,
                                        self.cluster_precisions_,
                                        self._mixture_state)

    def predict_task_cluster(self, X, y, *, tasks=None, sample_weight=None):
        """Posterior over the prior's components of new tasks, from their rows.

        Each task is solved under every component of the fitted mixture; its
        posterior follows from the Laplace approximations of its marginal
        likelihoods and the components' weights (see the user guide). The
        meta-knowledge is not changed.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Rows of the new tasks.
        y : array-like of shape (n_samples,)
            Their targets.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task label of each sample (or use ``task_column``); without
            either, the rows form one task.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        proba : ndarray of shape (n_new_tasks, n_components)
            One row per task, in the order of the sorted unique labels.

        Examples
        --------
        >>> import numpy as np
        >>> from skmeta import MetaRegressor
        >>> rng = np.random.default_rng(0)
        >>> slope = np.repeat([-2.0, 2.0], 10)  # two families of 10 tasks
        >>> X = rng.standard_normal((200, 1))
        >>> tasks = np.repeat(np.arange(20), 10)
        >>> y = slope[tasks] * X[:, 0] + 0.1 * rng.standard_normal(200)
        >>> meta = MetaRegressor(prior="mixture", n_prior_components=2,
        ...                      random_state=0).fit(X, y, tasks=tasks)
        >>> meta.cluster_means_[:, 0].round(1)  # the two slopes
        array([ 2. , -1.9])
        >>> meta.predict_task_cluster([[1.0], [-1.0]], [2.0, -2.0]).round(3)
        array([[1., 0.]])
        """
        check_is_fitted(self)
        if not hasattr(self, "task_clusters_"):
            kind = getattr(self, "prior_kind_", self.prior)
            raise ValueError(
                "predict_task_cluster needs a model fitted with a mixture "
                "prior (prior='mixture', or a Student-t prior: prior_df); "
                f"this one was fitted with prior {kind!r}.")
        return self._solve_new_tasks(X, y, tasks, sample_weight,
                                     clusters=True)[1]

    def _check_finite(self, fitted):
        """A fit whose parameters are not finite raises, naming what diverged."""
        for name, values in (("task parameters", fitted.theta),
                             ("prior mean", fitted.theta0),
                             ("prior precision", fitted.precision)):
            if not np.all(np.isfinite(values)):
                raise FloatingPointError(
                    f"{type(self).__name__} (method={self.method!r}) gave "
                    f"non-finite {name}: the problem is ill-posed as set "
                    "(e.g. separable classes or all-zero counts without any "
                    "penalty or transfer), or a step size is too large.")

    def _random_effects_mask(self, problem):
        """``random_effects`` as a mask of the parameters (or None/"auto")."""
        spec = self.random_effects
        if spec is None or isinstance(spec, str):
            return spec
        if problem.is_network:
            raise ValueError(
                "random_effects names coefficients of a linear base estimator; "
                "a network's parameters are its layers' weights, which share "
                "one isotropic transfer term. Leave random_effects='auto' "
                "(or None) with a network.")
        names = self._model_feature_names()
        p = problem.n_features
        columns = []
        for item in np.asarray(spec, dtype=object).ravel():
            if isinstance(item, str) and item == "intercept":
                if not problem.fit_intercept:
                    raise ValueError(
                        "random_effects names the intercept, but the base "
                        "estimator has fit_intercept=False.")
                columns.append(p)
            elif isinstance(item, str):
                if names is None or item not in list(names):
                    raise ValueError(
                        f"random_effects names {item!r}, which is not a feature "
                        "of X (the task column excluded); use feature names of "
                        "a DataFrame, integer positions or 'intercept'.")
                columns.append(list(names).index(item))
            elif isinstance(item, (Integral, np.integer)) and not isinstance(
                    item, bool):
                if not -p <= item < p:
                    raise ValueError(
                        f"random_effects holds {item}, out of range for "
                        f"{p} features (the task column excluded).")
                columns.append(int(item) % p)
            else:
                raise ValueError(
                    f"random_effects holds {item!r}: expected feature names, "
                    "integer positions or 'intercept'.")
        if not columns:
            raise ValueError("random_effects is empty: name at least one "
                             "coefficient that varies across tasks.")
        p1 = p + problem.fit_intercept
        mask = np.zeros(problem.n_params, dtype=bool)
        for k in range(problem.n_outputs):
            mask[k * p1 + np.asarray(columns)] = True
        return mask

    def _fit_method(self, method, family, problem, rows, prior_mean):
        """The method fitted on ``rows`` (a :class:`TaskRows`): a ``MetaFit``."""
        batch = self._task_batch(family, rows)
        single_task = self.tasks_ is None
        # (a network's inner problem is a fixed number of steps: it stays
        # bounded whatever the data)
        if not problem.is_network and (
                method.settings.gamma == 0 or (single_task and prior_mean is None)):
            _warn_unbounded_tasks(batch, problem, self.tasks_)
        fitted = method.fit(batch, problem, prior_mean, single_task=single_task)
        fitted.batch = batch
        if single_task and prior_mean is None and not problem.is_network:
            # one task is its own population: meta_estimator_ is its model
            # (it held zeros, which nothing transfers with gamma_ = 0)
            fitted.theta0 = np.array(fitted.theta[0])
            if fitted.center is not None:
                fitted.center = np.array(fitted.theta[0])
        return fitted

    def _task_batch(self, family, rows):
        """``rows`` (a :class:`TaskRows`) sorted by task, with the family's
        row weights (class weights), in the kernels' layout."""
        weights = family.row_weights(rows.y, rows.sample_weight, rows.codes,
                                     rows.n_tasks, getattr(self, "classes_", None))
        return make_batch(rows.X, rows.y, weights, rows.codes, rows.n_tasks)[0]

    def _meta_fit(self):
        """The fitted meta-knowledge, as the methods take it."""
        inner_steps, auto_step = self._adaptation
        return MetaFit(self.meta_params_, self.prior_shape_, self.gamma_,
                       self.task_params_, self.n_iter_,
                       inner_lr=getattr(self, "inner_lr_", None),
                       inner_steps=inner_steps, auto_step=auto_step,
                       center=self.transfer_center_,
                       mixture=self._fitted_mixture())

    def _given_prior_mean(self, family, n_features):
        """The prior mean of ``prior_estimator`` (parameter transfer), or None."""
        given = self._given_model()
        if given is None:
            return None
        if self._is_classifier:
            prior_classes = getattr(given, "classes_", None)
            if prior_classes is None or not np.array_equal(prior_classes,
                                                           self.classes_):
                raise ValueError(
                    "prior_estimator must have been fitted on the same classes "
                    f"as the data: got {prior_classes}, expected {self.classes_}."
                )
        theta0 = family.params_from(given, n_features,
                                    getattr(self, "classes_", None))
        if not family.fit_intercept:
            intercept = np.asarray(getattr(given, "intercept_", 0.0))
            if np.any(intercept != 0):
                raise ValueError(
                    "prior_estimator has a non-zero intercept but the base "
                    "estimator has fit_intercept=False."
                )
        return theta0

    def _given_model(self):
        """The fitted ``prior_estimator`` (unwrapped from a
        :class:`~sklearn.frozen.FrozenEstimator`), its features checked
        against the data's, or None."""
        given = self.prior_estimator
        if given is None:
            return None
        frozen = isinstance(given, FrozenEstimator)
        if frozen:
            given = given.estimator
        try:
            check_is_fitted(given)
        except NotFittedError:
            if frozen:
                raise NotFittedError(
                    f"prior_estimator is a FrozenEstimator of an unfitted "
                    f"{type(given).__name__}: fit the model before freezing "
                    "it.") from None
            # clone() copies an estimator parameter unfitted, and
            # GridSearchCV and cross_val_score clone what they fit
            raise NotFittedError(
                f"prior_estimator ({type(given).__name__}) is not fitted. "
                "clone() -- which GridSearchCV, cross_val_score and "
                "Pipeline's clones call -- copies an estimator parameter "
                "unfitted: pass the fitted model wrapped in "
                "sklearn.frozen.FrozenEstimator, which clone() keeps as it "
                "is.") from None
        names = self._model_feature_names()
        given_names = getattr(given, "feature_names_in_", None)
        if names is not None and given_names is not None:
            if not np.array_equal(np.asarray(given_names, dtype=object),
                                  np.asarray(names, dtype=object)):
                raise ValueError(
                    "prior_estimator was fitted on features "
                    f"{list(given_names)}, the data has {list(names)}: its "
                    "coefficients are read by position, so the names and "
                    "their order must be the same.")
        elif names is not None or given_names is not None:
            # as scikit-learn warns when a model fitted with names predicts
            # without them, or the reverse: the order cannot be checked
            warnings.warn(
                "X has feature names, but prior_estimator was fitted without "
                "them" if names is not None else
                "X does not have valid feature names, but prior_estimator "
                "was fitted with feature names", UserWarning,
                stacklevel=user_stacklevel())
        return given

    def _set_targets(self, y, classes):
        """Record target metadata (``classes_`` for classifiers)."""

    def _fitted_family(self):
        """The family adapter of the fitted base estimator."""
        return family_for(self.estimator_, classifier=self._is_classifier,
                          owner=type(self).__name__)

    def _build(self, theta, n_iter=1):
        return self._fitted_family().build(
            theta, n_features=self._n_model_features(),
            classes=getattr(self, "classes_", None), n_iter=n_iter,
            feature_names=self._model_feature_names(),
        )

    def _n_model_features(self):
        return self._fitted_family().n_features_of(self.meta_params_.shape[0],
                                                   self._n_classes())

    def _problem(self):
        return self._fitted_family().problem(self._n_model_features(),
                                             self._n_classes())

    # ------------------------------------------------------------ prediction
    def _row_models(self, labels, n_samples):
        """Index into ``[task_params_; meta_params_]`` of each row's model."""
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
                "tasks: pass tasks= or set task_column so that each sample is "
                "predicted by its task's model."
            )
        if getattr(self, "groups_", None) is not None:
            return self._nested_nodes(labels, n_samples)
        if isinstance(labels, NestedLabels):
            raise ValueError(
                f"This {type(self).__name__} was fitted on tasks of one level; "
                f"got task labels of {labels.n_levels} levels.")
        codes = lookup_tasks(self.tasks_, labels)
        # unseen tasks get the prior model, stored after the task models
        return np.where(codes < 0, len(self.tasks_), codes)

    def _model_table(self):
        """The models rows may be predicted by (see :meth:`_row_models`)."""
        if getattr(self, "groups_", None) is not None:
            return self._nested_params()
        return np.vstack([_in_memory(self.task_params_),
                          self.meta_params_[np.newaxis]])

    def _decision(self, X, tasks):
        check_is_fitted(self)
        X, _, labels = self._check_input(X, tasks=tasks, reset=False)
        rows = self._row_models(labels, X.shape[0])
        return decision_values(X, rows, self._model_table(), self._problem())

    # ------------------------------------------------------- task-level API
    def task_estimator(self, task=None):
        """The fitted base estimator of a task seen in ``fit``.

        Parameters
        ----------
        task : int, str or tuple, default=None
            Task label (for nested tasks, its path of labels, outermost
            first: a row of ``tasks_``). Leave it out for a model fitted
            without tasks.

        Returns
        -------
        estimator : estimator instance
            A fitted clone of the base estimator, usable without skmeta.
        """
        check_is_fitted(self)
        if self.tasks_ is None:
            if task is not None:
                raise ValueError("This model was fitted without task identities.")
            return self._build(_in_memory(self.task_params_[0]))
        if task is None:
            raise ValueError("Pass the label of a task seen in fit.")
        code = self._task_code(task)
        if code < 0:
            raise ValueError(
                f"Task {task!r} is not in tasks_ (not seen in fit or "
                "partial_fit, or dropped); meta_estimator_ is the prior model "
                "for new tasks"
                + (", group_estimator(group) a known group's"
                   if getattr(self, "groups_", None) is not None else "")
                + ", and adapt() fits one from data." + self._dropped_note()
            )
        # (a fit on Dask collections keeps task_params_ on the cluster)
        return self._build(_in_memory(self.task_params_[code]))

    def _task_code(self, task):
        """Index of a seen task (a path of labels for nested tasks), or -1."""
        if getattr(self, "groups_", None) is None:
            return lookup_tasks(self.tasks_, np.asarray([task]))[0]
        n_levels = self.tasks_.shape[1]
        path = _path_of_labels(task)
        if path is None or len(path) != n_levels:
            raise ValueError(
                f"A task of this model is a path of {n_levels} labels, "
                f"outermost first (a row of tasks_); got {task!r}.")
        labels = NestedLabels([np.asarray([label]) for label in path])
        return lookup_nested(self._nested_levels, self._nested_paths,
                             labels)[0, -1]

    @property
    def coef_(self):
        """Coefficients of each seen task, stacked on a leading task axis."""
        check_is_fitted(self, "task_params_")
        return self._fitted_family().split_params(self.task_params_,
                                                  self._n_model_features())[0]

    @property
    def intercept_(self):
        """Intercepts of each seen task, stacked on a leading task axis."""
        check_is_fitted(self, "task_params_")
        return self._fitted_family().split_params(self.task_params_,
                                                  self._n_model_features())[1]

    def _solve_new_tasks(self, X, y, tasks, sample_weight, clusters=False,
                         weightless_absent=False):
        """Adapt tasks of new data from the fitted prior: ``(labels, theta, batch)``.

        The method's own inner procedure is used: the exact solve for
        ``"proximal"`` and ``"imaml"``, the (learned) gradient steps for the
        others.
        """
        family = self._fitted_family()
        X, y, labels = self._check_input(X, y, tasks, reset=False)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                             ensure_non_negative=True)
        if weightless_absent:  # partial_fit, as fit
            X, y, sample_weight, labels = _without_weightless_tasks(
                X, y, sample_weight, labels)
        y_encoded = self._encode_y(y, known_only=True)
        family.check_targets(y_encoded)
        if labels is None:
            uniques, codes = None, np.zeros(X.shape[0], dtype=np.intp)
        elif isinstance(labels, NestedLabels):
            if getattr(self, "groups_", None) is None:
                raise ValueError(
                    f"This {type(self).__name__} was fitted on tasks of one "
                    f"level; got task labels of {labels.n_levels} levels.")
            levels, paths, codes, _ = encode_nested(labels)
            uniques = nested_label_array(levels, paths)
        else:
            uniques, codes = encode_tasks(labels)
        n_tasks = 1 if uniques is None else len(uniques)
        rows = TaskRows(X, y_encoded, sample_weight, codes, n_tasks)
        if getattr(self, "groups_", None) is not None:
            theta = self._adapt_nested(family, rows, labels)
            self._check_adapted(theta, uniques)
            return uniques, theta, rows
        if clusters:  # the posteriors over the mixture's components
            weights = family.row_weights(rows.y, rows.sample_weight, rows.codes,
                                         rows.n_tasks, getattr(self, "classes_",
                                                               None))
            batch, _ = make_batch(rows.X, rows.y, weights, rows.codes, n_tasks)
            theta, posteriors = adapt_mixture(batch, self._problem(),
                                              self._fitted_mixture(),
                                              n_jobs=self.n_jobs)
            self._check_adapted(np.column_stack([theta, posteriors]), uniques)
            return uniques, posteriors, rows
        theta = self._adapt_method(family, rows, uniques)
        self._check_adapted(theta, uniques)
        return uniques, theta, rows

    def _check_adapted(self, theta, uniques):
        """New tasks whose adapted parameters are not finite raise, named."""
        bad = ~np.all(np.isfinite(theta), axis=1)
        if bad.any():
            which = "the new task" if uniques is None else (
                f"new tasks {uniques[bad][:5].tolist()}")
            raise FloatingPointError(
                f"{type(self).__name__} (method={self.method!r}) gave "
                f"non-finite parameters adapting {which} from the fitted "
                "prior: their rows are ill-posed under it (e.g. separable "
                "classes where the prior is weak), or a step size is too "
                "large.")

    def _adapt_method(self, family, rows, labels=None):
        """Parameters of every task of ``rows`` adapted from the fitted prior
        (``labels`` name them in warnings)."""
        weights = family.row_weights(rows.y, rows.sample_weight, rows.codes,
                                     rows.n_tasks, getattr(self, "classes_", None))
        batch, _ = make_batch(rows.X, rows.y, weights, rows.codes, rows.n_tasks)
        problem = self._problem()
        if not problem.is_network and self.gamma_ == 0:
            _warn_unbounded_tasks(batch, problem, labels)
        return self._meta_method(fitted=True).adapt(batch, problem, self._meta_fit(),
                                         labels)

    def adapt(self, X, y, *, tasks=None, sample_weight=None):
        """Fit a new task from the meta-learned prior (few-shot learning).

        The task solves the base estimator's objective plus the transfer term
        toward the fitted prior, with the method's own inner procedure; the
        meta-knowledge is not changed.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Support samples of the new task.
        y : array-like of shape (n_samples,)
            Their targets; for a :class:`MetaClassifier` fitted with
            ``unlabeled_weight`` set, ``-1`` marks an unlabeled row. A
            classifier's labels must be among ``classes_`` (a class never
            seen in fit has no prior to start from: a ValueError).
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            The task's label on every sample, when task identities are given
            this way (all equal: use :meth:`adapt_tasks` for several tasks).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        estimator : estimator instance
            A fitted clone of the base estimator (a plain scikit-learn model).

        See Also
        --------
        adapt_tasks : Several new tasks at once.
        """
        check_is_fitted(self)
        self._warn_changed_since_fit("adapt")
        uniques, theta, _ = self._solve_new_tasks(X, y, tasks, sample_weight)
        if uniques is not None and len(uniques) > 1:
            raise ValueError(
                f"adapt fits one task, but the data hold {len(uniques)} tasks "
                f"({uniques[:5].tolist()}...); use adapt_tasks for several."
            )
        return self._build(theta[0])

    def adapt_tasks(self, X, y, *, tasks=None, sample_weight=None):
        """Fit several new tasks from the meta-learned prior, in one batch.

        As :meth:`adapt`, each task on its own rows, without a Python loop
        over tasks.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Support samples of the new tasks.
        y : array-like of shape (n_samples,)
            Their targets; for a :class:`MetaClassifier` fitted with
            ``unlabeled_weight`` set, ``-1`` marks an unlabeled row. A
            classifier's labels must be among ``classes_`` (a class never
            seen in fit has no prior to start from: a ValueError).
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task label of each sample (or use ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        estimators : dict
            Maps each task label to a fitted clone of the base estimator.
        """
        check_is_fitted(self)
        self._warn_changed_since_fit("adapt_tasks")
        if self.task_column is None and tasks is None:
            raise ValueError(
                "adapt_tasks needs task identities: pass tasks= or set "
                "task_column (adapt fits a single task)."
            )
        uniques, theta, _ = self._solve_new_tasks(X, y, tasks, sample_weight)
        keys = [tuple(row) for row in uniques.tolist()] if uniques.ndim == 2 \
            else uniques.tolist()
        return {label: self._build(row) for label, row in zip(keys, theta)}

    def _partial_fit(self, X, y, tasks, sample_weight, classes=None):
        if np.ndim(tasks) == 2 and not isinstance(self.task_column, list):
            # a 2-D tasks of one column is no nesting: fit's own error says so
            check_any_task_labels(tasks, np.shape(X)[0])
        if isinstance(self.task_column, list) or np.ndim(tasks) == 2 or (
                getattr(self, "groups_", None) is not None):
            raise ValueError(
                "partial_fit does not take nested tasks (a 2-D tasks or a "
                "list task_column): fit them at once with fit.")
        if not hasattr(self, "task_params_"):
            self._forget_fit()
            return self._fit(X, y, tasks, sample_weight, classes=classes)
        self._warn_changed_since_fit("partial_fit")
        if classes is not None and self._is_classifier and not np.array_equal(
                np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={classes} differs from the classes the model was "
                f"first fitted with (by fit or a first partial_fit), "
                f"classes_={self.classes_}."
            )
        known = self.tasks_
        has_labels = self.task_column is not None or tasks is not None
        if known is None and has_labels:
            raise ValueError(
                f"This {type(self).__name__} was fitted without task identities "
                "(a single task); do not pass tasks to partial_fit."
            )
        if known is not None and not has_labels:
            raise ValueError(
                f"This {type(self).__name__} was fitted on {len(known)} tasks: "
                "pass tasks= or set task_column in partial_fit."
            )

        if known is not None and getattr(self, "_online", None) is not None:
            return self._partial_fit_online(X, y, tasks, sample_weight)

        # the prior stays fixed: the tasks are fitted from it (a task whose
        # rows all have weight 0 is absent, as in fit: a known one is kept
        # as it was)
        uniques, theta, rows = self._solve_new_tasks(
            X, y, tasks, sample_weight, weightless_absent=True)
        self._check_covariance_room(
            1 if known is None else len(uniques) if not self.keep_task_params
            else len(known) + int(self._fresh_tasks(uniques).sum()))
        covariances = self._new_task_covariances(rows, theta)
        clusters = None
        if known is not None and hasattr(self, "task_clusters_"):
            clusters = self._solve_new_tasks(X, y, tasks, sample_weight,
                                             clusters=True,
                                             weightless_absent=True)[1]
        if known is None:
            warnings.warn(
                f"This {type(self).__name__} was fitted without task "
                "identities: partial_fit refits its one task on the rows "
                "passed now, and rows of earlier calls leave no trace (one "
                "task has no prior to carry them). To learn one model from "
                "chunks of rows, use a base estimator with a partial_fit of "
                "its own (e.g. SGDClassifier or SGDRegressor) or fit on all "
                "the rows; to stream tasks, pass tasks=.", UserWarning,
                # partial_fit is wrapped by scikit-learn's _fit_context
                stacklevel=4)
            self.task_params_ = theta
            if self.prior_estimator is None and not (
                    self._fitted_family().is_network):
                # one task is its own population model, as after fit
                self.meta_params_ = np.array(theta[0])
                if self.transfer_center_ is not None:
                    self.transfer_center_ = np.array(theta[0])
                self.meta_estimator_ = self._build(self.meta_params_,
                                                   self.n_iter_)
            if covariances is not None:
                self._task_covariances = covariances
            return self
        fresh = self._fresh_tasks(uniques)
        if not self.keep_task_params:
            self.tasks_, self.task_params_ = uniques, theta
            if clusters is not None:
                self.task_clusters_ = clusters
            if covariances is not None:
                self._task_covariances = covariances
        else:
            if clusters is not None:
                self.task_clusters_ = add_tasks(known, self.task_clusters_,
                                                uniques, clusters)[1]
            if covariances is not None:
                _, self._task_covariances = add_tasks(
                    known, self._task_covariances, uniques, covariances)
            self.tasks_, self.task_params_ = add_tasks(known, self.task_params_,
                                                       uniques, theta)
        self.n_tasks_seen_ += int(fresh.sum())
        return self

    def _fresh_tasks(self, uniques):
        """Which of the labels ``uniques`` are new to the model (all of them
        when earlier tasks' labels are not kept); refuses, before anything
        changes, labels that cannot be stored with ``tasks_``."""
        if not self.keep_task_params:
            return np.ones(len(uniques), dtype=bool)
        d = self.task_params_.shape[1]
        add_tasks(self.tasks_, np.empty((len(self.tasks_), d)), uniques,
                  np.empty((len(uniques), d)))
        return lookup_tasks(self.tasks_, uniques) < 0

    def _partial_fit_online(self, X, y, tasks, sample_weight):
        """Fit a chunk of tasks and move the prior by the new ones (online
        empirical Bayes, see :mod:`skmeta._methods._online`).

        Tasks new to the model enter the prior's statistics; a known task is
        refitted on its new rows under the updated prior, as :meth:`adapt`
        would, without entering them again.
        """
        family = self._fitted_family()
        problem = self._problem()
        X, y, labels = self._check_input(X, y, tasks, reset=False)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                             ensure_non_negative=True)
        X, y, sample_weight, labels = _without_weightless_tasks(
            X, y, sample_weight, labels)
        y_encoded = self._encode_y(y, known_only=True)
        family.check_targets(y_encoded)
        uniques, codes = encode_tasks(labels)
        fresh = self._fresh_tasks(uniques)
        self._check_covariance_room(
            len(self.tasks_) + int(fresh.sum()) if self.keep_task_params
            else len(uniques))
        online, n_iter = OnlinePrior.from_state(self._online), None
        theta = np.empty((len(uniques), problem.n_params))
        fresh_rows = fresh[codes]
        if fresh_rows.any():
            sub = np.unique(codes[fresh_rows], return_inverse=True)[1]
            chunk = TaskRows(X[fresh_rows], y_encoded[fresh_rows],
                             sample_weight[fresh_rows], sub, int(fresh.sum()))
            online, theta[fresh], n_iter = update_online(
                self._task_batch(family, chunk), problem, online,
                max_iter=self._meta_method(fitted=True).max_iter,
                tol=self.tol,
                n_jobs=self.n_jobs, verbose=self.verbose, name=self.method)
        prior = online.prior
        if not fresh.all():
            sub = np.unique(codes[~fresh_rows], return_inverse=True)[1]
            known = TaskRows(X[~fresh_rows], y_encoded[~fresh_rows],
                             sample_weight[~fresh_rows], sub,
                             int((~fresh).sum()))
            theta[~fresh] = solve_exactly(
                self._task_batch(family, known), problem, prior.center,
                prior.precision, prior.theta0, n_jobs=self.n_jobs,
                labels=uniques[~fresh])
        fitted = MetaFit(prior.theta0, prior.shape, prior.gamma, theta,
                         n_iter or 0, center=prior.center)
        self._check_finite(fitted)

        self._online = online.to_state()
        self.meta_params_ = prior.theta0
        self.prior_shape_ = prior.shape
        self.gamma_ = float(prior.gamma)
        self.prior_precision_ = prior.precision
        self.transfer_center_ = prior.center
        if n_iter is not None:
            self.n_iter_ = n_iter
        self.n_tasks_seen_ = int(online.statistics.n_tasks)
        self._refresh_prior_posterior(online)
        rows = TaskRows(X, y_encoded, sample_weight, codes, len(uniques))
        covariances = self._new_task_covariances(rows, theta)
        if not self.keep_task_params:
            self.tasks_, self.task_params_ = uniques, theta
            if covariances is not None:
                self._task_covariances = covariances
        else:
            if covariances is not None:
                _, self._task_covariances = add_tasks(
                    self.tasks_, self._task_covariances, uniques, covariances)
            self.tasks_, self.task_params_ = add_tasks(
                self.tasks_, self.task_params_, uniques, theta)
        self.meta_estimator_ = self._build(self.meta_params_, self.n_iter_)
        return self

    # ------------------------------------------------ posterior covariances
    def task_posterior_cov(self, task=None):
        """Posterior covariance of a seen task's parameters.

        The Laplace approximation under the fitted prior, in the layout of
        ``task_params_`` (coefficients, then the intercept), in the model's
        natural units (the noise variance included for squared errors).
        A :class:`MetaClassifier` keeps them with ``posterior_proba=True``.

        Parameters
        ----------
        task : int or str, default=None
            Task label. Leave it out for a model fitted without tasks.

        Returns
        -------
        covariance : ndarray of shape (n_params, n_params)
            Unseen tasks have the prior's, ``prior_covariance_``.
        """
        self._check_covariances_kept()
        self._warn_unresolved_noise()
        if self.tasks_ is None:
            if task is not None:
                raise ValueError("This model was fitted without task identities.")
            return self._task_covariances[0].copy()
        if task is None:
            raise ValueError("Pass the label of a task seen in fit.")
        code = self._task_code(task)
        if code < 0:
            raise ValueError(
                f"Task {task!r} is not in tasks_ (not seen in fit or "
                "partial_fit, or dropped); a new task's covariance is the "
                "prior's, prior_covariance_." + self._dropped_note())
        return self._task_covariances[code].copy()

    def _dropped_note(self):
        """Why a task may be missing from ``tasks_``, for error messages."""
        if self.keep_task_params:
            return ""
        return (" With keep_task_params=False only the tasks of the last call "
                "to fit or partial_fit are kept (tasks_); earlier ones were "
                "dropped.")

    _no_covariance_reason = (
        "This model keeps no posterior covariances: they come from the exact "
        "methods ('proximal', 'imaml') with a linear base estimator (a "
        "network's tasks are adapted by a fixed number of gradient steps, "
        "not to a posterior mode), fitted in memory (not on Dask "
        "collections), for tasks of at most FULL_INVERSE_MAX_PARAMS "
        "parameters and within COVARIANCE_MEMORY bytes (see "
        "skmeta._methods._inner).")

    def _check_covariances_kept(self):
        check_is_fitted(self)
        if getattr(self, "_task_covariances", None) is None:
            raise ValueError(self._no_covariance_reason)

    def _predictive_moments(self, X, tasks):
        """Each row's linear predictors at its task's posterior mode,
        ``(n_samples, n_outputs)``, and their covariances under the
        posterior, ``(n_samples, n_outputs, n_outputs)`` (see
        ``_predictive``)."""
        self._check_covariances_kept()
        X, _, labels = self._check_input(X, tasks=tasks, reset=False)
        rows = self._row_models(labels, X.shape[0])
        problem = self._problem()
        Z = decision_values(X, rows, self._model_table(), problem)
        # the rows index the tasks, then the groups, then the prior: only the
        # covariances of the models these rows use are gathered
        tables = [self._task_covariances, *self._group_covariances,
                  self.prior_covariance_[np.newaxis]]
        edges = np.cumsum([0] + [len(table) for table in tables])
        used, rows = np.unique(rows, return_inverse=True)
        covariances = np.concatenate([
            table[used[(used >= low) & (used < high)] - low]
            for table, low, high in zip(tables, edges[:-1], edges[1:])])
        return Z, logit_covariances(X, rows, covariances,
                                    problem.fit_intercept, Z.shape[1])

    def _check_posteriors_possible(self, reason):
        """Raise where a fit asked to keep posteriors cannot (``reason``
        says why; None if it can): before fitting, not after."""

    def _check_covariance_room(self, n_tasks):
        """Before a ``partial_fit`` changes anything: whether the kept
        posterior covariances of the ``n_tasks`` the model will then hold
        still fit in ``COVARIANCE_MEMORY``; if not, :meth:`_outgrown`."""
        if getattr(self, "_task_covariances", None) is None:
            return
        reason = covariances_refused(n_tasks, self.task_params_.shape[1])
        if reason is not None:
            self._outgrown(reason)

    def _outgrown(self, reason):
        # a regressor keeps its posteriors where it can: it stops, and says so
        warnings.warn(
            f"{reason}: they are no longer kept, and the predictions that "
            "need them (return_std=True) and task_posterior_cov are "
            "unavailable from now on (keep_task_params=False keeps those of "
            "the last call only).", UserWarning, stacklevel=4)
        self._drop_posteriors()

    def _drop_posteriors(self):
        """Forget the tasks' posteriors, the prior's covariance and the noise."""
        self._task_covariances = None
        self._group_covariances = []
        self._noise_unresolved = False
        for name in ("prior_covariance_", "noise_variance_"):
            self.__dict__.pop(name, None)

    def _forget_fit(self):
        """Drop every fitted attribute: the estimator is unfitted again.

        Its parameters and scikit-learn's settings stay: metadata requests,
        output configuration, and the callbacks' state that scikit-learn
        keeps around a fit (a meta-estimator's context, torn down after).
        """
        kept = set(self._get_param_names()) | {
            "_metadata_request", "_sklearn_output_config"}
        for name in list(vars(self)):
            if name not in kept and "callback" not in name:
                delattr(self, name)

    def _keeps_posteriors(self):
        """Whether a fit keeps each task's posterior covariance."""
        return True

    def _warn_unresolved_noise(self, stacklevel=3):
        """Warn where the noise variance sits at its floor because the
        training rows left no residual (every row fitted exactly)."""
        if getattr(self, "_noise_unresolved", False):
            warnings.warn(
                "noise_variance_ could not be estimated: the models fit every "
                "training row exactly (targets without noise, or no more rows "
                "per task than the parameters they fit), so it sits at a "
                "floor of "
                f"{self.noise_variance_:.3g} and the standard deviations and "
                "posterior covariances are not those of any noise. Fit on "
                "more rows per task, or fewer parameters.", UserWarning,
                stacklevel=stacklevel)

    def _noise_dispersion(self):
        """The dispersion the covariances are scaled by (1 for log-losses)."""
        return getattr(self, "noise_variance_", 1.0)

    def _set_noise_dispersion(self, dispersion):
        # a classifier's is 1: not a fitted attribute of its own
        if not self._is_classifier:
            self.noise_variance_ = float(dispersion)

    def _store_posteriors(self, family, rows, problem, fitted, method):
        """Keep each task's posterior covariance, the prior's and the noise."""
        self._drop_posteriors()
        if (rows is None or not method.exact_for(problem)
                or not self._keeps_posteriors()):
            return
        if fitted.nested is not None:
            self._store_nested_posteriors(fitted.nested)
            return
        # the fit's own batch where it is at hand (the same rows and weights)
        batch = (fitted.batch if fitted.batch is not None
                 else self._task_batch(family, rows))
        covariances, dispersion, resolved = posterior_covariances(
            batch, problem, fitted.center, fitted.precision, fitted.theta,
            dispersion=fitted.dispersion, n_jobs=self.n_jobs)
        if covariances is None:
            return
        # no residual left, or a learned noise variance at its floor (the
        # evidence's degenerate maximum where the rows can be interpolated)
        self._noise_unresolved = problem.code == SQUARED and (
            not resolved or dispersion <= (1.0 + 1e-6) * noise_variance_floor(
                batch.y))
        # the tasks' mean scale as empirical Bayes took it: the prior's
        # covariance is that of a task of this scale (see
        # _proximal.empirical_bayes_update)
        scale = task_scales(batch, problem)
        self._task_covariances = covariances
        if fitted.mixture is None:
            self.prior_covariance_ = _prior_covariance(
                fitted.combined_precision, dispersion, float(np.mean(scale)))
        else:
            # an unseen task's covariance is the mixture's, across
            # coefficients too (the single Gaussian's diagonal precision
            # holds its variances only: two families of opposite slopes,
            # correlated at -0.985, gave an unseen task three times its
            # spread along them)
            self.prior_covariance_ = _mixture_covariance(
                fitted.mixture, dispersion, float(np.mean(scale)))
        self._set_noise_dispersion(dispersion)

    def _store_nested_posteriors(self, nested):
        """Nested tasks: each task's posterior covariance (its group mean's
        uncertainty included), and the prior covariance of a new task of
        each known group (the tasks' spread, the deeper levels' spreads and
        the group mean's posterior) and of the population."""
        prior = nested.task_prior
        scale = nested.task_scale
        task_spread = prior.dispersion / scale / np.asarray(
            prior.combined_precision, dtype=float)
        level_spreads = [prior.dispersion / scale / p for p in nested.precisions]
        group_covariances = []
        below = task_spread.copy()
        for level in range(len(nested.means) - 1, -1, -1):
            cov = nested.covariances[level]
            group_covariances.append(cov + np.diag(below)[None])
            below = below + level_spreads[level]
        self._task_covariances = nested.task_covariances
        self._group_covariances = group_covariances
        self.prior_covariance_ = np.diag(below)
        self._set_noise_dispersion(prior.dispersion)

    def _refresh_prior_posterior(self, online):
        if getattr(self, "_task_covariances", None) is None:
            return
        prior = online.prior
        # a noise variance learned with the prior moves with it; one
        # estimated beside a fixed prior is the fit's
        if online.statistics.posterior is not None and (
                self._problem().code == SQUARED):
            self._set_noise_dispersion(prior.dispersion)
        self.prior_covariance_ = _prior_covariance(
            prior.combined_precision, self._noise_dispersion(),
            online.statistics.mean_scale)

    def _new_task_covariances(self, rows, theta):
        if getattr(self, "_task_covariances", None) is None:
            return None
        batch = self._task_batch(self._fitted_family(), rows)
        covariances, _, _ = posterior_covariances(
            batch, self._problem(), self.transfer_center_, self.prior_precision_,
            theta, dispersion=self._noise_dispersion(), n_jobs=self.n_jobs)
        return covariances

    # --------------------------------------------------------------- tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        base_tags = get_tags(self._base_estimator())
        tags.target_tags.positive_only = base_tags.target_tags.positive_only
        return tags


def _mixture_covariance(mixture, dispersion, mean_scale):
    """The covariance of an unseen task's parameters under a mixture prior:
    the components' covariances and the spread of their means (see
    ``PriorMixture.spreads``)."""
    within, deviations = mixture.spreads()
    w = mixture.weights
    return (np.diag((dispersion / max(mean_scale, np.finfo(float).tiny))
                    * (w @ within))
            + (deviations.T * w) @ deviations)


def _prior_covariance(precision, dispersion, mean_scale):
    """The covariance of an unseen task's parameters (mean ``meta_params_``)
    under a prior of precision ``precision`` (estimator units)."""
    precision = np.asarray(precision, dtype=float)
    d = precision.shape[0]
    if not np.all(np.isfinite(precision)) or not np.any(precision):
        return np.full((d, d), np.inf)
    return (dispersion / max(mean_scale, np.finfo(float).tiny)) * (
        np.linalg.pinv(precision) if precision.ndim == 2
        else np.diag(np.where(precision > 0, 1.0 / precision, np.inf)))


# features whose spread lies beyond this factor of the intercept's unit
# scale get a warning (see _warn_unscaled_features)
UNSCALED_FEATURE_SPREAD = 1e3


def _warn_unscaled_features(X):
    """Warn of features whose spread is far from the intercept's unit scale.

    The learned prior compares the tasks' coefficients on the features' own
    scales: an isotropic level, the hold on shared coefficients beside
    random intercepts, the base penalty are all in those units. Far from
    them the structures lose their meaning: the default classifier on
    features of spread 1e6 scored a held-out log-loss of 3.3 where the pooled
    model scores 0.47 (the coefficients it should share were free in each
    task, held relative to the intercept's spread), silently.
    """
    if sp.issparse(X):
        _, variance = mean_variance_axis(sp.csr_matrix(X, dtype=np.float64), 0)
    else:
        variance = np.var(X, axis=0, dtype=np.float64)
    spread = np.sqrt(variance)
    bad = np.flatnonzero((spread > UNSCALED_FEATURE_SPREAD) | (
        (spread > 0) & (spread < 1.0 / UNSCALED_FEATURE_SPREAD)))
    if bad.size:
        shown = ", ".join(f"{j} ({spread[j]:.3g})" for j in bad[:5])
        warnings.warn(
            f"features {shown}{', ...' if bad.size > 5 else ''} have standard "
            f"deviations beyond {UNSCALED_FEATURE_SPREAD:g} times or below "
            f"1/{UNSCALED_FEATURE_SPREAD:g} of the intercept's unit scale: the "
            "learned prior compares the tasks' coefficients in the features' "
            "own units, and its structures (isotropic levels, shared "
            "coefficients beside random intercepts) lose their meaning far "
            "from unit scale. Standardize the features (StandardScaler, or "
            "skmeta.preprocessing.TaskScaler, in a Pipeline).",
            UserWarning, stacklevel=4)


def _warn_unbounded_tasks(batch, problem, labels):
    """Warn of tasks whose objective has no minimizer (nothing transferred).

    A task of one class (log-losses) or of all-zero counts (Poisson) is
    fitted best by parameters that grow without limit along a direction its
    penalty does not hold: there is none without a penalty, and the
    intercept is one where the base estimator leaves it out of its penalty
    (as scikit-learn's solvers other than liblinear do). scikit-learn
    refuses such a task, or returns an infinite intercept. A task lacking
    only some of several classes is not warned of: its missing classes'
    intercepts run off too, to probabilities of 0, as scikit-learn's
    multinomial fit of rows that lack a class of ``classes_`` does, silently.
    """
    if problem.code == SQUARED or not _penalty_leaves_unbounded(problem):
        return
    starts, stops = batch.offsets[:-1], batch.offsets[1:]
    bad = np.zeros(len(starts), dtype=bool)
    filled = np.flatnonzero(stops > starts)
    # reduceat over the tasks that have rows (its indices must be increasing)
    at = starts[filled]
    if problem.code == POISSON:
        bad[filled] = np.add.reduceat(batch.y * (batch.sw > 0), at) == 0
        what = "all-zero counts"
    else:
        # (rows of weight 0 count for nothing, as in scikit-learn's fits)
        weighed = batch.sw > 0
        highest = np.maximum.reduceat(np.where(weighed, batch.y, -np.inf), at)
        lowest = np.minimum.reduceat(np.where(weighed, batch.y, np.inf), at)
        bad[filled] = highest == lowest
        what = "a single class"
    if np.any(bad):
        names = ("the task" if labels is None
                 else f"tasks {labels[bad][:5].tolist()}"
                 + (" ..." if bad.sum() > 5 else ""))
        warnings.warn(
            f"{names} hold {what} and nothing bounds the model (no penalty "
            "in the base estimator on the intercept, or none at all, and no "
            "transfer): the fitted parameters grow until the solver stops.",
            UserWarning, stacklevel=4)


def _penalty_leaves_unbounded(problem):
    """Whether the base penalty leaves a direction free: no penalty, or an
    intercept outside it (which a task of one class, or of zero counts,
    runs along)."""
    if problem.lam2 <= 0 and problem.lam1 <= 0:
        return True
    if not problem.fit_intercept:
        return False
    p1 = problem.n_features + 1
    intercepts = np.arange(problem.n_outputs) * p1 + problem.n_features
    held = ((problem.lam2 > 0 and np.all(problem.l2w[intercepts] > 0))
            or (problem.lam1 > 0 and np.all(problem.l1w[intercepts] > 0)))
    return not held


def _why_no_posteriors(method, problem, n_tasks, method_name):
    """Why a fit of ``method`` keeps no posterior covariances, or None."""
    if not method.exact_for(problem):
        return (f"method={method_name!r} adapts a task by a fixed number of "
                "steps, not to its posterior mode" if not problem.is_network
                else "a network's tasks are adapted by a fixed number of "
                "gradient steps, not to a posterior mode")
    return covariances_refused(n_tasks, problem.n_params)


# parameters read afresh at every call (how the solvers run and report,
# where the task labels are read, what is kept, how probabilities are
# given); estimator and prior_estimator are held as fitted (estimator_, the
# prior mean)
_RUNTIME_PARAMETERS = ("n_jobs", "verbose", "tol", "max_iter", "task_column",
                       "keep_task_params", "posterior_proba", "estimator",
                       "prior_estimator")


def _same_setting(a, b):
    """Whether two parameter values are the same setting (arrays by value,
    mappings entry by entry)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_setting(a[k], b[k]) for k in a)
    generators = (np.random.RandomState, np.random.Generator)
    if isinstance(a, generators) or isinstance(b, generators):
        # (a clone copies a generator: the same setting, another object)
        return type(a) is type(b)
    if isinstance(a, BaseEstimator) or isinstance(b, BaseEstimator):
        return type(a) is type(b) and _same_setting(
            a.get_params(deep=False), b.get_params(deep=False))
    if isinstance(a, (np.ndarray, list, tuple)) or isinstance(
            b, (np.ndarray, list, tuple)):
        try:
            return bool(np.array_equal(np.asarray(a, dtype=object),
                                       np.asarray(b, dtype=object)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) \
            and np.isnan(b):
        return True
    return _same_value(a, b)


def _same_value(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a is b or a == b


def _unique_labels(y):
    """``np.unique(y)``; by counting for integer labels in a small range."""
    if y.dtype.kind in "iu" and y.size:
        low, high = int(y.min()), int(y.max())
        if -(2**62) < low and high < 2**62 and high - low < 4 * y.size + 1024:
            counts = np.bincount(y.astype(np.int64) - low)
            return (np.flatnonzero(counts) + low).astype(y.dtype)
    return np.unique(y)


class MetaClassifier(ClassifierMixin, _BaseMetaEstimator):
    """Meta-learned linear classifier over many related tasks.

    Learns, across tasks, a prior ``theta0`` (and precision ``Lambda``) over the
    parameters of a base classifier and fits every task ``t`` as

    ``argmin_theta L_t(theta) + lambda R(theta) + gamma/2 (theta - theta0)^T
    Lambda (theta - theta0)``

    where ``L_t + lambda R`` is the base estimator's own objective on task t
    (its loss and its own penalty, e.g. ``C`` and ``l1_ratio``) and the last
    term is the transfer toward the prior. A task unseen in ``fit`` is
    predicted with the prior model; :meth:`adapt` fits a new task from a few
    samples.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    estimator : estimator instance, default=None
        The base classifier; ``None`` means ``LogisticRegression()``.
        Supported: :class:`~sklearn.linear_model.LogisticRegression` (binary and
        multinomial; l2, l1, elastic-net or no penalty). skmeta solves its
        objective with its own solvers: the base estimator's ``solver``,
        ``tol`` and ``max_iter`` are not used, except that
        ``solver="liblinear"`` penalizes the intercept and that is reproduced.
        :class:`~sklearn.neural_network.MLPClassifier` too, with the
        gradient-based methods (see :ref:`networks`); its training settings
        do not apply (a changed one gets a warning).
    method : {"proximal", "imaml", "maml", "metasgd", "reptile"}, \
            default="proximal"
        How the meta-knowledge is learned. ``"proximal"``: every task is
        solved exactly and the prior re-estimated, alternately, until
        converged (regularized multi-task learning with an empirical-Bayes
        prior). The others learn the prior mean by stochastic meta-gradient
        over meta-batches of tasks split into support and query: ``"imaml"``
        (exact inner solve, implicit gradient), ``"maml"`` (``inner_steps``
        gradient steps, exact second-order gradient, or first order),
        ``"metasgd"`` (MAML with learned per-parameter step sizes),
        ``"reptile"``; these start the prior mean from the base estimator
        fitted on the pooled rows of up to 64 evenly spaced training tasks
        (a linear base), or from scikit-learn's random initialization of a
        network (drawn from its ``random_state``, or from this estimator's
        where it has none). See the :ref:`User Guide <user_guide>`.
    gamma : float >= 0 or "auto", default="auto"
        Strength of the transfer term, in the units of the base estimator's
        own l2 penalty (compare with ``1/C``). ``0`` fits tasks independently
        (plain MAML for the gradient-step methods). ``"auto"`` learns it by
        empirical Bayes: with the prior for ``"proximal"``; for the other
        methods, as ``"proximal"`` learns the strength of an isotropic prior
        on the same tasks, but of the transfer term alone, centred on the
        prior mean, beside the base estimator's penalty (``"proximal"``
        counts that penalty as part of the prior and learns what transfer
        it needs beyond it: with an l2 penalty in the base estimator the two
        ``gamma_`` differ, by orders of magnitude for ``Ridge(alpha=1)``).
        With a network base estimator, ``"auto"`` is 0
        for ``"maml"``, ``"metasgd"`` and ``"reptile"`` (MAML's own
        formulation: the meta-learned starting point and the few steps from
        it are the transfer; a network's non-convex tasks give no
        empirical-Bayes estimate), and ``"imaml"`` needs a number > 0.
    prior : {"auto", "isotropic", "diagonal", "full", "lowrank", "mixture", \
            "pooled"}, default="auto"
        Shape ``Lambda`` of the prior precision: the identity, or a learned
        diagonal, full or low-rank-plus-diagonal (factor model) matrix
        (empirical Bayes, normalized to unit determinant so that ``gamma``
        keeps its meaning; ``method="proximal"`` only). With
        ``gamma="auto"`` the tasks' prior counts the base estimator's l2
        penalty ``D`` beside the transfer term: ``"isotropic"`` then learns
        the transfer ``pi I`` beside ``D`` (``prior_shape_`` the identity,
        ``gamma_`` the learned ``pi``, the tasks' covariance proportional to
        ``(pi I + D)^-1``), and the other structures the covariance of the
        tasks' parameters, of which ``Lambda`` is the precision less ``D``
        (normalized; negative along coefficients whose tasks spread wider
        than ``D`` alone lets them). ``"mixture"``: a
        mixture of ``n_prior_components`` Gaussian priors with diagonal
        covariances, for tasks that come in families (task clustering;
        ``method="proximal"`` only). See :ref:`mixture_priors`.
        ``"pooled"``: no coefficient varies across tasks; every task is the
        base estimator fitted to all tasks' rows at once (its penalty counted
        once; each row weighted as in its task, so ``class_weight=
        "balanced"`` balances each task's classes), held there by an
        isotropic precision ``gamma_`` a million times a bound on any task's
        curvature (``method="proximal"``, with ``gamma="auto"``; ``gamma=0``
        fits every task alone, as for any prior). ``"auto"``:
        for ``"proximal"``, the structure whose prior best predicts held-out
        rows of the training tasks (``prior_kind_``, ``prior_scores_``),
        full and low-rank ones compared only with at least two tasks per
        coefficient that varies (fewer do not determine a full covariance;
        see :ref:`learned_prior`), and ``"pooled"`` with them where
        ``random_effects`` names no coefficients, ``gamma="auto"`` and no
        ``prior_estimator`` is given; for
        the other methods, and for every method with a network base
        estimator, ``"isotropic"``, the only prior they meta-learn.
    n_prior_components : int >= 1 or "auto", default="auto"
        Number of components of ``prior="mixture"`` (and only of it);
        ``"auto"`` chooses among 1 to ``min(4, n_tasks // 5)`` by BIC.
    prior_df : float > 0, default=None
        Degrees of freedom of a Student-t prior (with ``prior`` "isotropic",
        "diagonal" or "mixture"; ``method="proximal"`` only): its EM weights
        (``task_weights_``) keep outlying tasks from moving the prior. None:
        Gaussian.
    random_effects : "auto", None or array-like, default="auto"
        Which coefficients vary across tasks, for a learned prior of
        ``method="proximal"``: ``None``, all of them; feature names, integer
        positions of features or ``"intercept"``: those only, the others
        being shared by all tasks (a mixed model's fixed effects; with
        ``gamma="auto"``, which holds them shared: a fixed ``gamma`` pulls
        every coefficient with the same strength, and refuses a list);
        ``"auto"``: as ``None``, and with ``gamma="auto"``, ``prior="auto"``
        also considers random intercepts only. A network base estimator
        takes ``"auto"`` or ``None`` (its parameters are layers of weights).
    task_column : int, str or list, default=None
        Column of ``X`` holding each sample's task label (an integer position,
        or a name for DataFrames); it is removed before the models see the
        features. This is what makes scorers and searches task-aware, since
        they pass no metadata to ``predict``. A list of columns, outermost
        level first (``["region", "store"]``), gives nested tasks and a
        hierarchical prior (see :ref:`nested_tasks`).
    prior_estimator : estimator instance, default=None
        A fitted classifier of the base estimator's family (same classes and
        features) whose parameters are the prior mean ``theta0``
        (parameter transfer): kept fixed by ``method="proximal"``, the
        starting point of the other methods. With ``gamma="auto"``, the
        transfer term toward it is learned beside the base estimator's own
        penalty (toward zero): a model the tasks do not follow is
        discounted. Its coefficients are read by position: fitted with
        feature names, they must be the data's, in the same order.
        :func:`~sklearn.base.clone` (which ``GridSearchCV`` and
        ``cross_val_score`` call) copies an estimator parameter unfitted:
        wrap the model in :class:`~sklearn.frozen.FrozenEstimator` to keep
        it fitted there.
    inner_steps : int, default=5
        Gradient steps of the inner loop of ``"maml"``, ``"metasgd"`` and
        ``"reptile"`` (proximal steps when the base penalty has an l1 part).
        Unused by ``"proximal"`` and ``"imaml"``, which solve exactly, except
        with a network base estimator, whose tasks every method adapts by
        ``inner_steps`` gradient steps.
    inner_lr : float > 0 or "auto", default="auto"
        Inner step size of ``"maml"``, ``"metasgd"`` (its initial value) and
        ``"reptile"``. ``"auto"``: ``1 / L_t`` with ``L_t`` the smoothness of
        the objective on the rows the task adapts on, estimated by ten steps
        of power iteration (from below: steps of ``1 / L_t`` stay short of
        the ``2 / L`` at which gradient steps diverge) (then
        ``inner_lr_`` holds multipliers of it). Unused by the other methods.
        A network needs a number, a step on its summed loss, and takes it in
        ``"imaml"`` too (its inner problem is solved by ``inner_steps``
        steps).
    first_order : bool, default=False
        ``"maml"`` only: drop the second-order terms of the meta-gradient
        (first-order MAML).
    adapt_layers : {"all", "output"}, default="all"
        Parameters of a network base estimator that the inner steps move:
        all, or those of the output layer only (ANIL; the hidden layers stay
        the prior's and are meta-learned through it). ``"imaml"``,
        ``"maml"`` and ``"metasgd"``; a linear model is its own output
        layer.
    meta_lr : float > 0, default=None
        Learning rate of the meta-optimizer: Adam's for ``"imaml"``,
        ``"maml"`` and ``"metasgd"`` (default 0.01), the outer step
        ``epsilon`` of ``"reptile"`` (default 0.5). Unused by ``"proximal"``.
        Adam moves each parameter by about ``meta_lr`` per meta-iteration,
        in the parameters' own units: with targets or coefficients far
        from size 1 (a target in units of 1e-6, or 1e3), scale the data or
        ``meta_lr`` with them; Reptile's step is relative and needs
        neither. Meta-SGD's step sizes move by Adam on their logarithms at
        ``meta_lr`` over the starting prior mean's root mean square, at
        least 1: relative moves, the same for coefficients of any size above
        1 with ``meta_lr`` scaled with them (for smaller ones, at ``meta_lr``
        itself, the rate its default is set for). Step sizes that fall below
        1e-8 of their start are warned of (``ConvergenceWarning``).
    meta_batch_size : int, default=32
        Tasks per meta-iteration of the gradient-based methods.
    query_fraction : float in (0, 1], default=0.5
        Share of each training task's rows used as query (the rest is the
        support), drawn anew at every meta-iteration; ``"imaml"``, ``"maml"``
        and ``"metasgd"`` only (Reptile adapts on all rows).
    max_iter : int, default=None
        Maximum number of outer iterations of ``"proximal"`` (default 300;
        a fixed prior converges in a few, a learned one may crawl where the
        tasks barely differ), or number of meta-iterations of the other
        methods (default 500).
    tol : float in [0, 1), default=1e-4
        ``"proximal"``: stop when the prior mean and the task models change by
        less than ``tol`` (relative to their magnitude, or absolute below 1;
        for a fixed prior's mean, below the models' own size) in an
        iteration, and a learned prior's noise variance by less than ``tol``
        relative. The magnitude is the largest parameter's: an
        intercept far larger than the coefficients (targets around 1e6)
        loosens the test on them, so center such targets (or lower
        ``tol``). It must be below 1: a change as large as the parameters
        themselves is no convergence. The gradient-based methods' learned
        strength (``gamma="auto"`` with a linear base estimator) is this
        method's, learned to ``tol``. ``"imaml"`` with a network:
        relative residual at which the conjugate gradient of the implicit
        meta-gradient stops (earlier at a direction of non-positive
        curvature, where ``gamma`` is below the network's negative
        curvature: see the user guide). Unused otherwise.
    n_jobs : int, default=None
        Number of task shards solved in parallel (threads, or the workers of
        an active joblib backend such as Dask). ``"maml"``, ``"metasgd"``
        and ``"reptile"`` also share the tasks of each meta-batch among that
        many of numba's threads (at most ``NUMBA_NUM_THREADS``). ``None``
        means 1 unless in a :obj:`joblib.parallel_backend` context; ``-1``
        uses all processors. Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Draws the meta-batches and the support/query splits of the gradient
        based methods, a network's initial weights where its own
        ``random_state`` is None, the validation episodes of
        ``unlabeled_weight="auto"`` and the k-means start of
        ``prior="mixture"``; ``method="proximal"`` is otherwise
        deterministic.
    verbose : int, default=0
        Print progress (outer iterations, or every tenth of the
        meta-iterations) when positive.
    keep_task_params : bool, default=True
        Whether the fitted parameters of the tasks of earlier calls are kept
        (``tasks_``, ``task_params_``, :meth:`task_estimator`). ``False``
        keeps only those of the last call to :meth:`fit` or
        :meth:`partial_fit`: the fitted state then takes the same memory
        however many tasks a stream has brought (the prior keeps their
        statistics, see :ref:`streaming_tasks`), and a dropped task is
        predicted, as any task not in ``tasks_``, by the prior model. A task
        seen in an earlier call is not recognized then, and counts as new.
    unlabeled_weight : float >= 0, "auto" or None, default=None
        What ``y == -1`` means, and the weight ``omega`` of such rows.
        ``None``: ``-1`` is a class label like any other, as for
        :class:`~sklearn.linear_model.LogisticRegression`. A number or
        ``"auto"``: a row with ``y == -1`` is *unlabeled*, the convention of
        :mod:`sklearn.semi_supervised`, in ``fit``, ``partial_fit``,
        ``adapt`` and ``adapt_tasks``. As for scikit-learn's semi-supervised
        estimators, ``-1`` then cannot be a class (relabel such a class
        first, e.g. with :class:`~sklearn.preprocessing.LabelEncoder`),
        ``classes_`` are those of the labeled rows, and ``y`` of a string
        dtype is refused (use dtype object, with ``-1`` on unlabeled rows).
        Unlabeled rows enter each task's model through a Gaussian model of
        the task's classes, with weight ``omega`` (see Notes); ``0`` ignores
        them. ``"auto"`` chooses ``omega`` among 0, 0.1, 0.3 and 1 on
        few-shot episodes of the training tasks and keeps 0 unless a weight
        raises their accuracy significantly (``unlabeled_validation_``).
        The prior itself is learned from the labeled rows. In the Gaussian
        model's within-class covariance, ``sample_weight`` weighs the rows
        as reliability weights (a cell of ``n`` rows and weight ``W``
        normalizes by ``W (n - 1) / n``, so that scaling all weights changes
        nothing): there a weight of 2 is close to, not exactly, a repeated
        row.
    posterior_proba : bool, default=False
        Whether :meth:`predict_proba` and :meth:`predict_log_proba` average
        the class probabilities over each task's posterior (the Laplace
        approximation under the learned prior: see
        :meth:`task_posterior_cov`) instead of taking them at its fitted
        parameters. A task known from few rows then predicts less confident
        probabilities, and an unseen task those of the prior's spread. The
        average is the probit approximation (see Notes); :meth:`predict`
        and :meth:`decision_function` follow the averaged probabilities
        (for two classes, the same classes as at the fitted parameters). The
        fit keeps each task's posterior covariance (``n_tasks *
        n_params**2`` floats, one more solve of every task): for
        ``method="proximal"`` or ``"imaml"`` with a linear base estimator,
        tasks of at most 512 parameters and covariances of at most
        ``COVARIANCE_MEMORY`` (256 MiB) in all, without ``unlabeled_weight``
        and not on Dask collections; other fits, and a ``partial_fit`` that
        would exceed the memory, are refused. With ``prior="mixture"`` (or
        ``prior_df``) an unseen task's spread is the mixture's covariance
        and a seen task's posterior is taken under the single Gaussian of
        the mixture's mean and variances, as for
        :meth:`MetaRegressor.predict`'s ``return_std``. The base estimators
        that :meth:`adapt` and :meth:`task_estimator` return predict at
        their fitted parameters.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Union of the classes over all tasks; a task may lack some. With
        ``unlabeled_weight`` set, the classes of the labeled rows.
    tasks_ : ndarray of shape (n_tasks,) or (n_tasks, n_levels), or None
        Sorted labels of the tasks seen in ``fit`` and ``partial_fit`` (of
        the last call only, with ``keep_task_params=False``); ``None`` for a
        model fitted without task identities. For nested tasks, one row per
        task: its path of labels, outermost level first (object array).
    groups_ : list of ndarray
        Nested tasks only: for each level of groups, outermost first, an
        object array of shape ``(n_groups, level + 1)`` holding each group's
        path of labels.
    group_params_ : list of ndarray
        Nested tasks only: for each level of groups, the groups' posterior
        mean parameters, ``(n_groups, n_params)``: the models of new tasks
        of these groups (see :meth:`group_estimator`).
    group_precisions_ : list of ndarray
        Nested tasks only: for each level of groups, the diagonal precision
        ``(n_params,)`` of a group's parameters about its parent's, in the
        units of ``prior_precision_`` (which is then the tasks' transfer
        precision about their group).
    task_params_ : ndarray or dask.array.Array of shape (n_tasks, n_params)
        Flat parameters of each task's model: for each output the
        coefficients then (if fitted) the intercept.
        After a fit on Dask collections, a Dask array kept on the cluster
        (one chunk per partition of tasks, in the order of ``tasks_``);
        ``task_params_.compute()`` brings it into memory, as pickling does
        (see :ref:`scaling-out`).
    meta_params_ : ndarray of shape (n_params,)
        The prior mean ``theta0`` (same layout): the model for unseen tasks.
    prior_precision_ : ndarray of shape (n_params,) or (n_params, n_params)
        Precision ``gamma_ * prior_shape_`` of the transfer term (a matrix
        for full and low-rank priors, also where ``prior="auto"`` chose one;
        else its diagonal). Beside a base estimator's l2 penalty counted in
        a learned prior, it may be negative along coefficients whose tasks
        spread wider than the penalty alone lets them: the tasks' prior
        precision, penalty and transfer term together, stays positive
        definite (see the user guide).
    transfer_center_ : ndarray of shape (n_params,)
        Where the transfer term pulls: ``meta_params_``, except under a prior
        learned by ``method="proximal"`` with a base estimator whose own l2
        penalty then counts as part of the prior (see the user guide); the
        tasks' parameters are then centred on ``meta_params_`` by the two
        terms together, and ``adapt`` solves ``L + lambda R + gamma/2 (theta -
        transfer_center_)' Lambda (theta - transfer_center_)`` (with
        ``prior="mixture"`` or ``prior_df``, under the mixture itself; these
        attributes then describe its single Gaussian, see
        ``task_clusters_``).
    prior_shape_ : ndarray of shape (n_params,) or (n_params, n_params)
        The shape ``Lambda`` of that precision, with a determinant of 1 in
        magnitude (-1 where the transfer term is negative along an odd
        number of directions; a matrix for full and low-rank priors, also
        where ``prior="auto"`` chose one; else its diagonal).
    gamma_ : float
        The transfer strength used (learned when ``gamma="auto"``: the
        geometric mean of the magnitudes of the precision's eigenvalues). With
        ``prior="mixture"`` or ``prior_df``, that of the single Gaussian with
        the prior's mean and variances (as ``prior_precision_``), which a
        fixed ``gamma``, the components' strength, leaves wider. With the
        ``"pooled"`` structure, the strength that holds every task at the
        pooled model.
    prior_kind_ : str
        The structure of the prior fitted, e.g. ``"isotropic"``,
        ``"lowrank-2"``, ``"isotropic on 1 random effects"``, ``"mixture of
        2 diagonal"``, ``"pooled"``: what ``prior="auto"`` chose, or the one
        given.
    prior_scores_ : dict of str to float
        With ``prior="auto"`` (or ``"lowrank"``, or ``n_prior_components=
        "auto"``), each candidate's score: the mean held-out loss per unit of
        weight (the BIC for mixtures); smaller is better, ``inf`` for a
        candidate whose precision degenerated. Empty where nothing was
        compared.
    inner_lr_ : ndarray of shape (n_params,)
        Per-parameter inner step sizes of ``"maml"``, ``"reptile"`` (constant)
        and ``"metasgd"`` (learned, by Adam on their logarithms: always
        positive, each moving by relative amounts); multipliers of ``1 / L_t``
        when ``inner_lr="auto"``. Only set for those methods, and for
        ``"imaml"`` with a network base estimator, whose tasks it adapts by
        gradient steps (constant).
    estimator_ : estimator instance
        Unfitted clone of the base estimator the models were fitted with.
    meta_estimator_ : estimator instance
        Fitted base estimator holding ``theta0`` (the population model; for
        a fit without task identities, that fit itself).
    coef_ : ndarray of shape (n_tasks, n_outputs, n_features)
        Each seen task's coefficients (``n_outputs`` is 1 for two classes).
    intercept_ : ndarray of shape (n_tasks, n_outputs)
        Each seen task's intercepts.
    task_clusters_ : ndarray of shape (n_tasks, n_components)
        With ``prior="mixture"`` (or ``prior_df``): each task's
        responsibilities, its posterior over the prior's ``n_components =
        n_prior_components_`` components.
    cluster_weights_ : ndarray of shape (n_components,)
        The components' weights.
    cluster_means_ : ndarray of shape (n_components, n_params)
        The components' means (layout of ``meta_params_``).
    cluster_precisions_ : ndarray of shape (n_components, n_params)
        The components' transfer-term precisions, diagonal (layout of
        ``prior_precision_``).
    n_prior_components_ : int
        The number of components fitted.
    task_weights_ : ndarray of shape (n_tasks_fit,)
        With ``prior_df``: each training task's Student-t EM weight (near 0
        for outlying tasks); the tasks of ``fit``.
    n_iter_ : int
        Number of outer iterations (or meta-iterations) run, by the last
        call that moved the prior.
    n_tasks_seen_ : int
        Number of distinct tasks that have entered the model: those of
        :meth:`fit`, and the new ones of each :meth:`partial_fit` (every
        task of a chunk, with ``keep_task_params=False``).
    n_features_in_ : int
        Number of columns seen during fit (task column included).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen during fit, when ``X`` has string column names.
    unlabeled_weight_ : float
        The weight ``omega`` of unlabeled rows (chosen when
        ``unlabeled_weight="auto"``). This and the next two attributes are
        only set when ``unlabeled_weight`` is not None.
    class_means_ : ndarray of shape (n_classes, n_features)
        Mean features of each class over the labeled rows of all training
        tasks (task column excluded): the prior mean of a task's class means.
    within_class_covariance_ : ndarray of shape (n_features, n_features) \
            or (n_features,)
        Covariance of the features within a class of a task, pooled over the
        training tasks' labeled rows (over all their rows about their task's
        mean where no class of a task has two labeled rows) and shrunk toward
        ``s I`` (``s`` its
        mean variance) with as many pseudo-rows as features, which keeps it
        well conditioned where the rows are few next to the features (its
        diagonal for sparse input or more than 128 features).
    unlabeled_validation_ : dict
        With ``unlabeled_weight="auto"`` only: ``"weight"`` the candidate
        weights, ``"accuracy"`` and ``"log_loss"`` their means over the
        held-out rows of the validation episodes, ``"accuracy_gain_se"`` the
        standard error of each one's accuracy gain over weight 0,
        ``"n_episodes"`` and ``"n_tasks"`` (the training tasks they came
        from).
    prior_covariance_ : ndarray of shape (n_params, n_params)
        With ``posterior_proba=True``: the covariance of an unseen task's
        parameters about ``meta_params_`` under the learned prior (the
        posterior covariance of each seen task is
        :meth:`task_posterior_cov`'s).

    See Also
    --------
    MetaRegressor : The same for regression.
    sklearn.linear_model.LogisticRegression : The default base estimator.

    Notes
    -----
    To load a fitted model with ``skops.io.load``, trust
    ``skmeta._estimators.MetaClassifier``, the only skmeta type it holds;
    see :ref:`persistence`.

    **Probabilities under the posterior.** With ``posterior_proba=True``, a
    row ``x`` of task ``t`` has, under the task's Laplace posterior
    ``N(theta_t, Sigma_t)``, Gaussian logits. For two classes, the logit
    ``z`` has mean ``mu`` and variance ``v = x~' Sigma_t x~`` (``x~``: ``x``
    and a 1 for the intercept), and ``P(y = 1) = E[sigmoid(z)]`` is
    approximated by ``sigmoid(mu / sqrt(1 + pi v / 8))`` (MacKay's probit
    approximation, within 0.018 of the integral). For ``K`` classes, ``p_k
    = 1 / (1 + sum_{j != k} exp(z_j - z_k))`` and each difference of
    logits is scaled so, by its own variance, before the ``K`` results are
    normalized (the mean-field approximation of Lu, Ie & Sha, 2020; the
    probit approximation itself for two classes), which has no such bound:
    against a Monte Carlo integral it was up to 0.05 off for an unseen
    task of three classes under a wide prior (0.695 against 0.746). Both
    move the probabilities toward the uniform ones; the class with the
    largest probability, which :meth:`predict` returns, can change only
    for ``K > 2``.

    **Unlabeled rows.** With ``unlabeled_weight`` set, a task with labeled
    rows ``L`` and unlabeled rows ``U`` is fitted jointly with ``K``
    Gaussian clusters of its features, one per class,
    ``g_k = N(mu_k, Sigma)``: the class means ``mu_k`` are the task's own,
    ``Sigma`` (``within_class_covariance_``) and the clusters' prior means
    ``m_k`` (``class_means_``) are learned across tasks. An unlabeled row
    is seen as drawn by the task's classifier ``p_theta`` and then through
    its class's cluster, and the task solves

    ``min_{theta, mu} L_t(theta) + lambda R(theta) + gamma P(theta)
    + omega G_t(theta, mu)``, with

    ``G_t = - sum_L w_i log g_{y_i}(x_i) - sum_U w_j log sum_k
    p_theta(k | x_j) g_k(x_j) + 1/2 sum_k (mu_k - m_k)^T Sigma^-1
    (mu_k - m_k)``

    the first terms being its supervised inner problem. EM solves it: the
    E-step gives each unlabeled row the responsibilities ``q_jk``
    proportional to ``p_theta(k | x_j) g_k(x_j)``; the M-step refits the
    classifier with each unlabeled row added once per class with weight
    ``omega w_j q_jk`` (by the method's own adaptation, so every method
    applies; class weights apply to the labeled rows only), and moves each
    ``mu_k`` to the weighted mean of the task's rows of class ``k``, ``m_k``
    counting for one row. Each step lowers the objective for the methods
    that solve the inner problem exactly (``"proximal"``, ``"imaml"``); for
    the others it is a fixed-point iteration of their adaptation. Where the
    clusters do not tell the classes apart, ``q`` is the classifier's own
    probability, the unlabeled term's gradient vanishes and the supervised
    model is the fixed point.

    A task with only unlabeled rows starts from the prior model
    ``theta0``: its rows are labeled by it, its clusters placed on them,
    and it ends at the minimizer of ``lambda R + gamma P + omega G_t`` (no
    labeled term). With ``omega = 0`` it is the prior model itself, as for
    a task never seen. See :ref:`unlabeled_rows` for when unlabeled rows
    help.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skmeta import MetaClassifier
    >>> from skmeta.datasets import make_meta_classification
    >>> X, y, tasks = make_meta_classification(n_tasks=30, n_samples_per_task=20,
    ...                                        random_state=0)
    >>> meta = MetaClassifier(LogisticRegression(C=1.0), gamma=1.0)
    >>> meta.fit(X, y, tasks=tasks).tasks_.shape
    (30,)
    >>> meta.predict(X[:3], tasks=tasks[:3]).shape
    (3,)
    >>> clf = meta.adapt(X[:10], y[:10])  # a plain, fitted LogisticRegression
    >>> type(clf).__name__
    'LogisticRegression'

    Unlabeled rows (``y == -1``) of a new task, with 2 labeled ones:

    >>> semi = MetaClassifier(unlabeled_weight=1.0).fit(X, y, tasks=tasks)
    >>> y_new = y[:20].copy()
    >>> y_new[2:] = -1
    >>> semi.adapt(X[:20], y_new).classes_
    array([0, 1])
    """

    _is_classifier = True
    __metadata_request__predict_proba = _TASKS_REQUESTED
    __metadata_request__predict_log_proba = _TASKS_REQUESTED
    __metadata_request__decision_function = _TASKS_REQUESTED

    _parameter_constraints: dict = {
        **_BaseMetaEstimator._parameter_constraints,
        "unlabeled_weight": [Interval(Real, 0, None, closed="left"),
                             StrOptions({"auto"}), None],
        "posterior_proba": ["boolean"],
    }

    # the shared parameters, then the classifier's own (scikit-learn reads
    # the parameters off this signature; tests/test_semi_supervised.py checks
    # that the shared defaults stay those of _BaseMetaEstimator)
    def __init__(  # noqa: PLR0913
        self,
        estimator=None,
        *,
        method="proximal",
        gamma="auto",
        prior="auto",
        n_prior_components="auto",
        prior_df=None,
        random_effects="auto",
        task_column=None,
        prior_estimator=None,
        inner_steps=5,
        inner_lr="auto",
        first_order=False,
        adapt_layers="all",
        meta_lr=None,
        meta_batch_size=32,
        query_fraction=0.5,
        max_iter=None,
        tol=1e-4,
        n_jobs=None,
        random_state=None,
        verbose=0,
        keep_task_params=True,
        unlabeled_weight=None,
        posterior_proba=False,
    ):
        super().__init__(
            estimator, method=method, gamma=gamma, prior=prior,
            n_prior_components=n_prior_components, prior_df=prior_df,
            random_effects=random_effects,
            task_column=task_column, prior_estimator=prior_estimator,
            inner_steps=inner_steps, inner_lr=inner_lr, first_order=first_order,
            adapt_layers=adapt_layers, meta_lr=meta_lr, meta_batch_size=meta_batch_size,
            query_fraction=query_fraction, max_iter=max_iter, tol=tol,
            n_jobs=n_jobs, random_state=random_state, verbose=verbose,
            keep_task_params=keep_task_params)
        self.unlabeled_weight = unlabeled_weight
        self.posterior_proba = posterior_proba

    def _base_estimator(self):
        return LogisticRegression() if self.estimator is None else self.estimator

    # ------------------------------------------------- posterior probabilities
    _no_covariance_reason = (
        "This model keeps no posterior covariances: fit it with "
        "posterior_proba=True.")

    def _keeps_posteriors(self):
        return self.posterior_proba

    def _check_posteriors_possible(self, reason):
        if not self.posterior_proba:
            return
        if self._marks_unlabeled(fitted=False):
            reason = ("the posterior of a task fitted with unlabeled rows is "
                      "not a Laplace posterior of its labeled ones")
        if reason is not None:
            # what the refused fit validated so far replaced the last fit's
            # attributes in part: none of them stands
            self._forget_fit()
            raise ValueError(
                f"posterior_proba=True needs each task's posterior covariance, "
                f"which this fit cannot keep: {reason}. Leave "
                "posterior_proba=False.")

    def _outgrown(self, reason):
        if not self.posterior_proba:
            super()._outgrown(reason)
            return
        raise ValueError(
            f"posterior_proba=True: {reason}. Nothing was changed; pass "
            "fewer new tasks, or set keep_task_params=False to keep those "
            "of the last call only.")

    # ------------------------------------------------------- unlabeled rows
    def _marks_unlabeled(self, fitted):
        """Whether ``y == -1`` marks unlabeled rows: as ``unlabeled_weight``
        says while fitting, as the last fit had it afterward (``fitted``)."""
        if fitted:
            return hasattr(self, "unlabeled_weight_")
        return self.unlabeled_weight is not None

    def _fit_method(self, method, family, problem, rows, prior_mean):
        if not self._marks_unlabeled(fitted=False):
            return super()._fit_method(method, family, problem, rows, prior_mean)
        if self.prior == "mixture" or self.prior_df is not None:
            raise ValueError(
                "unlabeled_weight is not supported with prior='mixture' or "
                "prior_df: leave unlabeled_weight=None or use another prior.")
        fitted, unlabeled = fit_with_unlabeled(
            method, family, problem, rows, prior_mean,
            weight=self.unlabeled_weight, classes=self.classes_,
            single_task=self.tasks_ is None, random_state=self.random_state)
        # the prior is learned from the labeled rows, and unlabeled ones move
        # the tasks: partial_fit keeps it fixed (see partial_fit)
        fitted.online = None
        self.unlabeled_weight_ = unlabeled.weight
        self.class_means_ = unlabeled.model.means
        self.within_class_covariance_ = unlabeled.model.covariance
        if unlabeled.validation is not None:
            self.unlabeled_validation_ = unlabeled.validation
        elif hasattr(self, "unlabeled_validation_"):
            del self.unlabeled_validation_
        return fitted

    def _adapt_method(self, family, rows, labels=None):
        if not self._marks_unlabeled(fitted=True):
            return super()._adapt_method(family, rows, labels)
        return adapt_with_unlabeled(
            self._meta_method(fitted=True), family, self._problem(),
            self._meta_fit(), rows,
            weight=self.unlabeled_weight_,
            model=FeatureModel(self.class_means_, self.within_class_covariance_),
            classes=self.classes_)

    def _set_targets(self, y, classes):
        if self._marks_unlabeled(fitted=False):
            y = labeled_targets(y, classes)
        y = np.asarray(y)
        if y.dtype.kind == "O":
            check_classification_targets(y)  # before np.unique meets mixed types
            labels = np.unique(y)
        else:
            labels = _unique_labels(y)
            # scikit-learn's target-type check reuses unique values found in
            # the dtype's metadata (its `attach_unique` protocol); without
            # support for it, it computes them again
            check_classification_targets(
                y.view(np.dtype(y.dtype, metadata={"unique": labels})))
        if classes is not None:
            classes = np.unique(classes)
            unknown = np.setdiff1d(labels, classes)
            if unknown.size:
                raise ValueError(
                    f"y contains labels {unknown.tolist()} not in classes="
                    f"{classes.tolist()}."
                )
            absent = np.setdiff1d(classes, labels)
            if absent.size:
                # scikit-learn's partial_fit allows it, but the first call
                # fits the prior on these rows alone: a class without rows
                # has no finite optimum there (its intercept and the prior
                # mean's run off toward -inf), and later chunks move the
                # prior from that point
                warnings.warn(
                    f"classes {absent.tolist()} have no rows in this first "
                    "call to partial_fit, which fits the prior on its rows "
                    "alone: their parameters have no finite optimum and run "
                    "off, and later chunks with rows of them move the prior "
                    "from there (predictions may then be far from a fit on "
                    "all rows). For a sound prior, pass a first chunk with "
                    "rows of every class.", UserWarning, stacklevel=6)
            self.classes_ = classes
        else:
            self.classes_ = labels
        if len(self.classes_) < 2:
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, "
                f"but the data contains only one class: {self.classes_[0]!r}."
            )

    def _n_classes(self):
        return len(self.classes_)

    def _encode_y(self, y, known_only=False):
        # known_only: encoding rows for adapt and partial_fit, after a fit
        if not self._marks_unlabeled(fitted=known_only):
            return self._encode_labels(y, known_only)
        unlabeled = unlabeled_rows(y)
        codes = np.full(unlabeled.shape[0], float(UNLABELED))
        if not unlabeled.all():
            codes[~unlabeled] = self._encode_labels(np.asarray(y)[~unlabeled],
                                                    known_only)
        return codes

    def _encode_labels(self, y, known_only):
        y = np.asarray(y)
        if known_only:
            check_classification_targets(y)
        classes = self.classes_
        if (classes.dtype.kind in "iuf" and y.dtype.kind in "iuf"
                and np.array_equal(classes, np.arange(len(classes)))):
            # labels 0..K-1 are their own codes (saves a search per row)
            codes = y
            unknown = (y < 0) | (y > len(classes) - 1) | (y != np.round(y))
        else:
            codes = np.searchsorted(classes, y)
            codes = np.clip(codes, 0, len(classes) - 1)
            unknown = classes[codes] != y
        if np.any(unknown):
            hint = ""
            if np.any(unlabeled_rows(y[unknown].astype(object))):
                hint = (" -1 marks unlabeled rows only for a model fitted with "
                        "unlabeled_weight set.")
            raise ValueError(
                f"y contains labels {np.unique(y[unknown]).tolist()} not seen "
                f"during meta-training (classes_={self.classes_.tolist()})."
                + hint
            )
        return codes.astype(np.float64)

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, *, tasks=None, sample_weight=None, classes=None):
        """Fit a chunk of tasks, and move the prior by the new ones.

        With ``method="proximal"`` (and neither ``prior="mixture"``,
        ``prior_df`` nor ``unlabeled_weight``), the tasks new to the model
        move the prior online: they are solved under it, and it is
        re-estimated from running sufficient statistics of every task seen
        so far, the earlier ones carried to the current prior (incremental
        empirical Bayes; see :ref:`streaming_tasks`). Twenty chunks of 200
        tasks give the prior one :meth:`fit` on the 4,000 gives, to about
        1% on tasks of 50 rows (``benchmarks/bench_streaming.py``), less
        closely where tasks carry little information or the chunks are
        small: for binary tasks of 20 to 30 rows, from a few percent to
        twice :meth:`fit`'s precision on some coefficients, and a few
        percent on the mean (the example below: chunks of 10 to 30 tasks,
        precisions up to 2.2 times and means up to 3 % from :meth:`fit`'s).
        What is learned
        is what :meth:`fit` learned on the first call:
        the structure of the prior (``prior_kind_``, chosen then under
        ``prior="auto"``), and the strength if ``gamma="auto"``; with a
        number ``gamma`` and an isotropic prior, only the prior mean moves
        (not at all with ``prior_estimator``). A task already known is
        refitted on the rows passed now under the updated prior, without
        entering the prior a second time (rows from earlier calls are not
        stored); a task of an earlier call not passed again keeps the model
        of its call's prior (the prior moves, it does not). With the other
        methods and priors the prior does not move, and the tasks are fitted
        from it. :meth:`adapt` and :meth:`adapt_tasks` fit tasks without
        moving the prior. A model fitted without task identities is one
        task, refitted on the rows passed now alone (a warning says so): it
        is no incremental fit of one model over chunks of rows.

        On an unfitted estimator this is :meth:`fit`, with ``classes_`` set from
        ``classes``.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples.
        y : array-like of shape (n_samples,)
            Targets; ``-1`` marks an unlabeled row when the model was fitted
            (or is first fitted) with ``unlabeled_weight`` set.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        classes : array-like of shape (n_classes,), default=None
            All classes; taken into account on the first call only (later
            calls' labels must be among ``classes_``: a ValueError). With
            ``unlabeled_weight`` set, ``-1`` cannot be one of them. The
            first call's rows need not contain every class, but it fits the
            prior on them alone, where a class without rows has no finite
            model: that warns, and a first chunk with rows of every class
            gives a sound prior.

        Returns
        -------
        self : object
            The updated meta-estimator.

        Examples
        --------
        >>> from skmeta import MetaClassifier
        >>> from skmeta.datasets import make_meta_classification
        >>> X, y, tasks = make_meta_classification(
        ...     n_tasks=60, n_samples_per_task=30, n_features=4,
        ...     n_informative=2, n_redundant=0, random_state=0)
        >>> meta = MetaClassifier(prior="diagonal", keep_task_params=False)
        >>> for start in range(0, 60, 20):  # three chunks of 20 tasks
        ...     rows = (tasks >= start) & (tasks < start + 20)
        ...     meta = meta.partial_fit(X[rows], y[rows], tasks=tasks[rows])
        >>> meta.n_tasks_seen_, meta.task_params_.shape  # the last chunk kept
        (60, (20, 5))
        """
        return self._partial_fit(X, y, tasks, sample_weight, classes)

    @dask_aware
    def decision_function(self, X, *, tasks=None):
        """Linear decision values of each sample under its task's model.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples. A Dask DataFrame or Dask array (with ``tasks`` a Dask
            collection of the same partitions) gives a Dask array; see
            :ref:`scaling-out`.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``); unseen tasks use the prior.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            As ``LogisticRegression.decision_function``. With
            ``posterior_proba=True``, those of the averaged probabilities:
            the log-odds of :meth:`predict_proba` (two classes) or its
            log-probabilities, so that :meth:`predict` agrees with both.
        """
        Z = self._scores(X, tasks)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def _scores(self, X, tasks):
        """What :meth:`predict` takes the largest of: the linear decision
        values, or with ``posterior_proba`` those of the averaged
        probabilities."""
        if self.posterior_proba:
            return posterior_decision(*self._predictive_moments(X, tasks))
        return self._decision(X, tasks)

    @dask_aware
    def predict_proba(self, X, *, tasks=None):
        """Class probabilities of each sample under its task's model.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples. A Dask DataFrame or Dask array (with ``tasks`` a Dask
            collection of the same partitions) gives a Dask array; see
            :ref:`scaling-out`.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``); unseen tasks use the prior.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns ordered as ``classes_``: at each task's
            fitted parameters, or averaged over their posterior with
            ``posterior_proba=True``.
        """
        if self.posterior_proba:
            return posterior_proba(*self._predictive_moments(X, tasks))
        Z = self._decision(X, tasks)
        if Z.shape[1] == 1:
            # expit, not 1 / (1 + exp(-z)): no overflow warning for a large
            # negative z (the fitted LogisticRegression gives these silently)
            p = expit(Z[:, 0])
            return np.column_stack([1.0 - p, p])
        Z = Z - Z.max(axis=1, keepdims=True)
        E = np.exp(Z)
        return E / E.sum(axis=1, keepdims=True)

    @dask_aware
    def predict_log_proba(self, X, *, tasks=None):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples. A Dask DataFrame or Dask array (with ``tasks`` a Dask
            collection of the same partitions) gives a Dask array; see
            :ref:`scaling-out`.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``); unseen tasks use the prior.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns ordered as ``classes_``.
        """
        if self.posterior_proba:
            return posterior_log_proba(*self._predictive_moments(X, tasks))
        Z = self._decision(X, tasks)
        if Z.shape[1] == 1:
            z = Z[:, 0]
            return np.column_stack([-np.logaddexp(0.0, z), -np.logaddexp(0.0, -z)])
        return Z - np.logaddexp.reduce(Z, axis=1, keepdims=True)

    @dask_aware
    def predict(self, X, *, tasks=None):
        """Predict the class of each sample with its task's model.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples. A Dask DataFrame or Dask array (with ``tasks`` a Dask
            collection of the same partitions) gives a Dask array; see
            :ref:`scaling-out`.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``); unseen tasks use the prior.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted classes: the most probable under :meth:`predict_proba`.
        """
        Z = self._scores(X, tasks)
        if Z.shape[1] == 1:
            return self.classes_[(Z[:, 0] > 0).astype(np.intp)]
        return self.classes_[np.argmax(Z, axis=1)]

    def score(self, X, y, *, tasks=None, sample_weight=None):
        """Mean accuracy, each sample predicted by its task's model.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples.
        y : array-like of shape (n_samples,)
            True labels.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Accuracy.
        """
        y, predicted, sample_weight = computed(
            y, self.predict(X, tasks=tasks), sample_weight)
        return accuracy_score(y, predicted, sample_weight=sample_weight)


class MetaRegressor(RegressorMixin, _BaseMetaEstimator):
    """Meta-learned linear regressor over many related tasks.

    Learns, across tasks, a prior ``theta0`` (and precision ``Lambda``) over the
    parameters of a base regressor and fits every task ``t`` as

    ``argmin_theta L_t(theta) + lambda R(theta) + gamma/2 (theta - theta0)^T
    Lambda (theta - theta0)``

    where ``L_t + lambda R`` is the base estimator's own objective on task t
    (its loss and its own penalty, e.g. ``alpha``; for ``Ridge`` and
    ``LinearRegression``, half their ``||y - X w||^2 + alpha ||w||^2``, the
    same minimizer, so that ``gamma`` compares with ``alpha``) and the last
    term is the transfer toward the prior. A task unseen in ``fit`` is
    predicted with the prior model; :meth:`adapt` fits a new task from a few
    samples.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    estimator : estimator instance, default=None
        The base regressor; ``None`` means ``Ridge()``. Supported:
        :class:`~sklearn.linear_model.Ridge`,
        :class:`~sklearn.linear_model.LinearRegression`,
        :class:`~sklearn.linear_model.Lasso`,
        :class:`~sklearn.linear_model.ElasticNet`,
        :class:`~sklearn.linear_model.PoissonRegressor`. skmeta solves their
        objectives with its own solvers; their ``solver``, ``tol`` and
        ``max_iter`` are not used. :class:`~sklearn.neural_network.MLPRegressor`
        too, with the gradient-based methods (see :ref:`networks`).
    method : {"proximal", "imaml", "maml", "metasgd", "reptile"}, \
            default="proximal"
        How the meta-knowledge is learned; see :class:`MetaClassifier`.
    gamma : float >= 0 or "auto", default="auto"
        Strength of the transfer term, in the units of the base estimator's
        own l2 penalty (compare with ``alpha``). ``"auto"`` learns it by
        empirical Bayes, with the noise variance for squared errors; with a
        network base estimator it is 0 for ``"maml"``, ``"metasgd"`` and
        ``"reptile"``, and ``"imaml"`` needs a number > 0 (see
        :class:`MetaClassifier`).
    prior : {"auto", "isotropic", "diagonal", "full", "lowrank", "mixture", \
            "pooled"}, default="auto"
        Shape ``Lambda`` of the prior precision, a mixture of Gaussian
        priors (task clustering), or one model for all tasks (``"pooled"``);
        ``"auto"`` chooses it for ``"proximal"``
        and is ``"isotropic"`` otherwise, and for networks; see
        :class:`MetaClassifier`.
    n_prior_components : int >= 1 or "auto", default="auto"
        Number of components of ``prior="mixture"``; ``"auto"`` by BIC.
    prior_df : float > 0, default=None
        Degrees of freedom of a Student-t prior (outlying tasks
        down-weighted); see :class:`MetaClassifier`.
    random_effects : "auto", None or array-like, default="auto"
        Which coefficients vary across tasks (``method="proximal"``); see
        :class:`MetaClassifier`.
    task_column : int, str or list, default=None
        Column of ``X`` holding each sample's task label, or a list of
        columns for nested tasks; see :class:`MetaClassifier`.
    prior_estimator : estimator instance, default=None
        A fitted regressor of the base estimator's family whose parameters are
        the prior mean ``theta0``: kept fixed by ``method="proximal"``, the
        starting point of the other methods; see :class:`MetaClassifier`
        (feature names, and :class:`~sklearn.frozen.FrozenEstimator` to keep
        it through ``clone``).
    inner_steps : int, default=5
        Inner gradient steps of ``"maml"``, ``"metasgd"``, ``"reptile"``; see
        :class:`MetaClassifier`.
    inner_lr : float > 0 or "auto", default="auto"
        Inner step size; see :class:`MetaClassifier`.
    first_order : bool, default=False
        ``"maml"`` only: first-order meta-gradient.
    adapt_layers : {"all", "output"}, default="all"
        Adapt all of a network's parameters, or its output layer only
        (ANIL); see :class:`MetaClassifier`.
    meta_lr : float > 0, default=None
        Learning rate of the meta-optimizer; see :class:`MetaClassifier`.
    meta_batch_size : int, default=32
        Tasks per meta-iteration of the gradient-based methods.
    query_fraction : float in (0, 1], default=0.5
        Share of each training task's rows used as query; see
        :class:`MetaClassifier`.
    max_iter : int, default=None
        Outer iterations of ``"proximal"`` (default 300), meta-iterations of
        the other methods (default 500).
    tol : float in [0, 1), default=1e-4
        Relative tolerance of ``"proximal"`` on the change of the prior mean
        and of the task models per iteration (below 1), and of a learned
        prior's noise variance; relative to the largest parameter, so that
        an intercept far larger than the coefficients (targets around 1e6)
        loosens the test on them: center such targets. Also the learned
        strength's of the gradient-based methods (``gamma="auto"``); for
        ``"imaml"`` with a network, of its conjugate gradient; see
        :class:`MetaClassifier`. Unused otherwise.
    n_jobs : int, default=None
        Number of task shards solved in parallel; see :class:`MetaClassifier`.
    random_state : int, RandomState instance or None, default=None
        Meta-batches and support/query splits of the gradient-based methods,
        a network's initial weights where its own ``random_state`` is None,
        and the k-means start of ``prior="mixture"``; ``method="proximal"``
        is otherwise deterministic.
    verbose : int, default=0
        Print progress when positive.
    keep_task_params : bool, default=True
        Whether the fitted parameters of the tasks of earlier calls are kept;
        ``False`` keeps those of the last call to :meth:`fit` or
        :meth:`partial_fit` only (streams of tasks in constant memory); see
        :class:`MetaClassifier`.

    Attributes
    ----------
    tasks_ : ndarray of shape (n_tasks,) or (n_tasks, n_levels), or None
        Sorted labels of the tasks seen in ``fit`` and ``partial_fit`` (of
        the last call only, with ``keep_task_params=False``; ``None``
        without tasks); for nested tasks, one row of labels per task,
        outermost level first.
    groups_ : list of ndarray
        Nested tasks only: each level's groups (see :class:`MetaClassifier`).
    group_params_ : list of ndarray
        Nested tasks only: each level's group posterior means.
    group_precisions_ : list of ndarray
        Nested tasks only: each level's precision about its parent level.
    task_params_ : ndarray or dask.array.Array of shape (n_tasks, n_params)
        Flat parameters of each task's model: coefficients, then intercept.
        After a fit on Dask collections, a Dask array kept on the cluster
        (one chunk per partition of tasks, in the order of ``tasks_``);
        ``task_params_.compute()`` brings it into memory, as pickling does
        (see :ref:`scaling-out`).
    meta_params_ : ndarray of shape (n_params,)
        The prior mean ``theta0``: the model for unseen tasks.
    prior_precision_ : ndarray of shape (n_params,) or (n_params, n_params)
        Precision ``gamma_ * prior_shape_`` of the transfer term (a matrix
        for full and low-rank priors, also where ``prior="auto"`` chose one;
        else its diagonal). Beside a base estimator's l2 penalty counted in
        a learned prior, it may be negative along coefficients whose tasks
        spread wider than the penalty alone lets them: the tasks' prior
        precision, penalty and transfer term together, stays positive
        definite (see the user guide).
    transfer_center_ : ndarray of shape (n_params,)
        Where the transfer term pulls: ``meta_params_``, except under a prior
        learned by ``method="proximal"`` with a base estimator whose own l2
        penalty then counts as part of the prior (see the user guide); the
        tasks' parameters are then centred on ``meta_params_`` by the two
        terms together, and ``adapt`` solves ``L + lambda R + gamma/2 (theta -
        transfer_center_)' Lambda (theta - transfer_center_)`` (with
        ``prior="mixture"`` or ``prior_df``, under the mixture itself; these
        attributes then describe its single Gaussian, see
        ``task_clusters_``).
    prior_shape_ : ndarray of shape (n_params,) or (n_params, n_params)
        The shape ``Lambda`` of that precision, with a determinant of 1 in
        magnitude; see :class:`MetaClassifier`.
    gamma_ : float
        The transfer strength used.
    prior_kind_ : str
        The structure of the prior fitted; see :class:`MetaClassifier`.
    prior_scores_ : dict of str to float
        Each compared candidate's score; see :class:`MetaClassifier`.
    inner_lr_ : ndarray of shape (n_params,)
        Inner step sizes of ``"maml"``, ``"metasgd"``, ``"reptile"`` (and
        ``"imaml"`` with a network); see :class:`MetaClassifier`.
    estimator_ : estimator instance
        Unfitted clone of the base estimator the models were fitted with.
    meta_estimator_ : estimator instance
        Fitted base estimator holding ``theta0`` (for a fit without task
        identities, that fit itself).
    coef_ : ndarray of shape (n_tasks, n_features)
        Each seen task's coefficients.
    intercept_ : ndarray of shape (n_tasks,)
        Each seen task's intercept.
    task_clusters_ : ndarray of shape (n_tasks, n_components)
        With ``prior="mixture"`` (or ``prior_df``): each task's
        responsibilities, its posterior over the prior's ``n_components =
        n_prior_components_`` components.
    cluster_weights_ : ndarray of shape (n_components,)
        The components' weights.
    cluster_means_ : ndarray of shape (n_components, n_params)
        The components' means (layout of ``meta_params_``).
    cluster_precisions_ : ndarray of shape (n_components, n_params)
        The components' transfer-term precisions, diagonal (layout of
        ``prior_precision_``).
    n_prior_components_ : int
        The number of components fitted.
    task_weights_ : ndarray of shape (n_tasks_fit,)
        With ``prior_df``: each training task's Student-t EM weight (near 0
        for outlying tasks); the tasks of ``fit``.
    n_iter_ : int
        Number of outer iterations (or meta-iterations) run, by the last
        call that moved the prior.
    n_tasks_seen_ : int
        Number of distinct tasks that have entered the model: those of
        :meth:`fit`, and the new ones of each :meth:`partial_fit` (every
        task of a chunk, with ``keep_task_params=False``).
    prior_covariance_ : ndarray of shape (n_params, n_params)
        Where each task's posterior is kept (see :meth:`task_posterior_cov`):
        the covariance of an unseen task's parameters about
        ``meta_params_`` under the learned prior, in the units of the
        targets. For base estimators that average their loss (``Lasso``,
        ``ElasticNet``, ``PoissonRegressor``), that of a task of the mean
        weight: a task's prior is as much tighter as its rows weigh more
        (see the user guide, "Tasks of different sizes under averaged
        losses"). With a learned prior it counts the base estimator's l2
        penalty (``(Pi + D)^-1`` in the precision's terms); with a fixed
        ``gamma`` it is the transfer term's alone (``Pi^-1``), as an unseen
        task's model is then ``meta_params_`` itself, where a task's
        posterior (a seen one's, or one adapted from no rows) has the
        penalty on top.
    noise_variance_ : float
        Where each task's posterior is kept: the noise variance of squared
        errors, learned with the prior (1 for the Poisson deviance). Where
        the models fit every training row exactly (no more rows per task
        than parameters, or targets without noise) there is no residual to
        estimate it by: it is then a floor (1e-10 of the targets' variance;
        of their square where they are all equal; 1e-300 where they are all
        zero), and ``return_std`` and :meth:`task_posterior_cov` warn.
    n_features_in_ : int
        Number of columns seen during fit (task column included).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names seen during fit, when ``X`` has string column names.

    See Also
    --------
    MetaClassifier : The same for classification.
    sklearn.linear_model.Ridge : The default base estimator.

    Notes
    -----
    To load a fitted model with ``skops.io.load``, trust
    ``skmeta._estimators.MetaRegressor``, the only skmeta type it holds;
    see :ref:`persistence`.

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> from skmeta import MetaRegressor
    >>> from skmeta.datasets import make_meta_regression
    >>> X, y, tasks = make_meta_regression(n_tasks=30, n_samples_per_task=20,
    ...                                    noise=1.0, random_state=0)
    >>> meta = MetaRegressor(Ridge(alpha=1.0), gamma="auto").fit(X, y, tasks=tasks)
    >>> meta.coef_.shape
    (30, 20)
    >>> reg = meta.adapt(X[:5], y[:5])  # a plain, fitted Ridge
    >>> type(reg).__name__
    'Ridge'
    """

    def _base_estimator(self):
        return Ridge() if self.estimator is None else self.estimator

    def _encode_y(self, y, known_only=False):
        return np.asarray(y, dtype=np.float64)

    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(self, X, y, *, tasks=None, sample_weight=None):
        """Fit a chunk of tasks, and move the prior by the new ones.

        With ``method="proximal"`` (and neither ``prior="mixture"``,
        ``prior_df`` nor ``unlabeled_weight``), the tasks new to the model
        move the prior online: they are solved under it, and it is
        re-estimated from running sufficient statistics of every task seen
        so far, the earlier ones carried to the current prior (incremental
        empirical Bayes; see :ref:`streaming_tasks`). Twenty chunks of 200
        tasks give the prior one :meth:`fit` on the 4,000 gives, to about
        1% on tasks of 50 rows (``benchmarks/bench_streaming.py``), less
        closely where tasks carry little information or the chunks are
        small: for binary tasks of 20 to 30 rows, from a few percent to
        twice :meth:`fit`'s precision on some coefficients, and a few
        percent on the mean (``MetaClassifier.partial_fit``'s example).
        What is learned
        is what :meth:`fit` learned on the first call:
        the structure of the prior (``prior_kind_``, chosen then under
        ``prior="auto"``), and the strength if ``gamma="auto"``; with a
        number ``gamma`` and an isotropic prior, only the prior mean moves
        (not at all with ``prior_estimator``). A task already known is
        refitted on the rows passed now under the updated prior, without
        entering the prior a second time (rows from earlier calls are not
        stored). The tasks of earlier calls that are not passed again keep
        the models (and posterior covariances) fitted under the prior of
        their call: the prior moves, they do not. With the other methods
        and priors the prior does not move, and the tasks are fitted from
        it. :meth:`adapt` and :meth:`adapt_tasks` fit tasks without moving
        the prior. A model fitted without task identities is one task,
        refitted on the rows passed now alone (a warning says so): it is no
        incremental fit of one model over chunks of rows.

        On an unfitted estimator this is :meth:`fit`. The noise variance
        (``noise_variance_``) moves with a learned prior; beside a fixed
        prior it stays the one :meth:`fit` estimated. Where the base
        estimator's penalty caps the prior (tasks spread wider than it
        allows; see the user guide, "Predictive uncertainty"), the noise
        variance absorbs the tasks' excess spread and the transfer term is
        a small remainder, and both follow :meth:`fit`'s less closely: on
        the example's tasks below (``Ridge(alpha=1)``), the prior means
        agree to 2e-8, the coefficients' prior variances,
        ``noise_variance_`` and ``prior_precision_`` to 1%.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples.
        y : array-like of shape (n_samples,)
            Targets.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            The updated meta-estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from skmeta import MetaRegressor
        >>> from skmeta.datasets import make_meta_regression
        >>> X, y, tasks = make_meta_regression(n_tasks=400, n_features=3,
        ...                                    noise=0.5, random_state=0)
        >>> batch = MetaRegressor(prior="diagonal").fit(X, y, tasks=tasks)
        >>> online = MetaRegressor(prior="diagonal")
        >>> for start in range(0, 400, 100):  # four chunks of 100 tasks
        ...     rows = (tasks >= start) & (tasks < start + 100)
        ...     online = online.partial_fit(X[rows], y[rows], tasks=tasks[rows])
        >>> gap = np.abs(online.meta_params_ - batch.meta_params_).max()
        >>> bool(gap < 1e-3 * np.abs(batch.meta_params_).max())
        True
        """
        return self._partial_fit(X, y, tasks, sample_weight)

    @dask_aware
    def predict(self, X, *, tasks=None, return_std=False):
        """Predict each sample with its task's model.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples. A Dask DataFrame or Dask array (with ``tasks`` a Dask
            collection of the same partitions) gives a Dask array; see
            :ref:`scaling-out`.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``); unseen tasks use the prior.
        return_std : bool, default=False
            Also return the standard deviation of the posterior predictive
            distribution of each sample's target: the spread of its task's
            parameters under the Laplace approximation of their posterior
            (for an unseen task, the prior's spread, wider), plus the noise
            (``noise_variance_`` for squared errors; the Poisson variance,
            the mean, for ``PoissonRegressor``). For the exact methods,
            ``"proximal"`` and ``"imaml"``, with a linear base estimator (a
            network's tasks are adapted by a fixed number of steps, not to
            a posterior mode: refused); see :meth:`task_posterior_cov`.
            The learned prior is not bounded by the base estimator's own l2
            penalty (``noise_variance_ / alpha`` for ``Ridge``) except under
            an isotropic prior (see the user guide, "Predictive
            uncertainty"). A task fitted by an earlier
            :meth:`partial_fit` keeps the posterior covariance of its call,
            in that call's noise variance, beside the current
            ``noise_variance_``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predictions.
        y_std : ndarray of shape (n_samples,)
            Standard deviations, with ``return_std=True``.
        """
        if not return_std:
            Z = self._decision(X, tasks)
            return self._fitted_family().predict_from_decision(Z)
        Z, S = self._predictive_moments(X, tasks)
        # (predict is wrapped by dask_aware)
        self._warn_unresolved_noise(stacklevel=4)
        family = self._fitted_family()
        return family.predict_from_decision(Z), family.predictive_std(
            Z[:, 0], S[:, 0, 0], self.noise_variance_)

    def score(self, X, y, *, tasks=None, sample_weight=None):
        """The base estimator's score, each sample predicted by its task.

        The coefficient of determination R^2; for ``PoissonRegressor``, D^2,
        the fraction of Poisson deviance explained, as its own ``score``
        gives it.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_columns)
            Samples.
        y : array-like of shape (n_samples,)
            True targets.
        tasks : array-like of shape (n_samples,) or (n_samples, n_levels), default=None
            Task labels (or use ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            R^2 (D^2 for ``PoissonRegressor``) of the predictions.
        """
        y, predicted, sample_weight = computed(
            y, self.predict(X, tasks=tasks), sample_weight)
        return self._fitted_family().score(y, predicted,
                                           sample_weight=sample_weight)
