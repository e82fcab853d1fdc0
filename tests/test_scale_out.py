"""Task shards on a Dask cluster give the same models as on one machine."""

import numpy as np
import pytest
from joblib import parallel_backend

import skmeta._methods._inner as inner_module
from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification


@pytest.mark.parametrize("method", ["proximal", "maml"])
def test_dask_backend_gives_the_same_fit(method, monkeypatch):
    distributed = pytest.importorskip("distributed")
    # small data normally stays in one shard: split it to exercise the cluster
    monkeypatch.setattr(inner_module, "MIN_SHARD_ENTRIES", 0)
    X, y, tasks = make_meta_classification(n_tasks=80, n_samples_per_task=15,
                                           n_features=6, random_state=0)
    params = dict(method=method, gamma=1.0, max_iter=20, random_state=0)
    local = MetaClassifier(n_jobs=1, **params).fit(X, y, tasks=tasks)
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                            dashboard_address=None):
        with parallel_backend("dask"):
            remote = MetaClassifier(n_jobs=2, **params).fit(X, y, tasks=tasks)
            predictions = remote.predict(X, tasks=tasks)
    np.testing.assert_array_equal(remote.task_params_, local.task_params_)
    np.testing.assert_array_equal(remote.meta_params_, local.meta_params_)
    np.testing.assert_array_equal(predictions, local.predict(X, tasks=tasks))
