"""The built-in components by name, one line each, known without importing them.

``gossamer.sim`` implements and registers them, and importing it imports torch (about
two seconds). The registries import it on the first lookup of an implementation or a
config section, not before, so that ``gossamer --help`` and ``gossamer list`` answer
at once (pip keeps its command table the same way). A line here is what ``gossamer
list`` says of a built-in; ``tests/test_registry.py`` checks that this table names
exactly what ``gossamer.sim`` registers.
"""

from __future__ import annotations

#: The module whose import registers every built-in component.
MODULE = "gossamer.sim"

#: kind -> name -> one line for ``gossamer list`` (at most 55 characters).
BUILTINS: dict[str, dict[str, str]] = {
    "protocol": {
        "choco": "CHOCO-SGD: gossip of compressed model changes",
        "dpsgd": "D-PSGD: train, then average with neighbours",
        "dynamic": "dynamic averaging: a coordinator syncs drifted models",
        "dynamic_gossip": "dynamic averaging without a coordinator, by gossip",
        "greedy": "train every round until the energy budget is spent",
        "nosync": "local training only, no communication (lower bound)",
        "periodic": "periodic averaging by a coordinator (FedAvg-style)",
        "pushsum": "Stochastic Gradient Push: push-sum gossip",
        "skiptrain": "SkipTrain: some rounds only share and average",
        "skiptrain_constrained": "SkipTrain spreading each node's energy budget",
    },
    "model": {
        "cnn": "a small CNN: conv blocks, then Linear layers",
        "custom": "your own nn.Module (model.import_path), vmapped",
        "femnist_cnn": "the LEAF / SkipTrain FEMNIST CNN (1.69 M parameters)",
        "lenet": "the GroupNorm LeNet of DecentralizePy and SkipTrain",
        "mlp": "ReLU multi-layer perceptron, fused training step",
        "resnet20": "ResNet-20 for CIFAR (He et al. 2016), GroupNorm",
        "resnet8": "ResNet-8 for CIFAR (He et al. 2016), GroupNorm",
    },
    "optimizer": {
        "adam": "Adam (Kingma & Ba 2015), weight decay as an L2 term",
        "adamw": "Adam with decoupled weight decay (default 0.01)",
        "sgd": "SGD with heavy-ball or Nesterov momentum",
    },
    "compression": {
        "none": "every message is the whole model in float32",
        "power": "PowerSGD: rank-r factors of each weight matrix",
        "qsgd": "QSGD: s-level stochastic quantization, unbiased",
        "random_k": "k random entries; receivers regenerate the indices",
        "sign": "scaled sign: one bit per entry, one scale per tensor",
        "top_k": "the k largest-magnitude entries, with indices",
    },
    "aggregator": {
        "mean": "the W-weighted mean; the coordinator's plain mean",
        "median": "coordinate-wise median (Yin et al. 2018)",
        "trimmed_mean": "coordinate-wise mean without the extremes",
    },
    "dataset": {
        "cifar10": "CIFAR-10 python batches (or a verified download)",
        "digits": "scikit-learn's 8x8 digits (1,797 images), built in",
        "fashion_mnist": "Fashion-MNIST IDX files (or a verified download)",
        "femnist": "LEAF's FEMNIST JSON files, with each sample's writer",
        "folder": "an image folder tree, one sub-folder per class",
        "mnist": "MNIST IDX files (or a verified download)",
        "mnist1d": "MNIST-1D (Greydanus 2020), generated, built in",
        "npz": "an .npz file with x_train, y_train, x_test, y_test",
        "synthetic": "a seeded Gaussian mixture of any shape, built in",
    },
}
