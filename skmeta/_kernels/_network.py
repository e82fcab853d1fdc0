"""How the kernels see a network: its layers, datafit and penalty.

A :class:`NetworkProblem` is what the family adapter of a multi-layer
perceptron read off the base estimator; its ``arrays`` are the named tuple
the network kernels take. The parameters are one flat vector, layer after
layer, each layer's weights (row-major, ``fan_in x fan_out``) then its
biases (see :mod:`._layers`); the output layer comes last, so that the
parameters an ANIL inner loop adapts are the tail ``theta[head:]``.
"""

from collections import namedtuple
from dataclasses import dataclass

import numpy as np

NetworkArrays = namedtuple(
    "NetworkArrays",
    "code activation n_outputs n_features mean_loss lam2 l2w sizes offsets head "
    "width")
NetworkArrays.__doc__ = """A network's inner objective without its prior.

``code`` selects the output layer's datafit (:mod:`._codes`, on the output
layer's pre-activations), ``activation`` the hidden layers' (:mod:`._layers`).
``sizes[l]`` is the number of units of layer ``l`` (inputs first, outputs
last); layer ``l``'s parameters start at ``offsets[l]`` (``offsets[-1]`` is
their number); ``head = offsets[-2]`` is the first parameter of the output
layer; ``width`` the largest layer after the inputs. The penalty is
``lam2 / 2 sum l2w theta**2`` (``l2w``: 1 on weights, 0 on biases).
"""


@dataclass(frozen=True)
class NetworkProblem:
    """A multi-layer perceptron's inner objective (no scikit-learn objects).

    Attributes
    ----------
    code : int
        Datafit code of the output layer (:mod:`skmeta._kernels._codes`).
    activation : int
        Activation code of the hidden layers (:mod:`skmeta._kernels._layers`).
    n_outputs : int
        Output units (1, or the number of classes).
    n_features : int
    hidden : tuple of int
        Units of each hidden layer.
    mean_loss : bool
        Whether the loss is divided by the task's total sample weight.
    lam2 : float
        Strength of the l2 penalty on the weights (not on the biases).
    """

    code: int
    activation: int
    n_outputs: int
    n_features: int
    hidden: tuple
    mean_loss: bool
    lam2: float

    is_network = True
    # the first layer's biases are parameters of their own: the rows are
    # loaded without a column of ones (see _rows)
    fit_intercept = False

    @property
    def sizes(self):
        return np.array([self.n_features, *self.hidden, self.n_outputs],
                        dtype=np.intp)

    @property
    def offsets(self):
        sizes = self.sizes
        per_layer = sizes[:-1] * sizes[1:] + sizes[1:]
        return np.concatenate([[0], np.cumsum(per_layer)]).astype(np.intp)

    @property
    def n_layers(self):
        """Layers of weights (hidden layers plus the output layer)."""
        return len(self.hidden) + 1

    @property
    def n_params(self):
        return int(self.offsets[-1])

    @property
    def head(self):
        """Index of the output layer's first parameter."""
        return int(self.offsets[-2])

    @property
    def width(self):
        return int(self.sizes[1:].max())

    @property
    def l2w(self):
        sizes, offsets = self.sizes, self.offsets
        weights = np.zeros(self.n_params)
        for layer in range(self.n_layers):
            start = offsets[layer]
            weights[start:start + sizes[layer] * sizes[layer + 1]] = 1.0
        return weights

    @property
    def arrays(self):
        """The problem as the kernels take it."""
        return NetworkArrays(
            int(self.code), int(self.activation), int(self.n_outputs),
            int(self.n_features), bool(self.mean_loss), float(self.lam2),
            self.l2w, self.sizes, self.offsets, self.head, self.width)

    def split(self, theta):
        """``(coefs, intercepts)``: the layers of a flat parameter vector, as
        scikit-learn's ``coefs_`` and ``intercepts_`` (copies)."""
        sizes, offsets = self.sizes, self.offsets
        coefs, intercepts = [], []
        for layer in range(self.n_layers):
            fan_in, fan_out = sizes[layer], sizes[layer + 1]
            w0 = offsets[layer]
            coefs.append(theta[w0:w0 + fan_in * fan_out].reshape(fan_in, fan_out)
                         .copy())
            intercepts.append(theta[w0 + fan_in * fan_out:offsets[layer + 1]].copy())
        return coefs, intercepts

    def join(self, coefs, intercepts):
        """The flat parameter vector of layers ``coefs`` and ``intercepts``."""
        return np.concatenate([np.r_[np.ravel(c), np.ravel(b)]
                               for c, b in zip(coefs, intercepts)]).astype(
                                   np.float64)
