"""MAML on the sinusoid tasks with an MLP: skmeta against torch.func, as Finn et al.

The regression benchmark of Finn, Abbeel & Levine (2017), on raw inputs:
tasks ``A sin(x - phase)`` (``make_sine_tasks``: x in [-5, 5], amplitude in
[0.1, 5], phase in [0, pi]), an MLP 1-40-40-1 with ReLU, K = 10 support
shots and 10 query points per task, one inner gradient step of 0.01 on the
mean squared error, meta-batches of 25 tasks, Adam with learning rate 1e-3,
second-order meta-gradient.

* **skmeta**: ``MetaRegressor(MLPRegressor(hidden_layer_sizes=(40, 40),
  alpha=0), method="maml", gamma=0, inner_steps=1, inner_lr=0.002,
  meta_batch_size=25, meta_lr=1e-3)``. skmeta's objective is scikit-learn's
  (a summed half squared error), so Finn's step of 0.01 on the mean squared
  error of 10 rows is ``inner_lr = 0.01 * 2 / 10 = 0.002``: the adapted
  networks are the same. The meta-objective (mean over tasks of the summed
  half squared error of the 10 query rows) is Finn's times 5; Adam's steps
  do not depend on that scale (but for its epsilon).
* **torch.func**: ``vmap`` over tasks of a function that takes the inner
  step with ``torch.func.grad`` and returns the query MSE; ``grad_and_value``
  of its mean (second order by composition); ``torch.optim.Adam``.

Both start from the same Glorot initialization (scikit-learn's) and meet
the same tasks: a pool of ``--pool`` training tasks of 20 points (the first
10 the support, the others the query), from which the same meta-batches are
drawn for both. Evaluation, with one evaluator for both: 600 new tasks, each
adapted by 1 and 10 steps from its 10 shots and scored by the mean squared
error on 100 other points.

Checks: the first meta-gradient agrees between skmeta and torch (float64).
Timing: median time per meta-iteration over interleaved rounds; skmeta with
1 and 2 threads (``n_jobs``), timed in a child process that does not load
PyTorch (see ``bench_maml_torch.py``: PyTorch's OpenMP runtime can put
numba's worker thread to sleep); torch with 1 and 2 intra-op threads; both
in float32 and float64 (skmeta computes in the float type of the rows it is
given), each compared with the other at the same float type.

Run: ``python benchmarks/bench_sine_mlp.py`` (needs ``pip install
torch==2.13.0``, the ``bench`` extra). ``--torch-iters 70000`` trains torch
as long as skmeta (about 20 minutes more).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

_CHILD = os.environ.get("SKMETA_SINE_CHILD") == "1"
try:
    if not _CHILD:
        import torch
        from torch.func import grad, grad_and_value, vmap
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("bench_sine_mlp.py needs PyTorch (a benchmark-only dependency): "
             "pip install torch==2.13.0")

import numba
from sklearn.neural_network import MLPRegressor

import skmeta
from skmeta import MetaRegressor
from skmeta._families import family_for
from skmeta._kernels._calls import unroll
from skmeta._kernels._layout import make_batch
from skmeta._kernels._unroll import FORWARD, SECOND_ORDER
from skmeta._methods._bilevel import Adam, UnrolledMetaGradient
from skmeta.datasets import make_sine_tasks

K = 10
N_ROWS = 2 * K
HIDDEN = (40, 40)
META_BATCH = 25
INNER_LR_MSE = 0.01  # Finn et al.'s step, on the mean squared error
INNER_LR = INNER_LR_MSE * 2 / K  # the same step on the summed half squares
META_LR = 1e-3
N_EVAL, N_EVAL_QUERY = 600, 100


def base_estimator():
    return MLPRegressor(hidden_layer_sizes=HIDDEN, activation="relu", alpha=0.0)


def problem_and_start(seed):
    family = family_for(base_estimator(), classifier=False, owner="bench")
    return family.problem(1, None), family.initial_params(1, None, seed)


def training_pool(n_tasks, seed):
    X, y, tasks = make_sine_tasks(n_tasks=n_tasks, n_samples_per_task=N_ROWS,
                                  random_state=seed)
    return X, y, tasks


def draw_batches(n_iters, n_tasks, seed):
    rng = np.random.default_rng(seed + 1)
    return np.sort(np.stack([rng.choice(n_tasks, META_BATCH, replace=False)
                             for _ in range(n_iters)]), axis=1)


class Evaluator:
    """MSE on new tasks after 1 and 10 adaptation steps, with skmeta's kernels."""

    def __init__(self, seed):
        X, y, tasks = make_sine_tasks(n_tasks=N_EVAL,
                                      n_samples_per_task=K + N_EVAL_QUERY,
                                      random_state=seed + 1000)
        self.batch, _ = make_batch(X, y, np.ones(len(y)), tasks, N_EVAL)
        self.problem, _ = problem_and_start(0)

    def __call__(self, theta0, n_steps):
        d = self.problem.n_params
        res = unroll(self.batch, self.problem, np.arange(N_EVAL),
                     np.full(N_EVAL, -1), np.full(N_EVAL, N_EVAL_QUERY), theta0,
                     np.zeros(d), np.full(d, INNER_LR), False, n_steps, FORWARD,
                     32)
        # summed half squares over the query points -> their mean square
        return float(np.mean(2.0 * res.query_loss / N_EVAL_QUERY))


# ------------------------------------------------------------------- skmeta
class SkmetaMAML:
    """The body of skmeta's MAML loop (meta-gradient kernel and Adam), bound once."""

    def __init__(self, X, y, tasks, batches, n_threads, dtype="float64"):
        self.problem, self.start = problem_and_start(0)
        n_tasks = int(tasks.max()) + 1
        self.batch, _ = make_batch(X.astype(dtype), y, np.ones(len(y)), tasks,
                                   n_tasks)
        self.batches = batches
        d = self.problem.n_params
        self.alpha = np.full(d, INNER_LR)
        self.no_shuffle = np.full(META_BATCH, -1)
        self.n_query = np.full(META_BATCH, K)
        self.meta_gradient = UnrolledMetaGradient(
            self.batch, self.problem, np.zeros(d), n_sel=META_BATCH, n_steps=1,
            auto_step=False, mode=SECOND_ORDER, n_threads=n_threads,
            step_gradient=False)
        self.reset()

    def reset(self):
        self.theta = self.start.copy()
        self.opt = Adam(META_LR, self.theta.shape[0])

    def meta_grad(self, i):
        loss, g, _, _ = self.meta_gradient(self.batches[i], self.no_shuffle,
                                           self.n_query, self.theta, self.alpha)
        return loss, g

    def step(self, i):
        loss, g = self.meta_grad(i)
        self.theta = self.opt.step(self.theta, g)
        return loss


def child_main(args):
    """Answer the parent's requests, one JSON line each (no PyTorch here)."""
    X, y, tasks = training_pool(args.pool, args.seed)
    batches = draw_batches(max(args.checkpoints), args.pool, args.seed)
    runners = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["do"] == "time":
            key = (request["threads"], request["dtype"])
            if key not in runners:
                runners[key] = SkmetaMAML(X, y, tasks, batches, *key)
            sk = runners[key]
            sk.reset()
            for i in range(request["warm"]):
                sk.step(i)
            start = time.perf_counter()
            for i in range(request["n"]):
                sk.step(request["warm"] + i)
            reply = (time.perf_counter() - start) / request["n"]
        elif request["do"] == "train":
            sk = SkmetaMAML(X, y, tasks, batches, request["threads"],
                            request["dtype"])
            evaluate = Evaluator(args.seed)
            reply, done, start = [], 0, time.perf_counter()
            for stop in sorted(args.checkpoints):
                for i in range(done, stop):
                    sk.step(i)
                done = stop
                reply.append(dict(iters=stop, seconds=time.perf_counter() - start,
                                  mse1=evaluate(sk.theta, 1),
                                  mse10=evaluate(sk.theta, 10)))
        elif request["do"] == "fit":
            # the whole estimator per meta-iteration, on the first
            # --fit-tasks tasks of the pool (a fit ends by adapting every
            # training task: on 100,000 tasks, 1.4 GB of task_params_)
            first = tasks < args.fit_tasks
            est = MetaRegressor(
                base_estimator(), method="maml", gamma=0.0, inner_steps=1,
                inner_lr=INNER_LR, meta_batch_size=META_BATCH, meta_lr=META_LR,
                max_iter=request["iters"], n_jobs=request["threads"],
                random_state=args.seed)
            X_fit = X[first].astype(request["dtype"])
            start = time.perf_counter()
            est.fit(X_fit, y[first], tasks=tasks[first])
            reply = (time.perf_counter() - start) / request["iters"]
        elif request["do"] == "compile":
            reply = compile_seconds(args)
        else:
            reply = "ready"
        print(json.dumps(reply), flush=True)
    return 0


def compile_seconds(args):
    """First-call overhead of the kernels in fresh processes (empty cache, cache)."""
    import tempfile

    code = ("import time, numpy as np;t0=time.perf_counter();"
            "from sklearn.neural_network import MLPRegressor;"
            "from skmeta import MetaRegressor;"
            "from skmeta.datasets import make_sine_tasks;"
            "X,y,t=make_sine_tasks(50,20,random_state=0);"
            "MetaRegressor(MLPRegressor(hidden_layer_sizes=(40,40),alpha=0.0),"
            "method='maml',gamma=0.0,inner_steps=1,inner_lr=0.002,max_iter=2,"
            "meta_batch_size=25,n_jobs={jobs}).fit(X,y,tasks=t);"
            "print('SECONDS', time.perf_counter()-t0)")
    out = {}
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            for label in ("empty cache", "cache on disk"):
                result = subprocess.run(
                    [sys.executable, "-c", code.format(jobs=jobs)], env=env,
                    capture_output=True, text=True, check=True)
                seconds = [line.split()[1] for line in result.stdout.splitlines()
                           if line.startswith("SECONDS")]
                out[f"n_jobs={jobs}, {label}"] = round(float(seconds[-1]), 2)
    return out


class Child:
    def __init__(self, argv):
        env = dict(os.environ, SKMETA_SINE_CHILD="1")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *argv], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# -------------------------------------------------------------- torch.func
def torch_params(theta, problem, dtype):
    coefs, intercepts = problem.split(theta)
    out = []
    for c, b in zip(coefs, intercepts):
        out += [torch.tensor(c, dtype=dtype), torch.tensor(b, dtype=dtype)]
    return out


def flat(params):
    return np.concatenate([p.detach().double().numpy().ravel() for p in params])


def forward(params, x):
    h = x
    for i in range(0, len(params) - 2, 2):
        h = torch.relu(h @ params[i] + params[i + 1])
    return (h @ params[-2] + params[-1])[:, 0]


def mse(params, x, y):
    return ((forward(params, x) - y) ** 2).mean()


def task_loss(params, xs, ys, xq, yq):
    g = grad(mse)(params, xs, ys)
    adapted = [p - INNER_LR_MSE * gp for p, gp in zip(params, g)]
    return mse(adapted, xq, yq)


def meta_loss(params, xs, ys, xq, yq):
    return vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(params, xs, ys, xq,
                                                       yq).mean()


class TorchMAML:
    def __init__(self, X, y, batches, start, problem, dtype):
        cube = torch.tensor(X.reshape(-1, N_ROWS, 1), dtype=dtype)
        labels = torch.tensor(y.reshape(-1, N_ROWS), dtype=dtype)
        self.xs, self.xq = cube[:, :K], cube[:, K:]
        self.ys, self.yq = labels[:, :K], labels[:, K:]
        self.batches = torch.as_tensor(batches)
        self.start, self.problem, self.dtype = start, problem, dtype
        self.step_fn = grad_and_value(meta_loss)
        self.reset()

    def reset(self):
        self.params = [p.requires_grad_(True) for p in
                       torch_params(self.start, self.problem, self.dtype)]
        self.opt = torch.optim.Adam(self.params, lr=META_LR)

    def meta_grad(self, i):
        sel = self.batches[i]
        g, loss = self.step_fn([p.detach() for p in self.params], self.xs[sel],
                               self.ys[sel], self.xq[sel], self.yq[sel])
        return loss, g

    def step(self, i):
        loss, g = self.meta_grad(i)
        for p, gp in zip(self.params, g):
            p.grad = gp
        self.opt.step()
        return float(loss)


def timed(obj, warm, n):
    obj.reset()
    for i in range(warm):
        obj.step(i)
    start = time.perf_counter()
    for i in range(n):
        obj.step(warm + i)
    return (time.perf_counter() - start) / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--checkpoints", type=lambda s: [int(v) for v in s.split(",")],
                        default=[5000, 20000, 70000])
    parser.add_argument("--torch-iters", type=int, default=20000)
    parser.add_argument("--fit-tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timed", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-only", action="store_true",
                        help="only the first fit's time in fresh processes")
    args = parser.parse_args()
    if _CHILD:
        return child_main(args)
    if args.compile_only:
        print("first fit in a fresh process (s):", compile_seconds(args))
        return 0

    print(f"Python {platform.python_version()}, numba {numba.__version__}, "
          f"torch {torch.__version__}, skmeta {skmeta.__version__}; "
          f"{os.cpu_count()} CPUs")
    X, y, tasks = training_pool(args.pool, args.seed)
    batches = draw_batches(max(args.checkpoints), args.pool, args.seed)
    problem, start = problem_and_start(0)

    # 1. the first meta-gradient, skmeta against torch (float64)
    sk = SkmetaMAML(X, y, tasks, batches, 1)
    loss_sk, g_sk = sk.meta_grad(0)
    tm = TorchMAML(X, y, batches, start, problem, torch.float64)
    loss_t, g_t = tm.meta_grad(0)
    # skmeta's meta-objective is torch's (the mean squared error) times K / 2
    g_t = flat(g_t) * K / 2
    err = np.linalg.norm(g_sk - g_t) / np.linalg.norm(g_t)
    print(f"first meta-gradient, relative difference skmeta vs torch.func "
          f"(float64): {err:.2e}; losses {loss_sk:.10g} vs "
          f"{float(loss_t) * K / 2:.10g}")

    # 2. time per meta-iteration, interleaved rounds
    child = Child(sys.argv[1:])
    torch_runs = {}
    times = {}
    for _ in range(args.rounds):
        for n in (1, 2):
            for dtype in ("float32", "float64"):
                times.setdefault(f"skmeta, {dtype}, {n} thread(s)", []).append(
                    child.ask(do="time", threads=n, dtype=dtype, warm=50,
                              n=args.timed * 4))
            torch.set_num_threads(n)
            for dtype in (torch.float32, torch.float64):
                key = (n, dtype)
                if key not in torch_runs:
                    torch_runs[key] = TorchMAML(X, y, batches, start, problem, dtype)
                times.setdefault(f"torch.func vmap, {str(dtype)[6:]}, {n} thread(s)",
                                 []).append(timed(torch_runs[key], 10, args.timed))
        for n in (1, 2):
            for dtype in ("float32", "float64"):
                times.setdefault(f"skmeta MetaRegressor.fit per iteration, "
                                 f"{dtype}, {n} thread(s)", []).append(
                    child.ask(do="fit", threads=n, dtype=dtype,
                              iters=args.timed * 4))
    print("\nmedian time per meta-iteration (all rounds: min-max); torch's "
          "ratio to skmeta at the same float type, each at its faster thread "
          "count")
    medians = {name: statistics.median(v) for name, v in times.items()}
    best_sk = {dtype: min(medians[f"skmeta, {dtype}, {n} thread(s)"]
                          for n in (1, 2)) for dtype in ("float32", "float64")}
    best_torch = {dtype: min(medians[f"torch.func vmap, {dtype}, {n} thread(s)"]
                             for n in (1, 2)) for dtype in ("float32", "float64")}
    for name, value in medians.items():
        print(f"  {name:62s} {value * 1e6:9.0f} us  "
              f"[{min(times[name]) * 1e6:.0f}-{max(times[name]) * 1e6:.0f}]")
    for dtype in ("float32", "float64"):
        print(f"  {dtype}: torch.func / skmeta = "
              f"{best_torch[dtype] / best_sk[dtype]:.1f}x")

    # 3. accuracy on new tasks after 5k, 20k, 70k meta-iterations
    # trained at the thread count that was faster above
    torch_threads = min((1, 2), key=lambda n: medians[
        f"torch.func vmap, float32, {n} thread(s)"])
    print("\nmean squared error on 600 new tasks (10 shots; 1 / 10 steps); "
          f"skmeta at its faster thread count, torch on {torch_threads}")
    for dtype in ("float64", "float32"):
        sk_threads = min((1, 2), key=lambda n: medians[
            f"skmeta, {dtype}, {n} thread(s)"])
        for row in child.ask(do="train", threads=sk_threads, dtype=dtype):
            print(f"  skmeta ({dtype[-2:]}) {row['iters']:6d} iterations: "
                  f"{row['mse1']:.3f} / {row['mse10']:.3f}   "
                  f"({row['seconds']:.1f} s of training, {sk_threads} "
                  "thread(s))")
    torch.set_num_threads(torch_threads)
    evaluate = Evaluator(args.seed)
    tm = TorchMAML(X, y, batches, start, problem, torch.float32)
    done, t0 = 0, time.perf_counter()
    for stop in sorted(c for c in args.checkpoints if c <= args.torch_iters):
        for i in range(done, stop):
            tm.step(i)
        done = stop
        theta = flat(tm.params)
        print(f"  torch  (32) {stop:6d} iterations: {evaluate(theta, 1):.3f} / "
              f"{evaluate(theta, 10):.3f}   "
              f"({time.perf_counter() - t0:.1f} s of training)")

    # 4. compilation
    if not args.no_compile:
        print("\nfirst fit in a fresh process (s):", child.ask(do="compile"))
    child.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
