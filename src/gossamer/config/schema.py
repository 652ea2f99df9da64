"""The experiment description: typed config sections with defaults and constraints.

Every field has a default and unknown keys are errors. The ``protocol``, ``model``
and ``optimizer`` sections are *selected by name*: the component registered under
``name`` (see :mod:`gossamer.config.registry`) brings the section class that
validates the other keys. Checks that span sections live in
:meth:`Config.check_consistency`; all of them need the config only, never the data,
and refuse a run that can do no work (a node without a sample, no node ever online,
a generated dataset larger than this machine's memory) before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gossamer.config.data import (  # noqa: F401 - re-exported: the config's sections
    AugmentConfig,
    DataConfig,
    DriftConfig,
    Mnist1dConfig,
    SyntheticConfig,
    check_augmentation,
)
from gossamer.config.errors import ConfigError
from gossamer.config.network import NetworkConfig
from gossamer.config.protocol import ProtocolConfig
from gossamer.config.registry import DATASETS, MODELS, OPTIMIZERS, PROTOCOLS, Section
from gossamer.config.tracking import LoggingConfig

# Paths in a config are made absolute (from the current directory) when it is read, so
# the config.yaml saved in a run directory works from anywhere (gossamer resume).
AbsolutePath = Annotated[Path, AfterValidator(lambda path: path.expanduser().absolute())]
#: The largest finite float32: numbers that scale float32 tensors must not exceed it.
FLOAT32_MAX = 3.4028234663852886e38


# ---------------------------------------------------------------- sections selected by name


class ModelConfig(Section):
    """Base of a model's config section; subclasses fix ``name`` with a Literal."""

    name: str


class ScheduleConfig(Section):
    """Learning rate per round: an optional linear warm-up, then constant, step or cosine.

    Evaluated once per round (every local step of a round uses the round's rate), by
    the round number, so all nodes share one rate (see gossamer.sim.optim.schedule).
    """

    kind: Literal["constant", "step", "cosine"] = "constant"
    warmup_rounds: int = Field(0, ge=0, description="linear warm-up: lr x (t + 1) / warmup")
    step_rounds: int = Field(100, ge=1, description="step: rounds between decays")
    gamma: float = Field(0.1, gt=0, le=1, description="step: factor of each decay")
    min_lr: float = Field(0.0, ge=0, description="cosine: the rate it anneals to")


class OptimizerConfig(Section):
    """Base of a local optimizer's config section: a learning rate and its schedule."""

    name: str
    lr: float = Field(0.1, gt=0, allow_inf_nan=False)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @field_validator("*")
    @classmethod
    def _float32(cls, value: Any) -> Any:
        """Every optimizer computes in float32: a larger number (in any key of any
        optimizer: ``lr``, ``weight_decay``, ``betas``, ...) would overflow to inf."""
        numbers = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, float) and abs(v) > FLOAT32_MAX for v in numbers):
            raise PydanticCustomError(
                "float32",
                f"expected at most {FLOAT32_MAX:.4g} in magnitude (the largest float32: the "
                "optimizer computes in float32)",
            )
        return value

    @model_validator(mode="after")
    def _schedule(self) -> OptimizerConfig:
        if self.schedule.kind == "cosine" and self.schedule.min_lr > self.lr:
            raise ValueError(
                f"schedule.min_lr ({self.schedule.min_lr}) must not exceed lr ({self.lr})"
            )
        return self


# ---------------------------------------------------------------- fixed sections


@dataclass(frozen=True)
class TopologyKind:
    """What a ``topology.kind`` is. :data:`TOPOLOGIES` is the one list of kinds: the
    config's choices, ``gossamer list``, the graph builders (``gossamer.sim.topology``
    for fixed graphs, ``gossamer.sim.timevarying`` for per-round ones, each checked
    against it by the tests) and the docs' list all follow it."""

    description: str  # one line, for `gossamer list`
    random: bool = False  # drawn from the seed: resample_every may draw fresh ones
    per_round: bool = False  # no fixed graph: a directed graph each round


TOPOLOGIES = {
    "complete": TopologyKind("every pair of nodes connected"),
    "ring": TopologyKind("a cycle"),
    "torus": TopologyKind("a 2-D grid with wrap-around"),
    "regular": TopologyKind(
        "a uniformly random d-regular graph, redrawn until connected", random=True
    ),
    "erdos_renyi": TopologyKind("G(n, p): each edge with probability p", random=True),
    "small_world": TopologyKind("Watts-Strogatz: a ring lattice with rewired edges", random=True),
    "exponential": TopologyKind("i ~ i + 2^j mod n (Ying et al. 2021)"),
    "file": TopologyKind("an edge list in DecentralizePy's format"),
    "epidemic": TopologyKind(
        "Epidemic Learning (EL-Local): each node sends to `fanout` random nodes a round",
        per_round=True,
    ),
    "one_peer_exponential": TopologyKind(
        "one peer per round: i sends to i + 2^(t mod log2 N) (Ying et al.)", per_round=True
    ),
}
TOPOLOGY_KINDS = {name: kind.description for name, kind in TOPOLOGIES.items()}
RANDOM_KINDS = tuple(name for name, kind in TOPOLOGIES.items() if kind.random)
PER_ROUND_KINDS = tuple(name for name, kind in TOPOLOGIES.items() if kind.per_round)
TopologyKindName = Literal[tuple(TOPOLOGIES)]  # type: ignore[valid-type]


class TopologyConfig(Section):
    kind: TopologyKindName = "regular"
    degree: int = Field(4, ge=1, description="regular: degree; small_world: neighbours k")
    p: float = Field(0.1, gt=0, le=1, description="erdos_renyi: edge probability")
    rewire: float = Field(0.1, ge=0, le=1, description="small_world: rewiring probability")
    rows: int | None = Field(None, ge=1, description="torus: grid rows (default: near-square)")
    path: AbsolutePath | None = Field(None, description="file: DecentralizePy edge list")
    weights: Literal["metropolis_hastings", "uniform", "max_degree"] = "metropolis_hastings"
    resample_every: int = Field(
        0, ge=0, description=f"{', '.join(RANDOM_KINDS)}: rounds between fresh graphs"
    )
    fanout: int = Field(6, ge=1, description="epidemic: nodes each node sends to per round (s)")


class DeviceProfileConfig(Section):
    """A device: MobileNetV2 CPU inference time, maximum power, battery capacity, link."""

    name: str = Field(min_length=1)
    inference_ms: float = Field(gt=0, description="MobileNetV2 CPU inference time (ms)")
    max_power_w: float = Field(gt=0)
    battery_wh: float = Field(gt=0)
    upload_mbps: float = Field(10.0, gt=0, description="link: upload bandwidth (Mbit/s)")
    download_mbps: float = Field(50.0, gt=0, description="link: download bandwidth (Mbit/s)")
    latency_ms: float = Field(50.0, ge=0, description="link: latency of a message (ms)")


class EnergyConfig(Section):
    """Energy accounting (see gossamer.sim.energy): device profiles, budgets, link cost."""

    enabled: bool = True
    devices: list[str] = Field(
        default_factory=list, description="device names to use (default: every profile)"
    )
    profiles: list[DeviceProfileConfig] = Field(default_factory=list)
    profiles_csv: AbsolutePath | None = Field(
        None, description="CSV of profiles: name, inference_ms, max_power_w, battery_wh"
    )
    assignment: Literal["round_robin", "random", "fractions"] = "round_robin"
    fractions: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    battery_fraction: float = Field(0.1, gt=0, le=1, description="battery share for training")
    scaling: Literal["parameters", "flops"] = "parameters"
    link: Literal["none", "wavelan", "custom"] = "none"
    joules_per_byte_sent: float = Field(0.0, ge=0)
    joules_per_byte_received: float = Field(0.0, ge=0)
    joules_per_packet_sent: float = Field(0.0, ge=0)
    joules_per_packet_received: float = Field(0.0, ge=0)
    packet_bytes: int = Field(1500, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> EnergyConfig:
        if (self.assignment == "fractions") != bool(self.fractions):
            raise ValueError("fractions must be given exactly when assignment is 'fractions'")
        custom = (
            self.joules_per_byte_sent,
            self.joules_per_byte_received,
            self.joules_per_packet_sent,
            self.joules_per_packet_received,
        )
        if any(custom) and self.link != "custom":
            raise ValueError("per-byte or per-packet costs need link: custom")
        return self


class EvalConfig(Section):
    """What an evaluation measures (every ``eval_every`` rounds). The final evaluation
    always measures every node on the whole test set."""

    test_samples: int = Field(
        0, ge=0, description="a seeded, class-stratified subset of the test set (0: all of it)"
    )
    nodes: int = Field(0, ge=0, description="a seeded sample of nodes, new each time (0: all)")
    initial: bool = Field(True, description="evaluate the initial models, before round 1")


class EngineConfig(Section):
    """How the stacked engine computes; never changes results beyond float rounding."""

    node_chunk: int = Field(0, ge=0, description="nodes per batched computation (0: automatic)")
    precision: Literal["float32", "tf32", "bfloat16"] = Field(
        "float32", description="IEEE fp32; TF32 on CUDA; bf16 autocast of convolutions"
    )
    autotune: bool = Field(
        True, description="CUDA: cuDNN keeps its fastest convolutions (false: bit for bit)"
    )
    eval_batch: int = Field(1024, ge=1, description="test samples per evaluation chunk")
    tune_allocator: bool = Field(
        True, description="glibc: keep freed memory mapped (see docs/engine.md, Memory planning)"
    )
    check_memory: bool = Field(
        True, description="refuse a run whose estimated memory exceeds what is available"
    )


class Config(Section):
    """A whole experiment."""

    seed: int = Field(0, ge=0)
    nodes: int = Field(32, ge=1)
    rounds: int = Field(200, ge=1)
    eval_every: int = Field(10, ge=1)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    local_steps: int = Field(1, ge=1, description="local optimizer steps per training round")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="rounds between checkpoints ('auto': a tenth of the run; 0: never)"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: SerializeAsAny[ModelConfig] = Field(default_factory=lambda: {"name": "mlp"})
    optimizer: SerializeAsAny[OptimizerConfig] = Field(default_factory=lambda: {"name": "sgd"})
    topology: TopologyConfig = Field(default_factory=TopologyConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    protocol: SerializeAsAny[ProtocolConfig] = Field(default_factory=lambda: {"name": "dpsgd"})
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    @field_validator("model", mode="before")
    @classmethod
    def _model_section(cls, value: Any) -> Section:
        return MODELS.section(value)

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_section(cls, value: Any) -> Section:
        return OPTIMIZERS.section(value)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_section(cls, value: Any) -> Section:
        return PROTOCOLS.section(value)

    def check_consistency(self) -> None:
        """Checks that span sections; raises ConfigError naming the key."""
        n, topo = self.nodes, self.topology
        if self.protocol.uses_topology:
            _check_topology(topo, n)
        dynamic = topo.resample_every or topo.kind in PER_ROUND_KINDS
        ef21 = getattr(self.protocol.compression, "ef21", False)
        if dynamic and self.protocol.uses_topology and (ef21 or not self.protocol.time_varying):
            why = " (error_feedback 'ef21' keeps estimates per neighbour)" if ef21 else ""
            raise ConfigError(
                f"topology.kind: protocol {self.protocol.name!r} needs a fixed graph{why}; "
                f"got a time-varying one (kind {topo.kind!r}, resample_every "
                f"{topo.resample_every})"
            )
        if self.eval.nodes == 1 or self.eval.nodes > self.nodes:  # an interval needs two
            raise ConfigError(
                f"eval.nodes: expected 0 (every node) or 2 to nodes ({self.nodes}); "
                f"got {self.eval.nodes}"
            )
        if self.eval_every > self.rounds:
            raise ConfigError(
                f"eval_every: expected at most rounds ({self.rounds}); got {self.eval_every}"
            )
        late = [r for r in self.data.drift.at_rounds if r > self.rounds]
        if late:
            raise ConfigError(
                f"data.drift.at_rounds: expected rounds up to rounds ({self.rounds}); got {late}"
            )
        if self.protocol.needs_energy and not self.energy.enabled:
            raise ConfigError(
                f"protocol.name: {self.protocol.name!r} needs energy budgets; "
                "set energy.enabled: true"
            )
        warmup = self.optimizer.schedule.warmup_rounds
        if warmup >= self.rounds:
            raise ConfigError(
                f"optimizer.schedule.warmup_rounds: expected fewer than rounds ({self.rounds}); "
                f"got {warmup}"
            )
        if topo.weights == "uniform" and (dynamic or not self.network.ideal):
            raise ConfigError(
                "topology.weights: 'uniform' is not symmetric on a live or changing graph, "
                "so gossip would not keep the network mean; use metropolis_hastings or "
                "max_degree with churn, loss or time-varying graphs; got 'uniform'"
            )
        capacity = self.network.capacity
        if capacity is not None and not capacity.is_file():
            raise ConfigError(f"network.capacity: expected an existing file; got '{capacity}'")
        trace = self.network.availability.path
        if self.network.availability.kind == "trace" and not trace.is_file():
            raise ConfigError(
                f"network.availability.path: expected an existing trace file; got '{trace}'"
            )
        shape = DATASETS.implementation(self.data.dataset).input_shape(self.data)
        check_augmentation(self.data, shape)
        from gossamer.config.work import check_work  # noqa: PLC0415 - it reads Config

        check_work(self)


def _check_topology(topo: TopologyConfig, n: int) -> None:
    kind = topo.kind
    if n < 2 and kind != "complete":
        raise ConfigError(f"nodes: topology.kind {kind!r} needs at least 2 nodes; got {n}")
    if kind == "ring" and n < 3:
        raise ConfigError(f"nodes: topology.kind 'ring' needs at least 3 nodes; got {n}")
    if kind == "regular":
        if topo.degree >= n:
            raise ConfigError(
                f"topology.degree: expected less than nodes ({n}) for kind 'regular'; "
                f"got {topo.degree}"
            )
        if (topo.degree * n) % 2:
            raise ConfigError(
                f"topology.degree: a {topo.degree}-regular graph on {n} nodes does not exist "
                "(degree x nodes must be even); got an odd product"
            )
    if kind == "small_world" and not 2 <= topo.degree < n:
        raise ConfigError(
            f"topology.degree: expected 2 <= degree < nodes ({n}) for kind 'small_world'; "
            f"got {topo.degree}"
        )
    if kind == "torus":
        rows = topo.rows or near_square_rows(n)
        if n % rows or rows < 3 or n // rows < 3:
            raise ConfigError(
                f"topology.rows: a 2-D torus needs rows x cols = nodes ({n}) with both >= 3; "
                f"got rows {topo.rows if topo.rows else f'{rows} (automatic)'}"
            )
    if topo.resample_every and kind not in RANDOM_KINDS:
        raise ConfigError(
            f"topology.resample_every: fresh graphs need a random kind "
            f"({', '.join(RANDOM_KINDS)}); got kind {kind!r}"
        )
    if kind == "epidemic" and topo.fanout >= n:
        raise ConfigError(
            f"topology.fanout: expected fewer than nodes ({n}) for kind 'epidemic'; "
            f"got {topo.fanout}"
        )
    if kind == "file":
        if topo.path is None:
            raise ConfigError("topology.path: expected an edge-list file for kind 'file'; got none")
        if not topo.path.is_file():
            raise ConfigError(f"topology.path: expected an existing file; got '{topo.path}'")


def near_square_rows(n: int) -> int:
    """Largest divisor of n not above sqrt(n)."""
    return max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
