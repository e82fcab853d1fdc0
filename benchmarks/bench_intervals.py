"""Coverage of the 90 % predictive intervals of new few-shot tasks.

``MetaRegressor(Ridge(alpha))`` learns a prior on 200 tasks of
``make_meta_regression`` (5 features, all informative, noise 5,
``task_spread=0.5``; 25 training rows per task), then ``partial_fit``
takes ``k`` rows of each of 100 new tasks and ``predict(...,
return_std=True)`` gives 90 % intervals (``mean +- 1.6449 std``) for 20
more rows of each; the share of those rows inside is the coverage (issue
11 asks 86-94 %). Beside it: the coverage on 20 held-out rows of the
training tasks, the learned noise variance (the generator's is 25) and the
prior's standard deviation of the first coefficient against the spread of
the training tasks' fitted first coefficients.

The base estimator's l2 penalty counts as part of the learned prior; where
the tasks' coefficients spread more than the penalty's own prior allows
(variance ``noise / alpha``), the transfer term is negative along them
(the isotropic one cannot be, beside an unpenalized intercept, and widens
through the noise variance instead). Run::

    python benchmarks/bench_intervals.py [--alphas 1 0.01] [--seed 0]
"""

import argparse
import warnings

import numpy as np
from sklearn.linear_model import Ridge

from skmeta import MetaRegressor
from skmeta.datasets import make_meta_regression

Z90 = 1.6449
SHOTS = (1, 3, 5, 20)


def coverage(y, mean, std):
    return float(np.mean(np.abs(y - mean) <= Z90 * std))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alphas", type=float, nargs="+", default=[1.0, 0.01])
    parser.add_argument("--priors", nargs="+",
                        default=["auto", "isotropic", "diagonal"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    X, y, tasks = make_meta_regression(
        n_tasks=300, n_samples_per_task=45, n_features=5, n_informative=5,
        noise=5.0, task_spread=0.5, random_state=args.seed)
    position = np.arange(len(y)) % 45
    train = (tasks < 200) & (position < 25)
    seen_query = (tasks < 200) & (position >= 25)
    new_query = (tasks >= 200) & (position >= 25)
    print("| alpha | prior | chosen | noise variance | prior sd, coef 0 | "
          "tasks' sd, coef 0 | seen tasks | "
          + " | ".join(f"new, {k} rows" for k in SHOTS) + " |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | "
          + " | ".join("---:" for _ in SHOTS) + " |")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for alpha in args.alphas:
            for prior in args.priors:
                def fitted():
                    return MetaRegressor(Ridge(alpha=alpha), prior=prior).fit(
                        X[train], y[train], tasks=tasks[train])

                meta = fitted()
                mean, std = meta.predict(X[seen_query], tasks=tasks[seen_query],
                                         return_std=True)
                cells = [coverage(y[seen_query], mean, std)]
                for k in SHOTS:
                    adapted = fitted()
                    support = (tasks >= 200) & (position < k)
                    adapted.partial_fit(X[support], y[support],
                                        tasks=tasks[support])
                    mean, std = adapted.predict(
                        X[new_query], tasks=tasks[new_query], return_std=True)
                    cells.append(coverage(y[new_query], mean, std))
                prior_sd = float(np.sqrt(meta.prior_covariance_[0, 0]))
                spread = float(meta.task_params_[:, 0].std())
                print(f"| {alpha:g} | {prior} | {meta.prior_kind_} | "
                      f"{meta.noise_variance_:.1f} | {prior_sd:.1f} | "
                      f"{spread:.1f} | "
                      + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
