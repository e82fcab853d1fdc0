"""The School benchmark under its standard protocol (data read, never fetched).

The ILEA School data is not distributed with skmeta; CI has it in
``../shared/data``. Elsewhere the test is skipped, with the reason.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.preprocessing import StandardScaler

from skmeta import MetaRegressor
from skmeta.metrics import within_task_explained_variance

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [os.environ.get("SKMETA_SCHOOL_DATA", ""),
               str(_ROOT.parent / "shared" / "data" / "school.npz")]
_PATH = next((Path(p) for p in _CANDIDATES if p and Path(p).is_file()), None)

pytestmark = pytest.mark.skipif(
    _PATH is None,
    reason="school.npz not found (set SKMETA_SCHOOL_DATA, or keep the shared "
           "data folder next to the repository)",
)


def test_school_explained_variance_beats_pooled_ridge():
    data = np.load(_PATH)
    X, y, school = data["X"], data["y"], data["task"]
    assert X.shape == (15362, 27) and np.unique(school).size == 139
    pooled, meta = [], []
    splits = StratifiedShuffleSplit(n_splits=10, test_size=0.25, random_state=0)
    for train, test in splits.split(X, school):
        scaler = StandardScaler().fit(X[train])
        X_tr, X_te = scaler.transform(X[train]), scaler.transform(X[test])
        pooled.append(within_task_explained_variance(
            y[test], Ridge(alpha=1.0).fit(X_tr, y[train]).predict(X_te),
            school[test]))
        model = MetaRegressor(Ridge(alpha=1.0), gamma="auto", prior="full")
        model.fit(X_tr, y[train], tasks=school[train])
        meta.append(within_task_explained_variance(
            y[test], model.predict(X_te, tasks=school[test]), school[test]))
    # the data's README: untuned pooled ridge about 23%; the issue asks >= 27%
    assert 0.21 < np.mean(pooled) < 0.26
    assert np.mean(meta) >= 0.27
    assert np.mean(meta) > np.mean(pooled) + 3 * np.std(pooled)
