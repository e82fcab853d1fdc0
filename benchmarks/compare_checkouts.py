"""Side by side, in one run: compile time and kernel speed of two checkouts.

    python benchmarks/compare_checkouts.py OLD_DIR NEW_DIR [ROUNDS]

e.g. OLD_DIR a ``git worktree`` of an older commit. Each measurement runs in a
fresh process with the checkout first on ``sys.path``; old and new alternate,
so that the machine's load hits both alike. Measured: import time, the first
fit with an empty numba cache (cold) and from the cache (warm), on a tiny
problem, for ``method="proximal"`` and ``"maml"``; and fits of 10,000 tasks x
40 rows x 20 features (the classic generator) at a fixed isotropic prior
(``gamma=1``, ``gamma=0``), and 200 meta-iterations of MAML and iMAML, one
thread, best of two. Wall and CPU seconds.
"""

import json
import os
import subprocess
import sys
import tempfile

CHILD = r'''
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification
out = {"import_s": time.perf_counter() - t0}
what = sys.argv[1]
if what == "compile":
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 20))
    y = (X[:, 0] > 0).astype(int)
    tasks = np.repeat(np.arange(3), 20)
    for name, kw in [("proximal", dict(gamma=1.0, prior="isotropic")),
                     ("maml", dict(method="maml", gamma=1.0, max_iter=5))]:
        t, c = time.perf_counter(), time.process_time()
        MetaClassifier(**kw).fit(X, y, tasks=tasks)
        out[name + "_first_fit_s"] = time.perf_counter() - t
        out[name + "_first_fit_cpu_s"] = time.process_time() - c
else:
    X, y, tasks = make_meta_classification(
        n_tasks=10000, n_samples_per_task=40, n_features=20,
        n_informative=2, n_redundant=10, random_state=0)
    configs = {
        "gamma1": dict(gamma=1.0, prior="isotropic"),
        "gamma0": dict(gamma=0.0, prior="isotropic"),
        "maml": dict(method="maml", gamma=1.0, max_iter=200, random_state=0),
        "imaml": dict(method="imaml", gamma=1.0, max_iter=200, random_state=0)}
    kw = configs[what]
    warm = dict(kw, max_iter=2) if "method" in kw else kw
    MetaClassifier(**warm).fit(X[:800], y[:800], tasks=tasks[:800])
    best = None
    for _ in range(2):
        t, c = time.perf_counter(), time.process_time()
        meta = MetaClassifier(n_jobs=1, **kw).fit(X, y, tasks=tasks)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        best = (wall, cpu) if best is None or wall < best[0] else best
    out["fit_s"], out["fit_cpu_s"] = best
    out["n_iter"] = int(meta.n_iter_)
print(json.dumps(out))
'''

def run(root, what, cache):
    env = dict(os.environ, PYTHONPATH=root, NUMBA_CACHE_DIR=cache)
    r = subprocess.run([sys.executable, "-c", CHILD, what], cwd=root, env=env,
                       capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr[-500:]}
    return json.loads(r.stdout.strip().splitlines()[-1])

old, new = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
caches = {old: tempfile.mkdtemp(), new: tempfile.mkdtemp()}
results = {}
for _ in range(rounds):
    for root in (old, new):
        cold = run(root, "compile", tempfile.mkdtemp())   # empty cache: cold compile
        results.setdefault((root, "cold"), []).append(cold)
    for root in (old, new):
        run(root, "compile", caches[root])   # fill the cache
        warm = run(root, "compile", caches[root])
        results.setdefault((root, "warm"), []).append(warm)
    for what in ("gamma1", "gamma0", "maml", "imaml"):
        for root in (old, new):
            results.setdefault((root, what), []).append(run(root, what, caches[root]))
for (root, what), rs in results.items():
    print(os.path.basename(root), what, json.dumps(rs))
