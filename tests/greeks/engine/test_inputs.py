"""Input handling of price/greeks: broadcasting, option types, invalid elements, expiry, threads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greeks.engine import GREEK_KEYS, greeks, implied_vol, option_is_call, option_sign, price

GOOD = {"S": 100.0, "K": 105.0, "t": 0.5, "r": 0.05, "sigma": 0.25, "q": 0.01}


def _call(fn, **overrides):
    kw = {**GOOD, **overrides}
    return fn("call", kw["S"], kw["K"], kw["t"], kw["r"], kw["sigma"], q=kw["q"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"S": 0.0},
        {"S": -1.0},
        {"S": math.nan},
        {"S": math.inf},
        {"K": 0.0},
        {"K": -5.0},
        {"K": math.inf},
        {"sigma": 0.0},
        {"sigma": -0.2},
        {"sigma": math.nan},
        {"sigma": math.inf},
        {"t": -0.01},
        {"t": math.nan},
        {"t": math.inf},
        {"r": math.nan},
        {"r": -math.inf},
        {"q": math.nan},
    ],
)
def test_invalid_element_is_nan_and_neighbours_unaffected(overrides: dict) -> None:
    key, bad = next(iter(overrides.items()))
    column = np.array([GOOD[key], bad, GOOD[key]])
    expected = greeks("call", *(GOOD[k] for k in ("S", "K", "t", "r", "sigma")), q=GOOD["q"])
    result = _call(greeks, **{key: column})
    for name in GREEK_KEYS:
        assert math.isnan(result[name][1]), name
        assert result[name][0] == expected[name] and result[name][2] == expected[name], name
    p = _call(price, **{key: column})
    assert math.isnan(p[1]) and p[0] == p[2] == expected["price"]


def test_scalar_invalid_input_gives_nan_not_exception() -> None:
    assert math.isnan(price("put", -100.0, 100.0, 1.0, 0.05, 0.2))
    assert all(math.isnan(v) for v in greeks("put", 100.0, 100.0, 1.0, 0.05, -0.2).values())


def test_expiry_prices_intrinsic_and_greeks_are_nan() -> None:
    S = np.array([90.0, 100.0, 110.0])
    for option_type, intrinsic in (("call", [0.0, 0.0, 10.0]), ("put", [10.0, 0.0, 0.0])):
        np.testing.assert_array_equal(price(option_type, S, 100.0, 0.0, 0.05, 0.2, q=0.02), intrinsic)
        g = greeks(option_type, S, 100.0, 0.0, 0.05, 0.2, q=0.02)
        np.testing.assert_array_equal(g["price"], intrinsic)
        for name in GREEK_KEYS[1:]:
            assert np.isnan(g[name]).all(), name
    # black76: intrinsic on the forward
    np.testing.assert_array_equal(price("call", S, 100.0, 0.0, 0.05, 0.2, model="black76"), [0.0, 0.0, 10.0])


def test_expiry_with_invalid_sigma_is_still_nan() -> None:
    assert math.isnan(price("call", 110.0, 100.0, 0.0, 0.05, -1.0))


def test_price_approaches_intrinsic_as_expiry_nears() -> None:
    t = np.array([1e-6, 1e-9, 1e-12])
    np.testing.assert_allclose(price("call", 110.0, 100.0, t, 0.05, 0.2), 10.0, rtol=1e-5)
    np.testing.assert_allclose(price("put", 110.0, 100.0, t, 0.05, 0.2), 0.0, atol=1e-12)


def test_broadcast_shapes() -> None:
    S = np.array([95.0, 100.0, 105.0])[:, None]
    K = np.array([90.0, 100.0, 110.0, 120.0])
    p = price("call", S, K, 0.5, 0.05, 0.2)
    assert p.shape == (3, 4)
    assert p[1, 2] == price("call", 100.0, 110.0, 0.5, 0.05, 0.2)
    g = greeks(["call", "put"], np.ones((3, 1)) * 100, 100.0, 0.5, 0.05, 0.2)
    assert set(g) == set(GREEK_KEYS)
    assert all(v.shape == (3, 2) for v in g.values())
    assert price("c", 100, 100, 1, 0.05, 0.2).shape == ()
    assert price(np.array([], dtype=str), 100.0, 100.0, 1.0, 0.05, 0.2).shape == (0,)
    assert greeks("c", [], 100.0, 1.0, 0.05, 0.2)["vega"].shape == (0,)


def test_list_and_integer_inputs_are_accepted() -> None:
    assert (
        price("c", [100, 100], [100, 110], [1, 1], 0, [0.2, 0.2]).tolist()
        == price("c", np.array([100.0, 100.0]), np.array([100.0, 110.0]), 1.0, 0.0, 0.2).tolist()
    )


@pytest.mark.parametrize(
    ("option_type", "expected"),
    [
        ("call", 1.0),
        ("CALL", 1.0),
        ("c", 1.0),
        ("C", 1.0),
        ("CE", 1.0),
        ("ce", 1.0),
        ("put", -1.0),
        ("Put", -1.0),
        ("p", -1.0),
        ("PE", -1.0),
        ("pE", -1.0),
        (True, 1.0),
        (False, -1.0),
        (np.bool_(True), 1.0),
    ],
)
def test_option_type_scalars(option_type: object, expected: float) -> None:
    assert option_sign(option_type) == expected


def test_option_type_arrays() -> None:
    np.testing.assert_array_equal(option_sign(["call", "put", "CE", "pe", "C", "p"]), [1, -1, 1, -1, 1, -1])
    np.testing.assert_array_equal(option_sign(np.array(["CE", "PE", "pe"])), [1, -1, -1])
    np.testing.assert_array_equal(option_sign(np.array(["c", "P"], dtype=object)), [1, -1])
    np.testing.assert_array_equal(option_sign(np.array([b"C", b"p"])), [1, -1])
    np.testing.assert_array_equal(option_sign(np.array([True, False])), [1, -1])
    np.testing.assert_array_equal(option_sign([1, 0, -1]), [1, -1, -1])
    assert option_is_call(np.array([["c", "p"], ["P", "C"]])).tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        "",
        "calls",
        "c ",
        " p",
        "ca",
        "é",
        ["call", "straddle"],
        ["CE", "C "],
        [2],
        [1.5],
        [None, "c"],
        3.0,
    ],
)
def test_unknown_option_type_raises_naming_valid_values(bad: object) -> None:
    with pytest.raises(ValueError, match=r"unknown option type.*valid values .*call, c, ce, put, p, pe"):
        price(bad, 100.0, 100.0, 1.0, 0.05, 0.2)


def test_unknown_model_raises() -> None:
    with pytest.raises(ValueError, match="unknown model 'bsm'; valid models: black_scholes, black76"):
        greeks("call", 100.0, 100.0, 1.0, 0.05, 0.2, model="bsm")


def test_black76_ignores_q() -> None:
    a = greeks("call", 100.0, 100.0, 1.0, 0.05, 0.2, model="black76")
    b = greeks("call", 100.0, 100.0, 1.0, 0.05, 0.2, q=0.07, model="black76")
    assert all(a[k] == b[k] for k in GREEK_KEYS)


def test_threads_give_identical_results_and_mixed_bad_elements_do_not_raise() -> None:
    rng = np.random.default_rng(3)
    n = 100_000  # several chunks per thread
    args = (
        rng.random(n) < 0.5,
        rng.uniform(50, 150, n),
        rng.uniform(50, 150, n),
        rng.uniform(0.0, 2, n),
        0.05,
        rng.uniform(0.05, 1.0, n),
    )
    args[1][::1000] = np.nan
    args[3][::777] = 0.0
    args[5][::555] = -0.1
    one = greeks(*args, threads=1)
    two = greeks(*args, threads=2)
    auto = greeks(*args)
    for key in GREEK_KEYS:
        np.testing.assert_array_equal(one[key], two[key])
        np.testing.assert_array_equal(one[key], auto[key])
    assert np.isnan(one["delta"][::1000]).all() and np.isnan(one["delta"][::555]).all()
    np.testing.assert_array_equal(price(*args, threads=2), one["price"])
    with pytest.raises(ValueError, match="threads must be >= 1"):
        price(*args, threads=0)


def test_greeks_values_are_finite_for_the_valid_domain() -> None:
    rng = np.random.default_rng(9)
    n = 50_000
    t = np.exp(rng.uniform(np.log(1 / 8760), np.log(5), n))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(3), n))
    K = 100.0 * np.exp(rng.uniform(-3, 3, n) * sigma * np.sqrt(t))
    g = greeks(rng.random(n) < 0.5, 100.0, K, t, 0.05, sigma, q=0.01)
    for key in GREEK_KEYS:
        assert np.isfinite(g[key]).all(), key
    assert (g["price"] >= 0).all() and (g["gamma"] >= 0).all() and (g["vega"] >= 0).all()


@pytest.mark.parametrize("model", ["black_scholes", "black76"])
def test_price_and_greeks_price_are_identical(model: str) -> None:
    rng = np.random.default_rng(13)
    n = 20_000
    args = (
        rng.random(n) < 0.5,
        np.exp(rng.uniform(-3, 11, n)),
        np.exp(rng.uniform(-3, 11, n)),
        np.exp(rng.uniform(np.log(1e-6), np.log(30), n)),
        rng.uniform(-0.05, 0.2, n),
        np.exp(rng.uniform(np.log(1e-3), np.log(5), n)),
    )
    q = rng.uniform(-0.02, 0.1, n)
    np.testing.assert_array_equal(price(*args, q=q, model=model), greeks(*args, q=q, model=model)["price"])


def test_one_expiry_chain_as_array_matches_scalar_expiry() -> None:
    # a chunk whose t (and r) is constant is computed with one exp instead of one per option
    K = np.linspace(20_000.0, 28_000.0, 40_001)  # several chunks
    t = 3.5 / 365
    as_scalar = greeks("c", 24_000.0, K, t, 0.065, 0.15, q=0.01)
    as_array = greeks(
        "c", 24_000.0, K, np.full(K.shape, t), np.full(K.shape, 0.065), 0.15, q=np.full(K.shape, 0.01)
    )
    for key in GREEK_KEYS:
        np.testing.assert_allclose(as_array[key], as_scalar[key], rtol=1e-13, atol=1e-300, err_msg=key)
    p = as_scalar["price"]
    np.testing.assert_allclose(
        implied_vol(p, "c", 24_000.0, K, np.full(K.shape, t), 0.065, q=0.01),
        implied_vol(p, "c", 24_000.0, K, t, 0.065, q=0.01),
        rtol=1e-12,
    )


def test_chain_sorted_by_expiry_matches_elementwise() -> None:
    expiries = np.repeat([1 / 365, 7 / 365, 30 / 365, 90 / 365], 9_000)  # chunks with one and two expiries
    K = np.tile(np.linspace(21_000.0, 27_000.0, 9_000), 4)
    g = greeks("p", 24_000.0, K, expiries, 0.065, 0.2)
    pick = np.arange(0, K.size, 997)
    for i in pick:
        one = greeks("p", 24_000.0, K[i], expiries[i], 0.065, 0.2)
        for key in GREEK_KEYS:
            assert g[key][i] == pytest.approx(float(one[key]), rel=1e-12, abs=1e-300), key
