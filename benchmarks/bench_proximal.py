"""Fitting many logistic tasks: MetaClassifier against a loop of scikit-learn fits.

10,000 binary tasks x 40 samples x 20 features (the classic example's
generator: 2 informative, 10 redundant features). In one run, on the same
tasks:

* the loop a user writes today: one ``LogisticRegression().fit`` per task;
* ``MetaClassifier(method="proximal")``: learns the prior and fits every task
  (``n_jobs`` shards on threads);
* ``MetaClassifier(gamma=0)``: the same objective as the loop (independent
  tasks), to check that both compute the same models.

Compile time (numba) is measured separately, on a tiny problem in a fresh
process, with and without the on-disk cache.

Run: ``python benchmarks/bench_proximal.py [--n-tasks 10000] [--n-jobs 2]``
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification

_FIRST_FIT = """
import time
t0 = time.perf_counter()
import numpy as np
from skmeta import MetaClassifier
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.normal(size=(60, 20)); y = (X[:, 0] > 0).astype(int)
tasks = np.repeat(np.arange(3), 20)
MetaClassifier().fit(X, y, tasks=tasks)
t2 = time.perf_counter()
MetaClassifier().fit(X, y, tasks=tasks)
t3 = time.perf_counter()
print(t1 - t0, (t2 - t1) - (t3 - t2))
"""


def first_fit_overhead(cold):
    """Import time, and first-fit time minus a second fit, in a new process."""
    env = dict(os.environ)
    if cold:
        env["NUMBA_CACHE_DIR"] = os.path.join(
            os.path.dirname(__file__), ".cold-numba-cache-%d" % os.getpid())
    out = subprocess.run([sys.executable, "-c", _FIRST_FIT], env=env,
                         capture_output=True, text=True, check=True).stdout
    if cold:
        import shutil

        shutil.rmtree(env["NUMBA_CACHE_DIR"], ignore_errors=True)
    return [float(v) for v in out.split()]


def best_of(n, func):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-tasks", type=int, default=10_000)
    parser.add_argument("--n-samples", type=int, default=40)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    X, y, tasks = make_meta_classification(
        n_tasks=args.n_tasks, n_samples_per_task=args.n_samples, n_features=20,
        n_informative=2, n_redundant=10, random_state=42)
    print(f"{args.n_tasks} tasks x {args.n_samples} samples x 20 features, "
          f"{os.cpu_count()} CPUs, n_jobs={args.n_jobs}")

    cold_import, cold_compile = first_fit_overhead(cold=True)
    warm_import, warm_compile = first_fit_overhead(cold=False)
    print(f"import skmeta: {warm_import:.2f} s; first-fit overhead: "
          f"{cold_compile:.2f} s cold (empty numba cache), "
          f"{warm_compile:.2f} s warm (cache on disk)")

    meta = MetaClassifier(LogisticRegression(), method="proximal",
                          n_jobs=args.n_jobs)
    meta.fit(X[:400], y[:400], tasks=tasks[:400])  # compiled once
    t_meta, meta = best_of(args.repeat, lambda: meta.fit(X, y, tasks=tasks))
    t_meta0, meta0 = best_of(args.repeat, lambda: MetaClassifier(
        gamma=0.0, n_jobs=args.n_jobs).fit(X, y, tasks=tasks))

    bounds = np.r_[0, np.flatnonzero(np.diff(tasks)) + 1, len(tasks)]

    def loop():
        coefs = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            clf = LogisticRegression().fit(X[a:b], y[a:b])
            coefs.append(np.r_[clf.coef_.ravel(), clf.intercept_])
        return np.array(coefs)

    t_loop, loop_params = best_of(1, loop)
    gap = np.max(np.abs(meta0.task_params_ - loop_params)) / np.max(
        np.abs(loop_params))

    rows = [
        ("loop of LogisticRegression().fit", t_loop, 1.0),
        ("MetaClassifier(method='proximal')", t_meta, t_loop / t_meta),
        ("MetaClassifier(gamma=0)", t_meta0, t_loop / t_meta0),
    ]
    print(f"{'':36}{'wall time (s)':>14}{'speed-up':>10}")
    for name, seconds, speedup in rows:
        print(f"{name:36}{seconds:>14.3f}{speedup:>9.1f}x")
    print(f"proximal: {meta.n_iter_} outer iterations; gamma=0 vs loop: max "
          f"relative parameter difference {gap:.1e} (sklearn tol=1e-4)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(n_tasks=args.n_tasks, n_jobs=args.n_jobs,
                           loop=t_loop, proximal=t_meta, independent=t_meta0,
                           cold_compile=cold_compile, warm_compile=warm_compile,
                           import_time=warm_import, gap=gap), fh, indent=2)


if __name__ == "__main__":
    main()
