"""The ``network`` section: the conditions of a real fleet (all off by default).

Which nodes are online each round (``availability``), which messages arrive
(``delivery``). The simulation applies them in its network layer
(``gossamer.sim.network``); with the defaults every node is online and every message
arrives, and results are those of an ideal network bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gossamer.config.registry import Section

AbsolutePath = Annotated[Path, AfterValidator(lambda path: path.expanduser().absolute())]


class AvailabilityConfig(Section):
    """Which nodes are online in each round (churn); see gossamer.sim.conditions."""

    kind: Literal["always", "bernoulli", "markov", "daily", "trace"] = "always"
    online: float = Field(
        0.7, gt=0, le=1, description="bernoulli: probability that a node is online in a round"
    )
    mean_online: float = Field(
        10.0, ge=1, description="markov: mean length of an online session, in rounds"
    )
    mean_offline: float = Field(
        5.0, ge=1, description="markov: mean length of an offline session, in rounds"
    )
    period: int = Field(24, ge=2, description="daily: rounds per day")
    low: float = Field(0.2, ge=0, le=1, description="daily: share online at the trough")
    high: float = Field(0.9, gt=0, le=1, description="daily: share online at the peak")
    peak: float = Field(0.5, ge=0, lt=1, description="daily: time of the peak, as a day fraction")
    path: AbsolutePath | None = Field(
        None, description="trace: a CSV of online intervals or a FedScale availability file"
    )
    format: Literal["auto", "csv", "fedscale"] = Field(
        "auto", description="trace: file format ('auto': .csv is csv, anything else fedscale)"
    )
    seconds_per_round: float = Field(
        1.0, gt=0, description="trace: trace time units per round (1: the trace is in rounds)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> AvailabilityConfig:
        if self.kind == "trace" and self.path is None:
            raise ValueError("kind 'trace' needs path: a trace file")
        if self.kind == "daily" and self.low > self.high:
            raise ValueError(f"daily: low ({self.low}) must not exceed high ({self.high})")
        return self


class NetworkConfig(Section):
    """Conditions of the network the protocol runs on."""

    availability: AvailabilityConfig = Field(default_factory=AvailabilityConfig)
    delivery: float = Field(
        1.0, gt=0, le=1, description="probability that a message arrives (each independently)"
    )
    link_delivery: dict[str, Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict,
        description="device name -> reliability of its link; a message arrives with "
        "probability delivery x sender's x receiver's",
    )
    deadline: float | None = Field(
        None, gt=0, description="simulated seconds a node has to train in a round; none: no limit"
    )
    capacity: AbsolutePath | None = Field(
        None, description="FedScale device-capacity trace: per node compute speed and bandwidth"
    )

    @property
    def ideal(self) -> bool:
        """Every node always online and every message delivered."""
        reliable = all(p == 1.0 for p in self.link_delivery.values())
        return self.availability.kind == "always" and self.delivery == 1.0 and reliable
