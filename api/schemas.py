"""The solve request envelope. The problem inside it is validated by `solvers.problems`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    problem: dict[str, Any]
    solver: Literal["auto", "qpu", "sim", "heuristic"] = "auto"
    strategy: Literal["fallback", "portfolio"] = "fallback"
    cost_tier: Literal["standard", "premium"] = "standard"
    callback_url: str | None = Field(default=None, max_length=2048)
    seed: int | None = Field(default=None, ge=0, lt=2**32)
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=32)

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("callback_url must be an http(s) URL")
        return value

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        if value == "portfolio":
            raise ValueError("strategy 'portfolio' is not available yet; use 'fallback'")
        return value
