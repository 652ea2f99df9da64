"""What a run reports: its columns, summary.json and nodes.csv, read off a simulation."""

from __future__ import annotations

from typing import Any

import numpy as np

from gossamer.sim.topology import topology_summary

METRIC_COLUMNS = (
    "round",
    "test_accuracy_mean",
    "test_accuracy_min",
    "test_accuracy_max",
    "test_loss_mean",
    "avg_model_accuracy",
    "avg_model_loss",
    "consensus_distance",
    "train_loss",
    "messages",
    "bytes_sent",
    "local_steps",
    "energy_joules",
    "online_nodes",
    "simulated_seconds",
    "wall_seconds",
)
_TIMED = ("samples_trained", "bytes_sent", "bytes_received", "messages_sent", "messages_received")
ENERGY_COLUMNS = ("energy_joules", "training_joules", "communication_joules")
# Added to metrics.csv and rounds.csv when data.stream is on.
STREAM_COLUMNS = ("cumulative_prequential_loss", "cumulative_prequential_error")
# With eval.nodes or eval.test_samples: what was measured, and a 95% interval half-width.
EVAL_COLUMNS = ("evaluated_nodes", "evaluated_test_samples", "test_accuracy_mean_ci95")


def run_summary(sim: Any, wall_seconds: float, version: str) -> dict[str, Any]:
    """summary.json: final metrics (the last evaluation), totals, model, energy."""
    config = sim.config
    final_keys = METRIC_COLUMNS[1:9] + (STREAM_COLUMNS if config.data.stream else ())
    last = sim.history[-1]
    summary = {
        "gossamer_version": version,
        "protocol": config.protocol.name,
        "rounds": config.rounds,
        "nodes": config.nodes,
        "model": {"name": config.model.name, "parameters": sim.model.num_params},
        "message_bytes": sim.network.message_bytes,
        "compression": {
            "name": config.protocol.compression.name,
            "message_bytes": sim.network.model_message_bytes,
        },
        "aggregator": config.protocol.aggregator.name,
        "topology": topology_summary(sim.config, sim.topology, sim.network.schedule is not None),
        "final": {k: last[k] for k in final_keys},
        "totals": {**sim.ledger.totals(), "simulated_seconds": sim.simulated_seconds},
        "evaluation": {
            "every": config.eval_every,
            "initial": config.eval.initial,
            "nodes": config.eval.nodes or config.nodes,
            "test_samples": config.eval.test_samples or len(sim.dataset.y_test),
            "precision": "bfloat16"
            if sim.model.autocast_dtype
            else ("tf32" if sim.population.tf32 else "float32"),
            "final": "every node on the whole test set",
        },
        "device": str(sim.population.device),
        "ranks": sim.population.shard.world,
        # bytes torch.distributed moved between ranks: overhead, not simulated messages
        "distributed_bytes": int(sim.population.shard.total(sim.population.shard.moved_bytes)),
        "wall_seconds": wall_seconds,
    }
    energy = sim.ledger.energy
    if energy is not None:
        summary["energy"] = {
            "scaling": config.energy.scaling,
            "link": energy.link.name,
            "per_device": energy.per_device(sim.ledger.node, ENERGY_COLUMNS),
        }
    if sim.drift_events:
        summary["drift"] = [
            {"round": e.round, "concept": e.concept, "nodes": int(e.nodes.sum())}
            for e in sim.drift_events
        ]
    return summary


def node_table(sim: Any) -> dict[str, np.ndarray]:
    """nodes.csv: per node samples, degree, final accuracy and loss, the ledger's counters."""
    n = sim.config.nodes
    table = {
        "node": np.arange(n),
        "train_samples": sim.node_data.counts.cpu().numpy(),
        "degree": sim.topology.degree if sim.topology is not None else np.zeros(n, dtype=np.int64),
        "test_accuracy": sim.node_accuracy.cpu().numpy(),
        "test_loss": sim.node_loss.cpu().numpy(),
    }
    if sim.drift_events:
        table["concept"] = sim.population.shard.gather(sim.population.state.concept)
        table["concept"] = table["concept"].cpu().numpy()
    if sim.ledger.energy is not None:
        table["device"] = np.array(sim.ledger.energy.device_names())
        table["budget_rounds"] = sim.ledger.energy.budget_rounds
    table.update(sim.ledger.node)
    return table
