"""Typed, validated experiment description, loaded from YAML or TOML.

Every field has a default and unknown keys are errors. ``--set a.b=value`` overrides
any field; the value is parsed as YAML (``--set model.hidden=[128,64]``). Invalid
input raises :class:`ConfigError` whose message names the key, what was expected and
what was given, before any tensor is allocated.

Protocol and model sections are *registered*: each protocol or model file declares
its own section class (a subclass of :class:`ProtocolConfig` / :class:`ModelConfig`)
and registers it with :func:`register_protocol_config` / :func:`register_model_config`;
the ``name`` key picks the class.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


# Paths in a config are made absolute (from the current directory) when it is read, so
# the config.yaml saved in a run directory works from anywhere (gossamer resume).
AbsolutePath = Annotated[Path, AfterValidator(lambda path: path.expanduser().absolute())]


class ConfigError(Exception):
    """Bad configuration: the message names the key, what was expected and what was given.

    Deliberately not a ``ValueError``: pydantic wraps ``ValueError`` raised inside
    validators, and this error must reach the user with its key path intact.
    """


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignment is validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- registered sections


class ProtocolConfig(Section):
    """Base of a protocol's config section; subclasses fix ``name`` with a Literal."""

    name: str
    #: Whether the protocol communicates over ``topology`` (else the graph is not built).
    uses_topology: ClassVar[bool] = True


class ModelConfig(Section):
    """Base of a model's config section; subclasses fix ``name`` with a Literal."""

    name: str


_REGISTRY: dict[str, dict[str, type[Section]]] = {"protocol": {}, "model": {}}
# Modules whose import registers the built-in sections (imported lazily, on first use,
# so that this layer does not import the layers below it at module load).
_BUILTIN_MODULES = ("gossamer.models", "gossamer.protocols")


def _register(kind: str, cls: type[Section]) -> type[Section]:
    name = cls.model_fields["name"].default
    if not isinstance(name, str):
        raise TypeError(f"{cls.__name__}.name needs a string default to be registered")
    _REGISTRY[kind][name] = cls
    return cls


def register_protocol_config(cls: type[ProtocolConfig]) -> type[ProtocolConfig]:
    """Class decorator: make ``protocol: {name: <cls.name>}`` validate with ``cls``."""
    return _register("protocol", cls)


def register_model_config(cls: type[ModelConfig]) -> type[ModelConfig]:
    """Class decorator: make ``model: {name: <cls.name>}`` validate with ``cls``."""
    return _register("model", cls)


def registered_names(kind: str) -> list[str]:
    """Names registered for ``kind`` ('protocol' or 'model'), built-ins included."""
    _load_builtins()
    return sorted(_REGISTRY[kind])


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def _dispatch(kind: str, value: Any, default: str) -> Section:
    """Validate a registered section with the class its ``name`` selects."""
    _load_builtins()
    registry = _REGISTRY[kind]
    if isinstance(value, Section):
        value = value.model_dump()
    if isinstance(value, str):  # shorthand: `protocol: periodic`
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{kind}: expected a mapping with a 'name' key, got {type(value).__name__} {value!r}"
        )
    name = value.get("name", default)
    if name not in registry:
        raise ConfigError(
            f"{kind}.name: expected one of {', '.join(sorted(registry))}; got {name!r}"
        )
    cls = registry[name]
    try:
        return cls.model_validate({**value, "name": name})
    except ValidationError as error:
        lines = format_validation_error(error, cls, prefix=kind)
        raise ConfigError(f"{kind} {name!r}:\n{lines}") from None


# ---------------------------------------------------------------- fixed sections


class SyntheticConfig(Section):
    """A seeded Gaussian-mixture classification task of any size and shape."""

    samples: int = Field(4000, ge=2, description="total samples, train and test together")
    shape: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [32], min_length=1, description="shape of one input"
    )
    classes: int = Field(10, ge=2)
    clusters_per_class: int = Field(1, ge=1)
    separation: float = Field(
        3.0, gt=0, description="distance scale between cluster means, in noise std units"
    )


class DriftConfig(Section):
    """Concept drift (see gossamer.data.drift)."""

    kind: Literal["none", "label_permutation", "input_rotation"] = "none"
    at_rounds: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="rounds (from 1) that start under a new concept"
    )
    probability: float = Field(0.0, ge=0, le=1, description="chance of a drift event per round")
    fraction: float = Field(1.0, gt=0, le=1, description="share of nodes each event affects")
    angle: float = Field(90.0, description="input_rotation of images: degrees per event")

    @model_validator(mode="after")
    def _triggers(self) -> DriftConfig:
        triggered = bool(self.at_rounds) or self.probability > 0
        if self.kind == "none" and triggered:
            raise ValueError("kind is 'none' but at_rounds or probability is set; choose a kind")
        if self.kind != "none" and not triggered:
            raise ValueError(f"kind {self.kind!r} never triggers; set at_rounds or probability")
        return self


class Mnist1dConfig(Section):
    """MNIST-1D generation (the mnist1d package's generator)."""

    samples: int = Field(5000, ge=20, description="signals to generate (benchmark: 5,000)")
    seed: int = Field(42, ge=0, description="generator seed (benchmark: 42)")


class AugmentConfig(Section):
    """Per-node training augmentation of image batches (vectorized over nodes)."""

    crop: int = Field(0, ge=0, description="random crop after zero-padding by this many pixels")
    flip: bool = Field(False, description="random horizontal flip")


FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "femnist", "npz", "folder")
DOWNLOADABLE = ("mnist", "fashion_mnist", "cifar10")


class DataConfig(Section):
    dataset: Literal[
        "digits",
        "synthetic",
        "mnist1d",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "femnist",
        "npz",
        "folder",
    ] = "digits"
    root: AbsolutePath | None = Field(None, description="folder (npz: file) holding the dataset")
    download: bool = Field(False, description="fetch the standard files into root or the cache")
    download_url: str | None = Field(None, description="mirror base URL for downloads")
    image_size: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=2, max_length=2, description="folder: resize images to [H, W]"
    )
    partition: Literal["iid", "dirichlet", "shards", "natural"] = "dirichlet"
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (partition: dirichlet)")
    shards_per_node: int = Field(2, ge=1, description="label-sorted shards per node")
    batch_size: int = Field(16, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    stream: bool = Field(False, description="online learning with prequential evaluation")
    drift: DriftConfig = Field(default_factory=DriftConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    mnist1d: Mnist1dConfig = Field(default_factory=Mnist1dConfig)

    @model_validator(mode="after")
    def _files(self) -> DataConfig:
        if self.dataset in FILE_DATASETS and self.root is None and not self.download:
            fetch = " or set download: true" if self.dataset in DOWNLOADABLE else ""
            raise ValueError(f"dataset {self.dataset!r} is read from files: set root{fetch}")
        if self.download and self.dataset not in DOWNLOADABLE:
            raise ValueError(
                f"download: true is available for {', '.join(DOWNLOADABLE)}; got dataset "
                f"{self.dataset!r}"
            )
        if self.partition == "natural" and self.dataset != "femnist":
            raise ValueError(
                f"partition 'natural' needs a dataset with writers (femnist); got {self.dataset!r}"
            )
        return self


class OptimizerConfig(Section):
    """Local optimizer: SGD as ``torch.optim.SGD`` (momentum, weight decay, Nesterov)."""

    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    nesterov: bool = False


TopologyKind = Literal[
    "complete", "ring", "torus", "regular", "erdos_renyi", "small_world", "exponential", "file"
]


class TopologyConfig(Section):
    kind: TopologyKind = "regular"
    degree: int = Field(4, ge=1, description="regular: degree; small_world: neighbours k")
    p: float = Field(0.1, gt=0, le=1, description="erdos_renyi: edge probability")
    rewire: float = Field(0.1, ge=0, le=1, description="small_world: rewiring probability")
    rows: int | None = Field(None, ge=1, description="torus: grid rows (default: near-square)")
    path: AbsolutePath | None = Field(None, description="file: DecentralizePy edge list")
    weights: Literal["metropolis_hastings", "uniform", "max_degree"] = "metropolis_hastings"


class DeviceProfileConfig(Section):
    """A device: MobileNetV2 CPU inference time, maximum power, battery capacity."""

    name: str = Field(min_length=1)
    inference_ms: float = Field(gt=0, description="MobileNetV2 CPU inference time (ms)")
    max_power_w: float = Field(gt=0)
    battery_wh: float = Field(gt=0)


class EnergyConfig(Section):
    """Energy accounting (see gossamer.energy): device profiles, budgets, link cost."""

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


class LoggingConfig(Section):
    tensorboard: bool = Field(False, description="TensorBoard scalars in <run>/tensorboard")


class EngineConfig(Section):
    """How the stacked engine computes; never changes results beyond float rounding."""

    node_chunk: int = Field(0, ge=0, description="nodes per batched computation (0: automatic)")
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="autocast precision of convolutions (master weights stay fp32)"
    )
    eval_batch: int = Field(1024, ge=1, description="test samples per evaluation chunk")
    tune_allocator: bool = Field(
        True, description="glibc: keep freed memory mapped (see PERFORMANCE.md)"
    )


class Config(Section):
    """A whole experiment."""

    seed: int = Field(0, ge=0)
    nodes: int = Field(32, ge=1)
    rounds: int = Field(200, ge=1)
    eval_every: int = Field(10, ge=1)
    local_steps: int = Field(1, ge=1, description="SGD steps per training round")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="rounds between checkpoints ('auto': a tenth of the run; 0: never)"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: SerializeAsAny[ModelConfig] = Field(default_factory=lambda: {"name": "mlp"})
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    topology: TopologyConfig = Field(default_factory=TopologyConfig)
    protocol: SerializeAsAny[ProtocolConfig] = Field(default_factory=lambda: {"name": "dpsgd"})
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    @field_validator("model", mode="before")
    @classmethod
    def _model_section(cls, value: Any) -> Section:
        return _dispatch("model", value, default="mlp")

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_section(cls, value: Any) -> Section:
        return _dispatch("protocol", value, default="dpsgd")

    def check_consistency(self) -> None:
        """Checks that span sections; raises ConfigError naming the key."""
        n, topo = self.nodes, self.topology
        if self.protocol.uses_topology:
            _check_topology(topo, n)
        if self.eval_every > self.rounds:
            raise ConfigError(
                f"eval_every: expected at most rounds ({self.rounds}); got {self.eval_every}"
            )
        late = [r for r in self.data.drift.at_rounds if r > self.rounds]
        if late:
            raise ConfigError(
                f"data.drift.at_rounds: expected rounds up to rounds ({self.rounds}); got {late}"
            )


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
    if kind == "file":
        if topo.path is None:
            raise ConfigError("topology.path: expected an edge-list file for kind 'file'; got none")
        if not topo.path.is_file():
            raise ConfigError(f"topology.path: expected an existing file; got '{topo.path}'")


def near_square_rows(n: int) -> int:
    """Largest divisor of n not above sqrt(n)."""
    return max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)


# ---------------------------------------------------------------- loading


def load_config(
    source: Config | Mapping[str, Any] | str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Build a validated Config from a file, a mapping or nothing (the defaults).

    Args:
        source: a ``.yaml``/``.yml``/``.toml`` path, a mapping, a Config, or None.
        overrides: ``"a.b=value"`` strings applied in order; values are parsed as YAML.
    """
    origin = ""
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Config):
        raw = source.model_dump(mode="json")
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        origin = str(source)
        raw = read_config_file(Path(source))
    if "variants" in raw:
        raise ConfigError(
            f"variants: {origin or 'this config'} describes a comparison of variants; "
            "run it with `gossamer compare` (or gossamer.compare), or remove the key"
        )
    for override in overrides:
        apply_override(raw, override)
    where = f" in {origin}" if origin else ""
    try:
        config = Config.model_validate(raw)
        config.check_consistency()
    except ValidationError as error:
        lines = format_validation_error(error, Config)
        raise ConfigError(f"invalid configuration{where}:\n{lines}") from None
    except ConfigError as error:
        raise ConfigError(f"invalid configuration{where}: {error}") from None
    return config


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or TOML config file; errors name the file."""
    if not path.is_file():
        raise ConfigError(f"config file '{path}': not found")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(
                f"config file '{path}': expected a .yaml, .yml or .toml file; got '{suffix}'"
            )
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file '{path}': cannot parse: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}': expected a mapping at the top level; got {type(data).__name__}"
        )
    return data


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``a.b=value`` override to a raw config mapping, in place."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set: expected key=value (e.g. protocol.period=5); got {override!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and part in _REGISTRY:  # `protocol: dpsgd`
            child = {"name": child}
        if child is None:
            child = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {key}: '{prefix}' is a value, not a section")
        node[part] = child
        node = child
    renamed = parts[-1] == "name" and len(parts) == 2 and node.get("name", value) != value
    if renamed and parts[0] in _REGISTRY:  # another protocol or model: its keys start afresh
        node.clear()
    node[parts[-1]] = value


def merge_config(raw: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into a copy of ``raw`` (a variant onto a base config).

    A registered section (``model``, ``protocol``) whose ``name`` changes is replaced,
    not merged: the keys of one protocol mean nothing to another.
    """
    merged = dict(raw)
    for key, value in patch.items():
        base = merged.get(key)
        if key in _REGISTRY:
            base = {"name": base} if isinstance(base, str) else base
            value = {"name": value} if isinstance(value, str) else value
            both = isinstance(base, dict) and isinstance(value, dict)
            if both and value.get("name", base.get("name")) != base.get("name"):
                base = {}
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = merge_config(base, value)
        else:
            merged[key] = value
    return merged


def format_validation_error(
    error: ValidationError, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per problem: ``key: expected ...; got ...``."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, item["loc"][:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"  {key}: unknown key{hint}")
            continue
        message = item["msg"]
        message = message[0].lower() + message[1:]
        lines.append(f"  {key}: {message}; got {item.get('input')!r}")
    return "\n".join(lines)


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or ())]
        sub = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not sub:
            return []
        model = sub[0]
    return list(model.model_fields)


def dump_config(config: Config) -> str:
    """The fully resolved config as YAML (reloadable with load_config)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
