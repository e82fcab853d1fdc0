"""Task shards on a Dask cluster give the same models as on one machine."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_problem, make_tasks
from joblib import parallel_backend

import skmeta._methods._inner as inner_module
from skmeta import MetaClassifier
from skmeta._kernels._codes import LOGISTIC
from skmeta._kernels._layout import make_batch
from skmeta._methods._inner import InnerSolver
from skmeta.datasets import make_meta_classification


@pytest.mark.parametrize("method, processes", [("proximal", False),
                                               ("proximal", True),
                                               ("maml", False)])
def test_dask_backend_gives_the_same_fit(method, processes, monkeypatch):
    distributed = pytest.importorskip("distributed")
    # small data normally stays in one shard: split it to exercise the cluster
    monkeypatch.setattr(inner_module, "MIN_SHARD_ENTRIES", 0)
    X, y, tasks = make_meta_classification(n_tasks=80, n_samples_per_task=15,
                                           n_features=6, random_state=0)
    params = dict(method=method, gamma=1.0, max_iter=20, random_state=0)
    local = MetaClassifier(n_jobs=1, **params).fit(X, y, tasks=tasks)
    with distributed.Client(processes=processes, n_workers=2,
                            threads_per_worker=1, dashboard_address=None):
        with parallel_backend("dask"):
            remote = MetaClassifier(n_jobs=2, **params).fit(X, y, tasks=tasks)
            predictions = remote.predict(X, tasks=tasks)
    np.testing.assert_array_equal(remote.task_params_, local.task_params_)
    np.testing.assert_array_equal(remote.meta_params_, local.meta_params_)
    np.testing.assert_array_equal(predictions, local.predict(X, tasks=tasks))


@pytest.mark.parametrize("backend, params", [
    ("loky", {}),
    ("multiprocessing", {}),
    ("multiprocessing", dict(method="maml", gamma=1.0, max_iter=5,
                             random_state=0)),
])
def test_process_backends_give_the_same_fit(backend, params, monkeypatch):
    # prior="auto" opens the candidates' solver inside the fit's: the inner
    # one's exit terminated the pool of the backend both configured (an
    # AttributeError of NoneType); maml's adaptation sent a closure, which
    # the multiprocessing backend's pickle refused
    monkeypatch.setattr(inner_module, "MIN_SHARD_ENTRIES", 0)
    X, y, tasks = make_meta_classification(n_tasks=40, n_samples_per_task=15,
                                           n_features=4, random_state=1)
    local = MetaClassifier(n_jobs=1, **params).fit(X, y, tasks=tasks)
    with parallel_backend(backend, n_jobs=2):
        remote = MetaClassifier(n_jobs=2, **params).fit(X, y, tasks=tasks)
        adapted = remote.adapt_tasks(X, y, tasks=tasks + 100)
    np.testing.assert_array_equal(remote.task_params_, local.task_params_)
    np.testing.assert_array_equal(remote.meta_params_, local.meta_params_)
    expected = local.adapt_tasks(X, y, tasks=tasks + 100)
    for task in expected:
        np.testing.assert_array_equal(adapted[task].coef_, expected[task].coef_)


_FORKED_CHILD = """
import multiprocessing as mp, warnings
import numpy as np
from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification

X, y, t = make_meta_classification(n_tasks=40, n_samples_per_task=20,
                                   n_features=5, random_state=0)
kw = dict(method="maml", gamma=1.0, max_iter=20, meta_batch_size=16,
          random_state=0, n_jobs=2)

def child(queue):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = MetaClassifier(**kw).fit(X, y, tasks=t)
    queue.put((meta.meta_params_, [str(w.message) for w in caught]))

if __name__ == "__main__":
    import numba
    parent = MetaClassifier(**kw).fit(X, y, tasks=t)
    context = mp.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    params, messages = queue.get(timeout=300)
    process.join(60)
    assert process.exitcode == 0, process.exitcode
    assert np.array_equal(params, parent.meta_params_)
    forked = [m for m in messages if "forked" in m]
    print(numba.threading_layer(), len(forked))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_of_a_threaded_fit_fits_alike(tmp_path):
    # GNU OpenMP kills a child forked after its parent ran OpenMP threads; the
    # child then runs the kernels on one thread, with the same results, and
    # says so once (with TBB, numba's first choice, nothing needs saying)
    script = tmp_path / "forked_child.py"
    script.write_text(_FORKED_CHILD)
    done = subprocess.run([sys.executable, str(script)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    layer, n_warned = done.stdout.split()
    assert int(n_warned) == (1 if layer == "omp" else 0)


def test_process_workers_send_back_the_kept_inverses(monkeypatch):
    # a shard solved in another process updates the kept inverse Hessians on
    # its copy: they come back with the solutions, so a second solve from a
    # moved prior mean starts from them, as on threads, to the last bit
    monkeypatch.setattr(inner_module, "MIN_SHARD_ENTRIES", 0)
    rng = np.random.default_rng(5)
    X, y, sw, tasks = make_tasks(LOGISTIC, [12, 9, 15, 11, 8, 14], 3, seed=rng)
    problem = make_problem(LOGISTIC, 3, lam2=0.5)
    batch, _ = make_batch(X, y, sw, tasks, 6)
    d = problem.n_params
    theta0, precision = np.zeros(d), np.full(d, 2.0)
    moved = theta0 + 0.3

    def two_solves():
        with InnerSolver(batch, problem, n_jobs=2) as solver:
            first = solver.solve(theta0, precision, np.zeros((6, d)),
                                 inverse="sum")
            kept = solver.inverse_ok.copy()
            second = solver.solve(moved, precision, first.theta,
                                  solved_at=theta0)
        return kept, second

    kept_threads, on_threads = two_solves()
    with parallel_backend("loky", n_jobs=2):
        kept_processes, in_processes = two_solves()
    assert np.all(kept_threads) and np.all(kept_processes)
    np.testing.assert_array_equal(in_processes.theta, on_threads.theta)
    np.testing.assert_array_equal(in_processes.n_iter, on_threads.n_iter)


def test_tasks_whose_inverse_hessians_are_the_work_are_sharded():
    # 200 tasks of 5 rows and 100 features: X has 1e5 entries (one shard's
    # worth), but each task's 101 x 101 inverse Hessian is summed too, 2e6
    # entries in all; with 20 features it is 88,200 and X 2e4: one shard
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(200), 5)
    for n_features, threaded in ((100, True), (20, False)):
        X = rng.normal(size=(1000, n_features))
        y = (X[:, 0] > 0).astype(float)
        batch, _ = make_batch(X, y, np.ones(1000), tasks, 200)
        solver = InnerSolver(batch, make_problem(LOGISTIC, n_features), n_jobs=2)
        assert not solver.diagonal
        assert (len(solver.ranges) > 1) is threaded
        # shards hold whole summation blocks: the sums do not depend on them
        assert all(a % solver.block == 0 for a, _ in solver.ranges)


def test_shards_hold_similar_work_where_tasks_differ_in_size():
    # 100 tasks of 5 rows, then 100 of 150, each summing a 101 x 101 inverse
    # Hessian: cut by rows, the first shard took 117 tasks and about four
    # times any other's work
    rng = np.random.default_rng(0)
    sizes = np.r_[np.full(100, 5), np.full(100, 150)]
    tasks = np.repeat(np.arange(200), sizes)
    X = rng.normal(size=(sizes.sum(), 100))
    y = (X[:, 0] > 0).astype(float)
    batch, _ = make_batch(X, y, np.ones(len(y)), tasks, 200)
    solver = InnerSolver(batch, make_problem(LOGISTIC, 100), n_jobs=2)
    assert not solver.diagonal and len(solver.ranges) > 2
    per_task = sizes * 100 + 101 * 101
    work = [int(per_task[a:b].sum()) for a, b in solver.ranges]
    # cut at summation blocks: each shard within one block of an even share
    blocks = [per_task[a:a + solver.block].sum()
              for a in range(0, 200, solver.block)]
    assert max(work) <= per_task.sum() / len(work) + max(blocks)
    assert all(a % solver.block == 0 for a, _ in solver.ranges)
