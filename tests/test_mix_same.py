"""Same-mineral mixing (``TrainConfig.mix_same``, issue 11): drawn training spectra mixed with
another spectrum of their own mineral, targets alike."""

from __future__ import annotations

import numpy as np
import pytest

import trainer.train as tt
from tests.conftest import record_steps
from trainer.model import ModelConfig
from trainer.train import TrainConfig, same_mineral_partners

TINY = ModelConfig(arch="paper", pool_size=8, dense_units=16, dropout=0.0, filters=(4, 8, 8),
                   kernel_size=5)


def test_partners_share_the_mineral_and_weights_follow_p() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    rows = [np.flatnonzero(y == c) for c in range(4)]
    partner, lam = same_mineral_partners(y, rows, rng, 1.0)
    assert np.all(y[partner] == y) and lam.shape == (200, 1)
    assert np.all((lam >= 0.5) & (lam < 1.0))
    assert len(set(partner.tolist())) > 100  # drawn over the mineral, not one fixed row
    _, none = same_mineral_partners(y, rows, rng, 0.0)
    assert np.all(none == 1.0)
    _, half = same_mineral_partners(y, rows, rng, 0.5)
    assert 0.35 < np.mean(half < 1.0) < 0.65
    with pytest.raises(ValueError, match="mix_same must be in"):
        TrainConfig(mix_same=1.5)


def test_training_sees_same_mineral_mixtures(monkeypatch, synthetic_data) -> None:
    """Each spectrum the trainer mixes is a convex combination of a training spectrum and
    another of the same mineral (checked row by row); the soft targets are mixed with the
    same weights. Without the option nothing is mixed."""
    Xtr, ytr = synthetic_data.part("train")
    Xva, yva = synthetic_data.part("val")
    k = len(synthetic_data.labels)
    calls = []
    real = tt.same_mineral_partners

    def spy(y, rows, rng, p):
        out = real(y, rows, rng, p)
        calls.append((np.asarray(y).copy(), *out))
        return out

    monkeypatch.setattr(tt, "same_mineral_partners", spy)
    seen = []
    real_mix = tt.mix_rows
    monkeypatch.setattr(tt, "mix_rows", lambda lam, a, b: seen.append((a.copy(), b.copy()))
                        or real_mix(lam, a, b))
    batches = record_steps(monkeypatch)
    teacher = np.random.default_rng(1).dirichlet(np.ones(k), size=len(ytr)).astype(np.float32)
    tc = TrainConfig(epochs=1, teachers=0, distill=0.5, qat_epochs=0, outlier_exposure=0.0,
                     mix_same=1.0, augment=tt.AugmentConfig(), batch_size=64)
    tt.train_model(Xtr, ytr, Xva, yva, k, TINY, tc, teacher_probs=teacher, log=None)
    (y_drawn, partner, lam), = calls
    assert np.all(ytr[partner] == y_drawn)
    (xa, xp), (ta, tp) = seen  # spectra, then targets (no background augmentation here)
    order = np.random.default_rng([0, 0]).permutation(len(ytr))  # epoch 0's draw
    np.testing.assert_array_equal(xa, Xtr[order])
    np.testing.assert_array_equal(xp, Xtr[partner])
    soft = 0.5 * np.eye(k, dtype=np.float32)[ytr] + 0.5 * teacher  # distill = 0.5
    np.testing.assert_allclose(ta, soft[order], rtol=1e-6)
    np.testing.assert_allclose(tp, soft[partner], rtol=1e-6)
    # what the trainer steps on: the mixtures, max 1 again, and their mixed targets
    mixed = lam * Xtr[order] + (1 - lam) * Xtr[partner]
    x0, y0 = batches[0]
    np.testing.assert_allclose(x0, (mixed / mixed.max(axis=1, keepdims=True))[:64], rtol=1e-5)
    np.testing.assert_allclose(y0, (lam * soft[order] + (1 - lam) * soft[partner])[:64],
                               rtol=1e-5)
    calls.clear()
    seen.clear()
    batches.clear()
    tt.train_model(Xtr, ytr, Xva, yva, k, TINY, TrainConfig(
        epochs=1, teachers=0, distill=0.0, qat_epochs=0, outlier_exposure=0.0,
        augment=tt.AugmentConfig()), log=None)
    assert calls == [] and seen == []
