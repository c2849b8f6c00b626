"""Problem validation: every shape rule answers with the location of the fault."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from api.errors import validation_errors
from solvers.problems import fingerprint, parse_problem

BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
GOOD = {
    "tsp": {"kind": "tsp", "distances": [[0, 1, 2], [1, 0, 1], [2, 1, 0]]},
    "tsp_locations": {"kind": "tsp", "locations": [[0, 0], [3, 4], [1, 1]]},
    "cvrp": {"kind": "cvrp", "locations": [[0, 0], [1, 0], [0, 1]], "demands": [0, 1, 2],
             "vehicle_capacity": 3, "num_vehicles": 1, "time_windows": [[0, 100], [0, 50], [0, 50]],
             "service_times": [0, 1, 1]},
    "assignment": {"kind": "assignment", "costs": [[1, 2], [3, 1]], "weights": [1, 1], "capacities": [2, 2]},
    "qubo": {"kind": "qubo", "n": 2, "terms": [[0, 0, -1], [0, 1, 2.5]]},
    "circuit": {"kind": "circuit", "qasm": BELL, "shots": 100},
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_valid_problems_parse(name: str) -> None:
    assert parse_problem(GOOD[name]).kind == GOOD[name]["kind"]


def _with(name: str, **changes) -> dict:
    return {**GOOD[name], **changes}


BAD = {
    "unknown kind": ({"kind": "knapsack"}, ["kind"]),
    "no kind": ({"distances": [[0]]}, []),
    "both sources": (_with("tsp", locations=[[0, 0], [1, 1], [2, 2]]), ["tsp"]),
    "ragged matrix": (_with("tsp", distances=[[0, 1, 2], [1, 0], [2, 1, 0]]), ["tsp"]),
    "negative distance": (_with("tsp", distances=[[0, -1, 2], [1, 0, 1], [2, 1, 0]]), ["tsp"]),
    "infinite distance": (_with("tsp", distances=[[0, math.inf, 2], [1, 0, 1], [2, 1, 0]]), ["tsp"]),
    "nan location": (_with("tsp_locations", locations=[[0, 0], [math.nan, 4], [1, 1]]), ["tsp"]),
    "one node": (_with("tsp", distances=[[0]]), ["tsp"]),
    "string distance": (_with("tsp", distances=[[0, "far", 2], [1, 0, 1], [2, 1, 0]]), ["tsp", "distances", 0, 1]),
    "depot demand": (_with("cvrp", demands=[1, 1, 2]), ["cvrp"]),
    "demand count": (_with("cvrp", demands=[0, 1]), ["cvrp"]),
    "demand over capacity": (_with("cvrp", demands=[0, 1, 4]), ["cvrp"]),
    "zero capacity": (_with("cvrp", vehicle_capacity=0), ["cvrp", "vehicle_capacity"]),
    "window reversed": (_with("cvrp", time_windows=[[0, 100], [60, 50], [0, 50]]), ["cvrp"]),
    "extra field": (_with("cvrp", colour="red"), ["cvrp", "colour"]),
    "weights count": (_with("assignment", weights=[1]), ["assignment"]),
    "negative capacity": (_with("assignment", capacities=[2, -1]), ["assignment"]),
    "qubo index": (_with("qubo", terms=[[0, 2, 1.0]]), ["qubo"]),
    "qubo nan": (_with("qubo", terms=[[0, 1, math.nan]]), ["qubo"]),
    "qubo n": (_with("qubo", n=0), ["qubo", "n"]),
    "bad qasm": (_with("circuit", qasm="OPENQASM 2.0; qreg q[1]; frobnicate q[0];"), ["circuit", "qasm"]),
    "no measurement": (_with("circuit", qasm='OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; h q[0];'),
                       ["circuit", "qasm"]),
    "zero shots": (_with("circuit", shots=0), ["circuit", "shots"]),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_invalid_problems_are_refused_with_their_location(name: str) -> None:
    data, loc_prefix = BAD[name]
    with pytest.raises(ValidationError) as caught:
        parse_problem(data)
    errors = validation_errors(caught.value, ("problem",))
    assert errors and all(err["msg"] for err in errors)
    assert errors[0]["loc"][:len(loc_prefix) + 1] == ["problem", *loc_prefix]


def test_fingerprint_ignores_key_order_and_spelling_of_numbers() -> None:
    a = parse_problem({"kind": "tsp", "distances": [[0, 1], [1, 0]]})
    b = parse_problem({"distances": [[0.0, 1.0], [1.0, 0.0]], "kind": "tsp"})
    c = parse_problem({"kind": "tsp", "distances": [[0, 2], [2, 0]]})
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert fingerprint(a).startswith("sha256:")


@pytest.mark.parametrize("problem", [
    {"kind": "qubo", "n": "3", "terms": [[0, 0, 1.5]]},
    {"kind": "qubo", "n": 3, "terms": [[0, 0, "1.5"]]},
    {"kind": "qubo", "n": 3.0, "terms": [[0, 0, 1.5]]},
    {"kind": "qubo", "n": 3, "terms": [[0, True, 1.5]]},
    {"kind": "tsp", "locations": [[0, 0], [1, True]]},
    {"kind": "tsp", "distances": [[0, "1"], [1, 0]]},
    {"kind": "cvrp", "locations": [[0, 0], [1, 1]], "demands": [0, 1], "vehicle_capacity": "5", "num_vehicles": 1},
    {"kind": "cvrp", "locations": [[0, 0], [1, 1]], "demands": [0, 1.0], "vehicle_capacity": 5, "num_vehicles": 1},
    {"kind": "assignment", "costs": [[1, "2"]], "weights": [1], "capacities": [1, 1]},
    {"kind": "circuit", "qasm": 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; measure q -> c;',
     "shots": "10"},
])
def test_numbers_must_be_json_numbers_not_text_or_booleans(problem: dict) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        parse_problem(problem)
