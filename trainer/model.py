"""The paper's LeNet-like 1D CNN with pooling size ``m`` and ``n`` pooling layers.

Three blocks Conv1D(16/32/64) + activation (+ MaxPool(m) for the first ``n`` blocks),
Flatten, Dense(2048) + activation, Dropout, Dense(K) softmax. ``padding="same"`` pooling
lets any ``m`` up to 64 build on 1392 points. The Dense(2048) activation output is named
``features``: it is the frozen backbone's output that the onboard head retrainer uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ramanedge.grid import GRID_POINTS

ACTIVATIONS = ("leaky_relu", "relu", "prelu")
FEATURES_LAYER = "features"
PROBS_LAYER = "probs"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters, stored with every run and in the manifest.

    The defaults are the project's default model (``make demo``; chosen on the validation
    split, see ``docs/parts/results_training.md``): m = 6, n = 3 (flatten 7 x 64 = 448,
    1.15 M weights for 97 minerals), LeakyReLU, Conv1D kernel 11 (the paper's family with a
    wider kernel than the skeleton's 5: more accurate and more shift-tolerant).
    ``PAPER_MODEL`` is the skeleton's reading of the paper (m = 8, kernel 5).
    """

    pool_size: int = 6
    pool_layers: int = 3
    activation: str = "leaky_relu"
    filters: tuple[int, ...] = field(default=(16, 32, 64))
    kernel_size: int = 11
    dense_units: int = 2048
    dropout: float = 0.5
    input_points: int = GRID_POINTS

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        if not 1 <= self.pool_size <= 64:
            raise ValueError(f"pool_size must be in 1..64, got {self.pool_size}")
        if not 0 <= self.pool_layers <= len(self.filters):
            raise ValueError(
                f"pool_layers must be in 0..{len(self.filters)}, got {self.pool_layers}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = asdict(self)
        d["filters"] = list(self.filters)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict` (unknown keys are rejected by the constructor)."""
        d = dict(d)
        if "filters" in d:
            d["filters"] = tuple(d["filters"])
        return cls(**d)


PAPER_MODEL = ModelConfig(pool_size=8, kernel_size=5)
"""The skeleton's reading of the paper's model (m = 8, kernel 5), for the paper-recipe rows."""


def flatten_size(config: ModelConfig) -> int:
    """Length of the flattened conv output (the Dense layer's input) without building a model.

    Each of the first ``pool_layers`` blocks pools with ``padding="same"``, i.e. ceil(L / m).
    """
    length = config.input_points
    for _ in range(config.pool_layers):
        length = -(-length // config.pool_size)
    return length * config.filters[-1]


def count_params(config: ModelConfig, n_classes: int) -> int:
    """Number of weights of :func:`build_model` (``n_classes`` outputs), computed by hand."""
    total, c_in = 0, 1
    for f in config.filters:
        total += config.kernel_size * c_in * f + f
        if config.activation == "prelu":
            total += f
        c_in = f
    total += flatten_size(config) * config.dense_units + config.dense_units
    if config.activation == "prelu":
        total += config.dense_units
    total += config.dense_units * n_classes + n_classes
    return total


def _activation(name: str, layer_name: str, conv: bool):
    import keras

    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.3, name=layer_name)
    if name == "relu":
        return keras.layers.ReLU(name=layer_name)
    # PReLU with one slope per channel shared along the spectral axis: maps to the Edge TPU.
    return keras.layers.PReLU(shared_axes=[1] if conv else None, name=layer_name)


def build_model(n_classes: int, config: ModelConfig = ModelConfig()):
    """Build (uncompiled) the CNN for ``n_classes`` minerals; returns a ``keras.Model``.

    Input: ``(batch, 1392)`` normalised spectra. Output: softmax probabilities
    (layer ``probs``). Layer ``features`` is the 2048-d penultimate activation.
    """
    import keras

    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    inp = keras.Input(shape=(config.input_points,), name="spectrum")
    x = keras.layers.Reshape((config.input_points, 1), name="reshape")(inp)
    for i, f in enumerate(config.filters):
        x = keras.layers.Conv1D(f, config.kernel_size, padding="same", name=f"conv{i + 1}")(x)
        x = _activation(config.activation, f"act{i + 1}", conv=True)(x)
        if i < config.pool_layers:
            x = keras.layers.MaxPooling1D(config.pool_size, padding="same", name=f"pool{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(config.dense_units, name="dense")(x)
    x = _activation(config.activation, FEATURES_LAYER, conv=False)(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name=PROBS_LAYER)(x)
    return keras.Model(inp, out, name="raman_cnn")
