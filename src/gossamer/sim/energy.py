"""Energy model: what training and communicating cost each node, in Joules.

**Training** follows the SkipTrain energy traces (Dhasade et al., arXiv 2407.01283;
github sacs-epfl/SkipTrain, ``tutorial/Energy_traces_*.csv``):

- a device profile gives the CPU inference time of MobileNetV2 (ms), the device's
  maximum power (W) and its battery capacity (Wh);
- the model's inference time is MobileNetV2's, scaled by model size;
- training one sample takes 3x an inference; a training round takes
  ``per-sample time x batch size x local steps`` at maximum power;
- a node's training budget is ``floor(battery x battery_fraction / energy per round)``
  training rounds.

Two scalings of the inference time (``energy.scaling``):

- ``parameters`` (default): by parameter count relative to MobileNetV2's 3,504,872.
  This is the SkipTrain method, so its published traces and budgets are reproduced
  exactly, which is why it is the default;
- ``flops``: by forward FLOPs per sample relative to MobileNetV2's 600 MFLOPs
  (300 M multiply-adds at 224x224, Sandler et al., CVPR 2018, Table 4). Closer to
  physics for convolutional models, whose FLOPs per parameter are far higher than
  an MLP's.

**Communication** costs ``J/byte x bytes + J/packet x packets`` for every byte sent
and received (packets of ``packet_bytes``). The default is no cost, as in the
SkipTrain paper, which deems it negligible. The one built-in preset, ``wavelan``,
is the point-to-point IEEE 802.11 measurement of Feeney and Nilsson (INFOCOM 2001,
"Investigating the energy consumption of a wireless network interface in an ad hoc
networking environment"): send 1.9 uJ/byte + 420 uJ/packet, receive
0.42 uJ/byte + 330 uJ/packet. It is a dated 2 Mb/s radio; set your own numbers for
a modern link.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gossamer.config import Config, ConfigError, EnergyConfig
from gossamer.sim.data import dataset_info
from gossamer.sim.models import build_model
from gossamer.sim.rng import Purpose, numpy_generator

MOBILENET_V2_PARAMS = 3_504_872
MOBILENET_V2_FLOPS = 2 * 300_000_000  # 300 M multiply-adds (Sandler et al. 2018)
TRAINING_TO_INFERENCE = 3.0  # SkipTrain: training a sample costs 3 inferences
JOULES_PER_WH = 3600.0


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    inference_ms: float  # MobileNetV2 CPU inference time
    max_power_w: float
    battery_wh: float
    upload_mbps: float = 10.0  # link (simulated time); our default, see LINK_DEFAULTS
    download_mbps: float = 50.0
    latency_ms: float = 50.0


#: The four smartphones of the SkipTrain energy traces (github sacs-epfl/SkipTrain).
BUILTIN_DEVICES = (
    DeviceProfile("Xiaomi 12 Pro (Snapdragon)", 27.0, 17.7, 17.8),
    DeviceProfile("Samsung Galaxy S22 Ultra (Snapdragon)", 29.0, 15.1, 19.4),
    DeviceProfile("OnePlus Nord 2 5G", 17.0, 11.0, 17.41),
    DeviceProfile("Xiaomi Poco X3", 76.0, 8.2, 23.2),
)


@dataclass(frozen=True)
class LinkProfile:
    name: str
    joules_per_byte_sent: float = 0.0
    joules_per_byte_received: float = 0.0
    joules_per_packet_sent: float = 0.0
    joules_per_packet_received: float = 0.0
    packet_bytes: int = 1500


BUILTIN_LINKS = {
    "none": LinkProfile("none"),
    "wavelan": LinkProfile("wavelan", 1.9e-6, 0.42e-6, 420e-6, 330e-6, 1500),
}


@dataclass(frozen=True)
class EnergyModel:
    """Per-node training costs and budgets, and the link's cost of traffic."""

    devices: tuple[DeviceProfile, ...]
    node_device: np.ndarray  # (N,) int: index into devices
    joules_per_sample: np.ndarray  # (N,) training energy of one sample
    joules_per_round: np.ndarray  # (N,) one training round: batch x local steps samples
    budget_rounds: np.ndarray  # (N,) int training rounds the battery share allows
    link: LinkProfile
    seconds_per_sample: np.ndarray  # (N,) training time of one sample (simulated time)

    def training_joules(self, samples: np.ndarray) -> np.ndarray:
        """(N,) energy of training the given number of samples on each node."""
        return samples * self.joules_per_sample

    def traffic_joules(
        self, sent: np.ndarray, received: np.ndarray, message_bytes: int
    ) -> np.ndarray:
        """(N,) energy of sending and receiving these numbers of messages of one size."""
        link = self.link
        packets = math.ceil(message_bytes / link.packet_bytes)
        per_sent = message_bytes * link.joules_per_byte_sent + packets * link.joules_per_packet_sent
        per_received = (
            message_bytes * link.joules_per_byte_received
            + packets * link.joules_per_packet_received
        )
        return sent * per_sent + received * per_received

    def device_names(self) -> list[str]:
        return [self.devices[i].name for i in self.node_device]

    def per_device(self, counters: dict[str, np.ndarray], columns) -> dict[str, dict]:
        """The summary's energy per device class: its nodes, the sums of the per-node
        ``counters`` named in ``columns``, a training round's Joules and the budget."""
        out = {}
        for index, device in enumerate(self.devices):
            nodes = self.node_device == index
            if nodes.any():
                out[device.name] = {
                    "nodes": int(nodes.sum()),
                    **{k: float(counters[k][nodes].sum()) for k in columns},
                    "joules_per_training_round": float(self.joules_per_round[nodes][0]),
                    "budget_rounds": int(self.budget_rounds[nodes][0]),
                }
        return out


def device_profiles(config: EnergyConfig) -> tuple[DeviceProfile, ...]:
    """Built-in profiles, then the config's own and those of its CSV file (by name)."""
    profiles = {d.name: d for d in BUILTIN_DEVICES}
    for custom in config.profiles:
        profiles[custom.name] = DeviceProfile(**custom.model_dump())
    if config.profiles_csv is not None:
        for profile in read_profiles_csv(config.profiles_csv):
            profiles[profile.name] = profile
    if config.devices:
        unknown = [name for name in config.devices if name not in profiles]
        if unknown:
            raise ConfigError(
                f"energy.devices: unknown device {unknown[0]!r}; expected one of "
                f"{', '.join(repr(n) for n in profiles)}"
            )
        return tuple(profiles[name] for name in config.devices)
    return tuple(profiles.values())


def read_profiles_csv(path: Path) -> list[DeviceProfile]:
    """Device profiles from a CSV with columns name, inference_ms, max_power_w, battery_wh
    and, optionally, upload_mbps, download_mbps, latency_ms."""
    if not path.is_file():
        raise ConfigError(f"energy.profiles_csv: expected an existing file; got '{path}'")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        needed = ["name", "inference_ms", "max_power_w", "battery_wh"]
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"energy.profiles_csv '{path}': missing column(s) {', '.join(missing)}; "
                f"expected {', '.join(needed)}; got {', '.join(reader.fieldnames or [])}"
            )
        profiles = []
        for line, row in enumerate(reader, start=2):
            try:
                values = {c: float(row[c]) for c in needed[1:]}
            except ValueError:
                raise ConfigError(
                    f"energy.profiles_csv '{path}' line {line}: expected numbers in "
                    f"{', '.join(needed[1:])}; got {[row[c] for c in needed[1:]]}"
                ) from None
            if min(values.values()) <= 0:
                raise ConfigError(
                    f"energy.profiles_csv '{path}' line {line}: values must be positive"
                )
            link = [c for c in ("upload_mbps", "download_mbps", "latency_ms") if row.get(c)]
            try:  # optional columns: the link of simulated time
                values.update({c: float(row[c]) for c in link})
            except ValueError:
                raise ConfigError(
                    f"energy.profiles_csv '{path}' line {line}: expected numbers in "
                    f"{', '.join(link)}; got {[row[c] for c in link]}"
                ) from None
            if any(values[c] <= 0 for c in ("upload_mbps", "download_mbps") if c in values):
                raise ConfigError(
                    f"energy.profiles_csv '{path}' line {line}: bandwidths must be positive"
                )
            profiles.append(DeviceProfile(row["name"], **values))
    return profiles


def inference_scale(config: EnergyConfig, num_params: int, forward_flops: int) -> float:
    """The model's inference time relative to MobileNetV2's."""
    if config.scaling == "parameters":
        return num_params / MOBILENET_V2_PARAMS
    return forward_flops / MOBILENET_V2_FLOPS


def build_energy_model(
    config: EnergyConfig,
    nodes: int,
    num_params: int,
    forward_flops: int,
    samples_per_round: int,
    seed: int,
) -> EnergyModel:
    """Assign devices to nodes and derive every node's costs and budget."""
    devices = device_profiles(config)
    node_device = assign_devices(config, len(devices), nodes, seed, devices)
    scale = inference_scale(config, num_params, forward_flops)
    seconds_per_sample = np.array(
        [TRAINING_TO_INFERENCE * d.inference_ms / 1000 * scale for d in devices]
    )
    power = np.array([d.max_power_w for d in devices])
    battery = np.array([d.battery_wh * JOULES_PER_WH for d in devices])
    per_sample = (power * seconds_per_sample)[node_device]
    per_round = per_sample * samples_per_round
    budget = np.floor(battery[node_device] * config.battery_fraction / per_round)
    return EnergyModel(
        devices,
        node_device,
        per_sample,
        per_round,
        budget.astype(np.int64),
        BUILTIN_LINKS[config.link]
        if config.link != "custom"
        else LinkProfile(
            "custom",
            config.joules_per_byte_sent,
            config.joules_per_byte_received,
            config.joules_per_packet_sent,
            config.joules_per_packet_received,
            config.packet_bytes,
        ),
        seconds_per_sample[node_device],
    )


def assign_devices(
    config: EnergyConfig, count: int, nodes: int, seed: int, devices: tuple[DeviceProfile, ...]
) -> np.ndarray:
    """(N,) device index of each node: round robin (SkipTrain), random, or by fractions."""
    if config.assignment == "round_robin":
        return np.arange(nodes) % count
    if config.assignment == "random":
        return numpy_generator(seed, Purpose.ENERGY).integers(count, size=nodes)
    names = [d.name for d in devices]
    unknown = [name for name in config.fractions if name not in names]
    if unknown:
        raise ConfigError(f"energy.fractions: unknown device {unknown[0]!r}")
    shares = np.array([config.fractions.get(name, 0.0) for name in names])
    if not math.isclose(shares.sum(), 1.0, abs_tol=1e-6):
        raise ConfigError(f"energy.fractions: expected shares summing to 1; got {shares.sum():g}")
    counts = np.floor(shares * nodes).astype(int)
    remainder = np.argsort(-(shares * nodes - counts), kind="stable")[: nodes - counts.sum()]
    counts[remainder] += 1  # largest remainders get the leftover nodes
    order = numpy_generator(seed, Purpose.ENERGY).permutation(nodes)
    assignment = np.empty(nodes, dtype=np.int64)
    assignment[order] = np.repeat(np.arange(count), counts)
    return assignment


def describe(model: EnergyModel, samples_per_round: int) -> list[dict[str, float | str | int]]:
    """One row per device: its profile and the per-round energy it implies."""
    rows = []
    for index, device in enumerate(model.devices):
        nodes = model.node_device == index
        if not nodes.any():
            continue
        first = int(np.flatnonzero(nodes)[0])
        per_round = float(model.joules_per_round[first])
        rows.append(
            {
                "device": device.name,
                "nodes": int(nodes.sum()),
                "inference_ms_mobilenet_v2": device.inference_ms,
                "max_power_w": device.max_power_w,
                "battery_wh": device.battery_wh,
                "training_ms_per_sample": 1000
                * float(model.joules_per_sample[first])
                / device.max_power_w,
                "joules_per_round": per_round,
                "wh_per_round": per_round / JOULES_PER_WH,
                "budget_rounds": int(model.budget_rounds[first]),
            }
        )
    return rows


def device_table(config: Config) -> dict[str, Any]:
    """What ``gossamer devices`` shows: the configured model's size and FLOPs, and for
    each device profile its training time, energy per training round and budget.

    Uses the configured model, batch size, local steps and battery share; with
    ``energy.devices`` empty, every profile (one node each is enough to describe them).
    """
    shape, classes = dataset_info(config.data)
    model = build_model(config.model, shape, classes)
    per_round = config.data.batch_size * config.local_steps
    energy = build_energy_model(
        config.energy,
        len(config.energy.devices) or 64,
        model.num_params,
        model.forward_flops_per_sample(),
        per_round,
        config.seed,
    )
    rows = describe(energy, per_round)
    for row in rows:
        row.pop("nodes")
    return {
        "model": config.model.name,
        "parameters": model.num_params,
        "forward_mflops_per_sample": model.forward_flops_per_sample() / 1e6,
        "samples_per_training_round": per_round,
        "scaling": config.energy.scaling,
        "battery_fraction": config.energy.battery_fraction,
        "devices": rows,
    }
