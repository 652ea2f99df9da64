"""A message: what each sending node puts on the wire for one exchange, and its size.

The simulation does not serialize messages: it carries what a receiver *reconstructs*
from one (``values``, one row per sender) and counts what the encoding would put on
the wire (``bytes``, header included). The byte rules of every encoding are in
docs/compression.md; ``tests/test_compression.py`` checks each against an independent
encoder of the same message. The ledger, the simulated clock (bytes x 8 / bandwidth)
and the link energy all follow from ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gossamer.sim.stacked import StackedTensors


@dataclass
class Message:
    """What the m sending nodes of one exchange sent, as the receivers decode it.

    ``kind`` says how a receiver uses it: ``model`` replaces what it holds of the sender
    (a whole model, exact or compressed); ``difference`` is added to it (CHOCO-SGD's
    compressed update of a public copy).
    """

    values: StackedTensors  # (m, P) decoded content, one row per sender
    bytes: int  # one message on the wire, header included (equal for every sender)
    kind: Literal["model", "difference"] = "model"
    exact: bool = True  # values are exactly what was sent (no compression)
