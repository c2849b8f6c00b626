from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from solvers.instances import load_instance, problem_from_vrplib
from solvers.problems import parse_problem


def test_depot_becomes_node_zero_and_the_name_does_not_cap_the_fleet() -> None:
    weights = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]])
    problem = problem_from_vrplib({"name": "X-n3-k2", "edge_weight": weights, "depot": np.array([2]),
                                   "demand": np.array([4, 5, 0]), "capacity": 9})
    assert problem["distances"][0] == [0.0, 2.0, 3.0]
    assert problem["demands"] == [0, 4, 5] and problem["num_vehicles"] == 2  # n - 1, not "k2"
    named = problem_from_vrplib({"name": "X-n3-k1", "edge_weight": weights, "depot": np.array([0]),
                                 "demand": np.array([0, 4, 5]), "capacity": 9, "vehicles": 1})
    assert named["num_vehicles"] == 1  # an explicit VEHICLES field is a real fleet
    assert parse_problem(problem).kind == "cvrp"


def test_tsp_without_demands_and_json_bodies(tmp_path: Path) -> None:
    assert problem_from_vrplib({"edge_weight": np.zeros((3, 3))})["kind"] == "tsp"
    bare = tmp_path / "p.json"
    bare.write_text(json.dumps({"kind": "tsp", "distances": [[0, 1], [1, 0]]}))
    assert load_instance(bare)["problem"]["kind"] == "tsp"
    whole = tmp_path / "b.json"
    whole.write_text(json.dumps({"problem": {"kind": "qubo", "n": 1, "terms": []}, "seed": 3}))
    assert load_instance(whole)["seed"] == 3
    broken = tmp_path / "x.vrp"
    broken.write_text("NAME : x\nDIMENSION : oops\n")
    with pytest.raises(ValueError):
        load_instance(broken)
