"""Decision values of many task models in one pass over the rows."""

import numpy as np

from ._jit import kernel


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
