"""Compare D-PSGD, periodic averaging and local training on identical conditions.

Every run uses the same seed, so the same data partition, topology and initial
model; only the protocol changes. Prints accuracy against megabytes sent.

    python examples/compare_protocols.py
"""

import gossamer

VARIANTS = {
    "dpsgd": ["protocol=dpsgd"],
    "periodic b=1": ["protocol=periodic", "protocol.period=1"],
    "periodic b=10": ["protocol=periodic", "protocol.period=10"],
    "nosync": ["protocol=nosync"],
}

print(f"{'protocol':15s} {'node acc':>9s} {'avg-model acc':>14s} {'MB sent':>9s}")
for name, overrides in VARIANTS.items():
    result = gossamer.run("examples/quickstart.yaml", overrides=overrides)
    final, totals = result.final, result.totals
    print(
        f"{name:15s} {final['test_accuracy_mean']:9.3f} {final['avg_model_accuracy']:14.3f} "
        f"{totals['bytes_sent'] / 1e6:9.1f}"
    )
