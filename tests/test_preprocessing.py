"""TaskScaler against StandardScaler, closed forms and the marginal likelihood.

The per-feature model is the Normal-scaled-inverse-chi-squared one (Murphy
2007, section 3, "NIX"); its evidence is written here again from the
textbook, and maximised with scipy to check the empirical Bayes fit.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy import optimize, stats
from scipy.special import gammaln
from sklearn import config_context
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from skmeta import MetaClassifier
from skmeta.datasets import make_meta_classification
from skmeta.preprocessing import TaskScaler

pytestmark = pytest.mark.filterwarnings(
    "error::sklearn.exceptions.ConvergenceWarning")


def nix_tasks(rng, sizes, mu0, kappa0, nu0, s0):
    """One feature per column of (mu0, ...): tasks drawn from NIX."""
    mu0, kappa0, nu0, s0 = map(np.atleast_1d, (mu0, kappa0, nu0, s0))
    n_tasks = len(sizes)
    var = nu0 * s0**2 / rng.chisquare(nu0, size=(n_tasks, mu0.size))
    means = mu0 + np.sqrt(var / kappa0) * rng.normal(size=var.shape)
    tasks = np.repeat(np.arange(n_tasks), sizes)
    X = means[tasks] + np.sqrt(var[tasks]) * rng.normal(size=(tasks.size,
                                                              mu0.size))
    return X, tasks


def nix_log_evidence(x, mu0, kappa0, nu0, s0sq):
    """Murphy (2007) eq. 95 for one task's values ``x`` of one feature."""
    n = x.size
    xbar = x.mean()
    kappa_n, nu_n = kappa0 + n, nu0 + n
    nu_s2 = (nu0 * s0sq + ((x - xbar) ** 2).sum()
             + n * kappa0 / kappa_n * (mu0 - xbar) ** 2)
    return (gammaln(nu_n / 2) - gammaln(nu0 / 2)
            + 0.5 * np.log(kappa0 / kappa_n)
            + nu0 / 2 * np.log(nu0 * s0sq) - nu_n / 2 * np.log(nu_s2)
            - n / 2 * np.log(np.pi))


@pytest.fixture(scope="module")
def shops():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 30, size=40)
    X, tasks = nix_tasks(rng, sizes, [10.0, -3.0, 0.0], [0.5, 3.0, 1.0],
                         [6.0, 20.0, 3.0], [2.0, 0.1, 50.0])
    return X, tasks


# --------------------------------------------------------------------------
# reductions and closed forms
# --------------------------------------------------------------------------
@pytest.mark.parametrize("with_mean", [True, False])
@pytest.mark.parametrize("with_std", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_without_tasks_it_is_standard_scaler(with_mean, with_std, dtype):
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(40, 4)) * [1.0, 10.0, 1e-3, 5.0] + [5, -1, 3, 2])
    X[:, 3] = 2.0  # constant: centred and left unscaled, as StandardScaler
    X = X.astype(dtype)
    ours = TaskScaler(with_mean=with_mean, with_std=with_std).fit(X)
    # the statistics are computed in float64 whatever the input: compare
    # with StandardScaler in float64 (in float32 it subtracts in float32)
    ref = StandardScaler(with_mean=with_mean, with_std=with_std).fit(
        X.astype(np.float64))
    Z, Z_ref = ours.transform(X), ref.transform(X.astype(np.float64))
    assert Z.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_allclose(Z, Z_ref, rtol=rtol, atol=rtol)
    assert_allclose(ours.inverse_transform(Z), X, rtol=rtol, atol=rtol)
    assert_allclose(ours.mean_[0], X.astype(np.float64).mean(0), rtol=1e-12)
    assert_allclose(ours.var_[0], X.astype(np.float64).var(0), rtol=1e-10)
    assert ours.tasks_ is None and ours.n_samples_seen_.tolist() == [40]


def test_task_statistics_are_the_posterior_of_the_learned_prior(shops):
    X, tasks = shops
    scaler = TaskScaler().fit(X, tasks=tasks)
    mu0, s0sq = scaler.population_mean_, scaler.population_var_
    kappa0, nu0 = scaler.mean_prior_count_, scaler.var_prior_count_
    for t in [0, 5, 39]:
        x = X[tasks == t]
        n = x.shape[0]
        xbar, ss = x.mean(0), ((x - x.mean(0)) ** 2).sum(0)
        mean = (kappa0 * mu0 + n * xbar) / (kappa0 + n)
        var = (nu0 * s0sq + ss + kappa0 * n / (kappa0 + n) * (xbar - mu0) ** 2
               ) / (nu0 + n)
        assert_allclose(scaler.mean_[t], mean, rtol=1e-12)
        assert_allclose(scaler.var_[t], var, rtol=1e-12)
        Z = scaler.transform(x, tasks=np.full(n, t))
        assert_allclose(Z, (x - mean) / np.sqrt(var), rtol=1e-12)


def test_hyper_parameters_maximise_the_marginal_likelihood(shops):
    """Per feature: the evidence of every task plus the hyperprior
    ``nu0 s0**2 ~ W(var, nu0 + 2)`` (a gamma distribution in one dimension)
    has its maximum at the fitted values; scipy finds nothing better."""
    X, tasks = shops
    scaler = TaskScaler().fit(X, tasks=tasks)
    labels = np.unique(tasks)
    for j in range(X.shape[1]):
        x = X[:, j]
        v = x.var()

        def negative(theta, x=x, v=v):
            mu0, kappa0, nu0, s0sq = (theta[0], np.exp(theta[1]),
                                      np.exp(theta[2]), np.exp(theta[3]))
            evidence = sum(nix_log_evidence(x[tasks == t], mu0, kappa0, nu0,
                                            s0sq) for t in labels)
            hyper = stats.gamma.logpdf(nu0 * s0sq, a=(nu0 + 2) / 2, scale=2 * v)
            return -(evidence + hyper)

        fitted = np.array([scaler.population_mean_[j],
                           np.log(scaler.mean_prior_count_[j]),
                           np.log(scaler.var_prior_count_[j]),
                           np.log(scaler.population_var_[j])])
        best = optimize.minimize(negative, fitted, method="Nelder-Mead",
                                 options={"xatol": 1e-10, "fatol": 1e-12,
                                          "maxiter": 4000})
        assert negative(fitted) <= best.fun + 1e-7
        # from elsewhere, scipy lands on the same point
        start = np.array([x.mean(), 0.0, np.log(5.0), np.log(v)])
        other = optimize.minimize(negative, start, method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-12,
                                           "maxiter": 8000})
        assert negative(fitted) <= other.fun + 1e-7
        assert_allclose(other.x, fitted, rtol=1e-3, atol=1e-3)


def test_empirical_bayes_recovers_known_hyper_parameters():
    rng = np.random.default_rng(2)
    truth = {"mu0": [10.0, -3.0], "kappa0": [0.5, 3.0], "nu0": [6.0, 20.0],
             "s0": [2.0, 0.1]}
    X, tasks = nix_tasks(rng, rng.integers(2, 12, size=4000), **truth)
    scaler = TaskScaler().fit(X, tasks=tasks)
    assert_allclose(scaler.population_mean_, truth["mu0"], rtol=0.02)
    assert_allclose(scaler.mean_prior_count_, truth["kappa0"], rtol=0.1)
    assert_allclose(scaler.var_prior_count_, truth["nu0"], rtol=0.15)
    assert_allclose(scaler.population_scale_, truth["s0"], rtol=0.03)


def test_shrinkage_limits():
    """A task with many rows gets its own mean and standard deviation; a
    task with one row gets statistics near the population's."""
    rng = np.random.default_rng(3)
    X, tasks = nix_tasks(rng, np.full(60, 8), [0.0, 5.0], [1.0, 2.0],
                         [10.0, 10.0], [1.0, 3.0])
    # a typical task of the population with many rows, and one with a row
    big = rng.normal([0.8, 7.0], [1.2, 2.5], size=(100000, 2))
    single = np.array([[0.5, 5.5]])
    X = np.vstack([X, big, single])
    tasks = np.r_[tasks, np.full(len(big), 100), 101]
    scaler = TaskScaler().fit(X, tasks=tasks)
    own = StandardScaler().fit(big)
    assert_allclose(scaler.mean_[-2], own.mean_, rtol=1e-3, atol=1e-3)
    assert_allclose(scaler.scale_[-2], own.scale_, rtol=1e-3)
    Z = scaler.transform(big[:50], tasks=np.full(50, 100))
    assert_allclose(Z, own.transform(big[:50]), rtol=1e-2, atol=1e-2)
    # one row: StandardScaler on it alone would give scale 1 and output 0;
    # here the scale stays within a factor of the population's and the
    # mean moves from the population's by the weight of one row
    kappa0 = scaler.mean_prior_count_
    mu0 = scaler.population_mean_
    assert_allclose(scaler.mean_[-1], mu0 + (single[0] - mu0) / (kappa0 + 1),
                    rtol=1e-10)
    ratio = scaler.scale_[-1] / scaler.population_scale_
    assert np.all((ratio > 0.85) & (ratio < 1.15))


def test_new_tasks_population_and_transductive(shops):
    X, tasks = shops
    rng = np.random.default_rng(4)
    X_new = rng.normal(size=(9, 3)) * [2, 0.1, 50] + [10, -3, 0]
    t_new = np.array([100, 100, 100, 101, 3, 101, 100, 3, 3])
    population = TaskScaler().fit(X, tasks=tasks)
    Z = population.transform(X_new, tasks=t_new)
    unseen = t_new >= 100
    assert_allclose(Z[unseen], (X_new[unseen] - population.population_mean_)
                    / population.population_scale_)
    assert_allclose(Z[~unseen], population.transform(X_new[~unseen],
                                                     tasks=t_new[~unseen]))
    transductive = TaskScaler(new_tasks="transductive").fit(X, tasks=tasks)
    Z = transductive.transform(X_new, tasks=t_new)
    # a new task is scaled as if it had been in fit, with the prior fixed
    for label in [100, 101]:
        rows = t_new == label
        x = X_new[rows]
        n = rows.sum()
        mu0, s0sq = transductive.population_mean_, transductive.population_var_
        kappa0, nu0 = (transductive.mean_prior_count_,
                       transductive.var_prior_count_)
        xbar, ss = x.mean(0), ((x - x.mean(0)) ** 2).sum(0)
        mean = (kappa0 * mu0 + n * xbar) / (kappa0 + n)
        var = (nu0 * s0sq + ss + kappa0 * n / (kappa0 + n) * (xbar - mu0) ** 2
               ) / (nu0 + n)
        assert_allclose(Z[rows], (x - mean) / np.sqrt(var), rtol=1e-12)
    # seen tasks are unaffected by the option
    assert_allclose(Z[~unseen], population.transform(X_new[~unseen],
                                                     tasks=t_new[~unseen]))


@settings(max_examples=30, deadline=None)
@given(with_mean=st.booleans(), with_std=st.booleans(),
       new_tasks=st.sampled_from(["population", "transductive"]),
       seed=st.integers(0, 10**6), n_new=st.integers(1, 6))
def test_inverse_transform_undoes_transform(with_mean, with_std, new_tasks,
                                            seed, n_new):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 2)) * [3.0, 0.2] + [rng.normal() * 5, 1.0]
    tasks = rng.integers(0, 6, size=60)
    X_new = rng.normal(size=(n_new + 4, 2)) * [3.0, 0.2] + [2.0, 1.0]
    t_new = np.r_[np.full(n_new, 50), rng.integers(0, 6, size=4)]
    scaler = TaskScaler(with_mean=with_mean, with_std=with_std,
                        new_tasks=new_tasks).fit(X, tasks=tasks)
    Z = scaler.transform(X_new, tasks=t_new)
    try:
        back = scaler.inverse_transform(Z, tasks=t_new)
    except ValueError as exc:
        # x / scale(x) without centring: two scalings may give the same z
        assert (new_tasks, with_mean, with_std) == ("transductive", False, True)
        assert "cannot be inverted" in str(exc)
        return
    assert_allclose(back, X_new, rtol=1e-8, atol=1e-8)


# --------------------------------------------------------------------------
# the task column, containers, pipelines
# --------------------------------------------------------------------------
def test_task_column_is_kept_unscaled_in_place(shops):
    X, tasks = shops
    with_column = np.insert(X, 1, tasks, axis=1)
    scaler = TaskScaler(task_column=1).fit(with_column)
    reference = TaskScaler().fit(X, tasks=tasks)
    Z = scaler.transform(with_column)
    assert Z.shape == with_column.shape
    assert_array_equal(Z[:, 1], tasks)
    assert_allclose(np.delete(Z, 1, axis=1), reference.transform(X, tasks=tasks))
    assert_allclose(scaler.inverse_transform(Z), with_column, atol=1e-12)
    assert scaler.get_feature_names_out().tolist() == ["x0", "x1", "x2", "x3"]


def test_integer_task_ids_past_the_floats_mantissa_are_kept_exactly(shops):
    # hashed 64-bit ids: in a float64 array 2**60 + k all round to 2**60, and
    # the next step of a pipeline fitted one task where there were several
    pd = pytest.importorskip("pandas")
    X, tasks = shops
    ids = np.int64(2**60) + tasks.astype(np.int64)
    with_column = pd.DataFrame(X, columns=["a", "b", "c"])
    with_column.insert(0, "shop", ids)
    scaler = TaskScaler(task_column="shop").fit(with_column)
    Z = scaler.transform(with_column)
    assert Z.dtype == object
    assert_array_equal(Z[:, 0], ids)
    assert_allclose(Z[:, 1:].astype(float),
                    TaskScaler().fit(X, tasks=tasks).transform(X, tasks=tasks))
    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    # the array the user guide's pipeline passes on, read by position
    piped = make_pipeline(TaskScaler(task_column="shop"),
                          MetaClassifier(task_column=0)).fit(with_column, y)
    assert_array_equal(piped[-1].tasks_, np.unique(ids))
    # ids the float holds exactly keep the numeric array
    small = TaskScaler(task_column=0).fit_transform(np.insert(X, 0, tasks,
                                                              axis=1))
    assert small.dtype == np.float64


def test_pandas_and_polars_outputs_keep_the_task_column(shops):
    pd = pytest.importorskip("pandas")
    X, tasks = shops
    frame = pd.DataFrame(X, columns=["a", "b", "c"],
                         index=np.arange(len(X)) * 10)
    frame.insert(2, "shop", [f"shop-{t}" for t in tasks])
    scaler = TaskScaler(task_column="shop").set_output(transform="pandas")
    out = scaler.fit_transform(frame)
    assert list(out.columns) == ["a", "b", "shop", "c"]
    assert_array_equal(out.index, frame.index)
    assert_array_equal(out["shop"], frame["shop"])
    assert out["a"].dtype == np.float64
    reference = TaskScaler().fit(X, tasks=tasks).transform(X, tasks=tasks)
    # string labels order the tasks differently: the sums over tasks of the
    # empirical Bayes ascent differ in their last bits, within its tolerance
    assert_allclose(out[["a", "b", "c"]].to_numpy(), reference, rtol=1e-6,
                    atol=1e-8)
    # the default container is an array; strings make it an object array
    plain = TaskScaler(task_column="shop").fit_transform(frame)
    assert isinstance(plain, np.ndarray) and plain.dtype == object
    assert_array_equal(plain[:, 2], frame["shop"])
    pl = pytest.importorskip("polars")
    polars_out = (TaskScaler(task_column="shop").set_output(transform="polars")
                  .fit_transform(pl.from_pandas(frame)))
    assert polars_out.columns == ["a", "b", "shop", "c"]
    assert polars_out["shop"].to_list() == frame["shop"].tolist()
    assert_allclose(polars_out.select(["a", "b", "c"]).to_numpy(),
                    out[["a", "b", "c"]].to_numpy())


@pytest.fixture(scope="module")
def stores():
    pd = pytest.importorskip("pandas")
    X, y, _ = make_meta_classification(
        n_tasks=20, n_samples_per_task=30, n_features=4, n_informative=2,
        n_redundant=1, task_spread=1.0, as_frame=True, random_state=0)
    X = X.rename(columns={"task": "store"})
    # every store measures in its own units
    shift = np.asarray(X["store"], dtype=float)
    X[["x0", "x1"]] = X[["x0", "x1"]] * [100.0, 0.01] + shift[:, None] * [50, 1]
    X["store"] = "store-" + X["store"].astype(str)
    return X, pd.Series(y, name="y"), X["store"].to_numpy()


# a fixed prior: these tests are about routing tasks, not about the defaults
FIXED = dict(gamma=1.0, prior="isotropic")


def test_pipeline_with_meta_classifier_on_a_dataframe(stores):
    X, y, groups = stores
    pipe = make_pipeline(
        TaskScaler(task_column="store"),
        MetaClassifier(LogisticRegression(), task_column="store", **FIXED),
    ).set_output(transform="pandas")
    pipe.fit(X, y)
    # what the pipeline does, step by step
    Z = TaskScaler(task_column="store").set_output(
        transform="pandas").fit_transform(X)
    meta = MetaClassifier(LogisticRegression(), task_column="store", **FIXED).fit(Z, y)
    assert_allclose(pipe.predict_proba(X), meta.predict_proba(Z))
    # scorers pass no metadata: the task column carries the tasks through
    scores = cross_val_score(pipe, X, y, groups=groups, cv=GroupKFold(3),
                             scoring="roc_auc")
    assert np.all(scores > 0.5)
    # with numpy containers the column is read by position
    by_position = Pipeline([
        ("scale", TaskScaler(task_column=4)),
        ("meta", MetaClassifier(LogisticRegression(), task_column=4, **FIXED)),
    ]).fit(X.to_numpy(), y)
    assert_allclose(by_position.predict_proba(X.to_numpy()),
                    meta.predict_proba(Z))


def test_tasks_routed_through_a_pipeline(stores):
    X, y, groups = stores
    features = X.drop(columns="store").to_numpy()
    with config_context(enable_metadata_routing=True):
        pipe = make_pipeline(TaskScaler(),
                             MetaClassifier(LogisticRegression(), **FIXED))
        pipe.fit(features, y, tasks=groups)
        proba = pipe.predict_proba(features, tasks=groups)
    scaler = TaskScaler().fit(features, tasks=groups)
    meta = MetaClassifier(LogisticRegression(), **FIXED).fit(
        scaler.transform(features, tasks=groups), y, tasks=groups)
    assert_allclose(proba, meta.predict_proba(
        scaler.transform(features, tasks=groups), tasks=groups))


# --------------------------------------------------------------------------
# degenerate and bad input
# --------------------------------------------------------------------------
def test_constant_features():
    rng = np.random.default_rng(5)
    tasks = np.repeat(np.arange(8), 5)
    X = np.c_[np.full(40, 3.0), rng.normal(size=40), tasks * 2.0]
    # column 0 is constant, column 2 constant within every task: its tasks'
    # variances, and the population's, collapse (and it says so)
    with pytest.warns(UserWarning, match=r"features \[2\]"):
        scaler = TaskScaler().fit(X, tasks=tasks)
    assert_array_equal(scaler.scale_[:, 0], 1.0)
    assert_array_equal(scaler.mean_[:, 0], 3.0)
    assert np.isinf(scaler.mean_prior_count_[0])
    Z = scaler.transform(X, tasks=tasks)
    assert np.all(np.isfinite(Z))
    assert_array_equal(Z[:, 0], 0.0)
    with pytest.warns(UserWarning, match=r"features \[2\]"):
        new = TaskScaler(new_tasks="transductive").fit(X, tasks=tasks)
    Z_new = new.transform(np.array([[3.0, 0.1, 5.0], [4.0, 0.2, 6.0]]),
                          tasks=[99, 99])
    assert_allclose(Z_new[:, 0], [0.0, 1.0])


def test_inputs_are_not_modified(shops):
    X, tasks = shops
    X_copy, tasks_copy = X.copy(), tasks.copy()
    scaler = TaskScaler(new_tasks="transductive").fit(X, tasks=tasks)
    Z = scaler.transform(X, tasks=tasks + 100)
    Z_copy = Z.copy()
    scaler.inverse_transform(Z, tasks=tasks + 100)
    assert_array_equal(X, X_copy)
    assert_array_equal(tasks, tasks_copy)
    assert_array_equal(Z, Z_copy)


@pytest.mark.parametrize("call, match", [
    (lambda X, t: TaskScaler(task_column=0).fit(X, tasks=t),
     "either through task_column or through tasks="),
    (lambda X, t: TaskScaler().fit(X, tasks=t).transform(X),
     "pass tasks= or set task_column"),
    (lambda X, t: TaskScaler().fit(X).transform(X, tasks=t),
     "fitted without task identities"),
    (lambda X, t: TaskScaler().fit(X, tasks=t[:-2]), "tasks has 38 labels"),
    (lambda X, t: TaskScaler().fit(X, tasks=t).transform(X[:, :2], tasks=t),
     "X has 2 features"),
    (lambda X, t: TaskScaler(task_column="shop").fit(X),
     "is a name, but X is not a DataFrame"),
    (lambda X, t: TaskScaler().fit(X, tasks=np.r_[t[:-1], 0.5]),
     "must be integers or strings"),
    (lambda X, t: TaskScaler(new_tasks="nearest").fit(X), "new_tasks"),
])
def test_errors(call, match):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(40, 3))
    tasks = np.repeat(np.arange(8), 5)
    with pytest.raises(ValueError, match=match):
        call(X, tasks)


def test_a_feature_constant_within_one_task_is_left_out_of_its_prior():
    # a 0/1 indicator never set in one task: its empirical Bayes objective
    # has no maximum there (LinAlgError before the covariance floor; after
    # it, a population variance collapsed to the floor and that task's own
    # variance below 1e-6, with a warning). Left out of that feature's
    # prior, the task gets a variance shrunk from the others'
    rng = np.random.RandomState(0)
    tasks = np.repeat(np.arange(10), 20)
    indicator = (rng.uniform(size=200) < 0.3).astype(float)
    indicator[tasks == 0] = 0.0
    X = np.column_stack([rng.normal(size=200), indicator])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        scaler = TaskScaler().fit(X, tasks=tasks)
    assert np.all(np.isfinite(scaler.transform(X, tasks=tasks)))
    # about the prior learned from the nine tasks alone (its hyperprior, the
    # feature's variance over all rows, still sees task 0's)
    others = TaskScaler().fit(X[tasks > 0], tasks=tasks[tasks > 0])
    assert_allclose(scaler.population_var_[1], others.population_var_[1],
                    rtol=0.05)
    assert_allclose(scaler.var_[1:, 1], others.var_[:, 1], rtol=0.05)
    assert 0.5 * others.population_var_[1] < scaler.var_[0, 1] < 1.0
    # the other feature is fitted as without the indicator (up to where the
    # ascent, which stops for all features together, stops)
    alone = TaskScaler().fit(X[:, :1], tasks=tasks)
    assert_allclose(scaler.var_[:, 0], alone.var_[:, 0], rtol=1e-7)
    # far from zero, the centring's rounding is no spread either
    shifted = TaskScaler().fit(X + [0.0, 1e10 + 0.1], tasks=tasks)
    assert_allclose(shifted.var_[:, 1], scaler.var_[:, 1], rtol=1e-3)


@pytest.mark.parametrize("n_tasks", [3, 4, 6])
def test_new_tasks_are_not_divided_by_a_collapsed_scale(n_tasks):
    # a few tasks, one with a feature constant in its rows: the population
    # scale of that feature was 0.0015-0.0023, and new tasks' values of it
    # came out between -1,589 and 624
    rng = np.random.RandomState(0)
    tasks = np.repeat(np.arange(n_tasks), 6)
    X = rng.normal(size=(6 * n_tasks, 2))
    X[tasks == 0, 1] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        scaler = TaskScaler().fit(X, tasks=tasks)
    assert 0.3 < scaler.population_scale_[1] < 3.0
    new = scaler.transform(rng.normal(size=(50, 2)), tasks=np.full(50, 99))
    assert np.all(np.abs(new) < 10)


@pytest.mark.parametrize("dtype", ["category", "Int64", "int32"])
def test_pandas_output_keeps_the_task_columns_dtype(dtype):
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    labels = (np.repeat(["n", "s", "e", "w"], 10) if dtype == "category"
              else np.repeat([1, 2, 3, 4], 10))
    frame = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"],
                         index=np.arange(40)[::-1]).assign(
        store=pd.Series(labels, index=np.arange(40)[::-1]).astype(dtype))
    out = TaskScaler(task_column="store").set_output(
        transform="pandas").fit_transform(frame)
    assert out["store"].dtype == frame["store"].dtype
    pd.testing.assert_series_equal(out["store"], frame["store"])
    assert out.index.equals(frame.index)


@pytest.mark.parametrize("task_column", ["t", ["t"]])
def test_a_frame_of_its_task_column_alone_is_refused_plainly(task_column):
    # numpy's "at least one array or dtype is required" came out of
    # validation for a DataFrame; an array got scikit-learn's message
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"t": np.repeat([0, 1, 2], 4)})
    y = np.tile([0, 1], 6)
    message = r"no feature besides its task column.*found 0 feature\(s\)"
    if task_column == "t":  # (TaskScaler takes one column)
        with pytest.raises(ValueError, match=message):
            TaskScaler(task_column=task_column).fit(frame)
    with pytest.raises(ValueError, match=message):
        MetaClassifier(task_column=task_column).fit(frame, y)
