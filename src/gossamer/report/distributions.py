"""Plots of how something is spread over the nodes: final accuracy, the graph, labels."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from gossamer.report.tables import format_number


def node_accuracy(accuracy: np.ndarray) -> Figure:
    """Histogram of the nodes' final test accuracy; dashed: the mean."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(accuracy, bins=min(30, max(5, len(accuracy) // 4)), edgecolor="white")
    ax.axvline(
        float(np.mean(accuracy)),
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"mean {format_number(float(np.mean(accuracy)))}",
    )
    ax.set_xlabel("final test accuracy of a node")
    ax.set_ylabel("nodes")
    ax.legend(fontsize="small")
    return fig


def topology(edges: dict, nodes: int, accuracy: np.ndarray | None) -> Figure:
    """The graph (spring layout), nodes coloured by final accuracy; over 1,000 nodes the
    degree distribution."""
    import networkx as nx

    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.subplots()
    graph = nx.Graph()
    graph.add_nodes_from(range(nodes))
    graph.add_edges_from(zip(edges["u"].tolist(), edges["v"].tolist(), strict=True))
    if nodes > 1000:  # too many to draw legibly: the degree distribution
        degrees = [d for _, d in graph.degree()]
        ax.hist(degrees, bins=30)
        ax.set_xlabel("degree")
        ax.set_ylabel("nodes")
        return fig
    position = nx.spring_layout(graph, seed=0, iterations=50)
    xy = np.array([position[i] for i in range(nodes)])
    segments = xy[np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)]  # (E, 2, 2)
    ax.add_collection(LineCollection(segments, colors="grey", linewidths=0.4, alpha=0.5, zorder=1))
    size = max(8, 400 / np.sqrt(nodes))
    if accuracy is not None and len(accuracy) == nodes:
        points = ax.scatter(*xy.T, c=accuracy, s=size, cmap="viridis", zorder=2)
        fig.colorbar(points, ax=ax, label="final test accuracy", shrink=0.7)
    else:
        ax.scatter(*xy.T, color="tab:blue", s=size, zorder=2)
    ax.set_title(f"{nodes} nodes, {graph.number_of_edges()} edges")
    ax.set_axis_off()
    return fig


def label_distribution(counts: np.ndarray) -> Figure:
    """Stacked bars: how many training samples of each class every node holds."""
    from matplotlib import colormaps

    nodes, classes = counts.shape
    fig = Figure(figsize=(max(6.0, min(14.0, 0.12 * nodes + 3)), 4), layout="constrained")
    ax = fig.subplots()
    colors = colormaps["tab20" if classes > 10 else "tab10"]
    palette = [colors(c % colors.N) for c in range(classes)]
    if nodes <= 64:  # one bar per node
        bottom = np.zeros(nodes)
        for c in range(classes):
            ax.bar(
                np.arange(nodes),
                counts[:, c],
                bottom=bottom,
                width=1.0,
                color=palette[c],
                label=str(c),
                edgecolor="white",
                linewidth=0.3,
            )
            bottom += counts[:, c]
    else:  # many nodes: one filled band per class (steps), cheap to draw
        steps = np.repeat(np.arange(nodes + 1) - 0.5, 2)[1:-1]
        ax.stackplot(
            steps,
            np.repeat(counts.T, 2, axis=1),
            colors=palette,
            labels=[str(c) for c in range(classes)],
            linewidth=0,
        )
    ax.set_xlim(-0.5, nodes - 0.5)
    ax.set_xlabel("node")
    ax.set_ylabel("training samples")
    ax.set_title("label distribution over nodes")
    if classes <= 20:
        ax.legend(
            title="class", fontsize="x-small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0)
        )
    return fig
