"""Decision values of many task models in one pass over the rows."""

import numpy as np
from ._jit import kernel


@kernel
def decision_rows(Xd, data, indices, indptr, is_sparse, row_model, params,
                  n_outputs, n_features, fit_intercept):
    """``out[i, k] = x_i . coef + intercept`` of model ``row_model[i]``.

    ``params`` has one flat parameter vector per model (see ``_rows``); rows
    need not be grouped by model.
    """
    n = row_model.shape[0]
    p1 = n_features + fit_intercept
    out = np.empty((n, n_outputs))
    for i in range(n):
        th = params[row_model[i]]
        for k in range(n_outputs):
            base = k * p1
            acc = 0.0
            if fit_intercept:
                acc = th[base + n_features]
            if is_sparse:
                for e in range(indptr[i], indptr[i + 1]):
                    acc += data[e] * th[base + indices[e]]
            else:
                for j in range(n_features):
                    acc += Xd[i, j] * th[base + j]
            out[i, k] = acc
    return out
