"""A RealSense D455-like depth sensor model (stereo noise growing with z^2, holes, range) and a
watch on a depth stream's health (frozen, invalid)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DepthNoise:
    """Parameters of the D455-like model (defaults from the D455 datasheet geometry)."""

    baseline_m: float = 0.095
    subpixel: float = 0.08  # disparity RMS error, pixels
    hole_rate: float = 0.005  # random dropout fraction
    edge_jump_m: float = 0.03  # depth discontinuity that drops pixels at edges
    edge_drop_prob: float = 0.5
    min_range_m: float = 0.4
    max_range_m: float = 6.0


def apply_depth_noise(depth: np.ndarray, fx: float, params: DepthNoise,
                      rng: np.random.Generator) -> np.ndarray:
    """Noisy copy of a metric z-depth image; NaN where the sensor returns nothing.

    sigma_z = z^2 * subpixel / (fx * baseline), the stereo depth resolution. Pixels on
    depth discontinuities drop out with ``edge_drop_prob`` (stereo occlusion shadows).
    """
    z = depth.astype(np.float64)
    sigma = z**2 * params.subpixel / (fx * params.baseline_m)
    noisy = z + rng.standard_normal(z.shape) * sigma
    holes = rng.random(z.shape) < params.hole_rate
    jump = np.zeros(z.shape, dtype=bool)
    jump[:, 1:] |= np.abs(np.diff(z, axis=1)) > params.edge_jump_m
    jump[1:, :] |= np.abs(np.diff(z, axis=0)) > params.edge_jump_m
    holes |= jump & (rng.random(z.shape) < params.edge_drop_prob)
    holes |= (z < params.min_range_m) | (z > params.max_range_m) | ~np.isfinite(z)
    noisy[holes] = np.nan
    return noisy.astype(np.float32)


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
