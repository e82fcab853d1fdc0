"""Second-order MAML: skmeta's numba kernel against two PyTorch versions.

Binary logistic regression, 20 features, tasks of 20 support + 20 query
rows, meta-batch 32, 5 inner gradient steps, exact second-order
meta-gradient (MAML), Adam as the outer optimizer. In one run, on the same
tasks and the same meta-batches:

* skmeta: ``_bilevel.meta_gradient`` (the numba kernel ``unroll_tasks``)
  plus ``_bilevel.Adam``, i.e. the body of the MAML meta-training loop; and the
  whole ``MetaClassifier(method="maml").fit`` per meta-iteration;
* ``torch.func``: ``vmap`` over the tasks of ``grad`` of a function that
  takes 5 steps of ``grad`` (second order by composition), then
  ``torch.optim.Adam``;
* the learn2learn way: a Python loop over tasks that clones a
  ``torch.nn.Linear`` (parameters cloned inside the autograd graph), takes
  differentiable steps with ``torch.autograd.grad(..., create_graph=True)``,
  calls ``backward()`` on each task's query loss, averages the accumulated
  gradients and steps ``torch.optim.Adam``;
* an extra row, not one of the two peers the targets name: the
  ``torch.func`` version given to ``torch.compile`` (skip with
  ``--no-compile``).

All three optimize the same objective. skmeta is configured to be plain
MAML: ``LogisticRegression(C=np.inf)`` (no l2 penalty), ``gamma=0`` (no
transfer term), a fixed ``inner_lr``; its log-loss is a sum over rows. So,
for a task with support (Xs, ys) and query (Xq, yq), with
``loss(theta; X, y) = sum_i logloss(y_i, x_i . coef + intercept)``:

    theta_{k+1} = theta_k - inner_lr * grad loss(theta_k; Xs, ys),  k < 5
    meta-objective(theta0) = mean over the meta-batch of loss(theta_5; Xq, yq)

(a SUM over the 20 support rows in the inner loss, a SUM over the 20 query
rows, a MEAN over the 32 tasks). The default ``inner_lr=0.005`` on the sum
is the step 0.1 on the mean log-loss. Every task's rows are split once
(fixed seed) and stored as [20 support, 20 query]; skmeta gets ``seeds=-1``
(no shuffle) and ``n_query=20``, so all three see identical splits. The
meta-batches are drawn once and fed to all three.

Checks: the first meta-gradient (from the same theta0) agrees to 1e-6
relative in float64; the loss curves over ``--curve-iters`` meta-iterations
agree. Timing: median seconds per meta-iteration over many iterations after
warm-up, in interleaved rounds; torch with 1 and 2 intra-op threads, float64
and float32; skmeta with 1 and 2 threads (``n_jobs``: the meta-batch's
blocks of tasks shared among numba's threads), timed in a child process that
does not load PyTorch (see ``SkmetaTimer``). Numba compile time is
measured in fresh processes (empty cache, and cache on disk). Last, a
breakdown of skmeta's meta-iteration (forward only, first order, shuffled
rows, ``inner_lr="auto"``, the transcendental functions, the task sampling
of a MAML fit).

Run: ``python benchmarks/bench_maml_torch.py`` (needs skmeta and
``pip install torch==2.13.0``; PyTorch is a benchmark-only dependency).
"""

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# skmeta's times are taken in a child process without PyTorch (see
# SkmetaTimer); that child imports this file with _TIMER_CHILD set
_TIMER_CHILD = os.environ.get("SKMETA_BENCH_TIMER_CHILD") == "1"
try:
    if not _TIMER_CHILD:
        import torch
        import torch.nn.functional as F
        from torch.func import grad, grad_and_value, vmap
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("bench_maml_torch.py needs PyTorch (a benchmark-only dependency): "
             "pip install torch==2.13.0")

import numba
import sklearn
from sklearn.linear_model import LogisticRegression

import skmeta
from skmeta import MetaClassifier
from skmeta._families import family_for
from skmeta._kernels._layout import make_batch
from skmeta._kernels._unroll import SECOND_ORDER
from skmeta._methods._bilevel import Adam, UnrolledMetaGradient
from skmeta.datasets import make_meta_classification

N_FEATURES = 20
N_SUPPORT = 20
N_QUERY = 20
BETAS = (0.9, 0.999)  # skmeta's _bilevel.Adam constants, given to torch too
EPS = 1e-8


# ---------------------------------------------------------------- the tasks
class Tasks:
    """Tasks pre-split into support and query, in every library's layout."""

    def __init__(self, n_tasks, seed):
        n = N_SUPPORT + N_QUERY
        X, y, _ = make_meta_classification(
            n_tasks=n_tasks, n_samples_per_task=n, n_features=N_FEATURES,
            n_informative=2, n_redundant=10, random_state=seed)
        rng = np.random.default_rng(seed)
        # one fixed split per task: the first N_SUPPORT rows of a random
        # permutation are the support, the others the query
        perm = np.concatenate([t * n + rng.permutation(n) for t in range(n_tasks)])
        self.X = np.ascontiguousarray(X[perm], dtype=np.float64)
        self.y = y[perm].astype(np.float64)
        self.n_tasks = n_tasks
        cube = self.X.reshape(n_tasks, n, N_FEATURES)
        labels = self.y.reshape(n_tasks, n)
        self.Xs, self.Xq = cube[:, :N_SUPPORT], cube[:, N_SUPPORT:]
        self.ys, self.yq = labels[:, :N_SUPPORT], labels[:, N_SUPPORT:]

    def support_smoothness(self):
        """Per task, 1/4 of the largest eigenvalue of [Xs 1]^T [Xs 1]."""
        Xt = np.concatenate([self.Xs, np.ones(self.Xs.shape[:2] + (1,))], axis=2)
        gram = np.einsum("tri,trj->tij", Xt, Xt)
        return 0.25 * np.linalg.eigvalsh(gram)[:, -1]

    def torch_arrays(self, dtype):
        return [torch.tensor(a, dtype=dtype) for a in (self.Xs, self.ys,
                                                       self.Xq, self.yq)]


# ------------------------------------------------------------------- skmeta
class SkmetaMAML:
    """The body of the MAML meta-training loop, on pre-split tasks."""

    name = "skmeta (numba)"

    def __init__(self, tasks, inner_lr, inner_steps, meta_lr, batches,
                 n_threads=1):
        family = family_for(LogisticRegression(C=np.inf), classifier=True,
                            owner="bench")
        self.problem = family.problem(N_FEATURES, 2)
        assert self.problem.lam2 == 0 and self.problem.lam1 == 0
        assert not self.problem.mean_loss  # log-loss summed over rows
        codes = np.repeat(np.arange(tasks.n_tasks), N_SUPPORT + N_QUERY)
        self.batch, order = make_batch(tasks.X, tasks.y, np.ones(len(tasks.y)),
                                       codes, tasks.n_tasks)
        assert order is None  # rows kept in our [support, query] order
        d = self.problem.n_params
        self.precision = np.zeros(d)  # gamma = 0: no transfer term
        self.alpha = np.full(d, float(inner_lr))
        self.auto_step = False  # inner_lr is a number, not "auto"
        self.inner_steps = inner_steps
        self.meta_lr = meta_lr
        self.batches = batches
        B = len(batches[0])
        self.no_shuffle = np.full(B, -1, dtype=np.int64)
        self.n_query = np.full(B, N_QUERY, dtype=np.intp)
        self.set_threads(n_threads)

    def set_threads(self, n_threads):
        """Bind the meta-gradient, as a MAML fit does with ``n_jobs``."""
        self.n_threads = n_threads
        self.meta_gradient = UnrolledMetaGradient(
            self.batch, self.problem, self.precision,
            n_sel=len(self.batches[0]), n_steps=self.inner_steps,
            auto_step=self.auto_step, mode=SECOND_ORDER, n_threads=n_threads)

    def reset(self, theta0):
        self.theta = np.array(theta0, dtype=np.float64)
        self.opt = Adam(self.meta_lr, self.theta.shape[0])

    def meta_grad(self, i):
        loss, g, _, _ = self.meta_gradient(self.batches[i], self.no_shuffle,
                                           self.n_query, self.theta, self.alpha)
        return float(loss), g

    def step(self, i):
        loss, g = self.meta_grad(i)
        self.theta = self.opt.step(self.theta, g)
        return loss

    def params(self):
        return self.theta.copy()


# ------------------------------------------------------- torch.func (vmap)
def support_loss(theta, X, y):
    """Sum of the log-losses of rows X under flat theta = (coef, intercept)."""
    z = X @ theta[:-1] + theta[-1]
    return F.binary_cross_entropy_with_logits(z, y, reduction="sum")


class FuncMAML:
    """``vmap`` over tasks of an unrolled inner loop; ``grad`` of the mean."""

    def __init__(self, tasks, inner_lr, inner_steps, meta_lr, batches, dtype):
        self.name = f"torch.func vmap ({dtype_name(dtype)})"
        self.dtype = dtype
        self.data = tasks.torch_arrays(dtype)
        self.batches = [torch.from_numpy(b.astype(np.int64)) for b in batches]
        self.meta_lr = meta_lr
        inner_grad = grad(support_loss)

        def task_query_loss(theta0, Xs, ys, Xq, yq):
            theta = theta0
            for _ in range(inner_steps):
                theta = theta - inner_lr * inner_grad(theta, Xs, ys)
            return support_loss(theta, Xq, yq)

        per_task = vmap(task_query_loss, in_dims=(None, 0, 0, 0, 0))

        def meta_objective(theta0, Xs, ys, Xq, yq):
            return per_task(theta0, Xs, ys, Xq, yq).mean()

        self.grad_and_loss = grad_and_value(meta_objective)

    def reset(self, theta0):
        self.theta = torch.nn.Parameter(torch.tensor(theta0, dtype=self.dtype))
        self.opt = torch.optim.Adam([self.theta], lr=self.meta_lr, betas=BETAS,
                                    eps=EPS)

    def meta_grad(self, i):
        idx = self.batches[i]
        Xs, ys, Xq, yq = (a[idx] for a in self.data)
        g, loss = self.grad_and_loss(self.theta.detach(), Xs, ys, Xq, yq)
        return loss.item(), g

    def step(self, i):
        loss, g = self.meta_grad(i)
        self.theta.grad = g
        self.opt.step()
        return loss

    def params(self):
        return self.theta.detach().double().numpy().copy()


class CompiledFuncMAML(FuncMAML):
    """The same, with the meta-gradient function given to ``torch.compile``.

    Not one of the issue's two peers: an extra row, since it is what a torch
    user who wants speed on a CPU would try next. Compiled on its first call
    (inductor, C++ through the machine's compiler); that time is reported.
    """

    def __init__(self, *args):
        super().__init__(*args)
        self.name = self.name.replace("torch.func vmap", "torch.compile(func)")
        self.grad_and_loss = torch.compile(self.grad_and_loss, dynamic=False)


# ------------------------------------------- learn2learn-style Python loop
def differentiable_clone(module):
    """A shallow copy of ``module`` whose parameters are clones of its own.

    The clones stay in the autograd graph, so a loss of the copy
    back-propagates into the original parameters.
    """
    twin = copy.copy(module)
    twin._parameters = {name: p.clone() for name, p in module._parameters.items()}
    return twin


def differentiable_sgd(module, loss, lr):
    """One gradient step on ``module``'s parameters, kept in the graph."""
    names = list(module._parameters)
    current = [module._parameters[n] for n in names]
    grads = torch.autograd.grad(loss, current, create_graph=True)
    for name, p, g in zip(names, current, grads):
        module._parameters[name] = p - lr * g


class LoopMAML:
    """One cloned ``nn.Linear`` per task, ``backward()`` per task."""

    def __init__(self, tasks, inner_lr, inner_steps, meta_lr, batches, dtype):
        self.name = f"loop + nn.Linear clone ({dtype_name(dtype)})"
        self.dtype = dtype
        self.data = tasks.torch_arrays(dtype)
        self.batches = [b.tolist() for b in batches]
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.meta_lr = meta_lr

    def reset(self, theta0):
        self.model = torch.nn.Linear(N_FEATURES, 1, dtype=self.dtype)
        with torch.no_grad():
            self.model.weight.copy_(torch.tensor(theta0[:-1]).view(1, -1))
            self.model.bias.fill_(float(theta0[-1]))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.meta_lr,
                                    betas=BETAS, eps=EPS)

    def _accumulate(self, i):
        Xs, ys, Xq, yq = self.data
        self.opt.zero_grad()
        total = 0.0
        sel = self.batches[i]
        for t in sel:
            learner = differentiable_clone(self.model)
            for _ in range(self.inner_steps):
                z = learner(Xs[t]).view(-1)
                loss = F.binary_cross_entropy_with_logits(z, ys[t],
                                                          reduction="sum")
                differentiable_sgd(learner, loss, self.inner_lr)
            z = learner(Xq[t]).view(-1)
            query = F.binary_cross_entropy_with_logits(z, yq[t], reduction="sum")
            query.backward()
            total += query.item()
        for p in self.model.parameters():
            p.grad.mul_(1.0 / len(sel))
        return total / len(sel)

    def meta_grad(self, i):
        loss = self._accumulate(i)
        g = torch.cat([self.model.weight.grad.view(-1), self.model.bias.grad])
        return loss, g

    def step(self, i):
        loss = self._accumulate(i)
        self.opt.step()
        return loss

    def params(self):
        return torch.cat([self.model.weight.detach().view(-1),
                          self.model.bias.detach()]).double().numpy().copy()


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


# ----------------------------------------------------------------- measures
def as_numpy(g):
    return g.detach().double().numpy() if isinstance(g, torch.Tensor) else g


def rel_diff(a, b):
    a, b = as_numpy(a), as_numpy(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def loss_curve(impl, theta0, n_iter):
    impl.reset(theta0)
    return np.array([impl.step(i) for i in range(n_iter)]), impl.params()


def timed_steps(impl, theta0, first, n_warm, n_timed):
    """Seconds of each of ``n_timed`` meta-iterations after ``n_warm``."""
    impl.reset(theta0)
    n_batches = len(impl.batches)
    for k in range(n_warm):
        impl.step((first + k) % n_batches)
    times = []
    for k in range(n_timed):
        i = (first + n_warm + k) % n_batches
        start = time.perf_counter()
        impl.step(i)
        times.append(time.perf_counter() - start)
    return times


def first_step_time(impl, theta0):
    impl.reset(theta0)
    start = time.perf_counter()
    impl.step(0)
    return time.perf_counter() - start


_COMPILE_PROBE = """
import time
t0 = time.perf_counter()
import numpy as np
from sklearn.linear_model import LogisticRegression
from skmeta._families import family_for
from skmeta._kernels._layout import make_batch
from skmeta._kernels._unroll import SECOND_ORDER
from skmeta._methods._bilevel import UnrolledMetaGradient
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.normal(size=(80, 20)); y = (X[:, 0] > 0).astype(float)
batch, _ = make_batch(X, y, np.ones(80), np.repeat(np.arange(2), 40), 2)
problem = family_for(LogisticRegression(C=np.inf), classifier=True,
                     owner="probe").problem(20, 2)
meta_gradient = UnrolledMetaGradient(batch, problem, np.zeros(21), n_sel=2,
                                     n_steps=5, auto_step=False, mode=SECOND_ORDER,
                                     n_threads=N_THREADS)
args = (np.arange(2), np.full(2, -1), np.full(2, 20), np.zeros(21),
        np.full(21, 0.005))
t2 = time.perf_counter()
meta_gradient(*args)
t3 = time.perf_counter()
meta_gradient(*args)
t4 = time.perf_counter()
print(t1 - t0, (t3 - t2) - (t4 - t3))
"""


def compile_time(cold, n_threads=1):
    """Import time and first-call overhead of a ``MetaGradient``, new process.

    With ``n_threads > 1`` it is the parallel kernel that gets compiled.
    """
    env = dict(os.environ)
    probe = _COMPILE_PROBE.replace("N_THREADS", str(n_threads))
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        out = subprocess.run([sys.executable, "-c", probe], env=env,
                             capture_output=True, text=True, check=True).stdout
    return [float(v) for v in out.split()]


def fit_seconds(tasks, args, max_iter, repeat, n_jobs):
    """Best-of wall time of ``MetaClassifier(method="maml").fit``."""
    codes = np.repeat(np.arange(tasks.n_tasks), N_SUPPORT + N_QUERY)
    y = tasks.y.astype(np.intp)
    best = np.inf
    for _ in range(repeat):
        meta = MetaClassifier(
            LogisticRegression(C=np.inf), method="maml", gamma=0.0,
            inner_steps=args.inner_steps, inner_lr=args.inner_lr,
            first_order=False, meta_lr=args.meta_lr,
            meta_batch_size=args.meta_batch_size, query_fraction=0.5,
            max_iter=max_iter, random_state=args.seed, n_jobs=n_jobs)
        start = time.perf_counter()
        meta.fit(tasks.X, y, tasks=codes)
        best = min(best, time.perf_counter() - start)
    return best


def cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    return f"{seconds * 1e3:.2f} ms"


def median_time(func, n, warm=5):
    for k in range(warm):
        func(k)
    times = []
    for k in range(n):
        start = time.perf_counter()
        func(warm + k)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@numba.njit(cache=False, error_model="numpy")
def _logistic_rows(z, out, with_loss):
    """Per row what the kernel's logistic datafit does (loss optional)."""
    total = 0.0
    for i in range(z.shape[0]):
        e = math.exp(-abs(z[i]))
        if with_loss:
            total += max(z[i], 0.0) + math.log1p(e)
        p = 1.0 / (1.0 + e) if z[i] >= 0.0 else e / (1.0 + e)
        out[i] = p * (1.0 - p)
    return total


def skmeta_breakdown(sk, n_tasks, meta_batch_size, inner_steps):
    """Where the time of one skmeta meta-iteration goes (1 thread)."""
    from skmeta._kernels._calls import Unroller
    from skmeta._kernels._unroll import FIRST_ORDER, FORWARD, SECOND_ORDER

    sk.set_threads(1)
    sk.reset(np.zeros(sk.problem.n_params))
    for i in range(20):
        sk.step(i)
    n = len(sk.batches)
    B = meta_batch_size
    seeds = np.random.RandomState(0).randint(0, 2**31 - 1, size=(n, B))
    unrollers = {}

    def run_unroll(i, mode, shuffle=False, auto=False):
        # bound once per configuration, as a MAML fit does
        key = (mode, auto)
        if key not in unrollers:
            unrollers[key] = Unroller(sk.batch, sk.problem, sk.precision,
                                      auto_step=auto, n_steps=inner_steps,
                                      mode=mode, n_sel=B)
        sel = sk.batches[i % n]
        # inner_lr="auto": alpha multiplies 1 / L_t (default alpha 1)
        alpha = np.ones_like(sk.alpha) if auto else sk.alpha
        return unrollers[key](sel, seeds[i % n] if shuffle else sk.no_shuffle,
                              sk.n_query, sk.theta, alpha)

    g = np.ones(sk.problem.n_params)
    rows = [
        ("meta_gradient (second order)", lambda i: sk.meta_grad(i % n)),
        ("  forward only (unroll FORWARD)", lambda i: run_unroll(i, FORWARD)),
        ("  first order (unroll FIRST_ORDER)",
         lambda i: run_unroll(i, FIRST_ORDER)),
        ("  second order, rows shuffled per task (as fit does)",
         lambda i: run_unroll(i, SECOND_ORDER, shuffle=True)),
        ('  second order, inner_lr="auto" (the default; 1/L_t per task)',
         lambda i: run_unroll(i, SECOND_ORDER, auto=True)),
        ("Adam.step (numba kernel, 21 parameters)",
         lambda i: sk.opt.step(sk.theta, g)),
    ]
    out = [(name, median_time(f, 1000)) for name, f in rows]
    z = np.random.default_rng(0).normal(size=B * inner_steps * N_SUPPORT)
    buf = np.empty_like(z)
    with_loss = median_time(lambda i: _logistic_rows(z, buf, True), 2000)
    without = median_time(lambda i: _logistic_rows(z, buf, False), 2000)
    out.append((f"  exp+log1p+div of the {z.size} inner-step rows", with_loss))
    out.append(("  the same without the (unused) loss value's log1p", without))
    rs = np.random.RandomState(0)
    for T in (n_tasks, 10 * n_tasks, 100 * n_tasks):
        out.append((f"the meta-batch draw rng.choice({T}, {B}, replace=False)",
                    median_time(lambda i: rs.choice(T, B, replace=False), 200)))
    return out


def load_note():
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


# -------------------------------------------- skmeta's times, without torch
def draw_batches(args):
    """The meta-batches every implementation sees, drawn from the seed."""
    rng = np.random.default_rng(args.seed + 1)
    n_batches = max(args.curve_iters, 1000)
    return [np.sort(rng.choice(args.n_tasks, args.meta_batch_size,
                               replace=False)).astype(np.intp)
            for _ in range(n_batches)]


class SkmetaTimer:
    """skmeta's timed meta-iterations, run in a child process without torch.

    PyTorch's wheel brings its own GNU OpenMP runtime, which numba then
    shares: with PyTorch loaded, numba's worker thread was found to sleep
    between meta-iterations in some processes (two threads: 68-75 us per
    meta-iteration, against 44-46 us in every process without PyTorch, and
    in every process with OMP_WAIT_POLICY=active), so the wake-up is paid at
    every iteration. A user of skmeta does not load PyTorch, so skmeta is
    timed as it runs for them: in a child that rebuilds the same tasks and
    meta-batches from the same arguments. The rounds still interleave with
    torch's. Correctness checks (1) and (2) run in this process.
    """

    def __init__(self, argv):
        env = dict(os.environ, SKMETA_BENCH_TIMER_CHILD="1")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *argv], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ask({"ping": True})

    def ask(self, request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def timed_steps(self, n_threads, first, n_warm, n_timed):
        return self.ask({"threads": n_threads, "first": first, "warm": n_warm,
                         "n": n_timed})

    def fit_seconds(self, max_iter, repeat, n_jobs):
        return self.ask({"fit": max_iter, "repeat": repeat, "n_jobs": n_jobs})

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def serve_timings(args):
    """The child's loop: answer SkmetaTimer's requests, one JSON per line."""
    tasks = Tasks(args.n_tasks, args.seed)
    sk = SkmetaMAML(tasks, args.inner_lr, args.inner_steps, args.meta_lr,
                    draw_batches(args))
    theta_zero = np.zeros(sk.problem.n_params)
    for line in sys.stdin:
        request = json.loads(line)
        if "fit" in request:
            reply = fit_seconds(tasks, args, request["fit"], request["repeat"],
                                request["n_jobs"])
        elif "threads" in request:
            sk.set_threads(request["threads"])
            reply = timed_steps(sk, theta_zero, request["first"],
                                request["warm"], request["n"])
        else:
            reply = "ready"
        print(json.dumps(reply), flush=True)
    return 0


# --------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-tasks", type=int, default=1000)
    parser.add_argument("--meta-batch-size", type=int, default=32)
    parser.add_argument("--inner-steps", type=int, default=5)
    parser.add_argument("--inner-lr", type=float, default=0.005,
                        help="inner step on the SUM of support log-losses")
    parser.add_argument("--meta-lr", type=float, default=0.01)
    parser.add_argument("--curve-iters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved timing rounds")
    parser.add_argument("--threads", default="1,2",
                        help="torch intra-op thread counts to time")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile rows (cold compiles take ~20 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="fewer timed iterations (smoke test)")
    args = parser.parse_args(argv)
    if _TIMER_CHILD:
        return serve_timings(args)
    threads = [int(v) for v in args.threads.split(",")]
    # (warm-up, timed) meta-iterations per round, per kind of implementation
    per_round = {"skmeta": (50, 400), "func": (5, 40), "loop": (2, 8)}
    if args.quick:
        per_round = {"skmeta": (5, 40), "func": (2, 5), "loop": (1, 2)}
        args.rounds = 2

    print("Second-order MAML, binary logistic: skmeta vs PyTorch")
    print(f"{cpu_name()}, {os.cpu_count()} CPUs; Python {platform.python_version()}"
          f", skmeta {skmeta.__version__}, numba {numba.__version__}, numpy "
          f"{np.__version__}, scikit-learn {sklearn.__version__}, torch "
          f"{torch.__version__}")
    print(f"{args.n_tasks} tasks x ({N_SUPPORT} support + {N_QUERY} query) x "
          f"{N_FEATURES} features; meta-batch {args.meta_batch_size}, "
          f"{args.inner_steps} inner steps of {args.inner_lr} on the summed "
          f"log-loss, second order, Adam(lr={args.meta_lr}, betas={BETAS}, "
          f"eps={EPS})")
    print(f"at start: {load_note()}")
    # torch.compile's first call compiles cold, in a fresh inductor cache,
    # unless the caller set TORCHINDUCTOR_CACHE_DIR (must precede any compile)
    inductor_cache = "TORCHINDUCTOR_CACHE_DIR" in os.environ
    if not inductor_cache:
        scratch = tempfile.TemporaryDirectory(prefix="bench-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = scratch.name

    tasks = Tasks(args.n_tasks, args.seed)
    smooth = tasks.support_smoothness()
    print(f"inner_lr x (1/4 lambda_max of the support Gram matrix): median "
          f"{args.inner_lr * np.median(smooth):.2f}, max "
          f"{args.inner_lr * smooth.max():.2f} (< 2: the inner steps descend)")

    batches = draw_batches(args)
    common = (tasks, args.inner_lr, args.inner_steps, args.meta_lr, batches)
    sk = SkmetaMAML(*common)
    torch_impls = []
    for dtype in (torch.float64, torch.float32):
        torch_impls += [FuncMAML(*common, dtype), LoopMAML(*common, dtype)]
        if not args.no_compile:
            torch_impls.append(CompiledFuncMAML(*common, dtype))
    d = sk.problem.n_params
    theta_zero = np.zeros(d)
    theta_rand = np.random.default_rng(args.seed + 2).normal(scale=0.3, size=d)

    # numba compile time in fresh processes; then, in this one, the first
    # meta-iteration of each (numba cache load, torch.compile compilation)
    cold_import, cold_compile = compile_time(cold=True)
    warm_import, warm_compile = compile_time(cold=False)
    _, cold_parallel = compile_time(cold=True, n_threads=2)
    torch.set_num_threads(1)
    first = {impl.name: first_step_time(impl, theta_zero)
             for impl in [sk] + torch_impls}

    # ---- (1) the first meta-gradient, from the same theta0
    print("\n(1) meta-gradient of the first meta-batch: max relative difference "
          "to skmeta's (float64: must be <= 1e-6)")
    ok = True
    for label, theta0 in (("theta0 = 0", theta_zero),
                          ("theta0 ~ N(0, 0.3^2)", theta_rand)):
        sk.reset(theta0)
        sk_loss, sk_grad = sk.meta_grad(0)
        print(f"  {label}: skmeta query loss {sk_loss:.10g}, |meta-gradient| "
              f"{np.linalg.norm(sk_grad):.6g}")
        for impl in torch_impls:
            impl.reset(theta0)
            loss, g = impl.meta_grad(0)
            gap = rel_diff(g, sk_grad)
            lgap = abs(loss - sk_loss) / abs(sk_loss)
            if impl.dtype == torch.float64:
                ok &= gap <= 1e-6 and lgap <= 1e-6
            print(f"    {impl.name:38} gradient {gap:.1e}, loss {lgap:.1e}")

    # ---- (2) the loss curves
    n_iter = args.curve_iters
    print(f"\n(2) loss curves, {n_iter} meta-iterations from theta0 = 0 on the "
          "same meta-batches: max relative difference to skmeta's")
    sk_curve, sk_theta = loss_curve(sk, theta_zero, n_iter)
    print(f"  skmeta: mean query loss (sum over {N_QUERY} rows) {sk_curve[0]:.4f}"
          f" -> {sk_curve[-10:].mean():.4f} (mean of the last 10)")
    for impl in torch_impls:
        curve, theta = loss_curve(impl, theta_zero, n_iter)
        tol = 1e-6 if impl.dtype == torch.float64 else 1e-3
        gap = float(np.max(np.abs(curve - sk_curve) / np.abs(sk_curve)))
        good = gap <= tol
        if impl.dtype == torch.float64:
            ok &= good
        print(f"    {impl.name:38} loss {gap:.1e} (tol {tol:.0e}: "
              f"{'ok' if good else 'FAIL'}), final theta0 "
              f"{rel_diff(theta, sk_theta):.1e}")

    # ---- (3) time per meta-iteration
    print(f"\n(3) seconds per meta-iteration: median over {args.rounds} "
          "interleaved rounds, after warm-up")
    samples = {}
    timer = SkmetaTimer(sys.argv[1:] if argv is None else argv)
    for r in range(args.rounds):
        for k in threads:
            warm, n = per_round["skmeta"]
            samples.setdefault(("skmeta", k), []).extend(
                timer.timed_steps(k, r * 97, warm, n))
        for k in threads:
            torch.set_num_threads(k)
            for impl in torch_impls:
                warm, n = per_round["loop" if isinstance(impl, LoopMAML)
                                    else "func"]
                samples.setdefault((impl.name, k), []).extend(
                    timed_steps(impl, theta_zero, r * 97, warm, n))
    torch.set_num_threads(1)
    sk.set_threads(1)
    medians = {key: statistics.median(v) for key, v in samples.items()}
    lows = {key: min(v) for key, v in samples.items()}
    # skmeta, like torch, at its better thread count
    k_sk = min(threads, key=lambda k: medians[("skmeta", k)])
    t_sk = medians[("skmeta", k_sk)]
    sk_min = min(lows[("skmeta", k)] for k in threads)

    # skmeta's whole fit (it draws its own splits: only its time is compared)
    long_iter = 200 if args.quick else 1000
    fit_marginal = {}
    for k in threads:
        t_fit_one = timer.fit_seconds(1, 3, k)
        t_fit_short = timer.fit_seconds(100, 3, k)
        t_fit_long = timer.fit_seconds(long_iter, 3, k)
        fit_marginal[k] = (t_fit_long - t_fit_short) / (long_iter - 100)
    timer.close()

    header = (f"  {'implementation':40}{'threads':>8}{'median':>10}"
              f"{'vs skmeta':>11}{'fastest':>10}{'vs skmeta':>11}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for k in threads:
        t = medians[("skmeta", k)]
        low = lows[("skmeta", k)]
        print(f"  {'skmeta meta_gradient + Adam (float64)':40}{k:>8}"
              f"{fmt_time(t):>10}{t / t_sk:>10.1f}x{fmt_time(low):>10}"
              f"{low / sk_min:>10.1f}x")
    for k in threads:
        print(f"  {'skmeta MetaClassifier.fit (float64)':40}{k:>8}"
              f"{fmt_time(fit_marginal[k]):>10}{fit_marginal[k] / t_sk:>10.1f}x")
    for impl in torch_impls:
        for k in threads:
            t = medians[(impl.name, k)]
            low = lows[(impl.name, k)]
            print(f"  {impl.name:40}{k:>8}{fmt_time(t):>10}{t / t_sk:>10.1f}x"
                  f"{fmt_time(low):>10}{low / sk_min:>10.1f}x")
    print("  median: of all timed meta-iterations; fastest: the quickest one "
          "(less sensitive to other load on the machine); 'vs skmeta': against"
          f" skmeta at its better thread count ({k_sk})")
    print(f"  MetaClassifier.fit rows (threads = n_jobs): (fit(max_iter="
          f"{long_iter}) - fit(max_iter=100)) / {long_iter - 100}, best of 3 "
          f"each; with n_jobs={threads[-1]} fit(max_iter=1) takes "
          f"{fmt_time(t_fit_one)} (all but the meta-iterations), a whole "
          f"fit(max_iter={long_iter}) {t_fit_long:.3f} s")
    print("  first meta-iteration (1 thread): " + "; ".join(
        f"{name} {fmt_time(t)}" for name, t in first.items()))
    print("  (skmeta: loading its numba cache; torch.compile: compiling, "
          + ("with the inductor cache in $TORCHINDUCTOR_CACHE_DIR)"
             if inductor_cache else "in an empty inductor cache)"))
    print(f"  numba compile (first meta_gradient call minus a second one, fresh "
          f"process): {cold_compile:.2f} s with an empty cache (the parallel "
          f"kernel of n_jobs > 1: {cold_parallel:.2f} s), {warm_compile:.2f} s "
          f"with the cache on disk; import skmeta {warm_import:.2f} s")

    # ---- (4) where skmeta's time goes
    print("\n(4) skmeta, one meta-iteration's parts (median, 1 thread)")
    for name, t in skmeta_breakdown(sk, args.n_tasks, args.meta_batch_size,
                                    args.inner_steps):
        print(f"  {name:62}{fmt_time(t):>10}")

    # ---- targets
    def best(impl):
        return min(medians[(impl.name, k)] for k in threads)

    def speedups(kind):
        return [best(i) / t_sk for i in torch_impls if type(i) is kind]

    func, loop = speedups(FuncMAML), speedups(LoopMAML)
    print("\nTargets (medians; torch at its best thread count; float64, "
          "float32):")
    print(f"  vs torch.func vmap: {func[0]:.1f}x, {func[1]:.1f}x (target >= "
          f"20x): {'met' if min(func) >= 20 else 'NOT met'}")
    print(f"  vs learn2learn-style loop: {loop[0]:.1f}x, {loop[1]:.1f}x (target "
          f">= 300x): {'met' if min(loop) >= 300 else 'NOT met'}")
    if not args.no_compile:
        comp = speedups(CompiledFuncMAML)
        print(f"  (vs torch.compile(torch.func), no target: {comp[0]:.1f}x, "
              f"{comp[1]:.1f}x)")
    print(f"at end: {load_note()}")
    print(f"Agreement checks (float64): {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
