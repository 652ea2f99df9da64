"""Churn and message loss against plain per-node loops; exact accounting; the protocols'
semantics under them; availability models and trace files."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

import gossamer
from conftest import small_config, stop_at
from gossamer.config import ConfigError, DataError, registered_names
from gossamer.sim import Simulation
from gossamer.sim.conditions import Availability
from gossamer.sim.data import sample_batch_indices
from gossamer.sim.rng import Purpose, uniform
from gossamer.workflow import RunInterrupted
from reference import LoopPopulation
from test_workflow import RICH, assert_same_run

CHURN = {"network.availability": "{kind: bernoulli, online: 0.7}", "network.delivery": 0.9}


def online_by_hand(seed: int, t: int, n: int, p: float) -> list[bool]:
    return [float(uniform(seed, Purpose.AVAILABILITY, t, i)) < p for i in range(n)]


def arrives_by_hand(seed, t, exchange, sender, receiver, p) -> bool:
    return float(uniform(seed, Purpose.DELIVERY, t, exchange, sender, receiver)) < p


def test_dpsgd_under_churn_and_loss_matches_a_per_node_loop_and_keeps_the_mean():
    """30% of nodes offline per round and 10% message loss: offline nodes do not train;
    an edge is mixed only when both its messages arrived, with Metropolis-Hastings
    weights of the live subgraph; the mean model is preserved round after round."""
    n, rounds = 10, 6
    config = small_config(
        nodes=n,
        rounds=rounds,
        **{"topology.kind": "regular", "topology.degree": 4, "optimizer.momentum": 0.5},
        **CHURN,
    )
    sim = Simulation.build(config)
    loop = LoopPopulation(sim.model.template, sim.population.params.matrix(), config.optimizer)
    neighbours = [sorted(sim.topology.graph.neighbors(i)) for i in range(n)]
    batch, cursor = config.data.batch_size, [0] * n
    offline_rounds = 0
    for t in range(rounds):
        online = online_by_hand(config.seed, t, n, 0.7)
        offline_rounds += n - sum(online)
        for i in range(n):  # offline nodes do not train (nor draw data)
            if online[i]:
                index = sample_batch_indices(
                    sim.node_data, torch.tensor([i]), torch.tensor([cursor[i]]), batch, config.seed
                )[0]
                loop.step(i, sim.dataset.x_train[index], sim.dataset.y_train[index])
                cursor[i] += batch

        def arrives(j, i, t=t, online=online):  # j -> i, the round's first exchange
            return online[j] and online[i] and arrives_by_hand(config.seed, t, 1, j, i, 0.9)

        live = [[j for j in neighbours[i] if arrives(j, i) and arrives(i, j)] for i in range(n)]
        rows = loop.rows()
        mixed = rows.clone()
        for i in range(n):
            weights = {j: 1 / (1 + max(len(live[i]), len(live[j]))) for j in live[i]}
            mixed[i] = (1 - sum(weights.values())) * rows[i]
            for j, w in weights.items():
                mixed[i] += w * rows[j]
        before = sim.population.params.matrix()  # (after last round's mixing)
        sim.step(t)
        loop.load_rows(mixed)
        torch.testing.assert_close(sim.population.params.matrix(), mixed, rtol=1e-5, atol=2e-6)
        # the mixing kept the mean of what training produced
        torch.testing.assert_close(mixed.double().mean(0), rows.double().mean(0), atol=1e-6, rtol=0)
        assert not torch.equal(before, sim.population.params.matrix())
    assert offline_rounds > 0.15 * n * rounds  # the condition did happen
    assert sim.population.state.cursor.tolist() == cursor


def test_mean_is_preserved_by_mixing_at_scale():
    """256 nodes on a 6-regular graph, 30% offline, 10% loss: a gossip step alone leaves
    the mean model unchanged to float64 rounding of float32 sums."""
    config = small_config(
        nodes=256,
        rounds=5,
        protocol="dpsgd",
        **{"topology.kind": "regular", "topology.degree": 6, "data.synthetic.samples": 3000},
        **CHURN,
    )
    sim = Simulation.build(config)
    params = sim.population.params
    params.copy_from_matrix(torch.randn(256, params.num_params))  # distinct models
    for t in range(5):
        sim.network.begin_round(t)
        before = params.matrix().double().mean(0)
        received = sim.network.gossip()
        assert received.sum() < 256 * 6  # something was lost
        torch.testing.assert_close(params.matrix().double().mean(0), before, atol=2e-7, rtol=0)


def test_attempted_equals_delivered_plus_lost_per_node_round_and_in_total():
    sections = {
        "dpsgd": "dpsgd",
        "periodic": "{name: periodic, period: 2}",
        "dynamic": "{name: dynamic, delta: 0.01}",
        "dynamic_gossip": "{name: dynamic_gossip, delta: 0.0}",
    }
    for protocol, section in sections.items():
        result = gossamer.run(
            small_config(
                nodes=12, rounds=10, protocol=section, **CHURN, **{"energy.link": "wavelan"}
            )
        )
        totals, nodes, rounds = result.totals, result.nodes, result.rounds
        assert totals["messages"] == totals["messages_delivered"] + totals["messages_lost"]
        assert totals["messages_lost"] > 0, protocol
        assert rounds["messages"].sum() == totals["messages"]
        assert (rounds["messages"] == rounds["messages_delivered"] + rounds["messages_lost"]).all()
        node_lost = nodes["messages_lost"].sum()
        coordinator_lost = totals["messages_lost"] - node_lost
        assert coordinator_lost >= 0 and (
            protocol in ("periodic", "dynamic") or not coordinator_lost
        )
        assert (nodes["bytes_lost"] <= nodes["bytes_sent"]).all()
        if protocol in ("dpsgd", "dynamic_gossip"):  # node to node: what arrived was received
            assert nodes["messages_received"].sum() == totals["messages_delivered"]
        # energy: senders pay for what they sent, receivers for what they received
        message = result.summary["message_bytes"]
        packets = math.ceil(message / 1500)
        per_sent, per_received = message * 1.9e-6 + packets * 420e-6, 0.0
        per_received = message * 0.42e-6 + packets * 330e-6
        if protocol in ("dpsgd", "dynamic_gossip"):  # every message is a model message
            expected = nodes["messages_sent"] * per_sent + nodes["messages_received"] * per_received
            np.testing.assert_allclose(nodes["communication_joules"], expected, rtol=1e-9)


def test_a_network_with_every_condition_met_equals_the_ideal_one():
    """Churn and loss switched on with probability one run the general code path (live
    subgraph weights, per-edge copies, keyed draws) and give the ideal numbers: bit for
    bit, except event-triggered gossip, whose per-edge mixing sums in another order."""
    always = {"network.availability": "{kind: bernoulli, online: 1.0}"}
    for protocol in ("dpsgd", "periodic", "{name: dynamic, delta: 0.05}", "dynamic_gossip"):
        ideal = gossamer.run(small_config(protocol=protocol, rounds=6))
        general = gossamer.run(small_config(protocol=protocol, rounds=6, **always))
        for key in ("test_loss_mean", "consensus_distance", "avg_model_loss"):
            if protocol == "dynamic_gossip":
                np.testing.assert_allclose(general.metrics[key], ideal.metrics[key], rtol=1e-6)
            else:
                assert np.array_equal(general.metrics[key], ideal.metrics[key]), (protocol, key)
        assert general.totals["messages"] == ideal.totals["messages"]
        assert general.totals["messages_lost"] == 0


def test_offline_nodes_neither_train_nor_spend_energy_budgets():
    config = small_config(
        nodes=8,
        rounds=12,
        protocol="greedy",
        **{
            "energy.battery_fraction": 4e-8,
            "network.availability": "{kind: bernoulli, online: 0.6}",
        },
    )
    result = gossamer.run(config)
    online = np.array([online_by_hand(config.seed, t, 8, 0.6) for t in range(12)])  # (T, N)
    budget = result.nodes["budget_rounds"]
    expected = [min(int(online[:, i].sum()), budget[i]) for i in range(8)]  # greedy: while it lasts
    assert result.nodes["local_steps"].tolist() == expected
    assert result.rounds["online_nodes"].tolist() == online.sum(1).tolist()


def test_periodic_averages_what_it_received_and_misses_the_offline_nodes():
    config = small_config(
        nodes=8, rounds=1, eval_every=1, protocol="{name: periodic, period: 1}", **CHURN
    )
    sim = Simulation.build(config)
    sim.step(0)  # train the online nodes, then average what arrived
    online = torch.tensor(online_by_hand(config.seed, 0, 8, 0.7))
    up = torch.tensor([arrives_by_hand(config.seed, 0, 1, i, 8, 0.9) for i in range(8)]) & online
    down = torch.tensor([arrives_by_hand(config.seed, 0, 2, 8, i, 0.9) for i in range(8)]) & online
    assert not bool(online.all()) and bool(up.any())
    rows = sim.population.params.matrix()
    adopted = rows[down]
    torch.testing.assert_close(adopted, adopted[:1].expand_as(adopted))
    others = rows[~down]
    assert all(not torch.allclose(row, adopted[0]) for row in others)
    totals = sim.ledger.totals()
    assert totals["messages"] == int(online.sum()) + 8  # uploads by online nodes, 8 sends
    assert totals["messages_delivered"] == int(up.sum()) + int(down.sum())


def test_dynamic_requests_to_offline_nodes_go_unanswered_and_returners_get_the_reference():
    config = small_config(
        nodes=10,
        rounds=30,
        protocol="{name: dynamic, delta: 0.0, augmentation: one}",  # every check violates
        **{"network.availability": "{kind: markov, mean_online: 3, mean_offline: 2}"},
    )
    sim = Simulation.build(config)
    full_syncs = 0
    for t in range(30):
        stale_before = sim.protocol.stale.clone()
        totals = sim.ledger.totals()
        sim.step(t)
        online = sim.network.online
        returners = stale_before & online
        if returners.any():  # they now hold the reference
            rows = sim.population.params.matrix()
            reference = sim.protocol.reference.matrix()[0]
            stats = sim.ledger.per_round[-1]
            if not stats["full_syncs"] and not stats["partial_syncs"]:
                for i in returners.nonzero().squeeze(1).tolist():
                    assert torch.equal(rows[i], reference)
        stats = sim.ledger.per_round[-1]
        full_syncs += stats["full_syncs"]
        if stats["full_syncs"]:  # the reference is the mean of the online nodes' models
            assert torch.equal(sim.protocol.stale, ~online)
            lost = sim.ledger.totals()["messages_lost"] - totals["messages_lost"]
            assert lost >= int((~online).sum())  # at least the unanswered requests
    assert full_syncs > 3


def test_dynamic_gossip_under_loss_mixes_with_the_copies_each_node_holds():
    """Per-node loop: each node keeps the last model received from each neighbour; a lost
    message leaves the copy stale."""
    n, gamma = 6, 0.5
    config = small_config(
        nodes=n,
        rounds=5,
        protocol=f"{{name: dynamic_gossip, delta: 0.0, consensus_step: {gamma}}}",
        **{"network.delivery": 0.6},
    )
    sim = Simulation.build(config)
    w = torch.tensor(sim.topology.dense(), dtype=torch.float32)
    neighbours = [sorted(sim.topology.graph.neighbors(i)) for i in range(n)]
    start = sim.population.params.matrix()[0]
    copies = {(i, j): start.clone() for i in range(n) for j in neighbours[i]}
    last_sent = sim.population.params.matrix()
    for t in range(5):
        sim.population.train(1, round=t)
        x = sim.population.params.matrix()
        sim.network.begin_round(t)
        sim.ledger.begin_round()
        sim.protocol.communicate(t)
        last_sent = x.clone()  # delta 0: every node that moved sends
        for i in range(n):
            for j in neighbours[i]:
                if arrives_by_hand(config.seed, t, 1, j, i, 0.6):
                    copies[i, j] = x[j].clone()
        expected = x.clone()
        for i in range(n):
            total = w[i, i] * last_sent[i] + sum(w[i, j] * copies[i, j] for j in neighbours[i])
            expected[i] = x[i] + gamma * (total - last_sent[i])
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ availability models


def test_availability_models_by_their_statistics():
    enough = {"data.synthetic.samples": 4000}  # a training sample a node (config.work)
    config = small_config(
        nodes=2000, **{"network.availability": "{kind: bernoulli, online: 0.3}"}, **enough
    )
    share = Availability(config.network.availability, 2000, 0).online(5).float().mean()
    assert abs(float(share) - 0.3) < 0.03
    markov = small_config(
        nodes=400,
        **{"network.availability": "{kind: markov, mean_online: 8, mean_offline: 2}"},
        **enough,
    ).network.availability
    model = Availability(markov, 400, 1)
    states = torch.stack([model.online(t) for t in range(300)])  # (T, N)
    assert abs(float(states.float().mean()) - 0.8) < 0.03  # 8 / (8 + 2)
    changes = (states[1:] != states[:-1]).sum()
    # each node leaves its online state w.p. 1/8 and its offline state w.p. 1/2
    expected = 299 * 400 * (0.8 / 8 + 0.2 / 2)
    assert abs(int(changes) - expected) < 0.1 * expected
    again = Availability(markov, 400, 1)
    assert torch.equal(again.online(150), states[150])  # a pure function of seed and round
    daily = small_config(
        nodes=3000,
        **{"network.availability": "{kind: daily, period: 10, low: 0.1, high: 0.9, peak: 0.5}"},
        **enough,
    ).network.availability
    model = Availability(daily, 3000, 2)
    assert model.daily_share(5) == pytest.approx(0.9) and model.daily_share(0) == pytest.approx(0.1)
    assert abs(float(model.online(5).float().mean()) - 0.9) < 0.03


def test_trace_files_csv_and_fedscale_by_hand(tmp_path):
    csv_file = tmp_path / "online.csv"
    csv_file.write_text("node,start,end\n0,0,2\n1,1,3\n2,0,10\n0,5,6\n")
    config = small_config(
        nodes=3,
        **{"network.availability": f"{{kind: trace, path: {csv_file}}}"},
    ).network.availability
    model = Availability(config, 3, 0)
    masks = [model.online(t).tolist() for t in range(7)]
    assert masks == [
        [True, False, True],
        [True, True, True],
        [False, True, True],
        [False, False, True],
        [False, False, True],
        [True, False, True],
        [False, False, True],
    ]
    clients = {  # FedScale: online in [active, inactive], time modulo finish_time
        "7": {"active": [0, 50], "inactive": [10, 60], "finish_time": 100, "duration": 1},
        "3": {"active": [20], "inactive": [30], "finish_time": 40, "duration": 1},
    }
    for name, write in (
        ("trace.json", lambda p: p.write_text(json.dumps(clients))),
        (
            "trace.pkl",
            lambda p: p.write_bytes(pickle.dumps({int(k): v for k, v in clients.items()})),
        ),
    ):
        path = tmp_path / name
        write(path)
        section = small_config(
            nodes=2,
            **{
                "topology.kind": "complete",
                "network.availability": f"{{kind: trace, path: {path}, seconds_per_round: 10}}",
            },
        ).network.availability
        model = Availability(section, 2, 0)
        # node 0 is client 3 (sorted ids), node 1 is client 7; round t is time 10 t
        got = [model.online(t).tolist() for t in (0, 1, 2, 3, 5, 6, 7)]
        assert got == [
            [False, True],  # t=0: 3 at 0 (mod 40) no; 7 at 0 yes
            [False, True],  # t=10: 7 at 10 (closed interval) yes
            [True, False],  # t=20
            [True, False],  # t=30 (closed)
            [False, True],  # t=50: 3 at 10; 7 at 50
            [True, True],  # t=60: 3 at 20; 7 at 60
            [True, False],  # t=70: 3 at 30; 7 at 70
        ], name


def test_a_malicious_trace_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"0": Exploit()}))
    config = small_config(
        nodes=1,
        **{"network.availability": f"{{kind: trace, path: {path}}}", "topology.kind": "complete"},
    )
    with pytest.raises(DataError, match="refers to the Python object"):
        gossamer.run(config)
    assert not marker.exists()


def test_bad_network_settings_are_named():
    with pytest.raises(ConfigError, match="network.delivery: input should be greater than 0"):
        small_config(**{"network.delivery": 0})
    with pytest.raises(ConfigError, match="kind 'trace' needs path"):
        small_config(**{"network.availability.kind": "trace"})
    with pytest.raises(ConfigError, match="expected an existing trace file"):
        small_config(**{"network.availability": "{kind: trace, path: /no/such.csv}"})
    with pytest.raises(ConfigError, match=r"daily: low \(0.9\) must not exceed high"):
        small_config(**{"network.availability": "{kind: daily, low: 0.9, high: 0.5}"})


@pytest.mark.parametrize("protocol", registered_names("protocol"))
def test_resumed_under_churn_and_loss_equals_uninterrupted(tmp_path, protocol):
    """The availability chain's state and the per-edge copies survive a checkpoint."""
    network = {
        "network.availability": "{kind: markov, mean_online: 4, mean_offline: 2}",
        "network.delivery": 0.8,
    }
    config = small_config(**RICH, **network, protocol=protocol)
    gossamer.run(config, out=tmp_path / "whole")
    with pytest.raises(RunInterrupted):
        gossamer.run(config, out=tmp_path / "cut", progress=stop_at(17))
    gossamer.resume(tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    lost = gossamer.load(tmp_path / "whole").summary["totals"]["messages_lost"]
    assert lost > 0 or protocol == "nosync"


# ------------------------------------------------------------------ simulated time


def test_round_duration_by_hand_from_device_profiles():
    """A round lasts as long as its slowest node: samples x seconds per sample (3 x the
    model's MobileNetV2-scaled inference time) plus bytes over the link plus latency."""
    from gossamer.sim.energy import BUILTIN_DEVICES, MOBILENET_V2_PARAMS

    config = small_config(rounds=3, eval_every=1)  # ring of 6, batch 5, one local step
    result = gossamer.run(config)
    params = result.summary["model"]["parameters"]
    message = result.summary["message_bytes"]
    per_node = []
    for i in range(6):  # round robin over the four built-in phones
        device = BUILTIN_DEVICES[i % 4]
        train = 5 * 3 * device.inference_ms / 1000 * params / MOBILENET_V2_PARAMS
        traffic = 2 * message * 8 / 10e6 + 2 * message * 8 / 50e6  # 2 neighbours each way
        per_node.append(train + traffic + 0.050)
    assert result.rounds["round_seconds"].tolist() == pytest.approx([max(per_node)] * 3)
    assert result.metrics["simulated_seconds"].tolist() == pytest.approx(
        [0, max(per_node), 2 * max(per_node), 3 * max(per_node)]
    )
    assert result.totals["simulated_seconds"] == pytest.approx(3 * max(per_node))


def test_a_deadline_keeps_stragglers_from_training():
    from gossamer.sim.energy import BUILTIN_DEVICES

    # the Poco X3 (76 ms a MobileNetV2 inference) is far the slowest of the four phones
    times = [d.inference_ms for d in BUILTIN_DEVICES]
    slowest = max(times)
    config = small_config(nodes=8, rounds=4, **{"model.hidden": "[300]"})
    fast = gossamer.run(config)
    per_ms = fast.summary["model"]["parameters"] / 3_504_872 * 3 * 5 / 1000  # s per ms
    deadline = (sorted(times)[-2] + slowest) / 2 * per_ms  # between the two slowest
    late = gossamer.run(
        small_config(nodes=8, rounds=4, **{"model.hidden": "[300]", "network.deadline": deadline})
    )
    slow = [BUILTIN_DEVICES[i % 4].inference_ms == slowest for i in range(8)]
    assert late.nodes["local_steps"].tolist() == [0 if s else 4 for s in slow]
    assert fast.nodes["local_steps"].tolist() == [4] * 8
    assert late.totals["simulated_seconds"] < fast.totals["simulated_seconds"]


def test_a_fedscale_capacity_trace_sets_speeds_and_bandwidths(tmp_path):
    path = tmp_path / "capacity.json"
    clients = {str(k): {"computation": 10.0 * (k + 1), "communication": 1000.0} for k in range(6)}
    path.write_text(json.dumps(clients))
    result = gossamer.run(small_config(rounds=2, eval_every=1, **{"network.capacity": str(path)}))
    message = result.summary["message_bytes"]
    # node 5: 60 ms an inference, x3 for training, 5 samples; 4 messages at 1,000 kbit/s
    slowest = 3 * 60.0 / 1000 * 5 + 4 * message * 8 / 1e6 + 0.050
    assert result.rounds["round_seconds"].tolist() == pytest.approx([slowest, slowest])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": {"computation": 1.0}}))
    with pytest.raises(DataError, match="lacks numbers computation and communication"):
        gossamer.run(
            small_config(nodes=1, **{"network.capacity": str(bad), "topology.kind": "complete"})
        )


def test_time_to_accuracy_by_hand():
    from gossamer.results import comparison_table
    from gossamer.results.comparison import seconds_to_accuracy

    metrics = {
        "test_accuracy_mean": np.array([0.1, 0.5, 0.85, 0.9]),
        "simulated_seconds": np.array([0.0, 10.0, 20.0, 30.0]),
    }
    assert seconds_to_accuracy(metrics, 0.8) == 20.0
    assert math.isnan(seconds_to_accuracy(metrics, 0.95))
    a = gossamer.run(small_config(rounds=4))
    b = gossamer.run(small_config(rounds=4, protocol="nosync"))
    table = comparison_table({"a": a, "b": b})
    target = 0.9 * max(a.final["test_accuracy_mean"], b.final["test_accuracy_mean"])
    for column, result in zip(("a", "b"), (a, b), strict=True):
        index = list(table["variant"]).index(column)
        assert table["seconds_to_target_accuracy"][index] == seconds_to_accuracy(
            result.metrics, target
        )


def test_link_reliability_by_device_class():
    """Messages touching a Poco X3 (every fourth node) arrive with probability 0.5, the
    others always: a message's chance is delivery x sender's link x receiver's link."""
    config = small_config(nodes=8, rounds=6, **{"network.link_delivery": "{Xiaomi Poco X3: 0.5}"})
    result = gossamer.run(config)
    poco = [i % 4 == 3 for i in range(8)]
    expected_lost = [0] * 8
    sim = Simulation.build(config)
    neighbours = [sorted(sim.topology.graph.neighbors(i)) for i in range(8)]
    for t in range(6):
        for i in range(8):
            for j in neighbours[i]:  # i -> j, the round's first exchange
                p = 0.5 ** (poco[i] + poco[j])
                if not arrives_by_hand(config.seed, t, 1, i, j, p):
                    expected_lost[i] += 1
    assert result.nodes["messages_lost"].tolist() == expected_lost
    assert sum(expected_lost) > 0
    with pytest.raises(ConfigError, match="network.link_delivery: unknown device 'Nokia'"):
        Simulation.build(small_config(**{"network.link_delivery": "{Nokia: 0.5}"}))


def test_bytes_add_up_per_round():
    result = gossamer.run(small_config(nodes=10, rounds=6, **CHURN))
    rounds, totals = result.rounds, result.totals
    assert (rounds["bytes_sent"] == rounds["bytes_received"] + rounds["bytes_lost"]).all()
    assert rounds["bytes_lost"].sum() == totals["bytes_lost"] > 0
    assert rounds["bytes_received"].sum() == totals["bytes_received"]


def test_dynamic_averaging_asks_each_node_at_most_once_a_round():
    config = small_config(
        nodes=20,
        rounds=12,
        protocol="{name: dynamic, delta: 0.0, augmentation: one}",
        **{"network.availability": "{kind: bernoulli, online: 0.5}"},
    )
    result = gossamer.run(config)
    assert (result.rounds["requested"] <= 20).all()
    assert result.rounds["full_syncs"].sum() > 0


def test_skiptrain_counts_only_the_nodes_that_trained():
    from gossamer.sim.energy import BUILTIN_DEVICES

    slowest = max(d.inference_ms for d in BUILTIN_DEVICES)
    base = small_config(nodes=8, rounds=2, eval_every=1, protocol="skiptrain")
    params = gossamer.run(base).summary["model"]["parameters"]
    deadline = slowest * 0.9 * params / 3_504_872 * 3 * 5 / 1000  # the Poco X3 is too slow
    late = gossamer.run(
        small_config(
            nodes=8, rounds=2, eval_every=1, protocol="skiptrain", **{"network.deadline": deadline}
        )
    )
    assert late.rounds["trained_nodes"].tolist() == [6, 0]  # nodes 3 and 7 straggle; round 2 syncs


def test_bad_trace_and_capacity_files_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": {"active": ["x"], "inactive": [1], "finish_time": 2}}))
    with pytest.raises(DataError, match="client '0' lacks numeric active"):
        gossamer.run(
            small_config(
                nodes=1,
                **{
                    "topology.kind": "complete",
                    "network.availability": f"{{kind: trace, path: {bad}}}",
                },
            )
        )
    short = tmp_path / "short.csv"
    short.write_text("node,start,end\n0,1\n")
    with pytest.raises(DataError, match="line 2: expected an integer node"):
        gossamer.run(
            small_config(
                nodes=1,
                **{
                    "topology.kind": "complete",
                    "network.availability": f"{{kind: trace, path: {short}}}",
                },
            )
        )
    nan = tmp_path / "nan.json"
    nan.write_text('{"0": {"computation": NaN, "communication": 5}}')
    with pytest.raises(DataError, match="speeds must be positive numbers"):
        gossamer.run(
            small_config(nodes=1, **{"topology.kind": "complete", "network.capacity": str(nan)})
        )
    with pytest.raises(ConfigError, match="network.capacity: expected an existing file"):
        small_config(**{"network.capacity": str(tmp_path / "missing.json")})
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x04junk that is not a pickle")
    with pytest.raises(DataError, match="not a readable FedScale trace"):
        gossamer.run(
            small_config(nodes=1, **{"topology.kind": "complete", "network.capacity": str(junk)})
        )
