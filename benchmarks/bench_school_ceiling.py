"""How far a Gaussian prior over Ridge's coefficients goes on School.

Issue 11 asks the defaults to beat a random-intercept ``MixedLM`` by a point
of explained variance on School (the protocol of ``examples/plot_school.py``
and ``bench_peers.py``: per school a random 75/25 split, 10 splits, 22
standardized features, ``within_task_explained_variance``). This script
measures, on those splits, what the family of models the defaults choose
from reaches at best -- linear models per school under a learned Gaussian
prior -- so that the defaults' figure is read against that ceiling and not
only against the peers:

* ``MetaRegressor(Ridge())`` at its defaults, and with each structure of the
  prior given explicitly (``isotropic``, ``diagonal``, ``full``,
  ``lowrank``; and a Student-t prior with 4 degrees of freedom);
* the per-split best of those structures (an oracle selection: what a
  perfect choice of the structure would score);
* the defaults' prior with its strength scaled by ``c`` (the precision times
  ``c``, everything else as learned): the tasks' posterior means in closed
  form, checked against the fitted models at ``c = 1``. Whether the
  evidence's strength is where held-out rows would put it;
* the defaults' prior with a noise variance per school instead of one for
  all (the residual variance of each school's fit, shrunk toward the shared
  one with ``nu`` pseudo-rows): whether schools of unequal noise should be
  shrunk unequally;
* statsmodels ``MixedLM`` with a random intercept (REML), as in
  ``bench_peers.py``, when statsmodels is installed.

Run: ``python benchmarks/bench_school_ceiling.py [--school PATH]
[--splits 10]`` (the School file of ``bench_peers.py``; skipped with a
message where it is absent).
"""

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
from bench_peers import DEFAULT_SCHOOL, school_splits
from sklearn.linear_model import Ridge

from skmeta import MetaRegressor
from skmeta.metrics import within_task_explained_variance

STRUCTURES = {
    "isotropic": dict(prior="isotropic"),
    "diagonal": dict(prior="diagonal"),
    "full": dict(prior="full"),
    "lowrank": dict(prior="lowrank"),
    "student-t (4 df), diagonal": dict(prior="diagonal", prior_df=4.0),
}
STRENGTH_SCALES = (0.5, 0.7, 1.0, 1.4, 2.0)
NOISE_PSEUDO_ROWS = (0.0, 20.0)


def design(X):
    """The rows with the intercept's column last, as skmeta orders the
    parameters."""
    return np.c_[X, np.ones(len(X))]


def posterior_means(meta, X, y, tasks, scale=1.0, noise=None):
    """Each task's posterior mean under ``meta``'s prior, its precision
    times ``scale``, with the noise variance ``noise[t]`` (default: the
    learned one for every task)."""
    precision = scale * np.linalg.pinv(meta.prior_covariance_)
    shift = precision @ meta.meta_params_
    labels = np.unique(tasks)
    if noise is None:
        noise = np.full(len(labels), meta.noise_variance_)
    means = {}
    for label, variance in zip(labels, noise):
        rows = tasks == label
        A = design(X[rows])
        means[label] = np.linalg.solve(A.T @ A / variance + precision,
                                       A.T @ y[rows] / variance + shift)
    return means


def predict(means, X, tasks):
    A = design(X)
    return np.array([A[i] @ means[t] for i, t in enumerate(tasks)])


def residual_variances(means, X, y, tasks):
    """Each task's residual sum of squares and row count at ``means``."""
    labels = np.unique(tasks)
    rss = np.array([np.sum((y[tasks == t] - predict(means, X[tasks == t],
                                                    tasks[tasks == t])) ** 2)
                    for t in labels])
    return rss, np.array([np.sum(tasks == t) for t in labels])


def mixedlm_score(split):
    from statsmodels.regression.mixed_linear_model import MixedLM

    train, test = split.train, split.test
    result = MixedLM(split.y[train], design(split.X[train]),
                     groups=split.tasks[train],
                     exog_re=np.ones((len(train), 1))).fit(reml=True)
    fixed = np.asarray(result.fe_params)
    intercepts = {g: float(np.asarray(v)[0])
                  for g, v in result.random_effects.items()}
    pred = design(split.X[test]) @ fixed + np.array(
        [intercepts.get(t, 0.0) for t in split.tasks[test]])
    return within_task_explained_variance(split.y[test], pred,
                                          split.tasks[test])


def run(path, n_splits):
    scores = {}

    def record(name, value):
        scores.setdefault(name, []).append(100 * value)

    for index, split in enumerate(school_splits(path, n_splits)):
        start = time.perf_counter()
        X, y, tasks = split.X, split.y, split.tasks
        train, test = split.train, split.test

        def score(pred):
            return within_task_explained_variance(y[test], pred, tasks[test])

        meta = MetaRegressor(Ridge()).fit(X[train], y[train], tasks=tasks[train])
        fitted = meta.predict(X[test], tasks=tasks[test])
        record("defaults", score(fitted))
        explicit = {}
        for name, params in STRUCTURES.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = MetaRegressor(Ridge(), **params).fit(
                    X[train], y[train], tasks=tasks[train])
            explicit[name] = score(model.predict(X[test], tasks=tasks[test]))
            record(f"prior={name}", explicit[name])
        record("best structure of each split (oracle)", max(explicit.values()))

        for c in STRENGTH_SCALES:
            means = posterior_means(meta, X[train], y[train], tasks[train], c)
            pred = predict(means, X[test], tasks[test])
            if c == 1.0 and not np.allclose(pred, fitted, rtol=1e-8, atol=1e-8):
                raise AssertionError(
                    "the closed-form posterior means are not the fitted "
                    f"models' (largest difference {np.abs(pred - fitted).max()})")
            record(f"defaults' prior, strength x {c:g}", score(pred))

        means = posterior_means(meta, X[train], y[train], tasks[train])
        rss, rows = residual_variances(means, X[train], y[train], tasks[train])
        for nu in NOISE_PSEUDO_ROWS:
            noise = (nu * meta.noise_variance_ + rss) / (nu + rows)
            pred = predict(posterior_means(meta, X[train], y[train],
                                           tasks[train], noise=noise),
                           X[test], tasks[test])
            record(f"defaults' prior, noise per school (nu={nu:g})",
                   score(pred))
        try:
            record("statsmodels MixedLM, random intercept", mixedlm_score(split))
        except ImportError:
            pass
        print(f"split {index}: {time.perf_counter() - start:.1f} s, defaults "
              f"chose {meta.prior_kind_}", flush=True)

    print("\n| model | explained variance, School |\n| --- | ---: |")
    for name, values in scores.items():
        print(f"| {name} | {np.mean(values):.3f} ± {np.std(values):.3f} % |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--school", default=os.environ.get(
        "SKMETA_SCHOOL_DATA", str(DEFAULT_SCHOOL)), help="path of school.npz")
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    if not Path(args.school).is_file():
        print(f"School data not found at {args.school}: nothing to measure "
              "(pass --school or set SKMETA_SCHOOL_DATA).")
        return
    run(args.school, args.splits)


if __name__ == "__main__":
    main()
