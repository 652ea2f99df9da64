"""Random-k sparsification: k coordinates drawn at random; receivers regenerate which."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gossamer.sim.network.compression.base import Compressor, register_compressor
from gossamer.sim.network.compression.top_k import SparsifierConfig
from gossamer.sim.network.message import SparseRows
from gossamer.sim.rng import Purpose, hash32, numpy_generator


class RandomKConfig(SparsifierConfig):
    name: Literal["random_k"] = "random_k"
    unbiased: bool = Field(
        True, description="scale the kept values by P/k so that E[C(v)] = v (else: rand_k)"
    )


def cyclic_windows(doubled: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ``sequence[(starts[i] + j) mod L]``, j < length, of a (L,) sequence given
    written twice (``doubled``, (2L,)): (m, length).

    The windows of the doubled sequence are a strided view, so the only copy is the
    result (no (m, length) index tensor). ``starts`` (m,) int64 in [0, 2L - length].
    """
    return doubled.unfold(0, length, 1).index_select(0, starts)  # (m, length)


def on_device(cache: dict[torch.device, torch.Tensor], device: torch.device) -> torch.Tensor:
    """The tensor cached for the CPU, copied once to ``device`` and kept there."""
    if device not in cache:
        cache[device] = cache[torch.device("cpu")].to(device)
    return cache[device]


@register_compressor(RandomKConfig)
class RandomK(Compressor):
    """Random-k sparsification (Wangni, Wang, Liu, Zhang, "Gradient Sparsification for
    Communication-Efficient Distributed Optimization", NeurIPS 2018; Stich, Cordonnier,
    Jaggi, NeurIPS 2018, Sec. 2): each node sends k distinct coordinates chosen at
    random, over the whole model.

    Which k (our choice, O(k) per node instead of a fresh O(P) draw): one random
    permutation pi of the P coordinates, drawn once from the run's seed; node i in
    exchange ``key`` sends the window ``pi[(b + j) mod P]``, j < k, at the offset
    ``b = hash32(seed, COMPRESSION, *key, i) mod P``. Every coordinate is sent with
    probability k/P (up to the modulo's bias, below P / 2**32). Receivers regenerate
    the window from the seed, the exchange and the sender's id, so only the k float32
    values travel: ``4k`` bytes.

    ``unbiased: true`` scales the kept values by P/k, so E[C(v)] = v (Wangni et al.);
    ``unbiased: false`` keeps them as they are: the contraction rand_k with
    ``E||C(v) - v||^2 = (1 - k/P) ||v||^2`` of CHOCO-SGD's theory (Koloskova, Stich,
    Jaggi, ICML 2019, Sec. 3).
    """

    def __init__(self, config: RandomKConfig, shapes, seed: int):
        super().__init__(config, shapes, seed)
        self.k = max(1, round(config.ratio * self.num_params))
        self.unbiased = config.unbiased  # per instance: the config decides
        self.scale = self.num_params / self.k if config.unbiased else 1.0
        order = torch.from_numpy(
            numpy_generator(seed, Purpose.COMPRESSION).permutation(self.num_params)
        )  # (P,) int64: pi
        self.permutation = {torch.device("cpu"): torch.cat([order, order])}  # (2P,) per device

    def payload_bytes(self) -> int:
        return 4 * self.k

    def temporary_bytes(self, nodes: int) -> int:
        return 2 * nodes * self.num_params * 4  # the matrix, the decoded blocks

    def indices(self, ids: torch.Tensor, key: tuple[int, ...]) -> torch.Tensor:
        """(m, k) the coordinates that nodes ``ids`` (m,) send in exchange ``key``."""
        offsets = hash32(self.seed, Purpose.COMPRESSION, *key, ids) % self.num_params  # (m,)
        return cyclic_windows(on_device(self.permutation, ids.device), offsets, self.k)

    def compress(self, values, ids, key, state):
        x = values.matrix()  # (m, P)
        index = self.indices(ids, key)  # (m, k)
        sent = x.gather(1, index)
        if self.scale != 1.0:
            sent.mul_(self.scale)
        return SparseRows(index, sent, values.shapes)
