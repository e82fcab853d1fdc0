"""fetch_school, offline: a synthetic school.mat in MALSAR's layout.

Nothing here downloads: the network function is replaced in every test, and
the download is simulated by copying a local file.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from skmeta import _school
from skmeta.datasets import fetch_school

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "school.npz"
N_FEATURES = len(_school.FEATURE_NAMES)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any test that would reach the network; ignore the user's copy."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(_school, "urlopen", refuse)
    monkeypatch.delenv("SKMETA_SCHOOL_DATA", raising=False)


def _synthetic_school(sizes, bias_column, seed=0):
    """Cells of X (n_t x 28, with a column of ones) and Y, as MALSAR stores them."""
    rng = np.random.RandomState(seed)
    x_cells = np.empty((1, len(sizes)), dtype=object)
    y_cells = np.empty((1, len(sizes)), dtype=object)
    features, targets = [], []
    for t, n in enumerate(sizes):
        # integer-valued, as in the real file: the loader casts to float64
        x = rng.randint(0, 3, size=(n, N_FEATURES)).astype(np.uint8)
        x[0, :] = 2  # no feature column is constant ones
        y = rng.randint(1, 71, size=(n, 1)).astype(np.int16)
        x_cells[0, t] = np.insert(x, bias_column, 1, axis=1)
        y_cells[0, t] = y
        features.append(x)
        targets.append(y.ravel())
    expected = (np.vstack(features).astype(np.float64),
                np.concatenate(targets).astype(np.float64),
                np.repeat(np.arange(len(sizes)), sizes))
    return x_cells, y_cells, expected


@pytest.fixture
def school_mat(tmp_path_factory):
    x_cells, y_cells, expected = _synthetic_school([5, 3, 8, 4], bias_column=27)
    path = tmp_path_factory.mktemp("source") / "school.mat"
    savemat(path, {"X": x_cells, "Y": y_cells})
    return path, expected


@pytest.fixture
def fake_download(monkeypatch, school_mat):
    """The download copies the synthetic file, whose blob id is expected."""
    source, expected = school_mat
    calls = []

    def copy(url, path):
        calls.append(url)
        shutil.copyfile(source, path)

    monkeypatch.setattr(_school, "_download", copy)
    monkeypatch.setattr(_school, "_GIT_BLOB_ID", _school._git_blob_id(source))
    return calls, expected


@pytest.mark.parametrize("bias_column", [0, 13, 27])
def test_conversion_of_the_malsar_layout(tmp_path, bias_column):
    x_cells, y_cells, (X, y, _) = _synthetic_school([4, 1, 6], bias_column)
    path = tmp_path / "school.mat"
    savemat(path, {"X": x_cells, "Y": y_cells})
    got_X, got_y, got_task = _school._school_from_mat(path)
    assert got_X.dtype == got_y.dtype == np.float64 and got_task.dtype == np.int64
    np.testing.assert_array_equal(got_X, X)
    np.testing.assert_array_equal(got_y, y)
    np.testing.assert_array_equal(got_task, [0] * 4 + [1] + [2] * 6)


def test_conversion_errors(tmp_path):
    x_cells, y_cells, _ = _synthetic_school([3, 3], bias_column=27)
    path = tmp_path / "bad.mat"
    savemat(path, {"X": x_cells})
    with pytest.raises(ValueError, match=r"variables \['Y'\] are missing"):
        _school._school_from_mat(path)
    savemat(path, {"X": x_cells, "Y": y_cells[:, :1]})
    with pytest.raises(ValueError, match="2 schools in X but 1 in Y"):
        _school._school_from_mat(path)
    savemat(path, {"X": np.ones((3, 28)), "Y": np.ones((3, 1))})
    with pytest.raises(ValueError, match="must be cell arrays"):
        _school._school_from_mat(path)
    narrow = x_cells.copy()
    narrow[0, 1] = narrow[0, 1][:, :20]
    savemat(path, {"X": narrow, "Y": y_cells})
    with pytest.raises(ValueError, match=r"School 1 .* shape \(3, 20\), expected"):
        _school._school_from_mat(path)
    no_bias = x_cells.copy()
    for t in range(2):
        no_bias[0, t] = no_bias[0, t].copy()
        no_bias[0, t][:, 27] = 5
    savemat(path, {"X": no_bias, "Y": y_cells})
    with pytest.raises(ValueError, match="exactly one constant column of ones"):
        _school._school_from_mat(path)


def test_git_blob_id_is_what_git_computes(school_mat):
    path, _ = school_mat
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    expected = subprocess.run([git, "hash-object", str(path)], check=True,
                              capture_output=True, text=True).stdout.strip()
    assert _school._git_blob_id(path) == expected
    # and git's known id of an empty blob
    empty = path.parent / "empty"
    empty.write_bytes(b"")
    assert _school._git_blob_id(empty) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_download_once_then_read_the_cache(tmp_path, fake_download, monkeypatch):
    calls, (X, y, task) = fake_download
    bunch = fetch_school(data_home=tmp_path)
    assert calls == [_school._URL]
    np.testing.assert_array_equal(bunch.data, X)
    np.testing.assert_array_equal(bunch.target, y)
    np.testing.assert_array_equal(bunch.tasks, task)
    assert bunch.feature_names == list(_school.FEATURE_NAMES)
    assert bunch.target_names == ["exam_score"] and bunch.frame is None
    assert "MALSAR" in bunch.DESCR
    # only the converted file is left behind
    assert sorted(os.listdir(tmp_path)) == ["school.npz"]
    # the second call reads the cache, even when downloads are impossible
    again = fetch_school(data_home=str(tmp_path), download_if_missing=False)
    assert calls == [_school._URL]
    for key in ("data", "target", "tasks"):
        np.testing.assert_array_equal(again[key], bunch[key])
        assert again[key].dtype == bunch[key].dtype


def test_default_data_home_is_scikit_learns(tmp_path, fake_download, monkeypatch):
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sk"))
    fetch_school()
    assert (tmp_path / "sk" / "school.npz").is_file()


def test_wrong_file_is_rejected_and_not_cached(tmp_path, fake_download,
                                               monkeypatch):
    monkeypatch.setattr(_school, "_GIT_BLOB_ID", "0" * 40)
    with pytest.raises(OSError, match="is not MALSAR's school.mat: its git object"):
        fetch_school(data_home=tmp_path)
    assert os.listdir(tmp_path) == []


def test_download_retries_then_raises(tmp_path, monkeypatch, school_mat):
    source, _ = school_mat
    attempts = []

    def flaky(url, path):
        attempts.append(url)
        if len(attempts) < 3:
            raise OSError("connection reset")
        shutil.copyfile(source, path)

    monkeypatch.setattr(_school, "_download", flaky)
    monkeypatch.setattr(_school, "_GIT_BLOB_ID", _school._git_blob_id(source))
    fetch_school(data_home=tmp_path, n_retries=2, delay=0)
    assert len(attempts) == 3
    attempts.clear()
    with pytest.raises(OSError, match="connection reset"):
        fetch_school(data_home=tmp_path / "other", n_retries=1, delay=0)
    assert len(attempts) == 2
    assert os.listdir(tmp_path / "other") == []


def test_not_found_without_download(tmp_path):
    with pytest.raises(OSError, match="not found .* download_if_missing is False"):
        fetch_school(data_home=tmp_path, download_if_missing=False)


def test_as_frame_and_return_X_y(tmp_path, fake_download):
    pd = pytest.importorskip("pandas")
    _, (X, y, task) = fake_download
    bunch = fetch_school(data_home=tmp_path, as_frame=True)
    assert list(bunch.data.columns) == list(_school.FEATURE_NAMES)
    assert bunch.target.name == "exam_score" and bunch.tasks.name == "school"
    assert list(bunch.frame.columns) == [*_school.FEATURE_NAMES, "school",
                                         "exam_score"]
    np.testing.assert_array_equal(bunch.frame.to_numpy()[:, :N_FEATURES], X)
    X_df, y_s, tasks_s = fetch_school(data_home=tmp_path, as_frame=True,
                                      return_X_y=True)
    assert isinstance(X_df, pd.DataFrame) and isinstance(y_s, pd.Series)
    np.testing.assert_array_equal(tasks_s, task)
    arrays = fetch_school(data_home=tmp_path, return_X_y=True)
    for got, want in zip(arrays, (X, y, task)):
        np.testing.assert_array_equal(got, want)


def test_local_copy_by_data_home_or_environment(tmp_path, monkeypatch, school_mat):
    _, (X, y, task) = school_mat
    folder = tmp_path / "copy"
    folder.mkdir()
    # a copy converted elsewhere, uncompressed, as the project's own
    np.savez(folder / "school.npz", X=X, y=y, task=task,
             feature_names=np.asarray(_school.FEATURE_NAMES))
    bunch = fetch_school(data_home=folder, download_if_missing=False)
    np.testing.assert_array_equal(bunch.data, X)
    renamed = tmp_path / "my-school-copy.npz"
    shutil.copyfile(folder / "school.npz", renamed)
    monkeypatch.setenv("SKMETA_SCHOOL_DATA", str(renamed))
    np.testing.assert_array_equal(fetch_school(download_if_missing=False).tasks,
                                  task)
    # an explicit data_home wins over the environment
    with pytest.raises(OSError, match="not found"):
        fetch_school(data_home=tmp_path / "empty", download_if_missing=False)
    monkeypatch.setenv("SKMETA_SCHOOL_DATA", str(tmp_path / "missing.npz"))
    with pytest.raises(OSError, match="SKMETA_SCHOOL_DATA is set to .* not a file"):
        fetch_school()


def test_malformed_local_copy(tmp_path):
    np.savez(tmp_path / "school.npz", X=np.ones((3, 27)), y=np.ones(3))
    with pytest.raises(ValueError, match=r"the arrays \['task'\] are missing"):
        fetch_school(data_home=tmp_path)
    np.savez(tmp_path / "school.npz", X=np.ones((3, 26)), y=np.ones(3),
             task=np.zeros(3))
    with pytest.raises(ValueError, match=r"X has shape \(3, 26\)"):
        fetch_school(data_home=tmp_path)
    np.savez(tmp_path / "school.npz", X=np.ones((3, 27)), y=np.ones(3),
             task=np.zeros(3), feature_names=np.array(["f"] * 27))
    with pytest.raises(ValueError, match="feature_names differ"):
        fetch_school(data_home=tmp_path)
    # numpy's own errors there named the wrong thing (a .npy file: a context
    # manager protocol; a text file: "load it unsafely" as a pickle), and
    # fractional labels were truncated, NaN targets accepted
    np.save(tmp_path / "one.npy", np.ones((3, 27)))
    (tmp_path / "one.npy").rename(tmp_path / "school.npz")
    with pytest.raises(ValueError, match=r"single array \(.npy\)"):
        fetch_school(data_home=tmp_path)
    (tmp_path / "school.npz").write_text("X,y,task\n1,2,3\n")
    with pytest.raises(ValueError, match="not a NumPy .npz archive"):
        fetch_school(data_home=tmp_path)
    np.savez(tmp_path / "school.npz", X=np.ones((3, 27)), y=np.ones(3),
             task=np.array([0.7, 1.7, 2.7]))
    with pytest.raises(ValueError, match="task labels must be integers"):
        fetch_school(data_home=tmp_path)
    np.savez(tmp_path / "school.npz", X=np.ones((3, 27)),
             y=np.array([1.0, np.nan, 2.0]), task=np.zeros(3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fetch_school(data_home=tmp_path)
    np.savez(tmp_path / "school.npz", X=np.ones((3, 27)),
             y=np.array([1, "a", None], dtype=object), task=np.zeros(3))
    with pytest.raises(ValueError, match="object \\(pickled\\) arrays"):
        fetch_school(data_home=tmp_path)


@pytest.mark.skipif(not _SHARED.is_file(),
                    reason=f"the project's converted School data ({_SHARED}) is "
                           "absent")
def test_project_copy_has_the_published_shape():
    bunch = fetch_school(data_home=_SHARED.parent, download_if_missing=False)
    assert bunch.data.shape == (15362, N_FEATURES)
    assert np.unique(bunch.tasks).size == 139
    np.testing.assert_array_equal(bunch.tasks, np.sort(bunch.tasks))
    counts = np.bincount(bunch.tasks)
    assert (counts.min(), int(np.median(counts)), counts.max()) == (22, 103, 251)
    assert bunch.target.min() == 1 and bunch.target.max() == 70
    # one-hot groups sum to one (vrband: 15 pupils have none)
    names = bunch.feature_names
    for prefix in ("year_", "gender_code", "ethnic_", "schoolgender_",
                   "schooldenom_"):
        block = [j for j, n in enumerate(names) if n.startswith(prefix)]
        np.testing.assert_array_equal(bunch.data[:, block].sum(axis=1), 1)
    vrband = [j for j, n in enumerate(names) if n.startswith("vrband_")]
    assert np.sum(bunch.data[:, vrband].sum(axis=1) == 0) == 15


def test_download_equals_the_project_copy():
    # A real download is never made here; if one was made before (the
    # default cache holds it), it must give exactly the project's arrays.
    cached = Path(os.path.expanduser(os.environ.get(
        "SCIKIT_LEARN_DATA", os.path.join("~", "scikit_learn_data")))) / "school.npz"
    if not _SHARED.is_file():
        pytest.skip(f"the project's converted School data ({_SHARED}) is absent")
    if not cached.is_file():
        pytest.skip(f"no downloaded School data in the cache ({cached}); run "
                    "fetch_school() once with network access to compare")
    downloaded = fetch_school(data_home=cached.parent, download_if_missing=False)
    shared = fetch_school(data_home=_SHARED.parent, download_if_missing=False)
    for key in ("data", "target", "tasks"):
        np.testing.assert_array_equal(downloaded[key], shared[key])
