"""Elementary functions, row primitives, Adam and the kernel cache against references.

The datafits and penalties have their own modules: ``test_datafits.py`` and
``test_penalties.py``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit, types
from scipy import linalg

import skmeta._kernels._jit as _jit_module
from skmeta._kernels._adam import adam_update
from skmeta._kernels._elementary import exp, log1p_unit
from skmeta._kernels._jit import _jit
from skmeta._kernels._linalg import lu_factor, lu_solve
from skmeta._kernels._rows import dense_gradient, dense_predictor

# error bounds, in units of the result's spacing (ulp); the C library's
# functions are within 1
EXP_ULPS = 2
LOG1P_ULPS = 3


@njit
def _apply(func, x):
    """``func`` (a jitted scalar function) on each entry of ``x``."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = func(x[i])
    return out


def _apply_exp(x):
    return _apply(exp, x)


def _apply_log1p_unit(x):
    return _apply(log1p_unit, x)


def _ulps(actual, desired):
    return np.abs(actual - desired) / np.spacing(np.abs(desired))


def test_exp_matches_the_c_library_over_the_normal_range():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-708.0, 709.78, 400_001),
                        rng.normal(scale=5.0, size=100_000),
                        [0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300,
                         np.log(2.0) / 2, -np.log(2.0) / 2]])
    assert _ulps(_apply_exp(x), np.exp(x)).max() <= EXP_ULPS


def test_exp_limits():
    x = np.array([-np.inf, -1e6, -745.2, -708.5, 709.79, 710.0, 1e6, np.inf,
                  np.nan])
    out = _apply_exp(x)
    # below -708 the result is flushed to 0 (the true value is below
    # 3.3e-308); it overflows to inf where the C library's does
    np.testing.assert_array_equal(out[:4], 0.0)
    np.testing.assert_array_equal(out[4:8], np.inf)
    assert np.isnan(out[8])
    top = np.array([709.0, 709.5, 709.78, 709.782712893384])
    assert np.all(np.isfinite(_apply_exp(top)))
    assert _ulps(_apply_exp(top), np.exp(top)).max() <= EXP_ULPS


def test_exp_of_logistic_margins_keeps_probabilities_exact():
    # the logistic datafit evaluates exp(-|z|); its sigmoid must match scipy's
    from scipy.special import expit

    z = np.linspace(-700.0, 700.0, 100_001)
    e = _apply_exp(-np.abs(z))
    p = np.where(z >= 0, 1.0, e) / (1.0 + e)
    np.testing.assert_allclose(p, expit(z), rtol=4e-16, atol=0)


@pytest.mark.parametrize("scale", ["unit", "tiny"])
def test_log1p_unit_matches_the_c_library(scale):
    rng = np.random.default_rng(1)
    if scale == "unit":
        e = np.concatenate([np.linspace(0.0, 1.0, 200_001), rng.uniform(size=10_000)])
    else:
        e = np.concatenate([np.exp(-np.linspace(0.0, 708.0, 100_001)), [5e-324]])
    out = _apply_log1p_unit(e)
    desired = np.log1p(e)
    nonzero = desired > 0
    assert _ulps(out[nonzero], desired[nonzero]).max() <= LOG1P_ULPS
    np.testing.assert_array_equal(out[~nonzero], 0.0)


@njit
def _predictor(XT, lo, hi, theta, n_outputs):
    Z = np.full((n_outputs, hi - lo), np.nan)
    dense_predictor(XT, lo, hi, XT.shape[0], theta, n_outputs, Z)
    return Z


@njit
def _gradient(XT, lo, hi, G, scale):
    out = np.ones(XT.shape[0] * G.shape[0])
    dense_gradient(XT, lo, hi, XT.shape[0], G, scale, G.shape[0], out)
    return out


@pytest.mark.parametrize("p1", [1, 3, 4, 9, 21])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_dense_rows_primitives_on_any_row_range(p1, n_outputs):
    # the rows lo:hi of a transposed design, as the kernels read them (the
    # loops count with unsigned indices: any range must still be right)
    rng = np.random.default_rng(p1 + 10 * n_outputs)
    XT = rng.normal(size=(p1, 57))
    theta = rng.normal(size=n_outputs * p1)
    Theta = theta.reshape(n_outputs, p1)
    for lo, hi in [(0, 57), (0, 20), (20, 40), (13, 14), (56, 57), (30, 30)]:
        Z = _predictor(XT, lo, hi, theta, n_outputs)
        np.testing.assert_allclose(Z, Theta @ XT[:, lo:hi], rtol=1e-13, atol=1e-13)
        G = rng.normal(size=(n_outputs, hi - lo))
        out = _gradient(XT, lo, hi, G, 0.5)
        np.testing.assert_allclose(out, 1.0 + 0.5 * (G @ XT[:, lo:hi].T).ravel(),
                                   rtol=1e-13, atol=1e-13)


@njit
def _lu_solve(A, b):
    LU = A.copy()
    # garbage, as in a reused workspace: every entry must be written
    piv = np.full(A.shape[0], 10**9, dtype=np.intp)
    regular = lu_factor(LU, piv, A.shape[0])
    x = b.copy()
    lu_solve(LU, piv, x, A.shape[0])
    return regular, piv, x


def test_lu_solve_matches_scipy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 30):
        A = rng.normal(size=(n, n)) + n * np.eye(n)
        b = rng.normal(size=n)
        regular, piv, x = _lu_solve(A, b)
        assert regular
        np.testing.assert_allclose(x, linalg.solve(A, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("zero_column", [0, 2, 4])
def test_lu_of_a_singular_matrix_leaves_valid_pivots(zero_column):
    # a singular capacitance (a degenerate prior) used to leave the pivots
    # past the zero column unwritten, and lu_solve then swapped entries at
    # whatever indices the workspace held: a crash or a silent overwrite
    rng = np.random.default_rng(zero_column)
    A = rng.normal(size=(5, 5))
    A[:, zero_column] = 0.0
    regular, piv, x = _lu_solve(A, rng.normal(size=5))
    assert not regular
    assert np.all((piv >= np.arange(5)) & (piv < 5))
    assert not np.all(np.isfinite(x))


def test_adam_kernel_is_the_numpy_formula_to_the_last_bit():
    rng = np.random.default_rng(0)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    param = rng.normal(size=11)
    m = np.zeros(11)
    v = np.zeros(11)
    ref, ref_m, ref_v = param.copy(), m.copy(), v.copy()
    for t in range(1, 30):
        grad = rng.normal(scale=10.0 ** rng.integers(-6, 3), size=11)
        adam_update(param, grad, m, v, lr, b1, b2, eps, 1.0 - b1**t, 1.0 - b2**t)
        ref_m = b1 * ref_m + (1.0 - b1) * grad
        ref_v = b2 * ref_v + (1.0 - b2) * grad**2
        m_hat = ref_m / (1.0 - b1**t)
        v_hat = ref_v / (1.0 - b2**t)
        ref = ref - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_array_equal(param, ref)
        np.testing.assert_array_equal(m, ref_m)
        np.testing.assert_array_equal(v, ref_v)


# --------------------------------------------------------------------------
# numba's debug mode: NUMBA_DISABLE_JIT=1 runs every kernel as Python
# --------------------------------------------------------------------------
def _tiny_fits():
    """A proximal fit, a MAML fit and predictions, on three tasks of six rows,
    and ``exp`` across its range: small, since without the JIT it is Python."""
    from skmeta import MetaClassifier, MetaRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(18, 2))
    tasks = np.repeat(np.arange(3), 6)
    y = np.tile([0, 1], 9)
    yr = X[:, 0] - 0.5 * X[:, 1] + 0.1 * rng.normal(size=18)
    prox = MetaClassifier(gamma=1.0).fit(X, y, tasks=tasks)
    maml = MetaRegressor(method="maml", inner_steps=2, max_iter=3,
                         random_state=0).fit(X, yr, tasks=tasks)
    unseen = np.r_[tasks[:-1], 7]  # the last row's task is new: the prior
    return {
        "prox_theta": prox.task_params_,
        "prox_proba": prox.predict_proba(X, tasks=unseen),
        "maml_theta0": maml.meta_params_,
        "maml_pred": maml.predict(X, tasks=unseen),
        "adapted": maml.adapt(X[:4], yr[:4]).coef_,
        "exp": _apply_exp(np.array([-800.0, -700.0, -1.5, 0.0, 1e-3, 2.0,
                                    700.0, 710.0])),
    }


def _shift(a, b, add):
    return a + b if add else a - b


def test_constant_arguments_compile_a_function_once():
    # numba types a constant argument as a literal, one compiled
    # specialization per value (and per combination); the kernels'
    # functions are compiled once per kind of argument
    shift = _jit(nogil=True)(_shift)  # as the kernels', without the cache

    @njit
    def calls(x):
        return shift(x, 0, True) + shift(x, 1, False) + shift(x, x, x > 0)

    assert calls(3) == 3 + 2 + 6
    assert list(shift.overloads) == [(types.int64, types.int64, types.boolean)]

    # an argument named as literal keeps its constant's value (and only it)
    shift = _jit(literal=("add",), nogil=True)(_shift)

    @njit
    def calls_literal(x):
        return shift(x, 0, True) + shift(x, 1, False) + shift(x, x, x > 0)

    assert calls_literal(3) == 3 + 2 + 6
    assert set(shift.overloads) == {
        (types.int64, types.int64, types.literal(True)),
        (types.int64, types.int64, types.literal(False)),
        (types.int64, types.int64, types.boolean)}
    with pytest.raises(ValueError):
        _jit(literal=("no_such_argument",))(_shift)


def _scaled_sum(x, scale):
    total = 0.0
    for v in x:
        total += scale * v
    return total


def _shown(x):
    print("x is", x)
    return x


def test_helpers_are_compiled_only_into_the_kernels_that_link_them():
    # a helper's library is linked, never optimized and emitted on its own;
    # kernels that call it -- two here, sharing it -- compute as with
    # numba's default compilation
    from skmeta._kernels import _linked
    from skmeta._kernels._jit import helper
    from skmeta._kernels._rows import dense_gram

    assert _linked.AVAILABLE, "numba's codegen lacks what _linked relies on"
    linked = helper(_scaled_sum)
    default = njit(_scaled_sum)

    @njit
    def first(x):
        return linked(x, 2.0) - linked(x[::2], 0.5)

    @njit
    def second(x):
        return linked(x, -1.0)

    x = np.random.default_rng(0).normal(size=17)
    assert first(x) == default(x, 2.0) - default(x[::2], 0.5)
    assert second(x) == default(x, -1.0)
    assert len(linked.overloads) == 2  # contiguous and strided x
    assert all(isinstance(c.library, _linked._LinkedOnlyLibrary)
               for c in linked.overloads.values())
    assert not isinstance(first.overloads[first.signatures[0]].library,
                          _linked._LinkedOnlyLibrary)

    # a helper has no numba environment: one that needs it is refused at
    # compile time (a print of a run-time value would otherwise hang a kernel
    # compiled without the GIL)
    shown = helper(_shown)

    @njit
    def shows(x):
        return shown(x)

    with pytest.raises(RuntimeError, match="needs a numba environment"):
        shows(1.0)

    # the package's helpers too, e.g. the dense Gram product (its kernels may
    # come from the cache, so that it is not compiled in this process)
    assert dense_gram._compiler.pipeline_class is _linked.HelperCompiler


def _call_count(kernel, name):
    """Calls left in ``kernel``'s optimized code to functions named ``name``."""
    text = "\n".join(kernel.inspect_llvm(s) for s in kernel.signatures)
    # a mangled name's parts are prefixed by their lengths: 8gradientB is
    # not 14dense_gradientB
    return len(re.findall(rf"call [^\n]*@_ZN[^\n(]*{len(name)}{name}B", text))


def test_always_inlined_helpers_leave_no_call_in_their_kernels():
    # the row products and the unrolled steps are inlined wherever they are
    # called; LLVM left them as calls, a quarter of the MAML kernel's time
    from skmeta._kernels import _linked, _rows, _unroll
    from skmeta._kernels._jit import always_inlined, helper, kernel

    assert _linked.AVAILABLE, "numba's codegen lacks what _linked relies on"
    summed = helper(_scaled_sum)

    def _twice_summed(x, scale):
        return summed(x, scale) + summed(x[::-1], scale)

    inlined = helper(always_inlined(_twice_summed))

    @njit
    def uses(x):
        return inlined(x, 2.0) - inlined(x[:3], 0.5)

    x = np.random.default_rng(0).normal(size=9)

    def twice(x, scale):
        return _scaled_sum(x, scale) + _scaled_sum(x[::-1], scale)

    assert uses(x) == pytest.approx(twice(x, 2.0) - twice(x[:3], 0.5),
                                    rel=1e-12)
    assert all(c.library.always_inline for c in inlined.overloads.values())
    with pytest.raises(TypeError, match="only helpers"):
        kernel(always_inlined(lambda x: x))
    with pytest.raises(TypeError, match="under its jit decorator"):
        always_inlined(summed)
    # with debug information numba marks functions noinline, which LLVM
    # refuses to combine with alwaysinline: such a helper stays a call
    debugged = _jit(**_jit_module._INNER, _nrt=False, debug=True)(
        always_inlined(_scaled_sum))

    @njit(debug=True)
    def uses_debugged(x):
        return debugged(x, 2.0)

    assert uses_debugged(x) == pytest.approx(_scaled_sum(x, 2.0), rel=1e-12)

    _tiny_fits()  # a MAML fit compiles (or loads) the unrolled kernel
    # compiled afresh: the code of a kernel loaded from the cache is not
    # there to inspect
    cached = _unroll.unroll_tasks
    options = {k: v for k, v in cached.targetoptions.items()
               if k not in ("cache", "nopython")}
    fresh = njit(**options)(cached.py_func)
    fresh.compile(cached.signatures[0])
    for name, function in [("predictor", _rows.predictor),
                           ("gradient", _rows.gradient),
                           ("dense_predictor", _rows.dense_predictor),
                           ("dense_gradient", _rows.dense_gradient),
                           ("support_curvature", _unroll.support_curvature),
                           ("forward", _unroll.forward),
                           ("query", _unroll.query),
                           ("backward", _unroll.backward)]:
        assert all(c.library.always_inline
                   for c in function.overloads.values())
        assert _call_count(fresh, name) == 0
    assert _call_count(fresh, "shuffled_task") == 1
    # a helper not so marked stays a call where LLVM judges it too big
    assert not any(c.library.always_inline
                   for c in _rows.shuffled_task.overloads.values())


@pytest.mark.slow
def test_the_package_runs_with_the_jit_disabled(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "fits.npz"
    code = (f"import sys; sys.path.insert(0, {str(root / 'tests')!r}); "
            "import numba, numpy as np; assert numba.config.DISABLE_JIT; "
            "from test_kernels import _tiny_fits; "
            f"np.savez({str(out)!r}, **_tiny_fits())")
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1",
           "PYTHONPATH": os.pathsep.join(
               [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # run as Python, the kernels must not warn where numpy would of what
    # numba computes silently (a hash made of uint64 wrap-arounds); the
    # timeout only guards against a hang
    run = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c",
                          code], cwd=root, env=env,
                         capture_output=True, text=True, check=False,
                         timeout=1800)
    assert run.returncode == 0, run.stderr
    python = np.load(out)
    jitted = _tiny_fits()
    assert set(python.files) == set(jitted)
    for name, value in jitted.items():
        # the jitted kernels may reassociate sums (fastmath): round-off only
        np.testing.assert_allclose(python[name], value, rtol=1e-12,
                                   atol=1e-14, err_msg=name)
    # exp in pure Python is the same arithmetic as the intrinsic's
    np.testing.assert_array_equal(python["exp"], jitted["exp"])


def test_stale_numba_cache_is_cleared_when_a_kernel_source_changes(
        tmp_path, monkeypatch):
    # numba checks a cached kernel against its own file only; an edited
    # helper in another file must still invalidate it
    from skmeta._kernels import _cache

    package = tmp_path / "kernels"
    package.mkdir()
    for name in ("_cache.py", "_rows.py"):
        (package / name).write_text((Path(_cache.__file__).parent / name)
                                    .read_text())
    pycache = package / "__pycache__"
    pycache.mkdir()
    monkeypatch.setattr(_cache, "_HERE", package)
    compiled = pycache / "_newton.solve_tasks-1.py311.nbi"
    compiled.write_bytes(b"old")
    _cache.clear_stale_cache()  # no stamp yet: the cache's origin is unknown
    assert not compiled.exists()
    compiled.write_bytes(b"current")
    _cache.clear_stale_cache()  # same sources: kept
    assert compiled.read_bytes() == b"current"
    with (package / "_rows.py").open("a") as source:
        source.write("\n# an edit\n")
    _cache.clear_stale_cache()
    assert not compiled.exists()
    assert (pycache / "skmeta-kernels.stamp").read_text() == _cache.source_digest()


def test_importing_skmeta_leaves_optional_and_heavy_modules_unloaded():
    # import time is every user's cost: what only some fits need (k-means
    # for prior mixtures, Dask, plotting, skops) is imported where used
    code = ("import sys, skmeta; print(' '.join(m for m in ('sklearn.cluster', "
            "'dask', 'distributed', 'matplotlib', 'skops') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, timeout=600)
    assert run.stdout.split() == []



@pytest.mark.parametrize("code", [0, 1, 2, 3])
@pytest.mark.parametrize("mean_loss", [False, True])
def test_datafit_losses_by_the_newton_kernel_are_task_losses(code, mean_loss,
                                                             monkeypatch):
    # once the Newton kernel is compiled for a batch's kind, datafit_losses
    # runs it with no iteration instead of compiling task_losses: the same
    # sums, bit for bit
    from skmeta._kernels import _calls
    from skmeta._kernels._layout import Problem, make_batch

    rng = np.random.RandomState(code)
    n, p, n_tasks = 60, 3, 4
    X = rng.randn(n, p)
    y = {0: rng.randn(n) * 3, 1: rng.randint(2, size=n) * 1.0,
         2: rng.randint(3, size=n) * 1.0,
         3: rng.poisson(2.0, size=n) * 1.0}[code]
    batch, _ = make_batch(X, y, rng.uniform(0.2, 2.0, size=n),
                          rng.randint(n_tasks, size=n), n_tasks)
    K = 3 if code == 2 else 1
    problem = Problem(code, K, p, True, mean_loss, 1.0, 0.0,
                      np.ones(K * (p + 1)), np.zeros(K * (p + 1)))
    theta = rng.randn(n_tasks, problem.n_params)
    _calls.solve_inner(batch, problem, np.zeros(problem.n_params),
                       np.ones(problem.n_params), theta, rowspace=False)
    n_compiled = len(_calls.solve_tasks.signatures)
    expected = _calls._task_losses(batch, problem, theta)
    monkeypatch.setattr(_calls, "_task_losses", None)  # not to be called
    losses = _calls.datafit_losses(batch, problem, theta)
    assert len(_calls.solve_tasks.signatures) == n_compiled  # none added
    np.testing.assert_array_equal(losses, expected)


def test_compilations_spare_existing_objects_from_garbage_collections():
    # the package's compilations freeze the process's objects, and unfreeze
    # them when they end; not those of other packages, nor if something
    # else froze objects
    import gc
    from types import SimpleNamespace

    from numba.core.event import Event, EventStatus

    def event(module, status):
        func = SimpleNamespace(__module__=module)
        return Event("numba:compile", status,
                     data={"dispatcher": SimpleNamespace(py_func=func)})

    listener = _jit_module._CollectionsSpared()
    assert gc.get_freeze_count() == 0
    listener.on_start(event("skmeta._kernels._newton", EventStatus.START))
    frozen = gc.get_freeze_count()
    assert frozen > 0
    listener.on_start(event("skmeta._kernels._rows", EventStatus.START))
    listener.on_end(event("skmeta._kernels._rows", EventStatus.END))
    assert gc.get_freeze_count() == frozen  # a nested compilation
    listener.on_end(event("skmeta._kernels._newton", EventStatus.END))
    assert gc.get_freeze_count() == 0
    listener.on_start(event("other_package", EventStatus.START))
    assert gc.get_freeze_count() == 0
    listener.on_end(event("other_package", EventStatus.END))
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        listener.on_start(event("skmeta._kernels._newton", EventStatus.START))
        listener.on_end(event("skmeta._kernels._newton", EventStatus.END))
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
