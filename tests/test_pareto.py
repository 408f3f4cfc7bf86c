"""Fronts, hypervolume, knees and picks of nas.pareto."""

from __future__ import annotations

import doctest
import sys

import numpy as np
import pytest

import nas.pareto as pareto
from nas.evaluation import Evaluation
from nas.pareto import (
    Constraint,
    Infeasible,
    InvalidConstraint,
    InvalidObjective,
    MissingMetric,
    Objective,
    hypervolume,
    knee_point,
    non_dominated_sort,
    objective_matrix,
    pareto_front,
    parse_constraint,
    parse_objectives,
    pick,
    reference_point,
)

OBJECTIVES = ["accuracy", "params"]  # accuracy:max, params:min from the default table


def ev(i: int, accuracy: float, params: float, **metrics: float) -> Evaluation:
    return Evaluation({"id": i}, {"accuracy": accuracy, "params": params, **metrics})


def failed(i: int) -> Evaluation:
    return Evaluation({"id": i}, {}, status="failed", error="RuntimeError: boom")


def ids(evaluations: list[Evaluation]) -> list[int]:
    return [e.config["id"] for e in evaluations]


def brute_force_fronts(values: np.ndarray) -> list[set[int]]:
    """Fronts by repeatedly peeling the points that no remaining point dominates (O(n^2) each)."""
    remaining, fronts = set(range(len(values))), []
    while remaining:
        front = {
            i
            for i in remaining
            if not any(
                np.all(values[j] <= values[i]) and np.any(values[j] < values[i]) for j in remaining
            )
        }
        fronts.append(front)
        remaining -= front
    return fronts


# --- objectives -------------------------------------------------------------------------


def test_objective_parse_accepts_every_spec_form():
    assert Objective.parse("accuracy") == Objective("accuracy", "max")
    assert Objective.parse("top1") == Objective("top1", "max")
    for name in ("loss", "params", "macs", "latency_ms", "error"):
        assert Objective.parse(name) == Objective(name, "min")
    assert Objective.parse("accuracy:min") == Objective("accuracy", "min")
    assert Objective.parse(" energy : max ") == Objective("energy", "max")
    assert Objective.parse(("params", "max")) == Objective("params", "max")
    obj = Objective("x", "min")
    assert Objective.parse(obj) is obj
    assert str(obj) == "x:min"


def test_objective_without_direction_and_unknown_name_says_how_to_write_it():
    with pytest.raises(InvalidObjective, match=r"'energy:max' or 'energy:min'"):
        Objective.parse("energy")


@pytest.mark.parametrize("spec", ["accuracy:up", ("params", "minimise"), "params:MIN"])
def test_bad_direction_names_the_value_and_the_allowed_ones(spec):
    bad = spec[1] if isinstance(spec, tuple) else spec.split(":")[1]
    with pytest.raises(InvalidObjective, match=rf"'direction'.*\['max', 'min'\].*{bad!r}"):
        Objective.parse(spec)
    with pytest.raises(ValueError):  # a ValueError subclass
        parse_objectives([spec])


@pytest.mark.parametrize("spec", [42, "", ":max", ("a", "max", "b")])
def test_bad_objective_spec_is_rejected(spec):
    with pytest.raises(InvalidObjective):
        Objective.parse(spec)


def test_parse_objectives_needs_at_least_one():
    with pytest.raises(InvalidObjective, match="at least one objective"):
        parse_objectives([])
    with pytest.raises(InvalidObjective, match="at least one objective"):
        parse_objectives("")


def test_parse_objectives_rejects_repeated_metrics():
    with pytest.raises(InvalidObjective, match=r"\['accuracy'\] is repeated"):
        parse_objectives(["accuracy:max", "params", "accuracy:min"])


def test_parse_objectives_accepts_a_comma_separated_string():
    assert parse_objectives("accuracy, latency_ms:max") == [
        Objective("accuracy", "max"),
        Objective("latency_ms", "max"),
    ]


# --- objective matrix -------------------------------------------------------------------


def test_objective_matrix_negates_maximised_objectives():
    values = objective_matrix([ev(0, 0.9, 100), ev(1, 0.5, 10)], OBJECTIVES)
    np.testing.assert_array_equal(values, [[-0.9, 100], [-0.5, 10]])
    assert objective_matrix([], OBJECTIVES).shape == (0, 2)


def test_objective_matrix_missing_metric_names_it_and_the_metrics_present():
    with pytest.raises(MissingMetric, match=r"'latency_ms'.*\['accuracy', 'params'\]"):
        objective_matrix([ev(0, 0.9, 100)], ["accuracy", "latency_ms"])


# --- non-dominated sort -----------------------------------------------------------------


def test_non_dominated_sort_hand_case():
    values = np.array([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [4, 4]])
    fronts = non_dominated_sort(values)
    assert [f.tolist() for f in fronts] == [[0, 1, 2], [3], [4], [5]]


def test_non_dominated_sort_duplicates_share_a_front():
    values = np.array([[1, 1], [2, 0], [1, 1], [2, 2], [2, 2]])
    assert [f.tolist() for f in non_dominated_sort(values)] == [[0, 1, 2], [3, 4]]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_non_dominated_sort_matches_brute_force(k, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(120, k)).astype(float)  # small integers: many ties
    fronts = non_dominated_sort(values)
    assert [set(f.tolist()) for f in fronts] == brute_force_fronts(values)
    assert sorted(np.concatenate(fronts).tolist()) == list(range(len(values)))


def test_non_dominated_sort_handles_thousands_of_points():
    values = np.random.default_rng(0).random((5000, 3))
    fronts = non_dominated_sort(values)
    assert sum(len(f) for f in fronts) == 5000
    first = values[fronts[0]]
    rest = values[np.concatenate(fronts[1:])]
    # every later point is dominated by some first-front point
    dominated = np.all(first[None, :, :] <= rest[:, None, :], axis=2).any(axis=1)
    assert dominated.all()


def test_non_dominated_sort_edge_cases():
    assert non_dominated_sort(np.zeros((0, 2))) == []
    with pytest.raises(ValueError, match="2-D"):
        non_dominated_sort(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        non_dominated_sort(np.array([[1.0, np.nan]]))


# --- fronts -----------------------------------------------------------------------------


def test_pareto_front_respects_max_and_min_directions_and_sorts_by_first_objective():
    evs = [ev(0, 0.80, 10), ev(1, 0.90, 30), ev(2, 0.85, 20), ev(3, 0.80, 40), ev(4, 0.70, 5)]
    assert ids(pareto_front(evs, OBJECTIVES)) == [1, 2, 0, 4]
    # flipping both directions makes the other corner optimal
    assert ids(pareto_front(evs, ["accuracy:min", "params:max"])) == [4, 3]


def test_pareto_front_ignores_failed_evaluations():
    evs = [ev(0, 0.8, 10), failed(1), ev(2, 0.9, 30), Evaluation({"id": 3}, {"accuracy": float("nan"), "params": 1})]
    assert ids(pareto_front(evs, OBJECTIVES)) == [2, 0]
    assert pareto_front([failed(0)], OBJECTIVES) == []


def test_pareto_front_keeps_duplicates():
    evs = [ev(0, 0.9, 10), ev(1, 0.9, 10), ev(2, 0.8, 20)]
    assert ids(pareto_front(evs, OBJECTIVES)) == [0, 1]


# --- hypervolume ------------------------------------------------------------------------


def test_hypervolume_2d_hand_case():
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1]]), [4, 4]) == pytest.approx(6.0)
    # dominated points and duplicates add nothing
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1], [3, 3], [2, 2]]), [4, 4]) == pytest.approx(6.0)


def test_hypervolume_drops_points_that_do_not_strictly_dominate_the_reference():
    points = np.array([[1, 3], [2, 2], [3, 1], [4, 0], [5, -1], [0, 4]])
    assert hypervolume(points, [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.array([[5, 5]]), [4, 4]) == 0.0
    assert hypervolume(np.zeros((0, 2)), [4, 4]) == 0.0


def test_hypervolume_3d_hand_cases():
    assert hypervolume(np.array([[1, 1, 1]]), [2, 2, 2]) == pytest.approx(1.0)
    # boxes of volume 4 and 2 overlapping in a unit cube
    assert hypervolume(np.array([[0, 0, 1], [1, 1, 0]]), [2, 2, 2]) == pytest.approx(5.0)


def test_hypervolume_4d_and_1d():
    assert hypervolume(np.array([[0, 0, 0, 0]]), [1, 2, 3, 4]) == pytest.approx(24.0)
    assert hypervolume(np.array([[1.0], [2.5]]), [4]) == pytest.approx(3.0)


def test_hypervolume_of_evaluations_uses_objective_units():
    # in minimisation space these are (-0.9, 30), (-0.8, 20), (-0.7, 10): the 1,2,3 staircase
    # scaled by 0.1 along accuracy and 10 along params, so HV = 6 * 0.1 * 10.
    evs = [ev(0, 0.9, 30), ev(1, 0.8, 20), ev(2, 0.7, 10), failed(3)]
    assert hypervolume(evs, {"accuracy": 0.6, "params": 40}, OBJECTIVES) == pytest.approx(6.0)
    assert hypervolume(evs, [0.6, 40], OBJECTIVES) == pytest.approx(6.0)
    assert hypervolume(evs, {"accuracy": 0.6, "params": 40}, ["params", "accuracy"]) == pytest.approx(6.0)


def test_hypervolume_errors():
    evs = [ev(0, 0.9, 30)]
    with pytest.raises(InvalidObjective, match="'objectives' parameter is required"):
        hypervolume(evs, [0.6, 40])
    with pytest.raises(ValueError, match=r"missing \['params'\]"):
        hypervolume(evs, {"accuracy": 0.6}, OBJECTIVES)
    with pytest.raises(ValueError, match="3 values but there are 2 objectives"):
        hypervolume(evs, [0.6, 40, 1], OBJECTIVES)
    with pytest.raises(ValueError, match="one reference value per objective"):
        hypervolume(np.array([[1, 2]]), [4, 4, 4])
    with pytest.raises(ValueError, match="needs 'objectives'"):
        hypervolume(np.array([[1, 2]]), {"a": 1, "b": 2})
    with pytest.raises(TypeError, match="Evaluation"):
        hypervolume([[1, 2]], [4, 4], OBJECTIVES)


def test_own_2d_sweep_matches_optuna():
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(3)
    for _ in range(5):
        points = rng.integers(0, 10, size=(40, 2)).astype(float)
        ref = np.array([10.0, 10.0])
        assert pareto._hypervolume_2d(points, ref) == pytest.approx(compute_hypervolume(points, ref))


def test_hypervolume_falls_back_to_own_2d_sweep_without_optuna(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna._hypervolume", None)  # makes the import fail
    assert pareto._hypervolume_backend(2) is pareto._hypervolume_2d
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1]]), [4, 4]) == pytest.approx(6.0)
    with pytest.raises(ImportError, match="3 objectives"):
        hypervolume(np.array([[1, 1, 1]]), [2, 2, 2])


# --- reference point --------------------------------------------------------------------


def test_reference_point_is_worst_value_plus_margin_of_range():
    evs = [ev(0, 0.9, 30), ev(1, 0.7, 10), failed(2)]
    ref = reference_point(evs, OBJECTIVES, margin=0.5)
    assert ref == pytest.approx({"accuracy": 0.6, "params": 40})
    assert hypervolume(evs, ref, OBJECTIVES) > 0
    # a constant objective still gets a reference strictly worse than every point
    assert reference_point([ev(0, 0.9, 0)], OBJECTIVES)["params"] == pytest.approx(0.1)


def test_reference_point_errors():
    with pytest.raises(ValueError, match="'margin'.*-1"):
        reference_point([ev(0, 0.9, 30)], OBJECTIVES, margin=-1)
    with pytest.raises(ValueError, match="no ok evaluation"):
        reference_point([failed(0)], OBJECTIVES)


# --- knee -------------------------------------------------------------------------------


def test_knee_of_a_convex_front():
    # (params, error) = (0,10), (1,4), (2,2), (5,1), (10,0): after normalising, the distance
    # below the line x + y = 1 is largest at (2, 2).
    front = [(0, 10), (1, 4), (2, 2), (5, 1), (10, 0)]
    evs = [ev(i, 1 - e / 100, p) for i, (p, e) in enumerate(front)]
    evs.append(ev(9, 0.5, 50))  # dominated
    assert knee_point(evs, OBJECTIVES).config == {"id": 2}
    assert knee_point(evs, ["params", "accuracy"]).config == {"id": 2}


def test_knee_in_three_objectives():
    points = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.2, 0.2, 0.2), (0.4, 0.4, 0.1)]
    evs = [Evaluation({"id": i}, dict(zip("abc", p))) for i, p in enumerate(points)]
    assert knee_point(evs, ["a:min", "b:min", "c:min"]).config == {"id": 3}


def test_knee_with_one_or_two_front_members_is_best_in_first_objective():
    evs = [ev(0, 0.8, 10), ev(1, 0.9, 30), ev(2, 0.7, 40)]
    assert knee_point(evs, OBJECTIVES).config == {"id": 1}
    assert knee_point([ev(0, 0.8, 10)], OBJECTIVES).config == {"id": 0}


# --- constraints and picks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latency_ms<=2", Constraint("latency_ms", "<=", 2.0)),
        ("params < 5e4", Constraint("params", "<", 50000.0)),
        ("accuracy>=0.9", Constraint("accuracy", ">=", 0.9)),
        (" accuracy > .5 ", Constraint("accuracy", ">", 0.5)),
        ("depth==-3", Constraint("depth", "==", -3.0)),
    ],
)
def test_parse_constraint_accepts_every_operator(text, expected):
    assert parse_constraint(text) == expected


def test_constraint_holds_and_prints():
    c = parse_constraint("latency_ms<=2")
    assert c.holds({"latency_ms": 2.0}) and not c.holds({"latency_ms": 2.1})
    assert not parse_constraint("latency_ms<2").holds({"latency_ms": 2.0})
    assert str(c) == "latency_ms<=2" and str(parse_constraint("a>0.5")) == "a>0.5"
    with pytest.raises(MissingMetric, match=r"'latency_ms'.*\['params'\]"):
        c.holds({"params": 1})


@pytest.mark.parametrize(
    "text", ["latency_ms", "latency_ms<=", "latency_ms=<2", "<=2", "latency_ms<=abc", "latency_ms<=nan", "a<=1<=2"]
)
def test_malformed_constraint_names_the_string_and_the_accepted_form(text):
    with pytest.raises(InvalidConstraint, match=r"Cannot parse the constraint .*'latency_ms<=2'") as info:
        parse_constraint(text)
    assert repr(text) in str(info.value)


def test_constraint_rejects_bad_operator_and_value():
    with pytest.raises(InvalidConstraint, match=r"'op'.*'=>'"):
        Constraint("a", "=>", 1)
    with pytest.raises(InvalidConstraint, match="finite number"):
        Constraint("a", "<=", float("inf"))


def candidates() -> list[Evaluation]:
    return [
        ev(0, 0.95, 80_000, latency_ms=4.0),
        ev(1, 0.93, 40_000, latency_ms=2.5),
        ev(2, 0.91, 20_000, latency_ms=1.5),
        ev(3, 0.80, 10_000, latency_ms=1.0),
        ev(4, 0.60, 5_000, latency_ms=0.5),
        failed(5),
    ]


def test_pick_knee_and_best():
    evs = candidates()
    assert pick(evs, OBJECTIVES, "knee") == knee_point(evs, OBJECTIVES)
    assert pick(evs, OBJECTIVES, "best:accuracy").config == {"id": 0}
    assert pick(evs, OBJECTIVES, "best:params").config == {"id": 4}
    assert pick(evs, OBJECTIVES, "best:latency_ms").config == {"id": 4}  # default table: min
    assert pick(evs, ["accuracy", "latency_ms:max"], "best:latency_ms").config == {"id": 0}


def test_pick_with_constraints_returns_best_in_first_objective_meeting_them():
    evs = candidates()
    assert pick(evs, OBJECTIVES, "latency_ms<=2").config == {"id": 2}
    assert pick(evs, OBJECTIVES, "params<=50000,latency_ms<=3").config == {"id": 1}
    assert pick(evs, OBJECTIVES, ["params<=15000", "latency_ms<=2"]).config == {"id": 3}
    assert pick(evs, ["params", "accuracy"], parse_constraint("accuracy>=0.9")).config == {"id": 2}


def test_pick_errors():
    evs = candidates()
    with pytest.raises(MissingMetric, match=r"'energy'.*\['accuracy', 'latency_ms', 'params'\]"):
        pick(evs, OBJECTIVES, "energy<=2")
    with pytest.raises(MissingMetric, match=r"'energy'.*\['accuracy', 'latency_ms', 'params'\]"):
        pick(evs, OBJECTIVES, "best:energy")
    with pytest.raises(InvalidObjective, match="'depth:max' or 'depth:min'"):
        pick([ev(0, 0.9, 1, depth=2)], OBJECTIVES, "best:depth")
    with pytest.raises(Infeasible, match=r"latency_ms<=0.1.*best reached latency_ms=0.5"):
        pick(evs, OBJECTIVES, "latency_ms<=0.1")
    with pytest.raises(InvalidConstraint, match=r"Cannot parse the constraint 'latency_ms=2'"):
        pick(evs, OBJECTIVES, "latency_ms=2")
    with pytest.raises(InvalidConstraint, match=r"'how' parameter.*'knee', 'best:<metric>'"):
        pick(evs, OBJECTIVES, "")
    with pytest.raises(InvalidConstraint, match=r"'how' parameter"):
        pick(evs, OBJECTIVES, 42)
    with pytest.raises(ValueError, match="no ok evaluation"):
        pick([failed(0)], OBJECTIVES, "knee")
    with pytest.raises(InvalidObjective):
        pick(evs, ["energy"], "knee")


def test_docstring_examples_run():
    result = doctest.testmod(pareto)
    assert result.attempted > 0 and result.failed == 0
