"""Cross-validation splitters for evaluating meta-learners on held-out tasks."""

# Authors: The skmeta developers
# SPDX-License-Identifier: BSD-3-Clause

import numbers
import time
import warnings
from math import ceil
from numbers import Integral, Real

import numpy as np
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import BaseCrossValidator

# GroupsConsumerMixin is how scikit-learn's own group splitters (GroupKFold,
# GroupShuffleSplit, ...) request ``groups`` by default under metadata
# routing; reusing it keeps our request identical to theirs.
from sklearn.model_selection._split import GroupsConsumerMixin
from sklearn.utils import _safe_indexing, check_random_state, indexable
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_params,
)
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _num_samples, column_or_1d

from ._validation import (
    check_any_task_labels,
    check_task_labels,
    encode_nested,
    nested_label_array,
)

__all__ = ["FewShotSplit", "adaptation_curve"]


def _is_int(value):
    # bool is an Integral subclass, but n_splits=True is a mistake, not a 1.
    return isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    )


def _tasks_of_groups(groups, n_samples):
    """``(task_labels, task_of_sample)`` of FewShotSplit's ``groups``.

    ``groups`` is 1-D (one task label per sample) or 2-D, one column per
    level of nested tasks, outermost first: a task is then the whole path
    of labels (the innermost level), and ``task_labels`` holds one tuple
    per task.
    """
    if np.ndim(groups) == 2 and np.shape(groups)[1] > 1:
        labels = check_any_task_labels(groups, n_samples, name="groups")
        levels, paths, codes, _ = encode_nested(labels)
        rows = nested_label_array(levels, paths)
        task_labels = np.empty(len(rows), dtype=object)
        task_labels[:] = [tuple(row) for row in rows.tolist()]
        return task_labels, codes
    if np.ndim(groups) != 1:
        raise ValueError(
            f"groups must be 1-dimensional (or 2-dimensional, one column per "
            f"level of nested tasks, at least 2), got an array of shape "
            f"{np.shape(groups)}."
        )
    # missing labels, mixed kinds and bytes are named as for tasks=
    groups = check_task_labels(groups, n_samples, name="groups")
    return np.unique(groups, return_inverse=True)


def _check_test_size(test_size):
    """Raise unless ``test_size`` is a float in (0, 1) or an int >= 1 (a
    bool is neither, though Python counts it an int)."""
    if _is_int(test_size):
        if test_size < 1:
            raise ValueError(
                "test_size must be a float in (0, 1) or an int of at least "
                f"1 (a number of tasks), got test_size={test_size}."
            )
    elif isinstance(test_size, numbers.Real) and not isinstance(
        test_size, (bool, np.bool_)
    ):
        if not 0 < test_size < 1:
            raise ValueError(
                "test_size must be a float in (0, 1) or an int of at least "
                f"1 (a number of tasks), got test_size={test_size}."
            )
    else:
        raise TypeError(
            "test_size must be a float in (0, 1) or an int of at least 1, "
            f"got {test_size!r} of type {type(test_size).__name__}."
        )


class FewShotSplit(GroupsConsumerMixin, BaseCrossValidator):
    """Few-shot cross-validator over tasks.

    Each split holds out a random subset of the tasks given by ``groups``.
    The model is trained on every sample of the remaining tasks plus a small
    *support set* of ``n_shots`` samples drawn from each held-out task, and
    is evaluated on all other samples of the held-out tasks (the *query
    set*). This measures how well a meta-learner adapts to a new task from
    only a few labelled samples.

    With ``stratify=True`` and a classification target, the support set of a
    held-out task holds ``n_shots`` samples *of every class present in that
    task* (the usual "N-way K-shot" protocol), or all of them for a class with
    fewer samples (with a warning, see Notes); otherwise it holds ``n_shots``
    samples of the task drawn without regard to ``y``.

    Splits are independent random draws, as in
    :class:`~sklearn.model_selection.GroupShuffleSplit`: a task may be held
    out in several splits or in none.

    Parameters
    ----------
    n_splits : int, default=5
        Number of random splits. Must be at least 1.

    n_shots : int, default=5
        Number of samples of each held-out task (of each class of each
        held-out task when stratifying) that are moved to the training set.
        ``n_shots=0`` gives zero-shot evaluation: held-out tasks contribute
        no training samples.

    test_size : float or int, default=0.2
        If float, in the open interval (0, 1): the fraction of the distinct
        tasks to hold out, rounded up as in
        :class:`~sklearn.model_selection.GroupShuffleSplit`. If int, at least
        1: the number of tasks to hold out. At least one task must be left
        for training.

    stratify : bool, default=True
        Whether to draw ``n_shots`` samples per class of each held-out task.
        Only used when ``y`` is passed to :meth:`split`, in which case it must
        be a binary or multiclass target; pass ``stratify=False`` for
        regression targets.

    random_state : int, RandomState instance or None, default=None
        Controls which tasks are held out and which samples form their
        support sets. Pass an int for reproducible output across multiple
        function calls. See :term:`Glossary <random_state>`.

    See Also
    --------
    sklearn.model_selection.GroupShuffleSplit : Random splits that hold out
        whole groups, with no support samples.
    sklearn.model_selection.GroupKFold : K-fold over groups; each group is
        held out exactly once.

    Notes
    -----
    Any task may be drawn as a held-out task, so every task must be able to
    provide a support set and a non-empty query set. :meth:`split` checks all
    tasks before yielding anything and raises a ``ValueError`` naming the
    first offending task and its sample counts when

    - without stratification, a task has fewer than ``n_shots + 1`` samples;
    - with stratification, the task has no sample left once its support set
      is drawn, i.e. none of its classes has more than ``n_shots`` samples.

    With stratification, a class that has fewer than ``n_shots`` samples in a
    task (a store with 4 positive samples and ``n_shots=5``) does not stop the
    split: as :class:`~sklearn.model_selection.StratifiedKFold` does for a
    class smaller than ``n_splits``, :meth:`split` emits a ``UserWarning``
    naming such tasks and classes, and proceeds. When such a task is held out,
    all of its samples of that class go to the support set, so its query set
    has no sample of that class (a per-task metric that needs every class,
    such as ROC AUC, is then undefined for it).

    The checks do not depend on ``random_state``, so an unsuitable data set
    fails (or warns) on every call rather than only for unlucky draws.

    **Zero-shot evaluation.** ``FewShotSplit(n_shots=0)`` holds out whole
    tasks, as does scikit-learn's :class:`~sklearn.model_selection.GroupKFold`
    used with the task labels as ``groups``. They differ in how the held-out
    tasks are chosen: ``GroupKFold`` partitions the tasks into ``n_splits``
    disjoint folds, so every task is evaluated exactly once and the number of
    held-out tasks per split is fixed by ``n_splits``; ``FewShotSplit`` draws
    each split independently, so ``test_size`` and ``n_splits`` can be set
    separately, and a task may be evaluated several times or never.
    ``GroupKFold`` is the better choice when every task must be scored once;
    ``FewShotSplit`` lets you compare zero-shot and few-shot scores (e.g.
    ``n_shots=0`` against ``n_shots=5``) on the same held-out tasks by
    keeping ``random_state`` fixed: the held-out tasks are drawn from a
    random stream of their own, so they do not depend on ``n_shots``,
    ``stratify`` or ``y``.

    Examples
    --------
    Three tasks of four samples, each with two classes:

    >>> import numpy as np
    >>> from skmeta.model_selection import FewShotSplit
    >>> X = np.arange(24).reshape(12, 2)
    >>> y = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1])
    >>> groups = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4)
    >>> cv = FewShotSplit(n_splits=3, n_shots=1, test_size=1, random_state=0)
    >>> cv.get_n_splits()
    3
    >>> print(cv)
    FewShotSplit(n_shots=1, n_splits=3, random_state=0, stratify=True,
           test_size=1)
    >>> for i, (train_index, test_index) in enumerate(cv.split(X, y, groups)):
    ...     print(f"Split {i}: held-out task {groups[test_index][0]}")
    ...     print(f"  Train: index={train_index}")
    ...     print(f"  Test:  index={test_index}, y={y[test_index]}")
    Split 0: held-out task c
      Train: index=[ 0  1  2  3  4  5  6  7  8 10]
      Test:  index=[ 9 11], y=[0 1]
    Split 1: held-out task b
      Train: index=[ 0  1  2  3  4  7  8  9 10 11]
      Test:  index=[5 6], y=[0 1]
    Split 2: held-out task b
      Train: index=[ 0  1  2  3  5  7  8  9 10 11]
      Test:  index=[4 6], y=[0 1]

    Each held-out task lends one sample of each of its classes to the
    training set. With the same ``random_state``, zero-shot evaluation holds
    out the same tasks, entirely:

    >>> zero_shot = FewShotSplit(n_splits=3, n_shots=0, test_size=1, random_state=0)
    >>> for train_index, test_index in zero_shot.split(X, y, groups):
    ...     print(f"Train: {np.unique(groups[train_index])}, test: {test_index}")
    Train: ['a' 'b'], test: [ 8  9 10 11]
    Train: ['a' 'c'], test: [4 5 6 7]
    Train: ['a' 'c'], test: [4 5 6 7]

    To score every task exactly once instead, use
    :class:`~sklearn.model_selection.GroupKFold`:

    >>> from sklearn.model_selection import GroupKFold
    >>> for train_index, test_index in GroupKFold(n_splits=3).split(X, y, groups):
    ...     print(f"Train: {np.unique(groups[train_index])}, test: {test_index}")
    Train: ['a' 'b'], test: [ 8  9 10 11]
    Train: ['a' 'c'], test: [4 5 6 7]
    Train: ['b' 'c'], test: [0 1 2 3]
    """

    def __init__(
        self, n_splits=5, *, n_shots=5, test_size=0.2, stratify=True, random_state=None
    ):
        # Like scikit-learn's K-fold splitters, check the parameters here so the
        # error points at the line that set them; checks that need the data
        # (number of tasks, samples per task) are done in `split`.
        if not _is_int(n_splits):
            raise TypeError(
                f"n_splits must be an int, got {n_splits!r} of type "
                f"{type(n_splits).__name__}."
            )
        if n_splits < 1:
            raise ValueError(f"n_splits must be at least 1, got n_splits={n_splits}.")

        if not _is_int(n_shots):
            raise TypeError(
                f"n_shots must be an int, got {n_shots!r} of type "
                f"{type(n_shots).__name__}."
            )
        if n_shots < 0:
            raise ValueError(
                f"n_shots must be non-negative (0 for zero-shot evaluation), "
                f"got n_shots={n_shots}."
            )

        _check_test_size(test_size)

        if not isinstance(stratify, (bool, np.bool_)):
            raise TypeError(
                f"stratify must be True or False, got {stratify!r} of type "
                f"{type(stratify).__name__}."
            )

        if not (
            random_state is None
            or _is_int(random_state)
            or isinstance(random_state, np.random.RandomState)
        ):
            raise TypeError(
                "random_state must be None, an int or a numpy RandomState "
                f"instance, got {random_state!r} of type "
                f"{type(random_state).__name__}."
            )

        self.n_splits = n_splits
        self.n_shots = n_shots
        self.test_size = test_size
        self.stratify = stratify
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        """Return the number of splitting iterations in the cross-validator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), default=None
            Always ignored, exists for API compatibility.

        y : array-like of shape (n_samples,), default=None
            Always ignored, exists for API compatibility.

        groups : array-like of shape (n_samples,), default=None
            Always ignored, exists for API compatibility.

        Returns
        -------
        n_splits : int
            The ``n_splits`` parameter.
        """
        return self.n_splits

    def split(self, X, y=None, groups=None):
        """Generate indices to split data into training and test set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, where `n_samples` is the number of samples
            and `n_features` is the number of features. The rows need not be
            grouped or sorted by task.

        y : array-like of shape (n_samples,), default=None
            The target variable. With ``stratify=True`` it defines the classes
            from which ``n_shots`` support samples each are drawn, and must
            be a binary or multiclass target. Ignored if ``stratify=False``.

        groups : array-like of shape (n_samples,)
            Task label of each sample (ints or strings). Required.

        Yields
        ------
        train : ndarray of shape (n_train_samples,), dtype=intp
            The sorted training set indices for that split: every sample of
            the tasks that are not held out, plus the support samples of the
            held-out tasks.

        test : ndarray of shape (n_test_samples,), dtype=intp
            The sorted testing set indices for that split: the samples of the
            held-out tasks that are not support samples.

        Raises
        ------
        ValueError
            If ``groups`` is None, if ``test_size`` leaves no task for
            training, if ``y`` is not a classification target while
            stratifying, or if some task has too few samples to be held out
            (see the Notes of :class:`FewShotSplit`).

        Warns
        -----
        UserWarning
            When stratifying, if a class has fewer than ``n_shots`` samples in
            some task; the warning names those tasks and classes.

        Notes
        -----
        Inputs are validated when ``split`` is called, before the first split
        is drawn. Randomized CV splitters may return different results for
        each call of split. You can make the results identical by setting
        `random_state` to an integer.
        """
        # Validation is done here rather than in the generator so that bad
        # inputs fail at the call, not at the first iteration.
        X, y, groups = indexable(X, y, groups)
        if groups is None:
            raise ValueError(
                "The 'groups' parameter should not be None: FewShotSplit needs "
                "the task label of every sample."
            )
        task_labels, task_of_sample = _tasks_of_groups(groups, _num_samples(X))
        n_tasks = len(task_labels)

        if _is_int(self.test_size):
            n_test_tasks = int(self.test_size)
        else:
            n_test_tasks = ceil(self.test_size * n_tasks)
        if n_test_tasks >= n_tasks:
            raise ValueError(
                f"test_size={self.test_size} holds out {n_test_tasks} of the "
                f"{n_tasks} distinct tasks in groups, leaving none for "
                "training. At least one task must remain in the training set; "
                "reduce test_size or provide more tasks."
            )

        pools = self._support_pools(y, task_labels, task_of_sample)
        return self._iter_indices(_num_samples(X), task_of_sample, n_test_tasks, pools)

    def _support_pools(self, y, task_labels, task_of_sample, candidates=None):
        """Group each task's samples into the pools support shots come from.

        Returns a list, one entry per task, of lists of index arrays: a single
        pool holding all of the task's samples, or one pool per class present
        in the task when stratifying. Raises if a task that may be held out
        (any task, or the task indices in ``candidates``) is too small to be,
        and warns about classes smaller than ``n_shots`` in such tasks.
        """
        n_tasks = len(task_labels)
        stratified = self.stratify and y is not None
        if stratified:
            target_type = type_of_target(y, input_name="y")
            if target_type not in ("binary", "multiclass"):
                raise ValueError(
                    "With stratify=True, y must be a binary or multiclass "
                    f"target, got a {target_type!r} target. Pass stratify=False "
                    "to draw support samples regardless of y (e.g. for "
                    "regression)."
                )
            classes, class_of_sample = np.unique(column_or_1d(y), return_inverse=True)
        else:
            classes = np.array([None], dtype=object)
            class_of_sample = np.zeros_like(task_of_sample)
        n_classes = len(classes)

        # One stable sort by (task, class) lays out every pool as a contiguous
        # run with its indices in increasing order.
        stratum = task_of_sample * n_classes + class_of_sample
        order = np.argsort(stratum, kind="stable")
        strata, starts, counts = np.unique(
            stratum[order], return_index=True, return_counts=True
        )

        pools = [[] for _ in range(n_tasks)]
        class_counts = [[] for _ in range(n_tasks)]
        for s, start, count in zip(strata, starts, counts):
            task, cls = divmod(int(s), n_classes)
            pools[task].append(order[start : start + count])
            class_counts[task].append((cls, int(count)))

        # tolist() turns numpy scalars into Python ones, whose repr in the
        # messages below is the plain label (3, 'a') rather than np.int64(3).
        task_labels, classes = task_labels.tolist(), classes.tolist()
        n_shots = self.n_shots
        short_classes = []
        for task in range(n_tasks) if candidates is None else candidates:
            label = task_labels[task]
            n_task_samples = sum(c for _, c in class_counts[task])
            if stratified:
                n_support = sum(min(c, n_shots) for _, c in class_counts[task])
                if n_task_samples <= n_support:
                    raise ValueError(
                        f"Task {label!r} has {n_task_samples} sample(s) in "
                        f"{len(class_counts[task])} class(es), none of which "
                        f"has more than n_shots={n_shots}: its support set "
                        "would take every sample and leave none for testing. "
                        "Reduce n_shots or drop this task."
                    )
                short_classes += [
                    (label, classes[cls], count)
                    for cls, count in class_counts[task]
                    if count < n_shots
                ]
            elif n_task_samples < n_shots + 1:
                raise ValueError(
                    f"Task {label!r} has only {n_task_samples} sample(s), but "
                    f"holding it out needs at least n_shots + 1 = {n_shots + 1} "
                    f"(n_shots={n_shots} for training and at least one for "
                    "testing). Reduce n_shots or drop this task."
                )
        if short_classes:
            _warn_short_classes(short_classes, n_shots)
        return pools

    def _iter_indices(self, n_samples, task_of_sample, n_test_tasks, pools):
        """Draw the held-out tasks and their support samples for each split."""
        task_rng, shot_rng = _task_and_shot_streams(self.random_state)
        indices = np.arange(n_samples, dtype=np.intp)
        n_tasks = len(pools)
        for _ in range(self.n_splits):
            held_out = np.sort(task_rng.permutation(n_tasks)[:n_test_tasks])
            test_mask = np.isin(task_of_sample, held_out)
            test_mask[_draw_support(pools, held_out, self.n_shots, shot_rng)] = False
            # Every sample is in exactly one of the two sets, so train is the
            # complement of test.
            yield indices[~test_mask], indices[test_mask]


def _warn_short_classes(short_classes, n_shots, max_listed=5):
    """One warning naming the (task, class) cells smaller than ``n_shots``."""
    listed = "; ".join(
        f"task {task!r}, class {cls!r}: {count} sample(s)"
        for task, cls, count in short_classes[:max_listed]
    )
    if len(short_classes) > max_listed:
        listed += f" (and {len(short_classes) - max_listed} more)"
    warnings.warn(
        f"Some tasks have fewer than n_shots={n_shots} samples of a class: "
        f"{listed}. When such a task is held out, its support set takes all "
        "of them, and its query set has no sample of that class.",
        UserWarning,
        stacklevel=4,
    )


def _task_and_shot_streams(random_state):
    """Independent random streams for the held-out tasks and for the shots.

    How many draws the shots take depends on ``n_shots``, ``stratify`` and
    ``y``, and must not change which tasks are held out: with a fixed
    ``random_state``, zero-shot and few-shot runs are then scored on the same
    held-out tasks.
    """
    rng = check_random_state(random_state)
    return tuple(
        np.random.RandomState(seed)
        for seed in rng.randint(np.iinfo(np.int32).max, size=2)
    )


def _draw_support(pools, held_out, n_shots, rng):
    """Indices of ``n_shots`` samples of each pool of each held-out task.

    A pool smaller than ``n_shots`` gives all of its samples. The legacy
    ``RandomState.choice`` without replacement takes the first ``size``
    entries of one permutation of the pool, whatever ``size``: drawn from the
    same stream state, the shots of a smaller ``n_shots`` are a subset of
    those of a larger one, and the stream advances by the same amount.
    """
    chunks = [
        rng.choice(pool, size=min(n_shots, len(pool)), replace=False)
        for task in held_out
        for pool in pools[task]
        if n_shots > 0
    ]
    if not chunks:
        return np.empty(0, dtype=np.intp)
    return np.concatenate(chunks).astype(np.intp, copy=False)


_STRATEGIES = ("adapt", "per_task", "pooled")


@validate_params(
    {
        "estimator": [HasMethods(["fit"])],
        "X": ["array-like", "sparse matrix"],
        "y": ["array-like"],
        "groups": ["array-like"],
        "shots": ["array-like"],
        "strategy": [StrOptions({"auto", *_STRATEGIES})],
        "test_size": [
            Interval(RealNotInt, 0, 1, closed="neither"),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "held_out_tasks": ["array-like", None],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "stratify": ["boolean", None],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "error_score": [StrOptions({"raise"}), Real],
        "return_times": ["boolean"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=False,
)
def adaptation_curve(  # noqa: PLR0913
    estimator,
    X,
    y,
    *,
    groups,
    shots=(1, 2, 5, 10, 20),
    strategy="auto",
    test_size=None,
    held_out_tasks=None,
    n_repeats=5,
    stratify=None,
    scoring=None,
    error_score=np.nan,
    return_times=False,
    n_jobs=None,
    random_state=None,
):
    """Score an estimator on new tasks after it sees ``k`` samples of each.

    The few-shot counterpart of :func:`~sklearn.model_selection.learning_curve`:
    in each repeat, some tasks are held out (the *new* tasks); for each number
    of shots ``k``, the estimator gets ``k`` samples of each new task (``k``
    per class when stratifying) and is scored on the task's other samples,
    task by task.

    Repeat ``r`` and ``k`` shots use exactly the held-out tasks and support
    samples of ``FewShotSplit(n_splits=1, n_shots=k, test_size=test_size,
    stratify=stratify, random_state=s_r)``, where the seeds ``s_r`` are drawn
    from ``random_state``. The held-out tasks of a repeat are therefore the
    same for every ``k``, and the shots of a smaller ``k`` are among those of
    a larger one.

    Read more in the :ref:`User Guide <evaluating_new_tasks>`.

    Parameters
    ----------
    estimator : estimator instance
        The estimator to evaluate; it is cloned (wrap a fitted meta-learner in
        :class:`~sklearn.frozen.FrozenEstimator` to evaluate it without
        refitting it). How it learns a new task is set by ``strategy``.

    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Samples of all tasks, without a task column.

    y : array-like of shape (n_samples,)
        Targets.

    groups : array-like of shape (n_samples,)
        Task label of each sample (ints or strings).

    shots : array-like of int, default=(1, 2, 5, 10, 20)
        Numbers of samples (per class when stratifying) of each new task given
        to the estimator; each at least 1, without duplicates. They are
        returned sorted.

    strategy : {"auto", "adapt", "per_task", "pooled"}, default="auto"
        How the estimator learns a new task from its shots:

        - ``"adapt"``: a meta-learner (it must have an ``adapt_tasks``
          method, as :class:`~skmeta.MetaClassifier`) is fitted once per
          repeat on the tasks that are not held out, with ``tasks=``; then,
          for each ``k``, ``adapt_tasks`` fits every new task from its shots
          in one batch, and each new task is scored with the model it gets.
        - ``"per_task"``: a clone of the estimator is fitted on each new
          task's shots alone. An estimator with an ``n_neighbors`` attribute
          (k-NN) gets at most the largest odd number not above its number of
          shots (an odd number avoids ties between two classes).
        - ``"pooled"``: one clone of the estimator is fitted, ignoring tasks,
          on every sample of the tasks not held out and the shots of the new
          tasks.
        - ``"auto"``: ``"adapt"`` if the estimator has an ``adapt_tasks``
          method, else ``"per_task"``.

    test_size : float or int, default=None
        If float, in (0, 1): the fraction of the tasks held out in each
        repeat, rounded up; if int: their number. ``None`` means 0.2, unless
        ``held_out_tasks`` is given. At least one task must be left for
        training.

    held_out_tasks : array-like, default=None
        Labels of the tasks to hold out in every repeat, for a fixed set of
        new tasks; the repeats then differ only by their shots. Exclusive with
        ``test_size``.

    n_repeats : int, default=5
        Number of random draws of held-out tasks and shots.

    stratify : bool, default=None
        Whether ``k`` shots are drawn from each class of a new task, as
        :class:`FewShotSplit` does. ``None`` means stratify for classifiers.

    scoring : str or callable, default=None
        Scorer applied to each new task's query samples: a name of
        :func:`~sklearn.metrics.get_scorer_names` or a callable
        ``scorer(estimator, X, y)``, as the ``scoring`` of scikit-learn's
        model selection tools. ``None`` means ``"accuracy"`` for classifiers
        and ``"r2"`` for regressors (also for a ``PoissonRegressor`` base,
        whose own ``score`` is D^2: pass e.g.
        ``"neg_mean_poisson_deviance"`` to compare by deviance).

    error_score : "raise" or numeric, default=np.nan
        Score given to the new tasks whose fit or scoring raised an error;
        the failures are reported in one warning (a
        :class:`~sklearn.exceptions.FitFailedWarning` for fits). With
        ``"raise"``, the error is raised.

    return_times : bool, default=False
        Whether to return the fit and score times.

    n_jobs : int, default=None
        Number of jobs to run the repeats in parallel. ``None`` means 1 unless
        in a :obj:`joblib.parallel_backend` context; ``-1`` means all
        processors. The results do not depend on it.

    random_state : int, RandomState instance or None, default=None
        Controls the held-out tasks and the shots of every repeat. Pass an
        int for reproducible output; two calls with the same int (e.g. for a
        meta-learner and a baseline) hold out the same tasks and draw the same
        shots.

    Returns
    -------
    shots : ndarray of shape (n_shots,)
        The numbers of shots, sorted.

    scores : ndarray of shape (n_shots, n_repeats, n_held_out)
        Score of each held-out task, for each number of shots and repeat
        (``error_score`` where its fit or scoring failed). The mean score over
        the new tasks, each task counting once, is
        ``np.nanmean(scores, axis=2)``.

    test_tasks : ndarray of shape (n_repeats, n_held_out)
        Labels of the held-out tasks of each repeat, sorted; they index the
        last axis of ``scores``.

    fit_times : ndarray of shape (n_shots, n_repeats)
        Seconds spent learning the new tasks from their shots (the call to
        ``adapt_tasks``, the per-task fits, or the pooled fit). The meta-training
        of ``"adapt"``, shared by every ``k`` of a repeat, is not included.
        Only present if ``return_times`` is True.

    score_times : ndarray of shape (n_shots, n_repeats)
        Seconds spent scoring the new tasks. Only present if
        ``return_times`` is True.

    Warns
    -----
    UserWarning
        When stratifying, if a class of a task that may be held out has fewer
        samples than the largest number of shots (see :class:`FewShotSplit`);
        and when scoring a task failed.

    FitFailedWarning
        When some fits failed and ``error_score`` is not ``"raise"``.

    See Also
    --------
    FewShotSplit : The splits behind each point of the curve.
    skmeta.inspection.AdaptationCurveDisplay : Plots this curve for a
        meta-learner and its baselines.
    sklearn.model_selection.learning_curve : Score against the number of
        training samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skmeta import MetaClassifier
    >>> from skmeta.datasets import make_meta_classification
    >>> from skmeta.model_selection import adaptation_curve
    >>> X, y, tasks = make_meta_classification(
    ...     n_tasks=40, n_samples_per_task=30, n_features=5, n_informative=2,
    ...     n_redundant=0, task_spread=1.0, random_state=0)
    >>> shots, scores, test_tasks = adaptation_curve(
    ...     MetaClassifier(LogisticRegression()), X, y, groups=tasks, shots=[1, 5],
    ...     n_repeats=2, random_state=0)
    >>> scores.shape, test_tasks.shape
    ((2, 2, 8), (2, 8))

    Mean accuracy over the new tasks for 1 and 5 shots per class, next to a
    logistic regression fitted on each new task's shots alone, and one fitted
    on all tasks pooled (the same tasks and shots: same ``random_state``):

    >>> np.nanmean(scores, axis=(1, 2)).round(2)
    array([0.93, 0.93])
    >>> for strategy in ("per_task", "pooled"):
    ...     _, baseline, _ = adaptation_curve(
    ...         LogisticRegression(), X, y, groups=tasks, shots=[1, 5],
    ...         strategy=strategy, n_repeats=2, random_state=0)
    ...     print(strategy, np.nanmean(baseline, axis=(1, 2)).round(2))
    per_task [0.8  0.93]
    pooled [0.82 0.84]
    """
    X, y, groups = indexable(X, y, groups)
    if np.ndim(groups) != 1:
        raise ValueError(
            f"groups must be 1-dimensional, got an array of shape {np.shape(groups)}."
        )
    groups = check_task_labels(groups, _num_samples(X), name="groups")
    shots = _check_shots(shots)
    strategy = _check_strategy(estimator, strategy)
    if stratify is None:
        stratify = is_classifier(estimator)
    scorer = _check_scorer(estimator, scoring)

    if test_size is not None:
        _check_test_size(test_size)  # a bool passed the constraints
    task_labels, task_of_sample = np.unique(groups, return_inverse=True)
    n_tasks = len(task_labels)
    if held_out_tasks is not None:
        if test_size is not None:
            raise ValueError(
                "Pass either test_size (held-out tasks drawn at random) or "
                "held_out_tasks (a fixed set), not both."
            )
        fixed = _held_out_indices(held_out_tasks, task_labels)
        n_test = len(fixed)
    else:
        fixed = None
        test_size = 0.2 if test_size is None else test_size
        n_test = int(test_size) if _is_int(test_size) else ceil(test_size * n_tasks)
    if n_test >= n_tasks:
        raise ValueError(
            f"Holding out {n_test} of the {n_tasks} distinct tasks in groups "
            "leaves none for training; at least one task must remain."
        )

    # Checked once, for the largest k, on the tasks that may be held out.
    splitter = FewShotSplit(n_shots=int(shots[-1]), stratify=stratify)
    pools = splitter._support_pools(y, task_labels, task_of_sample, candidates=fixed)

    seeds = check_random_state(random_state).randint(
        np.iinfo(np.int32).max, size=n_repeats
    )
    plans = []
    for seed in seeds:
        task_rng, shot_rng = _task_and_shot_streams(seed)
        held_out = (
            fixed if fixed is not None
            else np.sort(task_rng.permutation(n_tasks)[:n_test])
        )
        plans.append((held_out, shot_rng.get_state()))

    results = Parallel(n_jobs=n_jobs)(
        delayed(_adaptation_repeat)(
            estimator, X, y, groups, task_of_sample, pools, held_out, shot_state,
            shots, strategy, scorer, error_score,
        )
        for held_out, shot_state in plans
    )
    scores = np.stack([r[0] for r in results], axis=1)
    fit_times = np.stack([r[1] for r in results], axis=1)
    score_times = np.stack([r[2] for r in results], axis=1)
    _warn_failures([f for r in results for f in r[3]], error_score,
                   n_fits=sum(r[4] for r in results),
                   n_scores=scores.size)
    test_tasks = task_labels[np.stack([held_out for held_out, _ in plans])]
    if return_times:
        return shots, scores, test_tasks, fit_times, score_times
    return shots, scores, test_tasks


def _check_shots(shots):
    """Sorted 1-D int array of distinct positive numbers of shots."""
    array = np.asarray(shots)
    if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iu":
        raise ValueError(
            "shots must be a non-empty 1-D array-like of ints, got "
            f"{shots!r}."
        )
    if np.any(array < 1):
        raise ValueError(
            f"Every number of shots must be at least 1, got shots={array.tolist()}."
        )
    unique = np.unique(array)
    if len(unique) != len(array):
        raise ValueError(f"shots must not contain duplicates, got {array.tolist()}.")
    return unique.astype(np.intp)


def _check_strategy(estimator, strategy):
    """Resolve ``"auto"`` and check that ``"adapt"`` can be used."""
    can_adapt = hasattr(estimator, "adapt_tasks")
    if strategy == "auto":
        strategy = "adapt" if can_adapt else "per_task"
    if strategy == "adapt":
        if not can_adapt:
            raise ValueError(
                "strategy='adapt' needs a meta-learner with an adapt_tasks "
                f"method; {type(estimator).__name__} has none. Use "
                "strategy='per_task' or 'pooled' for a plain estimator."
            )
        if getattr(estimator, "task_column", None) is not None:
            raise ValueError(
                "adaptation_curve takes the task labels from groups: pass X "
                "without its task column and an estimator with "
                "task_column=None."
            )
    return strategy


def _check_scorer(estimator, scoring):
    """The scorer for ``scoring``; its default follows the estimator type."""
    if scoring is None:
        if is_classifier(estimator):
            scoring = "accuracy"
        elif is_regressor(estimator):
            scoring = "r2"
        else:
            raise ValueError(
                f"{type(estimator).__name__} is neither a classifier nor a "
                "regressor: pass scoring."
            )
    return get_scorer(scoring)


def _held_out_indices(held_out_tasks, task_labels):
    """Sorted indices into ``task_labels`` of the given labels, checked."""
    labels = column_or_1d(np.asarray(held_out_tasks, dtype=object)).tolist()
    if not labels:
        raise ValueError("held_out_tasks must name at least one task.")
    index = {label: i for i, label in enumerate(task_labels.tolist())}
    unknown = [label for label in labels if label not in index]
    if unknown:
        raise ValueError(
            f"held_out_tasks has labels that are not in groups: {unknown[:5]!r}."
        )
    return np.unique([index[label] for label in labels]).astype(np.intp)


def _cap_neighbors(model, n_fit):
    """k-NN cannot use more neighbours than it has samples (odd: no ties)."""
    if hasattr(model, "n_neighbors"):
        model.set_params(n_neighbors=min(model.n_neighbors, (n_fit - 1) | 1))
    return model


def _adaptation_repeat(estimator, X, y, groups, task_of_sample, pools, held_out,
                       shot_state, shots, strategy, scorer, error_score):
    """Scores ``(n_shots, n_held_out)`` and times of one repeat, and failures.

    Failures are ``(stage, task labels, shots, exception)`` tuples, reported
    by the caller in one warning (warnings raised in a worker process would
    be lost).
    """
    n_samples = len(task_of_sample)
    held_rows = {t: np.flatnonzero(task_of_sample == t) for t in held_out}
    in_held_out = np.isin(task_of_sample, held_out)
    # Python scalars: the keys of the dict that adapt_tasks returns
    labels = {t: groups[rows[:1]].tolist()[0] for t, rows in held_rows.items()}
    scores = np.full((len(shots), len(held_out)), np.nan)
    fit_times = np.zeros(len(shots))
    score_times = np.zeros(len(shots))
    failures = []
    n_fits = 0

    def attempt(stage, which, k, func, /, *args, **kwargs):
        """``func(*args, **kwargs)``, or None once its failure is recorded."""
        try:
            return func(*args, **kwargs)
        # Any error of a user's estimator or scorer becomes error_score, as
        # in scikit-learn's cross_validate.
        except Exception as exc:
            if error_score == "raise":
                raise
            failures.append((stage, [labels[t] for t in which], k, exc))
            return None

    def rows(index):
        return _safe_indexing(X, index), _safe_indexing(y, index)

    meta = None
    if strategy == "adapt":
        train = np.flatnonzero(~in_held_out)
        n_fits += 1
        meta = attempt("fit", held_out, None, clone(estimator).fit, *rows(train),
                       tasks=groups[train])
        if meta is None:
            scores[:] = error_score
            return scores, fit_times, score_times, failures, n_fits

    shot_rng = np.random.RandomState()
    for j, k in enumerate(shots):
        shot_rng.set_state(shot_state)
        support = np.sort(_draw_support(pools, held_out, int(k), shot_rng))
        is_support = np.zeros(n_samples, dtype=bool)
        is_support[support] = True

        def shots_of(t, is_support=is_support):
            """Held-out task ``t``'s support rows at this number of shots."""
            return held_rows[t][is_support[held_rows[t]]]

        models = {}
        start = time.perf_counter()
        if strategy == "adapt":
            n_fits += 1
            try:
                adapted = meta.adapt_tasks(*rows(support), tasks=groups[support])
                models = {t: adapted[labels[t]] for t in held_out}
            except Exception:
                if error_score == "raise":
                    raise
                # the batch fails as a whole where one task does: adapted
                # one by one (a fit each, in place of the batch's), only the
                # tasks that fail lose their scores
                n_fits -= 1
                for t in held_out:
                    fit_rows = shots_of(t)
                    n_fits += 1
                    models[t] = attempt("fit", [t], k, meta.adapt,
                                        *rows(fit_rows), tasks=groups[fit_rows])
        elif strategy == "pooled":
            train = np.flatnonzero(~in_held_out | is_support)
            n_fits += 1
            pooled = attempt("fit", held_out, k, clone(estimator).fit, *rows(train))
            if pooled is not None:
                models = dict.fromkeys(held_out, pooled)
        else:
            for t in held_out:
                fit_rows = shots_of(t)
                n_fits += 1
                model = _cap_neighbors(clone(estimator), len(fit_rows))
                models[t] = attempt("fit", [t], k, model.fit, *rows(fit_rows))
        fit_times[j] = time.perf_counter() - start

        start = time.perf_counter()
        for i, t in enumerate(held_out):
            score = None
            if models.get(t) is not None:
                query = held_rows[t][~is_support[held_rows[t]]]
                score = attempt("score", [t], k, scorer, models[t], *rows(query))
            scores[j, i] = error_score if score is None else score
        score_times[j] = time.perf_counter() - start
    return scores, fit_times, score_times, failures, n_fits


def _warn_failures(failures, error_score, *, n_fits, n_scores):
    """One warning per stage (fit, score) summarizing what failed."""
    for stage, category, total, what in (
        ("fit", FitFailedWarning, n_fits, "fits"),
        ("score", UserWarning, n_scores, "task scores"),
    ):
        failed = [f for f in failures if f[0] == stage]
        if not failed:
            continue
        _, tasks, k, exc = failed[0]
        where = f"task(s) {tasks[:5]!r}" + ("" if k is None else f" with {k} shot(s)")
        warnings.warn(
            f"{len(failed)} of {total} {what} failed; the scores of their tasks "
            f"are set to error_score={error_score!r}. The first failure, for "
            f"{where}: {type(exc).__name__}: {exc}",
            category,
            stacklevel=3,
        )
