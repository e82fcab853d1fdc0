"""Shared test helpers: references and generators used by several test files."""

from skmeta._kernels._unroll import FIRST_ORDER, SECOND_ORDER
from skmeta._methods._bilevel import ImplicitMetaGradient, UnrolledMetaGradient


def meta_gradient(batch, problem, method, task_sel, seeds, n_query, theta0,
                  precision, alpha, auto_step, n_steps, first_order, warm=None):
    """One meta-gradient of ``method`` ("imaml", "maml" or "metasgd").

    Returns ``(loss, grad_theta0, grad_alpha, adapted)``.
    """
    n_sel = len(task_sel)
    if method == "imaml":
        run = ImplicitMetaGradient(batch, problem, precision, n_sel=n_sel)
    else:
        run = UnrolledMetaGradient(
            batch, problem, precision, n_sel=n_sel, n_steps=n_steps,
            auto_step=auto_step, mode=FIRST_ORDER if first_order else SECOND_ORDER)
    return run(task_sel, seeds, n_query, theta0, alpha, warm)
