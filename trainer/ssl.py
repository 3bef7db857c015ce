"""Learning from few labels: label-fraction splits, the few-label entry point and its run folder.

Three training methods share one entry point, :func:`train_ssl`, which receives the training
spectra with labels **only for the labelled part** (``-1`` elsewhere), so the hidden labels
cannot reach training by construction:

``none``
    Supervised only: the CNN of :func:`trainer.model.build_model` trained on the labelled
    spectra (the unlabelled ones are ignored).
``contrastive``
    SimCLR-style pretraining of the CNN backbone on **all** training spectra (labels never
    used; :mod:`trainer.contrastive`), then the whole network fine-tuned on the labelled part.
``sgan``
    Semi-supervised GAN (:mod:`trainer.sgan`) exported as an ordinary K-class model.
``pretrained``
    The backbone starts from given weights (:mod:`trainer.pretrain`: self-supervised
    pretraining on every RRUFF spectrum outside the split's validation and test specimens),
    then the whole network is fine-tuned on the labelled part.

With ``SSLConfig.pseudo`` (``none``, ``contrastive``, ``pretrained``), the unlabelled training
spectra also enter fine-tuning through FixMatch-style pseudo-labels
(:class:`trainer.train.PseudoLabelConfig`). With ``SSLConfig.library_labels`` the spectral
library of the labelled spectra names the unlabelled ones it matches most surely before
training (:func:`library_pseudo_labels`; pseudo-labels from a second view, the raw spectrum);
with ``SSLConfig.relabel`` a second round follows, named by the trained network blended with
that library (:func:`blend_pseudo_labels`); with ``SSLConfig.by_specimen`` both rounds name
the spectra of one specimen together (``groups``).

Fine-tuning and the supervised baseline use :func:`trainer.train.fit_model`, the trainer's
epoch loop (class-weighted CE, Adam, LR x ``lr_factor`` on plateau, early stopping, best
weights restored) started from a given model. :func:`ssl_train_run` writes the same run
folder as :func:`trainer.run.train_run` (same start and end: :func:`trainer.run.start_run`,
:func:`trainer.run.write_run`; plus ``labelled.csv`` and an ``"ssl"`` section in
config.json), so quantize and the edge runtime use the result unchanged.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ramanedge.errors import DataError
from ramanedge.library import LibraryConfig, SpectralLibrary, match_view, softmax_rows
from ramanedge.options import check_options, option, range_of
from ramanedge.splits import specimen_groups
from trainer.contrastive import load_backbone, pretrain_contrastive
from trainer.model import ModelConfig, build_model, features_model
from trainer.pretrain import PretrainConfig
from trainer.raman_augment import RamanAugmentConfig
from trainer.sgan import train_sgan
from trainer.train import (
    PAPER_TRAIN,
    Log,
    PseudoLabelConfig,
    TrainConfig,
    TrainResult,
    check_sets,
    distillation_targets,
    fit_model,
    predict_probs,
    seed_everything,
    train_teachers,
)

SSL_METHODS = ("none", "contrastive", "sgan", "pretrained")
UNLABELLED = -1
PROPAGATE_K = 5
"""Neighbours per spectrum in :func:`propagate_labels` for ``SSLConfig.propagate``."""
PROPAGATE_ALPHA = 0.9
"""How far labels spread in :func:`propagate_labels` for ``SSLConfig.propagate`` (k and
alpha from a screen of names right on the hidden training labels, docs/parts/ssl.md)."""
PROPAGATE_GRAPHS = ("features", "library", "both", "joint")
"""What the blend rounds' label propagation links spectra by (``SSLConfig.propagate_graph``;
:func:`blend_round_names`)."""
CLI_PROPAGATE = 0.5
"""``ramanedge train``'s label-propagation weight in each naming round it runs (from the
screens of names right, then adopted round by round by validation rules with
``--library-labels 0.6 --relabel 1.0``, 2026-12-06; docs/parts/ssl.md)."""
CLI_PROPAGATE_GRAPH = "joint"
"""What ``ramanedge train``'s second round propagates over (:attr:`SSLConfig.propagate_graph`;
screened on names right, then adopted by a validation rule with ``--library-labels 0.6
--relabel 1.0``, 2026-12-06; docs/parts/ssl.md)."""

#: The spectral library the few-label recipe was chosen and measured with (2026-12-05/06;
#: no power, w = 0.3): ``benchmarks.fewlabel`` names and blends its ``+lib`` rows with it
#: unless a method ends in ``+shipped``. The rover's match moved to power 0.25 and w = 0.5
#: on 2026-12-06 (``docs/parts/flight.md``), and ``ramanedge train`` names with that one
#: since the same evening (:attr:`SSLConfig.shipped_match`, adopted by a validation rule).
NAMING_LIBRARY = LibraryConfig(power=1.0, weight=0.3, lag_penalty=0.0)
#: The rover's shipped match when ``ramanedge train`` adopted it for naming (2026-12-06: the
#: fourth root, w = 0.5, every lag alike). The rover's match added a prior on the lag on
#: 2026-12-08 (``LibraryConfig.lag_penalty``), measured on the flight model's answers, not
#: on naming; the naming keeps the match it was measured with, so a few-label run trains
#: as it did.
SHIPPED_NAMING_LIBRARY = LibraryConfig(lag_penalty=0.0)


@dataclass(frozen=True)
class SSLConfig:
    """Settings of a few-label training run (stored under ``"ssl"`` in config.json)."""

    method: str = "none"
    labelled_fraction: float = 1.0
    label_seed: int = 0
    """Seed of the choice of labelled specimens (independent of the training seed)."""
    # the contrastive pretraining runs as trainer.pretrain.PretrainConfig: its bounds, asked
    # from it, are checked here before any data is read (0 epochs = no pretraining)
    pretrain_epochs: int = option(60, within=(0, range_of(PretrainConfig, "epochs")[1]))
    pretrain_batch: int = 64
    pretrain_lr: float = option(1e-3, within=range_of(PretrainConfig, "learning_rate"))
    temperature: float = option(0.2, within=range_of(PretrainConfig, "temperature"))
    projection_dim: int = option(64, within=range_of(PretrainConfig, "projection_dim"))
    views: RamanAugmentConfig = field(default_factory=RamanAugmentConfig)
    sgan_epochs: int = 60
    sgan_lr: float = 1e-3
    noise_dim: int = 64
    unsup_weight: float = 1.0
    pseudo: PseudoLabelConfig | None = None
    """FixMatch-style pseudo-labelling of the unlabelled spectra during (fine-)tuning."""
    library_labels: float = option(0.0, within=(0.0, 1.0))
    """Before training, this fraction of the unlabelled training spectra is named by the
    spectral library of the labelled ones (:func:`library_pseudo_labels`; 0 = off)."""
    relabel: float = option(0.0, within=(0.0, 1.0))
    """A second naming round: once the network has trained, the blend of its answer with
    the library of the labelled spectra (as the rover blends them) names this fraction of
    the unlabelled training spectra (:func:`blend_pseudo_labels`, replacing the first
    round's names) and the network trains again from its seeded start (0 = one round)."""
    relabel_rounds: int = option(1, within=(1, 5))
    """How many blend naming rounds follow the first training when ``relabel`` > 0 (each
    names with the latest network and trains again)."""
    soft_names: float = option(0.0, within=(0.0, 1.0))
    """Soft names in the blend rounds: a named spectrum trains towards
    ``(1 - s) one-hot(name) + s q`` (q = its blend, per specimen with ``by_specimen``,
    renormalised; :func:`soft_name_targets`) instead of its name alone; the labelled
    spectra keep their labels, the first round its hard names (0 = hard names)."""
    teachers: int = option(0, within=(0, 8))
    """The blend rounds distil, as the fully labelled default does, from this many teachers
    (:func:`trainer.train.train_teachers`, trained on the given labels and that round's
    names, never a hidden one): the student's targets are ``(1 - distill) one-hot +
    distill x`` the teachers' mean (0 = no teachers)."""
    distill: float = option(0.5, within=(0.0, 1.0))
    """The teachers' weight in those targets (with ``teachers``, > 0; the default recipe's
    0.5, the only value allowed without teachers). The teachers train as the default's do
    (:data:`~trainer.train.TEACHER_AUGMENT`), each epoch drawing as many spectra as they
    have labels or names (the student: as many as there are training spectra)."""
    library_propagate: float = option(0.0, within=(0.0, 1.0))
    """Label propagation in the first round's library names: the score that names is
    ``(1 - p)`` the library's softmax plus ``p`` the given labels spread over the library's
    own view of the spectra (:func:`library_pseudo_labels` ``propagate``; 0 = the library
    alone)."""
    propagate: float = option(0.0, within=(0.0, 1.0))
    """Label propagation in the blend rounds' naming: the score that names is ``(1 - p)``
    the blend plus ``p`` the labels spread over the neighbours of :attr:`propagate_graph`
    (the latest network's features by default; :func:`propagate_labels` from the given
    labels, ``k`` = :data:`PROPAGATE_K`, ``alpha`` = :data:`PROPAGATE_ALPHA`; 0 = the blend
    alone)."""
    propagate_graph: str = "features"
    """What the blend rounds' propagation links spectra by (:data:`PROPAGATE_GRAPHS`;
    :func:`blend_round_names`): ``features`` the latest network's penultimate features,
    ``library`` the library's view of the spectra (the first round's graph), ``both`` the
    mean of those two propagations, ``joint`` one propagation over both side by side."""
    by_specimen: bool = False
    """Name per specimen: the naming scores of a specimen's unlabelled spectra (its RRUFF
    sample id, not a label) are averaged, so they get one name and one margin (both
    rounds; :func:`train_ssl` needs ``groups`` then)."""
    shipped_match: bool = False
    """Name with the rover's shipped library match (:data:`SHIPPED_NAMING_LIBRARY`: since
    2026-12-06 the fourth root of the intensities and w = 0.5) instead of
    :data:`NAMING_LIBRARY` (both rounds, and the library view of the propagation graphs;
    :func:`naming_library`).
    ``ramanedge train`` sets it whenever it names (adopted 2026-12-06 by a validation rule,
    ``benchmarks.fewlabel``'s ``+shipped``); off here, so that the benchmark's method names
    without ``+shipped`` repeat the rows measured with :data:`NAMING_LIBRARY`."""

    def __post_init__(self) -> None:
        if self.method not in SSL_METHODS:
            raise ValueError(f"ssl method must be one of {', '.join(SSL_METHODS)}, "
                             f"got {self.method!r}")
        if not 0.0 < float(self.labelled_fraction) <= 1.0:
            raise ValueError(f"labelled fraction must be in (0, 1], got {self.labelled_fraction}")
        if self.sgan_epochs < 1:
            raise ValueError(f"sgan_epochs must be >= 1, got {self.sgan_epochs}")
        check_options(self, what="ssl")
        if isinstance(self.views, dict):
            object.__setattr__(self, "views", RamanAugmentConfig(**self.views))
        if isinstance(self.pseudo, dict):
            object.__setattr__(self, "pseudo", PseudoLabelConfig(**self.pseudo))
        if self.pseudo is not None and self.method == "sgan":
            raise ValueError("pseudo-labelling applies to none, contrastive and pretrained, "
                             "not sgan")
        if self.relabel_rounds > 1 and not self.relabel:
            raise ValueError("relabel_rounds counts the blend naming rounds: set relabel too")
        if self.soft_names > 0 and not self.relabel:
            raise ValueError("soft_names softens the blend round's names: set relabel too")
        if self.teachers and not self.relabel:
            raise ValueError("teachers distil the blend round's student: set relabel too")
        if self.teachers and not self.distill > 0:
            raise ValueError("teachers with distill 0 would train for nothing: set distill "
                             "in (0, 1]")
        if not self.teachers and self.distill != 0.5:
            raise ValueError("distill weighs the teachers' answers: set teachers too")
        if self.library_propagate > 0 and not self.library_labels:
            raise ValueError("library_propagate joins the library's naming: set "
                             "library_labels too")
        if self.propagate > 0 and not self.relabel:
            raise ValueError("propagate joins the blend round's naming: set relabel too")
        if not isinstance(self.shipped_match, bool):
            raise ValueError(f"shipped_match must be true or false, got "
                             f"{self.shipped_match!r}")
        if self.propagate_graph not in PROPAGATE_GRAPHS:
            raise ValueError(f"propagate_graph must be one of {', '.join(PROPAGATE_GRAPHS)}, "
                             f"got {self.propagate_graph!r}")
        if self.propagate_graph != "features" and not self.propagate > 0:
            raise ValueError("propagate_graph says what the blend round's propagation links: "
                             "set propagate too")
        if self.teachers and self.soft_names > 0:
            raise ValueError("teachers and soft_names both set the named spectra's targets: "
                             "use one")
        if self.by_specimen and not (self.library_labels or self.relabel):
            raise ValueError("by_specimen changes how library_labels and relabel name "
                             "spectra: set one of them")
        for on, what in ((self.library_labels, "library labels apply"),
                         (self.relabel, "a second naming round (relabel) applies")):
            if on > 0 and self.method == "sgan":
                raise ValueError(f"{what} to none, contrastive and pretrained, not sgan")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        d = asdict(self)
        d["views"] = self.views.to_dict()
        return d


# ---------------------------------------------------------------- label fractions

def labelled_fraction_mask(y: np.ndarray, groups: np.ndarray, fraction: float,
                           seed: int = 0) -> np.ndarray:
    """Choose which training spectra keep their label: a bool mask aligned with ``y``.

    Stratified by mineral and grouped by specimen: for every mineral, its specimens
    (``groups``, the RRUFF sample ids) are shuffled with ``seed`` and the first
    ``max(1, round(fraction * n_specimens))`` keep the labels of all their spectra, so every
    mineral keeps at least one labelled specimen and no specimen is split between the
    labelled and the unlabelled part. ``fraction = 1`` keeps everything. A specimen whose
    spectra carry several labels (not in RRUFF) belongs to its majority mineral.
    """
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray([str(g) for g in groups])
    if y.shape != groups.shape:
        raise ValueError(f"y and groups differ in length: {y.shape} vs {groups.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0:
        return np.ones(y.shape, dtype=bool)
    members: dict[str, np.ndarray] = {g: np.flatnonzero(groups == g) for g in np.unique(groups)}
    by_label: dict[int, list[str]] = {}
    for g in sorted(members):
        by_label.setdefault(int(np.bincount(y[members[g]]).argmax()), []).append(g)
    rng = np.random.default_rng(seed)
    mask = np.zeros(y.shape, dtype=bool)
    for lab in sorted(by_label):
        gs = by_label[lab]
        gs = [gs[i] for i in rng.permutation(len(gs))]
        take = max(1, int(round(fraction * len(gs))))
        for g in gs[:take]:
            mask[members[g]] = True
    return mask


def hide_labels(y: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Copy of ``y`` with every unlabelled entry set to ``-1`` (:data:`UNLABELLED`)."""
    out = np.asarray(y, dtype=np.int64).copy()
    out[~np.asarray(labelled, dtype=bool)] = UNLABELLED
    return out


def is_unit_fraction(value: Any) -> bool:
    """True for a real number (not a bool) in [0, 1]: the coverages and weights of naming."""
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
            and 0.0 <= value <= 1.0)


def naming_library(config: SSLConfig) -> LibraryConfig:
    """The library match ``config``'s naming rounds use: the rover's shipped match of
    2026-12-06 (:data:`SHIPPED_NAMING_LIBRARY`) with :attr:`SSLConfig.shipped_match`, else
    :data:`NAMING_LIBRARY`."""
    return SHIPPED_NAMING_LIBRARY if config.shipped_match else NAMING_LIBRARY


def library_pseudo_labels(X_train: np.ndarray, y_masked: np.ndarray, n_classes: int, *,
                          coverage: float, config: LibraryConfig | None = None,
                          groups: np.ndarray | None = None,
                          propagate: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Name the unlabelled training spectra the spectral library names with most confidence.

    The library of the *labelled* spectra (``y_masked >= 0``; :class:`ramanedge.library.
    SpectralLibrary`, ``config`` or :data:`NAMING_LIBRARY`, matched over every mineral)
    matches each unlabelled spectrum (``-1``); the ``floor(coverage * n + 0.5)`` of the
    ``n`` unlabelled spectra with the largest margin (best minus second-best mineral
    similarity; equal margins in spectrum order) get the best mineral as label. Returns
    ``(y, margin)``: a copy of ``y_masked`` with those entries filled, and the margin of
    every unlabelled spectrum (NaN where labelled). Only ``y_masked`` is read, so hidden
    labels cannot leak; a mineral without a labelled spectrum is never named (its similarity
    is -1). ``groups`` (one specimen id per spectrum): the similarities of a specimen's
    unlabelled spectra are averaged first, so they share one name and one margin.
    ``propagate`` (0-1): the score that names is ``(1 - propagate)`` the softmax of the
    similarities (the library's temperature, as the rover blends it) plus ``propagate``
    :func:`propagate_labels` over the library's own view of every training spectrum
    (:func:`ramanedge.library.match_view`: no network), so a spectrum can borrow a name
    through other unlabelled ones; the margin is then that score's. :class:`ValueError` for
    a coverage or weight outside [0, 1], labels below -1, non-finite spectra, no labelled
    spectrum or groups of another length (or with an empty id).
    """
    if not is_unit_fraction(coverage):
        raise ValueError(f"coverage must be a fraction in [0, 1], got {coverage!r}")
    if not is_unit_fraction(propagate):
        raise ValueError(f"propagate must be a weight in [0, 1], got {propagate!r}")
    y = np.asarray(y_masked, dtype=np.int64).copy()
    X = np.asarray(X_train, dtype=np.float32)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X_train (N, points) and y_masked (N,) differ: {X.shape} vs {y.shape}")
    if len(y) and (y.min() < UNLABELLED or y.max() >= n_classes):
        raise ValueError(f"labels must be in -1..{n_classes - 1} (-1 = unlabelled)")
    if not np.all(np.isfinite(X)):
        raise ValueError("library labels need finite spectra; X_train holds NaN or inf")
    known = y >= 0
    if not known.any():
        raise ValueError("library labels need at least one labelled spectrum")
    g = check_groups(groups, len(y))
    margin = np.full(len(y), np.nan)
    free = np.flatnonzero(~known)
    n_take = int(np.floor(float(coverage) * len(free) + 0.5))
    if n_take == 0:
        return y, margin
    cfg = replace(config or NAMING_LIBRARY, candidates=0)
    lib = SpectralLibrary.build(X[known], y[known], n_classes, cfg)
    S = lib.similarity_batch(X[free])  # minerals without library spectra: -1
    if propagate > 0:  # spread from the given labels only, over the library's view
        Z = _spread_given(match_view(X, cfg), y_masked, n_classes)
        q = (1.0 - propagate) * softmax_rows(S / cfg.temperature) + propagate * Z[free]
        margin[free] = _name_surest(y, free, _group_mean(q, free, g), n_take, floor=0.0)
        return y, margin
    margin[free] = _name_surest(y, free, _group_mean(S, free, g), n_take, floor=-1.0)
    return y, margin


def check_groups(groups: Any, n: int) -> list[Any] | None:
    """``groups`` as a list of ``n`` specimen ids (``None`` stays ``None``);
    :class:`ValueError` for another length or an empty id (``None`` or ``""``: a spectrum
    without a specimen would join every other one; give it its own id, e.g. its path, as
    :func:`ramanedge.splits.specimen_groups` does)."""
    if groups is None:
        return None
    g = list(np.asarray(groups, dtype=object).reshape(-1)) if np.ndim(groups) == 1 else None
    if g is None or len(g) != n:
        raise ValueError(f"groups must hold one specimen id per training spectrum ({n}), "
                         f"got shape {np.shape(groups)}")
    if any(v is None or v == "" for v in g):
        raise ValueError("groups holds an empty specimen id (None or ''); give every "
                         "spectrum an id (e.g. ramanedge.splits.specimen_groups)")
    return g


def _group_mean(S: np.ndarray, free: np.ndarray, g: list[Any] | None) -> np.ndarray:
    """``S`` (one row per index of ``free``) with each row replaced by the mean of the rows
    of its group (``g``: one id per spectrum, as :func:`check_groups` returns them, compared
    as given: 1 and "1" are two ids); unchanged without. Only the unlabelled rows (``free``)
    are averaged; with a coverage below 1 the cut may still fall inside a specimen."""
    if g is None or len(free) == 0:
        return S
    index: dict[Any, int] = {}
    inv = np.array([index.setdefault(g[i], len(index)) for i in free])
    sums = np.zeros((len(index), S.shape[1]))
    np.add.at(sums, inv, S)
    return (sums / np.bincount(inv)[:, None])[inv]


def _name_surest(y: np.ndarray, free: np.ndarray, S: np.ndarray, n_take: int, *,
                 floor: float) -> np.ndarray:
    """Give the ``n_take`` rows of ``free`` whose scores ``S`` (one row each) have the
    largest margin (best minus second best; equal margins in spectrum order) their best
    class, in place in ``y``; return every row's margin. ``floor``: the score of no match,
    a column of it beside ``S`` (the same two best for K >= 2, a margin for K = 1)."""
    top2 = np.sort(np.hstack([np.full((len(S), 1), floor), S]), axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    order = np.argsort(-margin, kind="stable")[:n_take]
    y[free[order]] = S[order].argmax(axis=1)
    return margin


def blend_pseudo_labels(X_train: np.ndarray, y_masked: np.ndarray, probs: np.ndarray, *,
                        coverage: float, config: LibraryConfig | None = None,
                        groups: np.ndarray | None = None,
                        return_blend: bool = False, propagated: np.ndarray | None = None,
                        propagate: float = 0.0) -> np.ndarray | tuple[np.ndarray,
                                                                      np.ndarray]:
    """Name the unlabelled training spectra by the network blended with the library.

    ``probs`` (N, K): a trained network's probabilities on ``X_train``. The library of the
    labelled spectra (``y_masked >= 0``; ``config`` or :data:`NAMING_LIBRARY`, its
    candidates and weight) is blended into
    them as the rover blends (:meth:`SpectralLibrary.blend_batch`); the
    ``floor(coverage * n + 0.5)`` of the ``n`` unlabelled spectra with the largest margin of
    the blend get its best mineral (``groups``: per specimen, as in
    :func:`library_pseudo_labels`). Returns a copy of ``y_masked`` with those entries
    filled; only ``y_masked`` is read. ``return_blend``: return ``(y, blend)`` instead,
    ``blend`` (N, K) the (specimen-averaged) blend of each unlabelled spectrum, NaN rows for
    the labelled ones (all NaN when the coverage names none; the soft targets of
    :func:`soft_name_targets`). ``propagated`` (N, K; :func:`propagate_labels`) with
    weight ``propagate``: the score that names is ``(1 - propagate)`` the blend plus
    ``propagate`` those rows (before the specimen mean). :class:`ValueError`
    for a coverage or weight outside [0, 1], shapes that differ, labels outside -1..K-1,
    non-finite input, no labelled spectrum, groups of another length (or with an empty id)
    or a weight without its scores.
    """
    if not is_unit_fraction(coverage):
        raise ValueError(f"coverage must be a fraction in [0, 1], got {coverage!r}")
    y = np.asarray(y_masked, dtype=np.int64).copy()
    X = np.asarray(X_train, dtype=np.float32)
    P = np.asarray(probs, dtype=np.float32)
    if X.ndim != 2 or P.ndim != 2 or len(X) != len(y) or len(P) != len(y):
        raise ValueError(f"X_train (N, points), y_masked (N,) and probs (N, K) differ: "
                         f"{X.shape}, {y.shape}, {P.shape}")
    if len(y) and (y.min() < UNLABELLED or y.max() >= P.shape[1]):
        raise ValueError(f"labels must be in -1..{P.shape[1] - 1} (-1 = unlabelled)")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(P))):
        raise ValueError("blend labels need finite spectra and probabilities")
    known = y >= 0
    if not known.any():
        raise ValueError("blend labels need at least one labelled spectrum")
    if not is_unit_fraction(propagate):
        raise ValueError(f"propagate must be a weight in [0, 1], got {propagate!r}")
    if propagate > 0:
        if propagated is None:
            raise ValueError("propagate weighs the propagated scores: give propagated too")
        Z = np.asarray(propagated, dtype=np.float64)
        if Z.shape != P.shape or not np.all(np.isfinite(Z)):
            raise ValueError(f"propagated must be finite scores shaped like probs {P.shape}, "
                             f"got {Z.shape}")
    g = check_groups(groups, len(y))
    free = np.flatnonzero(~known)
    n_take = int(np.floor(float(coverage) * len(free) + 0.5))
    blend = np.full(P.shape, np.nan)
    if n_take == 0:
        return (y, blend) if return_blend else y
    lib = SpectralLibrary.build(X[known], y[known], P.shape[1], config or NAMING_LIBRARY)
    q = lib.blend_batch(P[free], X[free])
    if propagate > 0:
        q = (1.0 - propagate) * q + propagate * Z[free]
    q = _group_mean(q, free, g)
    _name_surest(y, free, q, n_take, floor=0.0)
    blend[free] = q
    return (y, blend) if return_blend else y


def blend_round_names(model: Any, X_train: np.ndarray, given: np.ndarray, n_classes: int, *,
                      coverage: float, groups: list[Any] | None = None,
                      propagate: float = 0.0, graph: str = "features",
                      library: LibraryConfig | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The names of one blend round of :func:`train_ssl`: ``model`` (the latest network)
    blended with the library of the ``given`` labels (:func:`blend_pseudo_labels`, coverage
    ``coverage``, per specimen with ``groups``) and, with ``propagate`` > 0, that weight of
    :func:`propagate_labels` of the given labels (never a name) over ``graph``
    (:data:`PROPAGATE_GRAPHS`): ``features`` links spectra by the network's penultimate
    features, ``library`` by the library's view (:func:`ramanedge.library.match_view` of
    ``library``, the first round's graph), ``both``
    averages those two propagations, ``joint`` propagates once over the unit features and
    the unit view side by side (a link's cosine is the mean of the two). Returns ``(y,
    blend)`` as ``blend_pseudo_labels(..., return_blend=True)``. Also what
    ``benchmarks.fewlabel_screens names --round second`` scores, with
    :data:`NAMING_LIBRARY` (the screens predate the shipped match; ``ramanedge train`` names
    with :data:`SHIPPED_NAMING_LIBRARY` since 2026-12-06, :attr:`SSLConfig.shipped_match`).
    ``library``: the match that blends and gives the library view (default
    :data:`NAMING_LIBRARY`). :class:`ValueError` for another graph."""
    if graph not in PROPAGATE_GRAPHS:
        raise ValueError(f"graph must be one of {', '.join(PROPAGATE_GRAPHS)}, got {graph!r}")
    Z = None
    if propagate > 0:  # spread from the given labels only, never a name
        def spread(F: np.ndarray) -> np.ndarray:
            return _spread_given(F, given, n_classes)

        def unit(A: np.ndarray) -> np.ndarray:
            A = np.asarray(A, dtype=np.float64)
            return A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)

        F = None if graph == "library" else np.asarray(features_model(model).predict(
            X_train, verbose=0, batch_size=256))
        V = None if graph == "features" else match_view(X_train, library or NAMING_LIBRARY)
        if graph == "features":
            Z = spread(F)
        elif graph == "library":
            Z = spread(V)
        elif graph == "both":
            Z = 0.5 * (spread(F) + spread(V))
        else:
            Z = spread(np.hstack([unit(F), unit(V)]))
    return blend_pseudo_labels(X_train, given, predict_probs(model, X_train),
                               coverage=coverage, groups=groups, return_blend=True,
                               propagated=Z, propagate=propagate,
                               config=library)


def _spread_given(F: np.ndarray, y_given: np.ndarray, n_classes: int) -> np.ndarray:
    """:func:`propagate_labels` as both naming rounds run it: the given labels over ``F``,
    :data:`PROPAGATE_K` neighbours (fewer for a tiny set), :data:`PROPAGATE_ALPHA`."""
    return propagate_labels(F, y_given, n_classes, k=min(PROPAGATE_K, len(F) - 1),
                            alpha=PROPAGATE_ALPHA)


def propagate_labels(features: np.ndarray, y_masked: np.ndarray, n_classes: int, *,
                     k: int = PROPAGATE_K, alpha: float = PROPAGATE_ALPHA,
                     power: float = 3.0, tol: float = 1e-10,
                     block: int = 1024) -> np.ndarray:
    """Class scores (N, K) for every spectrum by label propagation over its neighbours.

    Zhou et al. 2004 as Iscen et al. 2019 use it for deep semi-supervised learning: each
    spectrum's ``features`` (N, D; a trained network's penultimate layer) link it to its
    ``k`` nearest others by cosine, weight ``max(cos, 0) ** power``, made symmetric
    (``W + W^T``) and normalised (``S = D^-1/2 W D^-1/2``); the labels of ``y_masked``
    (``-1`` = unlabelled, only those read) spread along the links, ``F <- alpha S F + Y``,
    until no entry moves by more than ``tol`` times the largest (the fixed point solves
    ``(I - alpha S) F = Y``; S's eigenvalues lie in [-1, 1], so the steps shrink by
    ``alpha`` and the loop stops by the bound ``alpha^t / (1 - alpha) <= tol`` at the
    latest). Each class's column is then divided by its sum (a mineral with many labelled
    spectra does not swamp the rest; Iscen et al.'s class balance) and each row by its own,
    so a row is a distribution over the minerals (all zero for a spectrum that no labelled
    one reaches). Unlike the network and the library, an unlabelled spectrum can borrow a
    name through other unlabelled ones. Memory: blocks of ``block`` rows for the neighbour
    search, then O(N k K) for the 2 N k links. :class:`ValueError` for shapes that differ,
    labels outside -1..K-1, non-finite features, ``k`` not in 1..N-1 or ``alpha`` outside
    (0, 1).
    """
    F = np.asarray(features, dtype=np.float64)
    y = np.asarray(y_masked, dtype=np.int64)
    if F.ndim != 2 or y.shape != (len(F),):
        raise ValueError(f"features (N, D) and y_masked (N,) differ: {F.shape} vs {y.shape}")
    if len(y) and (y.min() < UNLABELLED or y.max() >= n_classes):
        raise ValueError(f"labels must be in -1..{n_classes - 1} (-1 = unlabelled)")
    if not np.all(np.isfinite(F)):
        raise ValueError("label propagation needs finite features")
    n = len(F)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ValueError(f"k must be a whole number in 1..{n - 1} (N - 1), got {k!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    U = F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)
    cols = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, block):  # nearest k others of each row, one block at a time
        C = U[a:a + block] @ U.T
        C[np.arange(len(C)), np.arange(a, a + len(C))] = -np.inf
        cols[a:a + block] = np.argpartition(-C, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    w = np.maximum(np.einsum("ij,ij->i", U[rows], U[cols.ravel()]), 0.0) ** power
    src = np.concatenate([rows, cols.ravel()])  # W + W^T as an edge list
    dst = np.concatenate([cols.ravel(), rows])
    w = np.concatenate([w, w])
    deg = np.bincount(src, weights=w, minlength=n)
    deg[deg == 0] = 1.0
    w = w / np.sqrt(deg[src] * deg[dst])
    order = np.argsort(src, kind="stable")  # links grouped by row: one reduceat a step
    src, dst, w = src[order], dst[order], w[:, None][order]
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    Y = np.zeros((n, n_classes))
    lab = np.flatnonzero(y >= 0)
    Y[lab, y[lab]] = 1.0
    Z = Y.copy()
    for _ in range(int(np.ceil(np.log(tol * (1.0 - alpha)) / np.log(alpha))) + 1):
        SZ = np.zeros_like(Z)
        if len(src):
            SZ[src[starts]] = np.add.reduceat(w * Z[dst], starts, axis=0)
        nxt = alpha * SZ + Y
        moved = np.max(np.abs(nxt - Z))
        Z = nxt
        if moved <= tol * max(float(Z.max()), 1.0):
            break
    Z /= np.maximum(Z.sum(axis=0, keepdims=True), 1e-300)
    return Z / np.maximum(Z.sum(axis=1, keepdims=True), 1e-300)


def soft_name_targets(y_named: np.ndarray, given: np.ndarray, blend: np.ndarray, *,
                      soft: float) -> np.ndarray:
    """Training targets (N, K) for a blend round: one-hot of ``y_named`` for every spectrum
    with a label, where the named ones (``given < 0 <= y_named``) become
    ``(1 - soft) one-hot(name) + soft q``, q = their ``blend`` row (from
    :func:`blend_pseudo_labels` with ``return_blend``) divided by its sum. Rows of spectra
    still unnamed are zero (they do not train). A wrong name then costs less when the blend
    itself was unsure of it. :class:`ValueError` for ``soft`` outside [0, 1], shapes that
    differ, a label that was given changed or a named row whose blend is missing, negative or
    zero."""
    if not is_unit_fraction(soft):
        raise ValueError(f"soft must be a fraction in [0, 1], got {soft!r}")
    y = np.asarray(y_named, dtype=np.int64)
    g = np.asarray(given, dtype=np.int64)
    B = np.asarray(blend, dtype=np.float64)
    if B.ndim != 2 or y.shape != g.shape or y.shape != (len(B),):
        raise ValueError(f"y_named (N,), given (N,) and blend (N, K) differ: {y.shape}, "
                         f"{g.shape}, {B.shape}")
    if len(y) and (y.min() < UNLABELLED or y.max() >= B.shape[1]):
        raise ValueError(f"labels must be in -1..{B.shape[1] - 1} (-1 = unlabelled)")
    if np.any((g >= 0) & (y != g)):
        raise ValueError("y_named changes a label that was given")
    T = np.zeros(B.shape, dtype=np.float32)
    has = y >= 0
    T[np.flatnonzero(has), y[has]] = 1.0
    named = (g < 0) & has
    if named.any() and soft > 0:
        q = B[named]
        if not (np.all(np.isfinite(q)) and np.all(q >= 0) and np.all(q.sum(axis=1) > 0)):
            raise ValueError("every named spectrum needs its blend row (finite, >= 0, not "
                             "all zero)")
        T[named] = (1.0 - soft) * T[named] + soft * q / q.sum(axis=1, keepdims=True)
    return T


# ---------------------------------------------------------------- one entry point

def train_ssl(X_train: np.ndarray, y_masked: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
              n_classes: int, model_config: ModelConfig | None = None,
              train_config: TrainConfig | None = None, config: SSLConfig | None = None,
              *, pretrained: dict[str, list[np.ndarray]] | None = None,
              groups: np.ndarray | None = None, log: Log = print) -> TrainResult:
    """Train with ``config.method`` on spectra whose unlabelled labels are ``-1``.

    ``y_masked`` is the only label input: the labels of unlabelled spectra never enter this
    function. With ``config.library_labels`` the spectral library of the labelled spectra
    names that fraction of the unlabelled ones first (:func:`library_pseudo_labels`), and
    they train as labelled. With ``config.relabel`` a second round follows: the first
    network blended with that library names the unlabelled spectra again
    (:func:`blend_pseudo_labels`) and the network trains anew on those names (the result is
    the second network; its ``seconds`` count both rounds; ``config.relabel_rounds`` such
    rounds, each naming with the latest network; with ``config.soft_names`` the named
    spectra of those rounds train on soft targets, :func:`soft_name_targets`; with
    ``config.teachers`` each of those rounds first trains that many teachers on its labels
    and names and distils them into its network (their summaries in the result's
    ``teachers``, their time in its ``seconds``); ``labels`` keeps the hard names; with
    ``config.propagate`` the naming score of those rounds mixes in :func:`propagate_labels`
    over the graph ``config.propagate_graph`` names: the latest network's features by
    default, :func:`blend_round_names`). With ``config.by_specimen``
    both rounds name per specimen: ``groups`` (one specimen id per training spectrum) is
    required then.

    ``pretrained``: backbone weights of an earlier :func:`pretrain_contrastive` on the same
    ``X_train`` (contrastive pretraining uses no labels, so one pretraining serves every
    labelled fraction; computed here when ``None``), or, for ``pretrained``, of
    :func:`trainer.pretrain.pretrain` (required). The result's ``labels`` are the labels
    the model was fitted to (``y_masked`` with the last round's names filled in).
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or PAPER_TRAIN
    config = config or SSLConfig()
    X_train, y_masked, X_val, y_val = check_sets(X_train, y_masked, X_val, y_val)
    if y_masked.max() >= n_classes or y_masked.min() < UNLABELLED:
        raise ValueError(f"labels must be in -1..{n_classes - 1}")
    lab = y_masked >= 0
    if not lab.any():
        raise ValueError("no labelled training spectrum")
    given = y_masked.copy()  # the labels given, before any naming
    if config.by_specimen and groups is None:
        raise ValueError("naming by specimen needs the specimen of each training spectrum "
                         "(groups=)")
    per = check_groups(groups, len(X_train)) if config.by_specimen else None
    if config.library_labels > 0:  # named from the labelled part only (y_masked)
        y_masked, _ = library_pseudo_labels(X_train, y_masked, n_classes,
                                            coverage=config.library_labels, groups=per,
                                            propagate=config.library_propagate,
                                            config=naming_library(config))
        if log is not None:
            log(f"library labels: the library of the {int(lab.sum())} labelled spectra named "
                f"{int((y_masked >= 0).sum() - lab.sum())} of the {int((~lab).sum())} "
                "unlabelled ones")
    if config.method == "sgan":
        result = train_sgan(X_train, y_masked, X_val, y_val, n_classes, model_config,
                            train_config, config, log=log)
        result.labels = y_masked
        return result
    if config.method == "pretrained" and pretrained is None:
        raise ValueError("ssl method 'pretrained' needs the backbone weights (pretrained=)")
    if config.method == "contrastive" and pretrained is None:
        pretrained = pretrain_contrastive(X_train, model_config, config,
                                          seed=train_config.seed,
                                          deterministic=train_config.deterministic,
                                          max_epochs=train_config.epochs, log=log)

    def fit(y: np.ndarray, targets: np.ndarray | None = None,
            teach: bool = False) -> TrainResult:
        keep = y >= 0
        info: list[dict[str, float]] = []
        t0 = time.perf_counter()
        if teach:  # teachers on the given labels and this round's names, as the default's
            mean, info = train_teachers(
                X_train[keep], y[keep], X_val, y_val, n_classes, model_config,
                replace(few_label_train_config(train_config), teachers=config.teachers,
                        distill=config.distill),
                backbone=pretrained if config.method in ("contrastive", "pretrained")
                else None, log=None)
            targets = np.zeros((len(y), n_classes), dtype=np.float32)
            targets[keep] = distillation_targets(y[keep], mean, config.distill)
        taught = time.perf_counter() - t0
        seed_everything(train_config.seed, train_config.deterministic)
        model = build_model(n_classes, model_config)
        if config.method in ("contrastive", "pretrained"):
            load_backbone(model, pretrained)
        result = fit_model(model, X_train[keep], y[keep], X_val, y_val, n_classes,
                           train_config, epoch_samples=X_train.shape[0],
                           soft_targets=None if targets is None else targets[keep],
                           unlabelled=X_train[~keep], pseudo=config.pseudo, log=log)
        result.labels = y  # the given labels and the names, -1 elsewhere
        if teach:
            result.teachers = info
            result.seconds += taught
        return result

    result = fit(y_masked)
    for r in range(config.relabel_rounds if config.relabel > 0 else 0):
        # round r + 2: named by the latest network + library blend, trained again
        y2, q = blend_round_names(result.model, X_train, given, n_classes,
                                  coverage=config.relabel, groups=per,
                                  propagate=config.propagate, graph=config.propagate_graph,
                                  library=naming_library(config))
        if log is not None:
            log(f"{'second' if r == 0 else f'round {r + 2}'}: the network + library blend"
                f"{' + label propagation' if config.propagate > 0 else ''} named "
                f"{int((y2 >= 0).sum() - (given >= 0).sum())} of the "
                f"{int((given < 0).sum())} unlabelled spectra")
        before = result.seconds
        result = fit(y2, soft_name_targets(y2, given, q, soft=config.soft_names)
                     if config.soft_names > 0 else None, teach=config.teachers > 0)
        result.seconds += before
    return result


# ---------------------------------------------------------------- run folder

def few_label_train_config(train_config: TrainConfig) -> TrainConfig:
    """``train_config`` as a few-label run trains: no outlier exposure and no teachers (they
    would need the hidden labels), the rest (schedule, augmentation, the int8-aware
    fine-tune's ``qat_epochs``, which trains on the given labels and the library's names)
    as given, and no moving average of the weights (the few-label recipe was measured
    without it; rule (E) judged it on fully labelled runs). :func:`ssl_train_run` and
    ``benchmarks.fewlabel --schedule cli`` both use it."""
    return replace(train_config, outlier_exposure=0.0, objectosphere=0.0,
                   background_class=False, teachers=0, teacher_folds=False, distill=0.0,
                   distill_views=False, distill_uncropped=False, ema=0.0)


def ssl_train_run(out: str | os.PathLike, data: Any, model_config: ModelConfig | None = None,
                  train_config: TrainConfig | None = None, config: SSLConfig | None = None,
                  *, overwrite: bool = False,
                  pretrained: dict[str, list[np.ndarray]] | None = None,
                  pretrained_meta: dict[str, Any] | None = None,
                  log: Log = print, report: Log = None) -> Path:
    """Like :func:`trainer.run.train_run` with a labelled fraction and an SSL method.

    Writes the same run folder (model.keras, labels.json, config.json, split.csv,
    metrics.json, history.json, confusion.png) plus ``labelled.csv`` (``path,labelled`` for
    the training spectra) and ``config.json["ssl"]`` (the :class:`SSLConfig` and counts).
    Validation and test parts of the split are untouched. ``pretrained`` (method
    ``pretrained``): backbone weights; ``pretrained_meta`` (their ``pretrain.json``): checked
    to have left every validation and test specimen of this split out of the pretraining
    corpus (:class:`SSLOptionError` otherwise). With ``train_config.qat_epochs`` (the
    flight recipe's default) the model is then fine-tuned int8-aware on the labels it was
    fitted to, as :func:`trainer.run.int8_finetune` says (``model_float.keras`` keeps the
    float network), so that ``ramanedge quantize``'s default gate judges the network that
    was trained with the rover's roundings. ``report`` (default: ``log``) receives the
    final test result and the run folder, as in :func:`trainer.run.train_run`.
    """
    from trainer.model import count_params
    from trainer.run import LABELLED_FILE, SPLITS, say_written, start_run, write_run

    model_config = model_config or ModelConfig()
    train_config = few_label_train_config(train_config or TrainConfig())
    config = config or SSLConfig()
    say = report if report is not None else log
    out, ds, split = start_run(out, data, overwrite=overwrite, log=log, report=say)
    K = len(ds.labels)
    tr, va, te = (split == s for s in SPLITS)
    if pretrained_meta is not None:
        check_no_leak(pretrained_meta, ds, split)
    tr_idx = np.flatnonzero(tr)
    groups = specimen_groups(ds)
    lab_mask = labelled_fraction_mask(ds.y[tr], groups[tr], config.labelled_fraction,
                                      config.label_seed)
    y_masked = hide_labels(ds.y[tr], lab_mask)
    n_lab = int(lab_mask.sum())
    if log is not None:
        log(f"split: {int(tr.sum())} train ({n_lab} labelled, "
            f"{len(set(groups[tr][lab_mask]))} of {len(set(groups[tr]))} specimens) / "
            f"{int(va.sum())} val / {int(te.sum())} test; ssl {config.method}; model "
            f"{count_params(model_config, K):,} parameters")
    result = train_ssl(ds.X[tr], y_masked, ds.X[va], ds.y[va], K, model_config, train_config,
                       config, pretrained=pretrained, groups=groups[tr], log=log)
    models: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if train_config.qat_epochs:
        from trainer.run import int8_finetune

        result, model_config, models, extra["qat"] = int8_finetune(
            result, ds, split, model_config, train_config, labels=result.labels,
            given=lab_mask, log=log)
    lines = ["path,labelled"] + [f"{ds.paths[i]},{int(m)}"
                                 for i, m in zip(tr_idx, lab_mask, strict=True)]
    test = write_run(
        out, ds, split, data, model_config, train_config, result,
        extra_config={"ssl": {**config.to_dict(), "n_labelled": n_lab,
                              "n_unlabelled": int(tr.sum()) - n_lab,
                              **({"backbone": pretrained_meta.get("source")}
                                 if pretrained_meta is not None else {})}, **extra},
        extra_metrics={"n_labelled": n_lab}, extra_models=models,
        extra_files={LABELLED_FILE: "\n".join(lines) + "\n"},
        title=f"{data.dataset} test ({config.method}, {100 * config.labelled_fraction:g}% labels)",
    )
    say_written(say, out, test, result)
    return out


class SSLOptionError(DataError):
    """An invalid ``--labelled-fraction`` / ``--ssl`` / ``--backbone`` / ``--pseudo-label``
    / ``--library-labels`` / ``--relabel`` / ``--names-per-spectrum`` value."""


def check_no_leak(meta: dict[str, Any], ds: Any, split: np.ndarray) -> None:
    """Raise :class:`SSLOptionError` unless the pretraining described by ``meta`` (its
    ``excluded_ids`` / ``excluded_paths``) left out every validation and test spectrum of
    ``split``: otherwise its corpus held specimens this run is judged on."""
    ids = set(meta.get("excluded_ids") or ())
    paths = set(meta.get("excluded_paths") or ())
    held = [(sid, p) for sid, p, s in zip(ds.sample_ids, ds.paths, split, strict=True)
            if s != "train"]
    leak = sorted({sid or p for sid, p in held if (sid not in ids if sid else p not in paths)})
    if leak:
        raise SSLOptionError(
            f"the pretrained backbone's corpus held {len(leak)} validation/test specimens of "
            f"this run's split (e.g. {leak[0]}); pretrain for this split: ramanedge pretrain "
            f"--split {meta.get('split_kind', 'grouped')} --split-seed N with the run's data "
            "options")


def ssl_cli_train(out: str | os.PathLike, data: Any, model_config: ModelConfig,
                  train_config: TrainConfig, labelled_fraction: float, method: str,
                  *, overwrite: bool = False, backbone: str | os.PathLike | None = None,
                  pseudo_label: bool = False, library_labels: float = 0.0,
                  relabel: float = 0.0, propagate: float | None = None,
                  by_specimen: bool = True, log: Log = print, report: Log = None) -> Path:
    """Back end of ``ramanedge train --labelled-fraction F --ssl METHOD`` (see trainer.cli).

    Validates the options (``--labelled-fraction``, ``--ssl``, ``--backbone``,
    ``--pseudo-label``, ``--library-labels``, ``--relabel``, ``--propagate``; a bad value
    raises :class:`SSLOptionError`, one line in the CLI) and calls :func:`ssl_train_run`
    with ``label_seed`` = the training seed. ``propagate``: the label-propagation weight of
    every naming round that runs, :attr:`SSLConfig.library_propagate` with
    ``library_labels`` and :attr:`SSLConfig.propagate` with ``relabel`` (``None``:
    :data:`CLI_PROPAGATE`; the second round propagates over :data:`CLI_PROPAGATE_GRAPH`).
    ``by_specimen``: the library labels and the second round name
    per specimen (:attr:`SSLConfig.by_specimen`; the CLI's default, ``--names-per-spectrum``
    turns it off); without either naming the config records ``false``.
    """
    weights = backbone_meta = None
    if propagate is not None and not (library_labels or relabel):
        raise SSLOptionError("--propagate mixes label propagation into the naming rounds: "
                             "give --library-labels or --relabel too")
    if propagate is not None and not is_unit_fraction(propagate):
        raise SSLOptionError(f"--propagate takes a weight in [0, 1], e.g. 0.5, got "
                             f"{propagate:g}")
    if propagate is None:
        propagate = CLI_PROPAGATE
    if not by_specimen and not (library_labels or relabel):
        raise SSLOptionError("--names-per-spectrum changes how --library-labels and --relabel "
                             "name spectra: give one of them")
    for flag, on in (("--pseudo-label", pseudo_label), ("--library-labels", library_labels),
                     ("--relabel", relabel)):
        if on and float(labelled_fraction) >= 1.0:
            raise SSLOptionError(f"{flag} labels the unlabelled training spectra: it needs "
                                 f"--labelled-fraction below 1, got {labelled_fraction:g}")
    if backbone is not None:
        if method != "none":
            raise SSLOptionError(f"--backbone fine-tunes a pretrained backbone; it cannot be "
                                 f"combined with --ssl {method}")
        weights, backbone_meta = check_backbone(backbone, model_config)
        method = "pretrained"
    try:
        config = SSLConfig(method=method, labelled_fraction=float(labelled_fraction),
                           label_seed=train_config.seed,
                           pseudo=PseudoLabelConfig() if pseudo_label else None,
                           library_labels=library_labels, relabel=relabel,
                           library_propagate=propagate if library_labels else 0.0,
                           propagate=propagate if relabel else 0.0,
                           propagate_graph=CLI_PROPAGATE_GRAPH if relabel and propagate > 0
                           else "features",
                           by_specimen=bool(by_specimen and (library_labels or relabel)),
                           # adopted 2026-12-06 (docs/parts/ssl.md, "Naming with the
                           # rover's match"): name with the match the rover answers with
                           shipped_match=bool(library_labels or relabel))
    except ValueError as e:
        if "not sgan" in str(e):
            hint = ""
        elif "library_labels" in str(e):
            hint = " (--library-labels takes a fraction in [0, 1], e.g. 0.6)"
        elif "propagate" in str(e):
            hint = " (--propagate takes a weight in [0, 1], e.g. 0.5)"
        elif "relabel" in str(e):
            hint = " (--relabel takes a fraction in [0, 1], e.g. 1.0)"
        else:
            hint = (f" (--labelled-fraction takes a number in (0, 1], e.g. 0.1; --ssl "
                    f"{'|'.join(m for m in SSL_METHODS if m != 'pretrained')})")
        raise SSLOptionError(f"{e}{hint}") from None
    return ssl_train_run(out, data, model_config, train_config, config, overwrite=overwrite,
                         pretrained=weights, pretrained_meta=backbone_meta, log=log,
                         report=report)


def check_backbone(folder: str | os.PathLike, model_config: ModelConfig
                   ) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    """The weights and ``pretrain.json`` of a ``ramanedge pretrain`` folder.

    Raises :class:`SSLOptionError` when the folder is not a pretraining, was made for
    another architecture, or its weights do not fit that architecture's layers. Whether its
    corpus left out this run's validation and test specimens is checked by
    :func:`ssl_train_run` and :func:`trainer.run.train_run` once the split is known
    (:func:`check_no_leak`). ``meta["source"]`` records the folder (absolute) and the
    sha256 of its weights.
    """
    import json

    from ramanedge.fsutil import sha256_file
    from trainer.pretrain import load_backbone_file

    meta_path = Path(folder) / "pretrain.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("pretrain.json is not a JSON object")
        weights = load_backbone_file(folder)
        pre_model = ModelConfig.from_dict(meta["model"])
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise SSLOptionError(f"--backbone {folder} is not a pretraining folder "
                             f"(backbone.npz + pretrain.json): {e}") from None
    if meta.get("keep_unknown_evaluation"):
        raise SSLOptionError(f"--backbone {folder} was pretrained with the unknown-evaluation "
                             "minerals (--all-minerals); its runs would make the unknown-"
                             "mineral figures optimistic. Pretrain without --all-minerals")
    meta["source"] = {"folder": str(Path(folder).resolve()),
                      "sha256": sha256_file(Path(folder) / "backbone.npz"),
                      "pretrain": meta.get("pretrain"), "date": meta.get("date")}
    # the backbone ends at `features`; the dropout after it is the fine-tuning's own choice
    if replace(pre_model, dropout=0.0) != replace(model_config, dropout=0.0):
        a, b = pre_model.to_dict(), model_config.to_dict()
        diff = ", ".join(f"{k} {a[k]!r} (this run: {b[k]!r})" for k in a
                         if k != "dropout" and a[k] != b[k])
        hint = (" (--no-early-pool for a backbone pretrained before early pooling)"
                if a["early_pool"] != b["early_pool"] else
                f" (--stem-stride {a.get('stem_stride', 1)}, the stride it was pretrained with)"
                if a.get("stem_stride") != b.get("stem_stride") else "")
        raise SSLOptionError(f"--backbone {folder} was pretrained for another architecture "
                             f"({diff}); train with the same one{hint}")
    from trainer.contrastive import backbone_layers
    from trainer.model import build_model

    for layer in backbone_layers(build_model(2, model_config)):
        want = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(np.shape(w)) for w in weights.get(layer.name, ())]
        if got != want:
            raise SSLOptionError(f"--backbone {folder}: backbone.npz does not fit its "
                                 f"architecture (layer {layer.name!r}: weights {got}, expected "
                                 f"{want}); pretrain again")
    return weights, meta
