"""The human phantom: a parametric body lying supine or prone, with an annotated atlas.

Body frame: origin on the table surface under the pelvis centre, x towards the head
(superior), y to the left of a supine person, z up from the table; metres. Limbs are
capsules and the trunk an ellipsoid, so every acupoint sits exactly on the surface with an
exact outward normal. Locations follow the proportional cun of ../shared/acupoints.md:
knee crease to ankle = 16 cun, wrist crease to elbow crease = 12 cun, umbilicus to pubic
symphysis = 5 cun, the scapula's medial border to the posterior midline = 3 cun.

The shape is symmetric front to back (the trunk's ellipsoid about its centre, each limb a
round capsule, the two sides mirrored), so one shape serves both postures: prone, its upper
surface is the person's back and the person's left lies at -y. Each point says the posture
it is reached in (``Acupoint.posture``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Capsule:
    """A limb segment from proximal ``a`` to distal ``b`` with a radius."""

    name: str
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    radius: float

    @property
    def axis(self) -> np.ndarray:
        d = np.subtract(self.b, self.a)
        return d / np.linalg.norm(d)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.subtract(self.b, self.a)))


@dataclass(frozen=True)
class Ellipsoid:
    """The trunk."""

    name: str
    center: tuple[float, float, float]
    radii: tuple[float, float, float]


@dataclass(frozen=True)
class Acupoint:
    """One annotated point: identity, where it is (body frame) and its outward normal."""

    code: str
    pinyin: str
    chinese: str
    number: int
    position: np.ndarray
    normal: np.ndarray
    stroke_dir: np.ndarray  # unit tangent along the limb (distal) or the trunk (inferior)
    posture: str = "supine"  # how the person lies for it: supine | prone


# Segment geometry of an adult of ~1.7 m, left (+y) and right (-y).
TRUNK = Ellipsoid("trunk", (0.25, 0.0, 0.105), (0.31, 0.165, 0.105))
HEAD = ("head", (0.69, 0.0, 0.095), 0.095)


def _limbs(side: str, s: float) -> list[Capsule]:
    # The thigh and the upper arm taper to the knee and the elbow in steps, each segment
    # meeting the next on its axis: a knee or an elbow as wide as the limb below it, so a
    # point at the joint line lies on the surface of both (one wide round end would bulge
    # over the joint and reach into a ball pressing there).
    hip, thigh_1, thigh_2 = (-0.02, 0.09 * s, 0.07), (-0.20, 0.095 * s, 0.066), \
        (-0.33, 0.105 * s, 0.058)
    knee, ankle = (-0.45, 0.115 * s, 0.05), (-0.85, 0.15 * s, 0.042)
    shoulder, arm_1, elbow = (0.50, 0.215 * s, 0.07), (0.36, 0.23 * s, 0.06), \
        (0.22, 0.245 * s, 0.052)
    return [
        Capsule(f"thigh_{side}", hip, thigh_1, 0.068),
        Capsule(f"thigh_middle_{side}", thigh_1, thigh_2, 0.058),
        Capsule(f"thigh_distal_{side}", thigh_2, knee, 0.048),
        Capsule(f"shin_{side}", knee, ankle, 0.048),
        Capsule(f"foot_{side}", (-0.88, 0.15 * s, 0.05), (-0.95, 0.15 * s, 0.17), 0.035),
        Capsule(f"upper_arm_{side}", shoulder, arm_1, 0.043),
        Capsule(f"upper_arm_distal_{side}", arm_1, elbow, 0.035),
        Capsule(f"forearm_{side}", elbow, (-0.04, 0.255 * s, 0.045), 0.035),
        Capsule(f"hand_{side}", (-0.06, 0.255 * s, 0.035), (-0.20, 0.255 * s, 0.03), 0.025),
    ]


CAPSULES: tuple[Capsule, ...] = tuple(_limbs("left", 1.0) + _limbs("right", -1.0))
UMBILICUS_X = 0.18
CUN_TRUNK = (UMBILICUS_X - 0.05) / 5.0  # umbilicus -> pubic symphysis = 5 cun


def capsule(name: str) -> Capsule:
    """Look a limb segment up by name."""
    for c in CAPSULES:
        if c.name == name:
            return c
    raise KeyError(name)


def _on_capsule(seg: Capsule, fraction: float, lateral_deg: float) -> tuple[np.ndarray, ...]:
    """Surface point at ``fraction`` along the axis, turned from anterior towards lateral."""
    axis = seg.axis
    anterior = np.array([0.0, 0.0, 1.0]) - axis[2] * axis
    anterior /= np.linalg.norm(anterior)
    side = 1.0 if seg.a[1] >= 0 else -1.0
    lateral = np.cross(axis, anterior) * side
    phi = np.radians(lateral_deg)
    direction = np.cos(phi) * anterior + np.sin(phi) * lateral
    centre = np.asarray(seg.a) + fraction * (np.asarray(seg.b) - np.asarray(seg.a))
    return centre + seg.radius * direction, direction, axis


def _on_trunk(x: float, y: float) -> tuple[np.ndarray, ...]:
    """Anterior trunk surface point above (x, y)."""
    c, r = np.asarray(TRUNK.center), np.asarray(TRUNK.radii)
    u = 1.0 - ((x - c[0]) / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2
    z = c[2] + r[2] * np.sqrt(max(u, 0.0))
    p = np.array([x, y, z])
    n = (p - c) / r**2
    return p, n / np.linalg.norm(n), np.array([-1.0, 0.0, 0.0])


def _atlas() -> tuple[Acupoint, ...]:
    shin, thigh = capsule("shin_left"), capsule("thigh_distal_left")
    leg_cun = shin.length / 16.0
    # SP10: 2 cun above the patella's upper border, which lies ~1 cun above the knee line
    sp10 = (shin.a[0] + 3 * leg_cun - thigh.a[0]) / (thigh.b[0] - thigh.a[0])
    # (code, pinyin, chinese, number, (point, normal, stroke_dir))
    table = [
        ("ST36", "Zusanli", "足三里", 1, _on_capsule(shin, 3 / 16, 25.0)),
        ("ST35", "Dubi", "犊鼻", 2, _on_capsule(shin, 0.02, 30.0)),
        ("GB34", "Yanglingquan", "阳陵泉", 3, _on_capsule(shin, 2 / 16, 75.0)),
        ("SP6", "Sanyinjiao", "三阴交", 4, _on_capsule(shin, 13 / 16, -70.0)),
        ("SP10", "Xuehai", "血海", 5, _on_capsule(thigh, sp10, -45.0)),
        ("LR3", "Taichong", "太冲", 6, _on_capsule(capsule("foot_left"), 0.55, -10.0)),
        ("LI4", "Hegu", "合谷", 7, _on_capsule(capsule("hand_left"), 0.35, 60.0)),
        ("LI11", "Quchi", "曲池", 8, _on_capsule(capsule("forearm_left"), 0.03, 70.0)),
        ("PC6", "Neiguan", "内关", 9, _on_capsule(capsule("forearm_left"), 1.0 - 2 / 12, 0.0)),
        ("CV12", "Zhongwan", "中脘", 10, _on_trunk(UMBILICUS_X + 4 * CUN_TRUNK, 0.0)),
        ("CV6", "Qihai", "气海", 11, _on_trunk(UMBILICUS_X - 1.5 * CUN_TRUNK, 0.0)),
        ("ST25", "Tianshu", "天枢", 12, _on_trunk(UMBILICUS_X, 2 * CUN_TRUNK)),
    ]
    return tuple(Acupoint(code, pinyin, zh, num, p, n, d)
                 for code, pinyin, zh, num, (p, n, d) in table)


# The spine along the trunk (prone): the prominent C7 at the base of the neck, thoracic
# spinous processes 21.5 mm apart and lumbar ones 30 mm, so L4 meets the top of the iliac
# crests about level with the umbilicus, as ../shared/acupoints.md places it.
C7_X = 0.545
THORACIC_STEP = 0.0215
LUMBAR_STEP = 0.030
CUN_BACK = 0.025  # the scapula's medial border (7.5 cm out) to the midline = 3 cun


def spine_x(level: str) -> float:
    """x of the lower border of a spinous process, e.g. ``T3`` or ``L4``."""
    kind, n = level[0], int(level[1:])
    if kind == "T":
        return C7_X - n * THORACIC_STEP
    return C7_X - 12 * THORACIC_STEP - n * LUMBAR_STEP


def _prone_atlas() -> tuple[Acupoint, ...]:
    """Back, shoulder and posterior leg points, reached prone; a bilateral one on the
    person's left, which prone is the -y side."""
    back_line = -1.5 * CUN_BACK
    shu = [("BL13", "Feishu", "肺俞", "T3"), ("BL15", "Xinshu", "心俞", "T5"),
           ("BL17", "Geshu", "膈俞", "T7"), ("BL18", "Ganshu", "肝俞", "T9"),
           ("BL20", "Pishu", "脾俞", "T11"), ("BL21", "Weishu", "胃俞", "T12"),
           ("BL23", "Shenshu", "肾俞", "L2"), ("BL25", "Dachangshu", "大肠俞", "L4")]
    table = [(code, pinyin, zh, _on_trunk(spine_x(level), back_line))
             for code, pinyin, zh, level in shu]
    # GB21 midway between C7 and the acromion: where the phantom's trunk rounds into its
    # shoulder; GB30 a third of the way in from the greater trochanter to the sacral hiatus
    table += [("GB21", "Jianjing", "肩井", _on_trunk(0.49, -0.09)),
              ("GB30", "Huantiao", "环跳", _on_trunk(0.03, -0.08))]
    shin = capsule("shin_right")  # the -y leg: the person's left, prone
    table += [("BL40", "Weizhong", "委中", _on_capsule(shin, 0.0, 0.0)),
              ("BL57", "Chengshan", "承山", _on_capsule(shin, 0.5, 0.0))]
    return tuple(Acupoint(code, pinyin, zh, 13 + k, p, n, d, "prone")
                 for k, (code, pinyin, zh, (p, n, d)) in enumerate(table))


ATLAS: tuple[Acupoint, ...] = _atlas() + _prone_atlas()
POSTURES = ("supine", "prone")


def surface_samples(spacing: float = 0.01, min_up: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Points and outward normals on the phantom surface facing up (body frame).

    This is the model cloud a camera above the table can see; ``min_up`` is the smallest
    z component of the normal kept.
    """
    pts, nrm = [], []
    for seg in CAPSULES:  # as _on_capsule, every (fraction, angle) at once
        n_axial = max(2, int(seg.length / spacing))
        n_around = max(8, int(2 * np.pi * seg.radius / spacing))
        axis = seg.axis
        anterior = np.array([0.0, 0.0, 1.0]) - axis[2] * axis
        anterior /= np.linalg.norm(anterior)
        lateral = np.cross(axis, anterior) * (1.0 if seg.a[1] >= 0 else -1.0)
        f, phi = np.meshgrid(np.linspace(0.0, 1.0, n_axial),
                             np.radians(np.linspace(-180.0, 180.0, n_around, endpoint=False)),
                             indexing="ij")
        f, phi = f.reshape(-1, 1), phi.reshape(-1, 1)
        direction = np.cos(phi) * anterior + np.sin(phi) * lateral
        centre = np.asarray(seg.a) + f * (np.asarray(seg.b) - np.asarray(seg.a))
        pts.extend(centre + seg.radius * direction)
        nrm.extend(direction)
    c, r = np.asarray(TRUNK.center), np.asarray(TRUNK.radii)  # as _on_trunk, vectorised
    x, y = np.meshgrid(np.arange(c[0] - r[0], c[0] + r[0], spacing),
                       np.arange(c[1] - r[1], c[1] + r[1], spacing), indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    inside = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 < 0.98
    x, y = x[inside], y[inside]
    u = 1.0 - ((x - c[0]) / r[0]) ** 2 - ((y - c[1]) / r[1]) ** 2
    top = np.stack([x, y, c[2] + r[2] * np.sqrt(np.maximum(u, 0.0))], axis=1)
    n = (top - c) / r**2
    pts.extend(top)
    nrm.extend(n / np.linalg.norm(n, axis=1, keepdims=True))
    hc, hr = np.asarray(HEAD[1]), HEAD[2]
    for theta in np.linspace(0, np.pi / 2, 8):
        for phi in np.linspace(0, 2 * np.pi, 24, endpoint=False):
            n = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                          np.cos(theta)])
            pts.append(hc + hr * n)
            nrm.append(n)
    P, N = np.asarray(pts), np.asarray(nrm)
    keep = N[:, 2] >= min_up
    return P[keep], N[keep]


def right_side(point: Acupoint) -> Acupoint:
    """The bilateral counterpart on the person's right (-y supine, +y prone); midline points
    map to themselves."""
    mirror = np.array([1.0, -1.0, 1.0])
    if not is_bilateral(point):
        return point
    return Acupoint(f"{point.code}-R", point.pinyin, point.chinese, point.number,
                    point.position * mirror, point.normal * mirror, point.stroke_dir * mirror,
                    point.posture)


def _segment_distance(a: np.ndarray, b: np.ndarray, radius: float, p: np.ndarray) -> float:
    """Signed distance from ``p`` to a capsule's surface (its round ends included)."""
    u = float(np.clip((p - a) @ (b - a) / ((b - a) @ (b - a)), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + u * (b - a)))) - radius


def body_distance(p: np.ndarray) -> tuple[float, str]:
    """Signed distance from ``p`` (body frame) to the phantom's surface, and the part nearest:
    exact for the limbs (capsules, round ends included), the head and the trunk outside it."""
    parts = [(_segment_distance(np.asarray(c.a), np.asarray(c.b), c.radius, p), c.name)
             for c in CAPSULES]
    parts.append((float(np.linalg.norm(p - np.asarray(HEAD[1], float))) - HEAD[2], HEAD[0]))
    parts.append((_ellipsoid_distance(p), TRUNK.name))
    return min(parts)


def _ellipsoid_distance(p: np.ndarray) -> float:
    """Signed distance from ``p`` to the trunk's ellipsoid: exact outside (the nearest
    surface point x_i = q_i r_i^2 / (r_i^2 + t), t found by bisection), the scaled distance
    inside, which does not underestimate the depth of a point in a convex body."""
    c, r = np.asarray(TRUNK.center), np.asarray(TRUNK.radii)
    q = np.abs(np.asarray(p, float) - c)
    scaled = float(np.linalg.norm(q / r))
    if scaled <= 1.0:
        return (scaled - 1.0) * float(r.min())
    lo, hi = 0.0, float(np.linalg.norm(q) * r.max())
    for _ in range(60):
        t = 0.5 * (lo + hi)
        if np.sum((q * r / (r**2 + t)) ** 2) > 1.0:
            lo = t
        else:
            hi = t
    return float(np.linalg.norm(q - q * r**2 / (r**2 + 0.5 * (lo + hi))))


def ball_intrusion_model(point: Acupoint, radius_m: float) -> tuple[float, str]:
    """How far the phantom reaches into a ball of ``radius_m`` resting on ``point`` (its
    centre one radius out along the normal), in m, and the part that reaches furthest:
    (0, "") when it fits."""
    distance, part = body_distance(np.asarray(point.position, float)
                                   + radius_m * np.asarray(point.normal, float))
    return (radius_m - distance, part) if distance < radius_m - 1e-9 else (0.0, "")


def approach_clearance(point: Acupoint, start_m: float, length_m: float,
                       step_m: float = 0.005) -> tuple[float, str]:
    """The phantom's nearest approach to the line out of ``point`` along its normal, from
    ``start_m`` to ``start_m + length_m`` (the way a tool comes in), and the part there."""
    n = np.asarray(point.normal, float) / np.linalg.norm(point.normal)
    return min(body_distance(np.asarray(point.position, float) + s * n)
               for s in np.arange(start_m, start_m + length_m + 1e-9, step_m))


def is_bilateral(point: Acupoint) -> bool:
    """The point has a counterpart on the other side of the body (it is off the midline)."""
    return abs(float(point.position[1])) > 1e-9


# Every point-side: each atlas point (the left side) and, off the midline, its right twin.
POINT_SIDES: tuple[Acupoint, ...] = tuple(
    p for a in ATLAS for p in ((a, right_side(a)) if is_bilateral(a) else (a,)))


def side_of(point: Acupoint) -> str:
    """left | right | midline, as the person lies for the point (prone, left is -y)."""
    if not is_bilateral(point):
        return "midline"
    return "left" if (point.position[1] > 0) == (point.posture == "supine") else "right"


def placement(position: tuple[float, float, float], yaw_deg: float) -> np.ndarray:
    """base_T_body of the phantom lying on the table at ``position`` turned by ``yaw_deg``."""
    yaw = np.radians(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    T[:3, 3] = position
    return T
