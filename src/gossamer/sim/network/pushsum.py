"""Push-sum: gossip on directed graphs that keeps the network's average.

Push-sum (Kempe, Dobra, Gehrke, FOCS 2003), as Stochastic Gradient Push uses it
(Assran, Loizou, Ballas, Rabbat, ICML 2019, Algorithm 1): node i holds a numerator
x_i and a weight w_i; each round it keeps a share ``1 / (1 + d_i)`` of both and sends
one share to each of its d_i out-neighbours of the round, and every node sums what it
kept and what arrived. The mixing matrix is column stochastic, so the sums of x and of
w over all nodes are kept, and ``z_i = x_i / w_i`` (the de-biased model, what the node
trains and is evaluated on) converges to the average on any strongly connected
sequence of directed graphs, where D-PSGD's row-stochastic averaging is biased.

A share sent to an offline node, or lost, is lost mass: x and w lose it alike, so
``z`` stays a weighted average but the network's average drifts. With
``acknowledgements`` each delivered share is acknowledged (a header-only message
back, which we let arrive: our simplification), and a sender that gets no
acknowledgement keeps the share itself: both sums are then kept exactly, at the price
of one control message per delivered share.
"""

from __future__ import annotations

import numpy as np
import torch

from gossamer.sim.accounting import HEADER_BYTES

#: A push-sum message carries the weight w_i's share too, as a float64.
WEIGHT_BYTES = 8


class PushSum:
    """The push-sum primitive of :class:`~gossamer.sim.network.Network`."""

    def push(self, weight: torch.Tensor, acknowledgements: bool = False) -> torch.Tensor:
        """One push-sum step on the round's graph: the models (this rank's rows of z,
        de-biased) become ``x / w`` after x = w z and w are mixed as above.

        Args:
            weight: (N,) float64 push-sum weights w of every node (replicated).
            acknowledgements: senders keep the shares that were not delivered.
        Returns:
            (N,) float64 the new weights.
        """
        graph = self.schedule.at(self.round) if self.schedule is not None else self._static
        attempted = self.online[graph.sender]  # (E,) every online node sends its shares
        message_bytes = self.message_bytes + WEIGHT_BYTES
        arrived = self._send(attempted, message_bytes, graph)
        n = self.num_nodes
        sender = graph.sender.numpy()
        out_degree = np.bincount(sender[attempted.numpy()], minlength=n)
        share = 1.0 / (1.0 + out_degree)  # (N,) each node's share, kept and sent
        kept = share.copy()
        if acknowledgements:
            acks = torch.bincount(graph.receiver[arrived], minlength=n)  # each node sends
            back = torch.bincount(graph.sender[arrived], minlength=n)  # each node gets
            self.ledger.record_exchange(acks, back, HEADER_BYTES)
            lost = attempted & ~arrived
            kept += np.bincount(sender[lost.numpy()], minlength=n) * share
        rows = graph.receiver[arrived].numpy()
        cols = sender[arrived.numpy()]
        nodes = np.arange(n)
        rows, cols = np.concatenate([rows, nodes]), np.concatenate([cols, nodes])
        weights = np.concatenate([share[cols[: len(cols) - n]], kept])
        new_weight = torch.zeros(n, dtype=torch.float64)
        new_weight.index_add_(0, torch.as_tensor(rows), torch.as_tensor(weights) * weight[cols])
        device = self.params.device
        local = self.shard.local
        before = local(weight).to(device=device, dtype=torch.float32)[:, None]
        after = local(new_weight).to(device=device, dtype=torch.float32)[:, None]
        self.mixer.set_weights(rows, cols, weights, n)
        for block in self.params.blocks:
            block.mul_(before)  # x = w z
        self.mixer.apply_(self.params.blocks)
        for block in self.params.blocks:
            block.div_(after)  # z = x / w
        return new_weight
