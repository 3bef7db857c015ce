"""Training the pooled 1D CNN with the paper's recipe, seeded and reproducible.

Recipe (Soysal et al. 2025): class-weighted cross-entropy, Adam (lr 1e-3), learning rate x0.7
after ``lr_patience`` = 3 epochs without improvement of the validation metric, early stop after
``early_stop_patience`` = 5 such epochs, best weights restored.

The epoch loop (:func:`fit_model`, the one loop of every supervised training: the recipe's
:func:`train_model`, its teachers, the int8-aware fine-tune and the few-label fine-tune of
:mod:`trainer.ssl`) is written out here instead of using Keras callbacks so that every
epoch's data (shuffle order and augmentation) is a pure function of ``(seed, epoch)``: each
epoch draws a permutation and an augmented copy in numpy and runs ``train_on_batch`` over it
(no ``tf.data`` pipeline, so nothing is prefetched or reordered behind our back). The plateau
and early-stopping rules (:class:`Plateau`, shared with the SGAN's adversarial loop) are those
of ``keras.callbacks.ReduceLROnPlateau`` / ``EarlyStopping`` (``min_delta``, ``cooldown=0``).

Reproducibility: :func:`seed_everything` calls ``keras.utils.set_random_seed`` and
``tf.config.experimental.enable_op_determinism`` (when ``TrainConfig.deterministic``), so two
runs with the same config, data and TensorFlow build give bit-identical weights on CPU (checked
in ``tests/test_train.py``). Different machines/CPU instruction sets (oneDNN kernels) can still
round differently.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ramanedge.options import check_options, option
from trainer.augment import (
    AugmentConfig,
    augment_batch,
    crop_rows,
    renormalise,
    row_peaks,
    shift_rows,
    split_background,
)
from trainer.model import FEATURES_LAYER, PROBS_LAYER, ModelConfig, build_model

MONITORS = ("val_loss", "val_accuracy")
Log = Callable[[str], None] | None
"""Where progress lines go (``print``, a list's ``append``, ...); ``None`` = silence."""
FLIGHT_AUGMENT = AugmentConfig(shift_cm=30, background=0.5, noise_std=0.01, baseline=0.1,
                               scale=0.1, crop=0.3)
"""The flight recipe's augmentation: shifts up to +-30 cm-1 (the paper's tolerance range),
swapped fluorescence backgrounds, noise, baseline drift, an intensity ramp and, for 30 % of
the spectra, a partial-coverage crop (an instrument seeing only part of the grid; chosen on
validation over cut windows, docs/results.md section 8)."""
FLIGHT_AUGMENT_V1 = replace(FLIGHT_AUGMENT, crop=0.0)
"""The flight augmentation before partial-coverage training (the recipe of the 5-split
figures in docs/results.md section 0: ``benchmarks.flight_eval --recipe flight-v1``)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule, stopping and augmentation settings, stored with every run.

    The defaults are the project's default recipe (chosen on the validation split, see
    ``docs/parts/results_training.md``): the paper's loss (class-weighted cross-entropy),
    optimiser (Adam 1e-3) and LR factor (x0.7), with more patience (LR x0.7 after 5 epochs
    without improvement, stop after 25, at most 200 epochs), selection on validation
    *accuracy*, and augmentation: a random x-shift of up to 12 cm-1 and, for half of the
    spectra, another training spectrum's fluorescence background (``shift=12,background=0.5``).
    :data:`PAPER_TRAIN` is the paper's recipe exactly (patience 3/5 on validation loss, no
    augmentation).
    """

    epochs: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_factor: float = 0.7
    lr_patience: int = 5
    early_stop_patience: int = 25
    min_lr: float = 1e-6
    min_delta: float = 1e-4
    monitor: str = "val_accuracy"
    class_weighting: bool = True
    seed: int = 0
    deterministic: bool = True
    distill: float = 0.5
    """Weight of the teacher's probabilities in the training targets (knowledge distillation;
    0 = off). With a teacher the target of spectrum i is ``(1 - distill) * onehot(y_i) +
    distill * teacher_i``, where ``teacher_i`` is the teacher (ensemble mean) on the *clean*
    training spectrum: the student learns to answer for a shifted / augmented view what the
    teacher answers for the clean one. Cross-entropy on such soft targets is the KL
    distillation loss at temperature 1 up to a constant."""
    teachers: int = 3
    """Teacher models trained first (same architecture and recipe but
    :data:`TEACHER_AUGMENT`, seeds ``seed * 1000 + 1 + i``) whose mean probabilities are
    distilled into this model with weight :attr:`distill` (see :func:`train_teachers`).
    0 = none, unless teacher runs are passed in."""
    teacher_folds: bool = False
    """Cross-fit the teachers (needs ``teachers`` >= 2 and the training spectra's specimen
    ids): the training specimens are dealt to ``teachers`` folds (:func:`teacher_fold_ids`),
    teacher ``i`` trains on every fold but ``i``, and a training spectrum's teacher target is
    the answer of the teacher that never saw its specimen, not the ensemble's answer on a
    spectrum it trained on (which is close to its label). A spectrum whose mineral the
    out-of-fold teacher never saw (all of the mineral's training specimens in one fold)
    gets the mean of the teachers that did."""
    distill_views: bool = False
    """Function matching (Beyer et al. 2022, "patient and consistent" distillation): every
    epoch the teachers answer the student's own augmented view, with its random shift undone
    (so they see band positions they were trained on), instead of the clean training
    spectrum once; the target is ``(1 - distill) * onehot(y) + distill * that answer``. On
    their own training spectra the teachers answer close to the label (mean p 0.956 on
    grouped split 0), so the clean targets are mostly label smoothing; on augmented views
    they are less sure (0.869, ``benchmarks.teacher_targets --views``). Needs ``distill`` > 0
    and the teachers themselves: the ones a run trains or teacher runs given with
    ``--teacher`` (not cross-fitted). The int8-aware fine-tune then distils from its float
    model the same way. Measured as recipe ``flight-fm``: validation +0.49 points over 5
    grouped splits, just short of the +0.5 its rule asked (docs/parts/flight.md, "Function
    matching"); off by default."""
    distill_uncropped: bool = False
    """With :attr:`distill_views`: the teachers see each view before its partial-coverage
    crop (``augment.crop``), so the student learns to answer a cropped spectrum as the
    teachers answer the whole one. The teachers never trained on crops: the default's three
    teachers of grouped split 0 are right on 77.7 % of cropped views of their training
    spectra and on 98.2 % of the other views (``benchmarks.teacher_targets --views 3``).
    Measured as recipe ``flight-fm-full``: validation +0.60 points over 5 grouped splits but
    higher on only 3 (the rule asked for 4), test −0.3: not adopted (docs/parts/flight.md,
    "Function matching")."""
    mix_same: float = 0.0
    """Probability that a drawn training spectrum is mixed with another training spectrum of
    the same mineral (0 = off): ``lam * x_i + (1 - lam) * x_j``, ``lam ~ U(0.5, 1)``, max
    re-normalised, its target mixed alike (distillation targets differ within a mineral),
    before the run's augmentation. A stand-in for the specimens the data set does not have
    (docs/parts/flight.md, "Same-mineral mixing": measured, rejected). The teachers a run
    trains and its int8-aware fine-tune inherit it."""
    ema: float = 0.0
    """Per-step decay of an exponential moving average of the weights (0 = off). With EMA,
    validation, best-epoch selection and the saved model use the averaged weights; the
    teachers a run trains, its int8-aware fine-tune and its refit inherit it. The average
    warms up (:func:`ema_decay`) and is bias-corrected (:func:`ema_read`), since 2026-12-07
    night: before, a fixed decay from the initial weights collapsed the default recipe on a
    small data set, and bias correction alone did too (rules (E2), (E3)). 0.99
    passed rule (E) for training seed 0 on the full data set, seed 1 did not repeat it, and
    it flagged fewer unseen minerals, so it is not the default (docs/parts/flight.md, "An
    average of the weights"); opt in with ``ramanedge train --ema``. The paper's recipes and
    few-label training keep 0."""
    ema_warmup: bool = True
    """How :attr:`ema` averages: with the warm-up and bias correction (:func:`ema_decay`,
    :func:`ema_read`; since 2026-12-07 night). A run written before that, with ``ema`` > 0,
    reads as ``False``: a fixed decay from the initial weights, which is no longer trained
    (such a run cannot be refitted or retrained as it was)."""
    qat_epochs: int = 10
    """Epochs of int8-aware fine-tuning after training (0 = off; flight models only: ReLU6
    and an input floor). The trained model is folded into the network the converter builds
    and trained with TFLite's int8 roundings in the forward pass
    (:func:`trainer.qat.quantization_aware_finetune`); that network is the run's model."""
    qat_learning_rate: float = 1e-4
    """Learning rate of the int8-aware fine-tuning."""
    outlier_exposure: float = 0.5
    """Weight of the outlier-exposure loss (0 = off): spectra of minerals outside the label
    set (the *negatives* half of the rare minerals, :func:`ramanedge.splits.unknown_halves`)
    are trained towards the uniform distribution over the known classes (Hendrycks et al.
    2019), so that unknown minerals get flat, low-confidence answers and features away from
    the known ones. Each such spectrum's loss weighs ``outlier_exposure`` times a known
    spectrum's mean weight. Default 0.5 (Hendrycks et al.'s value, not tuned; measured over
    5 grouped splits in docs/results.md section 4: unknown-mineral AUROC up, known top-1
    not down). :func:`trainer.run.train_run` loads the negatives; a data set without rare
    minerals trains without (said in one line). The logged *training* accuracy then counts
    the negatives too (their uniform target scores as class 0): read the validation figures."""
    negatives_ratio: float = 0.25
    """Negatives drawn per epoch (with outlier exposure), as a fraction of the known spectra
    drawn; augmented like them."""
    objectosphere: float = 0.0
    """Weight of the objectosphere loss (Dhamija et al. 2018; 0 = off). A part of outlier
    exposure: it uses its negatives and is off when it is off. On top of their uniform
    targets, the negatives' penultimate features (layer ``features``) are pulled to length 0
    and the known spectra's pushed to at least :attr:`objectosphere_xi`, so that the
    features' length (the third part of the ``knn_logit_norm`` unknown rule) separates known
    from unknown minerals. The loss of one spectrum is ``max(xi - |f|, 0)**2 / xi**2`` if
    known, ``|f|**2 / xi**2`` if a negative, weighted like its cross-entropy."""
    objectosphere_xi: float = 10.0
    """The objectosphere's target feature length for known spectra (see
    :attr:`objectosphere`). Scale it to the model: the runs measured in docs/results.md
    section 4 used 15, the flight default's mean known validation length."""
    background_class: bool = False
    """Train outlier exposure's negatives as a background class (a (K+1)-th output, Dhamija
    et al. 2018's "background" baseline) instead of towards the uniform distribution. A part
    of outlier exposure (off when it is off); exclusive with :attr:`objectosphere`. The
    known head stays K-class: the background unit (a weight vector on the head's input and
    a bias) is trained beside it in a (K+1)-way softmax (:func:`background_view`) and kept
    in :attr:`TrainResult.background` (a run writes it to ``background_unit.json``), so the
    exported network and everything downstream are unchanged; the unit's logit gives the
    open-set probes a score (``benchmarks.ood_variants``). Known spectra's targets get 0
    on the background class, the negatives' are 1 on it."""
    augment: AugmentConfig = field(default_factory=lambda: FLIGHT_AUGMENT)

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.learning_rate < math.inf:
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        if not 0 < self.lr_factor <= 1:
            raise ValueError(f"lr_factor must be in (0, 1], got {self.lr_factor}")
        if self.lr_patience < 1 or self.early_stop_patience < 1:
            raise ValueError("lr_patience and early_stop_patience must be >= 1")
        if self.teachers < 0:
            raise ValueError(f"teachers must be >= 0, got {self.teachers}")
        if not isinstance(self.teacher_folds, bool):
            raise ValueError(f"teacher_folds must be true or false, got {self.teacher_folds!r}")
        if self.teacher_folds and self.teachers < 2:
            raise ValueError(f"teacher_folds needs teachers >= 2 (one fold per teacher), got "
                             f"teachers={self.teachers}")
        if self.teacher_folds and self.distill == 0:
            raise ValueError("teacher_folds needs distill > 0 (the teachers' answers are only "
                             "used for distillation)")
        if not isinstance(self.distill_views, bool):
            raise ValueError(f"distill_views must be true or false, got {self.distill_views!r}")
        if self.distill_views and self.distill == 0:
            raise ValueError("distill_views needs distill > 0 (the teachers' answers are only "
                             "used for distillation)")
        if self.distill_views and self.teacher_folds:
            raise ValueError("distill_views and teacher_folds are alternative teacher targets: "
                             "set one of them, not both")
        if not isinstance(self.distill_uncropped, bool):
            raise ValueError(f"distill_uncropped must be true or false, got "
                             f"{self.distill_uncropped!r}")
        if self.distill_uncropped and not self.distill_views:
            raise ValueError("distill_uncropped is a part of function matching: it needs "
                             "distill_views")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be in [0, 1], got {self.distill}")
        if self.qat_epochs < 0:
            raise ValueError(f"qat_epochs must be >= 0, got {self.qat_epochs}")
        if not 0 < self.qat_learning_rate < math.inf:
            raise ValueError(f"qat_learning_rate must be a finite number > 0, got "
                             f"{self.qat_learning_rate}")
        if not 0.0 <= self.mix_same <= 1.0:
            raise ValueError(f"mix_same must be in [0, 1], got {self.mix_same}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not isinstance(self.ema_warmup, bool):
            raise ValueError(f"ema_warmup must be true or false, got {self.ema_warmup!r}")
        if not 0.0 <= self.outlier_exposure < math.inf:
            raise ValueError(f"outlier_exposure must be a finite number >= 0, got "
                             f"{self.outlier_exposure}")
        if not 0.0 < self.negatives_ratio <= 4.0:
            raise ValueError(f"negatives_ratio must be in (0, 4], got {self.negatives_ratio}")
        if not 0.0 <= self.objectosphere < math.inf:
            raise ValueError(f"objectosphere must be a finite number >= 0, got "
                             f"{self.objectosphere}")
        if not 0.0 < self.objectosphere_xi < math.inf:
            raise ValueError(f"objectosphere_xi must be a finite number > 0, got "
                             f"{self.objectosphere_xi}")
        if not isinstance(self.background_class, bool):
            raise ValueError(f"background_class must be true or false, got "
                             f"{self.background_class!r}")
        if self.background_class and self.objectosphere > 0:
            raise ValueError("background_class and objectosphere are alternative open-set "
                             "losses: set one of them, not both")
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))

    def to_dict(self) -> dict:
        """JSON-ready form (``augment`` as a nested dict)."""
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if "augment" in d:
            d["augment"] = AugmentConfig.from_dict(d["augment"])
        d.setdefault("qat_epochs", 0)  # runs written before int8-aware fine-tuning existed
        d.setdefault("outlier_exposure", 0.0)  # ... and before outlier exposure
        d.setdefault("objectosphere", 0.0)  # ... and before the objectosphere loss
        d.setdefault("background_class", False)  # ... and before the background class
        d.setdefault("teacher_folds", False)  # ... and before cross-fitted teachers
        d.setdefault("mix_same", 0.0)  # ... and before same-mineral mixing
        d.setdefault("distill_views", False)  # ... and before function matching
        d.setdefault("distill_uncropped", False)
        d.setdefault("ema", 0.0)  # ... and before the moving average had a key
        # ... and before it warmed up: a run that averaged then did so from the initial weights
        d.setdefault("ema_warmup", not d["ema"])
        return cls(**d)


PAPER_TRAIN = TrainConfig(epochs=100, lr_patience=3, early_stop_patience=5, monitor="val_loss",
                          augment=AugmentConfig(), teachers=0, distill=0.0, qat_epochs=0,
                          outlier_exposure=0.0)
"""The paper's recipe: class-weighted CE, Adam 1e-3, LR x0.7 after 3, stop after 5 (val loss)."""
PAPER_FAMILY_TRAIN = TrainConfig(augment=AugmentConfig(shift_cm=12, background=0.5), teachers=0,
                                 distill=0.0, qat_epochs=0, outlier_exposure=0.0)
"""The recipe the paper family's sweep and experiments were measured with (the project default
before the flight model): shift up to 12 cm-1 and swapped backgrounds, patience 5/25 on
validation accuracy."""
RECIPES = {"default": TrainConfig(), "paper": PAPER_TRAIN, "paper-family": PAPER_FAMILY_TRAIN}


TEACHER_AUGMENT = AugmentConfig(shift_cm=12, background=0.5)
"""Teachers train with mild shifts: accurate on calibrated spectra, while the student learns
(with ``shift_cm`` up to 30) to give their clean-spectrum answers for shifted ones."""


@dataclass(frozen=True)
class PseudoLabelConfig:
    """FixMatch-style pseudo-labelling of unlabelled spectra (Sohn et al. 2020), per epoch.

    Every epoch draws ``ratio`` x as many unlabelled spectra as labelled ones, predicts them
    on a *weak* view (a shift of up to ``weak_shift_cm``), keeps those whose top probability
    reaches ``threshold`` and trains on a *strong* view of them (the run's own augmentation)
    towards that top class, with ``weight`` x the mean labelled weight. FixMatch refreshes
    its targets at every step; here they are refreshed once per epoch (one prediction pass,
    so the epoch loop stays the trainer's own).
    """

    # the ranges of the former hand-written checks ((0, 1], > 0, (0, 8], 0..100), with the
    # open ends closed just above 0
    threshold: float = option(0.95, within=(1e-6, 1.0))
    weight: float = option(1.0, within=(1e-6, None))
    ratio: float = option(1.0, within=(1e-6, 8.0))
    weak_shift_cm: int = option(4, within=(0, 100))

    def __post_init__(self) -> None:
        check_options(self, what="pseudo-labelling")


def _mix_in(rng: np.random.Generator, batch: tuple[np.ndarray, np.ndarray, np.ndarray],
            extra: tuple[np.ndarray, np.ndarray, np.float32]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An epoch's ``(spectra, targets, weights)`` with ``extra`` spectra and targets (all of
    weight ``extra[2]``) shuffled in: outlier-exposure negatives and pseudo-labelled spectra
    enter the epoch the same way."""
    (xb, yb, wb), (xe, ye, w) = batch, extra
    mix = rng.permutation(xb.shape[0] + xe.shape[0])
    return (np.concatenate([xb, xe])[mix], np.concatenate([yb, ye])[mix],
            np.concatenate([wb, np.full(xe.shape[0], w, np.float32)])[mix])


def objectosphere_view(model: Any) -> Any:
    """A two-output view of ``model`` (same layers and weights): its probabilities and its
    penultimate features (layer ``features``), for the objectosphere loss."""
    import keras

    return keras.Model(model.inputs, [model.outputs[0], model.get_layer(FEATURES_LAYER).output],
                       name=f"{model.name}_objectosphere")


BACKGROUND_LAYER = "background"
"""Name of the layer of :func:`background_view` that holds the background unit."""


def background_view(model: Any, init: tuple[np.ndarray, float] | None = None) -> Any:
    """A (K+1)-way view of the K-class ``model`` for background-class training: its head
    (layer ``probs``: kernel (D, K), bias (K,)) shares its weights with a layer
    (:data:`BACKGROUND_LAYER`) that adds one background logit ``x @ w + b`` on the head's
    input ``x`` and applies the softmax over the K + 1 logits. Training the view trains
    ``model``'s layers; the background unit ``(w (D,), b)`` lives only in the view
    (:func:`background_unit`). ``init``: a unit to start from (a fine-tune continuing a
    trained run); default a Glorot-uniform ``w`` and ``b = 0``."""
    import keras
    from keras import ops

    head = model.get_layer(PROBS_LAYER)
    if head.activation is not keras.activations.softmax or not head.use_bias:
        raise ValueError(f"background_view needs a softmax Dense head with a bias as layer "
                         f"{PROBS_LAYER!r}; {model.name} has another")

    class BackgroundHead(keras.layers.Layer):
        """The head's K logits and a background logit, softmax over all K + 1."""

        def __init__(self, known: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.known = known  # tracked: its kernel and bias train through this layer

        def build(self, input_shape: Any) -> None:
            self.unit_kernel = self.add_weight(shape=(int(input_shape[-1]), 1),
                                               initializer="glorot_uniform", name="kernel")
            self.unit_bias = self.add_weight(shape=(1,), initializer="zeros", name="bias")

        def call(self, x: Any) -> Any:
            logits = ops.matmul(x, self.known.kernel) + self.known.bias
            extra = ops.matmul(x, self.unit_kernel) + self.unit_bias
            return ops.softmax(ops.concatenate([logits, extra], axis=-1), axis=-1)

    layer = BackgroundHead(head, name=BACKGROUND_LAYER)
    view = keras.Model(model.inputs, layer(head.input), name=f"{model.name}_background")
    if init is not None:
        w, b = init
        w = np.asarray(w, dtype=np.float32)
        if w.shape != (layer.unit_kernel.shape[0],):
            raise ValueError(f"background unit must be a vector of {layer.unit_kernel.shape[0]} "
                             f"weights, got shape {w.shape}")
        layer.unit_kernel.assign(w.reshape(-1, 1))
        layer.unit_bias.assign(np.asarray([b], dtype=np.float32))
    return view


def background_unit(view: Any) -> tuple[np.ndarray, float]:
    """The background unit ``(w (D,), b)`` of a :func:`background_view`, as float32 / float."""
    layer = view.get_layer(BACKGROUND_LAYER)
    return (np.asarray(layer.unit_kernel.numpy(), dtype=np.float32).reshape(-1),
            float(np.asarray(layer.unit_bias.numpy()).reshape(-1)[0]))


def objectosphere_loss(xi: float) -> Callable[[Any, Any], Any]:
    """The objectosphere loss (Dhamija et al. 2018) of features ``f`` (B, D) given a known flag
    (B, 1): ``max(xi - |f|, 0)**2`` for a known spectrum (flag 1), ``|f|**2`` for a negative
    (flag 0), both divided by ``xi**2`` so that its weight does not depend on the scale."""
    from keras import ops

    def objectosphere(flag: Any, features: Any) -> Any:
        known = ops.cast(flag[:, 0], features.dtype)
        sq = ops.sum(ops.square(features), axis=-1)
        length = ops.sqrt(sq + 1e-12)
        short = ops.square(ops.relu(xi - length))
        return (known * short + (1.0 - known) * sq) / (xi * xi)

    return objectosphere


@dataclass
class TrainResult:
    """What :func:`train_model` returns: the model with the best weights restored (with a
    fixed ``schedule``: its final weights) and its log."""

    model: Any
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    seconds: float
    teachers: list[dict[str, Any]] = field(default_factory=list)
    """One summary per teacher trained for distillation (empty without; see
    :func:`train_teachers`)."""
    background: tuple[np.ndarray, float] | None = None
    """The background unit ``(w (D,), b)`` of background-class training (``None`` without;
    :attr:`TrainConfig.background_class`)."""
    labels: np.ndarray | None = None
    """Few-label training (:func:`trainer.ssl.train_ssl`): the training labels the model was
    fitted to, ``-1`` for the spectra it saw unlabelled (the given labels plus the library's
    names); ``None`` outside few-label training."""


def ema_decay(decay: float, step: int) -> float:
    """The moving average's decay at optimiser step ``step`` (0, 1, ...): ``min(decay, (1 +
    step) / (10 + step))``, the warm-up of TF's ``ExponentialMovingAverage(num_updates=...)``.
    Early on the average spans about the last ``(10 + step) / 9`` steps, so a short run (a few
    steps an epoch) does not average weights from before and after its network left a constant
    answer (it did with a fixed 0.99: rule (E2), docs/parts/flight.md)."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


def ema_read(average: Sequence[np.ndarray], mass: float) -> list[np.ndarray]:
    """The bias-corrected moving average of the weights: ``average`` (accumulated from zero
    as ``a = d_t a + (1 - d_t) w_t`` at each step, ``d_t`` = :func:`ema_decay`) divided by
    ``mass = 1 - prod(d_t)``, the sum of its weights on the trained weights (after one step:
    exactly that step's weights)."""
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"the moving average needs at least one step (mass in (0, 1]), got "
                         f"{mass}")
    return [(a * (1.0 / mass)).astype(np.float32) for a in average]


def distillation_targets(y: np.ndarray, teacher: np.ndarray, distill: float) -> np.ndarray:
    """The distilled training targets ``(1 - distill) one-hot(y) + distill teacher``
    (float32, the shape of ``teacher``: one row of K probabilities per label)."""
    teacher = np.asarray(teacher, dtype=np.float32)
    return ((1.0 - distill) * np.eye(teacher.shape[1], dtype=np.float32)[y]
            + distill * teacher).astype(np.float32)


def train_teachers(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    groups: np.ndarray | None = None,
    models: list[Any] | None = None,
    backbone: dict[str, list[np.ndarray]] | None = None,
    schedules: Sequence[Sequence[float]] | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Train ``train_config.teachers`` teacher models; return their mean probabilities on the
    (clean) training spectra and one summary per teacher: seed, epochs run, the epoch whose
    weights were kept (``best_epoch``), the learning rate of every epoch run (``lr``), val
    top-1. The trained models are appended to ``models`` when given (function matching asks
    them again every epoch: :attr:`TrainConfig.distill_views`).

    ``schedules``: one list of learning rates per teacher (a validated run's ``lr`` cut at
    its ``best_epoch``): each teacher trains exactly those epochs and keeps its final
    weights (a refit on training + validation, :func:`trainer.run.refit_run`; ``X_val`` is
    then only logged).

    Teachers see only the training split (validation drives their early stopping), so the
    distilled student never learns from spectra it is later judged on. With
    :attr:`TrainConfig.teacher_folds` (``groups``: the specimen id of each training
    spectrum) each spectrum gets its out-of-fold teacher's probabilities instead.
    ``backbone``: every teacher starts from these pretrained weights (see :func:`train_model`).
    """
    n = train_config.teachers
    if schedules is not None and len(schedules) != n:
        raise ValueError(f"schedules: one per teacher ({n}), got {len(schedules)}")
    fold = None
    if train_config.teacher_folds:
        if groups is None:
            raise ValueError("teacher_folds needs the specimen id of each training spectrum "
                             "(groups)")
        fold = teacher_fold_ids(y_train, groups, n, seed=train_config.seed)
    probs, seen, info = [], [], []
    for i in range(n):
        tc = replace(train_config, teachers=0, distill=0.0, teacher_folds=False,
                     distill_views=False, distill_uncropped=False,
                     augment=TEACHER_AUGMENT, seed=train_config.seed * 1000 + 1 + i)
        rows = np.ones(len(y_train), dtype=bool) if fold is None else fold != i
        res = train_model(X_train[rows], y_train[rows], X_val, y_val, n_classes, model_config,
                          tc, backbone=backbone, log=None,
                          schedule=None if schedules is None else list(schedules[i]))
        val = float(np.mean(predict_probs(res.model, X_val).argmax(1) == y_val))
        probs.append(predict_probs(res.model, X_train))
        if models is not None:
            models.append(res.model)
        seen.append(np.isin(y_train, y_train[rows]))  # its mineral was among this teacher's
        info.append({"seed": tc.seed, "epochs": res.epochs_run, "best_epoch": res.best_epoch,
                     "lr": [float(v) for v in res.history["lr"]], "val_top1": val,
                     "seconds": round(res.seconds, 1),
                     **({} if fold is None else {"fold": i, "n_train": int(rows.sum())})})
        if log is not None:
            log(f"teacher {i + 1}/{n} (seed {tc.seed}"
                f"{'' if fold is None else f', fold {i} held out'}): val top-1 "
                f"{100 * val:.1f}% after {res.epochs_run} epochs ({res.seconds:.0f} s)")
    P = np.stack(probs)  # (teachers, N, K)
    if fold is None:
        return P.mean(axis=0).astype(np.float32), info
    return out_of_fold_targets(P, fold, np.stack(seen)), info


def same_mineral_partners(y: np.ndarray, rows: Sequence[np.ndarray], rng: np.random.Generator,
                          p: float) -> tuple[np.ndarray, np.ndarray]:
    """For each drawn spectrum of class ``y[i]``: a partner row of the same class (``rows[c]``:
    the training rows of class ``c``) and a weight ``lam`` (N, 1), drawn from ``U(0.5, 1)``
    with probability ``p`` and 1 otherwise (no mixing). :attr:`TrainConfig.mix_same`."""
    y = np.asarray(y)
    u = rng.random(y.size)
    partner = np.array([rows[c][int(k * len(rows[c]))] for c, k in zip(y, u, strict=True)],
                       dtype=np.int64)
    lam = np.where(rng.random(y.size) < p, rng.uniform(0.5, 1.0, y.size), 1.0)
    return partner, lam[:, None]


def mix_rows(lam: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``lam * a + (1 - lam) * b`` row by row (``lam`` (N, 1)): spectra, their background-free
    parts and their targets are mixed with the same weights."""
    return lam * a + (1.0 - lam) * b


def teacher_fold_ids(y: np.ndarray, groups: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each training spectrum for cross-fitted teachers: every
    mineral's specimens, in an order drawn from ``seed``, are dealt round-robin to the ``k``
    folds, the deal carrying on from one mineral to the next (so a mineral with ``k`` or more
    specimens has some in every fold and the folds stay within a specimen of each other's
    size); all spectra of one specimen share its fold."""
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    if y.shape != groups.shape:
        raise ValueError(f"groups must hold one specimen id per spectrum: {groups.shape} for "
                         f"{y.shape}")
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    rng = np.random.default_rng(seed)
    fold = np.empty(y.shape, dtype=np.int64)
    dealt = 0
    for c in np.unique(y):
        specimens = np.unique(groups[y == c])
        rng.shuffle(specimens)
        for s in specimens:
            fold[groups == s] = dealt % k
            dealt += 1
    return fold


def out_of_fold_targets(probs: np.ndarray, fold: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Cross-fitted teacher targets: spectrum ``n`` gets ``probs[fold[n], n]`` (the teacher
    that held its fold out), or the mean over the teachers with ``seen[i, n]`` (its mineral
    among their training spectra) when the out-of-fold teacher never saw its mineral.
    ``probs`` (T, N, K), ``fold`` (N,), ``seen`` (T, N) bool."""
    n = np.arange(probs.shape[1])
    out = probs[fold, n].astype(np.float64)
    lost = ~seen[fold, n]
    if lost.any():
        w = seen[:, lost].astype(np.float64)  # (T, n_lost); a spectrum's own teachers saw it
        out[lost] = (probs[:, lost] * w[..., None]).sum(axis=0) / w.sum(axis=0)[:, None]
    return out.astype(np.float32)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced class weights ``n / (k * n_c)`` over the ``k`` classes present in ``y``.

    Classes absent from ``y`` get weight 0 (they contribute no training sample anyway). A
    perfectly balanced ``y`` gives all ones; the weighted sample count of every present
    class is the same, ``n / k``.
    """
    y = np.asarray(y, dtype=np.int64)
    if y.size == 0:
        raise ValueError("cannot compute class weights of an empty label array")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be in 0..{n_classes - 1}")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes, dtype=np.float64)
    w[present] = y.size / (present.sum() * counts[present])
    return w


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and TensorFlow; optionally force deterministic TF kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def ensemble_fn(models: Sequence[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The mean probabilities of ``models`` as a function of a batch of spectra (N, P)."""
    if not models:
        raise ValueError("an ensemble needs at least one model")

    def probs(X: np.ndarray) -> np.ndarray:
        return np.mean([predict_probs(m, X) for m in models], axis=0).astype(np.float32)

    return probs


def predict_probs(model: Any, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Softmax outputs of ``model`` for ``X`` (N, 1392) in inference mode, float32 (N, K)."""
    X = np.asarray(X, dtype=np.float32)
    if X.shape[0] == 0:
        return np.zeros((0, int(model.output_shape[-1])), dtype=np.float32)
    outs = [np.asarray(model.predict_on_batch(X[i:i + batch_size]))
            for i in range(0, X.shape[0], batch_size)]
    return np.concatenate(outs).astype(np.float32)


def val_logs(probs: np.ndarray, y_val: np.ndarray) -> dict[str, float]:
    """``val_loss`` (mean cross-entropy, probabilities clipped at 1e-7) and ``val_accuracy``
    of validation probabilities (N, K) against the labels."""
    p = probs[np.arange(y_val.size), y_val]
    return {"val_loss": float(-np.mean(np.log(np.clip(p, 1e-7, 1.0)))),
            "val_accuracy": float(np.mean(probs.argmax(1) == y_val))}


def epoch_line(epoch: int, epochs: int, logs: dict[str, float], seconds: float) -> str:
    """One human-readable progress line for an epoch."""
    return (f"epoch {epoch:3d}/{epochs}  loss {logs['loss']:.4f}  acc {logs['accuracy']:.3f}  "
            f"val_loss {logs['val_loss']:.4f}  val_acc {logs['val_accuracy']:.3f}  "
            f"lr {logs['lr']:.2e}  {seconds:.1f}s")


def check_sets(X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray,
               y_val: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The training and validation sets as contiguous float32 spectra (N, P) and int64
    labels; ``ValueError`` when either set is empty or its spectra and labels do not match."""
    out = []
    for what, X, y in (("training set", X_train, y_train), ("validation set", X_val, y_val)):
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"{what}: spectra {X.shape} and labels {y.shape} do not match")
        out += [X, y]
    if out[0].shape[0] == 0 or out[2].shape[0] == 0:
        raise ValueError("training and validation sets must both be non-empty")
    return out[0], out[1], out[2], out[3]


def _check_schedule(schedule: list[float] | None) -> None:
    if schedule is not None and (len(schedule) == 0 or not all(float(v) > 0 for v in schedule)):
        raise ValueError("schedule must be a non-empty list of learning rates > 0")


class Plateau:
    """The learning-rate plateau, early-stopping and best-epoch rules of every training loop.

    Those of ``keras.callbacks.ReduceLROnPlateau`` / ``EarlyStopping`` (``min_delta``,
    ``cooldown=0``) on ``train_config.monitor``: the rate is multiplied by ``lr_factor``
    (not below ``min_lr``) after ``lr_patience`` epochs without an improvement of more than
    ``min_delta``, and training stops after ``early_stop_patience`` epochs without a new best.
    """

    def __init__(self, tc: TrainConfig) -> None:
        self.tc = tc
        self.higher = tc.monitor == "val_accuracy"
        self.best = -math.inf if self.higher else math.inf
        self.best_epoch = 0
        self.lr = float(tc.learning_rate)
        self.wait_lr = self.wait_stop = 0

    def update(self, value: float, epoch: int) -> tuple[bool, bool, bool]:
        """Feed one epoch's monitored value; returns ``(improved, lr_changed, stop)``."""
        tc = self.tc
        if not math.isfinite(value):
            raise FloatingPointError(f"{tc.monitor} became {value} at epoch {epoch}")
        better_lr = value > self.best + tc.min_delta if self.higher \
            else value < self.best - tc.min_delta
        improved = value > self.best if self.higher else value < self.best
        if improved:
            self.best, self.best_epoch, self.wait_stop = value, epoch, 0
        else:
            self.wait_stop += 1
        changed = False
        if better_lr:
            self.wait_lr = 0
        else:
            self.wait_lr += 1
            if self.wait_lr >= tc.lr_patience and self.lr > tc.min_lr:
                self.lr = max(self.lr * tc.lr_factor, tc.min_lr)
                self.wait_lr, changed = 0, True
        return improved, changed, self.wait_stop >= tc.early_stop_patience


GRAPH_MIN_STEPS = 60
"""Custom training steps run as ``tf.function`` graphs from this many steps on; shorter runs
(tests) stay eager, where tracing would cost more than it saves."""


def graph_step(step: Callable[..., Any], input_signature: list[Any], n_steps: int
               ) -> Callable[..., Any]:
    """``step`` as a ``tf.function`` with ``input_signature`` when it will run at least
    :data:`GRAPH_MIN_STEPS` times (``n_steps``), else ``step`` itself (eager)."""
    if n_steps < GRAPH_MIN_STEPS:
        return step
    import tensorflow as tf

    return tf.function(step, input_signature=input_signature)


def train_model(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    init_weights: list[np.ndarray] | None = None,
    backbone: dict[str, list[np.ndarray]] | None = None,
    schedule: list[float] | None = None,
    teacher_probs: np.ndarray | None = None,
    negatives: np.ndarray | None = None,
    background_init: tuple[np.ndarray, float] | None = None,
    epoch_end: Callable[[Any], None] | None = None,
    groups: np.ndarray | None = None,
    teacher_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    epoch_samples: int | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Build and train the CNN; return it with the best (monitored) weights restored.

    ``log`` receives one line per epoch (``None`` for silence). ``X_val`` must not be empty:
    it drives the learning-rate schedule, early stopping and the choice of weights.
    ``init_weights`` (``model.get_weights()`` order and shapes) starts training from given
    weights instead of the seeded random initialisation. ``backbone`` (layer name -> weights,
    as :func:`trainer.ssl.check_backbone` returns them): the layers up to ``features`` start
    from a pretrained backbone, the head from the seeded initialisation; the teachers this
    call trains start from it too. ``schedule`` and ``epoch_end``: see :func:`fit_model`.
    ``teacher_probs`` (N_train, n_classes): a teacher's probabilities on the clean training
    spectra; with ``train_config.distill > 0`` they are mixed into the targets (see
    :attr:`TrainConfig.distill`). Without them, ``train_config.teachers`` teachers are trained
    first (:func:`train_teachers`); the reported ``seconds`` are the student's alone.
    ``negatives`` (M, P): spectra of minerals outside the label set, for outlier exposure
    (``train_config.outlier_exposure`` > 0, see :func:`fit_model`); teachers never see them.
    ``background_init``: see :func:`fit_model`. ``groups``: the specimen id of each training
    spectrum, for :attr:`TrainConfig.teacher_folds` (required then, unused otherwise).
    ``teacher_fn``: the teachers as a function of a batch of spectra (N, P) -> (N, K), for
    :attr:`TrainConfig.distill_views`; without it the teachers this call trains are used
    (one of the two is required then). ``epoch_samples``: spectra drawn per epoch (default
    ``len(X_train)``; see :func:`fit_model`).
    """
    model_config = model_config or ModelConfig()
    tc = train_config or TrainConfig()
    if init_weights is not None and backbone is not None:
        raise ValueError("init_weights and backbone both set the starting weights: pass one")
    X_train, y_train, X_val, y_val = check_sets(X_train, y_train, X_val, y_val)
    _check_schedule(schedule)
    soft = None
    teacher_info: list[dict[str, Any]] = []
    own: list[Any] = []
    if tc.distill > 0 and teacher_probs is None and tc.teachers > 0 and schedule is None:
        teacher_probs, teacher_info = train_teachers(X_train, y_train, X_val, y_val, n_classes,
                                                     model_config, tc, groups=groups,
                                                     models=own if tc.distill_views else None,
                                                     backbone=backbone, log=log)
    if tc.distill_views and teacher_fn is None:
        if not own:
            raise ValueError("distill_views needs the teachers themselves: teachers >= 1 "
                             "trained by this call, or teacher_fn")
        teacher_fn = ensemble_fn(own)
    if tc.distill > 0:
        if teacher_probs is None:
            raise ValueError("distill > 0 needs teachers: teachers >= 1 in the config, or the "
                             "teacher's probabilities on the training spectra (teacher_probs)")
        teacher = np.asarray(teacher_probs, dtype=np.float32)
        if teacher.shape != (X_train.shape[0], n_classes) or not np.all(np.isfinite(teacher)):
            raise ValueError(f"teacher_probs must be finite with shape "
                             f"({X_train.shape[0]}, {n_classes}), got {teacher.shape}")
        soft = distillation_targets(y_train, teacher, tc.distill)
    seed_everything(tc.seed, tc.deterministic)
    model = build_model(n_classes, model_config)
    if init_weights is not None:
        model.set_weights(init_weights)
    if backbone is not None:
        from trainer.contrastive import load_backbone

        load_backbone(model, backbone)
    result = fit_model(model, X_train, y_train, X_val, y_val, n_classes, tc, soft_targets=soft,
                       negatives=negatives, background_init=background_init,
                       schedule=schedule, epoch_end=epoch_end, epoch_samples=epoch_samples,
                       teacher_fn=teacher_fn if tc.distill_views else None, log=log)
    result.teachers = teacher_info
    return result


def fit_model(
    model: Any,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    train_config: TrainConfig,
    *,
    soft_targets: np.ndarray | None = None,
    negatives: np.ndarray | None = None,
    background_init: tuple[np.ndarray, float] | None = None,
    schedule: list[float] | None = None,
    epoch_samples: int | None = None,
    epoch_end: Callable[[Any], None] | None = None,
    unlabelled: np.ndarray | None = None,
    pseudo: PseudoLabelConfig | None = None,
    teacher_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """The epoch loop: train a K-class softmax ``model`` (fresh or pretrained; compiled here
    with Adam(``learning_rate``) and class-weighted cross-entropy) and restore its best weights.

    Every epoch draws a permutation and an augmented copy of the training spectra from
    ``(seed, epoch)`` alone, runs ``train_on_batch`` over it, validates, and applies the
    :class:`Plateau` rules on ``train_config.monitor``. ``soft_targets`` (N_train, K): train
    on these probabilities instead of the labels (distillation; class weights still from
    ``y_train``). ``negatives`` (M, P) with ``train_config.outlier_exposure`` > 0: every
    epoch also draws ``negatives_ratio`` x as many of these spectra (with replacement,
    augmented the same way) with the uniform distribution as their target and
    ``outlier_exposure`` x the mean known weight as their weight (outlier exposure); ignored
    when ``outlier_exposure`` is 0. ``epoch_samples``: spectra drawn per epoch (default
    ``len(X_train)``), concatenating fresh permutations (few-label training keeps the
    optimiser steps of an epoch equal at every labelled fraction). ``schedule`` (one learning
    rate per epoch, e.g. a validated run's ``history["lr"]`` cut at its best epoch) trains exactly
    ``len(schedule)`` epochs with those rates and keeps the final weights: no plateau rule,
    no early stopping, validation only logged (a refit on train + validation, see
    ``benchmarks.accuracy_experiments``). ``epoch_end(model)`` runs after each epoch's
    training steps, before validation (the int8-aware fine-tune recalibrates its grids there,
    so each epoch is judged on the grids its weights give). With ``train_config.ema``,
    validation, best-epoch selection and the kept weights use the averaged weights.
    ``unlabelled`` (U, P) with ``pseudo``: FixMatch-style pseudo-labels, refreshed every
    epoch (:class:`PseudoLabelConfig`); ``history["pseudo"]`` counts those kept per epoch.
    ``teacher_fn`` (spectra (N, P) -> probabilities (N, K)) with ``soft_targets``: function
    matching (:attr:`TrainConfig.distill_views`): every epoch the known spectra's targets
    become ``(1 - distill) * labels + distill * teacher_fn(view)``, ``view`` = the drawn,
    augmented spectrum with its shift undone (negatives and pseudo-labelled spectra keep
    theirs).
    With outlier exposure and ``train_config.objectosphere`` > 0 the steps also train the
    features' lengths (:func:`objectosphere_loss` on :func:`objectosphere_view`; the logged
    training loss then includes it, the validation loss does not) and ``model`` is returned
    uncompiled (its two-output view was compiled). With outlier exposure and
    ``train_config.background_class`` the steps train a (K+1)-way :func:`background_view`
    instead (negatives' target: the background class; ``model`` is returned uncompiled), the
    background unit starting from ``background_init`` when given; the unit of the kept
    epoch is returned in :attr:`TrainResult.background` (with EMA: the unit itself is not
    averaged).
    """
    import keras

    tc = train_config
    X_train, y_train, X_val, y_val = check_sets(X_train, y_train, X_val, y_val)
    _check_schedule(schedule)
    if y_train.min() < 0 or y_train.max() >= n_classes:
        raise ValueError(f"labels must be in 0..{n_classes - 1}")
    oe = tc.outlier_exposure > 0 and negatives is not None and len(negatives) > 0
    if oe:
        negatives = np.ascontiguousarray(negatives, dtype=np.float32)
        if negatives.ndim != 2 or negatives.shape[1] != X_train.shape[1]:
            raise ValueError(f"negatives must be (M, {X_train.shape[1]}) spectra, got "
                             f"{negatives.shape}")
        if soft_targets is None:  # the uniform targets need the soft-target loss
            soft_targets = np.eye(n_classes, dtype=np.float32)[y_train]
    if teacher_fn is not None and soft_targets is None:
        raise ValueError("teacher_fn (function matching) needs soft_targets: distillation on")
    acc_key = "accuracy" if soft_targets is None else "categorical_accuracy"
    ce = ("sparse_categorical_crossentropy" if soft_targets is None
          else "categorical_crossentropy")
    obj = oe and tc.objectosphere > 0
    bgc = oe and tc.background_class
    # with the objectosphere the optimiser steps a two-output view of the same layers (the
    # probabilities and the features), with a background class a (K+1)-way view; `model`
    # keeps every weight of its own and is what is returned
    trainee = (objectosphere_view(model) if obj
               else background_view(model, background_init) if bgc else model)
    trainee.compile(
        optimizer=keras.optimizers.Adam(learning_rate=tc.learning_rate),
        loss=[ce, objectosphere_loss(tc.objectosphere_xi)] if obj else ce,
        loss_weights=[1.0, tc.objectosphere] if obj else None,
        metrics=[[acc_key], []] if obj else [acc_key],
    )
    targets = y_train if soft_targets is None else soft_targets
    if obj:  # the known-spectrum flag rides along as a last target column (1 = known)
        targets = np.concatenate([targets, np.ones((len(targets), 1), np.float32)], axis=1)
    if bgc:  # known spectra: probability 0 on the background class
        targets = np.concatenate([targets, np.zeros((len(targets), 1), np.float32)], axis=1)
    weights = (class_weights(y_train, n_classes) if tc.class_weighting
               else np.ones(n_classes, dtype=np.float64))
    sample_w = weights[y_train].astype(np.float32)
    bands = backgrounds = neg_bands = None
    if tc.augment.background:
        bands, backgrounds = split_background(X_train)
        if oe:
            neg_bands = split_background(negatives)[0]
    # a negative's target: the flat answer over the K minerals (with the objectosphere
    # followed by its known-flag 0), or with a background class that class alone
    neg_target = np.full(n_classes, 1.0 / n_classes, dtype=np.float32)
    if obj:
        neg_target = np.append(neg_target, np.float32(0.0))
    if bgc:
        neg_target = np.eye(n_classes + 1, dtype=np.float32)[n_classes]
    neg_w = np.float32(tc.outlier_exposure * float(np.mean(sample_w)))
    pl = pseudo is not None and unlabelled is not None and len(unlabelled) > 0
    u_bands = None
    if pl:
        unlabelled = np.ascontiguousarray(unlabelled, dtype=np.float32)
        if unlabelled.ndim != 2 or unlabelled.shape[1] != X_train.shape[1]:
            raise ValueError(f"unlabelled must be (U, {X_train.shape[1]}) spectra, got "
                             f"{unlabelled.shape}")
        if tc.augment.background:
            u_bands = split_background(unlabelled)[0]
        weak = AugmentConfig(shift_cm=pseudo.weak_shift_cm)
        pl_w = np.float32(pseudo.weight * float(np.mean(sample_w)))

    same_rows = [np.flatnonzero(y_train == c) for c in range(n_classes)] if tc.mix_same else []
    onehot = np.eye(n_classes, dtype=np.float32)[y_train] if teacher_fn is not None else None
    plateau = Plateau(tc)
    best_weights = model.get_weights()
    best_unit = background_unit(trainee) if bgc else None
    history: dict[str, list[float]] = {k: [] for k in
                                       ("loss", "accuracy", "val_loss", "val_accuracy", "lr")}
    # the moving average starts at zero, warms up (ema_decay) and is divided by its mass when
    # read (ema_read): it weighs the trained weights alone, recent ones first, however short
    # the run (docs/parts/flight.md, "An average of the weights")
    if tc.ema and not tc.ema_warmup:
        raise ValueError("this configuration averages the weights as before 2026-12-07 night "
                         "(a fixed decay from the initial weights), which is no longer trained; "
                         "train it again with the current average (ema_warmup true)")
    ema = [np.zeros_like(w, dtype=np.float32) for w in model.get_weights()] if tc.ema else None
    ema_steps, ema_keep = 0, 1.0  # steps averaged; the product of their decays
    t_start = time.perf_counter()
    epochs_run = 0
    n_epochs = tc.epochs if schedule is None else len(schedule)
    n = X_train.shape[0]
    n_draw = max(int(epoch_samples or 0), n)
    for epoch in range(n_epochs):
        t0 = time.perf_counter()
        if schedule is not None and float(schedule[epoch]) != plateau.lr:
            plateau.lr = float(schedule[epoch])
            trainee.optimizer.learning_rate.assign(plateau.lr)
        rng = np.random.default_rng([tc.seed, epoch])
        order = np.concatenate([rng.permutation(n) for _ in range(-(-n_draw // n))])[:n_draw]
        xb = X_train[order]
        bo = None if bands is None else bands[order]
        if tc.mix_same:  # drawn only when on: runs without it keep their random stream
            partner, lam = same_mineral_partners(y_train[order], same_rows, rng, tc.mix_same)
            mixed = mix_rows(lam, xb, X_train[partner])
            peak = row_peaks(mixed)
            xb = (mixed / peak).astype(np.float32)  # max 1 again, as every spectrum
            if bo is not None:  # its background-free part scaled alike
                bo = mix_rows(lam, bo, bands[partner]) / peak
        shifts = None
        uncropped = teacher_fn is not None and tc.distill_uncropped and tc.augment.crop > 0
        if uncropped:  # the same augmentation, the crop drawn last as augment_batch does
            pre, shifts = augment_batch(xb, replace(tc.augment, crop=0.0), rng, bands=bo,
                                        backgrounds=backgrounds, with_shifts=True)
            xb = renormalise(crop_rows(pre, tc.augment.crop, rng)).astype(np.float32)
        elif tc.augment.enabled:
            xb, shifts = augment_batch(xb, tc.augment, rng, bands=bo, backgrounds=backgrounds,
                                       with_shifts=True)
        yb, wb = targets[order], sample_w[order]
        if tc.mix_same and yb.ndim == 2:  # soft targets differ within a mineral
            yb = mix_rows(lam, yb, targets[partner]).astype(yb.dtype)
        if teacher_fn is not None:  # function matching: the teachers answer this very view
            hard = onehot[order]
            if tc.mix_same:
                hard = mix_rows(lam, hard, onehot[partner])
            seen = pre if uncropped else xb  # with distill_uncropped: before the crop
            view = seen if shifts is None else shift_rows(seen, -shifts)  # their band positions
            yb = yb.copy()
            yb[:, :n_classes] = ((1.0 - tc.distill) * hard
                                 + tc.distill * teacher_fn(view)).astype(yb.dtype)
        if oe:
            m = max(1, round(tc.negatives_ratio * n_draw))
            pick = rng.integers(0, negatives.shape[0], size=m)
            xn = negatives[pick]
            if tc.augment.enabled:
                xn = augment_batch(xn, tc.augment, rng,
                                   bands=None if neg_bands is None else neg_bands[pick],
                                   backgrounds=backgrounds)
            xb, yb, wb = _mix_in(rng, (xb, yb, wb),
                                 (xn, np.broadcast_to(neg_target, (m, neg_target.size)), neg_w))
        if pl:
            pick = rng.integers(0, unlabelled.shape[0], size=max(1, round(pseudo.ratio * n_draw)))
            xw = augment_batch(unlabelled[pick], weak, rng) if weak.enabled else unlabelled[pick]
            pu = predict_probs(model, xw)
            sure = np.flatnonzero(pu.max(axis=1) >= pseudo.threshold)
            history.setdefault("pseudo", []).append(float(sure.size))
            if sure.size:
                xs = unlabelled[pick[sure]]
                if tc.augment.enabled:  # the strong view: the run's own augmentation
                    xs = augment_batch(xs, tc.augment, rng,
                                       bands=None if u_bands is None else u_bands[pick[sure]],
                                       backgrounds=backgrounds)
                ys = pu[sure].argmax(axis=1)
                if yb.ndim == 2:
                    ys = np.eye(n_classes, yb.shape[1], dtype=np.float32)[ys]
                    if obj:
                        ys[:, -1] = 1.0  # pseudo-labelled spectra are of known minerals
                xb, yb, wb = _mix_in(rng, (xb, yb, wb), (xs, ys.astype(yb.dtype), pl_w))
        loss_sum = acc_sum = 0.0
        for i in range(0, xb.shape[0], tc.batch_size):
            sl = slice(i, i + tc.batch_size)
            trainee.reset_metrics()
            y_step = (yb[sl, :n_classes], yb[sl, n_classes:]) if obj else yb[sl]
            step = trainee.train_on_batch(xb[sl], y_step, sample_weight=wb[sl],
                                          return_dict=True)
            nb = yb[sl].shape[0]
            loss_sum += float(step["loss"]) * nb
            acc_sum += float(step[f"{PROBS_LAYER}_{acc_key}" if obj else acc_key]) * nb
            if ema is not None:
                d = ema_decay(tc.ema, ema_steps)
                for e, w in zip(ema, model.get_weights(), strict=True):
                    e *= d
                    e += (1.0 - d) * w
                ema_steps, ema_keep = ema_steps + 1, ema_keep * d
        if ema is None:
            if epoch_end is not None:
                epoch_end(model)
            probs = predict_probs(model, X_val)
        else:
            # epoch_end (the int8-aware fine-tune's grids, non-trainable weights) runs on the
            # trained network, as without the average, so that its next steps use them; then
            # on the average, which is judged and kept with its own grids
            if epoch_end is not None:
                epoch_end(model)
            current_weights = model.get_weights()
            model.set_weights(ema_read(ema, 1.0 - ema_keep))
            if epoch_end is not None:
                epoch_end(model)
            averaged = model.get_weights()
            probs = predict_probs(model, X_val)
            model.set_weights(current_weights)
        logs = {"loss": loss_sum / xb.shape[0], "accuracy": acc_sum / xb.shape[0],
                **val_logs(probs, y_val), "lr": plateau.lr}
        for k, v in logs.items():
            history[k].append(v)
        epochs_run = epoch + 1
        if log is not None:
            log(epoch_line(epochs_run, n_epochs, logs, time.perf_counter() - t0))
        if schedule is not None:
            continue
        improved, lr_changed, stop = plateau.update(logs[tc.monitor], epochs_run)
        if improved:
            best_weights = averaged if ema is not None else model.get_weights()
            if bgc:
                best_unit = background_unit(trainee)
        if lr_changed:
            trainee.optimizer.learning_rate.assign(plateau.lr)
        if stop:
            break
    if schedule is None:
        model.set_weights(best_weights)
        best_epoch = plateau.best_epoch
    else:
        best_epoch = epochs_run
        if ema is not None:
            model.set_weights(averaged)  # the last epoch's average, as judged
        if bgc:
            best_unit = background_unit(trainee)
    return TrainResult(model=model, history=history, best_epoch=best_epoch,
                       epochs_run=epochs_run, seconds=time.perf_counter() - t_start,
                       background=best_unit)
