"""Per-node training augmentation of image batches: random crop and horizontal flip.

Vectorized over nodes and samples. Sample b of node i's batch, at stream position p
(the node's cursor + b), is cropped at offsets ``floor(u * (2 pad + 1))`` with
``u = uniform(seed, augment, i, p, axis)`` from its zero-padded image, and flipped if
``uniform(seed, augment, i, p, 2) < 0.5``. The draws are a function of (seed, node,
position), so they do not depend on how nodes are chunked. Applied to the stored
(raw) samples before normalization, as torchvision's RandomCrop(padding) and
RandomHorizontalFlip would be.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gossamer.config import AugmentConfig
from gossamer.sim.rng import Purpose, uniform


def augment(
    x: torch.Tensor,
    config: AugmentConfig,
    seed: int,
    nodes: torch.Tensor,
    position: torch.Tensor,
) -> torch.Tensor:
    """Augment a batch x (n, B, C, H, W); ``position`` (n, B) is each sample's stream index."""
    n, batch, _, height, width = x.shape
    keys = (nodes[:, None], position)
    if config.crop:
        pad = config.crop
        padded = F.pad(x, (pad, pad, pad, pad))  # (n, B, C, H + 2p, W + 2p), zeros
        span = 2 * pad + 1
        dy = (uniform(seed, Purpose.AUGMENT, *keys, 0) * span).long()  # (n, B)
        dx = (uniform(seed, Purpose.AUGMENT, *keys, 1) * span).long()
        rows = dy[..., None] + torch.arange(height, device=x.device)  # (n, B, H)
        cols = dx[..., None] + torch.arange(width, device=x.device)  # (n, B, W)
        channels = x.shape[2]
        rows = rows[:, :, None, :, None].expand(n, batch, channels, height, padded.shape[-1])
        x = padded.gather(3, rows)  # (n, B, C, H, W + 2p)
        cols = cols[:, :, None, None, :].expand(n, batch, channels, height, width)
        x = x.gather(4, cols)  # (n, B, C, H, W)
    if config.flip:
        flip = uniform(seed, Purpose.AUGMENT, *keys, 2) < 0.5  # (n, B)
        x = torch.where(flip[..., None, None, None].to(x.device), x.flip(-1), x)
    return x
