"""A RealSense D455-like depth sensor model (stereo noise growing with z^2, holes, range) and a
watch on a depth stream's health (frozen, invalid)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class DepthNoise:
    """Parameters of the D455-like model (docs/simulation.md names their sources).

    Stereo depth noise grows with z^2: sigma_z = z^2 * subpixel / (fx * baseline). It is
    correlated over ``correlation_px`` (the matcher's window), so averaging neighbouring
    pixels does not remove it as it would white noise; a smooth bias over the image of up to
    ``bias_fraction`` of z (the D455's absolute accuracy, <= 2 % at 4 m) stays from frame to
    frame. Holes: random dropout, and depth discontinuities (stereo occlusion shadows)."""

    baseline_m: float = 0.095
    subpixel: float = 0.08  # disparity RMS error, pixels
    correlation_px: float = 2.0
    bias_fraction: float = 0.002
    hole_rate: float = 0.005  # random dropout fraction
    edge_jump_m: float = 0.03  # depth discontinuity that drops pixels at edges
    edge_drop_prob: float = 0.5
    min_range_m: float = 0.4
    max_range_m: float = 6.0
    fields: int = 6  # precomputed noise fields; each frame takes a random window of one
    margin_px: int = 24
    field_seed: int = 0  # the sensor's own pattern (its bias field among it)


class DepthSensor:
    """``DepthNoise`` for one image size and focal length, its random fields drawn once so
    a frame costs a few vectorised operations (a window of a precomputed field is a view)."""

    def __init__(self, shape: tuple[int, int], fx: float, params: DepthNoise) -> None:
        import cv2

        h, w = shape
        m = params.margin_px
        rng = np.random.default_rng([params.field_seed, 11])
        self.params, self.shape = params, (h, w)
        noise = rng.standard_normal((params.fields, h + m, w + m)).astype(np.float32)
        if params.correlation_px > 0:
            for k in range(params.fields):
                noise[k] = cv2.GaussianBlur(noise[k], (0, 0), params.correlation_px)
            noise /= noise.std()
        self.noise_per_z2 = noise * np.float32(params.subpixel / (fx * params.baseline_m))
        coarse = rng.uniform(-1.0, 1.0, (3, 4)).astype(np.float32)
        smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        self.bias_per_z = smooth / max(float(np.abs(smooth).max()), 1e-9) * np.float32(
            params.bias_fraction)
        self.holes = rng.random((params.fields, h + m, w + m)) < params.hole_rate
        self.edge_drop = rng.random((params.fields, h + m, w + m)) < params.edge_drop_prob

    def apply(self, depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy copy of a metric z-depth image; NaN where the sensor returns nothing."""
        p = self.params
        h, w = self.shape
        k, dy, dx = (int(rng.integers(p.fields)), int(rng.integers(p.margin_px + 1)),
                     int(rng.integers(p.margin_px + 1)))
        window = (k, slice(dy, dy + h), slice(dx, dx + w))
        z = np.asarray(depth, np.float32)
        noisy = z + z * z * self.noise_per_z2[window] + z * self.bias_per_z
        jump = np.zeros(z.shape, dtype=bool)
        jump[:, 1:] = np.abs(np.diff(z, axis=1)) > p.edge_jump_m
        jump[1:, :] |= np.abs(np.diff(z, axis=0)) > p.edge_jump_m
        holes = self.holes[window] | (jump & self.edge_drop[window])
        holes |= ~((z >= p.min_range_m) & (z <= p.max_range_m))  # NaN depth included
        noisy[holes] = np.nan
        return noisy


@lru_cache(maxsize=4)
def depth_sensor(shape: tuple[int, int], fx: float, params: DepthNoise) -> DepthSensor:
    """The sensor for this image size, focal length and parameters (built once)."""
    return DepthSensor(shape, fx, params)


def apply_depth_noise(depth: np.ndarray, fx: float, params: DepthNoise,
                      rng: np.random.Generator) -> np.ndarray:
    """Noisy copy of a metric z-depth image as the D455-like sensor gives it (``rng`` picks
    the frame's noise); NaN where the sensor returns nothing."""
    return depth_sensor(tuple(depth.shape), float(fx), params).apply(depth, rng)


def quantize_depth(depth: np.ndarray, scale_m: float = 1e-3) -> np.ndarray:
    """Depth as a z16 stream in ``scale_m`` units carries it (NaN stays NaN)."""
    return (np.round(depth / scale_m) * scale_m).astype(np.float32)


@dataclass
class DepthWatch:
    """Health of a depth stream, frame by frame: frozen (frames repeat exactly: a real
    sensor's noise never does) or invalid (too few pixels with depth), each only once it
    lasts ``frames`` frames in a row. Invalid counts only after a first valid frame (a
    starting sensor delivers empty frames)."""

    frozen_frames: int = 2  # 0: never call the stream frozen (a noise-free simulated camera)
    invalid_frames: int = 3
    min_valid_share: float = 0.25
    _previous: np.ndarray | None = None
    _previous_stamp: int | None = None
    _repeats: int = 0
    _invalid: int = 0
    _seen_valid: bool = False

    def frame(self, stamp_ns: int, depth: np.ndarray) -> str | None:
        """One depth frame (metres, NaN where none): what is wrong with the stream, or None."""
        valid = float(np.isfinite(depth).mean()) if depth.size else 0.0
        repeated = (self._previous_stamp is not None and stamp_ns <= self._previous_stamp) or (
            self._previous is not None and self._previous.shape == depth.shape
            and valid > 0 and np.array_equal(self._previous, depth, equal_nan=True))
        self._previous, self._previous_stamp = depth.copy(), stamp_ns
        self._repeats = self._repeats + 1 if repeated else 0
        if valid >= self.min_valid_share:
            self._seen_valid, self._invalid = True, 0
        elif self._seen_valid:
            self._invalid += 1
        if self.frozen_frames and self._repeats >= self.frozen_frames:
            return (f"camera frozen: {self._repeats + 1} depth frames in a row are the same "
                    "frame (a live sensor's noise never repeats); check the camera's cable "
                    "and driver")
        if self._invalid >= self.invalid_frames:
            return (f"depth invalid: {valid:.0%} of the pixels have depth (at least "
                    f"{self.min_valid_share:.0%} expected) for {self._invalid} frames in a row; "
                    "uncover the camera and keep the body 0.4-6 m from it")
        return None


@dataclass(frozen=True)
class WrenchNoise:
    """How an arm's external-wrench estimate differs from the true contact wrench: a bias of
    ``bias_n`` in a seeded direction that random-walks by ``drift_n_per_sqrt_s``, white noise
    of ``noise_n`` per axis and sample, a first-order lag of ``lag_s``, and an all-zero
    reading while the arm's Jacobian's smallest singular value is under ``singular_sigma``
    (libfranka's estimate near singularities; 0: never)."""

    bias_n: float = 0.0
    drift_n_per_sqrt_s: float = 0.0
    noise_n: float = 0.0
    lag_s: float = 0.0
    singular_sigma: float = 0.0


# The FR3's O_F_ext_hat_K (joint-torque sensors through the arm's dynamic model) and the
# Baxter's endpoint wrench (series-elastic joint deflections): values and their sources in
# docs/simulation.md
FR3_WRENCH = WrenchNoise(bias_n=3.0, drift_n_per_sqrt_s=0.03, noise_n=0.15, lag_s=0.01,
                         singular_sigma=0.02)
BAXTER_WRENCH = WrenchNoise(bias_n=5.0, drift_n_per_sqrt_s=0.08, noise_n=0.4, lag_s=0.03)
IDEAL_WRENCH = WrenchNoise()


class WrenchSensor:
    """The wrench estimate of ``WrenchNoise``, stepped with the physics."""

    def __init__(self, params: WrenchNoise, rng: np.random.Generator) -> None:
        self.params = params
        self.rng = rng
        direction = rng.standard_normal(6)
        direction[3:] *= 0.1  # torques in N m: a tenth of the force bias's size
        self.bias = params.bias_n * direction / np.linalg.norm(direction[:3])
        self.lagged: np.ndarray | None = None

    def step(self, wrench: np.ndarray, dt: float, sigma_min: float = np.inf) -> np.ndarray:
        """The reading after ``dt`` seconds with the true wrench ``wrench`` (6,) and the
        Jacobian's smallest singular value ``sigma_min``."""
        p = self.params
        if p.drift_n_per_sqrt_s > 0:
            walk = self.rng.standard_normal(6) * p.drift_n_per_sqrt_s * np.sqrt(dt)
            walk[3:] *= 0.1
            self.bias = self.bias + walk
        sensed = np.asarray(wrench, float) + self.bias
        if self.lagged is None or p.lag_s <= 0:
            self.lagged = sensed
        else:
            self.lagged = self.lagged + (sensed - self.lagged) * min(dt / p.lag_s, 1.0)
        if p.singular_sigma > 0 and sigma_min < p.singular_sigma:
            return np.zeros(6)
        noise = self.rng.standard_normal(6) * p.noise_n if p.noise_n > 0 else np.zeros(6)
        noise[3:] *= 0.1
        return self.lagged + noise


@dataclass
class Tare:
    """The zero of a force reading, taken in free space: the mean of the readings while
    ``collecting``; ``apply`` subtracts it."""

    offset: np.ndarray = field(default_factory=lambda: np.zeros(6))
    _sum: np.ndarray = field(default_factory=lambda: np.zeros(6))
    _count: int = 0

    def add(self, wrench: np.ndarray) -> None:
        """One free-space reading (non-finite ones, and all-zero ones, which are no reading
        yet or libfranka's singularity report, are skipped)."""
        w = np.asarray(wrench, float)
        if w.shape == (6,) and np.all(np.isfinite(w)) and np.any(w != 0.0):
            self._sum += w
            self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def take(self) -> np.ndarray:
        """Make the mean of the readings so far the zero (kept when there were none); the
        readings are cleared for the next tare."""
        if self._count:
            self.offset = self._sum / self._count
        self._sum, self._count = np.zeros(6), 0
        return self.offset

    def apply(self, wrench: np.ndarray) -> np.ndarray:
        """The reading less the zero (an exactly-zero reading stays zero: libfranka's
        singularity report must stay recognisable)."""
        w = np.asarray(wrench, float)
        if w.shape == (6,) and np.all(w == 0.0):
            return w
        return w - self.offset


@dataclass
class StartTare:
    """The zero a robot node takes while the arm stands in free space at start: the mean
    reading over its first ``duration_s`` (robot time) or until it is first commanded. A zero
    over ``max_n`` is no sensor bias but a contact: it is not taken (the reading stays raw,
    a contact stays a contact) and ``problem`` says so. ``duration_s`` 0: no tare."""

    duration_s: float
    max_n: float
    tare: Tare = field(default_factory=Tare)
    start_t: float | None = None
    done: bool = False
    problem: str = ""

    def reading(self, t: float, wrench: np.ndarray, commanded: bool) -> np.ndarray:
        """The reading at robot time ``t`` less the zero (raw until the zero is taken)."""
        if not self.done and self.duration_s > 0:
            self.start_t = t if self.start_t is None else self.start_t
            if not commanded:
                self.tare.add(wrench)
            if commanded or t - self.start_t >= self.duration_s:
                self.done = True
                force = float(np.linalg.norm(self.tare.take()[:3]))
                if force > self.max_n:
                    self.tare.offset = np.zeros(6)
                    self.problem = (f"the arm read {force:.1f} N standing still at start (a "
                                    f"sensor's bias is under {self.max_n:g} N): it may be "
                                    "touching something; clear the arm and start again")
        return self.tare.apply(wrench)
