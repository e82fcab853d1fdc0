"""skmeta side by side with mixed models and boosting, in one run on the same data.

Many small related tasks are what mixed models ("random effects per group")
and boosting with the group id as a feature are used for today. On the same
data this script fits:

* skmeta: ``MetaRegressor(Ridge())`` / ``MetaClassifier(LogisticRegression())``
  in each configuration of ``SKMETA_CONFIGS`` below (the installed defaults
  first);
* statsmodels ``MixedLM`` (Gaussian): random intercept, and random intercept
  plus random slopes on the features (unstructured covariance), REML;
* statsmodels ``BinomialBayesMixedGLM`` (binary): the same two random-effects
  structures (independent variance components), variational Bayes;
* GPBoost ``GPModel``: grouped random intercept, and random intercept plus
  independent random coefficients on the features; likelihood ``gaussian``
  or ``bernoulli_logit``; the linear fixed effects with an intercept;
* LightGBM, the task id as a categorical feature (library defaults);
* baselines: the base estimator pooled over all tasks, and one base estimator
  per task (a loop of scikit-learn fits).

Every peer is left at its library defaults: nothing is tuned, for skmeta
either.

Data
----
* School (``school.npz``, Goldstein 1991; 139 schools): the protocol of
  ``examples/plot_school.py``, per school a random 75/25 split, 10 splits,
  score ``within_task_explained_variance``. The one-hot blocks whose columns
  sum to one (year, gender, ethnic group, school gender, denomination) lose
  their last column, so that the mixed models' fixed-effects design is of
  full rank: 22 features, standardized on the training rows, for every
  method. Random slopes go on the 18 features that vary within a school (a
  slope on a school-level feature cannot be told from the random intercept).
  Skipped with a message when the file is absent.
* Generated tasks, 100, 1,000 and 10,000 training tasks: 5 features, 25
  rows per task (15 to fit, 10 held out), and ``--n-new`` new tasks of 40 rows
  (20 support rows, 20 query rows).
  Gaussian: ``make_meta_regression(n_informative=5, noise=50,
  task_spread=0.5)``, a linear mixed model with independent random
  coefficients, so the mixed models are correctly specified.
  Binary: ``make_meta_classification(n_informative=3, n_redundant=0,
  task_spread=0.5)``, Gaussian clusters with their own covariance per class,
  so the Bayes boundary is quadratic and every linear model is misspecified.
  Binary splits keep the classes balanced (held-out rows 5 + 5, support rows
  alternate classes: k = 1 has one class, k >= 2 both).

Scores are on held-out rows of the training tasks: explained variance within
tasks (School), R^2 (generated Gaussian, all held-out rows pooled), ROC AUC
and accuracy (binary, pooled).

New tasks
---------
For k = 1, 2, 5, 10, 20 support rows of each new task, the new task's score
on its 20 query rows (pooled over the new tasks) and the time to get its
model:

* skmeta: ``meta.adapt(X_support, y_support)``, one call per new task
  (median time over the new tasks); the prior is not refitted;
* per-task: the base estimator fitted on the k rows (median time);
* pooled: the training fit, used as is (no time);
* mixed models and LightGBM: one refit on the training rows plus the k
  support rows of every new task (its time; adding one task would cost about
  the same, the training rows dominate);
* GPBoost can also predict a new group from its rows under the fitted
  variance parameters without a refit (``GPModel.predict(y=..., cov_pars=...)``
  on a model of the new rows, the fixed effects as offset): that is measured
  too ("no refit" rows), per new task like skmeta.

Each peer runs in its own process (spawned: no OpenMP runtime shared with
numba), stopped after ``--timeout`` seconds (process start included, ~2 s);
a peer that timed out is not run at larger sizes of the same family, and
refits are run only when one fit took at most ``--refit-budget`` seconds.
Every such case is written in the tables. All libraries get ``--n-jobs``
threads (default 1: on this shared 2-core machine two OpenMP threads made a
LightGBM fit 50 times slower when the other core was busy); BLAS gets one.
skmeta's kernels are compiled (or loaded from numba's disk cache) by a
warm-up before any timing; the warm-up's time is printed.

Run: ``python benchmarks/bench_peers.py [--quick] [--csv results.csv]``
(``--help`` for sizes, repeats and peers). Needs the ``peers`` extra:
``pip install -e ".[peers]"`` or ``make bench-peers``.
"""

import argparse
import csv
import multiprocessing
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn
from scipy.special import expit
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import skmeta
from skmeta import MetaClassifier, MetaRegressor
from skmeta.datasets import make_meta_classification, make_meta_regression
from skmeta.metrics import within_task_explained_variance

# The skmeta configurations compared: (label, MetaRegressor/MetaClassifier
# keyword arguments, base estimator). The first is whatever the installed
# skmeta's defaults are. The last one swaps the base estimator for its
# unpenalized version: Ridge(alpha=1) and LogisticRegression(C=1) keep their
# own penalty toward zero inside every task, which the mixed models do not
# have.
SKMETA_CONFIGS = [
    ("defaults", {}, "default"),
    ("gamma=auto, prior=full", {"gamma": "auto", "prior": "full"}, "default"),
    ("gamma=auto, prior=diagonal", {"gamma": "auto", "prior": "diagonal"},
     "default"),
    ("gamma=auto, prior=full, unpenalized base",
     {"gamma": "auto", "prior": "full"}, "unpenalized"),
]

BASES = {
    "gaussian": {"default": Ridge(), "unpenalized": LinearRegression()},
    "binary": {"default": LogisticRegression(),
               "unpenalized": LogisticRegression(C=np.inf)},
}
BASE_NAMES = {"gaussian": "Ridge", "binary": "LogisticRegression"}
META = {"gaussian": MetaRegressor, "binary": MetaClassifier}

SIZES = (100, 1_000, 10_000)
SHOTS = (1, 2, 5, 10, 20)
N_FEATURES = 5
N_FIT, N_HELD_OUT = 15, 10        # rows per training task
N_SUPPORT, N_QUERY = 20, 20       # rows per new task
GENERATORS = {
    "gaussian": (make_meta_regression,
                 dict(n_informative=N_FEATURES, noise=50.0, task_spread=0.5)),
    "binary": (make_meta_classification,
               dict(n_informative=3, n_redundant=0, task_spread=0.5)),
}
DEFAULT_SCHOOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "school.npz"


# --------------------------------------------------------------------- data
@dataclass
class Split:
    """One repeat of one dataset: training tasks' rows and new tasks' rows.

    Task codes are ``0 .. n_tasks - 1`` for training tasks and follow on for
    new tasks. ``support[i]`` lists new task i's support rows in the order in
    which they are taken (the first k for k shots).
    """

    name: str
    family: str
    n_groups: int
    X: np.ndarray
    y: np.ndarray
    tasks: np.ndarray
    train: np.ndarray
    test: np.ndarray
    slope_columns: np.ndarray
    support: list = field(default_factory=list)
    query: list = field(default_factory=list)
    school: bool = False

    def score(self, y_true, pred, tasks):
        """(primary, secondary) score; ``pred`` is a mean or P(y = 1)."""
        if self.family == "binary":
            return roc_auc_score(y_true, pred), accuracy_score(y_true, pred > 0.5)
        if self.school:
            return within_task_explained_variance(y_true, pred, tasks), None
        return r2_score(y_true, pred), None


def task_ranks(tasks, y, rng, balanced):
    """Position of each row in a random order of its task's rows.

    With ``balanced``, the order alternates the two classes (which one comes
    first is drawn per task), so that any prefix is as balanced as it can be.
    """
    key = rng.uniform(size=tasks.size)
    if balanced:
        # rank within (task, class) first, then interleave the two classes
        strata = 2 * tasks + y
        order = np.lexsort((key, strata))
        within_class = np.empty(tasks.size, dtype=np.int64)
        within_class[order] = (np.arange(tasks.size)
                               - np.searchsorted(strata[order], strata[order]))
        flip = rng.integers(2, size=tasks.max() + 1)
        key = 2 * within_class + (y ^ flip[tasks])
    order = np.lexsort((key, tasks))
    ranks = np.empty(tasks.size, dtype=np.int64)
    ranks[order] = np.arange(tasks.size) - np.searchsorted(tasks[order], tasks[order])
    return ranks


def generated_split(family, n_groups, n_new, seed):
    generator, params = GENERATORS[family]
    sizes = np.r_[np.full(n_groups, N_FIT + N_HELD_OUT),
                  np.full(n_new, N_SUPPORT + N_QUERY)]
    X, y, tasks = generator(n_tasks=n_groups + n_new, n_samples_per_task=sizes,
                            n_features=N_FEATURES, random_state=seed, **params)
    ranks = task_ranks(tasks, y, np.random.default_rng(seed),
                       balanced=family == "binary")
    old = tasks < n_groups
    train = np.flatnonzero(old & (ranks >= N_HELD_OUT))
    test = np.flatnonzero(old & (ranks < N_HELD_OUT))
    support, query = [], []
    for t in range(n_groups, n_groups + n_new):
        rows = np.flatnonzero(tasks == t)
        rows = rows[np.argsort(ranks[rows])]
        support.append(rows[:N_SUPPORT])
        query.append(rows[N_SUPPORT:])
    return Split(f"{family}-{n_groups}", family, n_groups, X, y, tasks, train,
                 test, np.arange(N_FEATURES), support, query)


def school_splits(path, n_splits):
    data = np.load(path)
    X, y, tasks = data["X"], data["y"], data["task"].astype(np.int64)
    names = [str(n) for n in data["feature_names"]]
    # drop the last column of each one-hot block that sums to one
    prefixes = [n.rstrip("0123456789").rstrip("_") for n in names]
    drop = []
    for prefix in dict.fromkeys(prefixes):
        cols = [j for j, p in enumerate(prefixes) if p == prefix]
        if len(cols) > 1 and np.allclose(X[:, cols].sum(axis=1), 1.0):
            drop.append(cols[-1])
    X = np.delete(X, drop, axis=1)
    if np.linalg.matrix_rank(np.c_[np.ones(len(X)), X]) != X.shape[1] + 1:
        raise RuntimeError("School design with an intercept is not of full rank.")
    protocol = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.25,
                                      random_state=0)
    for train, test in protocol.split(X, tasks):
        scaler = StandardScaler().fit(X[train])
        Xs = scaler.transform(X)
        varies = np.zeros(X.shape[1], dtype=bool)
        for t in np.unique(tasks[train]):
            rows = train[tasks[train] == t]
            varies |= np.ptp(X[rows], axis=0) > 0
        yield Split("school", "gaussian", int(tasks.max()) + 1, Xs, y, tasks,
                    train, test, np.flatnonzero(varies), school=True)


# ------------------------------------------------------------------ peers
# Everything below up to the "parent" section runs in a child process.
def _with_intercept(X):
    return np.c_[np.ones(X.shape[0]), X]


class _Peer:
    """A peer as one object: ``fit``, ``predict`` (mean or P(y = 1))."""

    def __init__(self, family, slopes, slope_columns, n_jobs, n_codes):
        self.family, self.slopes = family, slopes
        self.slope_columns, self.n_jobs, self.n_codes = slope_columns, n_jobs, n_codes
        self.notes = []


class _MixedLM(_Peer):
    def fit(self, X, y, groups):
        from statsmodels.regression.mixed_linear_model import MixedLM

        exog = _with_intercept(X)
        result = MixedLM(y, exog, groups=groups, exog_re=self._re(exog)).fit(reml=True)
        if not result.converged:
            self.notes.append("MixedLMResults.converged is False")
        self.fe_ = np.asarray(result.fe_params)
        labels = np.fromiter(result.random_effects, dtype=np.int64)
        self.re_ = np.zeros((self.n_codes, self._re(exog).shape[1]))
        self.re_[labels] = np.vstack([np.asarray(v) for v in
                                      result.random_effects.values()])
        return self

    def _re(self, exog):
        if not self.slopes:
            return exog[:, :1]
        return exog[:, np.r_[0, 1 + self.slope_columns]]

    def predict(self, X, groups):
        exog = _with_intercept(X)
        return exog @ self.fe_ + np.sum(self._re(exog) * self.re_[groups], axis=1)


class _BayesGLMM(_Peer):
    def _design(self, X, groups):
        import scipy.sparse as sp

        n = X.shape[0]
        onehot = sp.csr_matrix((np.ones(n), (np.arange(n), groups)),
                               shape=(n, self.n_fitted))
        blocks = [onehot]
        if self.slopes:
            blocks += [onehot.multiply(X[:, [j]]).tocsr() for j in self.slope_columns]
        return sp.hstack(blocks, format="csr")

    def fit(self, X, y, groups):
        from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

        # only groups with rows get variational parameters
        self.n_fitted = int(groups.max()) + 1
        n_components = 1 + (len(self.slope_columns) if self.slopes else 0)
        ident = np.repeat(np.arange(n_components), self.n_fitted)
        model = BinomialBayesMixedGLM(y, _with_intercept(X), self._design(X, groups),
                                      ident)
        self.result_ = model.fit_vb()
        if not self.result_.optim_retvals.success:
            self.notes.append("fit_vb: " + str(self.result_.optim_retvals.message))
        return self

    def predict(self, X, groups):
        linear = (_with_intercept(X) @ self.result_.fe_mean
                  + self._design(X, groups) @ self.result_.vc_mean)
        return expit(linear)


class _GPBoost(_Peer):
    def _likelihood(self):
        return "gaussian" if self.family == "gaussian" else "bernoulli_logit"

    def _model(self, groups, X):
        import gpboost as gpb

        extra = {}
        if self.slopes:
            extra = dict(group_rand_coef_data=X[:, self.slope_columns],
                         ind_effect_group_rand_coef=[1] * len(self.slope_columns))
        return gpb.GPModel(group_data=groups, likelihood=self._likelihood(),
                           num_parallel_threads=self.n_jobs, **extra)

    def _pred_kwargs(self, X):
        if self.slopes:
            return dict(group_rand_coef_data_pred=X[:, self.slope_columns])
        return {}

    def fit(self, X, y, groups):
        self.model_ = self._model(groups, X)
        self.model_.fit(y=y, X=_with_intercept(X))
        self.cov_pars_ = np.asarray(self.model_.get_cov_pars(), dtype=float)[0]
        self.coef_ = np.asarray(self.model_.get_coef(), dtype=float)[0]
        return self

    def predict(self, X, groups):
        return np.asarray(self.model_.predict(
            group_data_pred=groups, X_pred=_with_intercept(X), predict_response=True,
            **self._pred_kwargs(X))["mu"])

    def adapt_predict(self, X_s, y_s, X_q):
        """A new group's prediction under the fitted parameters (no refit)."""
        model = self._model(np.zeros(len(y_s)), X_s)
        return np.asarray(model.predict(
            y=y_s, cov_pars=self.cov_pars_, group_data_pred=np.zeros(len(X_q)),
            offset=_with_intercept(X_s) @ self.coef_,
            offset_pred=_with_intercept(X_q) @ self.coef_, predict_response=True,
            **self._pred_kwargs(X_q))["mu"])


class _LightGBM(_Peer):
    def _frame(self, X, groups):
        import pandas as pd

        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        frame["task"] = pd.Categorical(groups, categories=np.arange(self.n_codes))
        return frame

    def fit(self, X, y, groups):
        import lightgbm

        kind = (lightgbm.LGBMRegressor if self.family == "gaussian"
                else lightgbm.LGBMClassifier)
        self.model_ = kind(n_jobs=self.n_jobs, verbose=-1)
        self.model_.fit(self._frame(X, groups), y)
        return self

    def predict(self, X, groups):
        frame = self._frame(X, groups)
        if self.family == "gaussian":
            return self.model_.predict(frame)
        return self.model_.predict_proba(frame)[:, 1]


# name: (label, families, class, random slopes)
PEERS = {
    "mixedlm-ri": ("statsmodels MixedLM, random intercept", ("gaussian",),
                   _MixedLM, False),
    "mixedlm-slopes": ("statsmodels MixedLM, random intercept + slopes",
                       ("gaussian",), _MixedLM, True),
    "bayesglmm-ri": ("statsmodels BinomialBayesMixedGLM, random intercept",
                     ("binary",), _BayesGLMM, False),
    "bayesglmm-slopes": ("statsmodels BinomialBayesMixedGLM, random intercept + slopes",
                         ("binary",), _BayesGLMM, True),
    "gpboost-ri": ("GPBoost GPModel, random intercept", ("gaussian", "binary"),
                   _GPBoost, False),
    "gpboost-slopes": ("GPBoost GPModel, random intercept + coefficients",
                       ("gaussian", "binary"), _GPBoost, True),
    "lightgbm": ("LightGBM, task id as categorical feature", ("gaussian", "binary"),
                 _LightGBM, False),
}


def _peer_job(conn, name, family, options, job):
    """Child process: fit one peer, predict, optionally adapt without refit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)           # GPBoost prints to the C stdout
        _, _, kind, slopes = PEERS[name]
        with (threadpool_limits(limits=1),
              warnings.catch_warnings(record=True) as caught):
            warnings.simplefilter("always")
            peer = kind(family, slopes, options["slope_columns"], options["n_jobs"],
                        options["n_codes"])
            start = time.perf_counter()
            peer.fit(job["X"], job["y"], job["groups"])
            seconds = time.perf_counter() - start
            pred = peer.predict(job["X_pred"], job["groups_pred"])
            adapt = None
            if job.get("new") is not None and hasattr(peer, "adapt_predict"):
                adapt = {}
                for k in job["shots"]:
                    preds, times = [], []
                    for X_s, y_s, X_q in job["new"]:
                        start = time.perf_counter()
                        preds.append(peer.adapt_predict(X_s[:k], y_s[:k], X_q))
                        times.append(time.perf_counter() - start)
                    adapt[k] = (np.concatenate(preds), float(np.median(times)))
        seen = dict.fromkeys(f"{w.category.__name__}: {str(w.message)[:90]}"
                             for w in caught)
        conn.send({"status": "ok", "seconds": seconds, "pred": pred, "adapt": adapt,
                   "notes": peer.notes + list(seen)})
    except Exception as exc:  # noqa: BLE001 -- reported in the table, not raised
        conn.send({"status": "error", "message": f"{type(exc).__name__}: {exc}"[:200]})


# ------------------------------------------------------------------ parent
def run_peer(name, family, options, job, timeout):
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_peer_job,
                              args=(sender, name, family, options, job), daemon=True)
    process.start()
    sender.close()
    try:
        if receiver.poll(timeout):
            result = receiver.recv()
        else:
            result = {"status": "timeout"}
    except EOFError:
        process.join(5)
        result = {"status": "error",
                  "message": f"process died (exit code {process.exitcode})"}
    if process.is_alive():
        process.kill()
    process.join()
    return result


@dataclass
class Record:
    dataset: str
    family: str
    n_groups: int
    repeat: int
    method: str
    phase: str          # "fit" or "adapt"
    k: int = 0
    score: float = float("nan")
    score2: float = float("nan")
    seconds: float = float("nan")
    status: str = "ok"  # ok, timeout, error, skipped, n/a
    note: str = ""


def base_predict(model, X, family):
    if family == "binary":
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


def per_task_fit_predict(base, split):
    """A loop of base-estimator fits, one per training task; held-out predictions."""
    X, y, tasks = split.X, split.y, split.tasks
    train_tasks = tasks[split.train]
    order = np.argsort(train_tasks, kind="stable")
    bounds = np.searchsorted(train_tasks[order], np.arange(split.n_groups + 1))
    coef = np.zeros((split.n_groups, X.shape[1]))
    intercept = np.zeros(split.n_groups)
    start = time.perf_counter()
    for t in range(split.n_groups):
        rows = split.train[order[bounds[t]:bounds[t + 1]]]
        model = clone(base).fit(X[rows], y[rows])
        coef[t], intercept[t] = np.ravel(model.coef_), np.ravel(model.intercept_)[0]
    seconds = time.perf_counter() - start
    test_tasks = tasks[split.test]
    decision = np.sum(X[split.test] * coef[test_tasks], axis=1) + intercept[test_tasks]
    return seconds, expit(decision) if split.family == "binary" else decision


def new_task_curve(split, shots, fit_one):
    """Score at each k over the new tasks' query rows, median time per task."""
    out = {}
    y_query = np.concatenate([split.y[q] for q in split.query])
    for k in shots:
        preds, times = [], []
        for s, q in zip(split.support, split.query):
            start = time.perf_counter()
            model = fit_one(split.X[s[:k]], split.y[s[:k]])
            times.append(time.perf_counter() - start)
            preds.append(None if model is None
                         else base_predict(model, split.X[q], split.family))
        if any(p is None for p in preds):
            out[k] = None
        else:
            out[k] = (split.score(y_query, np.concatenate(preds), None),
                      float(np.median(times)))
    return out


def skmeta_label(label, family):
    if label != "defaults":
        return f"skmeta {label}"
    params = META[family]().get_params()
    return f"skmeta defaults (gamma={params['gamma']!r}, prior={params['prior']!r})"


def run_local(split, repeat, shots, n_jobs):
    """Baselines and skmeta, in this process."""
    family, X, y = split.family, split.X, split.y
    base = BASES[family]["default"]
    tr, te = split.train, split.test
    y_test, t_test = y[te], split.tasks[te]
    records = []

    def add(method, phase, score=None, seconds=float("nan"), k=0, **kw):
        s1, s2 = score if score is not None else (float("nan"), None)
        records.append(Record(split.name, family, split.n_groups, repeat, method,
                              phase, k, s1, float("nan") if s2 is None else s2,
                              seconds, **kw))

    def add_curve(method, curve, note=""):
        for k in shots:
            if curve[k] is None:
                add(method, "adapt", k=k, status="n/a", note=note)
            else:
                add(method, "adapt", curve[k][0], curve[k][1], k=k)

    start = time.perf_counter()
    pooled = clone(base).fit(X[tr], y[tr])
    seconds = time.perf_counter() - start
    add(f"pooled {BASE_NAMES[family]}", "fit",
        split.score(y_test, base_predict(pooled, X[te], family), t_test), seconds)
    seconds, pred = per_task_fit_predict(base, split)
    add(f"{BASE_NAMES[family]} per task", "fit",
        split.score(y_test, pred, t_test), seconds)
    if split.support:
        y_query = np.concatenate([y[q] for q in split.query])
        zero_shot = np.concatenate([base_predict(pooled, X[q], family)
                                    for q in split.query])
        for k in shots:
            add(f"pooled {BASE_NAMES[family]}", "adapt",
                split.score(y_query, zero_shot, None), k=k, note="no adaptation")

        def per_task(Xs, ys):
            if family == "binary" and np.unique(ys).size < 2:
                return None
            return clone(base).fit(Xs, ys)
        add_curve(f"{BASE_NAMES[family]} per task",
                  new_task_curve(split, shots, per_task),
                  note="one class in the support rows")

    for label, params, base_kind in SKMETA_CONFIGS:
        method = skmeta_label(label, family)
        meta = META[family](clone(BASES[family][base_kind]), n_jobs=n_jobs, **params)
        start = time.perf_counter()
        meta.fit(X[tr], y[tr], tasks=split.tasks[tr])
        seconds = time.perf_counter() - start
        pred = (meta.predict_proba(X[te], tasks=t_test)[:, 1] if family == "binary"
                else meta.predict(X[te], tasks=t_test))
        add(method, "fit", split.score(y_test, pred, t_test), seconds)
        if split.support:
            add_curve(method, new_task_curve(split, shots, meta.adapt))
    return records


def run_peers(split, repeat, peers, shots, args, blocked):
    """Every requested peer on one split, each in a child process."""
    records = []
    family = split.family
    n_codes = split.n_groups + len(split.support)
    options = dict(slope_columns=split.slope_columns, n_jobs=args.n_jobs,
                   n_codes=n_codes)
    X, y, tasks = split.X, split.y, split.tasks
    y_test, t_test = y[split.test], tasks[split.test]
    new = [(X[s], y[s], X[q]) for s, q in zip(split.support, split.query)]
    y_query = (np.concatenate([y[q] for q in split.query]) if split.support
               else None)
    for name in peers:
        label, families = PEERS[name][:2]
        if family not in families:
            continue

        def add(phase, k=0, score=None, seconds=float("nan"), label=label, **kw):
            s1, s2 = score if score is not None else (float("nan"), None)
            records.append(Record(split.name, family, split.n_groups, repeat, label,
                                  phase, k, s1, float("nan") if s2 is None else s2,
                                  seconds, **kw))

        key = (name, split.name if split.school else family)
        if key in blocked:
            add("fit", status="skipped", note=blocked[key])
            for k in shots if split.support else ():
                add("adapt", k=k, status="skipped", note=blocked[key])
            continue
        job = dict(X=X[split.train], y=y[split.train], groups=tasks[split.train],
                   X_pred=X[split.test], groups_pred=t_test,
                   new=new if split.support else None, shots=shots)
        result = run_peer(name, family, options, job, args.timeout)
        if result["status"] == "timeout":
            note = f"timed out (> {args.timeout:g} s)"
            blocked[key] = (f"timed out at {split.n_groups:,} groups"
                            if not split.school else note)
            add("fit", status="timeout", note=note)
            for k in shots if split.support else ():
                add("adapt", k=k, status="skipped", note="fit timed out")
            continue
        if result["status"] == "error":
            add("fit", status="error", note=result["message"])
            for k in shots if split.support else ():
                add("adapt", k=k, status="skipped", note="fit failed")
            continue
        add("fit", score=split.score(y_test, result["pred"], t_test),
            seconds=result["seconds"], note="; ".join(result["notes"]))
        if not split.support:
            continue
        if result["adapt"] is not None:
            for k in shots:
                pred, seconds = result["adapt"][k]
                records.append(Record(split.name, family, split.n_groups, repeat,
                                      label + " (no refit)", "adapt", k,
                                      *_pad(split.score(y_query, pred, None)),
                                      seconds))
        if result["seconds"] > args.refit_budget:
            for k in shots:
                add("adapt", k=k, status="skipped",
                    note=f"refit not run: a fit took {result['seconds']:.0f} s "
                         f"(> --refit-budget {args.refit_budget:g} s)")
            continue
        for k in shots:
            rows = np.concatenate([split.train] + [s[:k] for s in split.support])
            query = np.concatenate(split.query)
            refit = dict(X=X[rows], y=y[rows], groups=tasks[rows], X_pred=X[query],
                         groups_pred=tasks[query])
            result = run_peer(name, family, options, refit, args.timeout)
            if result["status"] == "ok":
                add("adapt", k=k, score=split.score(y_query, result["pred"], None),
                    seconds=result["seconds"], note="; ".join(result["notes"]))
            else:
                add("adapt", k=k, status=result["status"],
                    note=result.get("message", f"timed out (> {args.timeout:g} s)"))
    return records


def _pad(score):
    return score[0], float("nan") if score[1] is None else score[1]


def warm_up(n_jobs):
    """Compile (or load from numba's cache) every kernel used, before timing."""
    start = time.perf_counter()
    for family in ("gaussian", "binary"):
        split = generated_split(family, 20, 2, seed=123)
        tr = split.train
        for _, params, base_kind in SKMETA_CONFIGS:
            meta = META[family](clone(BASES[family][base_kind]), n_jobs=n_jobs,
                                **params)
            meta.fit(split.X[tr], split.y[tr], tasks=split.tasks[tr])
            meta.adapt(split.X[split.support[0]], split.y[split.support[0]])
    return time.perf_counter() - start


# ------------------------------------------------------------------ output
def fmt_seconds(s):
    if not np.isfinite(s):
        return "–"
    if s < 1e-3:
        return f"{1e6 * s:.0f} µs"
    if s < 1:
        return f"{1e3 * s:.3g} ms"
    return f"{s:.3g} s"


class Footnotes:
    """Numbered notes under a table, each text once."""

    def __init__(self):
        self.texts = {}

    def ref(self, text):
        return f"[{self.texts.setdefault(text, len(self.texts) + 1)}]"

    def lines(self):
        return [f"* [{n}] {text}" for text, n in self.texts.items()]


def status_cell(group, notes):
    """None when every record is ok, else the first problem, with its note."""
    bad = [r for r in group if r.status != "ok"]
    if not bad:
        return None
    return f"{bad[0].status} {notes.ref(bad[0].note)}" if bad[0].note else bad[0].status


def warning_refs(group, notes):
    texts = dict.fromkeys(r.note for r in group
                          if r.note and r.note != "no adaptation")
    return "".join(" " + notes.ref(text) for text in texts)


def aggregate(records, school, notes):
    """Score and time cells: mean (± std over School's splits), median time."""
    cell = status_cell(records, notes)
    if cell is not None:
        return cell, "–"
    scores = np.array([r.score for r in records])
    if school:
        score = f"{100 * scores.mean():.1f} ± {100 * scores.std():.1f} %"
    else:
        score = f"{scores.mean():.3f}"
        second = np.array([r.score2 for r in records])
        if np.all(np.isfinite(second)):
            score += f" / {second.mean():.3f}"
    score += warning_refs(records, notes)
    return score, fmt_seconds(float(np.median([r.seconds for r in records])))


def method_order(records):
    return list(dict.fromkeys(r.method for r in records))


def markdown(head, rows, notes):
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    footnotes = notes.lines()
    return "\n".join(lines + ([""] + footnotes if footnotes else []))


def fit_table(records, family):
    fits = [r for r in records if r.family == family and r.phase == "fit"]
    if not fits:
        return ""
    datasets = list(dict.fromkeys(r.dataset for r in fits))
    metric = "ROC AUC / accuracy" if family == "binary" else "R²"
    head = ["method"]
    for d in datasets:
        head += [("explained variance" if d == "school" else metric) + f" {d}",
                 f"fit {d}"]
    notes, rows = Footnotes(), []
    for method in method_order(fits):
        cells = [method]
        for d in datasets:
            group = [r for r in fits if r.method == method and r.dataset == d]
            cells += aggregate(group, d == "school", notes) if group else ["n/a", "–"]
        rows.append(cells)
    return markdown(head, rows, notes)


def adapt_table(records, dataset):
    adapt = [r for r in records if r.dataset == dataset and r.phase == "adapt"]
    if not adapt:
        return ""
    shots = sorted({r.k for r in adapt})
    notes, rows = Footnotes(), []
    for method in method_order(adapt):
        cells = [method]
        for k in shots:
            group = [r for r in adapt if r.method == method and r.k == k]
            cell = status_cell(group, notes)
            if cell is None:
                score = np.mean([r.score for r in group])
                seconds = np.median([r.seconds for r in group])
                cell = (f"{score:.3f} · {fmt_seconds(seconds)}"
                        + warning_refs(group, notes))
            cells.append(cell)
        rows.append(cells)
    return markdown(["method"] + [f"k={k}" for k in shots], rows, notes)


def print_tables(records):
    for family in dict.fromkeys(r.family for r in records):
        print(f"## Fit on the training tasks: {family}\n")
        print(fit_table(records, family))
        print()
    for dataset in dict.fromkeys(r.dataset for r in records):
        table = adapt_table(records, dataset)
        if table:
            print(f"## New tasks, {dataset}: score · time at k support rows\n")
            print(table)
            print()


def write_csv(records, path):
    names = list(Record.__dataclass_fields__)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for r in records:
            writer.writerow([getattr(r, n) for n in names])


def read_csv(path):
    fields = Record.__dataclass_fields__
    with open(path, newline="") as handle:
        return [Record(**{name: fields[name].type(value) if fields[name].type in
                          (int, float) else value for name, value in row.items()})
                for row in csv.DictReader(handle)]


# -------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES),
                        help="numbers of training tasks of the generated data")
    parser.add_argument("--families", nargs="*", default=["gaussian", "binary"],
                        choices=["gaussian", "binary"])
    parser.add_argument("--peers", nargs="*", default=list(PEERS),
                        choices=list(PEERS), help="peers to run (none: skmeta "
                        "and the baselines only)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="data seeds of the generated datasets")
    parser.add_argument("--school", default=os.environ.get("SKMETA_SCHOOL_DATA",
                                                           str(DEFAULT_SCHOOL)),
                        help="path of school.npz ('' to skip School)")
    parser.add_argument("--school-splits", type=int, default=10)
    parser.add_argument("--n-new", type=int, default=50,
                        help="new tasks adapted at each k")
    parser.add_argument("--shots", type=int, nargs="*", default=list(SHOTS))
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds allowed to one peer fit (process included)")
    parser.add_argument("--refit-budget", type=float, default=30.0,
                        help="refits for new tasks only for peers whose fit "
                        "took at most this many seconds")
    parser.add_argument("--n-jobs", type=int, default=1,
                        help="threads of every library")
    parser.add_argument("--csv", help="write every measurement to this CSV file")
    parser.add_argument("--from-csv", help="print the tables of a CSV written "
                        "by --csv, without running anything")
    parser.add_argument("--quick", action="store_true",
                        help="100 tasks, 2 School splits, 20 new tasks, k = 1, "
                        "5, 20, 30 s timeout, 10 s refit budget")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.school_splits, args.n_new = [100], 2, 20
        args.shots, args.timeout, args.refit_budget = [1, 5, 20], 30.0, 10.0
    if max(args.shots) > N_SUPPORT:
        parser.error(f"--shots must be at most {N_SUPPORT}")
    return args


def versions():
    found = [f"skmeta {skmeta.__version__}", f"scikit-learn {sklearn.__version__}",
             f"numpy {np.__version__}"]
    for module in ("statsmodels", "gpboost", "lightgbm"):
        try:
            found.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            found.append(f"{module} not installed")
    return ", ".join(found)


def main(argv=None):
    args = parse_args(argv)
    if args.from_csv:
        print_tables(read_csv(args.from_csv))
        return
    for name in args.peers:
        module = {"mixedlm": "statsmodels", "bayesglmm": "statsmodels",
                  "gpboost": "gpboost", "lightgbm": "lightgbm"}[name.split("-")[0]]
        try:
            __import__(module)
        except ImportError:
            raise SystemExit(f"{module} is not installed (peer {name}): "
                             "pip install -e '.[peers]', or leave it out with "
                             "--peers.") from None
    print(f"Python {platform.python_version()}, {versions()}; "
          f"{args.n_jobs} thread(s) per library; {time.strftime('%Y-%m-%d %H:%M %Z')}; "
          f"load average {os.getloadavg()[1]:.1f} on {os.cpu_count()} cores")
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(f"skmeta warm-up (compilation or numba cache): "
              f"{warm_up(args.n_jobs):.1f} s")
        splits = []
        if "gaussian" not in args.families:
            pass
        elif args.school and Path(args.school).is_file():
            splits.append(("school", lambda: school_splits(args.school,
                                                           args.school_splits)))
        elif args.school:
            print(f"School skipped: {args.school} not found (set "
                  "SKMETA_SCHOOL_DATA or --school).")
        for family in args.families:
            for size in sorted(args.sizes):
                splits.append((f"{family}-{size}", lambda f=family, s=size: (
                    generated_split(f, s, args.n_new, seed)
                    for seed in range(args.repeats))))
        records, blocked = [], {}
        for name, make in splits:
            start = time.perf_counter()
            for repeat, split in enumerate(make()):
                records += run_local(split, repeat, args.shots, args.n_jobs)
                records += run_peers(split, repeat, args.peers, args.shots, args,
                                     blocked)
            print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    if args.csv:
        write_csv(records, args.csv)
    print(f"done {time.strftime('%H:%M %Z')}; load average over the last 15 min "
          f"{os.getloadavg()[2]:.1f}")
    print()
    print_tables(records)


if __name__ == "__main__":
    main()
