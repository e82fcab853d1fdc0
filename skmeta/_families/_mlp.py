"""MLPRegressor and MLPClassifier: networks as base estimators.

scikit-learn's multi-layer perceptrons minimize, over a task's rows,

    (sum_i w_i loss_i + alpha/2 ||W||^2) / sum_i w_i,

``W`` all the weights (not the biases), with the loss of the output layer:
half squared error (identity output) or half Poisson deviance (exponential
output) for ``MLPRegressor``, log-loss of a logistic output (two classes) or
a softmax (more) for ``MLPClassifier``. Divided by ``1 / sum_i w_i``, that
is a summed datafit with ``lambda = alpha``: the transfer term's ``gamma``
compares with ``alpha``. The parameters are the layers' weights and biases,
flat, layer after layer (see :mod:`skmeta._kernels._network`).
"""

import numbers
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state

from .._kernels._codes import LOGISTIC, MULTINOMIAL, POISSON, SQUARED
from .._kernels._layers import IDENTITY, RELU, SIGMOID, TANH
from .._kernels._network import NetworkProblem
from ._base import penalty_strength

_ACTIVATIONS = {"identity": IDENTITY, "logistic": SIGMOID, "tanh": TANH,
                "relu": RELU}
# the settings of scikit-learn's own training loop: skmeta trains the
# network by its meta-learning method, so they do not apply
_TRAINING_SETTINGS = (
    "solver", "batch_size", "learning_rate", "learning_rate_init", "power_t",
    "max_iter", "shuffle", "tol", "warm_start", "momentum",
    "nesterovs_momentum", "early_stopping", "validation_fraction", "beta_1",
    "beta_2", "epsilon", "n_iter_no_change", "max_fun")


def whole_layer_sizes(given, owner):
    """``hidden_layer_sizes`` as a tuple of ints; a fractional size raises
    (as scikit-learn's own fit does; ``int()`` would truncate it)."""
    sizes = (given,) if np.ndim(given) == 0 else tuple(np.ravel(
        np.asarray(given, dtype=object)))
    if not all(isinstance(h, numbers.Real) and not isinstance(h, bool)
               and float(h).is_integer() for h in sizes):
        raise TypeError(
            f"{owner}(hidden_layer_sizes={given!r}) needs whole numbers of "
            "units.")
    return tuple(int(h) for h in sizes)


class MLPFamily:
    """Adapter for ``MLPRegressor`` and ``MLPClassifier``.

    Any ``hidden_layer_sizes`` (at least one hidden layer), any
    ``activation``, ``alpha`` as the penalty, ``loss="squared_error"`` or
    ``"poisson"`` for the regressor; binary and multiclass targets.
    """

    supported = (MLPRegressor, MLPClassifier)
    is_network = True
    # biases are parameters of every layer: there is no model without them
    fit_intercept = True

    def __init__(self, estimator):
        self.estimator = estimator
        params = estimator.get_params(deep=False)
        hidden = whole_layer_sizes(params["hidden_layer_sizes"],
                                   type(estimator).__name__)
        if len(hidden) == 0 or min(hidden) < 1:
            raise ValueError(
                f"{type(estimator).__name__}(hidden_layer_sizes={hidden!r}) needs "
                "at least one hidden layer of at least one unit; for a model "
                "without hidden layers use a linear base estimator."
            )
        self.hidden = hidden
        self.activation = params["activation"]
        self.alpha = penalty_strength(estimator, "alpha", params["alpha"])
        self.loss = params.get("loss", "squared_error")
        self.random_state = params["random_state"]

    @classmethod
    def handles(cls, estimator):
        return type(estimator) in cls.supported

    @property
    def classifier(self):
        return isinstance(self.estimator, MLPClassifier)

    def warn_ignored_settings(self):
        """Warn about training settings of the estimator that do not apply."""
        defaults = type(self.estimator)().get_params(deep=False)
        params = self.estimator.get_params(deep=False)
        changed = [f"{name}={params[name]!r}" for name in _TRAINING_SETTINGS
                   if not _same(params[name], defaults[name])]
        if changed:
            warnings.warn(
                f"{type(self.estimator).__name__}({', '.join(changed)}): these "
                "settings of scikit-learn's own training loop do not apply and "
                "are ignored. skmeta trains the network by the meta-estimator's "
                "method (its inner_steps, inner_lr, meta_lr, meta_batch_size "
                "and max_iter).", UserWarning, stacklevel=4)

    # --- the objective, as the kernels see it -------------------------------
    def n_outputs(self, n_classes):
        if n_classes is None or n_classes == 2:
            return 1
        return int(n_classes)

    def datafit_code(self, n_classes):
        if self.classifier:
            return LOGISTIC if n_classes == 2 else MULTINOMIAL
        return POISSON if self.loss == "poisson" else SQUARED

    def problem(self, n_features, n_classes=None):
        return NetworkProblem(
            code=self.datafit_code(n_classes),
            activation=_ACTIVATIONS[self.activation],
            n_outputs=self.n_outputs(n_classes), n_features=int(n_features),
            hidden=self.hidden, mean_loss=False, lam2=self.alpha)

    def n_features_of(self, n_params, n_classes):
        """Number of input features of a network with ``n_params`` parameters."""
        first = self.hidden[0]
        rest = self.problem(0, n_classes).n_params - first
        return (n_params - rest - first) // first

    def initial_params(self, n_features, n_classes, random_state):
        """Glorot-uniform weights and biases, drawn as scikit-learn draws them.

        From the estimator's ``random_state`` when it is set (the same
        numbers as its own ``fit`` would start from), else from
        ``random_state``.
        """
        seed = self.random_state if self.random_state is not None else random_state
        rng = check_random_state(seed)
        problem = self.problem(n_features, n_classes)
        sizes = problem.sizes
        factor = 2.0 if self.activation == "logistic" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            intercepts.append(rng.uniform(-bound, bound, fan_out))
        return problem.join(coefs, intercepts)

    # --- targets ------------------------------------------------------------
    def check_targets(self, y):
        if not self.classifier and self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "MLPRegressor(loss='poisson') needs non-negative targets; y has "
                f"{int(np.sum(y < 0))} negative value(s)."
            )

    def row_weights(self, y_encoded, sample_weight, task_codes, n_tasks, classes):
        return sample_weight

    # --- parameters <-> fitted attributes ------------------------------------
    def split_params(self, theta, n_features):
        raise AttributeError(
            "A network has no single coef_ and intercept_: read each task's "
            "coefs_ and intercepts_ from task_estimator(task), or the flat "
            "parameters from task_params_."
        )

    def params_from(self, fitted, n_features, classes=None):
        """Flat parameter vector of a fitted network of this architecture.

        The prior network must be of the base estimator's type, activation
        and (for a regressor) loss, with finite weights: its parameters are
        the prior mean of networks that compute, and are fitted by, those.
        """
        own = self.estimator.get_params(deep=False)
        theirs = fitted.get_params(deep=False) if type(fitted) is type(
            self.estimator) else None
        if theirs is None or any(theirs.get(k) != own.get(k)
                                 for k in ("activation", "loss")):
            wanted = f"activation={self.activation!r}" + (
                "" if self.classifier else f", loss={self.loss!r}")
            got = type(fitted).__name__ + (
                "" if theirs is None else f"(activation={theirs['activation']!r}"
                + ("" if self.classifier else f", loss={theirs.get('loss')!r}")
                + ")")
            raise TypeError(
                f"prior_estimator must be a fitted "
                f"{type(self.estimator).__name__} with {wanted}, as the base "
                f"estimator (the same loss and link); got {got}.")
        problem = self.problem(n_features, None if classes is None else len(classes))
        shapes = [c.shape for c in getattr(fitted, "coefs_", [])]
        expected = [(int(a), int(b))
                    for a, b in zip(problem.sizes[:-1], problem.sizes[1:])]
        if shapes != expected:
            raise ValueError(
                f"prior_estimator has layers of shapes {shapes}, but the base "
                f"estimator on these data has {expected}."
            )
        theta0 = problem.join(fitted.coefs_, fitted.intercepts_)
        if not np.all(np.isfinite(theta0)):
            raise ValueError(
                "prior_estimator has NaN or infinite weights; it cannot "
                "serve as the prior mean.")
        return theta0

    def build(self, theta, *, n_features, classes=None, n_iter=1,
              feature_names=None):
        """A fitted clone of the base estimator with parameters ``theta``."""
        est = clone(self.estimator)
        n_classes = None if classes is None else len(classes)
        problem = self.problem(n_features, n_classes)
        est.coefs_, est.intercepts_ = problem.split(np.asarray(theta))
        est.n_features_in_ = n_features
        if feature_names is not None:
            est.feature_names_in_ = np.asarray(feature_names, dtype=object)
        est.n_layers_ = problem.n_layers + 1
        est.n_outputs_ = problem.n_outputs
        est.n_iter_ = int(n_iter)
        # the state scikit-learn's own stochastic solvers keep, as its
        # _initialize leaves it: the network can go on with partial_fit
        est.t_ = 0
        est.loss_curve_ = []
        if est.early_stopping:
            est.validation_scores_ = []
            est.best_validation_score_ = -np.inf
            est.best_loss_ = None
        else:
            est.best_loss_ = np.inf
            est.validation_scores_ = None
            est.best_validation_score_ = None
        est._no_improvement_count = 0
        est._best_coefs = [c.copy() for c in est.coefs_]
        est._best_intercepts = [b.copy() for b in est.intercepts_]
        est._random_state = check_random_state(est.random_state)
        if self.classifier:
            est.out_activation_ = "logistic" if n_classes == 2 else "softmax"
            est.classes_ = np.asarray(classes)
            est._label_binarizer = LabelBinarizer().fit(est.classes_)
        else:
            est.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        return est

    def score(self, y, y_pred, sample_weight=None):
        """The base estimator's own ``score`` of predictions: R^2 (for every
        loss, as ``MLPRegressor.score``)."""
        return r2_score(y, y_pred, sample_weight=sample_weight)

    # --- predictions from decision values -----------------------------------
    def predict_from_decision(self, Z):
        """Regression output from the output layer's pre-activations."""
        return np.exp(Z[:, 0]) if self.loss == "poisson" else Z[:, 0]


def _same(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a is b or a == b
