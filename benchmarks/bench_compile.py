"""What a fresh install compiles: every kernel, its CPU time, and duplicates.

Fits a spread of estimators (binary, multinomial, Gaussian, Poisson, lasso;
dense and sparse rows; every method; networks in float32 and float64) in a
process with an empty numba cache, then counts the compiled specializations
of every jitted function of ``skmeta._kernels`` and lists those compiled
more than once, with the arguments that differ. Given several checkouts,
runs each in turn, alternating, so that a drifting machine hits all alike::

    python benchmarks/bench_compile.py                  # this checkout
    python benchmarks/bench_compile.py ../old .         # side by side
    python benchmarks/bench_compile.py --rounds 3 ../old .
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _child():
    # runs with an empty NUMBA_CACHE_DIR and the checkout first on sys.path
    import importlib
    import pkgutil
    import time
    import warnings

    import numpy as np
    import scipy.sparse as sp
    from sklearn.linear_model import Lasso, PoissonRegressor, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    import skmeta._kernels as kernels
    from skmeta import MetaClassifier, MetaRegressor

    warnings.simplefilter("ignore")
    rng = np.random.RandomState(0)
    X = rng.randn(240, 4)
    tasks = np.repeat(np.arange(12), 20)
    binary = (rng.rand(240) < 1 / (1 + np.exp(-X[:, 0]))).astype(int)
    classes = rng.randint(0, 3, 240)
    target = X[:, 0] + rng.randn(240)
    counts = rng.poisson(np.exp(0.3 * X[:, 0]))
    linear = dict(max_iter=3, random_state=0)
    network = dict(max_iter=3, inner_lr=0.002, gamma=1.0, random_state=0)
    fits = []
    for rows in (X, sp.csr_matrix(X)):
        for method in ("proximal", "maml", "imaml", "metasgd", "reptile"):
            fits += [
                (MetaClassifier(method=method, **linear), rows, binary),
                (MetaClassifier(method=method, **linear), rows, classes),
                (MetaRegressor(Ridge(), method=method, **linear), rows, target),
            ]
        fits += [(MetaRegressor(PoissonRegressor(), **linear), rows, counts),
                 (MetaRegressor(Lasso(alpha=0.01), **linear), rows, target)]
    inputs = rng.uniform(-5, 5, (240, 1))
    for rows in (inputs, inputs.astype(np.float32)):
        for method in ("maml", "imaml", "metasgd", "reptile"):
            fits.append((MetaRegressor(MLPRegressor(hidden_layer_sizes=(5,)),
                                       method=method, **network), rows, target))
        fits.append((MetaClassifier(MLPClassifier(hidden_layer_sizes=(5,)),
                                    method="maml", **network), rows, classes))
    start = time.process_time()
    for estimator, rows, y in fits:
        estimator.fit(rows, y, tasks=tasks).predict(rows, tasks=tasks)
    cpu = time.process_time() - start
    total, repeated = 0, {}
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"{kernels.__name__}.{info.name}")
        for name, func in vars(module).items():
            if (getattr(func, "__module__", None) != module.__name__
                    or not hasattr(func, "overloads")):
                continue
            signatures = [[str(a) for a in sig] for sig in func.overloads]
            total += len(signatures)
            if len(signatures) > 1:
                # the argument positions whose types differ between them
                differ = [i for i, kinds in enumerate(zip(*signatures))
                          if len(set(kinds)) > 1]
                repeated[f"{info.name}.{name}"] = [
                    [sig[i][:40] for i in differ] for sig in signatures]
    print(json.dumps({"cpu_s": cpu, "n_fits": len(fits), "compiled": total,
                      "repeated": repeated}))


def _run(checkout):
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache,
               "PYTHONPATH": os.pathsep.join(
                   [str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])}
        run = subprocess.run([sys.executable, __file__, "--child"], env=env,
                             cwd=checkout, capture_output=True, text=True,
                             check=False)
    if run.returncode:
        raise RuntimeError(f"{checkout}: {run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", default=["."])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child()
        return
    checkouts = [Path(c).resolve() for c in args.checkouts]
    results = {c: [] for c in checkouts}
    for _ in range(args.rounds):
        for checkout in checkouts:
            results[checkout].append(_run(checkout))
    for checkout, runs in results.items():
        cpu = ", ".join(f"{r['cpu_s']:.1f}" for r in runs)
        last = runs[-1]
        print(f"{checkout}: {last['n_fits']} fits, {last['compiled']} compiled "
              f"functions, CPU s {cpu}")
        for name, kinds in last["repeated"].items():
            print(f"    {name}: {len(kinds)} x {kinds}")


if __name__ == "__main__":
    main()
