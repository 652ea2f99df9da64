"""The protocol's config section and the compression it selects for what it sends.

A protocol section is selected by its ``name`` (``PROTOCOLS``); inside it,
``compression`` is selected by *its* ``name`` (``COMPRESSORS``): what every model
message the protocol sends carries (``gossamer.sim.network.compression``). The default,
``none``, sends whole float32 models, as every protocol did before compression existed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from gossamer.config.registry import COMPRESSORS, Section


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


class ProtocolConfig(Section):
    """Base of a protocol's config section; subclasses fix ``name`` with a Literal."""

    name: str
    compression: SerializeAsAny[CompressionConfig] = Field(
        default_factory=lambda: {"name": "none"},
        description="what each model message carries (gossamer list compression)",
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

    model_config = Section.model_config | {"validate_default": True}

    @field_validator("compression", mode="before")
    @classmethod
    def _compression_section(cls, value: Any) -> Section:
        return COMPRESSORS.section(value, key="protocol.compression")

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
