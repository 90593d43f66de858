"""Batches of one chunk run on the calling thread (the serial compilation of the drivers):
the same bits as the multi-threaded drivers, values and gradients."""

import numpy as np
import pytest

import fastmvn as fm
from fastmvn import _bench, _config

CASES = [case for case in _bench.CASES if not case.startswith(("pdf", "entropy"))]


def function(case):
    return getattr(fm, "kl" if case == "kl_standard" else case)


def on_the_general_path(func, *args, **kwargs):
    """``func`` of ``args`` through the general path: its first argument as a strided view of
    the same values, which no plan takes."""
    first = np.empty(np.shape(args[0]) + (2,), args[0].dtype)[..., 0]
    first[...] = args[0]
    return func(first, *args[1:], **kwargs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_one_chunk_gives_the_bits_of_many(case, dtype, monkeypatch):
    for n, p in ((4, 4), (5, 3), (2, 2)):
        args = _bench.random_inputs(case, 150, n, p, dtype)
        serial = function(case)(*args)                         # 150 items: one chunk
        monkeypatch.setattr(_config, "CHUNK", 16)               # 10 chunks, on the thread pool
        parallel = function(case)(*args)
        monkeypatch.undo()
        np.testing.assert_array_equal(serial, parallel)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ["kl", "kl_chol", "kl_diag", "kl_standard"])
def test_one_chunk_gives_the_gradient_bits_of_many(case, dtype, monkeypatch):
    name = "kl" if case == "kl_standard" else case
    args = _bench.random_inputs(case, 150, 4, 3, dtype)
    serial = getattr(fm, f"{name}_value_and_grad")(*args)
    monkeypatch.setattr(_config, "CHUNK", 16)
    parallel = getattr(fm, f"{name}_value_and_grad")(*args)
    np.testing.assert_array_equal(serial[0], parallel[0])
    for a, b in zip(serial[1], parallel[1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_failures_in_one_chunk_are_reported_as_in_many(monkeypatch):
    args = list(_bench.random_inputs("kl", 40, 3, 2))
    args[4][17] = -np.eye(3)
    with pytest.raises(np.linalg.LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) "
                                                    r"at batch index 17$"):
        fm.kl(*args)
    result = fm.kl(*args, errors="nan")
    monkeypatch.setattr(_config, "CHUNK", 8)
    np.testing.assert_array_equal(result, fm.kl(*args, errors="nan"))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_planned_small_calls_give_the_bits_of_the_general_path(case, dtype, monkeypatch):
    """A second call with the shapes of the first runs the plan the first made."""
    from fastmvn import _batch

    monkeypatch.setattr(_batch, "_PLANS", {})  # not the table the tests before left, which may be full
    for batch in (1, 7):
        args = [np.ascontiguousarray(a) for a in _bench.random_inputs(case, batch, 4, 3, dtype)]
        if batch == 1:  # one item, without batch axes
            args = [a[0] for a in args]
        first, second = function(case)(*args), function(case)(*args)
        assert any(key[0] == function(case).__name__ and plan is not None for key, plan in _batch._PLANS.items())
        expected = on_the_general_path(function(case), *args)
        np.testing.assert_array_equal(first, expected)
        np.testing.assert_array_equal(second, expected)
        assert np.shape(second) == np.shape(expected) and np.asarray(second).dtype == dtype


def test_planned_calls_with_a_shared_prior_and_standard_parts():
    rng = np.random.default_rng(3)
    mean = rng.standard_normal((9, 4, 3))
    rowcov = fm.testing.random_spd(rng, (9,), 4)
    prior = fm.testing.random_spd(rng, (), 4)
    for call in range(2):
        np.testing.assert_array_equal(fm.kl(mean, rowcov, np.eye(3), None, prior, None),
                                      fm.kl(mean, rowcov, np.eye(3), np.zeros((9, 4, 3)), np.broadcast_to(prior, (9, 4, 4)),
                                            np.eye(3), out=np.empty(9)))
        np.testing.assert_array_equal(fm.kl_diag(mean, np.ones(4) * 2, np.ones((1, 3))),
                                      fm.kl_diag(mean, np.ones(4) * 2, np.ones((1, 3)), out=np.empty(9)))


def test_planned_calls_report_failures_as_the_general_path():
    args = [np.ascontiguousarray(a) for a in _bench.random_inputs("kl", 12, 3, 2)]
    fm.kl(*args)                                                    # makes the plan
    args[4] = args[4].copy()
    args[4][5] = -np.eye(3)
    for _ in range(2):
        with pytest.raises(np.linalg.LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) "
                                                        r"at batch index 5$"):
            fm.kl(*args)
        result = fm.kl(*args, errors="nan")
        assert np.isnan(result[5]) and np.isfinite(np.delete(result, 5)).all()
    args[0] = args[0].copy()
    args[0][2, 1, 1] = np.inf
    with pytest.raises(ValueError, match=r"^mean1 contains NaN or infinity at batch index 2$"):
        fm.kl(*args)


def test_plans_follow_the_thresholds(monkeypatch):
    """A plan is made for the thresholds in force: a test (or a user) that changes them gets
    the path they choose, not the plan of an earlier call."""
    from fastmvn import _large

    args = [a[0] for a in _bench.random_inputs("kl", 1, 4, 3)]
    fm.kl(*args)
    fm.kl(*args)
    taken = []
    original = _large.evaluate
    monkeypatch.setattr(_large, "evaluate", lambda *a: taken.append(1) or original(*a))
    monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 1)
    monkeypatch.setattr(_config, "LAPACK_BATCH_SIDE", 0)
    fm.kl(*args)
    assert taken == [1]


def test_a_plan_is_not_taken_by_arrays_of_the_other_byte_order():
    """Big-endian arrays have the shapes and the dtype letter of native ones: they take the
    general path, which reads their values, not the plan of native arrays, which would read
    their bytes as native numbers (here those of a valid pair, so nothing would fail)."""
    args = [np.ascontiguousarray(a[0]) for a in _bench.random_inputs("kl", 1, 4, 3)]
    fm.kl(*args)
    fm.kl(*args)                                                   # the plan of native arrays
    swapped = [a.view(a.dtype.newbyteorder()) for a in args]       # the same bytes, other values
    expected = fm.kl(*[a.astype(a.dtype.newbyteorder()) for a in swapped], errors="nan")
    np.testing.assert_array_equal(fm.kl(*swapped, errors="nan"), expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_planned_calls_of_large_items_give_the_bits_of_the_general_path(case, dtype, monkeypatch):
    """A small call of large items keeps a plan too, which runs the plan for large items
    (:mod:`fastmvn._large`) directly (or, for the values of diagonal covariances, which never go
    there, the driver that streams them); here small items are made large by the thresholds
    (and float32 ones computed in float64, as the plan for large items computes them)."""
    from fastmvn import _batch

    monkeypatch.setattr(_batch, "_PLANS", {})  # not the table the tests before left, which may be full
    monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 1)
    monkeypatch.setattr(_config, "LAPACK_BATCH_SIDE", 0)
    monkeypatch.setattr(_config, "FLOAT32_ARITHMETIC_MAX_SIDE", 0)
    for batch in (1, 3):
        args = [np.ascontiguousarray(a) for a in _bench.random_inputs(case, batch, 5, 3, dtype)]
        if batch == 1:
            args = [a[0] for a in args]
        first, second = function(case)(*args), function(case)(*args)
        plans = [plan for key, plan in _batch._PLANS.items()
                 if key[0] == function(case).__name__ and key[2] == 1 and plan is not None]
        assert plans and all(plan.streamed if case in ("kl_diag", "logpdf_diag") else plan.large for plan in plans)
        expected = on_the_general_path(function(case), *args)
        np.testing.assert_array_equal(first, expected)
        np.testing.assert_array_equal(second, expected)
        assert np.shape(second) == np.shape(expected) and np.asarray(second).dtype == dtype


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize("case", ["kl", "kl_standard", "kl_diag", "logpdf"])
def test_planned_calls_leave_their_arguments_as_they_were(case, large, monkeypatch):
    """A plan reads the arguments through read-only views of its own: the caller's arrays stay
    writeable and unchanged, and read-only arrays (whose items the plan for large items takes as
    they are) give the same bits; so does the standard prior of diagonal covariances, whose unit
    variances are made once."""
    if large:
        monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 1)
        monkeypatch.setattr(_config, "LAPACK_BATCH_SIDE", 0)
    args = [np.ascontiguousarray(a[0]) for a in _bench.random_inputs(case, 1, 5, 3)]
    copies = [a.copy() for a in args]
    frozen = [a.copy() for a in args]
    for a in frozen:
        a.flags.writeable = False
    calls = [args] + ([args[:3]] if case == "kl_diag" else [])
    for call_args in calls:
        first, second = function(case)(*call_args), function(case)(*call_args)
        assert first == second == function(case)(*frozen[:len(call_args)])
        assert first == on_the_general_path(function(case), *call_args)
    for a, copy in zip(args, copies, strict=True):
        assert a.flags.writeable
        np.testing.assert_array_equal(a, copy)


@pytest.mark.parametrize("name, index", [("rowvar1", 2), ("colvar2", 0)])
def test_planned_calls_of_large_items_report_failures(name, index, monkeypatch):
    monkeypatch.setattr(_config, "LAPACK_MIN_SIDE", 1)
    monkeypatch.setattr(_config, "LAPACK_BATCH_SIDE", 0)
    args = [np.ascontiguousarray(a) for a in _bench.random_inputs("kl_diag", 3, 5, 3)]
    fm.kl_diag(*args)                                               # makes the plan
    position = ["mean1", "rowvar1", "colvar1", "mean2", "rowvar2", "colvar2"].index(name)
    args[position] = args[position].copy()
    args[position][index, 1] = 0.0
    for _ in range(2):
        with pytest.raises(ValueError, match=rf"^{name} .*at batch index {index}$"):
            fm.kl_diag(*args)
        result = fm.kl_diag(*args, errors="nan")
        assert np.isnan(result[index]) and np.isfinite(np.delete(result, index)).all()


GRADIENTS = ["kl", "kl_chol", "kl_diag", "logpdf", "logpdf_chol", "logpdf_diag"]


def _fresh_plans(monkeypatch, large):
    """No plans yet; with ``large``, thresholds that send even small items through LAPACK."""
    from fastmvn import _batch

    monkeypatch.setattr(_batch, "_PLANS", {})
    if large:
        monkeypatch.setattr(_config, "LAPACK_GRADIENT_MIN_SIDE", 1)
        monkeypatch.setattr(_config, "LAPACK_GRADIENT_BATCH_SIDE", 0)
        monkeypatch.setattr(_config, "FLOAT32_ARITHMETIC_MAX_SIDE", 0)


def _grad_plans(name):
    from fastmvn import _batch

    return [plan for key, plan in _batch._PLANS.items() if key[0] == name and key[-1] and plan is not None]


def _planned(name, large):
    """Whether the plans of ``name``'s gradients were made, each for the lanes or (``large``)
    for the plan for large items; the diagonal modes' items that it would take stream instead
    (``diagonal_grad_batch``)."""
    plans = _grad_plans(name)
    if name.endswith("_diag"):
        return bool(plans) and all(plan.streamed == large and not plan.large for plan in plans)
    return bool(plans) and all(plan.large == large for plan in plans)


@pytest.mark.parametrize("large", [False, True], ids=["lanes", "lapack"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", GRADIENTS)
def test_planned_gradients_give_the_bits_of_the_general_path(case, dtype, large, monkeypatch):
    """A value and gradient called again with the shapes of the first runs the plan the first
    made, in lanes or (small items made large by the thresholds) through LAPACK, and so does
    one with ``out=`` (into its arrays)."""
    _fresh_plans(monkeypatch, large)
    gradient = getattr(fm, f"{case}_value_and_grad")
    for batch in (1, 3):
        args = [np.ascontiguousarray(a) for a in _bench.random_inputs(case, batch, 5, 3, dtype)]
        if batch == 1:
            args = [a[0] for a in args]
        first, second = gradient(*args), gradient(*args)
        assert _planned(case, large)
        out = (np.empty(np.shape(first[0]), dtype), tuple(np.empty(np.shape(a), dtype) for a in args))
        into = gradient(*args, out=out)
        assert into[0] is out[0] and all(got is given for got, given in zip(into[1], out[1], strict=True))
        expected = on_the_general_path(gradient, *args)
        for value, grads in (first, second, into):
            np.testing.assert_array_equal(value, expected[0])
            assert np.shape(value) == np.shape(expected[0]) and np.asarray(value).dtype == dtype
            for got, want in zip(grads, expected[1], strict=True):
                assert got.shape == want.shape and got.dtype == dtype
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("large", [False, True], ids=["lanes", "lapack"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case, nones", [("kl", (3, 4, 5)), ("kl_chol", (3, 4, 5)), ("kl_diag", (3, 4, 5)),
                                         ("kl", (3,)), ("kl", (5,)), ("kl_chol", (4,)), ("kl_diag", (3, 5)),
                                         ("logpdf", (1,)), ("logpdf_chol", (1,))])
def test_planned_gradients_of_arguments_passed_as_none(case, nones, dtype, large, monkeypatch):
    """The standard prior (the last three arguments None) and a zero mean or an identity made
    up for an argument passed as None: planned like the others, in lanes or through LAPACK,
    with None for the gradient of each argument passed as None, the bits of the general path."""
    _fresh_plans(monkeypatch, large)
    gradient = getattr(fm, f"{case}_value_and_grad")
    for batch in (1, 3):
        args = [None if k in nones else np.ascontiguousarray(a[0] if batch == 1 else a)
                for k, a in enumerate(_bench.random_inputs(case, batch, 5, 3, dtype))]
        first, second = gradient(*args), gradient(*args)
        assert _planned(case, large)
        out = (np.empty(np.shape(first[0]), dtype),
               tuple(None if a is None else np.empty(a.shape, dtype) for a in args))
        into = gradient(*args, out=out)
        expected = on_the_general_path(gradient, *args)
        for value, grads in (first, second, into):
            np.testing.assert_array_equal(value, expected[0])
            assert np.shape(value) == np.shape(expected[0]) and np.asarray(value).dtype == dtype
            assert len(grads) == len(expected[1]) == len(args)
            for arg, got, want in zip(args, grads, expected[1], strict=True):
                if arg is None:
                    assert got is None and want is None
                else:
                    assert got.shape == want.shape == arg.shape and got.dtype == dtype
                    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("large", [False, True], ids=["lanes", "lapack"])
@pytest.mark.parametrize("wrt, shared", [(None, False), (("mean1", "rowcov1", "colcov1"), False),
                                         (("mean1", "rowcov1", "colcov1"), True), ("colcov2", False), ([], True)])
@pytest.mark.parametrize("reduce", [True, False])
def test_planned_gradients_of_some_arguments(wrt, shared, reduce, large, monkeypatch):
    """``wrt=`` and the per-item gradients of ``reduce=False`` (as :mod:`fastmvn.torch` asks
    for them) are planned too, and so is a prior shared by the items whose gradient is not
    asked for: the bits of the general path, None for a gradient not asked for."""
    from fastmvn import _batch, _gradients

    _fresh_plans(monkeypatch, large)
    args = [np.ascontiguousarray(a[:1] if shared and k >= 3 else a)
            for k, a in enumerate(_bench.random_inputs("kl", 4, 5, 3))]
    function = _gradients.FUNCTIONS["kl"]
    first, second = (_gradients.value_and_grad(function, args, "raise", reduce=reduce, wrt=wrt) for _ in range(2))
    assert _grad_plans("kl") and all(plan.large == large for plan in _grad_plans("kl"))
    monkeypatch.setattr(_batch, "_PLANS", {})
    monkeypatch.setattr(_batch, "_MAX_PLANS", 0)                    # the general path
    expected = _gradients.value_and_grad(function, args, "raise", reduce=reduce, wrt=wrt)
    wanted = _gradients.computed(function, [True] * 6, wrt)
    for value, grads in (first, second):
        np.testing.assert_array_equal(value, expected[0])
        for got, want, wants in zip(grads, expected[1], wanted, strict=True):
            if not wants:
                assert got is None and want is None
            else:
                assert got.shape == want.shape
                np.testing.assert_array_equal(got, want)


def test_planned_gradients_report_failures_and_leave_broadcasts_to_the_general_path():
    args = [np.ascontiguousarray(a) for a in _bench.random_inputs("kl", 6, 3, 2)]
    fm.kl_value_and_grad(*args)                                     # makes the plan
    assert _grad_plans("kl")
    args[4] = args[4].copy()
    args[4][2] = -np.eye(3)
    with pytest.raises(np.linalg.LinAlgError, match=r"^rowcov2 is not positive definite \(Cholesky failed\) "
                                                    r"at batch index 2$"):
        fm.kl_value_and_grad(*args)
    value, grads = fm.kl_value_and_grad(*args, errors="nan")
    assert np.isnan(value[2]) and np.isnan(grads[4][2]).all() and np.isfinite(np.delete(grads[4], 2, axis=0)).all()
    shared = [a[:1] if k >= 3 else a for k, a in enumerate(_bench.random_inputs("kl", 6, 3, 2))]
    for _ in range(2):                                              # a prior shared by the items: its gradient is a sum
        value, grads = fm.kl_value_and_grad(*shared)
        expected = fm.kl_value_and_grad(*[np.broadcast_to(a, (6,) + a.shape[1:]) for a in shared])
        np.testing.assert_allclose(grads[4], expected[1][4].sum(axis=0, keepdims=True), rtol=1e-12)
        assert grads[3].shape == (1, 3, 2)


@pytest.mark.parametrize("gradients", [False, True])
@pytest.mark.parametrize("case", ["kl", "kl_diag", "logpdf_diag", "kl_standard"])
def test_planned_calls_write_into_out(case, gradients, monkeypatch):
    """A small call with ``out=`` runs its plan, into the arrays given (the result is ``out``
    itself, its gradients' arrays too, variances' gradients of their own shape), with the bits
    of the general path; nothing of the general path runs."""
    from fastmvn import _batch, _gradients

    monkeypatch.setattr(_batch, "_PLANS", {})
    name = "kl" if case == "kl_standard" else case
    func = getattr(fm, f"{name}_value_and_grad" if gradients else name)
    for batch in (1, 5):
        args = [np.ascontiguousarray(a[0] if batch == 1 else a) for a in _bench.random_inputs(case, batch, 5, 3)]
        expected = on_the_general_path(func, *args)
        value = np.empty(() if batch == 1 else (batch,))
        out = (value, tuple(np.empty(a.shape) for a in args) + (None,) * (6 - len(args) if name == "kl" else 0)) \
            if gradients else value
        func(*args, out=out)                                         # makes the plan
        with monkeypatch.context() as m:
            m.setattr(_batch, "compute", None)                       # the general paths' first steps
            m.setattr(_gradients, "bind", None)
            result = func(*args, out=out)
        if gradients:
            assert result[0] is out[0] and all(got is given for got, given in zip(result[1], out[1], strict=True))
            np.testing.assert_array_equal(result[0], expected[0])
            for got, want in zip(result[1], expected[1], strict=True):
                assert (got is None) == (want is None)
                if got is not None:
                    np.testing.assert_array_equal(got, want)
        else:
            assert result is out
            np.testing.assert_array_equal(result, expected)


def test_planned_calls_leave_out_they_cannot_write_into_to_the_general_path(monkeypatch):
    """``out=`` arrays that share memory with an argument or with each other, are not
    C-contiguous, or have another dtype or shape: the general path takes them, as before the
    plan was made (the same results, through a copy, or its errors)."""
    from fastmvn import _batch

    monkeypatch.setattr(_batch, "_PLANS", {})
    args = [np.ascontiguousarray(a) for a in _bench.random_inputs("kl_diag", 4, 5, 3)]
    expected = fm.kl_diag_value_and_grad(*args)
    fm.kl_diag_value_and_grad(*args)                                # makes the plan
    grads = tuple(np.empty_like(a) for a in args)
    # The mean's gradient written over the mean itself (a view of it, and the array itself): the
    # results of the arguments as they were, then written.
    for alias in (lambda mean: mean, lambda mean: mean[:]):
        given = [a.copy() for a in args]
        own = alias(given[0])
        value, result = fm.kl_diag_value_and_grad(*given, out=(np.empty(4), (own,) + grads[1:]))
        assert result[0] is own
        np.testing.assert_array_equal(value, expected[0])
        np.testing.assert_array_equal(given[0], expected[1][0])
    strided = np.empty((4, 5, 6))[..., ::2]
    value, result = fm.kl_diag_value_and_grad(*args, out=(np.empty(4), (strided,) + grads[1:]))
    assert result[0] is strided
    np.testing.assert_array_equal(strided, expected[1][0])
    with pytest.raises(ValueError, match=r"share memory"):
        fm.kl_diag_value_and_grad(*args, out=(np.empty(4), (grads[3],) + grads[1:]))
    with pytest.raises(TypeError, match=r"^out\[1\]\[1\] \(the gradient of rowvar1\) has dtype float32"):
        fm.kl_diag_value_and_grad(*args, out=(np.empty(4), (grads[0], grads[1].astype(np.float32)) + grads[2:]))
    with pytest.raises(ValueError, match=r"^out\[0\] \(the value\) must be an array of shape \(4,\); got \(5,\)"):
        fm.kl_diag_value_and_grad(*args, out=(np.empty(5), grads))
    given = [a.copy() for a in args]
    value = given[0].reshape(-1)[:4]                                # the values written over the mean's first entries
    np.testing.assert_array_equal(fm.kl_diag(*given, out=value), fm.kl_diag(*args))
