"""The CNN families: the paper's LeNet-like reference and the flight architecture.

``arch="paper"``: the paper's network exactly (Soysal et al. 2025): three blocks
Conv1D(16/32/64) + activation (+ MaxPool(m) for the first ``n`` blocks), Flatten,
Dense(2048) + activation, Dropout, Dense(K) softmax. ``padding="same"`` pooling lets any
``m`` up to 64 build on 1392 points. Flatten -> Dense holds ~98 % of its weights, so the pool
size sets its size, its shift tolerance and its resolution at once.

``arch="flight"`` (the project default, chosen on validation: ``docs/parts/flight.md``): more
and narrower conv blocks, each Conv1D (depthwise-separable after the first when
``separable``) + BatchNorm + ReLU + MaxPool(``pool_size``), a 1x1 conv that *reduces* the
channels before Flatten (peak position survives, the Dense input stays small), then
Dense(``dense_units``) + ReLU as the feature layer. Its size does not grow with resolution:
the 1x1 reduction, not the pool size, sets the Dense input. ReLU (or PReLU) only, so every op
maps to the Edge TPU; BatchNorm folds into the convs at conversion.

In both families the penultimate activation is the layer ``features`` (the frozen backbone's
output the onboard head retrainer and the unknown rule use) and the softmax layer is
``probs``.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, replace

from ramanedge.grid import GRID_POINTS

ARCHS = ("flight", "paper")
ACTIVATIONS = ("leaky_relu", "relu", "relu6", "prelu")
ATTENTIONS = ("none", "se")
SE_REDUCTION = 4
"""Squeeze-and-excitation bottleneck: ``channels // SE_REDUCTION`` units (Hu et al. 2018's
r = 4 for small networks)."""
FEATURES_LAYER = "features"
PROBS_LAYER = "probs"
BN_MOMENTUM = 0.9
"""BatchNorm moving-average momentum: 0.9 instead of Keras' 0.99, because an epoch of
rruff-raw is only ~25 steps and the moving statistics (what inference and int8 use) must
settle within a few epochs for validation-based early stopping to see the real model."""

#: Per-architecture defaults of the fields left as ``None``.
ARCH_DEFAULTS: dict[str, dict] = {
    # The paper family at the project's former default (m = 6, kernel 11, LeakyReLU).
    "paper": dict(pool_size=6, pool_layers=3, activation="leaky_relu", filters=(16, 32, 64),
                  kernel_size=11, dense_units=2048, dropout=0.5, reduce_channels=0,
                  separable=False, batch_norm=False, input_floor=None, act_quant=False,
                  attention="none", branch_kernels=(), early_pool=False, strided_stem=False,
                  stem_stride=1),
    # The flight default (docs/parts/flight.md); since 2026-12-07 its first conv strides 4
    # and it pools 3 times (every conv up to block 4's depthwise at a quarter of the
    # positions of the 2026-12-05 default, the same 44 feature positions; stride 2, pool
    # 2 x 4 that morning). pool_layers: what pools_for_stride gives for the stride and pool
    # size (a flight model without a pool count resolves it so)
    "flight": dict(pool_size=2, pool_layers=3, activation="relu6",
                   filters=(24, 48, 64, 96, 128), kernel_size=7, dense_units=192, dropout=0.3,
                   reduce_channels=24, separable=True, batch_norm=True, input_floor=-0.05,
                   act_quant=False, attention="none", branch_kernels=(), early_pool=True,
                   strided_stem=False, stem_stride=4),
}


def pools_for_stride(stride: int, pool_size: int, input_points: int = GRID_POINTS,
                     blocks: int = 5) -> int:
    """The number of pools (at most ``blocks``) that leaves a first conv of ``stride`` with
    the feature positions nearest to the flight default's (``input_points`` / 32, rounded
    up: 44 on the model grid; the one with more positions on a tie): 5 at stride 1, 4 at 2,
    3 at 4 with pool 2."""
    target = -(-input_points // 32)

    def positions(n: int) -> int:
        length = -(-input_points // stride)
        for _ in range(n):
            length = -(-length // pool_size)
        return length

    return min(range(blocks + 1), key=lambda n: (abs(positions(n) - target), -positions(n)))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters, stored with every run and in the manifest.

    ``ModelConfig()`` is the flight default; ``ModelConfig(arch="paper")`` the paper family at
    m = 6 (``-m/-n`` dial it). A field left ``None`` takes its architecture's default
    (:data:`ARCH_DEFAULTS`). ``reduce_channels`` (flight: 1x1 conv before Flatten, 0 = none),
    ``separable`` (flight: depthwise-separable convs after the first block) and
    ``batch_norm`` (flight) must stay off for the paper family. ``input_floor`` (flight):
    the model's first op clips its input at this value (negative detector counts below it carry
    no band information), so the int8 input range is ``[floor, 1]`` whatever the calibration
    spectra hold: a finer, data-independent input step (see ``docs/parts/flight.md``).
    ``act_quant`` (flight, ReLU6 and an input floor required): the model rounds its input and
    every activation onto the int8 grid TFLite will use (:class:`trainer.qat.ActQuant`), for
    quantisation-aware fine-tuning; the rounding layers are stripped before conversion.
    ``attention`` (flight): ``"se"`` puts a squeeze-and-excitation channel attention after
    every conv block's activation (mean over positions -> Dense(C / 4) -> Dense(C) sigmoid ->
    multiply; every op maps to the Edge TPU). ``branch_kernels`` (flight, separable): a
    multi-scale depthwise stage, one depthwise conv per kernel size, concatenated before the
    block's 1x1 conv (``()`` = the single ``kernel_size``). Both were screened on validation
    (``docs/parts/flight.md``); neither has an int8-aware (``act_quant``) form.
    ``early_pool`` (flight, separable): each separable block max-pools its depthwise output
    *before* the 1x1 conv, so the 1x1 conv (most of a block's MACs) runs at the pooled
    positions; the block's output positions are unchanged. Without separable convs it is
    off (nothing to pool early). ``strided_stem`` (flight): the first conv is evaluated at
    every ``pool_size``-th position (stride) instead of being max-pooled after it, so it and
    the pool cost a ``pool_size``-th of the time at full resolution; the block's output
    positions are unchanged. ``depthwise_kernel`` (flight, separable, without
    ``branch_kernels``): the kernel of the separable blocks' depthwise convs when it differs
    from ``kernel_size`` (``None`` = ``kernel_size``, so changing ``kernel_size`` changes
    every conv; stored as ``None`` when equal); read it as :attr:`dw_kernel`. XNNPACK runs
    3-tap depthwise convs about twice as fast as 5- or 7-tap ones
    (``docs/op_profile-kernels.json``). ``stem_stride`` (flight, without ``strided_stem``):
    the first conv is evaluated at every ``stem_stride``-th input point and then pooled as
    usual, so the convs after it run at ``1 / stem_stride`` of the positions of a stride-1
    model until its extra pools catch up (``1`` = every point). The flight default since
    2026-12-07: stride 4 with pool 2 x 3, the 44 feature positions of the 2026-12-05 default
    (stride 1, pool 2 x 5) at 53 % of its MACs (``docs/parts/flight.md``, "A quarter of the
    positions"; that morning stride 2 with pool 2 x 4, "Half the positions"). A flight
    model given without ``pool_layers`` keeps the default's 44 feature positions as nearly
    as its stride and pool size allow (:func:`pools_for_stride`: with pools of 2, 5 at
    stride 1, 4 at 2, 3 at 4), so ``-m 3`` and ``-m 3 --stem-stride 4`` are one model.
    :data:`PAPER_MODEL` is the
    skeleton's reading of the paper (m = 8, kernel 5).
    """

    arch: str = "flight"
    pool_size: int | None = None
    pool_layers: int | None = None
    activation: str | None = None
    filters: tuple[int, ...] | None = None
    kernel_size: int | None = None
    dense_units: int | None = None
    dropout: float | None = None
    reduce_channels: int | None = None
    separable: bool | None = None
    batch_norm: bool | None = None
    input_floor: float | None = None
    act_quant: bool | None = None
    attention: str | None = None
    branch_kernels: tuple[int, ...] | None = None
    early_pool: bool | None = None
    strided_stem: bool | None = None
    depthwise_kernel: int | None = None
    stem_stride: int | None = None
    input_points: int = GRID_POINTS

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.stem_stride is None and self.strided_stem:
            # a strided_stem model asked for without a stride: the one way it strides
            object.__setattr__(self, "stem_stride", 1)
        flight = ARCH_DEFAULTS["flight"]
        stride = self.stem_stride if self.stem_stride is not None else flight["stem_stride"]
        pool = self.pool_size if self.pool_size is not None else flight["pool_size"]
        try:  # whole numbers (numpy's too); anything else is left to the checks below
            stride, pool = operator.index(stride), operator.index(pool)
        except TypeError:
            stride = pool = 0
        if (self.arch == "flight" and self.pool_layers is None
                and 1 <= stride <= 8 and 1 <= pool <= 64):
            # a flight model without a pool count keeps the default's 44 feature positions
            # as nearly as its stride and pool size allow: 5 pools of 2 at stride 1 (the
            # model before 2026-12-07), 4 at 2, 3 at 4 (the default), fewer for larger pools
            # (out-of-range values are left to the checks below)
            blocks = len(self.filters if self.filters is not None else flight["filters"])
            object.__setattr__(self, "pool_layers", pools_for_stride(
                stride, pool, self.input_points, blocks))
        for k, v in ARCH_DEFAULTS[self.arch].items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        object.__setattr__(self, "branch_kernels", tuple(int(k) for k in self.branch_kernels))
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}"
            )
        if self.branch_kernels and (min(self.branch_kernels) < 1
                                    or len(set(self.branch_kernels)) != len(self.branch_kernels)):
            raise ValueError("branch_kernels must be distinct kernel sizes >= 1, got "
                             f"{list(self.branch_kernels)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if not 1 <= self.pool_size <= 64:
            raise ValueError(f"pool_size must be in 1..64, got {self.pool_size}")
        if not self.filters or min(self.filters) < 1:
            raise ValueError(f"filters must be positive channel counts, got {self.filters}")
        if not 0 <= self.pool_layers <= len(self.filters):
            raise ValueError(
                f"pool_layers must be in 0..{len(self.filters)}, got {self.pool_layers}"
            )
        try:
            object.__setattr__(self, "stem_stride", operator.index(self.stem_stride))
        except TypeError:
            raise ValueError(f"stem_stride must be a whole number in 1..8, got "
                             f"{self.stem_stride!r}") from None
        if not 1 <= self.stem_stride <= 8:
            raise ValueError(f"stem_stride must be in 1..8, got {self.stem_stride}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.kernel_size < 1 or self.dense_units < 1:
            raise ValueError("kernel_size and dense_units must be >= 1")
        if self.depthwise_kernel is not None:
            if int(self.depthwise_kernel) < 1:
                raise ValueError(f"depthwise_kernel must be >= 1 or None, got "
                                 f"{self.depthwise_kernel}")
            # one spelling per model: None when it is kernel_size, or when there is no
            # single depthwise conv to size (no separable blocks, or multi-scale branches)
            dw = int(self.depthwise_kernel)
            object.__setattr__(self, "depthwise_kernel", None if (
                dw == self.kernel_size or not self.separable or self.branch_kernels) else dw)
        if self.reduce_channels < 0:
            raise ValueError(f"reduce_channels must be >= 0, got {self.reduce_channels}")
        if self.arch == "paper" and (self.reduce_channels or self.separable or self.batch_norm
                                     or self.input_floor is not None
                                     or self.attention != "none" or self.branch_kernels
                                     or self.strided_stem):
            raise ValueError("reduce_channels, separable, batch_norm, input_floor, attention, "
                             "branch_kernels and strided_stem belong to the flight "
                             "architecture; the paper family has none of them")
        if self.branch_kernels and not self.separable:
            raise ValueError("branch_kernels needs separable convs (a multi-scale depthwise "
                             "stage); set separable or leave branch_kernels empty")
        if self.input_floor is not None and not -1.0 <= self.input_floor <= 0.0:
            raise ValueError(f"input_floor must be in [-1, 0] or None, got {self.input_floor}")
        object.__setattr__(self, "separable", bool(self.separable))
        object.__setattr__(self, "batch_norm", bool(self.batch_norm))
        object.__setattr__(self, "act_quant", bool(self.act_quant))
        # early pooling is a property of separable blocks: without them it is vacuous (so
        # --no-separable needs no --no-early-pool)
        object.__setattr__(self, "early_pool", bool(self.early_pool) and self.separable)
        # a strided first conv replaces the first block's pool: without one it is vacuous
        object.__setattr__(self, "strided_stem",
                           bool(self.strided_stem) and self.pool_layers > 0)
        if self.stem_stride > 1 and (self.arch == "paper" or self.strided_stem):
            raise ValueError(f"stem_stride {self.stem_stride} needs arch 'flight' without "
                             f"strided_stem (got arch {self.arch!r}, strided_stem "
                             f"{self.strided_stem}); use stem_stride=1 with those")
        if self.act_quant and (self.attention != "none" or self.branch_kernels):
            raise ValueError("act_quant has no int8-aware form of attention or branch_kernels; "
                             "train those with qat_epochs 0")
        if self.act_quant and (self.activation != "relu6" or self.input_floor is None):
            raise ValueError("act_quant needs bounded ranges known before calibration: "
                             "activation relu6 and an input_floor (the flight default), got "
                             f"activation {self.activation!r}, input_floor {self.input_floor}")

    @property
    def dw_kernel(self) -> int:
        """The separable blocks' depthwise kernel: ``depthwise_kernel`` or ``kernel_size``."""
        return self.kernel_size if self.depthwise_kernel is None else self.depthwise_kernel

    def to_dict(self) -> dict:
        """JSON-ready form (every field resolved)."""
        d = asdict(self)
        d["filters"] = list(self.filters)
        d["branch_kernels"] = list(self.branch_kernels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`; a dict without ``arch`` (runs written before the flight
        family existed) is the paper family, one without ``early_pool`` pools after the 1x1
        convs and one without ``strided_stem`` pools its first conv (both written before
        those options; ``depthwise_kernel`` absent = ``kernel_size``, as before it; ``stem_stride``
        absent = 1, written before 2026-12-07). Unknown keys are rejected by the constructor."""
        d = dict(d)
        d.setdefault("arch", "paper")
        # written before early pooling existed (2026-12-04): every 1x1 conv at full positions
        d.setdefault("early_pool", False)
        d.setdefault("strided_stem", False)  # written before 2026-12-05
        d.setdefault("stem_stride", 1)  # written before 2026-12-07
        for key in ("filters", "branch_kernels"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def describe(self) -> str:
        """One line naming the architecture, e.g. for training logs."""
        if self.arch == "paper":
            return (f"paper CNN m={self.pool_size} n={self.pool_layers} {self.activation}, "
                    f"kernel {self.kernel_size}, dense {self.dense_units}")
        kernel = str(self.kernel_size)
        if self.depthwise_kernel is not None:
            kernel += f" (depthwise {self.depthwise_kernel})"
        if self.branch_kernels:  # the first block's kernel, then the depthwise branches
            kernel += f" (depthwise branches {'/'.join(map(str, self.branch_kernels))})"
        return (f"flight CNN {'-'.join(map(str, self.filters))}"
                f"{' separable' if self.separable else ''}, kernel {kernel}, "
                f"pool {self.pool_size} x {self.pool_layers}, reduce {self.reduce_channels}, "
                f"features {self.dense_units}, {self.activation}"
                f"{', SE attention' if self.attention == 'se' else ''}"
                f"{', pool before 1x1' if self.early_pool else ''}"
                f"{', strided first conv' if self.strided_stem else ''}"
                f"{f', first conv stride {self.stem_stride}' if self.stem_stride > 1 else ''}"
                f"{', int8-aware activations' if self.act_quant else ''}")


PAPER_MODEL = ModelConfig(arch="paper", pool_size=8, kernel_size=5)
"""The skeleton's reading of the paper's model (m = 8, kernel 5), for the paper-recipe rows."""
PAPER_DEFAULT = ModelConfig(arch="paper")
"""The paper family at the former project default (m = 6, kernel 11, LeakyReLU)."""
FLIGHT_MODEL = ModelConfig()
"""The flight default (what ``ramanedge train`` builds and ``make demo`` ships)."""
FLIGHT_LATE_POOL = ModelConfig(early_pool=False, stem_stride=1, pool_layers=5)
"""The flight default until 2026-12-05: every 1x1 conv at its block's full positions (4.97 M
MACs). The base of the recipes and screens measured before ``early_pool`` became the
default, so that their names keep meaning what was measured."""
FLIGHT_FULL_POSITIONS = replace(FLIGHT_LATE_POOL, early_pool=True)
"""The flight default from 2026-12-05 until 2026-12-07 (recipe ``flight-early-pool``): its
first conv at every point and pool 2 x 5 (2.97 M MACs)."""
FLIGHT_HALF_POSITIONS = replace(FLIGHT_FULL_POSITIONS, stem_stride=2, pool_layers=4)
"""The flight default on the morning of 2026-12-07 (recipe ``flight-stem2``): its first conv
at every second point and pool 2 x 4 (1.94 M MACs)."""
FLIGHT_QUARTER_POSITIONS = replace(FLIGHT_FULL_POSITIONS, stem_stride=4, pool_layers=3)
"""The flight default since 2026-12-07 (rule (Q), recipe ``flight-stem4``), pinned: its
first conv at every fourth point and pool 2 x 3 (1.57 M MACs); equal to
:data:`FLIGHT_MODEL` while it is the default."""


def conv_length(config: ModelConfig) -> int:
    """Spectral length after the conv blocks (``padding="same"`` pooling: ceil(L / m))."""
    length = -(-config.input_points // config.stem_stride)
    for _ in range(config.pool_layers):
        length = -(-length // config.pool_size)
    return length


def flatten_size(config: ModelConfig) -> int:
    """Length of the flattened conv output (the Dense layer's input) without building a model."""
    channels = config.reduce_channels or config.filters[-1]
    return conv_length(config) * channels


def _conv_params(config: ModelConfig) -> tuple[int, int]:
    """(weights, MACs per spectrum) of the conv blocks, BatchNorm folded."""
    total = macs = 0
    c_in, length = 1, config.input_points
    for i, f in enumerate(config.filters):
        k = config.kernel_size
        if config.separable and i > 0:
            # depthwise (no bias; one per branch kernel, concatenated) + pointwise with bias,
            # the pointwise at the pooled positions with early_pool
            kernels = config.branch_kernels or (config.dw_kernel,)
            pooled = (-(-length // config.pool_size) if config.early_pool
                      and i < config.pool_layers else length)
            w = sum(kernels) * c_in + len(kernels) * c_in * f + f
            mac = length * sum(kernels) * c_in + pooled * len(kernels) * c_in * f
        else:
            w = k * c_in * f + f
            # the strided first conv is evaluated at the pooled positions only, a first conv
            # of stem_stride s at every s-th position (and its pool follows)
            if i == 0 and config.stem_stride > 1:
                length = -(-length // config.stem_stride)
            pooled = (-(-length // config.pool_size) if i == 0 and config.strided_stem
                      else length)
            mac = pooled * k * c_in * f
        total += w
        macs += mac
        if config.activation == "prelu":
            total += f
        if config.attention == "se":
            r = max(1, f // SE_REDUCTION)
            total += f * r + r + r * f + f + (r if config.activation == "prelu" else 0)
            # SE follows the block's activation, at the positions the block computed
            macs += 2 * f * r + 2 * pooled * f  # the two Dense layers, the mean, the product
        c_in = f
        if i < config.pool_layers:
            length = -(-length // config.pool_size)
    if config.reduce_channels:
        total += c_in * config.reduce_channels + config.reduce_channels
        macs += length * c_in * config.reduce_channels
        if config.activation == "prelu":
            total += config.reduce_channels
    return total, macs


def count_params(config: ModelConfig, n_classes: int) -> int:
    """Number of inference weights of :func:`build_model` (``n_classes`` outputs), by hand.

    BatchNorm layers are not counted: the converter folds them into the conv weights, so
    this is the weight count of the exported model (``keras.Model.count_params`` also counts
    BatchNorm's scale, offset and moving statistics).
    """
    total, _ = _conv_params(config)
    total += flatten_size(config) * config.dense_units + config.dense_units
    if config.activation == "prelu":
        total += config.dense_units
    total += config.dense_units * n_classes + n_classes
    return total


def count_macs(config: ModelConfig, n_classes: int) -> int:
    """Multiply-accumulates of one forward pass (convs, dense, head)."""
    _, macs = _conv_params(config)
    return macs + flatten_size(config) * config.dense_units + config.dense_units * n_classes


RELU6_CAP = 6.0


def _activation(name: str, layer_name: str, conv: bool):
    import keras

    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.3, name=layer_name)
    if name == "relu":
        return keras.layers.ReLU(name=layer_name)
    if name == "relu6":
        # bounded activations give every int8 tensor a fixed range [0, 6] (MobileNet's reason
        # for ReLU6): calibration cannot stretch a scale on a few heavy-tailed outliers
        return keras.layers.ReLU(max_value=RELU6_CAP, name=layer_name)
    # PReLU with one slope per channel shared along the spectral axis: maps to the Edge TPU.
    return keras.layers.PReLU(shared_axes=[1] if conv else None, name=layer_name)


def _squeeze_excite(x, channels: int, activation: str, name: str):
    """Channel attention (Hu et al. 2018): per-channel weights in (0, 1) from the block's
    mean over positions; MEAN, FULLY_CONNECTED, LOGISTIC and MUL all map to the Edge TPU."""
    import keras

    s = keras.layers.GlobalAveragePooling1D(keepdims=True, name=f"{name}_pool")(x)
    s = keras.layers.Dense(max(1, channels // SE_REDUCTION), name=f"{name}_squeeze")(s)
    s = _activation(activation, f"{name}_act", conv=False)(s)
    s = keras.layers.Dense(channels, activation="sigmoid", name=f"{name}_excite")(s)
    return keras.layers.Multiply(name=name)([x, s])


def build_model(n_classes: int, config: ModelConfig = FLIGHT_MODEL):
    """Build (uncompiled) the CNN for ``n_classes`` minerals; returns a ``keras.Model``.

    Input: ``(batch, 1392)`` normalised spectra. Output: softmax probabilities
    (layer ``probs``). Layer ``features`` is the penultimate activation
    (``config.dense_units`` wide).
    """
    import keras

    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    aq = config.act_quant
    if aq:
        from trainer.qat import ActQuant, QConv1D, QDense, QDepthwiseConv1D

    def act(x, layer_name: str, conv: bool):
        """Activation (+ its int8 rounding with ``act_quant``, which then owns the name)."""
        if not aq:
            return _activation(config.activation, layer_name, conv)(x)
        x = _activation(config.activation, f"{layer_name}_relu6", conv)(x)
        return ActQuant(0.0, RELU6_CAP, name=layer_name)(x)

    inp = keras.Input(shape=(config.input_points,), name="spectrum")
    x = keras.layers.Reshape((config.input_points, 1), name="reshape")(inp)
    if config.input_floor is not None:
        floor = float(config.input_floor)
        if aq:  # the int8 input
            x = ActQuant(floor, 1.0, name="input_q")(x)
        # max(x, floor) - floor, from built-in layers (serialisable, maps to ADD + RELU)
        x = keras.layers.Rescaling(1.0, offset=-floor, name="floor_shift")(x)
        x = keras.layers.ReLU(name="floor_clip")(x)
        if aq:
            x = ActQuant(0.0, 1.0 - floor, name="floor_q")(x)
    # act_quant: the network as the converter sees it, BatchNorm folded into the convs (a
    # separable conv is its depthwise half, whose output int8 also rounds, + a 1x1 conv)
    bn = config.batch_norm and not aq
    # the ActQuant whose grid the next Q-layer's input is on (its int32 bias grid)
    grid = "floor_q" if config.input_floor is not None else ""

    def conv(filters: int, kernel: int, name: str, **kw):
        if aq:
            return QConv1D(filters, kernel, input_quant=grid, name=name, **kw)
        return keras.layers.Conv1D(filters, kernel, use_bias=not bn, name=name, **kw)

    for i, f in enumerate(config.filters):
        # with early_pool a separable block pools its depthwise output, else its activation
        early = config.separable and i > 0 and config.early_pool and i < config.pool_layers

        def pool(x, i=i):
            return keras.layers.MaxPooling1D(config.pool_size, padding="same",
                                             name=f"pool{i + 1}")(x)

        if config.separable and i > 0 and aq:
            x = QDepthwiseConv1D(config.dw_kernel, padding="same", use_bias=False,
                                 name=f"conv{i + 1}_dw")(x)
            x = ActQuant(-RELU6_CAP, RELU6_CAP, name=f"conv{i + 1}_dw_q")(x)
            grid = f"conv{i + 1}_dw_q"
            if early:  # max pooling keeps the int8 grid: the 1x1 conv reads the same grid
                x = pool(x)
            x = conv(f, 1, f"conv{i + 1}")(x)
        elif config.separable and i > 0 and (config.early_pool or config.branch_kernels):
            if config.branch_kernels:
                # multi-scale: one depthwise conv per kernel size, side by side
                branches = [keras.layers.DepthwiseConv1D(k, padding="same", use_bias=False,
                                                         name=f"conv{i + 1}_dw{k}")(x)
                            for k in config.branch_kernels]
                x = keras.layers.Concatenate(name=f"conv{i + 1}_cat")(branches)
            else:
                x = keras.layers.DepthwiseConv1D(config.dw_kernel, padding="same",
                                                 use_bias=False, name=f"conv{i + 1}_dw")(x)
            if early:
                x = pool(x)
            x = keras.layers.Conv1D(f, 1, use_bias=not bn, name=f"conv{i + 1}")(x)
        elif config.separable and i > 0:
            x = keras.layers.SeparableConv1D(f, config.dw_kernel, padding="same",
                                             use_bias=not bn, name=f"conv{i + 1}")(x)
        elif i == 0 and config.strided_stem:  # the conv downsamples instead of a pool
            x = conv(f, config.kernel_size, "conv1", padding="same",
                     strides=config.pool_size)(x)
        elif i == 0 and config.stem_stride > 1:  # at every stem_stride-th point, then pooled
            x = conv(f, config.kernel_size, "conv1", padding="same",
                     strides=config.stem_stride)(x)
        else:
            x = conv(f, config.kernel_size, f"conv{i + 1}", padding="same")(x)
        if bn:
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i + 1}")(x)
        x = act(x, f"act{i + 1}", conv=True)
        grid = f"act{i + 1}"
        if config.attention == "se":
            x = _squeeze_excite(x, f, config.activation, f"se{i + 1}")
        if i < config.pool_layers and not early and not (i == 0 and config.strided_stem):
            x = pool(x)
    if config.reduce_channels:
        x = conv(config.reduce_channels, 1, "reduce")(x)
        if bn:
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn_reduce")(x)
        x = act(x, "act_reduce", conv=True)
        grid = "act_reduce"
    x = keras.layers.Flatten(name="flatten")(x)
    x = (QDense(config.dense_units, input_quant=grid, name="dense") if aq
         else keras.layers.Dense(config.dense_units, name="dense"))(x)
    x = act(x, FEATURES_LAYER, conv=False)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name=PROBS_LAYER)(x)
    return keras.Model(inp, out, name=f"raman_cnn_{config.arch}")


def features_model(model):
    """The part of ``model`` from its input spectra to the ``features`` layer (the backbone
    the onboard head, the unknown rule and the few-label probes read); it shares ``model``'s
    layers and weights."""
    import keras

    return keras.Model(model.inputs[0], model.get_layer(FEATURES_LAYER).output)


def load_keras_model(path):
    """Load a saved ``model.keras`` of either family (uncompiled), quantisation-aware layers
    (:mod:`trainer.qat`) included. Raises what Keras raises for an unreadable file."""
    import keras

    import trainer.qat  # noqa: F401  (registers the quantisation-aware layers)

    return keras.models.load_model(path, compile=False)
