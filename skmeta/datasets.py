"""Families of related tasks for meta-learning: generators and a real data set.

Each generator returns ``X, y, tasks``: the samples of every task stacked
row-wise, task 0 first, and an integer array telling which task each row
belongs to. The tasks of one call share a common structure (a shared decision
boundary, a shared coefficient vector, a shared functional form) and differ by
a controlled amount, which is what a meta-learner is meant to exploit.

:func:`fetch_school` loads the ILEA School exam data, the standard real
benchmark of multi-task regression, in the same ``X, y, tasks`` form.
"""

import math
from fractions import Fraction
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.random import sample_without_replacement

from ._school import fetch_school

__all__ = [
    "fetch_school",
    "make_meta_anomalies",
    "make_meta_classification",
    "make_meta_regression",
    "make_nested_tasks",
    "make_sine_tasks",
    "make_subspace_tasks",
]

# Either one size for every task or one size per task.
# A smaller covariance spread is 0 in make_meta_anomalies: the Wishart draw
# overflows below about 1e-152 (its degrees of freedom, 2 / spread**2, pass
# 1e304), and no float shows so small a relative spread.
_MIN_COVARIANCE_SPREAD = 1e-150

_SIZES_CONSTRAINT = [Interval(Integral, 1, None, closed="left"), "array-like"]


def _check_n_samples_per_task(n_samples_per_task, n_tasks):
    """Return the number of samples of every task as an int64 array."""
    if isinstance(n_samples_per_task, Integral):
        return np.full(n_tasks, n_samples_per_task, dtype=np.int64)

    sizes = np.asarray(n_samples_per_task)
    if sizes.ndim != 1 or sizes.shape[0] != n_tasks:
        raise ValueError(
            "n_samples_per_task must be an int or a 1-D array-like with one "
            f"entry per task (n_tasks={n_tasks}); got an array of shape "
            f"{sizes.shape}."
        )
    if not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(
            "n_samples_per_task must contain integers; got an array of dtype "
            f"{sizes.dtype}."
        )
    if np.any(sizes < 1):
        raise ValueError(
            "Every task needs at least one sample, but n_samples_per_task has "
            f"a minimum of {sizes.min()}."
        )
    return sizes.astype(np.int64)


def _check_range(value, name):
    """Return a ``(low, high)`` pair of floats after checking it."""
    bounds = np.asarray(value, dtype=np.float64)
    if bounds.shape != (2,) or not np.all(np.isfinite(bounds)):
        raise ValueError(
            f"{name} must be a pair (low, high) of finite numbers; got {value!r}."
        )
    if bounds[0] > bounds[1]:
        raise ValueError(f"{name} must satisfy low <= high; got {value!r}.")
    return float(bounds[0]), float(bounds[1])


def _check_per_feature(value, n_features, name):
    """Check that an array-valued ``shift`` or ``scale`` fits the features."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != n_features):
        raise ValueError(
            f"{name} must be a float or an array of shape (n_features,) = "
            f"({n_features},); got an array of shape {array.shape}."
        )
    return array


def _check_class_weights(weights, n_classes):
    """Return class proportions of length ``n_classes`` summing to one."""
    if weights is None:
        return np.full(n_classes, 1.0 / n_classes)

    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or weights.shape[0] not in (n_classes, n_classes - 1):
        raise ValueError(
            f"weights must have n_classes ({n_classes}) or n_classes - 1 "
            f"({n_classes - 1}) entries; got an array of shape {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"weights must be non-negative numbers; got {weights}.")
    if weights.shape[0] == n_classes - 1:
        if weights.sum() > 1:
            raise ValueError(
                "When weights has n_classes - 1 entries, the last class gets "
                f"1 - sum(weights), so sum(weights) must be <= 1; got "
                f"{weights.sum()}."
            )
        weights = np.append(weights, 1.0 - weights.sum())
    if weights.sum() <= 0:
        raise ValueError("weights must not all be zero.")
    return weights / weights.sum()


def _allocate_class_counts(n_samples, weights, generator):
    """Split ``n_samples`` among classes in proportion to ``weights``.

    The counts are the rounding of ``n_samples * weights`` that is closest to
    it (largest remainders get the leftover samples, ties broken at random so
    that no class is systematically favoured across tasks), then adjusted so
    that every class has a sample whenever there are enough samples.
    """
    n_classes = weights.shape[0]
    expected = n_samples * weights
    counts = np.floor(expected).astype(np.int64)
    n_left = n_samples - counts.sum()
    if n_left > 0:
        # np.lexsort sorts by its last key first: larger remainder first, then
        # a random tie-break.
        order = np.lexsort((generator.uniform(size=n_classes), counts - expected))
        counts[order[:n_left]] += 1
    if n_samples >= n_classes:
        for empty in np.flatnonzero(counts == 0):
            counts[np.argmax(counts)] -= 1
            counts[empty] += 1
    return counts


def _hypercube_vertices(n_vertices, n_dims, generator):
    """Draw ``n_vertices`` distinct vertices of the unit hypercube {0, 1}^n_dims."""
    # Distinctness is ensured on (at most) 30 dimensions, where vertices can
    # be enumerated as integer codes; further dimensions are filled at random,
    # which cannot break it.
    n_coded = min(n_dims, 30)
    codes = sample_without_replacement(2**n_coded, n_vertices, random_state=generator)
    vertices = (codes[:, np.newaxis] >> np.arange(n_coded)) & 1
    if n_dims > n_coded:
        extra = generator.randint(2, size=(n_vertices, n_dims - n_coded))
        vertices = np.hstack([vertices, extra])
    return vertices.astype(np.float64)


def _as_frame(X, y, tasks, caller):
    """Wrap array outputs into pandas objects, importing pandas lazily."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            f"{caller}(..., as_frame=True) requires pandas, which is not "
            "installed. Install it with `pip install pandas`, or use "
            "as_frame=False to get NumPy arrays."
        ) from exc

    columns = [f"x{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    frame["task"] = tasks
    return frame, pd.Series(y, name="y"), pd.Series(tasks, name="task")


@validate_params(
    {
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "n_samples_per_task": _SIZES_CONSTRAINT,
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_informative": [Interval(Integral, 1, None, closed="left")],
        "n_redundant": [Interval(Integral, 0, None, closed="left")],
        "n_repeated": [Interval(Integral, 0, None, closed="left")],
        "n_classes": [Interval(Integral, 1, None, closed="left")],
        "n_clusters_per_class": [Interval(Integral, 1, None, closed="left")],
        "weights": ["array-like", None],
        "flip_y": [Interval(Real, 0, 1, closed="both")],
        "class_sep": [Interval(Real, 0, None, closed="neither")],
        "hypercube": ["boolean"],
        "shift": [Interval(Real, None, None, closed="neither"), "array-like", None],
        "scale": [Interval(Real, 0, None, closed="neither"), "array-like", None],
        "task_spread": [Interval(Real, 0, None, closed="left")],
        "as_frame": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
# the parameters of scikit-learn's make_classification, and the tasks' own
def make_meta_classification(  # noqa: PLR0913
    n_tasks=100,
    n_samples_per_task=40,
    n_features=20,
    *,
    n_informative=2,
    n_redundant=2,
    n_repeated=0,
    n_classes=2,
    n_clusters_per_class=1,
    weights=None,
    flip_y=0.01,
    class_sep=1.0,
    hypercube=True,
    shift=0.0,
    scale=1.0,
    task_spread=0.5,
    as_frame=False,
    random_state=None,
):
    """Generate many related classification tasks.

    Every task is a classification problem of the kind built by
    :func:`sklearn.datasets.make_classification`: each class is made of one or
    more Gaussian clusters placed around vertices of a hypercube of side
    ``2 * class_sep`` in an ``n_informative``-dimensional subspace, each
    cluster with its own random covariance; redundant features are linear
    combinations of the informative ones, repeated features are copies, and
    the remaining features are pure N(0, 1) noise.

    The tasks are related because they share this structure: the base cluster
    centroids, the cluster covariances, the redundant-feature combinations,
    the choice of repeated columns, and the shift and scale of the features
    are drawn once for all tasks. What varies is where the clusters sit: in
    task ``t`` every cluster centroid is moved away from its shared position
    by ``task_spread * class_sep * N(0, I)`` in the informative subspace. The
    decision boundaries of the tasks therefore scatter around a common one;
    ``task_spread=0`` gives identically distributed tasks and larger values
    give increasingly different tasks.

    The columns of ``X`` are not shuffled: they are the ``n_informative``
    informative features, followed by the ``n_redundant`` redundant features,
    the ``n_repeated`` repeated features, and the noise features, so that
    ``X[:, :n_informative + n_redundant + n_repeated]`` holds every useful
    feature (this is ``make_classification`` with ``shuffle=False``). The
    rows are grouped by task, task 0 first, and are in random order within a
    task.

    Parameters
    ----------
    n_tasks : int, default=100
        The number of tasks.

    n_samples_per_task : int or array-like of shape (n_tasks,), default=40
        The number of samples of each task, either one number for all tasks
        or one positive integer per task.

    n_features : int, default=20
        The total number of features: ``n_informative`` informative,
        ``n_redundant`` redundant, ``n_repeated`` repeated, and
        ``n_features - n_informative - n_redundant - n_repeated`` noise
        features.

    n_informative : int, default=2
        The dimension of the subspace holding the class clusters. Within a
        cluster the informative features are N(0, 1) draws mixed by a random
        matrix (shared by all tasks) to give the cluster a covariance.

    n_redundant : int, default=2
        The number of redundant features, random linear combinations of the
        informative features. The combinations are the same for all tasks.

    n_repeated : int, default=0
        The number of repeated features, each a copy of a randomly chosen
        informative or redundant feature. The choice is the same for all
        tasks. Copies are made before ``shift`` and ``scale`` are applied, so
        with per-feature values of those a repeated feature equals its source
        only up to its own shift and scale.

    n_classes : int, default=2
        The number of classes.

    n_clusters_per_class : int, default=1
        The number of Gaussian clusters of each class. The default differs
        from ``make_classification`` (where it is 2) on purpose: with one
        cluster per class every task is close to linearly separable, the
        setting in which a prior over the coefficients of a linear model,
        shared across tasks, is meaningful. Set it to 2 to reproduce the
        geometry of ``make_classification``'s default, where classes are
        unions of clusters and not linearly separable.

    weights : array-like of shape (n_classes,) or (n_classes - 1,), default=None
        The proportions of the classes within every task; None gives balanced
        classes. If ``n_classes - 1`` weights are given, the last class gets
        ``1 - sum(weights)``. Weights are normalized to sum to one, since the
        size of each task is fixed by ``n_samples_per_task``. Class counts are
        the closest integers to these proportions, except that every class
        gets at least one sample in every task that has at least
        ``n_classes`` samples. ``flip_y > 0`` perturbs the final proportions.

    flip_y : float, default=0.01
        The fraction of samples whose label is replaced by a class drawn at
        random (possibly the same one). In every task one sample of each
        class is kept out of this replacement, so flipping never removes a
        class from a task.

    class_sep : float, default=1.0
        Half the side of the hypercube on which clusters are placed. Larger
        values make the classes easier to separate. It also sets the unit of
        ``task_spread``.

    hypercube : bool, default=True
        If True, the shared centroids are vertices of the hypercube. If False,
        they are random points obtained by shrinking the vertices randomly
        along each cluster and each informative dimension.

    shift : float, ndarray of shape (n_features,) or None, default=0.0
        Value added to the features. If None, every feature is shifted by a
        value drawn uniformly in ``[-class_sep, class_sep]``, the same for all
        tasks.

    scale : float, ndarray of shape (n_features,) or None, default=1.0
        Value multiplying the features, after shifting. If None, every feature
        is scaled by a value drawn uniformly in ``[1, 101]``, the same for all
        tasks.

    task_spread : float, default=0.5
        How much tasks differ, as the standard deviation of the displacement
        of each task's cluster centroids from the shared ones, in units of
        ``class_sep``. ``task_spread=0`` makes all tasks identically
        distributed.

    as_frame : bool, default=False
        If True, return ``X`` as a pandas DataFrame with columns ``"x0"``,
        ``"x1"``, ... and a last column ``"task"`` holding the task labels,
        and ``y`` and ``tasks`` as pandas Series named ``"y"`` and ``"task"``.
        Requires pandas.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation for dataset creation. Pass an int
        for reproducible output across multiple function calls.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features) or DataFrame of shape \
            (n_samples, n_features + 1)
        The samples of all tasks, with ``n_samples`` the total number of
        samples.

    y : ndarray of shape (n_samples,) or Series
        The integer class labels, in ``0, ..., n_classes - 1``.

    tasks : ndarray of shape (n_samples,) or Series
        The int64 task label of each sample, in ``0, ..., n_tasks - 1``,
        sorted in increasing order.

    See Also
    --------
    sklearn.datasets.make_classification : Generate a single such task.
    make_meta_regression : Generate related linear regression tasks.
    make_sine_tasks : Generate the sinusoid regression tasks of MAML.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_meta_classification
    >>> X, y, tasks = make_meta_classification(
    ...     n_tasks=5, n_samples_per_task=20, random_state=0
    ... )
    >>> X.shape, y.shape, tasks.shape
    ((100, 20), (100,), (100,))
    >>> np.bincount(tasks)
    array([20, 20, 20, 20, 20])
    >>> all(np.unique(y[tasks == t]).size == 2 for t in range(5))
    True
    """
    generator = check_random_state(random_state)
    sizes = _check_n_samples_per_task(n_samples_per_task, n_tasks)

    if n_informative + n_redundant + n_repeated > n_features:
        raise ValueError(
            "n_informative + n_redundant + n_repeated must be <= n_features; "
            f"got {n_informative} + {n_redundant} + {n_repeated} = "
            f"{n_informative + n_redundant + n_repeated} > {n_features}."
        )
    n_clusters = n_classes * n_clusters_per_class
    # Comparing logarithms avoids building 2**n_informative, which can be huge.
    if np.log2(n_clusters) > n_informative:
        raise ValueError(
            f"n_classes * n_clusters_per_class ({n_classes} * "
            f"{n_clusters_per_class} = {n_clusters}) must be <= "
            f"2**n_informative ({2**n_informative}): every cluster needs its "
            "own vertex of the hypercube."
        )
    class_weights = _check_class_weights(weights, n_classes)
    if shift is not None:
        shift = _check_per_feature(shift, n_features, "shift")
    if scale is not None:
        scale = _check_per_feature(scale, n_features, "scale")

    n_samples = int(sizes.sum())
    n_useful = n_informative + n_redundant
    n_noise = n_features - n_useful - n_repeated
    tasks = np.repeat(np.arange(n_tasks, dtype=np.int64), sizes)

    # Structure shared by all tasks. Every draw is made whatever the value of
    # task_spread or flip_y, so that with a fixed seed changing those
    # parameters changes only what they control.
    centroids = (2 * _hypercube_vertices(n_clusters, n_informative, generator) - 1)
    centroids *= class_sep
    if not hypercube:
        centroids *= generator.uniform(size=(n_clusters, 1))
        centroids *= generator.uniform(size=(1, n_informative))
    mixing = 2 * generator.uniform(size=(n_clusters, n_informative, n_informative)) - 1
    combination = 2 * generator.uniform(size=(n_informative, n_redundant)) - 1
    repeated_from = generator.randint(n_useful, size=n_repeated)
    if shift is None:
        shift = class_sep * (2 * generator.uniform(size=n_features) - 1)
    if scale is None:
        scale = 1 + 100 * generator.uniform(size=n_features)

    displacements = (
        task_spread
        * class_sep
        * generator.standard_normal(size=(n_tasks, n_clusters, n_informative))
    )

    # Cluster k holds samples of class k % n_classes, as in make_classification.
    clusters = np.empty(n_samples, dtype=np.int64)
    protected = np.zeros(n_samples, dtype=bool)
    stop = 0
    for size in sizes:
        start, stop = stop, stop + size
        task_clusters = []
        for label, count in enumerate(
            _allocate_class_counts(size, class_weights, generator)
        ):
            per_cluster = np.full(n_clusters_per_class, count // n_clusters_per_class)
            lucky = generator.choice(
                n_clusters_per_class, count % n_clusters_per_class, replace=False
            )
            per_cluster[lucky] += 1
            own = label + n_classes * np.arange(n_clusters_per_class)
            task_clusters.append(np.repeat(own, per_cluster))
        task_clusters = generator.permutation(np.concatenate(task_clusters))
        clusters[start:stop] = task_clusters
        # The first sample of each class in the task keeps its label, so that
        # label noise cannot take a class away from the task.
        _, first = np.unique(task_clusters % n_classes, return_index=True)
        protected[start + first] = True
    y = clusters % n_classes

    X = np.empty((n_samples, n_features))
    informative = generator.standard_normal(size=(n_samples, n_informative))
    for k in range(n_clusters):
        in_k = clusters == k
        informative[in_k] = (
            informative[in_k] @ mixing[k]
            + centroids[k]
            + displacements[tasks[in_k], k]
        )
    X[:, :n_informative] = informative
    X[:, n_informative:n_useful] = informative @ combination
    X[:, n_useful : n_useful + n_repeated] = X[:, repeated_from]
    X[:, n_useful + n_repeated :] = generator.standard_normal(size=(n_samples, n_noise))

    flipped = (generator.uniform(size=n_samples) < flip_y) & ~protected
    y[flipped] = generator.randint(n_classes, size=flipped.sum())

    X += shift
    X *= scale

    if as_frame:
        return _as_frame(X, y, tasks, "make_meta_classification")
    return X, y, tasks


@validate_params(
    {
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "n_samples_per_task": _SIZES_CONSTRAINT,
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_informative": [Interval(Integral, 1, None, closed="left")],
        "bias": [Interval(Real, None, None, closed="neither")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "task_spread": [Interval(Real, 0, None, closed="left")],
        "coef": ["boolean"],
        "as_frame": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_meta_regression(
    n_tasks=100,
    n_samples_per_task=40,
    n_features=20,
    *,
    n_informative=10,
    bias=0.0,
    noise=0.0,
    task_spread=0.5,
    coef=False,
    as_frame=False,
    random_state=None,
):
    """Generate many related linear regression tasks.

    The inputs of every task are drawn from the same standard normal
    distribution. A coefficient vector ``w`` shared by all tasks is drawn as
    in :func:`sklearn.datasets.make_regression`: its first ``n_informative``
    entries are drawn uniformly in ``[0, 100]`` and the others are zero, so
    the informative features are the first ``n_informative`` columns of
    ``X`` (the columns are not shuffled). Task ``t`` then uses its own
    coefficients and intercept, scattered around the shared ones::

        s = task_spread * ||w|| / sqrt(n_informative)
        w_t = w + s * N(0, I)          (on the informative entries only)
        b_t = bias + s * N(0, 1)
        y = X @ w_t + b_t + noise * N(0, 1)

    Scaling the scatter by ``||w|| / sqrt(n_informative)``, the root mean
    square of the informative coefficients, makes ``task_spread`` a relative
    quantity: ``task_spread=0`` gives identical tasks and ``task_spread=1``
    gives tasks as far apart as the coefficients are large.

    The rows are grouped by task, task 0 first.

    Parameters
    ----------
    n_tasks : int, default=100
        The number of tasks.

    n_samples_per_task : int or array-like of shape (n_tasks,), default=40
        The number of samples of each task, either one number for all tasks
        or one positive integer per task.

    n_features : int, default=20
        The number of features.

    n_informative : int, default=10
        The number of features with a non-zero coefficient, the first
        ``n_informative`` columns. As in ``make_regression``, values larger
        than ``n_features`` are reduced to ``n_features``; unlike it, at
        least 1: the tasks' spread is measured in units of the shared
        coefficients, which need one to have a size.

    bias : float, default=0.0
        The intercept shared by all tasks, around which the task intercepts
        scatter.

    noise : float, default=0.0
        The standard deviation of the Gaussian noise added to the targets.

    task_spread : float, default=0.5
        How much tasks differ: the standard deviation of the task
        coefficients and intercepts around the shared ones, relative to the
        root mean square of the shared informative coefficients.

    coef : bool, default=False
        If True, also return the coefficients and intercepts of the tasks.

    as_frame : bool, default=False
        If True, return ``X`` as a pandas DataFrame with columns ``"x0"``,
        ``"x1"``, ... and a last column ``"task"`` holding the task labels,
        and ``y`` and ``tasks`` as pandas Series named ``"y"`` and ``"task"``.
        ``coef`` and ``intercept`` stay NumPy arrays. Requires pandas.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation for dataset creation. Pass an int
        for reproducible output across multiple function calls.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features) or DataFrame of shape \
            (n_samples, n_features + 1)
        The samples of all tasks, with ``n_samples`` the total number of
        samples.

    y : ndarray of shape (n_samples,) or Series
        The targets.

    tasks : ndarray of shape (n_samples,) or Series
        The int64 task label of each sample, in ``0, ..., n_tasks - 1``,
        sorted in increasing order.

    coef : ndarray of shape (n_tasks, n_features)
        The coefficients of each task; zero outside the first
        ``n_informative`` columns. Only returned if ``coef=True``.

    intercept : ndarray of shape (n_tasks,)
        The intercept of each task. Only returned if ``coef=True``.

    See Also
    --------
    sklearn.datasets.make_regression : Generate a single such task.
    make_meta_classification : Generate related classification tasks.
    make_sine_tasks : Generate the sinusoid regression tasks of MAML.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_meta_regression
    >>> X, y, tasks, coef, intercept = make_meta_regression(
    ...     n_tasks=4, n_samples_per_task=[5, 10, 15, 20], n_features=6,
    ...     n_informative=3, coef=True, random_state=0
    ... )
    >>> X.shape, y.shape, coef.shape, intercept.shape
    ((50, 6), (50,), (4, 6), (4,))
    >>> np.bincount(tasks)
    array([ 5, 10, 15, 20])
    >>> bool(np.all(coef[:, 3:] == 0))
    True
    >>> bool(np.allclose(y[tasks == 2], X[tasks == 2] @ coef[2] + intercept[2]))
    True
    """
    generator = check_random_state(random_state)
    sizes = _check_n_samples_per_task(n_samples_per_task, n_tasks)
    n_informative = min(n_informative, n_features)
    n_samples = int(sizes.sum())
    tasks = np.repeat(np.arange(n_tasks, dtype=np.int64), sizes)

    shared = 100 * generator.uniform(size=n_informative)
    spread = task_spread * np.linalg.norm(shared) / np.sqrt(n_informative)
    task_coef = np.zeros((n_tasks, n_features))
    task_coef[:, :n_informative] = shared + spread * generator.standard_normal(
        size=(n_tasks, n_informative)
    )
    task_intercept = bias + spread * generator.standard_normal(size=n_tasks)

    X = generator.standard_normal(size=(n_samples, n_features))
    # Row-wise dot products, so that each sample uses its own task's model.
    y = np.einsum("ij,ij->i", X, task_coef[tasks]) + task_intercept[tasks]
    # Always drawn, so that the noise level does not change the other draws.
    y += noise * generator.standard_normal(size=n_samples)

    if as_frame:
        X, y, tasks = _as_frame(X, y, tasks, "make_meta_regression")
    if coef:
        return X, y, tasks, task_coef, task_intercept
    return X, y, tasks


@validate_params(
    {
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "n_samples_per_task": _SIZES_CONSTRAINT,
        "amplitude_range": ["array-like"],
        "phase_range": ["array-like"],
        "x_range": ["array-like"],
        "noise": [Interval(Real, 0, None, closed="left")],
        "return_params": ["boolean"],
        "as_frame": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_sine_tasks(
    n_tasks=100,
    n_samples_per_task=10,
    *,
    amplitude_range=(0.1, 5.0),
    phase_range=(0.0, np.pi),
    x_range=(-5.0, 5.0),
    noise=0.0,
    return_params=False,
    as_frame=False,
    random_state=None,
):
    """Generate the sinusoid few-shot regression tasks of MAML.

    This is the family of one-dimensional regression tasks used to
    illustrate model-agnostic meta-learning [1]_. Every task ``t`` is a
    sinusoid with its own amplitude ``A_t``, drawn uniformly in
    ``amplitude_range``, and phase ``phi_t``, drawn uniformly in
    ``phase_range``. Inputs are drawn uniformly in ``x_range`` and::

        y = A_t * sin(x - phi_t) + noise * N(0, 1)

    Although the tasks are non-linear in ``x``, the identity
    ``A sin(x - phi) = (A cos phi) sin x - (A sin phi) cos x`` shows that a
    linear model on the two features ``[sin x, cos x]``, with coefficients
    ``(A cos phi, -A sin phi)`` and no intercept, represents every task
    exactly. A prior over those two coefficients is thus all a linear
    meta-learner needs.

    The rows are grouped by task, task 0 first.

    Parameters
    ----------
    n_tasks : int, default=100
        The number of tasks.

    n_samples_per_task : int or array-like of shape (n_tasks,), default=10
        The number of samples of each task, either one number for all tasks
        or one positive integer per task.

    amplitude_range : tuple of two floats, default=(0.1, 5.0)
        The bounds ``(low, high)`` of the uniform distribution of amplitudes.

    phase_range : tuple of two floats, default=(0.0, np.pi)
        The bounds ``(low, high)`` of the uniform distribution of phases, in
        radians.

    x_range : tuple of two floats, default=(-5.0, 5.0)
        The bounds ``(low, high)`` of the uniform distribution of inputs.

    noise : float, default=0.0
        The standard deviation of the Gaussian noise added to the targets.

    return_params : bool, default=False
        If True, also return the amplitude and phase of each task.

    as_frame : bool, default=False
        If True, return ``X`` as a pandas DataFrame with columns ``"x0"`` and
        ``"task"``, and ``y`` and ``tasks`` as pandas Series named ``"y"``
        and ``"task"``. ``amplitude`` and ``phase`` stay NumPy arrays.
        Requires pandas.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation for dataset creation. Pass an int
        for reproducible output across multiple function calls.

    Returns
    -------
    X : ndarray of shape (n_samples, 1) or DataFrame of shape (n_samples, 2)
        The inputs of all tasks, with ``n_samples`` the total number of
        samples.

    y : ndarray of shape (n_samples,) or Series
        The targets.

    tasks : ndarray of shape (n_samples,) or Series
        The int64 task label of each sample, in ``0, ..., n_tasks - 1``,
        sorted in increasing order.

    amplitude : ndarray of shape (n_tasks,)
        The amplitude of each task. Only returned if ``return_params=True``.

    phase : ndarray of shape (n_tasks,)
        The phase of each task. Only returned if ``return_params=True``.

    See Also
    --------
    make_meta_regression : Generate related linear regression tasks.
    make_meta_classification : Generate related classification tasks.

    References
    ----------
    .. [1] C. Finn, P. Abbeel and S. Levine, "Model-Agnostic Meta-Learning for
           Fast Adaptation of Deep Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_sine_tasks
    >>> X, y, tasks, amplitude, phase = make_sine_tasks(
    ...     n_tasks=3, n_samples_per_task=5, return_params=True, random_state=0
    ... )
    >>> X.shape, y.shape, amplitude.shape, phase.shape
    ((15, 1), (15,), (3,), (3,))
    >>> x = X[:, 0]
    >>> bool(np.allclose(y, amplitude[tasks] * np.sin(x - phase[tasks])))
    True
    """
    generator = check_random_state(random_state)
    sizes = _check_n_samples_per_task(n_samples_per_task, n_tasks)
    amplitude_low, amplitude_high = _check_range(amplitude_range, "amplitude_range")
    phase_low, phase_high = _check_range(phase_range, "phase_range")
    x_low, x_high = _check_range(x_range, "x_range")
    n_samples = int(sizes.sum())
    tasks = np.repeat(np.arange(n_tasks, dtype=np.int64), sizes)

    amplitude = generator.uniform(amplitude_low, amplitude_high, size=n_tasks)
    phase = generator.uniform(phase_low, phase_high, size=n_tasks)
    x = generator.uniform(x_low, x_high, size=n_samples)
    y = amplitude[tasks] * np.sin(x - phase[tasks])
    y += noise * generator.standard_normal(size=n_samples)
    X = x[:, np.newaxis]

    if as_frame:
        X, y, tasks = _as_frame(X, y, tasks, "make_sine_tasks")
    if return_params:
        return X, y, tasks, amplitude, phase
    return X, y, tasks


@validate_params(
    {
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "n_samples_per_task": _SIZES_CONSTRAINT,
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "contamination": [Interval(Real, 0, 1, closed="left")],
        "n_factors": [Interval(Integral, 0, None, closed="left")],
        "mean_spread": [Interval(Real, 0, None, closed="left")],
        "covariance_spread": [Interval(Real, 0, None, closed="left")],
        "anomaly_strength": [Interval(Real, 0, None, closed="left")],
        "return_params": ["boolean"],
        "as_frame": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_meta_anomalies(
    n_tasks=100,
    n_samples_per_task=40,
    n_features=5,
    *,
    contamination=0.1,
    n_factors=2,
    mean_spread=1.0,
    covariance_spread=0.5,
    anomaly_strength=4.0,
    return_params=False,
    as_frame=False,
    random_state=None,
):
    """Generate sensor readings of a fleet of machines, with anomalies.

    Every task is a machine with ``n_features`` sensors. Its normal readings
    are Gaussian, ``x ~ N(m_t, Sigma_t)``, with a mean and covariance of its
    own drawn from a distribution shared by the fleet:

    * The fleet's nominal covariance ``C = D (W W^T + diag(psi)) D`` has
      ``n_factors`` latent operating factors (load, ambient temperature...)
      driving correlated sensors through loadings ``W ~ N(0, 1)``, specific
      variances ``psi`` drawn uniformly in ``[0.2, 1]``, and sensor units
      ``D``: each sensor's scale is drawn log-uniformly in ``[0.1, 100]``.
      The fleet's mean reading of each sensor is drawn uniformly within
      three of its scales of zero.
    * Machine covariances scatter around ``C``: ``Sigma_t ~ IW((nu - d - 1)
      C, nu)``, inverse-Wishart with mean ``C`` and ``nu = d + 3 + 2 /
      covariance_spread**2`` degrees of freedom, so that
      ``covariance_spread`` is the coefficient of variation of each
      sensor's variance across machines (``0`` gives every machine ``C``).
    * Machine means scatter around the fleet's, in each machine's own units:
      ``m_t ~ N(m, mean_spread**2 Sigma_t)``.

    This is the Normal-inverse-Wishart model of
    :class:`~skmeta.MetaGaussianDensity` with ``kappa0 = 1 /
    mean_spread**2``. An anomaly of machine ``t`` is a normal reading moved
    by ``anomaly_strength`` in a uniformly random direction of the
    machine's whitened space, ``m_t + Sigma_t^(1/2) (z + anomaly_strength
    u)`` with ``|u| = 1``: it is unusual for its machine, although it may be
    ordinary for the fleet. ``floor(contamination * n + 0.5)`` of the ``n``
    rows of each machine are anomalies (the nearest integer, halves rounded
    up; ``contamination`` taken as the decimal it prints as, so that 0.29 of
    50 rows is 14.5, made 15).

    The rows are grouped by task, task 0 first, in random order within a
    task.

    Parameters
    ----------
    n_tasks : int, default=100
        The number of machines.

    n_samples_per_task : int or array-like of shape (n_tasks,), default=40
        The number of readings of each machine, anomalies included.

    n_features : int, default=5
        The number of sensors.

    contamination : float in [0, 1), default=0.1
        The fraction of anomalies among each machine's readings (rounded to
        the nearest count).

    n_factors : int, default=2
        The number of latent factors correlating the sensors (reduced to
        ``n_features`` if larger); ``0`` gives independent sensors.

    mean_spread : float, default=1.0
        The standard deviation of the machines' means around the fleet's, in
        units of the machines' own standard deviations.

    covariance_spread : float, default=0.5
        The coefficient of variation of each sensor's variance across
        machines. Below 1e-150, which no float would show, it counts as 0.

    anomaly_strength : float, default=4.0
        The Mahalanobis length of the shift that makes an anomaly, in the
        metric of its machine's covariance.

    return_params : bool, default=False
        If True, also return the mean and covariance of each machine.

    as_frame : bool, default=False
        If True, return ``X`` as a pandas DataFrame with columns ``"x0"``,
        ``"x1"``, ... and a last column ``"task"`` holding the task labels,
        and ``y`` and ``tasks`` as pandas Series named ``"y"`` and ``"task"``.
        ``means`` and ``covariances`` stay NumPy arrays. Requires pandas.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation for dataset creation. Pass an int
        for reproducible output across multiple function calls.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features) or DataFrame of shape \
            (n_samples, n_features + 1)
        The readings of all machines.

    y : ndarray of shape (n_samples,) or Series
        +1 for normal readings, -1 for anomalies (the convention of
        scikit-learn's outlier detectors' ``predict``).

    tasks : ndarray of shape (n_samples,) or Series
        The int64 machine of each reading, in ``0, ..., n_tasks - 1``,
        sorted in increasing order.

    means : ndarray of shape (n_tasks, n_features)
        The mean normal reading of each machine. Only returned if
        ``return_params=True``.

    covariances : ndarray of shape (n_tasks, n_features, n_features)
        The covariance of each machine's normal readings. Only returned if
        ``return_params=True``.

    See Also
    --------
    skmeta.MetaGaussianDensity : Per-machine anomaly detectors under a prior
        learned across the fleet.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_meta_anomalies
    >>> X, y, tasks, means, covariances = make_meta_anomalies(
    ...     n_tasks=3, n_samples_per_task=[10, 20, 30], n_features=4,
    ...     contamination=0.1, return_params=True, random_state=0
    ... )
    >>> X.shape, means.shape, covariances.shape
    ((60, 4), (3, 4), (3, 4, 4))
    >>> np.bincount(tasks[y == -1])
    array([1, 2, 3])
    """
    generator = check_random_state(random_state)
    sizes = _check_n_samples_per_task(n_samples_per_task, n_tasks)
    d = n_features
    n_factors = min(n_factors, d)
    n_samples = int(sizes.sum())
    tasks = np.repeat(np.arange(n_tasks, dtype=np.int64), sizes)

    # The fleet. Its draws come first and are made whatever the spreads, so
    # that with a fixed seed the fleet does not depend on them (the
    # machines' draws do: the chi-squares of the Wishart draw take as many
    # random numbers as their rejection sampling needs).
    units = 10.0 ** generator.uniform(-1.0, 2.0, size=d)
    loadings = generator.standard_normal(size=(d, n_factors))
    specific = generator.uniform(0.2, 1.0, size=d)
    nominal = (loadings @ loadings.T + np.diag(specific)) * np.outer(units, units)
    fleet_mean = units * generator.uniform(-3.0, 3.0, size=d)

    # The machines: inverse-Wishart draws by the Bartlett decomposition of
    # a Wishart draw of the precision, all machines at once.
    if covariance_spread >= _MIN_COVARIANCE_SPREAD:
        # divided twice: the square of a spread past 1e154 overflows
        dof = d + 3.0 + 2.0 / covariance_spread / covariance_spread
        precision_scale = np.linalg.inv((dof - d - 1.0) * nominal)
        chol_scale = np.linalg.cholesky(precision_scale)
        bartlett = np.zeros((n_tasks, d, d))
        rows, cols = np.tril_indices(d, -1)
        bartlett[:, rows, cols] = generator.standard_normal(
            size=(n_tasks, rows.size))
        diagonal = np.arange(d)
        bartlett[:, diagonal, diagonal] = np.sqrt(
            generator.chisquare(dof - diagonal, size=(n_tasks, d)))
        factor = chol_scale @ bartlett
        covariances = np.linalg.inv(factor @ np.swapaxes(factor, 1, 2))
        covariances = 0.5 * (covariances + np.swapaxes(covariances, 1, 2))
    else:
        covariances = np.broadcast_to(nominal, (n_tasks, d, d)).copy()
    roots = np.linalg.cholesky(covariances)
    means = fleet_mean + mean_spread * np.einsum(
        "tij,tj->ti", roots, generator.standard_normal(size=(n_tasks, d)))

    # Readings: the first floor(contamination * n + 0.5) rows of each machine are
    # its anomalies, then rows are shuffled within machines. The product is
    # taken of the decimal the contamination prints as, exactly: in binary,
    # 0.29 * 50 is 14.4999... and would round down.
    written = Fraction(str(contamination))
    distinct, where = np.unique(sizes, return_inverse=True)
    n_anomalies = np.array([math.floor(written * int(n) + Fraction(1, 2))
                            for n in distinct], dtype=np.int64)[where]
    starts = np.cumsum(sizes) - sizes
    rank = np.arange(n_samples) - np.repeat(starts, sizes)
    y = np.where(rank < np.repeat(n_anomalies, sizes), -1, 1)
    noise = generator.standard_normal(size=(n_samples, d))
    direction = generator.standard_normal(size=(n_samples, d))
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True),
                            np.finfo(np.float64).tiny)
    noise += (y == -1)[:, None] * anomaly_strength * direction
    X = means[tasks] + np.einsum("nij,nj->ni", roots[tasks], noise)
    order = np.lexsort((generator.uniform(size=n_samples), tasks))
    X, y = X[order], y[order]

    if as_frame:
        X, y, tasks = _as_frame(X, y, tasks, "make_meta_anomalies")
    if return_params:
        return X, y, tasks, means, covariances
    return X, y, tasks


@validate_params(
    {
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "n_samples_per_task": _SIZES_CONSTRAINT,
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_subspace": [Interval(Integral, 1, None, closed="left")],
        "n_classes": [Interval(Integral, 2, None, closed="left")],
        "class_sep": [Interval(Real, 0, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_subspace_tasks(
    n_tasks=100,
    n_samples_per_task=40,
    *,
    n_features=20,
    n_subspace=2,
    n_classes=2,
    class_sep=2.5,
    noise=3.0,
    random_state=None,
):
    """Generate classification tasks whose classes differ in a shared, hidden subspace.

    Every task has its own classes: class ``k`` of task ``t`` is a Gaussian
    blob of unit spread centred on ``mu_tk``, drawn from ``N(0, class_sep**2
    I)`` anew for every task, inside a subspace of dimension ``n_subspace``
    that all tasks share. The other ``n_features - n_subspace`` directions
    hold noise of standard deviation ``noise``, the same for every class.
    The features are a fixed random rotation of those coordinates, so the
    subspace is not aligned with any feature. No classifier fits all tasks
    (their classes differ), and distances in the raw features are dominated
    by the noise; what the tasks share is *where* classes differ, which a
    representation learned across tasks (:class:`skmeta.MetaEmbedding`) can
    find, for k-NN on a new task's few shots.

    The tasks of one call share their subspace (another ``random_state``
    draws another): hold out some of them as the new tasks. The rows are
    grouped by task, task 0 first; classes are balanced within each task
    (up to one sample).

    Parameters
    ----------
    n_tasks : int, default=100
        The number of tasks.

    n_samples_per_task : int or array-like of shape (n_tasks,), default=40
        The number of samples of each task.

    n_features : int, default=20
        The number of features.

    n_subspace : int, default=2
        The dimension of the subspace in which the classes differ; at most
        ``n_features``.

    n_classes : int, default=2
        The number of classes of every task.

    class_sep : float, default=2.5
        The standard deviation of the class centres in the subspace.

    noise : float, default=3.0
        The standard deviation of the features outside the subspace. With
        the defaults, k-NN (3 neighbours) on 5 shots per class of a task is
        right on about 64% of its other samples in the raw features, and on
        about 92% in the subspace.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation for dataset creation. Pass an int
        for reproducible output across multiple function calls.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The samples of all tasks.

    y : ndarray of shape (n_samples,)
        The int64 class of each sample, in ``0, ..., n_classes - 1``.

    tasks : ndarray of shape (n_samples,)
        The int64 task label of each sample, sorted in increasing order.

    See Also
    --------
    make_meta_classification : Related classification tasks sharing a
        decision boundary.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_subspace_tasks
    >>> X, y, tasks = make_subspace_tasks(n_tasks=3, n_samples_per_task=10,
    ...                                   random_state=0)
    >>> X.shape, np.bincount(tasks).tolist(), np.bincount(y).tolist()
    ((30, 20), [10, 10, 10], [15, 15])
    """
    generator = check_random_state(random_state)
    sizes = _check_n_samples_per_task(n_samples_per_task, n_tasks)
    if n_subspace > n_features:
        raise ValueError(
            f"n_subspace must be <= n_features; got {n_subspace} > {n_features}."
        )
    rotation, _ = np.linalg.qr(generator.standard_normal((n_features, n_features)))
    tasks = np.repeat(np.arange(n_tasks, dtype=np.int64), sizes)
    # balanced classes in every task, in a random order within the task
    rank = np.arange(tasks.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    y = (rank % n_classes).astype(np.int64)
    for start, size in zip(np.cumsum(sizes) - sizes, sizes):
        y[start:start + size] = generator.permutation(y[start:start + size])
    centres = class_sep * generator.standard_normal((n_tasks, n_classes, n_subspace))
    latent = generator.standard_normal((tasks.shape[0], n_features))
    latent[:, n_subspace:] *= noise
    latent[:, :n_subspace] += centres[tasks, y]
    return latent @ rotation.T, y, tasks


@validate_params(
    {
        "n_groups": [Interval(Integral, 1, None, closed="left")],
        "n_tasks_per_group": [Interval(Integral, 1, None, closed="left")],
        "n_samples_per_task": [Interval(Integral, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "group_spread": [Interval(Real, 0, None, closed="left")],
        "task_spread": [Interval(Real, 0, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "coef": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_nested_tasks(
    n_groups=10,
    n_tasks_per_group=20,
    n_samples_per_task=20,
    n_features=5,
    *,
    group_spread=1.0,
    task_spread=0.2,
    noise=0.5,
    coef=False,
    random_state=None,
):
    """Generate linear regression tasks nested in groups (stores in regions).

    The parameters (coefficients, then the intercept) of group ``g`` and of
    its task ``t`` are drawn as a two-level hierarchy about a population
    vector ``w`` (drawn from ``N(0, I)``)::

        w_g = w + group_spread * N(0, I)
        w_t = w_g + task_spread * N(0, I)
        y = X @ w_t[:-1] + w_t[-1] + noise * N(0, 1),   X ~ N(0, I)

    With ``group_spread`` much larger than ``task_spread``, knowing a task's
    group tells most of its model: what a hierarchical prior exploits.

    The rows are grouped by task, the tasks by group.

    Parameters
    ----------
    n_groups : int, default=10
        The number of groups.

    n_tasks_per_group : int, default=20
        The number of tasks of each group.

    n_samples_per_task : int, default=20
        The number of samples of each task.

    n_features : int, default=5
        The number of features.

    group_spread : float, default=1.0
        The standard deviation of the groups' parameters about the
        population's.

    task_spread : float, default=0.2
        The standard deviation of the tasks' parameters about their group's.

    noise : float, default=0.5
        The standard deviation of the Gaussian noise added to the targets.

    coef : bool, default=False
        If True, also return the tasks' and the groups' parameters.

    random_state : int, RandomState instance or None, default=None
        Determines random number generation for dataset creation. Pass an int
        for reproducible output across multiple function calls.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The samples of all tasks.

    y : ndarray of shape (n_samples,)
        The targets.

    tasks : ndarray of shape (n_samples, 2)
        The int64 group label (in ``0, ..., n_groups - 1``) and task label
        (in ``0, ..., n_groups * n_tasks_per_group - 1``, unique over all
        groups) of each sample: ``tasks=`` of the meta-estimators, outermost
        level first.

    task_params : ndarray of shape (n_groups * n_tasks_per_group, n_features + 1)
        Each task's coefficients and intercept (last column). Only returned
        if ``coef=True``.

    group_params : ndarray of shape (n_groups, n_features + 1)
        Each group's coefficients and intercept. Only returned if
        ``coef=True``.

    See Also
    --------
    make_meta_regression : Related regression tasks without groups.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_nested_tasks
    >>> X, y, tasks, task_params, group_params = make_nested_tasks(
    ...     n_groups=3, n_tasks_per_group=4, n_samples_per_task=5, n_features=2,
    ...     noise=0.0, coef=True, random_state=0)
    >>> X.shape, y.shape, tasks.shape
    ((60, 2), (60,), (60, 2))
    >>> tasks[:6, 0].tolist(), tasks[:6, 1].tolist()
    ([0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1])
    >>> rows = tasks[:, 1] == 5
    >>> bool(np.allclose(y[rows], X[rows] @ task_params[5, :2] + task_params[5, 2]))
    True
    """
    generator = check_random_state(random_state)
    d = n_features + 1
    n_tasks = n_groups * n_tasks_per_group
    population = generator.standard_normal(size=d)
    group_params = population + group_spread * generator.standard_normal(
        size=(n_groups, d))
    group_of_task = np.repeat(np.arange(n_groups, dtype=np.int64),
                              n_tasks_per_group)
    task_params = group_params[group_of_task] + task_spread * \
        generator.standard_normal(size=(n_tasks, d))
    task = np.repeat(np.arange(n_tasks, dtype=np.int64), n_samples_per_task)
    X = generator.standard_normal(size=(task.size, n_features))
    y = np.einsum("ij,ij->i", X, task_params[task, :-1]) + task_params[task, -1]
    y += noise * generator.standard_normal(size=task.size)
    tasks = np.column_stack([group_of_task[task], task])
    if coef:
        return X, y, tasks, task_params, group_params
    return X, y, tasks
