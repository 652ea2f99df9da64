"""Protocols against loop references, and the ledger against hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import small_config
from gossamer.config import registered_names
from gossamer.sim import Simulation
from gossamer.sim.accounting import HEADER_BYTES, Ledger, model_message_bytes
from gossamer.sim.data import sample_batch_indices
from gossamer.workflow import run
from reference import LoopPopulation, loop_gossip


def test_builtin_protocols_are_registered():
    assert {"dpsgd", "periodic", "nosync"} <= set(registered_names("protocol"))


def test_dpsgd_rounds_match_train_then_gossip_loop():
    config = small_config(
        **{
            "nodes": 8,
            "topology.kind": "regular",
            "topology.degree": 3,
            "local_steps": 2,
            "optimizer.momentum": 0.5,
        }
    )
    sim = Simulation.build(config)
    loop = LoopPopulation(sim.model.template, sim.population.params.matrix(), config.optimizer)
    graph, deg = sim.topology.graph, sim.topology.degree
    neighbours = [sorted(graph.neighbors(i)) for i in range(8)]

    def mh(i, j):
        if i != j:
            return 1 / (1 + max(deg[i], deg[j]))
        return 1 - sum(1 / (1 + max(deg[i], deg[k])) for k in neighbours[i])

    batch = config.data.batch_size
    for t in range(3):
        for i in range(8):
            for s in range(2):
                cursor = torch.tensor([(2 * t + s) * batch])
                idx = sample_batch_indices(
                    sim.node_data, torch.tensor([i]), cursor, batch, config.seed
                )[0]
                loop.step(i, sim.dataset.x_train[idx], sim.dataset.y_train[idx])
        sds = [{"x": row} for row in loop.rows()]
        loop.load_rows(torch.stack([sd["x"] for sd in loop_gossip(sds, neighbours, mh)]))
        sim.step(t)
    torch.testing.assert_close(sim.population.params.matrix(), loop.rows(), rtol=1e-5, atol=2e-6)


def test_dpsgd_ledger_by_hand():
    result = run(small_config(rounds=4))  # ring of 6 nodes, local_steps 1, batch 5
    params = result.summary["model"]["parameters"]
    assert params == 12 * 7 + 7 + 7 * 3 + 3
    message = params * 4 + HEADER_BYTES
    assert result.summary["message_bytes"] == message
    assert result.totals["messages"] == 6 * 2 * 4  # every node to both neighbours, 4 rounds
    assert result.totals["bytes_sent"] == 48 * message == result.totals["bytes_received"]
    assert result.totals["local_steps"] == 24 and result.totals["samples_trained"] == 120
    assert result.rounds["messages"].tolist() == [12, 12, 12, 12]
    assert result.nodes["bytes_sent"].tolist() == [8 * message] * 6
    assert result.metrics["messages"].tolist() == [0, 24, 48]  # rounds 0, 2, 4


def test_periodic_ledger_by_hand_and_models_agree_after_sync():
    result = run(
        small_config(**{"protocol": "{name: periodic, period: 3}", "rounds": 7, "eval_every": 3})
    )
    message = result.summary["message_bytes"]
    # syncs after rounds 3 and 6: each time 6 uploads and 6 downloads
    assert result.rounds["syncs"].tolist() == [0, 0, 1, 0, 0, 1, 0]
    assert result.totals["messages"] == 24 and result.totals["bytes_sent"] == 24 * message
    assert result.nodes["messages_sent"].tolist() == [2] * 6
    assert result.nodes["messages_received"].tolist() == [2] * 6
    consensus = dict(
        zip(result.metrics["round"], result.metrics["consensus_distance"], strict=True)
    )
    assert consensus[3] == consensus[6] == 0.0 and consensus[7] > 0


def test_nosync_sends_nothing_and_nodes_drift_apart():
    result = run(small_config(protocol="nosync"))
    assert result.totals["messages"] == 0 and result.totals["bytes_sent"] == 0
    assert result.totals["local_steps"] == 24
    assert result.final["consensus_distance"] > 0


def test_ledger_coordinator_traffic_counts_in_totals():
    ledger = Ledger(3)
    ledger.record_upload(np.array([1, 0, 1]), 100)
    ledger.record_download(np.array([1, 1, 1]), 100)
    ledger.record_exchange(np.array([2, 1, 1]), np.array([1, 2, 1]), 10)
    totals = ledger.totals()
    assert totals["messages"] == 2 + 4 + 3  # node uploads + coordinator sends + exchanges
    assert totals["bytes_sent"] == 200 + 300 + 40 == totals["bytes_received"]
    assert ledger.node["bytes_received"].tolist() == [110, 120, 110]


def test_model_message_bytes():
    assert model_message_bytes(1000) == 4032
    assert model_message_bytes(1000, torch.float16) == 2032


def test_unknown_protocol_key_is_named():
    from gossamer.config import ConfigError

    with pytest.raises(ConfigError, match=r"protocol 'dpsgd':\n  protocol.period: unknown key"):
        small_config(**{"protocol.period": 3})
