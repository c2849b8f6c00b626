"""The solve request envelope. The problem inside it is validated by `solvers.problems`."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from api.body import SAFE_INTEGER

MAX_METADATA_ITEMS = 32
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_METADATA_TEXT = 1024


def _metadata_value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a metadata value, or None: flat scalars that every stage can carry."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return f"text of at most {MAX_METADATA_TEXT} characters" if len(value) > MAX_METADATA_TEXT else None
    if isinstance(value, int):
        return None if abs(value) <= SAFE_INTEGER else f"an integer within ±{SAFE_INTEGER}"
    if isinstance(value, float):
        return None if math.isfinite(value) else "a finite number"
    return "a string, number, boolean or null (no lists or objects)"


def _metadata_value(value: Any) -> Any:
    problem = _metadata_value_problem(value)
    if problem:
        raise ValueError(f"must be {problem}")
    return value


# A validator on the value (not on the whole dict) puts the key into the error's loc:
# ["body", "metadata", "lane_id"], not ["body", "metadata"].
MetadataValue = Annotated[Any, AfterValidator(_metadata_value)]


class SolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    problem: dict[str, Any]
    solver: Literal["auto", "qpu", "sim", "heuristic"] = "auto"
    strategy: Literal["fallback", "portfolio"] = "fallback"
    cost_tier: Literal["standard", "premium"] = "standard"
    callback_url: str | None = Field(default=None, max_length=2048)
    seed: StrictInt | None = Field(default=None, ge=0, lt=2**32)
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=MAX_METADATA_ITEMS)
    priority: Literal["interactive", "batch"] | None = None
    shadow: list[Literal["qpu", "sim", "heuristic"]] | None = Field(default=None, max_length=3)

    @field_validator("shadow")
    @classmethod
    def _distinct_lanes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each shadow lane at most once")
        return value


def conflicts(solve: SolveRequest) -> list[dict[str, Any]]:
    """Options that are each valid but do not go together, with where each one is."""
    errors = []
    if solve.strategy == "portfolio" and solve.solver != "auto":
        errors.append({"loc": ["body", "solver"], "msg": "strategy 'portfolio' races every lane of the plan; "
                                                         "leave solver at 'auto' (or use strategy 'fallback')"})
    return errors
