"""Fits on Dask collections (data kept on the workers) equal in-memory fits."""

import pickle
import warnings

import numpy as np
import pytest
from conftest import poisson_tasks_of_unequal_sizes
from hypothesis import given, settings
from hypothesis import strategies as st

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
pd = pytest.importorskip("pandas")

from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import (  # noqa: E402
    ElasticNet,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
)
from sklearn.neural_network import MLPRegressor  # noqa: E402

from skmeta import MetaClassifier, MetaRegressor, repartition_by_task  # noqa: E402
from skmeta.datasets import (  # noqa: E402
    make_meta_classification,
    make_meta_regression,
    make_nested_tasks,
)

# what "the same fit" means: the sums are added in another order
ATOL = 1e-8


@pytest.fixture(scope="module")
def client():
    # process workers: the fit must not rely on sharing memory with them
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                  processes=True, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


def _frame(X, y, tasks, npartitions, shuffle_seed=0):
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    df["task"] = tasks
    df["target"] = y
    shuffled = df.sample(frac=1.0, random_state=shuffle_seed)
    ddf = repartition_by_task(dd.from_pandas(shuffled, npartitions=npartitions),
                              "task").persist()
    return ddf


def _assert_same_fit(remote, local):
    np.testing.assert_array_equal(remote.tasks_, local.tasks_)
    assert remote.prior_kind_ == local.prior_kind_
    assert remote.n_iter_ == local.n_iter_
    np.testing.assert_allclose(remote.task_params_.compute(), local.task_params_,
                               rtol=0, atol=ATOL)
    np.testing.assert_allclose(remote.meta_params_, local.meta_params_,
                               rtol=0, atol=ATOL)
    # the strength is a geometric mean over the precision's eigenvalues; a
    # low-rank prior has some at 1e-12 of the largest, which rounding moves
    np.testing.assert_allclose(remote.gamma_, local.gamma_, rtol=1e-6)
    np.testing.assert_allclose(remote.prior_precision_, local.prior_precision_,
                               rtol=1e-7, atol=ATOL)


@pytest.mark.parametrize("prior", ["diagonal", "full"])
def test_averaged_losses_of_unequal_tasks_fit_as_in_memory(client, prior):
    # PoissonRegressor averages its loss: each task's moments enter the
    # M-step in the units of its own prior (its rows' weight s_t), which
    # the partitions sum as sum_t s_t dev dev' and shift to the new mean by
    # sum_t s_t theta_t
    X, y, tasks = poisson_tasks_of_unequal_sizes(2, 30, 3, 25, 3)
    ddf = _frame(X, y, tasks, npartitions=3)
    data = ddf.compute()
    params = dict(prior=prior, tol=1e-10, max_iter=2000)
    local = MetaRegressor(PoissonRegressor(alpha=0.1), task_column="task",
                          **params).fit(data.drop(columns="target"),
                                        data["target"])
    remote = MetaRegressor(PoissonRegressor(alpha=0.1), task_column="task",
                           **params).fit(ddf.drop(columns="target"),
                                         ddf["target"])
    np.testing.assert_allclose(remote.meta_params_, local.meta_params_,
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(remote.prior_precision_, local.prior_precision_,
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(remote.task_params_.compute(),
                               local.task_params_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("params", [
    {},  # the learned defaults: prior="auto", gamma="auto"
    {"gamma": 2.0, "prior": "isotropic"},  # fixed prior: Newton on theta0
    {"prior": "diagonal"},
    # the pooled model: its rows gathered from the partitions
    {"prior": "pooled"},
])
def test_dataframe_fit_equals_in_memory_fit(client, params):
    X, y, tasks = make_meta_regression(n_tasks=40, n_samples_per_task=15,
                                       n_features=3, random_state=0)
    ddf = _frame(X, y, tasks, npartitions=3)
    data = ddf.compute()
    meta = MetaRegressor(Ridge(alpha=0.5), task_column="task", **params)
    local = meta.fit(data.drop(columns="target"), data["target"])
    remote = MetaRegressor(Ridge(alpha=0.5), task_column="task", **params).fit(
        ddf.drop(columns="target"), ddf["target"])
    assert isinstance(remote.task_params_, da.Array)
    _assert_same_fit(remote, local)
    # predictions on a Dask collection are a Dask collection, with the
    # same values; an unseen task gets the prior model
    predicted = remote.predict(ddf.drop(columns="target"))
    assert isinstance(predicted, da.Array)
    np.testing.assert_allclose(predicted.compute(),
                               local.predict(data.drop(columns="target")),
                               rtol=1e-9, atol=ATOL)
    label = data["task"].iloc[0]
    np.testing.assert_allclose(remote.task_estimator(label).coef_,
                               local.task_estimator(label).coef_, atol=ATOL)
    # score on the frame itself: a Dask Series' length is unknown until
    # computed ("Cannot call len() on object with unknown chunk size")
    assert remote.score(ddf.drop(columns="target"), ddf["target"]) == \
        pytest.approx(local.score(data.drop(columns="target"), data["target"]),
                      rel=1e-9)


def test_many_tasks_use_the_warm_up_and_the_selection_subset(client):
    # above 2048 tasks the prior is first learned on 256 of them and the
    # structures are compared on 1000: both subsets come from the workers
    X, y, tasks = make_meta_regression(n_tasks=2100, n_samples_per_task=5,
                                       n_features=2, random_state=1)
    ddf = _frame(X, y, tasks, npartitions=4)
    data = ddf.compute()
    local = MetaRegressor(Ridge(alpha=1.0), task_column="task").fit(
        data.drop(columns="target"), data["target"])
    remote = MetaRegressor(Ridge(alpha=1.0), task_column="task").fit(
        ddf.drop(columns="target"), ddf["target"])
    _assert_same_fit(remote, local)
    assert remote.prior_scores_.keys() == local.prior_scores_.keys()


def _classification_arrays(n_tasks, n_samples_per_task, tasks_per_chunk,
                           random_state, column_chunks=4):
    """Rows sorted by string task label, in memory and as Dask arrays whose
    chunks end at task boundaries."""
    X, y, tasks = make_meta_classification(
        n_tasks=n_tasks, n_samples_per_task=n_samples_per_task, n_features=4,
        random_state=random_state)
    labels = np.array([f"store-{t:03d}" for t in tasks], dtype=object)
    order = np.argsort(labels, kind="stable")
    X, y, labels = X[order], y[order], labels[order]
    rows = tasks_per_chunk * n_samples_per_task
    return (X, y, labels), (da.from_array(X, chunks=(rows, column_chunks)),
                            da.from_array(y, chunks=rows),
                            da.from_array(labels, chunks=rows))


def test_dask_arrays_classifier_string_tasks(client):
    # columns in two chunks: rechunked by the fit
    (X, y, labels), (Xd, yd, td) = _classification_arrays(
        30, 20, tasks_per_chunk=10, random_state=2, column_chunks=2)
    params = dict(prior="diagonal", max_iter=50)
    local = MetaClassifier(LogisticRegression(C=2.0), **params).fit(
        X, y, tasks=labels)
    remote = MetaClassifier(LogisticRegression(C=2.0), **params).fit(
        Xd, yd, tasks=td)
    _assert_same_fit(remote, local)
    np.testing.assert_array_equal(remote.classes_, local.classes_)
    proba = remote.predict_proba(Xd, tasks=td)
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(),
                               local.predict_proba(X, tasks=labels), atol=1e-9)
    np.testing.assert_array_equal(remote.predict(Xd, tasks=td).compute(),
                                  local.predict(X, tasks=labels))
    # adapt uses the learned prior alone: the same few-shot model
    np.testing.assert_allclose(remote.adapt(X[:5], y[:5]).coef_,
                               local.adapt(X[:5], y[:5]).coef_, atol=ATOL)

    # a model fitted in memory averages over its posteriors for Dask rows too
    averaged = MetaClassifier(LogisticRegression(C=2.0), posterior_proba=True,
                              **params).fit(X, y, tasks=labels)
    np.testing.assert_allclose(
        averaged.predict_proba(Xd, tasks=td).compute(),
        averaged.predict_proba(X, tasks=labels), rtol=1e-12)
    # a fit on Dask collections keeps no posteriors: refused before fitting
    with pytest.raises(ValueError, match="posterior_proba=True.*Dask"):
        MetaClassifier(posterior_proba=True, **params).fit(Xd, yd, tasks=td)


def test_averaged_loss_weights_and_empty_tasks_weight(client):
    # ElasticNet averages its loss over a task's weight: the task scales are
    # computed on the workers, and a task whose rows all weigh zero is
    # absent there as in memory
    X, y, tasks = make_meta_regression(n_tasks=24, n_samples_per_task=10,
                                       n_features=3, random_state=3)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=y.shape[0])
    weights[tasks == tasks[0]] = 0.0
    Xd = da.from_array(X, chunks=(80, 3))
    yd, td, wd = (da.from_array(a, chunks=80) for a in (y, tasks, weights))
    params = dict(gamma="auto", prior="isotropic")
    estimator = ElasticNet(alpha=0.01, l1_ratio=0.0)
    local = MetaRegressor(estimator, **params).fit(X, y, tasks=tasks,
                                                   sample_weight=weights)
    remote = MetaRegressor(estimator, **params).fit(Xd, yd, tasks=td,
                                                    sample_weight=wd)
    _assert_same_fit(remote, local)
    assert tasks[0] not in remote.tasks_


def test_a_class_only_in_tasks_without_weight_is_still_a_class(client):
    # the workers leave a task without weight out, and count its rows'
    # classes, as fit in memory does
    X, y, tasks = make_meta_classification(n_tasks=12, n_samples_per_task=10,
                                           n_features=4, random_state=4)
    y = np.where(tasks == 11, 2, y)
    weights = (tasks != 11).astype(float)
    Xd = da.from_array(X, chunks=(40, 4))
    yd, td, wd = (da.from_array(a, chunks=40) for a in (y, tasks, weights))
    params = dict(gamma=1.0, prior="isotropic")
    local = MetaClassifier(**params).fit(X, y, tasks=tasks, sample_weight=weights)
    remote = MetaClassifier(**params).fit(Xd, yd, tasks=td, sample_weight=wd)
    np.testing.assert_array_equal(remote.classes_, [0, 1, 2])
    np.testing.assert_array_equal(remote.classes_, local.classes_)
    _assert_same_fit(remote, local)
    # also where that task's partition has no other task
    Xd = da.from_array(X, chunks=((110, 10), (4,)))
    yd, td, wd = (da.from_array(a, chunks=((110, 10),))
                  for a in (y, tasks, weights))
    alone = MetaClassifier(**params).fit(Xd, yd, tasks=td, sample_weight=wd)
    np.testing.assert_array_equal(alone.classes_, [0, 1, 2])
    _assert_same_fit(alone, local)


def test_poisson_full_prior(client):
    rng = np.random.default_rng(4)
    n_tasks, n = 20, 25
    tasks = np.repeat(np.arange(n_tasks), n)
    X = rng.normal(size=(n_tasks * n, 3))
    coef = 0.3 + 0.2 * rng.normal(size=(n_tasks, 3))
    y = rng.poisson(np.exp(np.einsum("ij,ij->i", X, coef[tasks]) * 0.5))
    Xd = da.from_array(X, chunks=(100, 3))
    yd, td = da.from_array(y, chunks=100), da.from_array(tasks, chunks=100)
    params = dict(prior="full")
    local = MetaRegressor(PoissonRegressor(alpha=0.1), **params).fit(
        X, y, tasks=tasks)
    remote = MetaRegressor(PoissonRegressor(alpha=0.1), **params).fit(
        Xd, yd, tasks=td)
    _assert_same_fit(remote, local)


def test_the_loss_at_zero_on_dask_is_the_in_memory_one(client, monkeypatch):
    # a learned prior counts as degenerate where its models fit their rows
    # worse than all-zero parameters; on Dask that loss is summed on the
    # workers: the same as in memory, log(2) per unit of weight for binary
    # tasks (here with sample weights, and a task that has none)
    from skmeta._methods import _proximal

    seen = []
    check = _proximal.raise_if_degenerate

    def recording(step, fit, **kwargs):
        seen.append(step.zero_loss())
        return check(step, fit, **kwargs)

    monkeypatch.setattr(_proximal, "raise_if_degenerate", recording)
    X, y, tasks = make_meta_classification(
        n_tasks=12, n_samples_per_task=20, n_features=3, n_informative=3,
        n_redundant=0, random_state=0)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, y.size)
    weights[tasks == 5] = 0.0
    params = dict(prior="isotropic")  # one structure: one check per fit
    MetaClassifier(**params).fit(X, y, tasks=tasks, sample_weight=weights)
    Xd = da.from_array(X, chunks=(80, 3))
    yd, td, wd = (da.from_array(a, chunks=80) for a in (y, tasks, weights))
    MetaClassifier(**params).fit(Xd, yd, tasks=td, sample_weight=wd)
    local, remote = seen
    np.testing.assert_allclose(remote, local, rtol=1e-12)
    np.testing.assert_allclose(local, np.log(2.0) * weights.sum(), rtol=1e-12)


def test_repartition_by_task_keeps_rows_and_makes_tasks_whole(client):
    rng = np.random.default_rng(5)
    labels = rng.choice(["a", "b", "c", "d", "e", "f", "g"], size=300)
    df = pd.DataFrame({"task": labels, "x": rng.normal(size=300)})
    ddf = repartition_by_task(dd.from_pandas(df, npartitions=5), "task",
                              npartitions=3)
    parts = [p.compute() for p in ddf.partitions]
    seen = [set(p["task"]) for p in parts if len(p)]
    for i, a in enumerate(seen):
        for b in seen[i + 1:]:
            assert not a & b
            assert max(a) < min(b)
    out = pd.concat(parts)
    assert sorted(out["x"]) == sorted(df["x"])
    with pytest.raises(ValueError, match="not a column"):
        repartition_by_task(ddf, "store")
    with pytest.raises(TypeError, match="Dask DataFrame"):
        repartition_by_task(df, "task")


def test_collection_not_partitioned_by_task_is_refused(client):
    X, y, tasks = make_meta_regression(n_tasks=6, n_samples_per_task=10,
                                       n_features=2, random_state=6)
    Xd = da.from_array(X, chunks=(25, 2))  # cuts through tasks
    yd, td = da.from_array(y, chunks=25), da.from_array(tasks, chunks=25)
    with pytest.raises(ValueError, match="repartition_by_task"):
        MetaRegressor(Ridge()).fit(Xd, yd, tasks=td)


@pytest.mark.parametrize("base, params, match", [
    (Ridge(), {"prior": "mixture"}, "prior='mixture'"),
    (MLPRegressor(hidden_layer_sizes=(3,)), {"method": "maml", "inner_lr": 0.01},
     "linear base estimators"),
])
def test_unsupported_settings_are_refused(client, base, params, match):
    X, y, tasks = make_meta_regression(n_tasks=4, n_samples_per_task=10,
                                       n_features=2, random_state=7)
    Xd = da.from_array(X, chunks=(10, 2))
    yd, td = da.from_array(y, chunks=10), da.from_array(tasks, chunks=10)
    with pytest.raises(ValueError, match=match):
        MetaRegressor(base, **params).fit(Xd, yd, tasks=td)


def test_unlabeled_rows_are_refused(client):
    X, y, tasks = make_meta_classification(n_tasks=4, n_samples_per_task=10,
                                           n_features=4, random_state=7)
    y = np.where(np.arange(len(y)) % 5 == 0, -1, y)
    Xd = da.from_array(X, chunks=(10, 4))
    yd, td = da.from_array(y, chunks=10), da.from_array(tasks, chunks=10)
    with pytest.raises(ValueError, match="unlabeled_weight"):
        MetaClassifier(LogisticRegression(), method="reptile",
                       unlabeled_weight=0.5).fit(Xd, yd, tasks=td)


def _assert_same_bilevel_fit(remote, local):
    assert isinstance(remote.task_params_, da.Array)
    _assert_same_fit(remote, local)
    if hasattr(local, "inner_lr_"):
        np.testing.assert_allclose(remote.inner_lr_, local.inner_lr_, rtol=1e-8)


@pytest.mark.parametrize("method, params", [
    ("maml", {}),
    ("maml", {"first_order": True, "inner_lr": "auto"}),
    ("metasgd", {}),
    ("imaml", {"gamma": 1.0}),
    ("reptile", {}),
])
def test_bilevel_fit_equals_in_memory_fit(client, method, params):
    # 7 tasks per partition at most and meta-batches of 9: every meta-batch
    # is summed over several partitions
    X, y, tasks = make_meta_regression(n_tasks=20, n_samples_per_task=10,
                                       n_features=3, random_state=3)
    ddf = _frame(X, y, tasks, npartitions=3)
    data = ddf.compute()
    kwargs = dict(method=method, max_iter=12, meta_batch_size=9,
                  random_state=0, task_column="task", **params)
    local = MetaRegressor(Ridge(alpha=0.5), **kwargs).fit(
        data.drop(columns="target"), data["target"])
    remote = MetaRegressor(Ridge(alpha=0.5), **kwargs).fit(
        ddf.drop(columns="target"), ddf["target"])
    _assert_same_bilevel_fit(remote, local)
    # the meta-parameters moved: the equality is not that of two starts
    start = MetaRegressor(Ridge(alpha=0.5), **{**kwargs, "max_iter": 1}).fit(
        data.drop(columns="target"), data["target"])
    assert np.max(np.abs(local.meta_params_ - start.meta_params_)) > 1e-6
    np.testing.assert_allclose(
        remote.predict(ddf.drop(columns="target")).compute(),
        local.predict(data.drop(columns="target")), atol=1e-8)


def test_bilevel_dask_arrays_classifier_whole_meta_batch(client):
    # string task labels, Dask arrays, and meta-batches of every task (each
    # meta-iteration touches every partition)
    (X, y, labels), (Xd, yd, td) = _classification_arrays(
        12, 16, tasks_per_chunk=4, random_state=4)
    kwargs = dict(method="maml", max_iter=8, meta_batch_size=12, random_state=1)
    local = MetaClassifier(LogisticRegression(C=2.0), **kwargs).fit(
        X, y, tasks=labels)
    remote = MetaClassifier(LogisticRegression(C=2.0), **kwargs).fit(
        Xd, yd, tasks=td)
    _assert_same_bilevel_fit(remote, local)
    np.testing.assert_allclose(remote.predict_proba(Xd, tasks=td).compute(),
                               local.predict_proba(X, tasks=labels), atol=1e-9)


def test_mixed_inputs_are_refused(client):
    X, y, tasks = make_meta_regression(n_tasks=4, n_samples_per_task=10,
                                       n_features=2, random_state=8)
    Xd = da.from_array(X, chunks=(10, 2))
    with pytest.raises(TypeError, match="y must be one too"):
        MetaRegressor(Ridge()).fit(Xd, y, tasks=da.from_array(tasks, chunks=10))
    with pytest.raises(ValueError, match="task identities"):
        MetaRegressor(Ridge()).fit(Xd, da.from_array(y, chunks=10))


def test_sparse_chunks_are_refused_before_any_partition_is_read(client):
    import scipy.sparse as sp

    X, y, tasks = make_meta_regression(n_tasks=4, n_samples_per_task=10,
                                       n_features=2, random_state=8)

    def never_read(block):
        raise AssertionError("a partition was read")

    Xs = da.from_array(X, chunks=(10, 2)).map_blocks(
        never_read, meta=sp.csr_matrix((0, 2)))
    with pytest.raises(TypeError, match="dense chunks; X holds sparse"):
        MetaRegressor(Ridge()).fit(Xs, da.from_array(y, chunks=10),
                                   tasks=da.from_array(tasks, chunks=10))


def test_nested_tasks_chunked_along_their_levels_predict(client):
    # the levels' blocks of a 2-D tasks are not row partitions
    X, y, tasks = make_nested_tasks(n_groups=4, n_tasks_per_group=5,
                                    n_features=3, random_state=0)
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=tasks)
    Xd = da.from_array(X, chunks=(100, 3))
    for chunks in ((100, 1), (100, 2)):
        out = meta.predict(Xd, tasks=da.from_array(tasks, chunks=chunks))
        np.testing.assert_array_equal(out.compute(),
                                      meta.predict(X, tasks=tasks))


def test_prior_estimator_keeps_the_given_prior_mean(client):
    # a prior mean from a source model is not learned: the fixed-theta0 path
    X, y, tasks = make_meta_regression(n_tasks=12, n_samples_per_task=10,
                                       n_features=3, random_state=9)
    source = Ridge(alpha=1.0).fit(X, y)
    Xd = da.from_array(X, chunks=(40, 3))
    yd, td = da.from_array(y, chunks=40), da.from_array(tasks, chunks=40)
    params = dict(prior_estimator=source, gamma="auto", prior="isotropic")
    local = MetaRegressor(Ridge(alpha=1.0), **params).fit(X, y, tasks=tasks)
    remote = MetaRegressor(Ridge(alpha=1.0), **params).fit(Xd, yd, tasks=td)
    _assert_same_fit(remote, local)
    np.testing.assert_allclose(remote.meta_params_,
                               np.r_[source.coef_, source.intercept_])


def test_in_memory_model_predicts_dask_collections(client):
    X, y, tasks = make_meta_classification(n_tasks=10, n_samples_per_task=20,
                                           n_features=3, n_informative=2,
                                           n_redundant=0, random_state=10)
    meta = MetaClassifier(gamma=1.0, prior="isotropic").fit(X, y, tasks=tasks)
    # a task never seen gets the prior model, here too
    tasks_q = np.where(tasks == tasks[0], 999, tasks)
    Xd = da.from_array(X, chunks=(50, 3))
    td = da.from_array(tasks_q, chunks=50)
    for name in ("predict", "predict_proba", "decision_function",
                 "predict_log_proba"):
        out = getattr(meta, name)(Xd, tasks=td)
        assert isinstance(out, da.Array)
        np.testing.assert_array_equal(out.compute(),
                                      getattr(meta, name)(X, tasks=tasks_q))
    frame = dd.from_pandas(
        pd.DataFrame(X, columns=["a", "b", "c"]).assign(task=tasks_q, y=y),
        npartitions=3)
    by_column = clone(meta).set_params(task_column="task").fit(
        frame.compute().drop(columns="y"), y)
    # chunks that do not match are refused as fit refuses them (a worker
    # found the mismatch only when the predictions were computed)
    with pytest.raises(ValueError, match=r"tasks is chunked \(40, 60, 50, 50\) "
                       r"along the samples but X \(50, 50, 50, 50\)"):
        meta.predict(da.from_array(X, chunks=(50, 3)),
                     tasks=da.from_array(tasks_q, chunks=((40, 60, 50, 50),)))
    in_memory = frame.compute()
    assert by_column.score(frame.drop(columns="y"), frame["y"]) == \
        by_column.score(in_memory.drop(columns="y"), in_memory["y"])


@settings(max_examples=10, deadline=None)
@given(labels=st.lists(st.integers(-3, 30), min_size=1, max_size=60),
       n_in=st.integers(1, 4), n_out=st.integers(1, 4))
def test_repartition_by_task_fuzzed(client, labels, n_in, n_out):
    df = pd.DataFrame({"task": labels, "x": np.arange(len(labels), dtype=float)})
    n_in = min(n_in, len(labels))
    ddf = repartition_by_task(dd.from_pandas(df, npartitions=n_in), "task",
                              npartitions=n_out)
    parts = [p for p in (q.compute() for q in ddf.partitions) if len(p)]
    for before, after in zip(parts[:-1], parts[1:]):
        assert before["task"].max() < after["task"].min()
    assert sorted(pd.concat(parts)["x"]) == sorted(df["x"])


@pytest.mark.parametrize("params", [{"gamma": 1.0, "prior": "isotropic"},
                                    {"gamma": "auto", "prior": "diagonal"}])
def test_wide_tasks(client, params):
    # more than 512 parameters: only the inverse Hessians' diagonals are
    # summed, and the prior mean's Newton step multiplies by their sum
    # through one map over the partitions per conjugate-gradient step
    rng = np.random.default_rng(11)
    n_tasks, n, p = 8, 6, 515
    tasks = np.repeat(np.arange(n_tasks), n)
    X = rng.normal(size=(n_tasks * n, p))
    y = X[:, :3].sum(axis=1) + rng.normal(size=n_tasks * n)
    local = MetaRegressor(Ridge(alpha=1.0), **params).fit(X, y, tasks=tasks)
    remote = MetaRegressor(Ridge(alpha=1.0), **params).fit(
        da.from_array(X, chunks=(24, p)), da.from_array(y, chunks=24),
        tasks=da.from_array(tasks, chunks=24))
    _assert_same_fit(remote, local)


def test_wide_tasks_without_row_space_factors(client):
    # more rows than parameters: the row space does not pay, no partition
    # keeps factors, and the prior mean's Newton step takes the diagonal of
    # its system, as the fit in memory does (it asked the partitions for
    # products they did not have, and raised a TypeError)
    rng = np.random.default_rng(12)
    n_tasks, n, p = 4, 600, 515
    tasks = np.repeat(np.arange(n_tasks), n)
    X = rng.normal(size=(n_tasks * n, p))
    y = X[:, :3].sum(axis=1) + rng.normal(size=n_tasks * n)
    local = MetaRegressor(Ridge(), gamma=1.0, prior="isotropic").fit(
        X, y, tasks=tasks)
    remote = MetaRegressor(Ridge(), gamma=1.0, prior="isotropic").fit(
        da.from_array(X, chunks=(2 * n, p)), da.from_array(y, chunks=2 * n),
        tasks=da.from_array(tasks, chunks=2 * n))
    _assert_same_fit(remote, local)


def test_nested_tasks_are_refused(client):
    X, y, tasks = make_meta_regression(n_tasks=4, n_samples_per_task=10,
                                       n_features=2, random_state=7)
    frame = pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "region": tasks // 2,
                          "store": tasks})
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match="one level of tasks"):
        MetaRegressor(Ridge(), task_column=["region", "store"]).fit(
            ddf, dd.from_pandas(pd.Series(y), npartitions=2))


def test_a_dask_fitted_model_pickles_with_its_parameters(client):
    X, y, tasks = make_meta_regression(n_tasks=6, n_samples_per_task=10,
                                       n_features=2, random_state=10)
    Xd = da.from_array(X, chunks=(20, 2))
    yd, td = da.from_array(y, chunks=20), da.from_array(tasks, chunks=20)
    remote = MetaRegressor(Ridge()).fit(Xd, yd, tasks=td)
    restored = pickle.loads(pickle.dumps(remote))
    assert isinstance(restored.task_params_, np.ndarray)
    np.testing.assert_array_equal(restored.task_params_,
                                  remote.task_params_.compute())
    # the fitted model itself keeps its parameters on the cluster
    assert not isinstance(remote.task_params_, np.ndarray)
    np.testing.assert_allclose(restored.predict(X, tasks=tasks),
                               remote.predict(Xd, tasks=td).compute())


def test_a_model_whose_cluster_is_gone_says_so():
    # Dask's own error named a missing block of its graph
    X, y, tasks = make_meta_regression(n_tasks=6, n_samples_per_task=10,
                                       n_features=2, random_state=11)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1,
                                  processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster):
        remote = MetaRegressor(Ridge()).fit(
            da.from_array(X, chunks=(20, 2)), da.from_array(y, chunks=20),
            tasks=da.from_array(tasks, chunks=20))
        remote.predict(X, tasks=tasks)
    for call in (lambda: remote.predict(X, tasks=tasks),
                 lambda: remote.task_estimator(tasks[0]),
                 lambda: pickle.dumps(remote)):
        with pytest.raises(RuntimeError, match="Dask cluster this model was "
                           "fitted on .* pickle it"):
            call()


def test_a_refit_on_dask_keeps_no_attribute_of_an_earlier_fit(client):
    # the groups of an earlier fit on nested tasks survived a fit on Dask
    # collections, and predict routed rows through them (an IndexError)
    X, y, tasks = make_meta_regression(n_tasks=12, n_samples_per_task=10,
                                       n_features=2, random_state=12)
    meta = MetaRegressor(Ridge()).fit(X, y, tasks=np.c_[tasks % 3, tasks])
    assert meta.groups_ is not None
    ddf = _frame(X, y, tasks, npartitions=2)
    meta.set_params(task_column="task").fit(ddf.drop(columns="target"),
                                            ddf["target"])
    assert not hasattr(meta, "groups_")
    data = ddf.compute()
    fresh = MetaRegressor(Ridge(), task_column="task").fit(
        data.drop(columns="target"), data["target"])
    np.testing.assert_allclose(meta.predict(data.drop(columns="target")),
                               fresh.predict(data.drop(columns="target")),
                               rtol=1e-7, atol=ATOL)


def test_a_constant_target_fits_as_in_memory(client):
    # the cluster's floor of the noise variance was 1e-300 where y does not
    # vary (the in-memory one follows y's units): a constant 0.3 made the
    # precision degenerate there, and the fit fell back to a fixed prior
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(40), 10)
    X, y = rng.normal(size=(400, 3)), np.full(400, 0.3)
    local = MetaRegressor().fit(X, y, tasks=tasks)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        remote = MetaRegressor().fit(
            da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=100),
            tasks=da.from_array(tasks, chunks=100))
    assert remote.gamma_ == pytest.approx(local.gamma_, rel=1e-8)
    np.testing.assert_allclose(remote.task_params_.compute(),
                               local.task_params_, atol=1e-12)

