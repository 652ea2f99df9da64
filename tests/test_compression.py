"""Compressors: each against a per-node loop, each byte rule against a real encoder,
the properties their papers state, batching independence, and error feedback."""

from __future__ import annotations

import re
import struct
from math import prod
from pathlib import Path

import numpy as np
import pytest
import torch

from gossamer.config import ConfigError, load_config
from gossamer.sim.accounting import HEADER_BYTES
from gossamer.sim.network.compression import Encoder, build_compressor
from gossamer.sim.rng import Purpose, hash32, numpy_generator, torch_generator
from gossamer.sim.stacked import StackedTensors

SHAPES = [(5, 7), (5,), (3, 2, 2, 2), (3,)]  # P = 35 + 5 + 24 + 3 = 67
P = 67
NODES = 6
SEED = 11
KEY = (4, 1)  # (round, exchange)
COMPRESSIONS = {  # every compressor, as a compression section
    "none": {"name": "none"},
    "top_k": {"name": "top_k", "ratio": 0.1},
    "random_k": {"name": "random_k", "ratio": 0.1},
    "random_k_biased": {"name": "random_k", "ratio": 0.1, "unbiased": False},
    "qsgd": {"name": "qsgd", "levels": 4},
    "sign": {"name": "sign"},
    "power": {"name": "power", "rank": 2},
}
DOCS = Path(__file__).parents[1] / "docs" / "compression.md"


def section(compression: dict):
    return load_config(
        {"protocol": {"name": "dpsgd", "compression": compression}}
    ).protocol.compression


def compressor(compression: dict, shapes=SHAPES, seed=SEED):
    return build_compressor(section(compression), shapes, seed)


def vectors(n=NODES, seed=0) -> torch.Tensor:
    return torch.randn(n, P, generator=torch.Generator().manual_seed(seed))  # (n, P)


def compress(comp, x: torch.Tensor, key=KEY, ids=None, state=None) -> torch.Tensor:
    """(m, P) what receivers decode from the rows of ``x`` (m, P)."""
    ids = torch.arange(len(x)) if ids is None else ids
    state = comp.init_state(len(x), torch.device("cpu")) if state is None else state
    return comp.compress(StackedTensors.from_matrix(x, comp.shapes), ids, key, state).matrix()


def pieces(v: np.ndarray, shapes=SHAPES) -> list[np.ndarray]:
    """One node's row (P,) cut into its parameter tensors, flattened."""
    bounds = np.cumsum([0] + [prod(shape) for shape in shapes])
    return [v[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


# ---------------------------------------------------------------- per-node references
# One node at a time, in numpy, from the rules of docs/compression.md; each returns what
# the node sends (the fields of its message), and ``decode_*`` what a receiver rebuilds.


def ref_top_k(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.argsort(-np.abs(v), kind="stable")[:k].astype(np.uint32)
    return index, v[index]


def ref_window(seed: int, key: tuple, node: int, size: int, k: int) -> np.ndarray:
    """random_k's coordinates: a window of k of one seeded permutation, at a keyed offset."""
    permutation = numpy_generator(seed, Purpose.COMPRESSION).permutation(size)
    offset = int(hash32(seed, Purpose.COMPRESSION, *key, node)) % size
    return np.array([permutation[(offset + j) % size] for j in range(k)])


def ref_random_k(v, seed, key, node, k, unbiased) -> np.ndarray:
    scale = len(v) / k if unbiased else 1.0
    return (v[ref_window(seed, key, node, len(v), k)] * scale).astype(np.float32)


def ref_dither(seed: int, key: tuple, node: int, size: int) -> np.ndarray:
    """QSGD's u_j = frac(u0[(j + b) mod P] + c), float32 as the compressor computes it."""
    u0 = numpy_generator(seed, Purpose.COMPRESSION).random(size, np.float32)
    shift = int(hash32(seed, Purpose.COMPRESSION, *key, node, 0)) % size
    offset = np.float32(int(hash32(seed, Purpose.COMPRESSION, *key, node, 1)) / 2.0**32)
    u = u0[(np.arange(size) + shift) % size] + offset
    return u - np.floor(u)


def ref_qsgd(v, s, seed, key, node, shapes=SHAPES) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Per tensor: (norm, negative (P_l,) bool, level (P_l,) int in 0..s)."""
    fields = []
    dither = pieces(ref_dither(seed, key, node, len(v)), shapes)
    for part, u in zip(pieces(v, shapes), dither, strict=True):
        norm = float(np.linalg.norm(part.astype(np.float64)))
        ratio = s * np.abs(part) / norm if norm > 0 else np.zeros(len(part))
        level = np.floor(ratio) + (u < ratio - np.floor(ratio))
        fields.append((norm, part < 0, np.minimum(level, s).astype(np.int64)))
    return fields


def decode_qsgd(fields, s) -> np.ndarray:
    return np.concatenate([norm * np.where(neg, -1, 1) * level / s for norm, neg, level in fields])


def ref_sign(v, shapes=SHAPES) -> list[tuple[float, np.ndarray]]:
    """Per tensor: (||v_l||_1 / P_l, negative (P_l,) bool), with sign(0) = +1."""
    return [(float(np.abs(part).mean()), part < 0) for part in pieces(v, shapes)]


def decode_sign(fields) -> np.ndarray:
    return np.concatenate([scale * np.where(neg, -1.0, 1.0) for scale, neg in fields])


def initial_warm(shapes, rank, seed=SEED) -> dict[int, torch.Tensor]:
    return {
        layer: torch.randn(
            prod(shape[1:]), rank, generator=torch_generator(seed, Purpose.COMPRESSION, layer)
        )
        for layer, shape in enumerate(shapes)
        if len(shape) >= 2
    }


def ref_power(v, warm: dict, shapes=SHAPES) -> list[tuple[torch.Tensor, ...]]:
    """Per tensor: (left (rows, r), right (cols, r)) of a matrix, updating ``warm``, or
    (values,) of a vector."""
    fields = []
    for layer, (part, shape) in enumerate(zip(pieces(v, shapes), shapes, strict=True)):
        if layer not in warm:
            fields.append((torch.from_numpy(part),))
            continue
        matrix = torch.from_numpy(part).view(shape[0], -1)
        left, _ = torch.linalg.qr(matrix @ warm[layer])
        warm[layer] = matrix.T @ left
        fields.append((left, warm[layer]))
    return fields


def decode_power(fields) -> np.ndarray:
    return np.concatenate(
        [(f[0] if len(f) == 1 else f[0] @ f[1].T).reshape(-1).numpy() for f in fields]
    )


# ---------------------------------------------------------------- loops
@pytest.mark.parametrize("ratio", [0.1, 0.5])
def test_top_k_matches_argsort_per_node(ratio):
    comp = compressor({"name": "top_k", "ratio": ratio})
    x = vectors()
    decoded = compress(comp, x).numpy()
    k = round(ratio * P)
    for node, v in enumerate(x.numpy()):
        index, values = ref_top_k(v, k)
        expected = np.zeros(P, np.float32)
        expected[index] = values
        np.testing.assert_array_equal(decoded[node], expected)


@pytest.mark.parametrize("unbiased", [True, False])
def test_random_k_matches_a_window_of_the_permutation_per_node(unbiased):
    comp = compressor({"name": "random_k", "ratio": 0.1, "unbiased": unbiased})
    assert comp.k == 7 and comp.unbiased is unbiased
    x = vectors()
    ids = torch.arange(NODES) + 20  # global ids: what the draws are keyed by
    decoded = compress(comp, x, ids=ids).numpy()
    for node, v in enumerate(x.numpy()):
        expected = np.zeros(P, np.float32)
        index = ref_window(SEED, KEY, node + 20, P, 7)
        assert len(set(index)) == 7  # distinct coordinates
        expected[index] = ref_random_k(v, SEED, KEY, node + 20, 7, unbiased)
        np.testing.assert_allclose(decoded[node], expected, rtol=1e-6)


def test_qsgd_matches_the_documented_dither_per_node():
    comp = compressor({"name": "qsgd", "levels": 4})
    x = vectors()
    x[2, 35:40] = 0.0  # a zero tensor decodes to zeros
    decoded = compress(comp, x).numpy()
    for node, v in enumerate(x.numpy()):
        fields = ref_qsgd(v, 4, SEED, KEY, node)
        np.testing.assert_allclose(decoded[node], decode_qsgd(fields, 4), rtol=1e-5, atol=1e-6)
    assert not decoded[2, 35:40].any()
    levels = np.unique(np.round(np.abs(decoded[0, :35]) / np.linalg.norm(x[0, :35]) * 4, 4))
    assert set(levels) <= {0.0, 1.0, 2.0, 3.0, 4.0}  # multiples of ||v|| / s


def test_sign_matches_np_sign_per_node_with_zero_as_plus():
    comp = compressor({"name": "sign"})
    x = vectors()
    x[1, :10] = 0.0
    decoded = compress(comp, x).numpy()
    for node, v in enumerate(x.numpy()):
        expected = [
            np.abs(part).mean() * np.where(np.sign(part) == 0, 1.0, np.sign(part))
            for part in pieces(v)
        ]
        np.testing.assert_allclose(decoded[node], np.concatenate(expected), rtol=1e-6)
    assert (decoded[1, :10] > 0).all()


def test_power_matches_a_per_node_qr_loop_over_two_messages():
    comp = compressor({"name": "power", "rank": 2})
    state = comp.init_state(NODES, torch.device("cpu"))
    assert sorted(state) == ["q0", "q2"] and state["q0"].shape == (NODES, 7, 2)
    warm = [initial_warm(SHAPES, 2) for _ in range(NODES)]  # every node starts alike
    for step in range(2):  # the second message starts from the first one's Q
        x = vectors(seed=step)
        decoded = compress(comp, x, key=(step,), state=state).numpy()
        for node, v in enumerate(x.numpy()):
            expected = decode_power(ref_power(v, warm[node]))
            np.testing.assert_allclose(decoded[node], expected, rtol=1e-4, atol=1e-5)
            assert torch.allclose(state["q2"][node], warm[node][2], atol=1e-5)
    np.testing.assert_array_equal(decoded[:, 35:40], x[:, 35:40])  # vectors: exact


# ---------------------------------------------------------------- bytes
# One node's message as real bytes (little-endian float32 / uint32, bits packed MSB
# first by np.packbits), and a decoder that rebuilds the row from those bytes alone.
SIZES = [prod(shape) for shape in SHAPES]


def level_bits(level: np.ndarray, width: int) -> np.ndarray:
    return (level[:, None] >> np.arange(width - 1, -1, -1)) & 1  # (P_l, w), MSB first


def encode(name: str, comp, v: np.ndarray, node: int) -> bytes:
    if name == "none":
        return v.astype("<f4").tobytes()
    if name == "top_k":
        index, values = ref_top_k(v, comp.k)
        return index.astype("<u4").tobytes() + values.astype("<f4").tobytes()
    if name.startswith("random_k"):  # values only: receivers regenerate the window
        return ref_random_k(v, SEED, KEY, node, comp.k, comp.unbiased).astype("<f4").tobytes()
    if name == "qsgd":
        return b"".join(
            struct.pack("<f", norm)
            + np.packbits(np.c_[negative, level_bits(level, comp.level_bits)]).tobytes()
            for norm, negative, level in ref_qsgd(v, comp.levels, SEED, KEY, node)
        )
    if name == "sign":
        return b"".join(
            struct.pack("<f", scale) + np.packbits(negative).tobytes()
            for scale, negative in ref_sign(v)
        )
    fields = ref_power(v, initial_warm(SHAPES, comp.rank))
    return b"".join(f.numpy().astype("<f4").tobytes() for field in fields for f in field)


def decode(name: str, comp, message: bytes, node: int) -> np.ndarray:
    if name == "none":
        return np.frombuffer(message, "<f4")
    row = np.zeros(P, np.float32)
    if name == "top_k":
        index = np.frombuffer(message, "<u4", comp.k)
        row[index] = np.frombuffer(message, "<f4", comp.k, 4 * comp.k)
        return row
    if name.startswith("random_k"):
        row[ref_window(SEED, KEY, node, P, comp.k)] = np.frombuffer(message, "<f4")
        return row
    parts, at = [], 0
    for size, shape in zip(SIZES, SHAPES, strict=True):
        if name == "qsgd":
            width = comp.level_bits
            count = -(-size * (1 + width) // 8)
            packed = np.frombuffer(message, "u1", count, at + 4)
            bits = np.unpackbits(packed, count=size * (1 + width)).reshape(size, 1 + width)
            level = bits[:, 1:].astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))
            norm = struct.unpack_from("<f", message, at)[0]
            parts.append(decode_qsgd([(norm, bits[:, 0] == 1, level)], comp.levels))
            at += 4 + count
        elif name == "sign":
            count = -(-size // 8)
            negative = np.unpackbits(np.frombuffer(message, "u1", count, at + 4), count=size)
            parts.append(decode_sign([(struct.unpack_from("<f", message, at)[0], negative == 1)]))
            at += 4 + count
        elif len(shape) == 1:  # power: a vector, exact
            parts.append(np.frombuffer(message, "<f4", size, at))
            at += 4 * size
        else:  # power: left (rows, r), then right (cols, r)
            rows, cols, r = shape[0], size // shape[0], comp.rank
            left = np.frombuffer(message, "<f4", rows * r, at).reshape(rows, r)
            right = np.frombuffer(message, "<f4", cols * r, at + 4 * rows * r).reshape(cols, r)
            parts.append((left @ right.T).reshape(-1))
            at += 4 * r * (rows + cols)
    assert at == len(message)  # every byte read
    return np.concatenate(parts)


@pytest.mark.parametrize("name", COMPRESSIONS)
def test_payload_bytes_are_the_length_of_a_real_encoding(name):
    comp = compressor(COMPRESSIONS[name])
    x = vectors()
    decoded = compress(comp, x).numpy()
    for node in (0, 3):
        message = encode(name, comp, x[node].numpy(), node)
        assert len(message) == comp.payload_bytes()
        rebuilt = decode(name, comp, message, node)
        np.testing.assert_allclose(decoded[node], rebuilt, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- properties
def draws(comp, v: torch.Tensor, keys=80, senders=50) -> torch.Tensor:
    """(keys * senders, P) C(v) over many keyed draws: every exchange, every sender."""
    x = v.expand(senders, -1)
    return torch.cat([compress(comp, x, key=(key, 7)) for key in range(keys)]).double()


@pytest.mark.parametrize("name", ["random_k", "qsgd"])
def test_unbiased_compressors_average_to_the_input(name):
    comp = compressor(COMPRESSIONS[name])
    assert comp.unbiased
    v = vectors(1, seed=5)[0]
    samples = draws(comp, v)
    count = len(samples)
    if name == "random_k":  # v_j P/k with probability k/P, else 0
        variance = v.double() ** 2 * (P / comp.k - 1)
    else:  # ||v_l|| / s times a Bernoulli(frac(s |v_j| / ||v_l||)) step
        norms = torch.cat([part.norm().expand(len(part)) for part in v.double().split(SIZES)])
        ratio = comp.levels * v.double().abs() / norms
        frac = ratio - ratio.floor()
        variance = (norms / comp.levels) ** 2 * frac * (1 - frac)
    standard_error = (variance / count).sqrt()
    error = (samples.mean(0) - v.double()).abs()
    assert (error <= 5 * standard_error + 1e-5).all(), (error / standard_error).max()


def test_biased_random_k_averages_to_k_over_p_of_the_input():
    comp = compressor(COMPRESSIONS["random_k_biased"])
    assert not comp.unbiased
    v = vectors(1, seed=5)[0].double()
    samples = draws(comp, v.float())
    standard_error = (v**2 * (comp.k / P) * (1 - comp.k / P) / len(samples)).sqrt()
    assert ((samples.mean(0) - comp.k / P * v).abs() <= 5 * standard_error + 1e-6).all()


def test_random_k_sends_k_distinct_coordinates_each_with_probability_k_over_p():
    comp = compressor({"name": "random_k", "ratio": 0.1})
    samples = draws(comp, torch.ones(P))  # no zero entry: nonzero = sent
    sent = samples != 0
    assert (sent.sum(1) == comp.k).all()
    frequency, p = sent.double().mean(0), comp.k / P
    standard_error = (p * (1 - p) / len(samples)) ** 0.5
    assert ((frequency - p).abs() <= 5 * standard_error).all(), frequency


def test_top_k_is_a_contraction():
    for ratio in (0.05, 0.3, 0.9):
        comp = compressor({"name": "top_k", "ratio": ratio})
        x = vectors(seed=2).double()
        error = (compress(comp, x.float()).double() - x).pow(2).sum(1)
        assert (error <= (1 - comp.k / P) * x.pow(2).sum(1) + 1e-9).all()


@pytest.mark.parametrize("name", ["top_k", "random_k"])
def test_ratio_one_sends_the_input_exactly(name):
    comp = compressor({"name": name, "ratio": 1.0})
    x = vectors()
    assert comp.k == P
    assert torch.equal(compress(comp, x), x)


def test_power_reproduces_a_low_rank_matrix_in_one_step():
    generator = torch.Generator().manual_seed(3)
    x = vectors(2)
    outer = torch.randn(2, 5, 1, generator=generator) @ torch.randn(2, 1, 7, generator=generator)
    x[:, :35] = outer.reshape(2, 35)  # rank 1
    decoded = compress(compressor({"name": "power", "rank": 1}), x)
    assert torch.allclose(decoded[:, :35], x[:, :35], atol=1e-5)
    full = compress(compressor({"name": "power", "rank": 3}), x)  # 3 = full rank of (3, 8)
    assert torch.allclose(full[:, 40:64], x[:, 40:64], atol=1e-5)


def test_power_warm_start_converges_to_the_best_rank_one_approximation():
    comp = compressor({"name": "power", "rank": 1}, shapes=[(5, 7)], seed=1)
    generator = torch.Generator().manual_seed(4)
    left, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(7, 5, generator=generator))
    singular = torch.tensor([5.0, 1.0, 0.5, 0.2, 0.1])
    matrix = left @ torch.diag(singular) @ right.T  # (5, 7)
    state = comp.init_state(1, torch.device("cpu"))
    for key in range(15):  # the same matrix again: one power iteration per message
        decoded = compress(comp, matrix.reshape(1, 35), key=(key,), state=state)
    best = 5.0 * torch.outer(left[:, 0], right[:, 0])
    assert torch.allclose(decoded.view(5, 7), best, atol=1e-5)


# ---------------------------------------------------------------- batching independence
@pytest.mark.parametrize("name", COMPRESSIONS)
def test_messages_do_not_depend_on_how_nodes_are_batched(name):
    comp = compressor(COMPRESSIONS[name])
    x, ids = vectors(), torch.tensor([0, 1, 2, 3, 4, 5]) + 100
    state = comp.init_state(NODES, torch.device("cpu"))
    alone = []
    for node in range(NODES):
        rows = {key: value[node : node + 1].clone() for key, value in state.items()}
        alone.append(compress(comp, x[node : node + 1], ids=ids[node : node + 1], state=rows))
        for key, value in rows.items():
            state[key][node : node + 1] = value  # what node alone keeps
    together_state = comp.init_state(NODES, torch.device("cpu"))
    together = compress(comp, x, ids=ids, state=together_state)
    assert torch.equal(together, torch.cat(alone))
    for key, value in state.items():
        assert torch.equal(together_state[key], value)


# ---------------------------------------------------------------- error feedback
def loop_error_feedback(reference, messages: list[torch.Tensor]) -> tuple[list, np.ndarray]:
    """Per node: send C(v + e), keep e <- v + e - C(v + e); the sent rows and final e."""
    residual = np.zeros((NODES, P), np.float32)
    sent = []
    for step, x in enumerate(messages):
        rows = []
        for node in range(NODES):
            sending = x[node].numpy() + residual[node]
            rows.append(reference(sending, step, node))
            residual[node] = sending - rows[-1]
        sent.append(np.stack(rows))
    return sent, residual


def test_error_feedback_keeps_what_compression_lost():
    config = section({"name": "sign", "error_feedback": True})
    encoder = Encoder(config, SHAPES, SEED, NODES, torch.device("cpu"))
    assert encoder.bytes == encoder.compressor.payload_bytes() + HEADER_BYTES
    messages = [vectors(seed=step) for step in range(4)]
    sent = [
        encoder.encode(StackedTensors.from_matrix(x, SHAPES), key=(step,)).values.matrix()
        for step, x in enumerate(messages)
    ]
    expected, residual = loop_error_feedback(
        lambda v, step, node: decode_sign(ref_sign(v)), messages
    )
    for ours, theirs in zip(sent, expected, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-5)
    e = encoder.residual.matrix()
    np.testing.assert_allclose(e.numpy(), residual, atol=1e-5)
    lost = sum(x - s for x, s in zip(messages, sent, strict=True))
    assert torch.allclose(e, lost, atol=1e-5)  # e = sum of (v - C(...)) over messages
    assert torch.allclose(sum(sent) + e, sum(messages), atol=1e-5)  # nothing is lost


def test_error_feedback_and_warm_start_of_some_rows_only():
    config = section({"name": "power", "rank": 1, "error_feedback": True})
    encoder = Encoder(config, SHAPES, SEED, 4, torch.device("cpu"), lo=2)  # nodes 2..5
    rows = torch.tensor([3, 1])
    x = vectors(4)
    message = encoder.encode(StackedTensors.from_matrix(x[rows], SHAPES), (0,), rows)
    for row, decoded in zip(rows.tolist(), message.values.matrix(), strict=True):
        warm = initial_warm(SHAPES, 1)
        expected = decode_power(ref_power(x[row].numpy(), warm))
        assert torch.allclose(decoded, torch.from_numpy(expected), atol=1e-5)
        assert torch.allclose(encoder.state["q0"][row], warm[0], atol=1e-5)
        assert torch.allclose(encoder.residual.matrix()[row], x[row] - decoded, atol=1e-6)
    untouched = initial_warm(SHAPES, 1)[0]
    for row in (0, 2):  # rows that sent nothing keep their start and no residual
        assert torch.equal(encoder.state["q0"][row], untouched)
        assert not encoder.residual.matrix()[row].any()


def test_without_error_feedback_there_is_no_residual():
    encoder = Encoder(section({"name": "sign"}), SHAPES, SEED, NODES, torch.device("cpu"))
    assert encoder.residual is None


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "compression, key",
    [
        ({"name": "top_k", "ratio": 0}, "ratio"),
        ({"name": "random_k", "ratio": 0}, "ratio"),
        ({"name": "random_k", "ratio": 1.5}, "ratio"),
        ({"name": "qsgd", "levels": 1}, "levels"),
        ({"name": "power", "rank": 0}, "rank"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(compression, key):
    with pytest.raises(ConfigError, match=rf"protocol\.compression\.{key}: "):
        section(compression)


def test_a_rank_above_the_smallest_matrix_is_a_config_error():
    message = (
        "protocol.compression.rank: expected at most 3 (the smallest matrix of the "
        "model, shape 3 x 8); got 4"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_compressor(section({"name": "power", "rank": 4}), SHAPES, SEED)
    assert compressor({"name": "power", "rank": 3}).payload_bytes() == 4 * (
        3 * (5 + 7) + 5 + 3 * (3 + 8) + 3
    )


# ---------------------------------------------------------------- the worked example
MLP = [(200, 784), (200,), (10, 200), (10,)]  # 784-200-10: 159,010 parameters


def test_worked_example_of_the_docs_for_the_mlp():
    expected = {  # payload bytes, computed by hand in docs/compression.md
        "none": 4 * 159_010,
        "top_k": 8 * 1_590,
        "random_k": 4 * 1_590,
        "qsgd": (4 + 117_600) + (4 + 150) + (4 + 1_500) + (4 + 8),
        "sign": (4 + 19_600) + (4 + 25) + (4 + 250) + (4 + 2),
        "power": 4 * (200 + 784) + 4 * 200 + 4 * (10 + 200) + 4 * 10,
    }
    assert expected == {
        "none": 636_040,
        "top_k": 12_720,
        "random_k": 6_360,
        "qsgd": 119_274,
        "sign": 19_893,
        "power": 5_616,
    }
    compressions = {
        "none": {"name": "none"},
        "top_k": {"name": "top_k", "ratio": 0.01},
        "random_k": {"name": "random_k", "ratio": 0.01},
        "qsgd": {"name": "qsgd", "levels": 16},
        "sign": {"name": "sign"},
        "power": {"name": "power", "rank": 1},
    }
    assert struct.calcsize("<IIQIQI") == HEADER_BYTES == 32  # the header's six fields
    text = DOCS.read_text().split("### Worked example")[1]  # its table
    for name, payload in expected.items():
        assert compressor(compressions[name], MLP, seed=0).payload_bytes() == payload, name
        row = re.search(rf"^\| `{name}` .*$", text, re.M)
        assert row, name
        assert f"{payload:,}" in row.group(0) and f"{payload + 32:,}" in row.group(0), name


@pytest.mark.parametrize("p", [5003, 4096])
def test_two_stage_top_k_selects_exactly_what_one_topk_selects(p):
    """The chunked selection (chunk maxima first) against torch.topk over the whole row,
    with a last, shorter chunk (5003) and without (4096), and many equal magnitudes."""
    from gossamer.sim.network.compression.top_k import top_k_indices

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, p, generator=gen)
    x[:, ::3] = x[:, ::3].round()  # many exact ties among the magnitudes
    for k in (1, 17, 200):
        chosen = top_k_indices(x.abs(), k)
        expected = x.abs().topk(k, dim=1).values
        assert chosen.shape == (7, k)
        assert all(len(set(row.tolist())) == k for row in chosen)  # distinct columns
        got = x.abs().gather(1, chosen).sort(1, descending=True).values
        assert torch.equal(got, expected)  # the k largest magnitudes of every row
