"""MetaEmbedding: a representation learned across tasks, for k-NN on new ones.

Feature transfer: what related tasks share may be *where* their classes
differ rather than a decision boundary. A map ``f`` (linear, or an MLP body)
is trained episodically: each episode takes a task, draws ``n_shots`` rows
per class as its support and keeps the others as its query, and scores the
query in the embedding by the support alone,

* ``"prototypical"`` (Snell et al., 2017): a softmax over the classes of
  ``-||f(x) - c_k||^2``, ``c_k`` the mean embedding of class ``k``'s shots;
* ``"neighbourhood"`` (Goldberger et al., 2004, within an episode): the
  probability that a query row's soft nearest neighbour among the shots,
  ``softmax_j(-||f(x) - f(x_j)||^2)``, has its class;

minimizing the mean log-loss over episodes with Adam. A new task's few
shots are then embedded and fitted by any estimator, the fitted embedding
frozen so that fitting the pipeline on the shots does not refit it:
``make_pipeline(FrozenEstimator(embedding), KNeighborsClassifier())``.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._families._mlp import whole_layer_sizes
from ._methods._bilevel import Adam
from ._validation import check_task_labels, encode_tasks

_ACTIVATIONS = {
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
    "logistic": (lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)), lambda a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda a: 1.0 - a * a),
    "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(a.dtype)),
}


class MetaEmbedding(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                    BaseEstimator):
    """Embedding learned across tasks so that, within a task, neighbours share labels.

    Feature transfer for few-shot classification: a map (linear, or a
    multi-layer perceptron body) from the features to ``n_components``
    dimensions, trained on episodes drawn from many tasks so that a few
    labelled samples of a task classify its other samples by distance. Put
    it, fitted and wrapped in :class:`~sklearn.frozen.FrozenEstimator`,
    before :class:`~sklearn.neighbors.KNeighborsClassifier` (or any
    estimator) fitted on each new task's shots: a pipeline's ``fit`` would
    otherwise refit the embedding on those few shots.

    Read more in the :ref:`User Guide <networks>`.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the embedding.
    hidden_layer_sizes : int or array-like of int, default=()
        Hidden layers of the map (an int: one layer of that size, as
        scikit-learn's MLPs take it); ``()`` makes it linear (``x @ W + b``).
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Activation of the hidden layers.
    loss : {"prototypical", "neighbourhood"}, default="prototypical"
        Episode loss: distances to the classes' mean shots, or soft nearest
        neighbours among the shots (see the :ref:`User Guide <networks>`).
    n_shots : int, default=5
        Support rows per class of an episode (fewer when a class has fewer
        than ``n_shots + 1`` rows: one row is always left to the query).
    meta_batch_size : int, default=16
        Episodes (tasks) per Adam step; all usable tasks where there are
        fewer (tasks with 2 or more classes of 2 or more rows each).
    max_iter : int, default=500
        Adam steps.
    learning_rate : float, default=0.01
        Adam's learning rate.
    alpha : float, default=0.0
        Strength of an l2 penalty on the weights, ``alpha / 2 ||W||^2``.
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights (Glorot, as scikit-learn's MLPs), the
        episodes and their support rows.
    verbose : int, default=0
        Print the loss every tenth of the iterations when positive.

    Attributes
    ----------
    coefs_ : list of ndarray
        Weights of each layer, ``coefs_[i]`` of shape ``(fan_in, fan_out)``.
    intercepts_ : list of ndarray
        Biases of each layer.
    loss_curve_ : ndarray of shape (max_iter,)
        Mean episode loss at each step, with the weights' penalty
        (``alpha``) added: the objective Adam descends.
    n_iter_ : int
        Number of Adam steps run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    MetaClassifier : Parameter transfer: a prior over a classifier's parameters.
    skmeta.datasets.make_subspace_tasks : Tasks whose classes differ in a
        shared, hidden subspace.

    Examples
    --------
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from skmeta import MetaEmbedding
    >>> from skmeta.datasets import make_subspace_tasks
    >>> X, y, tasks = make_subspace_tasks(n_tasks=51, random_state=0)
    >>> new = tasks == 50  # a task held out of meta-training
    >>> embedding = MetaEmbedding(n_components=2, max_iter=100, random_state=0)
    >>> embedding.fit(X[~new], y[~new], tasks=tasks[~new]).transform(X[:3]).shape
    (3, 2)
    >>> knn = make_pipeline(FrozenEstimator(embedding),
    ...                     KNeighborsClassifier(n_neighbors=3))
    >>> knn.fit(X[new][:10], y[new][:10]).predict(X[new][10:13]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None,
                                                       closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "loss": [StrOptions({"prototypical", "neighbourhood"})],
        "n_shots": [Interval(Integral, 1, None, closed="left")],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    # the estimator is about tasks: requested by default under metadata routing
    __metadata_request__fit = {"tasks": True}

    def __init__(self, n_components=2, *, hidden_layer_sizes=(), activation="relu",
                 loss="prototypical", n_shots=5, meta_batch_size=16, max_iter=500,
                 learning_rate=0.01, alpha=0.0, random_state=None, verbose=0):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.n_shots = n_shots
        self.meta_batch_size = meta_batch_size
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.alpha = alpha
        self.random_state = random_state
        self.verbose = verbose

    @property
    def _n_features_out(self):
        # as PCA: the output names exist once fitted (get_feature_names_out
        # raises NotFittedError before)
        check_is_fitted(self, "coefs_")
        return self.coefs_[-1].shape[1]

    def _sizes(self, n_features):
        hidden = list(whole_layer_sizes(self.hidden_layer_sizes,
                                        type(self).__name__)) \
            if np.size(self.hidden_layer_sizes) else []
        if any(h < 1 for h in hidden):
            raise ValueError(
                "hidden_layer_sizes must hold positive sizes; got "
                f"{self.hidden_layer_sizes!r}."
            )
        return [n_features, *hidden, self.n_components]

    # ----------------------------------------------------------- the map
    def _unpack(self, params, sizes):
        layers, start = [], 0
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            W = params[start:start + fan_in * fan_out].reshape(fan_in, fan_out)
            start += fan_in * fan_out
            b = params[start:start + fan_out]
            start += fan_out
            layers.append((W, b))
        return layers

    def _forward(self, layers, X):
        act = _ACTIVATIONS[self.activation][0]
        outputs = [X]
        for i, (W, b) in enumerate(layers):
            Z = outputs[-1] @ W + b
            outputs.append(act(Z) if i < len(layers) - 1 else Z)
        return outputs

    def _backward(self, layers, outputs, dZ):
        slope = _ACTIVATIONS[self.activation][1]
        grads = []
        delta = dZ
        for i in range(len(layers) - 1, -1, -1):
            W, _ = layers[i]
            grads.append((outputs[i].T @ delta + self.alpha * W, delta.sum(axis=0)))
            if i > 0:
                delta = (delta @ W.T) * slope(outputs[i])
        return np.concatenate([np.r_[gW.ravel(), gb] for gW, gb in grads[::-1]])

    # --------------------------------------------------------- the episodes
    def _episode_loss(self, Zs, ys, Zq, yq):
        """Loss of one episode and its gradients with respect to ``Zs``, ``Zq``."""
        classes, ys_idx = np.unique(ys, return_inverse=True)
        yq_idx = np.searchsorted(classes, yq)
        nq = Zq.shape[0]
        onehot = np.zeros((nq, len(classes)))
        onehot[np.arange(nq), yq_idx] = 1.0
        if self.loss == "prototypical":
            counts = np.bincount(ys_idx)
            C = np.zeros((len(classes), Zs.shape[1]))
            np.add.at(C, ys_idx, Zs)
            C /= counts[:, None]
            logits = -_squared_distances(Zq, C)
            P, lse = _softmax(logits)
            loss = np.mean(lse - logits[np.arange(nq), yq_idx])
            G = (P - onehot) / nq
            dZq = 2.0 * G @ C
            dC = 2.0 * (G.T @ Zq) - 2.0 * C * G.sum(axis=0)[:, None]
            dZs = dC[ys_idx] / counts[ys_idx, None]
            return loss, dZs, dZq
        logits = -_squared_distances(Zq, Zs)
        P, lse = _softmax(logits)
        # in logs: the probability of a row's own class underflows where its
        # shots are far in squared distance (features of a large scale), and
        # its gradient, P restricted to the class over that probability, is
        # the softmax over the class's shots alone. Every query row's class
        # has shots in the episode (see _rows_by_task_and_class)
        same = yq_idx[:, None] == ys_idx[None, :]
        Q, lse_same = _softmax(np.where(same, logits, -np.inf))
        loss = np.mean(lse - lse_same)
        M = (P - Q) / nq
        dZq = 2.0 * M @ Zs
        dZs = 2.0 * (M.T @ Zq) - 2.0 * Zs * M.sum(axis=0)[:, None]
        return loss, dZs, dZq

    def _draw_episode(self, rows_by_class, rng):
        support, query = [], []
        for rows in rows_by_class:
            rows = rng.permutation(rows)
            k = min(self.n_shots, len(rows) - 1)
            support.append(rows[:k])
            query.append(rows[k:])
        return np.concatenate(support), np.concatenate(query)

    def _loss_and_gradient(self, params, sizes, X, y, episodes):
        """Mean loss of ``episodes`` (``(support, query)`` row indices), gradient."""
        layers = self._unpack(params, sizes)
        rows = np.concatenate([np.r_[s, q] for s, q in episodes])
        outputs = self._forward(layers, X[rows])
        Z = outputs[-1]
        dZ = np.zeros_like(Z)
        total, start = 0.0, 0
        for s, q in episodes:
            ns, nq = len(s), len(q)
            loss, dZs, dZq = self._episode_loss(Z[start:start + ns], y[s],
                                                Z[start + ns:start + ns + nq], y[q])
            total += loss
            dZ[start:start + ns] = dZs
            dZ[start + ns:start + ns + nq] = dZq
            start += ns + nq
        B = len(episodes)
        penalty = 0.5 * self.alpha * sum(np.sum(W * W) for W, _ in layers)
        return total / B + penalty, self._backward(layers, outputs, dZ / B)

    # -------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, tasks=None):
        """Learn the embedding from episodes of the training tasks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples of all tasks.
        y : array-like of shape (n_samples,)
            Class labels (compared within each task only).
        tasks : array-like of shape (n_samples,), default=None
            Task label of each sample; ``None`` makes all samples one task.

        Returns
        -------
        self : object
            The fitted embedding.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if tasks is None:
            uniques, codes = None, np.zeros(X.shape[0], dtype=np.intp)
        else:
            uniques, codes = encode_tasks(check_task_labels(tasks, X.shape[0]))
        _, labels = np.unique(y, return_inverse=True)
        usable, tasks_rows = _rows_by_task_and_class(codes, labels)
        n_tasks = codes.max(initial=0) + 1
        if tasks_rows and len(usable) < n_tasks:
            unused = np.setdiff1d(np.arange(n_tasks), usable)
            named = unused if uniques is None else uniques[unused]
            warnings.warn(
                f"{len(unused)} of the {n_tasks} tasks have fewer than 2 "
                "classes of at least 2 samples each (shots and a query row "
                "per class) and give no episode; the embedding is learned "
                f"from the other {len(usable)} (unused: "
                f"{named[:10].tolist()}{'...' if len(unused) > 10 else ''}).",
                UserWarning, stacklevel=2)
        if not tasks_rows:
            raise ValueError(
                "MetaEmbedding learns from tasks with at least 2 classes of at "
                "least 2 samples each (shots and a query row per class); none "
                f"of the {n_tasks} task(s) has (the data hold "
                f"{X.shape[0]} sample(s) of {labels.max(initial=0) + 1} "
                "class(es))."
            )
        rng = check_random_state(self.random_state)
        sizes = self._sizes(X.shape[1])
        factor = 2.0 if self.activation == "logistic" else 6.0
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            params += [rng.uniform(-bound, bound, (fan_in, fan_out)).ravel(),
                       rng.uniform(-bound, bound, fan_out)]
        params = np.concatenate(params)
        optimizer = Adam(self.learning_rate, params.shape[0])
        self.loss_curve_ = np.empty(self.max_iter)
        B = min(self.meta_batch_size, len(tasks_rows))
        for it in range(self.max_iter):
            chosen = rng.choice(len(tasks_rows), B, replace=False)
            episodes = [self._draw_episode(tasks_rows[t], rng) for t in chosen]
            loss, grad = self._loss_and_gradient(params, sizes, X, labels, episodes)
            params = optimizer.step(params, grad)
            self.loss_curve_[it] = loss
            if self.verbose and (it + 1) % max(1, self.max_iter // 10) == 0:
                print(f"[MetaEmbedding] iteration {it + 1}: loss {loss:.4f}")
        layers = self._unpack(params, sizes)
        self.coefs_ = [W.copy() for W, _ in layers]
        self.intercepts_ = [b.copy() for _, b in layers]
        self.n_iter_ = self.max_iter
        return self

    def transform(self, X):
        """Embed ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            Their embedding.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._forward(list(zip(self.coefs_, self.intercepts_)), X)[-1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


def _softmax(logits):
    """Row-wise softmax of ``logits``, and their log-sum-exp."""
    top = logits.max(axis=1, keepdims=True)
    E = np.exp(logits - top)
    total = E.sum(axis=1, keepdims=True)
    return E / total, (np.log(total) + top)[:, 0]


def _squared_distances(A, B):
    return np.maximum((A * A).sum(axis=1)[:, None] - 2.0 * A @ B.T
                      + (B * B).sum(axis=1)[None, :], 0.0)


def _rows_by_task_and_class(codes, labels):
    """The usable tasks' codes, and per usable task the row indices of each
    of its classes with 2+ rows (usable: 2 such classes or more)."""
    order = np.lexsort((labels, codes))
    cell = codes[order] * (labels.max(initial=0) + 1) + labels[order]
    starts = np.r_[0, np.flatnonzero(np.diff(cell)) + 1]
    stops = np.r_[starts[1:], len(order)]
    by_task = {}
    for a, b in zip(starts, stops):
        if b - a >= 2:
            by_task.setdefault(codes[order[a]], []).append(order[a:b])
    usable = sorted(t for t, rows in by_task.items() if len(rows) >= 2)
    return usable, [by_task[t] for t in usable]
