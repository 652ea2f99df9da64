"""CHOCO-SGD: decentralized SGD with compressed communication (Koloskova et al. 2019)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gossamer.config import ProtocolConfig
from gossamer.sim.protocols.base import Context, Protocol, register_protocol
from gossamer.sim.stacked import StackedTensors


class ChocoConfig(ProtocolConfig):
    name: Literal["choco"] = "choco"
    public_models = True
    consensus_step: float = Field(
        0.5, gt=0, le=1, description="gamma: the consensus step size of Algorithm 1"
    )
    public_start: Literal["zero", "model"] = Field(
        "zero", description="x_hat at the start: zero (Algorithm 1) or the common start model"
    )


@register_protocol(ChocoConfig)
class ChocoSGD(Protocol):
    """CHOCO-SGD (Koloskova, Stich, Jaggi, "Decentralized Stochastic Optimization and
    Gossip Algorithms with Compressed Communication", ICML 2019, Algorithm 1;
    Koloskova, Lin, Stich, Jaggi, "Decentralized Deep Learning with Arbitrary
    Communication Compression", ICLR 2020).

    Each node i keeps a public copy x_hat_i of its model, which its neighbours hold
    too. Every round, after the local step(s) ``x_i <- x_i - lr g_i`` (line 3):

    4. q_i = C(x_i - x_hat_i)                        (``protocol.compression``)
    5-7. send q_i to the neighbours; everyone holding x_hat_j adds q_j
    8. x_i <- x_i + gamma sum_j W_ij (x_hat_j - x_hat_i)

    The public copies are the network's public models (``gossamer.sim.network.public``):
    one (n, P) tensor on an ideal network, where every neighbour's copy equals the
    owner's, and per-edge copies under conditions. x_hat starts at zero as in
    Algorithm 1 (``public_start: model``: at the common start model, which every node
    knows, which spares the first rounds of sending the model itself; our option).
    Without compression q_i is sent as the model itself (x_hat_i <- x_i), and with
    gamma 1 the round is D-PSGD's. The step size gamma must shrink with the
    compression's quality (the paper's Theorem 2 takes gamma of order delta^2 omega,
    omega the contraction of C); it is left to the config (default 0.5).

    **Churn and loss** (``network:``): an offline node neither trains, sends nor
    mixes, so its x_hat does not move and its neighbours' copies stay right. A lost
    q_j leaves the receiver's copy of x_hat_j off by q_j for good: the paper assumes
    reliable links, and CHOCO-SGD has no resynchronization, so the copies no longer
    sum to the owners' x_hat and the network mean is no longer preserved
    (``tests/test_choco.py`` measures both).
    """

    def __init__(self, config: ChocoConfig, context: Context):
        super().__init__(config, context)
        start = None
        if config.public_start == "zero":
            params = self.population.params
            start = StackedTensors.zeros(params.shapes, 1, params.device)
        self.network.start_public(start)

    def communicate(self, round: int) -> dict[str, float]:
        self.network.publish(self.network.online)
        self.network.consensus(self.config.consensus_step)
        return {}
