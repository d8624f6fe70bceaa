"""A RealSense D455-like depth sensor model: stereo noise growing with z^2, holes, range."""

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
