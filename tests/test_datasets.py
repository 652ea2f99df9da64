"""Real on-disk formats, downloads, the natural partition, augmentation, mnist1d."""

from __future__ import annotations

import functools
import http.server
import random
import threading

import numpy as np
import pytest
import torch

import gossamer
from fixtures import cifar10, image_folder, leaf, mnist_like, write_idx
from gossamer.config import AugmentConfig, ConfigError, DataConfig, DataError, load_config
from gossamer.sim.data import files, load_dataset, partition_indices
from gossamer.sim.data.augment import augment
from gossamer.sim.data.files import RemoteFile, md5
from gossamer.sim.rng import Purpose, uniform


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files_load_with_shapes_labels_and_normalization(tmp_path, gz, name):
    arrays, _ = mnist_like(tmp_path, gz=gz)
    data = load_dataset(DataConfig(dataset=name, root=tmp_path), seed=0)
    assert data.x_train.shape == (40, 1, 28, 28) and data.x_train.dtype == torch.uint8
    assert torch.equal(data.x_train[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert data.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    mean, std = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}[name]
    expected = (arrays["t10k-images-idx3-ubyte"] / 255.0 - mean) / std
    assert np.allclose(data.x_test[:, 0].numpy(), expected, atol=1e-5)  # prepared once


def test_torchvision_layout_is_found(tmp_path):
    mnist_like(tmp_path / "MNIST" / "raw")
    assert load_dataset(DataConfig(dataset="mnist", root=tmp_path), 0).x_train.shape[0] == 40


def test_truncated_malformed_and_missing_idx_files_are_named(tmp_path):
    _, paths = mnist_like(tmp_path, gz=False)
    images = paths["train-images-idx3-ubyte"]
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte': truncated or padded"):
        load_dataset(DataConfig(dataset="mnist", root=tmp_path), 0)
    images.write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset(DataConfig(dataset="mnist", root=tmp_path), 0)
    images.unlink()
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte .* Put the four"):
        load_dataset(DataConfig(dataset="mnist", root=tmp_path), 0)
    write_idx(images, np.zeros((39, 28, 28), np.uint8))
    with pytest.raises(DataError, match="39 images but 40 labels"):
        load_dataset(DataConfig(dataset="mnist", root=tmp_path), 0)


def test_cifar10_batches(tmp_path):
    batches = cifar10(tmp_path)
    data = load_dataset(DataConfig(dataset="cifar10", root=tmp_path), seed=0)
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (6, 3, 32, 32)
    first = batches["data_batch_1"][0][0].reshape(3, 32, 32)
    assert torch.equal(data.x_train[0], torch.from_numpy(first))
    assert data.y_train.tolist()[:6] == [int(v) for v in batches["data_batch_1"][1]]
    mean = np.array([0.4914, 0.4822, 0.4465])[:, None, None]
    std = np.array([0.2470, 0.2435, 0.2616])[:, None, None]
    expected = (batches["test_batch"][0][0].reshape(3, 32, 32) / 255.0 - mean) / std
    assert np.allclose(data.x_test[0].numpy(), expected, atol=1e-5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3': not a readable CIFAR-10 batch"):
        load_dataset(DataConfig(dataset="cifar10", root=tmp_path), 0)


def test_leaf_femnist_keeps_writers(tmp_path):
    truth = leaf(tmp_path, {"f_b": 3, "f_a": 2, "f_c": 4})
    data = load_dataset(DataConfig(dataset="femnist", root=tmp_path, partition="natural"), 0)
    assert data.x_train.shape == (9, 1, 28, 28) and data.num_classes == 62
    # writers are numbered in sorted name order: f_a 0, f_b 1, f_c 2 (files in given order)
    sizes = {w: int((data.writers == i).sum()) for i, w in enumerate(["f_a", "f_b", "f_c"])}
    assert sizes == {"f_a": 2, "f_b": 3, "f_c": 4}
    x_b, y_b = truth[("train", "f_b")]
    rows = np.flatnonzero(data.writers == 1)
    assert data.y_train[rows].tolist() == y_b.tolist()
    assert np.array_equal(data.x_train[rows].reshape(3, 784).numpy(), np.round(x_b * 255))
    (tmp_path / "train" / "part_0.json").write_text('{"users": ["x"]')
    with pytest.raises(DataError, match="part_0.json': not a LEAF JSON file"):
        load_dataset(DataConfig(dataset="femnist", root=tmp_path), 0)


def test_npz_and_its_errors(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(10, 5)),
        y_train=np.arange(10) % 3,
        x_test=rng.normal(size=(4, 5)),
        y_test=np.arange(4) % 3,
    )
    data = load_dataset(DataConfig(dataset="npz", root=path), 0)
    assert (
        data.input_shape == (5,) and data.num_classes == 3 and data.x_train.dtype == torch.float32
    )
    np.savez(path, x_train=np.zeros((3, 2)), y_train=np.zeros(3, int))
    with pytest.raises(DataError, match="missing array\\(s\\) x_test, y_test"):
        load_dataset(DataConfig(dataset="npz", root=path), 0)
    images = rng.integers(0, 256, (8, 1, 4, 4), dtype=np.uint8)
    np.savez(path, x_train=images, y_train=np.arange(8) % 2, x_test=images[:2], y_test=[0, 1])
    data = load_dataset(DataConfig(dataset="npz", root=path), 0)
    scaled = images / 255.0  # uint8: normalized by the training set's own statistics
    assert np.allclose(
        data.x_test.numpy(), ((scaled - scaled.mean()) / scaled.std())[:2], atol=1e-5
    )


def test_image_folder(tmp_path):
    image_folder(tmp_path)
    data = load_dataset(DataConfig(dataset="folder", root=tmp_path), 0)
    assert data.x_train.shape == (6, 3, 6, 5) and data.num_classes == 2
    assert data.y_train.tolist() == [0, 0, 0, 1, 1, 1]  # classes in sorted order: cat, dog
    resized = load_dataset(DataConfig(dataset="folder", root=tmp_path, image_size=[4, 4]), 0)
    assert resized.x_train.shape == (6, 3, 4, 4)
    (tmp_path / "train" / "cat" / "1.png").write_bytes(b"no image")
    with pytest.raises(DataError, match="1.png': not a readable image"):
        load_dataset(DataConfig(dataset="folder", root=tmp_path), 0)


def test_file_datasets_need_a_root_and_name_it():
    with pytest.raises(
        ConfigError,
        match="data: value error, dataset 'cifar10' is read from files: "
        "set root or set download: true",
    ):
        gossamer.load_config({"data": {"dataset": "cifar10"}})
    config = gossamer.load_config({"data": {"dataset": "mnist", "root": "/no/such/dir"}})
    with pytest.raises(DataError, match="data.root '/no/such/dir': missing train-images"):
        load_dataset(config.data, 0)  # checked when the run loads its data, before training
    with pytest.raises(ConfigError, match="partition 'natural' needs a dataset with writers"):
        gossamer.load_config({"data": {"partition": "natural"}})


# ------------------------------------------------------------------ downloads


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving the folder tmp_path / 'served'."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_download_verifies_checksums_and_caches(tmp_path, server, monkeypatch):
    served, url = server
    arrays, paths = mnist_like(served, gz=True)
    remote = [RemoteFile(p.name, "unused", md5(p)) for p in paths.values()]
    monkeypatch.setitem(files.REMOTE, "mnist", remote)
    cache = tmp_path / "cache"
    config = DataConfig(dataset="mnist", download=True, root=cache, download_url=url)
    data = load_dataset(config, 0)
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in paths.values())
    (served / remote[0].name).unlink()  # cached: no second fetch needed
    assert load_dataset(config, 0).x_train.shape[0] == 40


def test_download_with_bad_checksum_or_no_network_leaves_nothing(tmp_path, server, monkeypatch):
    served, url = server
    _, paths = mnist_like(served, gz=True)
    remote = [RemoteFile(p.name, "unused", "0" * 32) for p in paths.values()]
    monkeypatch.setitem(files.REMOTE, "mnist", remote)
    cache = tmp_path / "cache"
    config = DataConfig(dataset="mnist", download=True, root=cache, download_url=url)
    with pytest.raises(DataError, match="checksum mismatch .* nothing was cached"):
        load_dataset(config, 0)
    assert list(cache.iterdir()) == []  # no file, no partial file
    dead = DataConfig(
        dataset="mnist", download=True, root=cache, download_url="http://127.0.0.1:9/"
    )
    with pytest.raises(DataError, match=r"cannot fetch .* put train-images-idx3-ubyte.gz, "):
        load_dataset(dead, 0)
    assert list(cache.iterdir()) == []


def test_cifar_download_extracts_the_archive(tmp_path, server, monkeypatch):
    import tarfile

    served, url = server
    cifar10(tmp_path / "src")
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setitem(files.REMOTE, "cifar10", [RemoteFile(archive.name, "x", md5(archive))])
    config = DataConfig(dataset="cifar10", download=True, root=tmp_path / "c", download_url=url)
    assert load_dataset(config, 0).x_train.shape == (30, 3, 32, 32)


# ------------------------------------------------------------------ natural partition


def _natural(writer_sizes, nodes):
    writers = np.repeat(np.arange(len(writer_sizes)), writer_sizes)
    labels = np.zeros(len(writers), dtype=np.int64)
    config = DataConfig(dataset="femnist", root=".", partition="natural")
    return writers, partition_indices(labels, nodes, config, seed=0, writers=writers)


def test_natural_partition_one_writer_per_node():
    writers, parts = _natural([3, 5, 2, 4], 4)
    assert sorted(tuple(np.unique(writers[p])) for p in parts) == [(0,), (1,), (2,), (3,)]
    assert all(len(p) == [3, 5, 2, 4][writers[p[0]]] for p in parts)


def test_natural_partition_fewer_nodes_merges_whole_writers():
    writers, parts = _natural([3, 5, 2, 4, 1, 6, 2], 3)
    counts = sorted(len(np.unique(writers[p])) for p in parts)
    assert counts == [2, 2, 3]  # 7 writers dealt to 3 nodes
    for p in parts:  # whole writers: a writer's samples all on one node
        for w in np.unique(writers[p]):
            assert (writers[p] == w).sum() == (writers == w).sum()
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(writers)))


def test_natural_partition_more_nodes_splits_writers():
    writers, parts = _natural([4, 6], 5)
    assert [len(np.unique(writers[p])) for p in parts] == [1] * 5
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(10))
    sizes = sorted(len(p) for p in parts)
    assert sizes == [2, 2, 2, 2, 2]  # 5 nodes for 10 samples: the 4-writer on 2, the 6 on 3
    writers, parts = _natural([9, 1, 2], 6)  # 3 extra nodes, in proportion to 9 : 1 : 2:
    per_writer = [sum(np.unique(writers[p])[0] == w for p in parts) for w in range(3)]
    assert per_writer == [3, 1, 2]  # 2.25, 0.25, 0.5 -> 2, 0, 0 + the largest remainder (0.5)


# ------------------------------------------------------------------ augmentation


def test_crop_and_flip_match_a_per_sample_loop():
    x = torch.arange(2 * 3 * 2 * 5 * 4, dtype=torch.float32).view(2, 3, 2, 5, 4)
    nodes, position = torch.tensor([4, 9]), torch.tensor([[0, 1, 2], [7, 8, 9]])
    config = AugmentConfig(crop=2, flip=True)
    out = augment(x, config, seed=5, nodes=nodes, position=position)
    for i in range(2):
        for b in range(3):
            keys = (int(nodes[i]), int(position[i, b]))
            dy = int(float(uniform(5, Purpose.AUGMENT, *keys, 0)) * 5)
            dx = int(float(uniform(5, Purpose.AUGMENT, *keys, 1)) * 5)
            padded = torch.nn.functional.pad(x[i, b], (2, 2, 2, 2))
            expected = padded[:, dy : dy + 5, dx : dx + 4]
            if float(uniform(5, Purpose.AUGMENT, *keys, 2)) < 0.5:
                expected = expected.flip(-1)
            assert torch.equal(out[i, b], expected)


def test_augmentation_runs_and_needs_images():
    result = gossamer.run(
        {
            "nodes": 4,
            "rounds": 2,
            "eval_every": 1,
            "topology": {"kind": "ring"},
            "data": {"augment": {"crop": 1, "flip": True}},
        }
    )
    assert result.totals["local_steps"] == 8
    with pytest.raises(ConfigError, match="data.augment: crop and flip need image inputs"):
        gossamer.run(
            {
                "nodes": 4,
                "rounds": 1,
                "eval_every": 1,
                "topology": {"kind": "ring"},
                "data": {"dataset": "synthetic", "augment": {"flip": True}},
            }
        )


# ------------------------------------------------------------------ mnist1d


def test_mnist1d_is_the_packages_generator_and_leaves_global_rng_alone():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(123)
    before = np.random.get_state()[1].copy(), random.getstate()
    data = load_dataset(DataConfig(dataset="mnist1d", mnist1d={"samples": 200}), seed=0)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    args = get_dataset_args()
    args.num_samples, args.train_split = 200, 1.0
    reference = make_dataset(args)
    ours = np.concatenate([data.x_train.numpy(), data.x_test.numpy()])
    theirs = reference["x"].astype(np.float32)
    assert data.input_shape == (40,) and len(ours) == 200
    key = lambda a: np.lexsort(a.T[::-1])  # noqa: E731 - sort rows to compare as sets
    assert np.array_equal(ours[key(ours)], theirs[key(theirs)])


def test_mnist1d_runs_end_to_end_offline():
    result = gossamer.run(
        {
            "nodes": 8,
            "rounds": 30,
            "eval_every": 10,
            "data": {"dataset": "mnist1d", "partition": "iid", "batch_size": 16},
            "model": {"name": "mlp", "hidden": [64]},
        }
    )
    assert result.final["test_accuracy_mean"] > 0.2  # above chance (0.1) after 30 rounds


class _WritesAMarker:
    """Unpickled by a plain pickle.load, this would create a file (it runs code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_cifar10_batch_cannot_run_code(tmp_path):
    import pickle

    cifar10(tmp_path)
    marker = tmp_path / "marker"
    folder = tmp_path / "cifar-10-batches-py"
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": _WritesAMarker(marker), b"labels": []}, handle)
    config = load_config({"data": {"dataset": "cifar10", "root": str(tmp_path)}, "nodes": 8})
    with pytest.raises(DataError, match="refers to the Python object io.open, which a CIFAR"):
        load_dataset(config.data, 0)
    assert not marker.exists()
