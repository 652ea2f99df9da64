"""The ``data`` section: the dataset, its partition over nodes, streams, drift, augmentation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from gossamer.config.errors import ConfigError
from gossamer.config.registry import DATASETS, Section

# Paths in a config are made absolute (from the current directory) when it is read, so
# the config.yaml saved in a run directory works from anywhere (gossamer resume).
AbsolutePath = Annotated[Path, AfterValidator(lambda path: path.expanduser().absolute())]
#: The largest finite float32: numbers that scale float32 tensors must not exceed it.
FLOAT32_MAX = 3.4028234663852886e38


class SyntheticConfig(Section):
    """A seeded Gaussian-mixture classification task of any size and shape."""

    samples: int = Field(4000, ge=2, description="total samples, train and test together")
    shape: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [32], min_length=1, description="shape of one input"
    )
    classes: int = Field(10, ge=2)
    clusters_per_class: int = Field(1, ge=1)
    separation: float = Field(
        3.0,
        gt=0,
        le=FLOAT32_MAX,
        description="distance scale between cluster means, in noise std units",
    )

    @property
    def generated_bytes(self) -> int:
        """What generating the task holds at once: the float32 inputs and cluster means,
        and each sample's label and cluster (int64)."""
        clusters = self.classes * self.clusters_per_class
        return 4 * math.prod(self.shape) * (self.samples + clusters) + 16 * self.samples


class DriftConfig(Section):
    """Concept drift (see gossamer.sim.data.drift)."""

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


class DataConfig(Section):
    dataset: str = Field("digits", description="a registered dataset (gossamer list)")
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

    @field_validator("dataset")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in DATASETS:
            raise ValueError(f"expected one of {', '.join(DATASETS.names())}")
        return name

    @model_validator(mode="after")
    def _files(self) -> DataConfig:
        source = DATASETS.implementation(self.dataset)
        if source.reads_files and self.root is None and not self.download:
            fetch = " or set download: true" if source.downloadable else ""
            raise ValueError(f"dataset {self.dataset!r} is read from files: set root{fetch}")
        if self.download and not source.downloadable:
            downloadable = [n for n in DATASETS.names() if DATASETS.implementation(n).downloadable]
            raise ValueError(
                f"download: true is available for {', '.join(downloadable)}; got dataset "
                f"{self.dataset!r}"
            )
        if self.partition == "natural" and not source.has_writers:
            with_writers = [n for n in DATASETS.names() if DATASETS.implementation(n).has_writers]
            raise ValueError(
                f"partition 'natural' needs a dataset with writers ({', '.join(with_writers)}); "
                f"got {self.dataset!r}"
            )
        return self


#: The graphs ``topology.kind`` can name (built in gossamer.sim.topology).


def check_augmentation(data: DataConfig, input_shape: tuple[int, ...] | None) -> None:
    """Crop and flip need image inputs (C, H, W); None: the shape is known only from the files."""
    augment = data.augment
    if (augment.crop or augment.flip) and input_shape is not None and len(input_shape) != 3:
        raise ConfigError(
            f"data.augment: crop and flip need image inputs (C, H, W); "
            f"{data.dataset!r} gives {list(input_shape)}"
        )
