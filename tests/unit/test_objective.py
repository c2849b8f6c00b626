"""solvers.objective: structural checks and objectives recomputed from the solution."""

from __future__ import annotations

import math

import pytest

from solvers.objective import InvalidSolution, score
from solvers.problems import parse_problem

ASYM = [
    [0, 2, 9, 10],
    [1, 0, 6, 4],
    [15, 7, 0, 8],
    [6, 3, 12, 0],
]


@pytest.fixture
def tsp():
    return parse_problem({"kind": "tsp", "distances": ASYM})


def _cvrp(**extra):
    data = {"kind": "cvrp", "distances": ASYM, "demands": [0, 4, 3, 5], "vehicle_capacity": 8,
            "num_vehicles": 2}
    data.update(extra)
    return parse_problem(data)


# --- tsp -----------------------------------------------------------------------------------------

def test_tsp_cost_is_the_closed_tour(tsp):
    scored = score(tsp, {"tour": [0, 1, 3, 2]})
    assert scored == {"tour": [0, 1, 3, 2], "cost": 2 + 4 + 12 + 15}


def test_tsp_cost_is_recomputed_not_copied(tsp):
    result = {"tour": [0, 2, 1, 3], "cost": -1.0, "extra": "x"}
    scored = score(tsp, result)
    assert scored == {"tour": [0, 2, 1, 3], "cost": 9 + 7 + 4 + 6}
    assert scored is not result


def test_tsp_from_locations():
    problem = parse_problem({"kind": "tsp", "locations": [[0, 0], [3, 0], [3, 4]]})
    assert score(problem, {"tour": [0, 1, 2]})["cost"] == pytest.approx(12.0)


def test_score_accepts_a_raw_problem_dict():
    assert score({"kind": "tsp", "distances": ASYM}, {"tour": [0, 1, 2, 3]})["cost"] == 2 + 6 + 8 + 6


@pytest.mark.parametrize("result, message", [
    ({}, "no 'tour'"),
    ({"tour": "0123"}, "must be a list"),
    ({"tour": []}, "start at node 0"),
    ({"tour": [1, 0, 2, 3]}, "start at node 0"),
    ({"tour": [0, 1, 1, 3]}, "node 1 is visited more than once"),
    ({"tour": [0, 1, 2, 3, 0]}, "return is implied"),
    ({"tour": [0, 1, 2, 4]}, "out of range"),
    ({"tour": [0, 1, -2, 3]}, "out of range"),
    ({"tour": [0, 1, 2]}, "misses nodes [3]"),
    ({"tour": [0, 1.0, 2, 3]}, "must be an integer"),
    ({"tour": [0, True, 2, 3]}, "must be an integer"),
])
def test_tsp_structural_errors(tsp, result, message):
    with pytest.raises(InvalidSolution) as err:
        score(tsp, result)
    assert message in str(err.value)


def test_result_must_be_a_dict(tsp):
    with pytest.raises(InvalidSolution, match="must be an object"):
        score(tsp, [0, 1, 2, 3])


# --- cvrp ----------------------------------------------------------------------------------------

def test_cvrp_feasible_cost_and_empty_routes_dropped():
    scored = score(_cvrp(), {"routes": [[1, 2], [], [3]]})
    assert scored == {"routes": [[1, 2], [3]], "cost": (2 + 6 + 15) + (10 + 6), "feasible": True}


def test_cvrp_capacity_violation():
    scored = score(_cvrp(), {"routes": [[1, 3], [2]]})
    assert scored["feasible"] is False
    assert scored["violations"] == ["routes[0] carries 9 > capacity 8"]


def test_cvrp_too_many_routes():
    scored = score(_cvrp(), {"routes": [[1], [2], [3]]})
    assert scored["feasible"] is False
    assert scored["violations"] == ["3 routes > 2 vehicles"]


@pytest.mark.parametrize("routes, message", [
    ([[1, 2], [0, 3]], "is the depot"),
    ([[1, 2], [3, 2]], "customer 2 appears more than once"),
    ([[1, 2]], "customers [3] are on no route"),
    ([[1, 2], [4]], "out of range"),
    ([[1, 2], 3], "must be a list"),
    ([[1, 2.5], [3]], "must be an integer"),
])
def test_cvrp_structural_errors(routes, message):
    with pytest.raises(InvalidSolution) as err:
        score(_cvrp(), {"routes": routes})
    assert message in str(err.value)


def test_cvrp_waiting_for_an_early_window_is_allowed():
    problem = _cvrp(time_windows=[[0, 100], [50, 60], [0, 100], [0, 100]])
    # 0->1 arrives at 2, waits until 50; 1->2 arrives 56; back at 56+15 = 71 <= 100
    assert score(problem, {"routes": [[1, 2], [3]]})["feasible"] is True
    # ...and the wait delays what follows: node 2 is then reached at 56
    tight = _cvrp(time_windows=[[0, 100], [50, 60], [0, 55], [0, 100]])
    assert score(tight, {"routes": [[1, 2], [3]]})["violations"] == [
        "routes[0] arrives at node 2 at 56, after its latest time 55"]


def test_cvrp_late_arrival_and_service_times():
    windows = [[0, 100], [0, 10], [0, 10], [0, 100]]
    assert score(_cvrp(time_windows=windows), {"routes": [[1, 2], [3]]})["feasible"] is True
    late = score(_cvrp(time_windows=windows, service_times=[0, 5, 0, 0]), {"routes": [[1, 2], [3]]})
    assert late["feasible"] is False
    assert late["violations"] == ["routes[0] arrives at node 2 at 13, after its latest time 10"]


def test_cvrp_late_return_to_depot_and_vehicle_start_time():
    windows = [[10, 30], [0, 100], [0, 100], [0, 100]]
    # vehicles leave at 10: route [1, 2] returns at 10 + 2 + 6 + 15 = 33 > 30
    scored = score(_cvrp(time_windows=windows), {"routes": [[1, 2], [3]]})
    assert scored["violations"] == ["routes[0] returns to the depot at 33, after its latest time 30"]


def test_cvrp_time_windows_use_durations_not_distances():
    windows = [[0, 100], [0, 1], [0, 100], [0, 100]]
    fast = [[0.0] * 4 for _ in range(4)]
    assert score(_cvrp(time_windows=windows), {"routes": [[1, 2], [3]]})["feasible"] is False
    scored = score(_cvrp(time_windows=windows, durations=fast), {"routes": [[1, 2], [3]]})
    assert scored["feasible"] is True
    assert scored["cost"] == 39


def test_cvrp_float_rounding_does_not_make_a_violation():
    problem = parse_problem({"kind": "cvrp", "distances": [[0, 0.1, 0.2], [0.1, 0, 0.2], [0.2, 0.2, 0]],
                             "demands": [0, 1, 1], "vehicle_capacity": 2, "num_vehicles": 1,
                             "time_windows": [[0, 10], [0, 0.1], [0, 0.3]]})
    assert score(problem, {"routes": [[1, 2]]})["feasible"] is True


# --- assignment ----------------------------------------------------------------------------------

@pytest.fixture
def assignment():
    return parse_problem({"kind": "assignment", "costs": [[1, 5], [4, 2], [3, 3]],
                          "weights": [5, 5, 5], "capacities": [10, 5]})


def test_assignment_cost_and_feasibility(assignment):
    assert score(assignment, {"assignment": [0, 1, 0]}) == {"assignment": [0, 1, 0], "cost": 6.0,
                                                            "feasible": True}
    over = score(assignment, {"assignment": [1, 1, 0], "cost": 0})
    assert over["cost"] == 10.0
    assert over["feasible"] is False
    assert over["violations"] == ["truck 1 carries 10 > capacity 5"]


@pytest.mark.parametrize("result, message", [
    ({"assignment": [0, 1]}, "must have 3 entries"),
    ({"assignment": [0, 1, 2]}, "out of range 0..1"),
    ({"assignment": [0, 1, -1]}, "out of range"),
    ({"assignment": [0, "1", 0]}, "must be an integer"),
    ({"assignment": {"0": 1}}, "must be a list"),
    ({"trucks": [0, 1, 0]}, "no 'assignment'"),
])
def test_assignment_structural_errors(assignment, result, message):
    with pytest.raises(InvalidSolution) as err:
        score(assignment, result)
    assert message in str(err.value)


# --- qubo ----------------------------------------------------------------------------------------

@pytest.fixture
def qubo():
    return parse_problem({"kind": "qubo", "n": 3, "terms": [[0, 0, -1], [0, 1, 2], [1, 1, -1],
                                                             [2, 2, 0.5], [0, 1, 0.25]]})


def test_qubo_energy(qubo):
    assert score(qubo, {"bits": [1, 1, 0]}) == {"bits": [1, 1, 0], "energy": 0.25}
    assert score(qubo, {"bits": [1, 0, 0], "energy": 99})["energy"] == -1.0
    assert score(qubo, {"bits": [0, 0, 1]})["energy"] == 0.5


@pytest.mark.parametrize("bits, message", [
    ([1, 0], "must have 3 entries"),
    ([1, 0, 2], "must be 0 or 1"),
    ([1, 0, True], "must be an integer"),
    ([1, 0, 0.0], "must be an integer"),
])
def test_qubo_structural_errors(qubo, bits, message):
    with pytest.raises(InvalidSolution) as err:
        score(qubo, {"bits": bits})
    assert message in str(err.value)


# --- circuit -------------------------------------------------------------------------------------

TWO_REGISTERS = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[3];
creg a[1];
creg b[2];
h q[0];
measure q[0] -> a[0];
measure q[1] -> b[0];
measure q[2] -> b[1];
"""


@pytest.fixture
def circuit():
    return parse_problem({"kind": "circuit", "qasm": TWO_REGISTERS, "shots": 10})


def test_circuit_counts_normalised(circuit):
    scored = score(circuit, {"counts": {"00 1": 6, "00 0": 4}})
    assert scored == {"counts": {"000": 4, "001": 6}}


@pytest.mark.parametrize("counts, message", [
    ({"00": 10}, "must be 3 characters of 0/1"),
    ({"0x1": 10}, "must be 3 characters of 0/1"),
    ({"002": 10}, "must be 3 characters of 0/1"),
    ({"000": 4, "001": 5}, "sum to 9, expected 10"),
    ({"000": 11, "001": -1}, "must be non-negative"),
    ({"000": 5.0, "001": 5}, "must be an integer"),
    ({"00 1": 5, "001": 5}, "repeats outcome 001"),
])
def test_circuit_structural_errors(circuit, counts, message):
    with pytest.raises(InvalidSolution) as err:
        score(circuit, {"counts": counts})
    assert message in str(err.value)


def test_circuit_counts_must_be_an_object(circuit):
    with pytest.raises(InvalidSolution, match="must be an object mapping"):
        score(circuit, {"counts": [["000", 10]]})


def test_scores_are_finite_floats(tsp):
    assert math.isfinite(score(tsp, {"tour": [0, 3, 2, 1]})["cost"])
