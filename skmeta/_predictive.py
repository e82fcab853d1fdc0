"""Predictions averaged over the tasks' Laplace posteriors.

Under a Gaussian posterior ``N(theta_t, Sigma_t)`` of a task's parameters,
the linear predictors of a row ``x~`` (its features and a 1 for the
intercept) are Gaussian: one logit of variance ``x~' Sigma_t x~``, or the
``K`` logits of a multinomial model with a ``K x K`` covariance.

Class probabilities averaged over that distribution have no closed form.
The probit approximation (MacKay, 1992, "The evidence framework applied to
classification networks") replaces the logistic sigmoid by the probit
function of the same slope at 0: ``E[sigmoid(z)] ~ sigmoid(mu / sqrt(1 + pi
v / 8))`` for ``z ~ N(mu, v)``, within 0.018 of the integral. For ``K``
classes, ``p_k = 1 / (1 + sum_{j != k} exp(-(z_k - z_j)))`` is a sigmoid
of each difference of logits, and the same approximation applies to each
difference with its own variance (the "mean-field" approximation of Lu, Ie
& Sha, 2020, "Mean-field approximation to Gaussian-softmax integral"); the
``K`` results are then normalized to sum to one. With two classes this is
the probit approximation itself. Only differences of logits enter: the
direction that adds the same amount to every logit, along which the
softmax does not change (and the multinomial's parameters are identified
only by the prior), does not either.
"""

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_expit, logsumexp

# rows per chunk: at most this many bytes of gathered covariances at once
_CHUNK_BYTES = 32 * 2**20
# above this many parameters, one product per model instead of a gathered
# covariance per row (measured: 257 parameters, 20 tasks, 20,000 rows took
# 4.0 s gathered, 0.1 s by model)
_GATHER_MAX_PARAMS = 64


def logit_covariances(X, rows, covariances, fit_intercept, n_outputs):
    """Covariance of each row's linear predictors under its model.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
    rows : ndarray of shape (n_samples,)
        Index of each row's model in ``covariances``.
    covariances : ndarray of shape (n_models, n_params, n_params)
        Posterior covariances, parameters laid out as ``task_params_`` (for
        each output, the coefficients then the intercept).
    fit_intercept : bool
    n_outputs : int

    Returns
    -------
    covariances : ndarray of shape (n_samples, n_outputs, n_outputs)
        ``x~' Sigma_kl x~`` for outputs ``k`` and ``l``. Where the
        covariance is infinite (an unseen task under no transfer), infinite.
    """
    d = covariances.shape[1]
    K = n_outputs
    p1 = d // K
    out = np.empty((X.shape[0], K, K))
    if d > _GATHER_MAX_PARAMS:
        # one product per model: gathering a d x d matrix for every row
        # would move d^2 numbers per row
        order = np.argsort(rows, kind="stable")
        models, starts = np.unique(rows[order], return_index=True)
        for model, at, stop in zip(models, starts,
                                   np.r_[starts[1:], len(order)]):
            index = order[at:stop]
            block = _design(X[index], fit_intercept)
            C = covariances[model].reshape(K, p1, K, p1)
            with np.errstate(invalid="ignore"):
                out[index] = np.einsum("ia,kalb,ib->ikl", block, C, block,
                                       optimize=True)
    else:
        chunk = int(max(1, min(4096, _CHUNK_BYTES // (8 * d * d))))
        for start in range(0, X.shape[0], chunk):
            block = _design(X[start:start + chunk], fit_intercept)
            C = covariances[rows[start:start + chunk]].reshape(-1, K, p1, K, p1)
            with np.errstate(invalid="ignore"):
                out[start:start + chunk] = np.einsum(
                    "ia,ikalb,ib->ikl", block, C, block, optimize=True)
    # 0 * inf in an unseen task's infinite prior covariance
    out[np.isnan(out)] = np.inf
    return out


def _design(X, fit_intercept):
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return np.column_stack([X, np.ones(X.shape[0])]) if fit_intercept else X


def _probit_scaled(z, variance):
    return z / np.sqrt(1.0 + (np.pi / 8.0) * np.maximum(variance, 0.0))


def posterior_decision(Z, S):
    """Decision values of the averaged probabilities: for one output, its
    logit scaled by the probit approximation (the log-odds of
    :func:`posterior_proba`), ``(n_samples, 1)``; for several, the
    log-probabilities of :func:`posterior_log_proba`."""
    if Z.shape[1] == 1:
        return _probit_scaled(Z, S[:, :, 0])
    return posterior_log_proba(Z, S)


def posterior_log_proba(Z, S):
    """Log class probabilities averaged over logits ``N(Z, S)``.

    ``Z`` of shape ``(n_samples, n_outputs)``, ``S`` of shape ``(n_samples,
    n_outputs, n_outputs)``; one output is the logit of the second of two
    classes. See the module docstring for the approximation.
    """
    if Z.shape[1] == 1:
        z = posterior_decision(Z, S)[:, 0]
        return np.column_stack([log_expit(-z), log_expit(z)])
    variance = np.einsum("ikk->ik", S)
    with np.errstate(invalid="ignore"):
        spread = variance[:, :, None] + variance[:, None, :] - 2.0 * S
    spread[np.isnan(spread)] = np.inf  # inf - inf: no information either
    # t[i, k, j]: minus the scaled difference z_k - z_j; 0 for j = k, whose
    # term is the 1 of 1 + sum_{j != k} exp(t_kj)
    t = _probit_scaled(Z[:, None, :] - Z[:, :, None], spread)
    log_q = -logsumexp(t, axis=2)
    return log_q - logsumexp(log_q, axis=1, keepdims=True)


def posterior_proba(Z, S):
    """Class probabilities averaged over logits ``N(Z, S)``; see
    :func:`posterior_log_proba`."""
    if Z.shape[1] == 1:
        p = expit(posterior_decision(Z, S)[:, 0])
        return np.column_stack([1.0 - p, p])
    return np.exp(posterior_log_proba(Z, S))
