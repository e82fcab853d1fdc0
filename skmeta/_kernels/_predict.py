"""Decision values of many task models in one pass over the rows."""

import numpy as np

from ._datafits import datafit_derivatives
from ._jit import borrowing_kernel, kernel
from ._rows import batch_task, predictor


@kernel
def decision_rows(design, row_model, params, problem):
    """``out[i, k] = x_i . coef_k + intercept_k`` of model ``row_model[i]``.

    ``design`` is a ``BatchArrays`` whose targets, weights and offsets are
    not used; ``params`` has one flat parameter vector per model (see
    ``_rows``). Rows need not be grouped by model.
    """
    n = row_model.shape[0]
    n_outputs = problem.n_outputs
    n_features = problem.n_features
    fit_intercept = problem.fit_intercept
    p1 = n_features + fit_intercept
    out = np.empty((n, n_outputs))
    for i in range(n):
        th = params[row_model[i]]
        for k in range(n_outputs):
            base = k * p1
            acc = 0.0
            if fit_intercept:
                acc = th[base + n_features]
            if design.is_sparse:
                for e in range(design.indptr[i], design.indptr[i + 1]):
                    acc += design.data[e] * th[base + design.indices[e]]
            else:
                for j in range(n_features):
                    acc += design.Xd[i, j] * th[base + j]
            out[i, k] = acc
    return out


@borrowing_kernel
def task_losses(batch, problem, theta, work, out):
    """``out[t]``: the weighted sum of task ``t``'s datafit at ``theta[t]``.

    ``work`` is ``(XT, Z, G, D)``, sized for the largest task.
    """
    XT, Z, G, D = work
    for t in range(batch.offsets.shape[0] - 1):
        rows = batch_task(batch, t, problem.n_features, problem.fit_intercept, XT)
        predictor(rows, 0, rows.n, theta[t], problem.n_outputs,
                  problem.n_features, problem.fit_intercept, Z)
        out[t] = datafit_derivatives(problem.code, rows.y, rows.sw, 0, rows.n, Z,
                                     problem.n_outputs, G, D, True)
