"""Family adapters: one per family of supported base estimators."""

from ._base import check_constraints
from ._logistic import LogisticFamily
from ._poisson import PoissonFamily
from ._squared import LassoFamily, RidgeFamily

CLASSIFIER_FAMILIES = (LogisticFamily,)
REGRESSOR_FAMILIES = (RidgeFamily, LassoFamily, PoissonFamily)


def _names(families):
    return ", ".join(cls.__name__ for fam in families for cls in fam.supported)


def family_for(estimator, *, classifier, owner, check=False):
    """The adapter for ``estimator``, or a TypeError listing what is supported.

    ``owner`` names the meta-estimator in the message. With ``check`` (once
    per fit), the estimator's parameters are first validated as its own fit
    would validate them; the adapter itself always refuses settings its
    solvers cannot use.
    """
    families = CLASSIFIER_FAMILIES if classifier else REGRESSOR_FAMILIES
    for family in families:
        if family.handles(estimator):
            if check:
                check_constraints(estimator, "estimator")
            return family(estimator)
    raise TypeError(
        f"{owner} does not support {type(estimator).__name__} as base "
        f"estimator. Supported: {_names(families)}."
    )


__all__ = ["family_for", "CLASSIFIER_FAMILIES", "REGRESSOR_FAMILIES"]
