"""The protocol's config section, the compression it selects for what it sends and the
aggregator it selects for what it receives.

A protocol section is selected by its ``name`` (``PROTOCOLS``); inside it,
``compression`` is selected by *its* ``name`` (``COMPRESSORS``): what every model
message the protocol sends carries (``gossamer.sim.network.compression``). The default,
``none``, sends whole float32 models, as every protocol did before compression existed.
``aggregator`` (``AGGREGATORS``) is how a node, or the coordinator, combines the models
it received (``gossamer.sim.network.aggregation``); the default, ``mean``, is the
W-weighted mean of gossip and the coordinator's plain mean.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from gossamer.config.registry import AGGREGATORS, COMPRESSORS, PROTOCOLS, Section


class CompressionConfig(Section):
    """Base of a compressor's config section; subclasses fix ``name`` with a Literal."""

    name: str

    @property
    def lossy(self) -> bool:
        """Whether messages are compressed at all (``none`` sends exact models)."""
        return self.name != "none"


class LossyCompressionConfig(CompressionConfig):
    """Base of a compressor that loses information: it may feed its errors back."""

    error_feedback: bool | Literal["ef21"] = Field(
        False,
        description="true: add what compression lost to the next message (Seide et al. "
        "2014); ef21: send compressed changes of an estimate (Richtarik et al. 2021)",
    )

    @property
    def residual(self) -> bool:
        """Whether each node keeps a residual of what compression lost (classic EF)."""
        return self.error_feedback is True

    @property
    def ef21(self) -> bool:
        """Whether messages are compressed changes of a shared estimate (EF21)."""
        return self.error_feedback == "ef21"


#: Where a protocol combines the models it received: over each node's neighbours
#: (``network.gossip``) or at the coordinator (``network.coordinator_aggregate``).
GOSSIP, COORDINATOR = "gossip", "coordinator"


class AggregatorConfig(Section):
    """Base of an aggregator's config section; subclasses fix ``name`` with a Literal."""

    name: str
    #: Where it can combine models (GOSSIP, COORDINATOR): a rule made for a server's
    #: many uploads (Krum) need not suit a node's few neighbours.
    combines: ClassVar[frozenset[str]] = frozenset({GOSSIP, COORDINATOR})


class ProtocolConfig(Section):
    """Base of a protocol's config section; subclasses fix ``name`` with a Literal."""

    name: str
    compression: SerializeAsAny[CompressionConfig] = Field(
        default_factory=lambda: {"name": "none"},
        description="what each model message carries (gossamer list compression)",
    )
    aggregator: SerializeAsAny[AggregatorConfig] = Field(
        default_factory=lambda: {"name": "mean"},
        description="how what a node or the coordinator received is combined "
        "(gossamer list aggregator)",
    )
    #: Whether the protocol communicates over ``topology`` (else the graph is not built).
    uses_topology: ClassVar[bool] = True
    #: Whether the protocol needs the energy model (budgets): ``energy.enabled`` must be on.
    needs_energy: ClassVar[bool] = False
    #: Whether the protocol can run on a graph that changes between rounds: it gossips
    #: only through ``network.gossip`` (protocols opt in).
    time_varying: ClassVar[bool] = False
    #: Whether the protocol sends models (and so can compress them).
    sends_models: ClassVar[bool] = True
    #: Whether its messages may be compressed (push-sum's shares must sum exactly).
    compressible: ClassVar[bool] = True
    #: Whether it mixes through the network's public models (one more model per node,
    #: and per-edge copies under conditions; gossamer.sim.network.public).
    public_models: ClassVar[bool] = False
    #: Where it combines received models with the configured aggregator (GOSSIP or
    #: COORDINATOR); None: by a rule of its own (CHOCO's consensus step, push-sum's
    #: shares), which only the default ``mean`` describes.
    combines: ClassVar[str | None] = None

    model_config = Section.model_config | {"validate_default": True}

    @field_validator("compression", mode="before")
    @classmethod
    def _compression_section(cls, value: Any) -> Section:
        return COMPRESSORS.section(value, key="protocol.compression")

    @field_validator("aggregator", mode="before")
    @classmethod
    def _aggregator_section(cls, value: Any) -> Section:
        return AGGREGATORS.section(value, key="protocol.aggregator")

    @model_validator(mode="after")
    def _aggregates_where_it_combines(self) -> ProtocolConfig:
        name = self.aggregator.name
        if name == "mean":
            return self
        if self.combines is None:
            takers = [n for n in PROTOCOLS.names() if PROTOCOLS.config_class(n).combines]
            raise ValueError(
                f"aggregator: protocol {self.name!r} combines models by a rule of its own, "
                f"which only 'mean' describes; got {name!r} (protocols that take an "
                f"aggregator: {', '.join(takers)})"
            )
        if self.combines not in self.aggregator.combines:
            raise ValueError(
                f"aggregator: {name!r} combines models at "
                f"{' and '.join(sorted(self.aggregator.combines))}; protocol {self.name!r} "
                f"combines them at {self.combines}"
            )
        if getattr(self.compression, "ef21", False):
            raise ValueError(
                f"aggregator: with error_feedback 'ef21' nodes mix estimates of their "
                f"neighbours' models by W, which only 'mean' describes; got {name!r}"
            )
        return self

    @model_validator(mode="after")
    def _compresses_only_models_it_sends(self) -> ProtocolConfig:
        if self.compression.lossy and not self.sends_models:
            raise ValueError(
                f"compression: protocol {self.name!r} sends no model to compress; got "
                f"{self.compression.name!r} (use none)"
            )
        if getattr(self.compression, "ef21", False) and self.public_models:
            raise ValueError(
                f"compression.error_feedback: protocol {self.name!r} already sends "
                "compressed changes of public copies (what 'ef21' adds); use true or false"
            )
        if self.compression.lossy and not self.compressible:
            raise ValueError(
                f"compression: protocol {self.name!r} does not compress its messages; got "
                f"{self.compression.name!r} (use none)"
            )
        return self
