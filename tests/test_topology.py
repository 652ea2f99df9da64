"""Graphs, mixing weights, spectral gaps and the gossip step."""

from __future__ import annotations

import math
import re
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from gossamer.config import TOPOLOGY_KINDS, ConfigError, TopologyConfig, load_config
from gossamer.config.schema import PER_ROUND_KINDS, RANDOM_KINDS, TOPOLOGIES
from gossamer.sim import topology
from gossamer.sim.timevarying import TimeVarying
from gossamer.sim.topology import Mixer, build_topology, with_weights
from reference import loop_gossip

# DecentralizePy edge list from the SkipTrain artifacts (github sacs-epfl/SkipTrain)
REFERENCE_GRAPH = Path(__file__).parents[1] / "examples" / "topologies" / "256_nodes_6_regular.txt"


def topo(kind, nodes=16, seed=0, **kw):
    return build_topology(TopologyConfig(kind=kind, **kw), nodes, seed)


@pytest.mark.parametrize(
    ("kind", "kw", "degrees"),
    [
        ("complete", {}, {15}),
        ("ring", {}, {2}),
        ("torus", {}, {4}),
        ("regular", {"degree": 5}, {5}),
        ("exponential", {}, None),
        ("small_world", {"degree": 4, "rewire": 0.2}, None),
        ("erdos_renyi", {"p": 0.5}, None),
    ],
)
def test_graph_kinds_are_connected_with_expected_degrees(kind, kw, degrees):
    t = topo(kind, **kw)
    assert t.num_nodes == 16 and nx.is_connected(t.graph)
    if degrees is not None:
        assert set(t.degree.tolist()) == degrees
    assert t.doubly_stochastic and 0 < t.spectral_gap <= 1


def test_exponential_graph_links_powers_of_two():
    t = topo("exponential", nodes=16)
    assert sorted(t.graph.neighbors(0)) == [1, 2, 4, 8, 12, 14, 15]  # 0 +- 2^j mod 16


def test_metropolis_hastings_weights_by_hand_on_a_star():
    # star: centre 0 with degree 3, leaves degree 1: W_0j = 1/(1+3), W_jj = 3/4, W_00 = 1/4
    w = with_weights(nx.star_graph(3), "metropolis_hastings").dense()
    expected = np.array(
        [[0.25, 0.25, 0.25, 0.25], [0.25, 0.75, 0, 0], [0.25, 0, 0.75, 0], [0.25, 0, 0, 0.75]]
    )
    assert np.allclose(w, expected)


def test_uniform_and_max_degree_weights_by_hand():
    path = nx.path_graph(3)  # degrees 1, 2, 1
    with pytest.warns(UserWarning, match="not doubly stochastic"):
        uniform = with_weights(path, "uniform").dense()
    assert np.allclose(uniform, [[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
    maxdeg = with_weights(path, "max_degree").dense()
    assert np.allclose(maxdeg, [[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])


@pytest.mark.parametrize("n", [5, 8, 13])
def test_ring_spectral_gap_matches_closed_form(n):
    # MH on a ring: W = I/3 + (shift + shift^T)/3, eigenvalues 1/3 + 2/3 cos(2 pi k / n)
    eig = [1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / n) for k in range(n)]
    slem = sorted(abs(e) for e in eig)[-2]
    assert topo("ring", nodes=n).spectral_gap == pytest.approx(1 - slem)
    assert topo("complete", nodes=n).spectral_gap == pytest.approx(1.0)


def test_reference_256_node_6_regular_file_loads():
    t = build_topology(TopologyConfig(kind="file", path=REFERENCE_GRAPH), 256, 0)
    assert t.num_nodes == 256 and set(t.degree.tolist()) == {6}
    assert t.graph.number_of_edges() == 768
    assert np.allclose(t.weights[t.rows != t.cols], 1 / 7)


def test_edge_list_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "g.txt"
    bad.write_text("4\n0 1\n1 x\n")
    with pytest.raises(ConfigError, match=r"g.txt' line 3: expected two node ids"):
        build_topology(TopologyConfig(kind="file", path=bad), 4, 0)
    bad.write_text("5\n0 1\n")
    with pytest.raises(ConfigError, match=r"has 5 nodes; got nodes = 4"):
        build_topology(TopologyConfig(kind="file", path=bad), 4, 0)
    bad.write_text("4\n0 1\n2 3\n")
    with pytest.raises(ConfigError, match=r"disconnected \(2 components\)"):
        build_topology(TopologyConfig(kind="file", path=bad), 4, 0)
    with pytest.raises(ConfigError, match="topology.path: expected an existing file"):
        load_config({"topology": {"kind": "file", "path": str(tmp_path / "none.txt")}})


def test_impossible_graphs_are_rejected_before_work():
    with pytest.raises(ConfigError, match="topology.degree"):
        load_config({"nodes": 5, "topology": {"kind": "regular", "degree": 3}})
    with pytest.raises(ConfigError, match="topology.rows"):
        load_config({"nodes": 13, "topology": {"kind": "torus"}})
    with pytest.raises(ConfigError, match="disconnected"):
        topo("erdos_renyi", nodes=40, p=0.01)


# ------------------------------------------------------------------ gossip


def _neighbours(t):
    return [sorted(t.graph.neighbors(i)) for i in range(t.num_nodes)]


@pytest.mark.parametrize("gather", [False, True], ids=["product", "gather"])
@pytest.mark.parametrize("kind", ["ring", "regular", "erdos_renyi", "torus"])
def test_mixing_equals_loop_over_neighbour_state_dicts(kind, gather, monkeypatch):
    """Both CPU kernels (MKL's CSR product; the weighted gather of N > 2,048 nodes)."""
    monkeypatch.setattr(topology, "_GATHER_MIN_NODES", 0 if gather else 2048)
    t = topo(kind, nodes=16, degree=3 if kind == "regular" else 4, p=0.3)
    deg = t.degree
    gen = torch.Generator().manual_seed(0)
    sds = [
        {"w": torch.randn(5, 3, generator=gen), "b": torch.randn(7, generator=gen)}
        for _ in range(16)
    ]

    def mh(i, j):  # Metropolis-Hastings written out, independent of with_weights
        if i != j:
            return 1 / (1 + max(deg[i], deg[j]))
        return 1 - sum(1 / (1 + max(deg[i], deg[k])) for k in t.graph.neighbors(i))

    expected = loop_gossip(sds, _neighbours(t), mh)
    stacked = torch.stack([torch.cat([sd["w"].flatten(), sd["b"]]) for sd in sds])
    mixer = Mixer(t, torch.device("cpu"))
    assert mixer.gather == gather
    mixer.block = 4  # force several column blocks, one of them partial
    mixer.apply_([stacked[:, :10], stacked[:, 10:]])  # two parameter blocks, stacked in place
    for i, sd in enumerate(expected):
        torch.testing.assert_close(stacked[i], torch.cat([sd["w"].flatten(), sd["b"]]))


def test_mixing_preserves_the_network_mean():
    t = topo("small_world", nodes=30, degree=4)
    x = torch.randn(30, 1000, dtype=torch.float32)
    mean = x.double().mean(0)
    Mixer(t, torch.device("cpu")).apply_([x])
    assert torch.allclose(x.double().mean(0), mean, atol=1e-6)


def test_one_step_on_complete_graph_reaches_consensus():
    x = torch.randn(9, 50)
    mean = x.mean(0)
    Mixer(topo("complete", nodes=9, weights="uniform"), torch.device("cpu")).apply_([x])
    assert torch.allclose(x, mean.expand_as(x), atol=1e-6)


def test_repeated_gossip_converges_at_the_spectral_gap_rate():
    t = topo("ring", nodes=10)
    x = torch.randn(10, 200, dtype=torch.float32)
    mixer = Mixer(t, torch.device("cpu"))
    before = (x - x.mean(0)).norm()
    for _ in range(20):
        mixer.apply_([x])
    after = (x - x.mean(0)).norm()
    assert after <= before * (1 - t.spectral_gap) ** 20 * 1.0001


# ---------------------------------------------------------------- the one list of kinds


def test_every_topology_kind_has_one_builder_and_a_place_in_the_docs():
    """TOPOLOGIES (gossamer.config.schema) is the one list of kinds: the config's
    choices and `gossamer list` derive from it; each kind has exactly one builder (a
    fixed graph, or a graph per round) and the docs name each kind."""
    fixed = {name for name, kind in TOPOLOGIES.items() if not kind.per_round}
    assert set(topology.GRAPHS) == fixed
    assert set(TimeVarying.ROUND_GRAPHS) == set(PER_ROUND_KINDS) == set(TOPOLOGIES) - fixed
    assert set(TopologyConfig.model_fields["kind"].annotation.__args__) == set(TOPOLOGIES)
    assert {name: kind.description for name, kind in TOPOLOGIES.items()} == TOPOLOGY_KINDS
    for name in fixed - {"file"}:
        graph = topology.build_graph(TopologyConfig(kind=name), 16, seed=0)
        assert sorted(graph.nodes) == list(range(16)), name
    table = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    named = {  # the names in backquotes in each topology row of the docs' table
        match.group(1): set(re.findall(r"`([a-z_]+)`", match.group(2)))
        for match in re.finditer(r"^\| `(topology\.[a-z_]+)` \| [^|]* \| (.*) \|$", table, re.M)
    }
    assert named["topology.kind"] - {"fanout"} == set(TOPOLOGIES)  # fanout: a key it names
    assert named["topology.resample_every"] & set(TOPOLOGIES) == set(RANDOM_KINDS)
    with pytest.raises(ConfigError, match=r"need a random kind \(regular, erdos_renyi, small_wo"):
        load_config(None, ["topology.kind=ring", "topology.resample_every=2"])
