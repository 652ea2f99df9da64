"""Name -> model builder; adding a model is one file that registers its builder.

``@register_model(MyConfig)`` on a function ``build(config, input_shape, classes) ->
StackedModel`` makes ``model: {name: <MyConfig's name>}`` build with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gossamer.config import MODELS, ModelConfig
from gossamer.sim.models.base import StackedModel

Builder = Callable[[ModelConfig, tuple[int, ...], int], StackedModel]
B = TypeVar("B", bound=Builder)


def register_model(config_class: type[ModelConfig]) -> Callable[[B], B]:
    """Decorator for a model builder: registers it under its config section's name."""

    def decorate(builder: B) -> B:
        MODELS.register(config_class.model_fields["name"].default, config_class, builder)
        return builder

    return decorate


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int
) -> StackedModel:
    """Instantiate the configured model for inputs of ``input_shape``."""
    return MODELS.resolve(config)(config, tuple(input_shape), num_classes)
