"""How much memory a run needs, estimated from its config before anything is allocated.

The terms, per rank (a rank holds ``n = ceil(N / R)`` of the N nodes), each from the
model's parameter count P and the config:

- ``parameters``: n x P float32;
- ``optimizer state``: momentum one more n x P, Adam/AdamW two (three with AMSGrad)
  and a step count per node;
- ``training or evaluation``: the larger working set of the two (they never
  overlap): a training step's gradients of one layer for a chunk of nodes and its
  layer outputs (chunk x batch x activations per sample, three times: outputs, their
  gradients and temporaries), or an evaluation chunk's layer outputs (bounded by the
  engine; twice that for matrix products, 3 times for convolutions' workspaces,
  factors measured against peak RSS);
- ``protocol``: event-triggered gossip keeps each node's last-sent model (n x P) and,
  under churn or loss, a copy per edge (edges x P);
- ``gossip``: the mixer's column buffer, and on several ranks the halo span;
- ``aggregation``: an aggregator other than the mean (``protocol.aggregator``): in
  gossip the combined models (n x P) and the stacks of one chunk of receivers (at
  most the network's ``STACK_BUDGET`` with their temporaries); at the coordinator the
  stack of every model it combines (N x P, and its temporaries); on several ranks
  every rank gathers all N models (N x P);
- ``data``: the dataset as stored, each node's sample indices and batch orders;
- ``process``: Python, torch and gossamer themselves (measured: 0.4 GB RSS).

Before the model is built or the data read, :func:`outline_for_config` gives the first
two terms from the parameter count of a template built on the meta device, so a model
too large for the machine is refused (:func:`check_model_fits`) or planned (``gossamer
plan``) without allocating it.

Checkpoints are written from the tensors themselves (no copy) and read back slice by
slice, so they add nothing here. ``tests/test_memory.py`` checks the total against the
measured peak RSS of real runs (within 25%).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from gossamer.config import Config, ConfigError
from gossamer.sim.data import Dataset, NodeData, dataset_info, load_partitioned
from gossamer.sim.engine import _EVAL_ACTIVATION_BUDGET, auto_chunk
from gossamer.sim.models import StackedModel, build_model
from gossamer.sim.network import build_aggregator, build_compressor
from gossamer.sim.network.network import STACK_BUDGET
from gossamer.sim.shard import Shard, block_bounds
from gossamer.sim.topology import mixing_buffer_bytes

PROCESS_BYTES = int(0.40e9)  # RSS of a process with torch and gossamer, kernels loaded


@dataclass
class MemoryPlan:
    """Estimated peak bytes per rank, by term."""

    terms: dict[str, int] = field(default_factory=dict)
    ranks: int = 1

    @property
    def total(self) -> int:
        return sum(self.terms.values())

    @property
    def largest(self) -> tuple[str, int]:
        """The largest part of what a run allocates (the process and the data are in
        memory before the check)."""
        parts = {k: v for k, v in self.terms.items() if k not in ("process", "data")}
        return max(parts.items(), key=lambda item: item[1])

    def advice(self) -> str:
        """What to change to shrink the largest term."""
        name, _ = self.largest
        return {
            "parameters": "fewer nodes, a smaller model, or more ranks (--ranks, or torchrun "
            "over several machines)",
            "optimizer state": "plain SGD (no momentum) or more ranks",
            "training or evaluation": "a smaller engine.node_chunk (nodes computed at once)",
            "protocol": "more ranks, or fewer nodes",
            "data": "a smaller dataset or fewer samples",
            "gossip": "more ranks",
            "compression": "no error feedback, or more ranks",
            "aggregation": "the mean aggregator, or fewer nodes",
        }.get(name, "fewer nodes or more ranks")


def estimate_memory(
    config: Config,
    model: StackedModel,
    data_bytes: int,
    max_node_samples: int,
    device: torch.device,
    ranks: int = 1,
    test_samples: int = 10_000,
    local_nodes: int | None = None,
) -> MemoryPlan:
    """The memory a run of ``config`` needs per rank: ``data_bytes`` is the dataset as
    held (train as stored, test prepared), ``max_node_samples`` the most samples a
    node holds (the width of the index tensors), ``test_samples`` the test set's size."""
    nodes = config.nodes
    batch = config.data.batch_size
    chunk = config.engine.node_chunk or auto_chunk(model, nodes, batch, device)
    # the most nodes a rank holds: ranks are split in whole chunks (gossamer.sim.shard)
    n = local_nodes or max(hi - lo for lo, hi in block_bounds(nodes, ranks, chunk))
    p, f32 = model.num_params, 4
    chunk = min(n, chunk)
    activations = max(1, model.activations_per_sample())
    terms = state_terms(config, n, p)
    protocol = 0
    if config.protocol.public_models:  # each node's public model, and copies under loss
        protocol = n * p * f32  # the public models (the consensus step's W s: one block)
        if not config.network.ideal:
            degree = _mean_degree(config)
            protocol += int(n * degree) * p * f32
    terms["protocol"] = protocol
    terms["compression"] = compression_bytes(config, model, n)
    gossip = 0
    if config.protocol.uses_topology:
        halo = nodes if ranks > 1 else n
        gossip = mixing_buffer_bytes(
            nodes, n, halo, distributed=ranks > 1, gpu=device.type == "cuda"
        )
    terms["gossip"] = gossip
    terms["aggregation"] = aggregation_bytes(config, n, p, ranks)
    # Training and evaluation do not overlap: the larger of the two working sets.
    # Training: one layer's gradients for a chunk of nodes, and its layer outputs (x3:
    # outputs, their gradients, temporaries). Evaluation: the layer outputs of one
    # evaluation chunk, bounded by the engine, x2 for matrix products and x3 for
    # convolutions (their workspaces, GroupNorm): factors measured on this project's
    # machine against peak RSS.
    largest = max(math.prod(shape) for shape in model.param_shapes)
    training = chunk * largest * f32 + 3 * chunk * batch * activations * f32
    test_batch = min(config.engine.eval_batch, test_samples)
    eval_floats = min(_EVAL_ACTIVATION_BUDGET, chunk * test_batch * activations)
    # A convolution network's evaluation peak varies +-20% between identical runs (the
    # tuned allocator keeps freed temporaries in a fragmenting heap: 1.03-1.45 GB for
    # the 48-node CNN of tests/test_memory.py); x3 puts the estimate in the middle.
    evaluation = (3.0 if model.uses_autocast else 2.0) * eval_floats * f32
    terms["training or evaluation"] = int(max(training, evaluation))
    indices = nodes * max_node_samples * (8 + 2 * 4)  # sample ids, two epochs' orders
    terms["data"] = data_bytes + indices
    terms["process"] = PROCESS_BYTES
    return MemoryPlan(terms, ranks)


def state_terms(config: Config, nodes: int, parameters: int) -> dict[str, int]:
    """The parameters and the optimizer state of ``nodes`` nodes (float32): momentum one
    more copy, Adam/AdamW two (three with AMSGrad) and a step count per node."""
    optimizer = config.optimizer
    if optimizer.name == "sgd":
        moments = 1 if optimizer.momentum else 0
    elif optimizer.name in ("adam", "adamw"):
        moments = 3 if optimizer.amsgrad else 2
    else:  # a plugin optimizer: assume Adam-like state
        moments = 2
    state = nodes * parameters * 4
    return {
        "parameters": state,
        "optimizer state": state * moments + (nodes * 8 if moments >= 2 else 0),
    }


def parameter_count(config: Config, input_shape: tuple[int, ...], classes: int) -> int | None:
    """The model's parameter count P, from a template built on the meta device (nothing
    allocated, so a model too large for this machine is refused by a plan rather than
    by the allocator); None when the model cannot be built there (a custom model that
    computes while it builds): the real build then counts it, or says what is wrong."""
    try:
        with torch.device("meta"):
            return build_model(config.model, input_shape, classes).num_params
    except ConfigError:
        raise
    except Exception:  # the model's own error comes again from the real build
        return None


def outline_for_config(config: Config, ranks: int = 1) -> MemoryPlan | None:
    """A lower bound of :func:`plan_for_config` from the config and the parameter count
    alone (no data read, no model allocated): the parameters, the optimizer state and
    the process, per rank; None when the model cannot be counted without building it."""
    input_shape, classes = dataset_info(config.data)
    parameters = parameter_count(config, input_shape, classes)
    if parameters is None:
        return None
    nodes = -(-config.nodes // ranks)  # a rank's share, at least
    terms = state_terms(config, nodes, parameters)
    return MemoryPlan({**terms, "data": 0, "process": PROCESS_BYTES}, ranks)


def check_model_fits(config: Config, device: torch.device) -> None:
    """:func:`check_fits` on :func:`outline_for_config` for this process's ranks:
    ConfigError, naming the largest part, when the models' parameters and optimizer
    state alone exceed the memory available, before the model or the data take any
    (``engine.check_memory: false`` skips it, as it skips the whole plan's check)."""
    if not config.engine.check_memory:
        return
    outline = outline_for_config(config, Shard.current(config.nodes).world)
    if outline is not None:
        check_fits(outline, device=device)


def compression_bytes(config: Config, model: StackedModel, nodes: int) -> int:
    """What compressing the protocol's messages holds for ``nodes`` nodes: the decoded
    messages and the compressor's temporaries, the error-feedback residuals, and for a
    coordinator the model each node last received and what it decoded of each."""
    section = config.protocol.compression
    if not section.lossy:
        return 0
    compressor = build_compressor(section, model.param_shapes, config.seed)
    held = 1 + int(getattr(section, "residual", False))
    if not config.protocol.uses_topology:  # uploads: b_i and b_i + C(x_i - b_i)
        held += 2
    elif getattr(section, "ef21", False) and not config.protocol.public_models:
        held += 1  # the estimates h (and per-edge copies under conditions)
        if not config.network.ideal:
            held += int(_mean_degree(config))
    return held * nodes * model.num_params * 4 + compressor.temporary_bytes(nodes)


def aggregation_bytes(config: Config, nodes: int, num_params: int, ranks: int) -> int:
    """What a non-linear aggregator holds for ``nodes`` nodes of this rank (the
    module's docstring): nothing for the mean."""
    section = config.protocol.aggregator
    if section.name == "mean":
        return 0
    aggregator = build_aggregator(section)
    everyone = config.nodes * num_params * 4
    gathered = everyone if ranks > 1 else 0
    if not config.protocol.uses_topology:  # the coordinator's stack of all N models
        return gathered + everyone + aggregator.stack_bytes(1, config.nodes, num_params)
    slots = int(_mean_degree(config)) + 1  # a node and its neighbours
    per_row = slots * num_params * 4 + aggregator.stack_bytes(1, slots, num_params)
    at_once = min(nodes, max(1, STACK_BUDGET // per_row))  # the network's chunk
    return gathered + nodes * num_params * 4 + at_once * per_row


def _mean_degree(config: Config) -> float:
    topology = config.topology
    if topology.kind == "regular":
        return float(topology.degree)
    if topology.kind == "ring":
        return 2.0
    if topology.kind == "torus":
        return 4.0
    if topology.kind == "complete":
        return float(config.nodes - 1)
    return 8.0  # other graphs: a typical sparse degree


def plan_memory(
    config: Config,
    model: StackedModel,
    dataset: Dataset,
    node_data: NodeData,
    device: torch.device,
    shard: Shard | int = 1,
) -> MemoryPlan:
    """:func:`estimate_memory` for a loaded dataset and partition, for a ``shard`` (or a
    number of ranks)."""
    ranks = shard if isinstance(shard, int) else shard.world
    local = None if isinstance(shard, int) else shard.width
    held = sum(
        t.numel() * t.element_size()
        for t in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    )
    width = int(node_data.index.shape[1])
    return estimate_memory(config, model, held, width, device, ranks, len(dataset.y_test), local)


def plan_for_config(
    config: Config, ranks: int = 1, device: torch.device | None = None
) -> MemoryPlan:
    """The memory plan of ``config`` on ``ranks`` ranks on ``device`` (default: CUDA
    for ``device: cuda``, else the CPU): the model is built and the data loaded and
    partitioned (as a run does), nothing of the population is allocated."""
    input_shape, classes = dataset_info(config.data)
    model = build_model(config.model, input_shape, classes)
    if config.engine.precision == "bfloat16" and model.uses_autocast:
        model.autocast_dtype = torch.bfloat16
    dataset, node_data = load_partitioned(config, classes, torch.device("cpu"))
    if device is None:
        device = torch.device("cuda" if config.device == "cuda" else "cpu")
    return plan_memory(config, model, dataset, node_data, device, ranks)


def check_fits(
    plan: MemoryPlan,
    available: int | None = None,
    ranks_here: int | None = None,
    device: torch.device | None = None,
) -> None:
    """ConfigError, naming the largest term and what to change, when the memory still
    to be allocated (all but the process and the data, which are in memory already)
    by the ranks that share this machine's memory exceeds what it has available.

    On the CPU those are the ranks of this machine (``LOCAL_WORLD_SIZE``, as torchrun
    sets it); on CUDA each rank has a GPU of its own (``gossamer.workflow.distributed``)
    and is checked against that GPU's free memory (``torch.cuda.mem_get_info``: the
    dataset, moved there before the check, is already taken from it).
    """
    on_gpu = device is not None and device.type == "cuda"
    if ranks_here is None:
        ranks_here = 1 if on_gpu else int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if available is None:
        available = gpu_free_bytes(device) if on_gpu else available_bytes()
    if available is None:
        return
    needed = (plan.total - plan.terms["process"] - plan.terms["data"]) * ranks_here
    if needed <= available:
        return
    name, size = plan.largest
    per_rank = " per rank" if plan.ranks > 1 else ""
    where = f"the GPU {device} has" if on_gpu else "this machine has"
    raise ConfigError(
        f"memory: this run needs about {gigabytes(plan.total)}{per_rank} "
        f"({gigabytes(needed)} still to allocate) and {where} "
        f"{gigabytes(available)} available; the largest part is {name} "
        f"({gigabytes(size)}). Use {plan.advice()}; `gossamer plan` shows every part "
        "(engine.check_memory: false skips this check)"
    )


def available_bytes() -> int | None:
    """Memory the system can still give (MemAvailable on Linux); None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def gpu_free_bytes(device: torch.device) -> int | None:
    """Memory a CUDA device can still give this process: what the driver has free
    (``torch.cuda.mem_get_info``) and what PyTorch's caching allocator holds unused
    (reserved, not allocated: an earlier variant's freed population); None when
    unknown (no GPU)."""
    try:
        free = int(torch.cuda.mem_get_info(device)[0])
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    except (RuntimeError, AssertionError):
        return None
    return free + max(0, int(cached))


def gigabytes(value: int) -> str:
    return f"{value / 1e9:,.2f} GB"
