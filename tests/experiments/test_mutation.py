"""Hyperparameter spaces: parsing, formatting, dedup keys and seeded plans."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.mutation import (
    Param,
    SpaceError,
    SpaceExhausted,
    argv_for,
    argv_text,
    check_values,
    config_key,
    count_available,
    format_value,
    outside_sampling_range,
    parse_space,
    plan_configurations,
    sample_value,
)

# The earlier profiler's MRT-OAST space, converted (range -> min/max).
MRT_OAST = [
    {"name": "epochs", "flag": "--epochs", "type": "int", "default": 10, "min": 5, "max": 15},
    {
        "name": "learning_rate",
        "flag": "--lr",
        "type": "float",
        "default": 0.0001,
        "min": 0.00005,
        "max": 0.00015,
        "distribution": "log_uniform",
    },
    {"name": "seed", "flag": "--seed", "type": "int", "default": 1334, "min": 0, "max": 9999},
    {"name": "dropout", "flag": "--dropout", "type": "float", "default": 0.2, "min": 0, "max": 0.3},
    {
        "name": "weight_decay",
        "flag": "--weight-decay",
        "type": "float",
        "default": 0.0,
        "min": 0.00001,
        "max": 0.001,
        "distribution": "log_uniform",
    },
]


@pytest.fixture
def space() -> list[Param]:
    return parse_space(MRT_OAST)


def ks_statistic(sample: list[float], cdf) -> float:
    """Two-sided Kolmogorov-Smirnov statistic of a sample against a continuous CDF."""
    xs = np.sort(np.asarray(sample, dtype=float))
    n = len(xs)
    f = np.array([cdf(x) for x in xs])
    upper = np.arange(1, n + 1) / n - f
    lower = f - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


# ------------------------------------------------------------------ parsing


def test_it_parses_the_legacy_space(space):
    lr = next(p for p in space if p.name == "learning_rate")
    assert (lr.flag, lr.type, lr.low, lr.high, lr.distribution) == (
        "--lr",
        "float",
        0.00005,
        0.00015,
        "log_uniform",
    )
    # weight_decay's default (0.0) is outside its log range: it is the program's own
    # default, so it is kept.
    assert next(p for p in space if p.name == "weight_decay").default == 0.0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"type": "double"}, ["'epochs'", "'type'"]),
        ({"min": "five"}, ["'epochs'", "'min'"]),
        ({"max": None}, ["'epochs'", "'max'"]),
        ({"min": 20}, ["'epochs'", "'min'", "'max'"]),
        ({"min": 0.5}, ["'epochs'", "integers"]),
        ({"flag": ""}, ["'epochs'", "'flag'"]),
        ({"distribution": "normal"}, ["'epochs'", "'distribution'"]),
        ({"default": "ten"}, ["'epochs'", "'default'"]),
        ({"distribution": "log_uniform", "min": 0}, ["'epochs'", "'min'", "log_uniform"]),
    ],
)
def test_a_bad_space_names_the_parameter_and_key(change, words):
    raw = [dict(MRT_OAST[0], **change)]
    with pytest.raises(SpaceError) as info:
        parse_space(raw)
    for word in words:
        assert word in str(info.value)


def test_a_choice_needs_choices():
    with pytest.raises(SpaceError, match="'opt'.*'choices'"):
        parse_space([{"name": "opt", "flag": "--opt", "type": "choice", "choices": []}])


def test_a_name_used_twice_is_refused():
    with pytest.raises(SpaceError, match="'epochs'.*twice"):
        parse_space([MRT_OAST[0], MRT_OAST[0]])


# ------------------------------------------------------------------ values


def test_check_values_reports_each_problem_by_name(space):
    errors = check_values(
        space,
        {"epochs": 5.5, "lr": 1, "learning_rate": 1.0, "seed": "x", "dropout": True},
    )
    assert set(errors) == {"epochs", "lr", "learning_rate", "seed", "dropout"}
    assert "whole number" in errors["epochs"]
    assert "unknown" in errors["lr"]
    assert "outside" in errors["learning_rate"]


def test_an_int_valued_float_is_accepted_for_an_int_and_becomes_an_int(space):
    epochs = space[0]
    assert check_values(space, {"epochs": 5.0, "seed": "42"}) == {}
    assert format_value(epochs, 5.0) == 5 and isinstance(format_value(epochs, 5.0), int)
    assert argv_for(space, {"epochs": 7.0})[:2] == ["--epochs", "7"]


def test_a_float_is_recorded_exactly_as_it_is_passed(space):
    lr = space[1]
    recorded = format_value(lr, 0.000123456789)
    assert recorded == 0.000123457  # six significant digits, small values kept
    argv = argv_for(space, {"learning_rate": 0.000123456789})
    passed = argv[argv.index("--lr") + 1]
    assert float(passed) == recorded


@given(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False))
@settings(max_examples=200, deadline=None)
def test_formatting_is_idempotent_and_round_trips_through_argv(x):
    param = Param(name="x", flag="--x", type="float", low=1e-12, high=1e12)
    once = format_value(param, x)
    assert format_value(param, once) == once
    assert float(argv_text(param, once)) == once


def test_argv_follows_the_space_order_and_fills_defaults(space):
    assert argv_for(space, {"dropout": 0.25}) == [
        "--epochs",
        "10",
        "--lr",
        "0.0001",
        "--seed",
        "1334",
        "--dropout",
        "0.25",
        "--weight-decay",
        "0.0",
    ]


def test_choices_are_passed_as_text():
    space = parse_space(
        [
            {
                "name": "opt",
                "flag": "--opt",
                "type": "choice",
                "choices": ["sgd", "adam"],
                "default": "sgd",
            },
            {"name": "amp", "flag": "--amp", "type": "choice", "choices": [True, False]},
        ]
    )
    assert argv_for(space, {"opt": "adam", "amp": True}) == ["--opt", "adam", "--amp", "true"]
    assert "not one of" in check_values(space, {"opt": "rmsprop"})["opt"]


# ------------------------------------------------------------------ dedup keys


@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_dedup_matches_int_float_and_text_of_an_int(n):
    assert config_key({"epochs": n}) == config_key({"epochs": float(n)})
    assert config_key({"epochs": n}) == config_key({"epochs": str(n)})
    assert config_key({"epochs": n}) != config_key({"epochs": n + 1})


@given(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False))
def test_dedup_compares_floats_after_formatting(x):
    param = Param(name="lr", flag="--lr", type="float", low=1e-9, high=1e6)
    assert config_key({"lr": x}) == config_key({"lr": format_value(param, x)})
    assert config_key({"lr": x}, [param]) == config_key({"lr": repr(x)}, [param])


def test_dedup_key_ignores_key_order():
    assert config_key({"a": 1, "b": 0.5}) == config_key({"b": 0.5, "a": 1.0})


# ------------------------------------------------------------------ plans


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    n=st.integers(min_value=1, max_value=30),
    mutate=st.lists(
        st.sampled_from(["epochs", "learning_rate", "seed", "dropout", "weight_decay"]),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    strategy=st.sampled_from(["together", "one_at_a_time"]),
)
@settings(max_examples=60, deadline=None)
def test_plans_respect_ranges_types_and_never_repeat(seed, n, mutate, strategy):
    space = parse_space(MRT_OAST)
    by_name = {p.name: p for p in space}
    available = count_available(space, fixed={}, mutate=mutate, strategy=strategy, seen=())
    if available is not None and available < n:
        # A small discrete space (epochs alone has 10 mutations): refused up front,
        # with the exact number it can supply.
        with pytest.raises(SpaceExhausted) as info:
            plan_configurations(
                space, fixed={}, mutate=mutate, n=n, seed=seed, strategy=strategy, seen=set()
            )
        assert info.value.available == available and info.value.exact
        return
    plan = plan_configurations(
        space, fixed={}, mutate=mutate, n=n, seed=seed, strategy=strategy, seen=set()
    )
    assert len(plan) == n
    keys = {config_key(c, space) for c in plan}
    assert len(keys) == n  # no repeats within the plan
    baseline = config_key({p.name: p.default for p in space}, space)
    assert baseline not in keys  # the all-defaults configuration is not a mutation
    for config in plan:
        assert check_values(space, config) == {}
        assert set(config) == set(by_name)
        for name, value in config.items():
            p = by_name[name]
            if p.type == "int":
                assert type(value) is int
            if name in mutate and value != p.default:
                assert p.low <= value <= p.high
            if name not in mutate:
                assert value == p.default
        changed = [k for k in config if config[k] != by_name[k].default]
        if strategy == "one_at_a_time":
            assert len(changed) == 1 and changed[0] in mutate


def test_one_at_a_time_gives_each_parameter_its_turn(space):
    plan = plan_configurations(
        space,
        fixed={},
        mutate=["epochs", "dropout"],
        n=6,
        seed=3,
        strategy="one_at_a_time",
        seen=set(),
    )
    changed = [next(k for k in c if c[k] != {p.name: p.default for p in space}[k]) for c in plan]
    assert changed == ["epochs", "dropout"] * 3


def test_fixed_values_are_kept_and_formatted(space):
    plan = plan_configurations(
        space,
        fixed={"epochs": 12.0, "dropout": 0.1234567},
        mutate=["seed"],
        n=4,
        seed=1,
        strategy="together",
        seen=set(),
    )
    assert all(c["epochs"] == 12 and type(c["epochs"]) is int for c in plan)
    assert all(c["dropout"] == 0.123457 for c in plan)


def test_a_plan_is_reproducible_from_its_seed(space):
    args = dict(fixed={}, mutate=["learning_rate", "seed"], n=8, strategy="together", seen=set())
    assert plan_configurations(space, seed=42, **args) == plan_configurations(
        space, seed=42, **args
    )
    assert plan_configurations(space, seed=42, **args) != plan_configurations(
        space, seed=43, **args
    )


def test_no_mutation_is_the_single_baseline_even_when_run_before(space):
    baseline = {p.name: p.default for p in space}
    plan = plan_configurations(
        space,
        fixed={},
        mutate=[],
        n=5,
        seed=0,
        strategy="together",
        seen={config_key(baseline, space)},
    )
    assert plan == [baseline]


def test_history_is_avoided_across_int_and_float_representations(space):
    # History read back from CSV holds 5.0 where the program got 5.
    seen = {
        config_key({**{p.name: p.default for p in space}, "epochs": float(e)})
        for e in range(5, 15)
        if e != 10
    }
    plan = plan_configurations(
        space, fixed={}, mutate=["epochs"], n=1, seed=0, strategy="together", seen=seen
    )
    assert plan[0]["epochs"] == 15


def test_an_exhausted_space_says_how_many_it_can_supply(space):
    # epochs 5..15 is 11 values, one of them the default: 10 mutations, 3 already run.
    base = {p.name: p.default for p in space}
    seen = {config_key({**base, "epochs": e}) for e in (5, 6, 7)}
    assert count_available(space, fixed={}, mutate=["epochs"], strategy="together", seen=seen) == 7
    with pytest.raises(SpaceExhausted) as info:
        plan_configurations(
            space, fixed={}, mutate=["epochs"], n=8, seed=0, strategy="together", seen=seen
        )
    assert info.value.available == 7 and info.value.exact
    assert "only 7 new configurations" in str(info.value)
    # Asking for exactly what is left takes all of it.
    plan = plan_configurations(
        space, fixed={}, mutate=["epochs"], n=7, seed=0, strategy="together", seen=seen
    )
    assert sorted(c["epochs"] for c in plan) == [8, 9, 11, 12, 13, 14, 15]


def test_one_at_a_time_exhaustion_counts_every_parameter():
    space = parse_space(
        [
            {"name": "a", "flag": "-a", "type": "int", "default": 1, "min": 1, "max": 3},
            {"name": "b", "flag": "-b", "type": "choice", "choices": ["x", "y"], "default": "x"},
        ]
    )
    assert (
        count_available(space, fixed={}, mutate=["a", "b"], strategy="one_at_a_time", seen=()) == 3
    )
    with pytest.raises(SpaceExhausted, match="only 3 new"):
        plan_configurations(
            space, fixed={}, mutate=["a", "b"], n=4, seed=0, strategy="one_at_a_time", seen=set()
        )
    plan = plan_configurations(
        space, fixed={}, mutate=["a", "b"], n=3, seed=0, strategy="one_at_a_time", seen=set()
    )
    assert sorted(config_key(c) for c in plan) == sorted(
        config_key(c) for c in [{"a": 2, "b": "x"}, {"a": 3, "b": "x"}, {"a": 1, "b": "y"}]
    )


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=3),
    defaults_in=st.lists(st.booleans(), min_size=3, max_size=3),
    seen_picks=st.lists(
        st.tuples(st.integers(-1, 6), st.integers(-1, 6), st.integers(-1, 6)), max_size=25
    ),
    strategy=st.sampled_from(["together", "one_at_a_time"]),
)
@settings(max_examples=150, deadline=None)
def test_the_count_matches_brute_force(sizes, defaults_in, seen_picks, strategy):
    # Small int spaces, defaults inside or outside the range, a history that holds
    # configurations inside and outside the space, int or float spelled.
    raw = [
        {
            "name": f"p{i}",
            "flag": f"--p{i}",
            "type": "int",
            "default": 0 if defaults_in[i] else -1,
            "min": 0,
            "max": size - 1,
        }
        for i, size in enumerate(sizes)
    ]
    space = parse_space(raw)
    base = {p.name: p.default for p in space}
    seen = {config_key({p.name: float(v[i]) for i, p in enumerate(space)}) for v in seen_picks}
    mutate = [p.name for p in space]
    if strategy == "together":
        import itertools

        everything = [
            dict(zip(mutate, combo, strict=True))
            for combo in itertools.product(*(range(s) for s in sizes))
        ]
    else:
        everything = [{**base, p.name: v} for p in space for v in range(int(p.high) + 1)]
    keys = {config_key(c, space) for c in everything}
    expected = len(keys - seen - {config_key(base, space)})
    got = count_available(space, fixed={}, mutate=mutate, strategy=strategy, seen=seen)
    assert got == expected


def test_a_large_discrete_space_is_counted_exactly():
    # 19,001 x 9 configurations: too many to list, still counted exactly.
    space = parse_space(
        [
            {"name": "it", "flag": "-i", "type": "int", "default": 10000, "min": 1000,
             "max": 20000, "distribution": "log_uniform"},
            {"name": "k", "flag": "-k", "type": "int", "default": 10, "min": 2, "max": 10},
        ]
    )  # fmt: skip
    seen = {config_key({"it": 1000, "k": 2}), config_key({"it": 5.0, "k": 2})}  # 2nd outside
    assert (
        count_available(space, fixed={}, mutate=["it", "k"], strategy="together", seen=seen)
        == 19001 * 9 - 1 - 1
    )


def test_a_continuous_space_is_unbounded_for_the_form(space):
    assert (
        count_available(space, fixed={}, mutate=["dropout"], strategy="together", seen=()) is None
    )


def test_bad_requests_are_refused_by_name(space):
    with pytest.raises(SpaceError, match="unknown parameter.*lr"):
        plan_configurations(
            space, fixed={}, mutate=["lr"], n=1, seed=0, strategy="together", seen=set()
        )
    with pytest.raises(SpaceError, match="epochs also set"):
        plan_configurations(
            space,
            fixed={"epochs": 6},
            mutate=["epochs"],
            n=1,
            seed=0,
            strategy="together",
            seen=set(),
        )
    with pytest.raises(SpaceError, match="epochs"):
        plan_configurations(
            space, fixed={"epochs": 99}, mutate=["seed"], n=1, seed=0, strategy="together"
        )


# ------------------------------------------------------------------ distributions


def test_log_uniform_floats_are_uniform_in_log_space():
    p = Param(name="lr", flag="--lr", type="float", low=1e-5, high=1e-1, distribution="log_uniform")
    rng = random.Random(20260101)
    logs = [math.log(sample_value(p, rng)) for _ in range(4000)]
    lo, hi = math.log(1e-5), math.log(1e-1)
    d = ks_statistic(logs, lambda x: (x - lo) / (hi - lo))
    # Critical value at alpha = 0.001 for n = 4000 is 1.95 / sqrt(n) ~= 0.031.
    assert d < 1.95 / math.sqrt(4000)
    # And it is not uniform on the linear scale (the test can tell the two apart).
    values = [math.exp(v) for v in logs]
    assert ks_statistic(values, lambda x: (x - 1e-5) / (1e-1 - 1e-5)) > 0.5


def test_uniform_floats_are_uniform():
    p = Param(name="dropout", flag="--d", type="float", low=0.0, high=0.3)
    rng = random.Random(7)
    values = [sample_value(p, rng) for _ in range(4000)]
    assert ks_statistic(values, lambda x: x / 0.3) < 1.95 / math.sqrt(4000)


def test_uniform_ints_hit_every_value_about_equally():
    p = Param(name="kfold", flag="--k", type="int", low=2, high=10)
    rng = random.Random(11)
    counts = np.bincount([sample_value(p, rng) for _ in range(9000)], minlength=11)[2:]
    expected = 9000 / 9
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 26.1  # chi-square, 8 degrees of freedom, alpha = 0.001


def test_log_uniform_ints_stay_in_range_and_favour_small_values():
    p = Param(name="it", flag="--it", type="int", low=1000, high=20000, distribution="log_uniform")
    rng = random.Random(5)
    values = [sample_value(p, rng) for _ in range(4000)]
    assert all(type(v) is int and 1000 <= v <= 20000 for v in values)
    below_geometric_mean = sum(v < math.sqrt(1000 * 20000) for v in values) / len(values)
    assert abs(below_geometric_mean - 0.5) < 0.04


# --------------------------------------------------- sampling range and hard bounds


def _lr(**extra):
    return {
        "name": "lr",
        "flag": "--lr",
        "type": "float",
        "default": 0.1,
        "min": 0.05,
        "max": 0.15,
        **extra,
    }


def test_without_bounds_the_sampling_range_is_also_the_bound():
    space = parse_space([_lr()])
    assert (space[0].bound_low, space[0].bound_high) == (0.05, 0.15)
    assert check_values(space, {"lr": 0.4}) == {"lr": "0.4 is outside 0.05..0.15"}
    assert outside_sampling_range(space, {"lr": 0.4}) == {
        "lr": "0.4 lies outside the sampling range 0.05..0.15 (a fixed value is passed as it is)"
    }


def test_fixed_values_are_checked_against_the_bounds_only():
    space = parse_space([_lr(bounds=[0, 1])])
    assert check_values(space, {"lr": 0.4}) == {}
    assert check_values(space, {"lr": 1.5}) == {
        "lr": "1.5 is outside 0..1, the bounds the program accepts"
    }
    assert "lr" in outside_sampling_range(space, {"lr": 0.4})
    assert outside_sampling_range(space, {"lr": 0.1, "other": 3}) == {}
    unbounded = parse_space([_lr(bounds=[None, None])])
    assert check_values(unbounded, {"lr": -7.0}) == {}
    assert check_values(unbounded, {"lr": "x"}) == {"lr": "'x' is not a number"}
    one_sided = parse_space([_lr(bounds=[0, None])])
    assert check_values(one_sided, {"lr": -1}) == {
        "lr": "-1.0 is outside 0.., the bounds the program accepts"
    }


@pytest.mark.parametrize(
    ("bounds", "words"),
    [
        ([0.1, 1], "the sampling range 0.05..0.15 reaches outside 'bounds' 0.1..1"),
        ([0, 0.1], "reaches outside 'bounds' 0..0.1"),
        ([1, 0], "'bounds' low (1) is above high (0)"),
        ([0], "'bounds' must be [low, high]"),
        (["a", 1], "'low' must be a number"),
    ],
)
def test_bad_bounds_are_refused_by_parameter(bounds, words):
    with pytest.raises(SpaceError, match=re.escape(words)):
        parse_space([_lr(bounds=bounds)])


def test_sampling_draws_from_the_range_not_the_bounds():
    space = parse_space([_lr(bounds=[None, None]), {**MRT_OAST[0], "bounds": [1, None]}])
    plan = plan_configurations(
        space, fixed={}, mutate=["lr", "epochs"], n=200, seed=3, strategy="together", seen=set()
    )
    assert all(0.05 <= c["lr"] <= 0.15 and 5 <= c["epochs"] <= 15 for c in plan)
    # A fixed value outside the range (inside the bounds) is planned as it is.
    (base,) = plan_configurations(
        space, fixed={"lr": 0.4, "epochs": 1}, mutate=[], n=1, seed=3, strategy="together"
    )
    assert (base["lr"], base["epochs"]) == (0.4, 1)
