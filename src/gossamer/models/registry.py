"""Name -> model builder; adding a model is one file that calls :func:`register_model`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gossamer.config import ModelConfig, register_model_config
from gossamer.models.base import StackedModel

Builder = Callable[[ModelConfig, tuple[int, ...], int], StackedModel]
_BUILDERS: dict[str, Builder] = {}
C = TypeVar("C", bound=type[ModelConfig])


def register_model(builder: Builder) -> Callable[[C], C]:
    """Class decorator for a model's config section: registers it and its builder."""

    def decorate(config_class: C) -> C:
        register_model_config(config_class)
        _BUILDERS[config_class.model_fields["name"].default] = builder
        return config_class

    return decorate


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int
) -> StackedModel:
    """Instantiate the configured model for inputs of ``input_shape``."""
    return _BUILDERS[config.name](config, tuple(input_shape), num_classes)
