"""Acupoints on a human body mesh by the standard's rules (../shared/acupoints.md): the
proportional cun measured on the body's own skeleton and skin, each point where a ray from the
bone out along the standard's direction leaves the skin.

Pure geometry on arrays: a body is its skin (vertices, triangles) and its bones' heads, in the
standing frame of the anny body model (z up, -y the front, +x the person's left). The world
labels its person with these rules; a node that fitted a body model to what it sees places its
points by the same rules on its fitted body, never on the world's.
"""

from __future__ import annotations

import numpy as np
from tuina.operators.phantom import ATLAS

# posterior vertebral levels as fractions of C7 -> S1: 12 thoracic and 5 lumbar spinous
# processes, a lumbar one 1.4 times a thoracic one's height
_THORACIC = 1.0 / (12 + 5 * 1.4)
_LUMBAR = 1.4 * _THORACIC
MIDLINE = ("CV12", "CV6")


def ray_hits(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray,
             direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances along the ray and face indices of every triangle it crosses ahead of its
    origin (Moller-Trumbore), nearest first."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    e1, e2 = b - a, c - a
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - a
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ direction) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
    order = np.argsort(t[hit])
    return t[hit][order], np.flatnonzero(hit)[order]


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Each triangle's normal scaled by twice its area."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return np.cross(b - a, c - a)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals."""
    n = np.zeros_like(vertices)
    fn = face_normals(vertices, faces)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def skin_point(vertices: np.ndarray, faces: np.ndarray, inside: np.ndarray,
               direction: np.ndarray, normal_radius_m: float = 0.015, *,
               face_n: np.ndarray | None = None, centres: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Where a ray from ``inside`` along ``direction`` first leaves the skin, and the skin's
    outward normal there (area-weighted over ``normal_radius_m``, as a depth patch sees it).
    ``face_n`` and ``centres``: the skin's ``face_normals`` and triangle centres, when a caller
    casting many rays has them."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    t, idx = ray_hits(vertices, faces, np.asarray(inside, float), d)
    if not len(t):
        raise ValueError(f"no skin along {np.round(d, 3)} from {np.round(inside, 3)}")
    point = inside + t[0] * d
    fn = face_normals(vertices, faces) if face_n is None else face_n
    centres = vertices[faces].mean(axis=1) if centres is None else centres
    near = np.linalg.norm(centres - point, axis=1) < normal_radius_m
    n = fn[near].sum(axis=0) if near.any() else fn[idx[0]]
    n /= np.linalg.norm(n)
    return point, (n if n @ d > 0 else -n)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def across(axis: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """``towards`` made perpendicular to ``axis``."""
    axis = unit(axis)
    return unit(towards - (towards @ axis) * axis)


def label_points(vertices: np.ndarray, faces: np.ndarray, bones: dict[str, np.ndarray],
                 only: tuple[str, ...] | None = None
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every point-side's position and normal (or those in ``only``), from the standing body's
    bones (heads) and skin: each point where the standard's ray leaves the skin."""
    front, up = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    on: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # code -> the ray (inside, direction)

    def limb(a: np.ndarray, b: np.ndarray, fraction: float, first: np.ndarray,
             second: np.ndarray, deg: float) -> tuple[np.ndarray, np.ndarray]:
        axis = b - a
        u, w = across(axis, first), across(axis, second)
        phi = np.radians(deg)
        return a + fraction * axis, np.cos(phi) * u + np.sin(phi) * w

    # the spine: C7 at the neck's base, S1 at the pelvis, through the spine's bone heads
    spine = np.array([bones[n] for n in ("neck01", "spine01", "spine02", "spine03", "spine04",
                                          "spine05")])
    seg = np.linalg.norm(np.diff(spine, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)]) / seg.sum()

    def level(name: str) -> np.ndarray:
        """The spine's axis at the lower border of a spinous process (T1-T12, L1-L5)."""
        n = int(name[1:])
        f = n * _THORACIC if name[0] == "T" else 12 * _THORACIC + n * _LUMBAR
        return np.array([np.interp(f, arc, spine[:, k]) for k in range(3)])

    hip_z = 0.5 * (bones["upperleg01.L"][2] + bones["upperleg01.R"][2])
    xiphoid_z = level("T9")[2]  # the sternocostal angle, level with T9
    abdomen_cun = (xiphoid_z - hip_z) / 13.0  # the symphysis' upper border at the hips
    umbilicus_z = hip_z + 5.0 * abdomen_cun
    centre_y = level("L3")[1]
    back_cun = 0.4 * abs(bones["upperarm01.L"][0] - bones["upperarm01.R"][0]) / 2.0 / 3.0

    def trunk(x: float, z: float, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array([x, centre_y, z]), direction

    on["CV12"] = trunk(0.0, umbilicus_z + 4 * abdomen_cun, front)
    on["CV6"] = trunk(0.0, umbilicus_z - 1.5 * abdomen_cun, front)
    for side, s in (("L", 1.0), ("R", -1.0)):
        suffix = "" if side == "L" else "-R"
        lateral = np.array([s, 0.0, 0.0])
        hip, knee = bones[f"upperleg01.{side}"], bones[f"lowerleg01.{side}"]
        ankle = bones[f"foot.{side}"]
        shoulder, elbow = bones[f"upperarm01.{side}"], bones[f"lowerarm01.{side}"]
        wrist = bones[f"wrist.{side}"]
        meta2, index = bones[f"metacarpal2.{side}"], bones[f"finger2-1.{side}"]
        thumb = bones[f"finger1-1.{side}"]
        on["ST36" + suffix] = limb(knee, ankle, 3 / 16, front, lateral, 25.0)
        on["ST35" + suffix] = limb(knee, ankle, 0.02, front, lateral, 30.0)
        on["GB34" + suffix] = limb(knee, ankle, 2 / 16, front, lateral, 75.0)
        on["SP6" + suffix] = limb(knee, ankle, 13 / 16, front, lateral, -70.0)
        leg_cun = np.linalg.norm(ankle - knee) / 16.0
        # SP10: 2 cun above the patella's upper border, itself ~1 cun above the knee line
        on["SP10" + suffix] = limb(knee, hip, 3 * leg_cun / np.linalg.norm(hip - knee),
                                   front, lateral, -45.0)
        toes = 0.5 * (bones[f"toe1-1.{side}"] + bones[f"toe2-1.{side}"])
        on["LR3" + suffix] = limb(ankle, toes, 0.6, up, lateral, -10.0)
        radial = across(index - wrist, thumb - meta2)
        dorsal = -s * across(index - wrist, np.cross(unit(index - wrist), radial))
        on["LI4" + suffix] = limb(meta2, index, 0.5, dorsal, radial, 35.0)
        volar = -across(wrist - elbow, dorsal)
        on["LI11" + suffix] = limb(elbow, wrist, 0.03, volar, radial, 70.0)
        on["PC6" + suffix] = limb(elbow, wrist, 1 - 2 / 12, volar, radial, 0.0)
        on["ST25" + suffix] = trunk(s * 2 * abdomen_cun, umbilicus_z, front)
        # prone: the back, the shoulder, the buttock and the back of the leg
        back = -front
        for code, vertebra in (("BL13", "T3"), ("BL15", "T5"), ("BL17", "T7"),
                               ("BL18", "T9"), ("BL20", "T11"), ("BL21", "T12"),
                               ("BL23", "L2"), ("BL25", "L4")):
            inside = level(vertebra) + s * 1.5 * back_cun * np.array([1.0, 0.0, 0.0])
            on[code + suffix] = inside, back
        c7 = bones["neck01"]
        acromion = shoulder + np.array([0.0, 0.0, 0.02])
        on["GB21" + suffix] = 0.5 * (c7 + acromion), unit(up + 0.6 * back)
        # the greater trochanter lateral to the hip joint, the sacral hiatus on the midline
        trochanter = hip + lateral * 0.6 * abs(hip[0])
        gb30 = trochanter + (np.array([0.0, hip[1], hip[2]]) - trochanter) / 3.0
        on["GB30" + suffix] = gb30, back
        on["BL40" + suffix] = limb(knee, ankle, 0.0, back, lateral, 0.0)
        on["BL57" + suffix] = limb(knee, ankle, 0.5, back, lateral, 0.0)
    face_n, centres = face_normals(vertices, faces), vertices[faces].mean(axis=1)
    return {code: skin_point(vertices, faces, *ray, face_n=face_n, centres=centres)
            for code, ray in on.items() if only is None or code in only}


def point_side_codes() -> list[str]:
    """Every point-side code: each atlas point, and its right twin off the midline."""
    return [c for a in ATLAS for c in ((a.code,) if a.code in MIDLINE
                                       else (a.code, f"{a.code}-R"))]


POSTURES = ("supine", "prone")


def lying_transform(posture: str) -> np.ndarray:
    """Rotation from anny's standing frame (z up, -y front, +x left) to the body frame lying
    ``posture``: head at +x, the front (supine) or the back (prone) up."""
    if posture == "supine":  # head +x, front +z, so the left is at -y
        return np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    if posture == "prone":  # head +x, back +z, the left at +y
        return np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    raise ValueError(f"unknown posture {posture!r}; choose one of {', '.join(POSTURES)}")


def lie_on_table(vertices: np.ndarray, bones: dict[str, np.ndarray], posture: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The rotation and shift that lay a standing body (anny's frame) on the table in the body
    frame: head at +x, the pelvis over the origin, the trunk's lowest skin on z = 0 (the face
    and the toes may reach below it, as through a massage table's face hole and past its
    end). Returns (R, t): body = R @ standing + t."""
    R = lying_transform(posture)
    lying = vertices @ R.T
    root, neck = bones["root"] @ R.T, bones["neck01"] @ R.T
    trunk = (lying[:, 0] > root[0] - 0.05) & (lying[:, 0] < neck[0])
    return R, np.array([-root[0], -root[1], -lying[trunk, 2].min()])
