"""Child process of ``tests/test_pretrain.py::test_two_replicas_train_like_one``.

The CPU is split into two logical devices (possible only before TensorFlow initialises,
hence a fresh process). Each objective is pretrained for one step twice: on the batch
``A`` (8 spectra) without a strategy, and on ``[A; A]`` (16) with a two-replica
``MirroredStrategy``, where each replica gets one copy of ``A``. With identity views both
replicas then see what the single run sees, so Barlow Twins and SimCLR must give the same
loss and weights: the batch is split per replica, each replica's loss uses its own rows
only (SimCLR's negatives are those of one replica, as docs/parts/ssl.md says) and the
replicas stay in sync. The masked objective draws its masks per row, so its two replicas
see different masks: it is only checked to run. Adam's steps do not depend on the scale of
the gradients, so this does not check the loss scaling by the number of replicas. Prints
one JSON line.
"""


from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    from tests.conftest import make_synthetic
    from trainer.contrastive import pretrain_contrastive
    from trainer.model import ModelConfig
    from trainer.pretrain import PretrainConfig, pretrain
    from trainer.raman_augment import RamanAugmentConfig
    from trainer.ssl import SSLConfig

    tiny = ModelConfig(arch="paper", pool_size=16, dense_units=16)
    A = make_synthetic(n_per_class=2, seed=0).X[:8]
    same = RamanAugmentConfig(shift_cm=0, gain=0.0, baseline=0.0, noise_std=0.0, spikes=0,
                              crop=0.0)
    # one strategy for the whole process: a second MirroredStrategy reuses collective keys
    strat = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": int(strat.num_replicas_in_sync), "objectives": {}}
    for objective in ("barlow", "simclr", "masked"):
        one = PretrainConfig(objective=objective, epochs=1, batch_size=8, projection_dim=8,
                             views=same)
        two = PretrainConfig(objective=objective, epochs=1, batch_size=16, projection_dim=8,
                             views=same)
        w1, h1 = pretrain(A, tiny, one, log=None)
        w2, h2 = pretrain(np.concatenate([A, A]), tiny, two, strategy=strat, log=None)
        w0 = pretrain_contrastive(A, tiny, SSLConfig(pretrain_epochs=0), seed=one.seed)

        def gap(wa, wb):
            return max(float(np.max(np.abs(a - b))) for k in wa
                       for a, b in zip(wa[k], wb[k], strict=True))

        out["objectives"][objective] = {
            "max_diff": gap(w1, w2), "moved_one": gap(w1, w0), "moved_two": gap(w2, w0),
            "loss_one": h1["loss"][0], "loss_two": h2["loss"][0]}
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
