"""The outer loops: how each ``method=`` learns the meta-knowledge.

One class per method (:class:`~._base.MetaMethod`), found by name in
``METHODS``: ``"proximal"`` (:mod:`._proximal`: exact task solves and an
empirical-Bayes prior), ``"imaml"``, ``"maml"``, ``"metasgd"`` and
``"reptile"`` (:mod:`._bilevel`: stochastic meta-gradients over
meta-batches). All return a :class:`~._base.MetaFit`.
"""

from ._base import MetaFit, MetaMethod, MetaSettings
from ._bilevel import IMAML, MAML, MetaSGD, Reptile
from ._proximal import Proximal

METHODS = {method.name: method for method in (Proximal, IMAML, MAML, MetaSGD,
                                              Reptile)}

__all__ = ["METHODS", "MetaFit", "MetaMethod", "MetaSettings"]
