"""Loader of the ILEA School exam data, the standard multi-task benchmark."""

# Authors: The skmeta developers
# SPDX-License-Identifier: BSD-3-Clause

import hashlib
import os
import shutil
import tempfile
import time
from numbers import Integral, Real
from os import PathLike
from urllib.request import urlopen

import numpy as np
from scipy.io import loadmat
from sklearn.datasets import get_data_home
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_params

# The file as committed to the MALSAR repository (commit ca3d55b8): pinned to
# the commit rather than a branch so that the bytes cannot change under us.
_URL = (
    "https://raw.githubusercontent.com/jiayuzhou/MALSAR/"
    "ca3d55b878cc4113f0d9603e8ac46538aeb1ecd9/data/school.mat"
)
# No SHA-256 of school.mat is published; git's own object id of the file in
# that commit is: SHA-1 of b"blob <size>\0" followed by the bytes.
_GIT_BLOB_ID = "2420f5c1ac617bce7090d7a47d800641e72532f1"
_FILENAME = "school.npz"
_ENV_VAR = "SKMETA_SCHOOL_DATA"

FEATURE_NAMES = (
    "year_1985", "year_1986", "year_1987",
    "fsm_pct", "vr1_pct",
    "gender_code1", "gender_code0",
    "vrband_1", "vrband_2", "vrband_3",
    "ethnic_1", "ethnic_2", "ethnic_3", "ethnic_4", "ethnic_5", "ethnic_6",
    "ethnic_7", "ethnic_8", "ethnic_9", "ethnic_10", "ethnic_11",
    "schoolgender_1", "schoolgender_2", "schoolgender_3",
    "schooldenom_1", "schooldenom_2", "schooldenom_3",
)

DESCR = """\
.. _school_dataset:

ILEA School exam data
---------------------

**Data Set Characteristics:**

=================  ==========================================
Tasks (schools)    139
Samples (pupils)   15362; 22 to 251 per school, median 103
Features           27, numeric (two percentages and one-hot codes)
Target             exam score, 1 to 70
Missing values     none
=================  ==========================================

Examination scores of pupils of 139 secondary schools of the Inner London
Education Authority in 1985, 1986 and 1987 (Goldstein, 1991). Each school is
a task: predict a pupil's score from the year of the exam (3 one-hot
columns), the percentage of the school's pupils eligible for free school
meals, the percentage of its intake in verbal-reasoning band 1, the pupil's
gender (2 columns) and verbal-reasoning band (3 columns; 15 pupils have
none), the pupil's ethnic group (11 columns), the school's gender (3
columns) and the school's denomination (3 columns).

It is the standard benchmark of multi-task regression (Bakker & Heskes,
2003; Evgeniou & Pontil, 2004; Argyriou, Evgeniou & Pontil, 2008). Their
protocol: for each school, a random 75% / 25% train/test split, 10 random
splits; the score is the explained variance within each school,
:func:`skmeta.metrics.within_task_explained_variance`.

The file is ``data/school.mat`` of the MALSAR package (Zhou, Chen & Ye,
https://github.com/jiayuzhou/MALSAR), as committed in ca3d55b8. Its schools
are kept in the file's order (task ``t`` is its ``t``-th cell), the values
cast to float64, and the constant column of ones that MALSAR adds as a
bias term is dropped. The redistribution terms of the data are not stated:
it is downloaded from MALSAR, not shipped with skmeta.

.. rubric:: References

* Goldstein, H. (1991). Multilevel modelling of survey data. The
  Statistician.
* Bakker, B. & Heskes, T. (2003). Task clustering and gating for Bayesian
  multitask learning. Journal of Machine Learning Research, 4.
* Evgeniou, T. & Pontil, M. (2004). Regularized multi-task learning. KDD.
* Argyriou, A., Evgeniou, T. & Pontil, M. (2008). Convex multi-task feature
  learning. Machine Learning, 73.
"""


def _download(url, path):
    """Write the content at ``url`` to the file ``path``."""
    with urlopen(url, timeout=60) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out)


def _git_blob_id(path):
    """Git's object id of a file: SHA-1 of ``b"blob <size>\\0" + content``."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _school_from_mat(path):
    """``(X, y, task)`` arrays from a file in MALSAR's ``school.mat`` layout.

    The layout: MATLAB cell arrays ``X`` (one ``n_t x 28`` matrix per school,
    one of the columns all ones) and ``Y`` (one ``n_t x 1`` vector per school).
    """
    mat = loadmat(path)
    missing = sorted({"X", "Y"} - set(mat))
    if missing:
        raise ValueError(
            f"{path} is not in the layout of MALSAR's school.mat: the variables "
            f"{missing} are missing."
        )
    x_cells, y_cells = mat["X"], mat["Y"]
    if x_cells.dtype != object or y_cells.dtype != object:
        raise ValueError(
            f"{path} is not in the layout of MALSAR's school.mat: X and Y must "
            "be cell arrays with one entry per school."
        )
    x_cells, y_cells = x_cells.ravel(), y_cells.ravel()
    if len(x_cells) != len(y_cells):
        raise ValueError(
            f"{path} has {len(x_cells)} schools in X but {len(y_cells)} in Y."
        )
    n_columns = len(FEATURE_NAMES) + 1
    blocks, targets = [], []
    for t, (x_t, y_t) in enumerate(zip(x_cells, y_cells)):
        x_t = np.asarray(x_t, dtype=np.float64)
        y_t = np.asarray(y_t, dtype=np.float64).ravel()
        if x_t.ndim != 2 or x_t.shape != (len(y_t), n_columns):
            raise ValueError(
                f"School {t} of {path}: X has shape {x_t.shape}, expected "
                f"({len(y_t)}, {n_columns}) for its {len(y_t)} targets."
            )
        blocks.append(x_t)
        targets.append(y_t)
    X = np.vstack(blocks)
    bias = np.flatnonzero(np.all(X == 1.0, axis=0))
    if len(bias) != 1:
        raise ValueError(
            f"{path} should have exactly one constant column of ones (the "
            f"bias term), found {len(bias)}."
        )
    X = np.delete(X, bias[0], axis=1)
    task = np.repeat(np.arange(len(blocks), dtype=np.int64),
                     [len(y_t) for y_t in targets])
    return X, np.concatenate(targets), task


def _save(path, X, y, task):
    """Write the converted arrays atomically (no half-written cache file)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz.part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, X=X, y=y, task=task,
                                feature_names=np.asarray(FEATURE_NAMES))
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


def _load(path):
    """The arrays of a converted file, checked."""
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as error:
        # numpy's message for a file that is not numpy's suggests loading it
        # as a pickle, unsafely
        raise ValueError(
            f"{path} is not a converted School file: it is not a NumPy .npz "
            "archive (expected X, y, task and feature_names).") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path} is not a converted School file: it holds a single array "
            "(.npy), not an .npz archive of X, y, task and feature_names.")
    with archive as data:
        missing = sorted({"X", "y", "task"} - set(data.files))
        if missing:
            raise ValueError(
                f"{path} is not a converted School file: the arrays {missing} "
                "are missing (expected X, y, task and feature_names)."
            )
        try:
            X, y, task = data["X"], data["y"], data["task"]
            names = (tuple(data["feature_names"].tolist())
                     if "feature_names" in data.files else FEATURE_NAMES)
        except ValueError as error:
            raise ValueError(
                f"{path} is not a converted School file: it holds object "
                "(pickled) arrays, which are not loaded.") from error
    if (X.ndim != 2 or X.shape[1] != len(FEATURE_NAMES) or y.shape != (len(X),)
            or task.shape != (len(X),)):
        raise ValueError(
            f"{path} is not a converted School file: X has shape {X.shape}, y "
            f"{y.shape} and task {task.shape}; expected (n, "
            f"{len(FEATURE_NAMES)}), (n,) and (n,)."
        )
    if names != FEATURE_NAMES:
        raise ValueError(
            f"{path} is not a converted School file: its feature_names differ "
            f"from {list(FEATURE_NAMES)}."
        )
    if X.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
        raise ValueError(
            f"{path} is not a converted School file: X and y must be numeric, "
            f"not {X.dtype} and {y.dtype}.")
    X, y = X.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError(
            f"{path} is not a converted School file: X or y holds NaN or "
            "infinite values.")
    if task.dtype.kind not in "iuf" or not np.all(np.isfinite(task)) or np.any(
            task != np.round(task)):
        raise ValueError(
            f"{path} is not a converted School file: its task labels must be "
            "integers (a school's index).")
    return X, y, task.astype(np.int64, copy=False)


def _fetch(data_home, n_retries, delay):
    """Download ``school.mat`` into ``data_home``, verify, convert, cache."""
    fd, mat_path = tempfile.mkstemp(dir=data_home, suffix=".mat.part")
    os.close(fd)
    try:
        for attempt in range(n_retries + 1):
            try:
                _download(_URL, mat_path)
                break
            except OSError:
                if attempt == n_retries:
                    raise
                time.sleep(delay)
        blob_id = _git_blob_id(mat_path)
        if blob_id != _GIT_BLOB_ID:
            raise OSError(
                f"The file downloaded from {_URL} is not MALSAR's school.mat: "
                f"its git object id is {blob_id}, expected {_GIT_BLOB_ID}."
            )
        X, y, task = _school_from_mat(mat_path)
        _save(os.path.join(data_home, _FILENAME), X, y, task)
    finally:
        os.remove(mat_path)
    return X, y, task


@validate_params(
    {
        "data_home": [str, PathLike, None],
        "download_if_missing": ["boolean"],
        "as_frame": ["boolean"],
        "return_X_y": ["boolean"],
        "n_retries": [Interval(Integral, 0, None, closed="left")],
        "delay": [Interval(Real, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def fetch_school(data_home=None, *, download_if_missing=True, as_frame=False,
                 return_X_y=False, n_retries=3, delay=1.0):
    """Load the ILEA School exam data (multi-task regression, 139 tasks).

    =================  =====================
    Tasks (schools)                      139
    Samples total                      15362
    Dimensionality                        27
    Target               real, 1 - 70
    =================  =====================

    The first call downloads ``data/school.mat`` from the MALSAR repository,
    checks it, converts it and caches the arrays as ``school.npz`` in
    ``data_home``; later calls read the cache.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder of the cached ``school.npz``; it is created if needed. By
        default scikit-learn's data folder,
        :func:`sklearn.datasets.get_data_home` (``~/scikit_learn_data``, or
        the ``SCIKIT_LEARN_DATA`` environment variable). A folder that already
        holds a converted ``school.npz`` (see Notes) is used as it is.

    download_if_missing : bool, default=True
        If False, raise an ``OSError`` when the data is not found locally
        instead of downloading it.

    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame with the named features,
        ``target`` and ``tasks`` are Series, and ``frame`` joins the three.

    return_X_y : bool, default=False
        If True, return ``(data, target, tasks)`` instead of a Bunch.

    n_retries : int, default=3
        Number of retries of the download after a network error.

    delay : float, default=1.0
        Seconds between those retries.

    Returns
    -------
    dataset : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        data : ndarray of shape (15362, 27) or DataFrame
            The features of every pupil, school after school.
        target : ndarray of shape (15362,) or Series
            The exam score of every pupil (named ``"exam_score"``).
        tasks : ndarray of shape (15362,) or Series
            The school of every pupil, 0 to 138 (named ``"school"``); pass it
            as ``tasks=`` or as ``groups``.
        feature_names : list of str
            The names of the 27 features.
        target_names : list of str
            ``["exam_score"]``.
        frame : DataFrame or None
            Only with ``as_frame=True``: ``data`` with the ``"school"`` and
            ``"exam_score"`` columns.
        DESCR : str
            Description of the data, its provenance and its usual protocol.

    (data, target, tasks) : tuple if ``return_X_y`` is True
        The three arrays (or pandas objects) above.

    Raises
    ------
    OSError
        If the data is not found locally and ``download_if_missing`` is
        False, if the download fails, or if the downloaded file is not the
        expected one.

    See Also
    --------
    skmeta.metrics.within_task_explained_variance : The score of the usual
        protocol on these data.

    Notes
    -----
    **Integrity.** MALSAR publishes no SHA-256 checksum of ``school.mat``, and
    none could be established when this function was written. The download
    is instead verified against the git object id the repository records for
    the file (``2420f5c1ac617bce7090d7a47d800641e72532f1``: the SHA-1 of
    ``b"blob <size>\\0"`` followed by the file's bytes, what ``git
    hash-object`` prints); a file that differs is rejected and nothing is
    cached.

    **Conversion.** The schools (MATLAB cells of ``X`` and ``Y``) are stacked
    in the file's order, school ``t`` being task ``t``; the values are cast
    to float64 and the constant column of ones, MALSAR's bias term, is
    dropped, leaving the 27 features of ``feature_names``.

    **A local copy.** ``school.npz`` in ``data_home`` is an uncompressed or
    compressed NumPy ``.npz`` file with the arrays ``X`` (float64, n x 27),
    ``y`` (float64, n), ``task`` (int64, n) and ``feature_names`` (27
    strings), as this function writes it. A copy converted elsewhere can be
    used without any download in two ways: put it in a folder passed as
    ``data_home``, or set the environment variable ``SKMETA_SCHOOL_DATA`` to
    its path, which ``fetch_school`` reads when ``data_home`` is None (the
    file may then have any name).

    Examples
    --------
    >>> from skmeta.datasets import fetch_school
    >>> school = fetch_school()  # doctest: +SKIP
    >>> school.data.shape, school.target.shape  # doctest: +SKIP
    ((15362, 27), (15362,))
    >>> len(set(school.tasks))  # doctest: +SKIP
    139
    >>> school.feature_names[:5]  # doctest: +SKIP
    ['year_1985', 'year_1986', 'year_1987', 'fsm_pct', 'vr1_pct']
    """
    local = os.environ.get(_ENV_VAR) if data_home is None else None
    if local:
        if not os.path.isfile(local):
            raise OSError(
                f"The environment variable {_ENV_VAR} is set to {local!r}, which "
                "is not a file; it must be the path of a converted school.npz."
            )
        X, y, task = _load(local)
    else:
        data_home = get_data_home(data_home)
        path = os.path.join(data_home, _FILENAME)
        if os.path.exists(path):
            X, y, task = _load(path)
        elif not download_if_missing:
            raise OSError(
                f"The School data was not found in {data_home} (no {_FILENAME}) "
                "and download_if_missing is False."
            )
        else:
            X, y, task = _fetch(data_home, n_retries, delay)

    feature_names = list(FEATURE_NAMES)
    frame = None
    if as_frame:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "fetch_school(..., as_frame=True) requires pandas, which is not "
                "installed. Install it with `pip install pandas`, or use "
                "as_frame=False to get NumPy arrays."
            ) from exc
        X = pd.DataFrame(X, columns=feature_names)
        y = pd.Series(y, name="exam_score")
        task = pd.Series(task, name="school")
        frame = pd.concat([X, task, y], axis=1)
    if return_X_y:
        return X, y, task
    return Bunch(data=X, target=y, tasks=task, feature_names=feature_names,
                 target_names=["exam_score"], frame=frame, DESCR=DESCR)
