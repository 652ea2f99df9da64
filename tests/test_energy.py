"""The energy model against the SkipTrain traces and hand computations."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

import gossamer
from conftest import small_config
from gossamer.config import ConfigError, EnergyConfig
from gossamer.sim.energy import (
    BUILTIN_DEVICES,
    MOBILENET_V2_FLOPS,
    MOBILENET_V2_PARAMS,
    build_energy_model,
    device_profiles,
)

DATA = Path(__file__).parent / "data"


def _traces(name):
    with open(DATA / name, encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("file", "params", "batch", "steps", "share"),
    [
        ("skiptrain_energy_traces_cifar10.csv", 89_834, 32, 20, 0.1),
        ("skiptrain_energy_traces_femnist.csv", 1_690_046, 16, 7, 0.5),
    ],
)
def test_builtin_devices_and_derived_energy_equal_the_skiptrain_traces(
    file, params, batch, steps, share
):
    rows = _traces(file)
    assert [d.name for d in BUILTIN_DEVICES] == [r["Device Name"] for r in rows]
    for device, row in zip(BUILTIN_DEVICES, rows, strict=True):
        assert device.inference_ms == float(row["Inference time MobileNet v2 CPU-F (ms)"])
        assert device.max_power_w == float(row["Max Power consumption (W)"])
        assert device.battery_wh == float(row["Battery capacity (Wh)"])
    config = EnergyConfig(battery_fraction=share)
    model = build_energy_model(config, 4, params, 0, batch * steps, seed=0)  # round robin
    for node, row in enumerate(rows):
        power = float(row["Max Power consumption (W)"])
        per_sample_ms = 1000 * model.joules_per_sample[node] / power
        assert per_sample_ms == pytest.approx(float(row[list(row)[3]]), rel=1e-6)  # training ms
        assert model.joules_per_round[node] / 3600 == pytest.approx(
            float(row["Energy (Wh)"]), rel=1e-6
        )
        assert model.budget_rounds[node] == int(row["Number of training rounds"])


def test_energy_totals_by_hand():
    # 4 nodes round robin over the 4 phones; skiptrain 1/1 over 6 rounds: 3 training rounds
    config = small_config(
        nodes=4,
        rounds=6,
        eval_every=3,
        local_steps=2,
        protocol="{name: skiptrain, train_rounds: 1, sync_rounds: 1}",
    )
    result = gossamer.run(config)
    params = result.summary["model"]["parameters"]
    samples = 3 * 2 * config.data.batch_size  # training rounds x steps x batch
    expected = [
        samples * 3 * d.inference_ms / 1000 * params / MOBILENET_V2_PARAMS * d.max_power_w
        for d in BUILTIN_DEVICES
    ]
    assert result.nodes["energy_joules"] == pytest.approx(expected, rel=1e-9)
    assert result.totals["energy_joules"] == pytest.approx(sum(expected), rel=1e-9)
    assert result.totals["communication_joules"] == 0.0  # the default link costs nothing
    per_round = result.rounds["energy_joules"]
    assert per_round[1] == 0.0 and per_round[0] == pytest.approx(sum(expected) / 3)
    per_device = result.summary["energy"]["per_device"]
    assert per_device["Xiaomi Poco X3"]["energy_joules"] == pytest.approx(expected[3])
    assert result.nodes["device"].tolist() == [d.name for d in BUILTIN_DEVICES]


def test_link_energy_by_hand_with_the_wavelan_preset():
    config = small_config(
        nodes=4, rounds=2, eval_every=1, protocol="dpsgd", **{"energy.link": "wavelan"}
    )
    result = gossamer.run(config)
    message = result.summary["message_bytes"]
    packets = math.ceil(message / 1500)
    per_message = message * 1.9e-6 + packets * 420e-6 + message * 0.42e-6 + packets * 330e-6
    # ring of 4: every node sends 2 and receives 2 messages per round, 2 rounds
    expected = 4 * 2 * 2 * per_message
    assert result.totals["communication_joules"] == pytest.approx(expected, rel=1e-9)
    assert result.totals["energy_joules"] == pytest.approx(
        expected + result.totals["training_joules"], rel=1e-12
    )


def test_flops_scaling_uses_forward_flops():
    config = EnergyConfig(scaling="flops")
    model = build_energy_model(config, 1, 10, 6_000_000, samples_per_round=1, seed=0)
    device = BUILTIN_DEVICES[0]
    expected = 3 * device.inference_ms / 1000 * 6_000_000 / MOBILENET_V2_FLOPS * device.max_power_w
    assert model.joules_per_sample[0] == pytest.approx(expected)


def test_assignment_policies():
    def assign(**kw):
        return build_energy_model(EnergyConfig(**kw), 10, 1000, 0, 1, seed=3).node_device

    assert assign().tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert np.array_equal(assign(assignment="random"), assign(assignment="random"))
    counts = np.bincount(
        assign(
            assignment="fractions",
            fractions={
                "Xiaomi Poco X3": 0.5,
                "OnePlus Nord 2 5G": 0.25,
                "Xiaomi 12 Pro (Snapdragon)": 0.25,
            },
        ),
        minlength=4,
    )
    assert counts.tolist() == [3, 0, 2, 5]  # 2.5 / 2.5 / 5: the larger remainder goes first


def test_custom_profiles_from_config_and_csv(tmp_path):
    path = tmp_path / "devices.csv"
    path.write_text("name,inference_ms,max_power_w,battery_wh\nPi 5,120,7.5,40\n")
    config = EnergyConfig(
        profiles=[{"name": "Tablet", "inference_ms": 20, "max_power_w": 9, "battery_wh": 30}],
        profiles_csv=path,
        devices=["Tablet", "Pi 5"],
    )
    profiles = device_profiles(config)
    assert [(p.name, p.inference_ms) for p in profiles] == [("Tablet", 20.0), ("Pi 5", 120.0)]
    with pytest.raises(ConfigError, match="energy.devices: unknown device 'Phone'"):
        device_profiles(EnergyConfig(devices=["Phone"]))
    path.write_text("name,inference_ms,power\nPi,1,2\n")
    with pytest.raises(ConfigError, match=r"missing column\(s\) max_power_w, battery_wh"):
        device_profiles(EnergyConfig(profiles_csv=path))
    path.write_text("name,inference_ms,max_power_w,battery_wh\nPi,fast,2,3\n")
    with pytest.raises(ConfigError, match="line 2: expected numbers"):
        device_profiles(EnergyConfig(profiles_csv=path))


def test_energy_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="energy: value error, fractions must be given"):
        small_config(**{"energy.assignment": "fractions"})
    with pytest.raises(ConfigError, match="per-byte or per-packet costs need link: custom"):
        small_config(**{"energy.joules_per_byte_sent": 1e-6})
    with pytest.raises(ConfigError, match="energy.battery_fraction"):
        small_config(**{"energy.battery_fraction": 0})


def test_energy_can_be_switched_off():
    result = gossamer.run(small_config(**{"energy.enabled": "false"}))
    assert result.totals["energy_joules"] == 0.0 and "energy" not in result.summary
