"""A spectral library beside the network: how a mineralogist names a Raman spectrum.

The flight model's answer is blended with a match of the spectrum itself against the
training spectra (the library), the way RRUFF's own search names a spectrum:

1. both sides are raised to the power ``power`` (clipped at 0 first; 1/4 lets the weak
   bands count beside the strongest one, as spectral search's square root does), high-pass
   filtered (:func:`high_pass`: minus the moving average over ``2 h + 1`` grid points,
   which takes the fluorescence background out of a raw spectrum), summed over bins of
   ``bin_width`` grid points and scaled to unit length (:func:`match_view`);
2. the cosine with every library spectrum is the best over lags ``-R .. R`` grid points in
   steps of ``step`` (:func:`lagged_cosine`), each lag ``d``'s cosine first lowered by
   ``lag_penalty * (d / R)^2``: a calibration shift of up to ``R`` cm⁻¹ is still found,
   which is what the network alone is weakest at, but a mineral whose bands line up only
   far from where they were measured no longer scores as well as one that matches in place;
3. each mineral's similarity ``s_c`` is its best library spectrum; the answer is
   ``q = (1 - w) p + w softmax(s / T)`` (:meth:`SpectralLibrary.blend`), ``p`` the head's
   probabilities. The match is made only for the ``candidates`` minerals the head finds
   most probable (the others get ``s = -1``: no library share), which spares most of the
   product.

The ground (``quantize``) builds the library from the training split and calibrates the
prediction sets on the blended probabilities; the rover (``edge_runtime``) runs the same
code here. Chosen on validation (``benchmarks.library_match``, ``benchmarks.library_eval
--candidates``, ``--coarse`` and ``--variants``, ``docs/parts/flight.md``, "A spectral
library beside the network"): ``h = 25``, bins of 4 grid points, ``R = 32``, ``step = 4``,
``T = 0.02``, 20 candidates; since 2026-12-06 ``power = 0.25`` and ``w = 0.5`` (before:
1 and 0.3); a spectrum covering less than 95 % of the grid is matched over the part it
covers; since 2026-12-08 ``lag_penalty = 0.1`` (before: 0; ``benchmarks.library_eval
--variants lag-prior``, ``docs/parts/flight.md``, "A prior on the lag": about +1 point on
unshifted spectra for about -6 at a 30 cm⁻¹ offset). The bins cost a fifth of the grid
match's multiply-adds and a quarter of its bytes at the same validation top-1. numpy only.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any

import numpy as np

from ramanedge.errors import ModelError


@dataclass(frozen=True)
class LibraryConfig:
    """How the library match is made and blended (the manifest's ``library`` section).

    ``half_width``: grid points each side of the moving average the high-pass subtracts
    (0 = no filter); ``reach``: the largest lag tried, grid points (= cm⁻¹ on the model
    grid); ``step``: grid points between the lags tried; ``weight``: ``w``, the library's
    share of the answer (0-1); ``temperature``: ``T`` of the softmax over the similarities;
    ``candidates``: the match is made for this many of the head's most probable minerals
    only (0 = every mineral; manifests without the key: 0). ``window_norm``: for a spectrum
    that covers only part of the grid, each library spectrum's cosine is taken over the
    covered part (its norm there instead of over the whole grid; manifests without the key:
    off), for spectra covering less than ``window_below`` of the grid (1.0: any gap;
    manifests without the key: 1.0). ``bin_width``: grid points summed into one library
    point after the high-pass (both sides, then unit length again; 1 = the grid itself;
    manifests without the key: 1); ``reach`` and ``step`` stay in grid points and must be
    multiples of it. A coarser match costs ``1 / bin_width`` of the multiply-adds per lag
    and of the library's bytes. ``power``: both sides' grid spectra, clipped at 0, are
    raised to it before the high-pass (a number in (0, 1]; 1 = as they are; manifests
    without the key: 1). ``lag_penalty``: a prior that calibration offsets are small: each
    lag ``d``'s cosine is lowered by ``lag_penalty * (d / reach) ** 2`` before the best lag
    is taken (0 = every lag alike, the match before the key; manifests without the key: 0).
    """

    half_width: int = 25
    reach: int = 32
    step: int = 4
    weight: float = 0.5
    temperature: float = 0.02
    candidates: int = 20
    window_norm: bool = True
    window_below: float = 0.95
    bin_width: int = 4
    power: float = 0.25
    lag_penalty: float = 0.1

    def __post_init__(self) -> None:
        for name in ("half_width", "reach", "candidates"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                raise ModelError(f"library {name} must be a whole number >= 0, got {v!r}")
        if type(self.step) is not int or self.step < 1:
            raise ModelError(f"library step must be a whole number >= 1, got {self.step!r}")
        if self.reach % self.step:
            raise ModelError(f"library reach must be a multiple of its step (so that lag 0 is "
                             f"among the lags tried), got reach {self.reach}, step {self.step}")
        b = self.bin_width
        if type(b) is not int or b < 1:
            raise ModelError(f"library bin_width must be a whole number >= 1, got {b!r}")
        if self.step % b or self.reach % b:
            raise ModelError(f"library reach and step must be multiples of bin_width (lags "
                             f"move whole bins), got reach {self.reach}, step {self.step}, "
                             f"bin_width {b}")
        wb = self.window_below
        if isinstance(wb, bool) or not isinstance(wb, (int, float)) or not 0.0 < wb <= 1.0:
            raise ModelError(f"library window_below must be a number in (0, 1], got {wb!r}")
        if not isinstance(self.window_norm, bool):
            raise ModelError(f"library window_norm must be true or false, got "
                             f"{self.window_norm!r}")
        pw = self.power
        if (isinstance(pw, bool) or not isinstance(pw, (int, float)) or not np.isfinite(pw)
                or not 0.0 < pw <= 1.0):
            raise ModelError(f"library power must be a number in (0, 1], got {pw!r}")
        lp = self.lag_penalty
        if (isinstance(lp, bool) or not isinstance(lp, (int, float)) or not np.isfinite(lp)
                or not 0.0 <= lp <= 1.0):
            raise ModelError(f"library lag_penalty must be a number in [0, 1], got {lp!r}")
        w, t = self.weight, self.temperature
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise ModelError(f"library weight must be a number in [0, 1], got {w!r}")
        if (isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t)
                or t <= 0):
            raise ModelError(f"library temperature must be a number > 0, got {t!r}")

    def to_dict(self) -> dict[str, Any]:
        """The manifest's form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> LibraryConfig:
        """From a manifest's ``library`` section (other keys, such as ``file``, ignored);
        :class:`ModelError` naming a missing or bad key."""
        if not isinstance(d, dict):
            raise ModelError(f"library section must be an object, got {type(d).__name__}")
        missing = [k for k in ("half_width", "reach", "step", "weight", "temperature")
                   if k not in d]
        if missing:
            raise ModelError(f"library section lacks {', '.join(missing)}")
        return cls(half_width=d["half_width"], reach=d["reach"], step=d["step"],
                   weight=d["weight"], temperature=d["temperature"],
                   candidates=d.get("candidates", 0),
                   window_norm=d.get("window_norm", False),
                   window_below=d.get("window_below", 1.0),
                   bin_width=d.get("bin_width", 1),
                   power=d.get("power", 1.0),
                   lag_penalty=d.get("lag_penalty", 0.0))


def high_pass(X: np.ndarray, half_width: int) -> np.ndarray:
    """Rows of ``X`` (N, P) or one spectrum (P,) minus their centred moving average over
    ``2 * half_width + 1`` points (edges reflected), scaled to unit length (float32; an
    all-zero row stays zero). ``half_width = 0``: only scaled."""
    X = np.asarray(X, dtype=np.float64)
    one = X.ndim == 1
    X = np.atleast_2d(X)
    h = int(half_width)
    if h > 0:
        if X.shape[1] <= h + 1:
            raise ModelError(f"high_pass needs more than {h + 1} points, got {X.shape[1]}")
        # np.pad(X, ((0, 0), (h + 1, h)), mode="reflect"), the same numbers without np.pad's
        # ~30 us of Python per call (the rover filters one spectrum at a time)
        c = np.cumsum(np.concatenate([X[:, h + 1:0:-1], X, X[:, -2:-h - 2:-1]], axis=1),
                      axis=1)
        X = X - (c[:, 2 * h + 1:] - c[:, :-2 * h - 1]) / (2 * h + 1)
    n = np.sqrt(np.add.reduce(X * X, axis=1, keepdims=True))  # np.linalg.norm's arithmetic
    out = (X / np.maximum(n, 1e-12)).astype(np.float32)
    return out[0] if one else out


def powered(X: np.ndarray, power: float) -> np.ndarray:
    """Grid spectra ``X`` clipped at 0 and raised to ``power`` in float32 (1: ``X`` as it
    is, not clipped, not cast)."""
    if power == 1.0:
        return np.asarray(X)
    return np.maximum(np.asarray(X, dtype=np.float32), np.float32(0.0)) ** np.float32(power)


def match_view(X: np.ndarray, config: LibraryConfig) -> np.ndarray:
    """What the match compares: :func:`high_pass` of ``X`` (N, P) or one spectrum (P,)
    raised to ``config.power`` (:func:`powered`), summed over bins of ``config.bin_width``
    points (the last bin padded with zeros) and scaled to unit length again (float32)."""
    V = high_pass(powered(X, config.power), config.half_width)
    b = config.bin_width
    if b == 1:
        return V
    pad = -V.shape[-1] % b
    if pad:
        V = np.concatenate([V, np.zeros((*V.shape[:-1], pad), dtype=V.dtype)], axis=-1)
    V = V.reshape(*V.shape[:-1], -1, b).sum(axis=-1, dtype=np.float64)
    # np.linalg.norm(V, axis=-1, keepdims=True)'s own arithmetic, without its Python
    norm = np.sqrt(np.add.reduce(V * V, axis=-1, keepdims=True))
    return (V / np.maximum(norm, 1e-12)).astype(np.float32)


def lags(reach: int, step: int) -> list[int]:
    """The lags tried, grid points: ``-reach, -reach + step, ..., reach`` (0 among them when
    ``reach`` is a multiple of ``step``, as :class:`LibraryConfig` requires)."""
    return list(range(-int(reach), int(reach) + 1, int(step)))


def lag_penalties(reach: int, step: int, penalty: float) -> np.ndarray:
    """``(lags,)`` float32: what each lag of :func:`lags` takes off its cosine,
    ``penalty * (d / reach) ** 2`` (all 0 for ``penalty = 0`` or ``reach = 0``)."""
    d = np.asarray(lags(reach, step), dtype=np.float64)
    if not penalty or not reach:
        return np.zeros(len(d), dtype=np.float32)
    return (penalty * (d / reach) ** 2).astype(np.float32)


def moved(Q: np.ndarray, d: int) -> np.ndarray:
    """The rows of ``Q`` (N, P; float32) moved by ``d`` points (right for ``d`` > 0), the
    points they leave empty zero (no wrap-around); ``d = 0``: ``Q`` itself."""
    if d == 0:
        return Q
    M = np.zeros_like(Q)
    if d > 0:
        M[:, d:] = Q[:, :-d]
    else:
        M[:, :d] = Q[:, -d:]
    return M


def lagged_cosine(Q: np.ndarray, L: np.ndarray, reach: int, step: int,
                  penalty: float = 0.0) -> np.ndarray:
    """``(N, M)``: the best cosine of each unit row of ``Q`` (N, P) with each unit row of
    ``L`` (M, P) over :func:`lags` (the query moved by ``d`` points, the points it leaves
    empty zero), each lag's first lowered by its :func:`lag_penalties` (``penalty = 0``:
    none). ``reach = 0``: the plain cosine."""
    Q = np.asarray(Q, dtype=np.float32)
    cost = lag_penalties(reach, step, penalty)
    best = None
    for d, c in zip(lags(reach, step), cost.tolist(), strict=True):
        C = moved(Q, d) @ L.T
        if c:
            C -= np.float32(c)
        best = C if best is None else np.maximum(best, C)
    return best


def softmax_rows(Z: np.ndarray) -> np.ndarray:
    """Row-wise (or one vector's) softmax, float64."""
    Z = np.asarray(Z, dtype=np.float64)
    E = np.exp(Z - Z.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def blend_rows(P: np.ndarray, S: np.ndarray, config: LibraryConfig) -> np.ndarray:
    """``(1 - w) P + w softmax(S / T)`` row by row, ``S`` (N, K) the whole match with each
    row's non-candidates (``config.candidates``: all but the head's most probable, ties in
    class order) set to -1 first: the numbers a match made for the candidates alone gives."""
    P = np.asarray(P, dtype=np.float64)
    S = np.array(S, dtype=np.float64)
    n = config.candidates
    if n and n < S.shape[1]:
        keep = np.zeros(S.shape, dtype=bool)
        np.put_along_axis(keep, np.argsort(-P, axis=1, kind="stable")[:, :n], True, axis=1)
        S[~keep] = -1.0
    return _mix(P, S, config)


def _mix(P: np.ndarray, S: np.ndarray, config: LibraryConfig) -> np.ndarray:
    """The blend itself, ``(1 - w) P + w softmax(S / T)`` (rows or one vector, float64)."""
    return (1.0 - config.weight) * np.asarray(P, dtype=np.float64) + config.weight * (
        softmax_rows(S / config.temperature))


class SpectralLibrary:
    """The library of an artifact: unit high-passed training spectra and their class ids.

    ``spectra`` (M, P): :func:`match_view` rows (P = the grid's points divided by
    ``bin_width``, rounded up; any float dtype; held as float32 after
    rounding to float16, exactly what :meth:`npz_bytes` stores and a rover loads);
    ``y`` (M,): class ids in ``0 .. n_classes - 1``; ``config``: :class:`LibraryConfig`;
    ``grid_points``: the length of the grid spectra it matches (default: P x ``bin_width``;
    it must round up to P bins). A class without library spectra gets similarity -1 (its
    share of the blend is then ``w * exp(-1/T) / ...``, next to nothing).
    """

    def __init__(self, spectra: np.ndarray, y: np.ndarray, n_classes: int,
                 config: LibraryConfig, *, grid_points: int | None = None) -> None:
        S = np.asarray(spectra)
        y = np.asarray(y)
        if S.ndim != 2 or len(S) == 0 or S.dtype.kind != "f":
            raise ModelError(f"library spectra must be float (M, points) with M >= 1, got "
                             f"{S.dtype} {S.shape}")
        b = config.bin_width
        g = S.shape[1] * b if grid_points is None else grid_points
        if type(g) is not int or -(-g // b) != S.shape[1]:
            raise ModelError(f"library of {S.shape[1]} points (bins of {b}) cannot match "
                             f"spectra of {g!r} grid points")
        self.grid_points = g
        if y.shape != (len(S),) or y.dtype.kind not in "iu" or not (
                y.min() >= 0 and y.max() < n_classes):
            raise ModelError(f"library class ids must be one integer in 0..{n_classes - 1} "
                             f"per spectrum ({len(S)}), got {y.dtype} {y.shape}")
        if not np.all(np.isfinite(S)):
            raise ModelError("library spectra hold NaN or infinite values")
        order = np.argsort(y, kind="stable")  # each class one contiguous block
        self.spectra = np.ascontiguousarray(S[order].astype(np.float16), dtype=np.float32)
        self.y = y[order].astype(np.int64)
        self.n_classes = int(n_classes)
        self.config = config
        self.classes, self._starts = np.unique(self.y, return_index=True)
        b = config.bin_width
        self._reach, self._step = config.reach // b, config.step // b  # in library points
        self._n_lags = len(lags(self._reach, self._step))
        # each lag's prior cost, in the order of the windows below (symmetric in the lag);
        # None when there is none, so that the match without it is computed as before
        cost = lag_penalties(self._reach, self._step, config.lag_penalty)
        self._lag_cost = cost if cost.any() else None
        ends = np.append(self._starts[1:], len(self.y))
        self._rows_of: list[np.ndarray | None] = [None] * self.n_classes
        self._count_of = [0] * self.n_classes
        for c, a, b in zip(self.classes, self._starts, ends, strict=True):
            self._rows_of[int(c)] = np.arange(a, b)
            self._count_of[int(c)] = int(b - a)

    def candidates_of(self, probs: np.ndarray) -> np.ndarray | None:
        """The classes the match is made for, given the head's probabilities ``probs``
        (K,): the ``candidates`` most probable (ties in class order), or ``None`` = all."""
        n = self.config.candidates
        if not n or n >= self.n_classes:
            return None
        return np.argsort(-np.asarray(probs), kind="stable")[:n]

    @property
    def n_points(self) -> int:
        """Points of each library spectrum (grid points / ``bin_width``, rounded up)."""
        return int(self.spectra.shape[1])

    def fits(self, grid_points: int) -> bool:
        """Whether the library was made for spectra of ``grid_points`` grid points."""
        return int(grid_points) == self.grid_points

    def similarity(self, x_grid: np.ndarray, classes: np.ndarray | None = None,
                   span: tuple[int, int] | None = None) -> np.ndarray:
        """``(K,)``: each class's best lagged cosine with one grid spectrum; with
        ``classes``, only for those (the others -1), at a fraction of the cost. ``span``:
        the grid points ``[lo, hi)`` a partially covering spectrum covers (used with
        ``window_norm``; ``None`` = all)."""
        c = self.config
        x = np.asarray(x_grid, dtype=np.float32).reshape(-1)
        if x.shape[0] != self.grid_points:
            raise ModelError(f"spectrum of {x.shape[0]} points for a library of "
                             f"{self.grid_points}")
        q = match_view(x, c)
        n = self.n_points
        # every lag at once: the zero-padded query's windows, one row per lag (lag -R, the
        # window starting at 2R, first), copied into one array for a single product
        padded = np.zeros(n + 2 * self._reach, dtype=np.float32)
        padded[self._reach:self._reach + n] = q
        W = np.ndarray((self._n_lags, n), np.float32, padded, 2 * self._reach * 4,
                       (-self._step * 4, 4)).copy()  # (numpy checks it stays in `padded`)
        s = np.full(self.n_classes, -1.0)
        partial = (c.window_norm and span is not None
                   and int(span[1]) - int(span[0]) < c.window_below * self.grid_points)
        # (rows, lags) as L @ W.T: the same dot products as (W @ L.T).T, but OpenBLAS runs
        # it about a fifth faster with the library rows as the long side (bit-identical on
        # the spectra checked; docs/results.md section 4)
        if classes is None:
            L = self.spectra
            best = self._best_lag(L, W, span if partial else None)
            s[self.classes] = np.maximum.reduceat(best, self._starts)
            return s
        present = [k for k in np.asarray(classes).tolist() if self._count_of[k]]
        if not present:
            return s
        L = self.spectra[np.concatenate([self._rows_of[k] for k in present])]
        best = self._best_lag(L, W, span if partial else None)
        starts = list(accumulate([self._count_of[k] for k in present[:-1]], initial=0))
        s[present] = np.maximum.reduceat(best, starts)
        return s

    def _best_lag(self, L: np.ndarray, W: np.ndarray,
                  span: tuple[int, int] | None) -> np.ndarray:
        """``(rows,)``: each row of ``L``'s best cosine over the lag windows ``W`` (over the
        covered ``span`` when given), after the lags' prior costs."""
        C = L @ W.T
        if self._lag_cost is None:
            best = C.max(axis=1)
            return best if span is None else best / self._window_norms(L, span)
        if span is not None:
            C = C / self._window_norms(L, span)[:, None]
        return (C - self._lag_cost).max(axis=1)

    def _window_norms(self, L: np.ndarray, span: tuple[int, int]) -> np.ndarray:
        """Each row's norm over the library points that hold the grid points ``[lo, hi)``
        (a bin partly inside counts; at least 1e-6)."""
        b = self.config.bin_width
        lo, hi = int(span[0]) // b, -(-int(span[1]) // b)
        return np.maximum(np.sqrt(np.einsum("ij,ij->i", L[:, lo:hi], L[:, lo:hi])), 1e-6)

    def similarity_batch(self, X_grid: np.ndarray) -> np.ndarray:
        """``(N, K)``: :meth:`similarity` of each row of ``X_grid``."""
        c = self.config
        X = np.asarray(X_grid, dtype=np.float32)  # as similarity() reads one spectrum
        if X.ndim != 2 or X.shape[1] != self.grid_points:
            raise ModelError(f"spectra of shape {X.shape} for a library of "
                             f"{self.grid_points} points")
        C = lagged_cosine(match_view(X, c), self.spectra, self._reach, self._step,
                          c.lag_penalty)
        S = np.full((len(C), self.n_classes), -1.0)
        S[:, self.classes] = np.maximum.reduceat(C, self._starts, axis=1)
        return S

    def blend(self, probs: np.ndarray, x_grid: np.ndarray,
              span: tuple[int, int] | None = None) -> np.ndarray:
        """``(1 - w) probs + w softmax(s / T)`` for one grid spectrum (float64, sums to 1),
        ``s`` made for :meth:`candidates_of` ``probs`` (and over ``span``, see
        :meth:`similarity`)."""
        return _mix(probs, self.similarity(x_grid, self.candidates_of(probs), span),
                    self.config)

    def blend_batch(self, P: np.ndarray, X_grid: np.ndarray) -> np.ndarray:
        """:meth:`blend` of each row: ``P`` (N, K) probabilities, ``X_grid`` (N, points)."""
        return blend_rows(P, self.similarity_batch(X_grid), self.config)

    @classmethod
    def build(cls, X_train: np.ndarray, y_train: np.ndarray, n_classes: int,
              config: LibraryConfig) -> SpectralLibrary:
        """The library of the training spectra ``X_train`` (N, points; the model grid,
        preprocessed as the model sees them) with class ids ``y_train``."""
        X = np.asarray(X_train, dtype=np.float32)
        if X.ndim != 2 or not np.all(np.isfinite(X)):
            raise ModelError(f"library training spectra must be finite (N, points), got "
                             f"{X.shape}")
        return cls(match_view(X, config), y_train, n_classes, config,
                   grid_points=X.shape[1])

    def npz_bytes(self) -> bytes:
        """The library file's bytes: ``spectra`` float16 (M, P; against float32 rows the
        lagged cosines moved by at most 1.5e-4 on grouped split 0's test spectra), ``y``
        int32 (M,); no pickle."""
        buf = io.BytesIO()
        np.savez(buf, spectra=self.spectra.astype(np.float16), y=self.y.astype(np.int32))
        return buf.getvalue()
