"""User models: any ``nn.Module`` class, stacked over nodes with ``torch.func``.

``model: {name: custom, import_path: "mypkg.nets:Net", kwargs: {...}}`` (or a file:
``"nets.py:Net"``). Every node's forward pass is ``vmap(functional_call(template,
params_i, x_i))`` over the stacked parameters; gradients come from autograd through
vmap. At start-up the model is instantiated and tried on two nodes and a tiny batch;
what vmap cannot run (data-dependent Python control flow, ``.item()``, in-place
changes of buffers) is reported with the cause, before any work starts.

BatchNorm (which keeps running statistics that would mix nodes) is handled by
``batchnorm``:

- ``per_node`` (default): BatchNorm without running statistics: every node normalizes
  with the statistics of its own current batch, in training and in evaluation
  (``track_running_stats=False``);
- ``groupnorm``: every BatchNorm2d(C) is replaced by GroupNorm(min(groups, C), C).

Dropout and other random layers draw independent masks per node
(``randomness="different"``); those masks depend on how nodes are batched, the one
exception to gossamer's batching-independent randomness (docs/datasets.md).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.func import functional_call, vmap

from gossamer.config import ConfigError, ModelConfig, import_object
from gossamer.config.registry import absolute_import_path
from gossamer.sim.models.base import BatchStats, StackedModel
from gossamer.sim.models.registry import register_model


class CustomModelConfig(ModelConfig):
    name: Literal["custom"] = "custom"
    import_path: str = Field(description="'module:Class' or 'file.py:Class'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="constructor arguments")
    batchnorm: Literal["per_node", "groupnorm"] = "per_node"
    groups: int = Field(2, ge=1, description="batchnorm: groupnorm: groups per layer")

    @field_validator("import_path")
    @classmethod
    def _absolute_file(cls, path: str) -> str:
        """A ``file.py:Class`` path is made absolute, as the config's other paths."""
        return absolute_import_path(path)


class FunctionalModel(StackedModel):
    """Any module, every node at once via vmap over functional_call."""

    pads_evaluation = False  # its BatchNorm may normalize with the batch's statistics

    def __init__(self, template: nn.Module, input_shape: tuple[int, ...], num_classes: int):
        super().__init__(template, input_shape, num_classes)
        self.names = [name for name, _ in template.named_parameters()]
        self._buffers: dict[str, dict[str, torch.Tensor]] = {}  # per device

    def _state(self, params: list[torch.Tensor], device: torch.device) -> dict:
        key = str(device)
        if key not in self._buffers:
            self._buffers[key] = {k: b.to(device) for k, b in self.template.named_buffers()}
        return {**dict(zip(self.names, params, strict=True)), **self._buffers[key]}

    def forward(self, params, inputs, shared=False):
        device = inputs.device

        def one(node_params, x):
            return functional_call(self.template, self._state(node_params, device), (x,))

        return vmap(one, in_dims=(0, None if shared else 0), randomness="different")(params, inputs)

    def loss_and_grad(self, params, inputs, targets) -> tuple[BatchStats, list[torch.Tensor]]:
        self.template.train()
        return super().loss_and_grad(params, inputs, targets)

    def evaluate(self, params, x, y, batch):
        self.template.eval()
        try:
            return super().evaluate(params, x, y, batch)
        finally:
            self.template.train()


def import_class(path: str) -> type[nn.Module]:
    """``module.sub:Class`` or ``file.py:Class`` -> the nn.Module class (ConfigError if not)."""
    found = import_object(path, "model.import_path")
    if not isinstance(found, type) or not issubclass(found, nn.Module):
        raise ConfigError(f"model.import_path: {path!r} is not an nn.Module class")
    return found


@register_model(CustomModelConfig)
def build_custom(
    config: CustomModelConfig, shape: tuple[int, ...], classes: int
) -> FunctionalModel:
    """Your own nn.Module class, stacked over nodes with vmap (model.import_path)."""
    cls = import_class(config.import_path)
    try:
        template = cls(**config.kwargs)
    except Exception as error:
        raise ConfigError(
            f"model.kwargs: {config.import_path}({config.kwargs}) failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    _handle_batchnorm(template, config)
    model = FunctionalModel(template, shape, classes)
    _try(model, config.import_path)
    return model


def _handle_batchnorm(template: nn.Module, config: CustomModelConfig) -> None:
    for name, module in list(template.named_modules()):
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        if config.batchnorm == "groupnorm":
            if not isinstance(module, nn.BatchNorm2d):
                raise ConfigError(
                    f"model.batchnorm: 'groupnorm' replaces BatchNorm2d; "
                    f"{name} is {type(module).__name__}"
                )
            channels = module.num_features
            parent = template.get_submodule(name.rpartition(".")[0]) if "." in name else template
            setattr(
                parent,
                name.rpartition(".")[2],
                nn.GroupNorm(min(config.groups, channels), channels),
            )
        else:  # per_node: batch statistics only, no running statistics to share
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None


def _try(model: FunctionalModel, path: str) -> None:
    """Run two nodes on a tiny batch; turn vmap's complaints into a clear message."""
    params = model.stack(model.initial_params(0).expand(2, -1)).tensors()
    x = torch.zeros(2, 3, *model.input_shape)
    y = torch.zeros(2, 3, dtype=torch.long)
    before = {k: b.clone() for k, b in model.template.named_buffers()}
    try:
        logits = model.forward(params, x)
        model.loss_and_grad(params, x, y)
    except Exception as error:
        raise ConfigError(
            f"model.import_path: {path} cannot run in the stacked engine ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). It must be vmappable: no "
            "Python control flow on tensor values, no .item() or .tolist(), no in-place "
            "changes of buffers"
        ) from None
    if tuple(logits.shape) != (2, 3, model.num_classes):
        raise ConfigError(
            f"model.import_path: {path} returns {tuple(logits.shape[2:])} per "
            f"sample; expected ({model.num_classes},) logits"
        )
    changed = [k for k, b in model.template.named_buffers() if not torch.equal(b, before[k])]
    if changed:
        raise ConfigError(
            f"model.import_path: {path} changes buffer(s) {', '.join(changed)} "
            "during forward; shared buffers would mix nodes"
        )
