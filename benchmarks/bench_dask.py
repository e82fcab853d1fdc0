"""Fitting on a Dask DataFrame, with the data on the workers, against in memory.

Two measurements, each on a ``LocalCluster`` of ``--workers`` process
workers with one thread each:

``memory``
    ``--memory-tasks`` tasks (default 200,000) of ``--rows`` rows and
    ``--features`` features are generated *on the workers*
    (``dask.dataframe.from_map``: partitions of whole tasks, in increasing
    order, so no repartition is needed) and ``MetaRegressor(Ridge(),
    task_column="task")`` is fitted on them at its defaults. Reported: the
    size of the data on the workers, and the growth of the client process's
    resident memory (before the fit, and the peak during it, sampled every
    50 ms).

``time``
    For each of ``--time-tasks`` (default 100,000 and 1,000,000), the same
    generated data fitted twice: on the Dask DataFrame, and in memory on its
    computed pandas frame with ``n_jobs=--workers`` threads (what a user
    with one machine does). The outer iterations over all tasks are timed
    (the solve of every task and, for Dask, the reduction of the sums):
    seconds per iteration, median, and the bytes that left the workers per
    iteration (``Worker.transfer_outgoing_bytes_total``: to other workers
    and to the client), and the scheduler's count of the bytes the workers
    served over the whole fit (its ``("get-data", "memory-read", "bytes")``
    metric: setup, subsets for the prior's selection, iterations).

``bilevel``
    For each of ``--bilevel-methods`` (default ``maml`` and ``reptile``),
    ``--bilevel-tasks`` tasks (default 10,000) generated on the workers,
    fitted with ``gamma=1.0``, ``meta_batch_size=32`` and ``max_iter=
    --bilevel-iter`` on the Dask DataFrame and in memory on its computed
    frame (``n_jobs=--workers``, and ``n_jobs=1``). Timed: each meta-batch's sums (for
    Dask the round trip to the partitions holding its tasks, for memory the
    kernel; the meta-optimizer's step, on the client, is the same for both),
    median per meta-iteration, and for Dask the bytes that left the workers
    over the meta-iterations, per meta-iteration.

Run::

    python benchmarks/bench_dask.py memory time
    python benchmarks/bench_dask.py bilevel
"""

import argparse
import statistics
import threading
import time
import warnings

import numpy as np
import pandas as pd
import psutil
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge

import skmeta._dask as dask_module
from skmeta import MetaRegressor
from skmeta._methods import _bilevel, _proximal


def make_partition(index, *, tasks_per_part, rows, features, seed):
    """Rows of tasks ``index * tasks_per_part ...``, generated where it runs."""
    rng = np.random.default_rng([seed, index])
    first = index * tasks_per_part
    task = np.repeat(np.arange(first, first + tasks_per_part), rows)
    shared = np.linspace(-1.0, 1.0, features)
    coef = shared + 0.5 * rng.standard_normal((tasks_per_part, features))
    X = rng.standard_normal((tasks_per_part * rows, features))
    y = np.einsum("ij,ij->i", X, coef[task - first]) + rng.standard_normal(
        task.shape[0])
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(features)])
    frame["task"] = task
    frame["target"] = y
    return frame


def generated(n_tasks, n_parts, rows, features, seed=0):
    import dask.dataframe as dd

    tasks_per_part = n_tasks // n_parts
    return dd.from_map(make_partition, range(n_parts),
                       tasks_per_part=tasks_per_part, rows=rows,
                       features=features, seed=seed)


class PeakMemory:
    """Peak resident memory of this process while the block runs."""

    def __init__(self, every=0.05):
        self.every = every
        self.process = psutil.Process()

    def __enter__(self):
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self.end = self.process.memory_info().rss
        self.peak = max(self.peak, self.end)


class IterationTimer:
    """Times the solves of all ``n_tasks`` tasks (the outer iterations)."""

    def __init__(self, n_tasks):
        self.n_tasks = n_tasks
        self.times = []
        self.bytes_out = []
        self.client = None

    def _wrap(self, cls):
        original = cls.solve
        timer = self

        def solve(step, *args, **kwargs):
            if step.n_tasks != timer.n_tasks:
                return original(step, *args, **kwargs)
            before = timer._bytes()
            start = time.perf_counter()
            result = original(step, *args, **kwargs)
            timer.times.append(time.perf_counter() - start)
            if before is not None:
                timer.bytes_out.append(timer._bytes() - before)
            return result
        cls.solve = solve
        return original

    def _bytes(self):
        if self.client is None:
            return None
        return sum(self.client.run(
            lambda dask_worker: dask_worker.transfer_outgoing_bytes_total
        ).values())

    def __enter__(self):
        self._originals = [(cls, self._wrap(cls)) for cls in
                           (_proximal._Iteration, dask_module._DaskIteration)]
        return self

    def __exit__(self, *exc_info):
        for cls, original in self._originals:
            cls.solve = original


def scheduler_get_data_bytes(client):
    """Bytes the workers served (to workers and clients), as the scheduler
    aggregates them; workers report with their heartbeats, hence the wait."""
    time.sleep(3.0)
    metrics = client.run_on_scheduler(
        lambda dask_scheduler: dict(dask_scheduler.cumulative_worker_metrics))
    return sum(v for k, v in metrics.items()
               if isinstance(k, tuple) and k[0] == "get-data" and k[-1] == "bytes")


def run_memory(client, args):
    ddf = generated(args.memory_tasks, args.parts, args.rows, args.features)
    ddf = ddf.persist()
    nbytes = int(ddf.memory_usage(deep=True).sum().compute())
    X, y = ddf.drop(columns="target"), ddf["target"]
    meta = MetaRegressor(Ridge(alpha=1.0), task_column="task")
    start = time.perf_counter()
    with PeakMemory() as memory, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        meta.fit(X, y)
    elapsed = time.perf_counter() - start
    mib = 2**20
    print(f"memory: {args.memory_tasks} tasks, {args.memory_tasks * args.rows} "
          f"rows, {nbytes / mib:.0f} MiB on the workers; fit {elapsed:.1f} s, "
          f"{meta.n_iter_} iterations, prior {meta.prior_kind_}")
    print(f"  client RSS before {memory.start / mib:.0f} MiB, peak "
          f"{memory.peak / mib:.0f} MiB (+{(memory.peak - memory.start) / mib:.0f}"
          f" MiB), after {memory.end / mib:.0f} MiB "
          f"(+{(memory.end - memory.start) / mib:.0f} MiB)")


def run_time(client, args, n_tasks):
    ddf = generated(n_tasks, args.parts, args.rows, args.time_features).persist()
    X, y = ddf.drop(columns="target"), ddf["target"]
    params = dict(max_iter=args.max_iter)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        timer = IterationTimer(n_tasks)
        timer.client = client
        dep_before = scheduler_get_data_bytes(client)
        with timer:
            start = time.perf_counter()
            meta = MetaRegressor(Ridge(alpha=1.0), task_column="task",
                                 **params).fit(X, y)
            total = time.perf_counter() - start
        dep = scheduler_get_data_bytes(client) - dep_before
        rows.append(("dask", total, timer.times, timer.bytes_out,
                     meta.prior_kind_, dep))
        del meta
        frame = ddf.compute()
        Xl, yl = frame.drop(columns="target"), frame["target"]
        timer = IterationTimer(n_tasks)
        with timer:
            start = time.perf_counter()
            local = MetaRegressor(Ridge(alpha=1.0), task_column="task",
                                  n_jobs=args.workers, **params).fit(Xl, yl)
            total = time.perf_counter() - start
        rows.append(("in memory", total, timer.times, [], local.prior_kind_,
                     None))
    print(f"time: {n_tasks} tasks x {args.rows} rows x {args.time_features} "
          f"features, max_iter={args.max_iter}")
    for name, total, times, bytes_out, kind, dep in rows:
        per = statistics.median(times) if times else float("nan")
        moved = (f", {statistics.median(bytes_out) / 1024:.1f} KiB out of the "
                 f"workers per iteration" if bytes_out else "")
        deps = f"; scheduler: workers served {dep / 1024:.1f} KiB in the fit" \
            if dep is not None else ""
        print(f"  {name:>9}: fit {total:.1f} s, {len(times)} full iterations, "
              f"median {per:.2f} s each{moved}{deps} (prior {kind})")


def _outgoing_bytes(client):
    return sum(client.run(
        lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


class MetaIterationTimer:
    """Times each meta-batch's sums: ``contribute`` of the bilevel methods in
    memory (class ``method_class``) and on Dask (``DaskTasks``)."""

    def __init__(self, method_class, client=None):
        self.method_class = method_class
        self.client = client
        self.times = []
        self.bytes = None

    def _timed(self, contribute):
        def timed(*args):
            start = time.perf_counter()
            result = contribute(*args)
            self.times.append(time.perf_counter() - start)
            return result
        return timed

    def __enter__(self):
        timer = self
        self._in_memory = self.method_class.meta_gradient
        self._dask = dask_module.DaskTasks.meta_gradient
        self._adapt = dask_module.DaskTasks.adapt_all

        def in_memory(method, *args, **kwargs):
            return timer._timed(timer._in_memory(method, *args, **kwargs))

        def on_dask(tasks, *args, **kwargs):
            contribute = timer._timed(timer._dask(tasks, *args, **kwargs))
            timer._before = _outgoing_bytes(tasks.client)
            return contribute

        def adapt_all(tasks, *args, **kwargs):
            timer.bytes = _outgoing_bytes(tasks.client) - timer._before
            return timer._adapt(tasks, *args, **kwargs)

        self.method_class.meta_gradient = in_memory
        dask_module.DaskTasks.meta_gradient = on_dask
        dask_module.DaskTasks.adapt_all = adapt_all
        return self

    def __exit__(self, *exc_info):
        self.method_class.meta_gradient = self._in_memory
        dask_module.DaskTasks.meta_gradient = self._dask
        dask_module.DaskTasks.adapt_all = self._adapt


def run_bilevel(client, args):
    n_tasks = args.bilevel_tasks
    ddf = generated(n_tasks, args.parts, args.rows, args.time_features).persist()
    frame = ddf.compute()
    print(f"bilevel: {n_tasks} tasks x {args.rows} rows x {args.time_features} "
          f"features in {args.parts} partitions, meta_batch_size=32, "
          f"max_iter={args.bilevel_iter}, gamma=1.0")
    for method in args.bilevel_methods:
        method_class = _bilevel.MetaSGD if method == "metasgd" else {
            "maml": _bilevel.MAML, "imaml": _bilevel.IMAML,
            "reptile": _bilevel.Reptile}[method]
        params = dict(method=method, gamma=1.0, meta_batch_size=32,
                      max_iter=args.bilevel_iter, random_state=0,
                      task_column="task")
        results = []
        for name, X, y, n_jobs in (
                ("dask", ddf.drop(columns="target"), ddf["target"], None),
                ("in memory", frame.drop(columns="target"), frame["target"],
                 args.workers),
                ("in memory, 1 thread", frame.drop(columns="target"),
                 frame["target"], 1)):
            with MetaIterationTimer(method_class) as timer:
                start = time.perf_counter()
                meta = MetaRegressor(Ridge(alpha=1.0), n_jobs=n_jobs,
                                     **params).fit(X, y)
                total = time.perf_counter() - start
            results.append((name, total, timer, meta.meta_params_))
        gap = np.max(np.abs(results[0][3] - results[1][3]))
        print(f"  {method} (meta_params_ of the two fits within {gap:.1e}):")
        for name, total, timer, _ in results:
            per = statistics.median(timer.times) * 1e3
            moved = ("" if timer.bytes is None else
                     f", {timer.bytes / len(timer.times) / 1024:.1f} KiB out of "
                     "the workers per meta-iteration")
            print(f"    {name:>19}: fit {total:.2f} s, {len(timer.times)} "
                  f"meta-iterations, median {per:.3f} ms each{moved}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", choices=["memory", "time", "bilevel"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--features", type=int, default=9)
    parser.add_argument("--time-features", type=int, default=4)
    parser.add_argument("--memory-tasks", type=int, default=200_000)
    parser.add_argument("--time-tasks", type=int, nargs="+",
                        default=[100_000, 1_000_000])
    parser.add_argument("--max-iter", type=int, default=6)
    parser.add_argument("--bilevel-tasks", type=int, default=10_000)
    parser.add_argument("--bilevel-iter", type=int, default=200)
    parser.add_argument("--bilevel-methods", nargs="+",
                        default=["maml", "reptile"],
                        choices=["maml", "metasgd", "imaml", "reptile"])
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1,
                      processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        if "memory" in args.what:
            run_memory(client, args)
        if "time" in args.what:
            for n_tasks in args.time_tasks:
                run_time(client, args, n_tasks)
        if "bilevel" in args.what:
            run_bilevel(client, args)


if __name__ == "__main__":
    main()
