"""A person lying on the table: an ``anny`` parametric body (MakeHuman's mesh, CC0) drawn per
seed, posed as a person lies for a massage, with the acupoints placed on that body as the
world's labels.

Body frame, as the phantom's: origin on the table surface under the pelvis, x towards the head,
z up from the table. Unlike the phantom, the person has a true left: supine (face up) the
person's left lies at -y, prone at +y; a point-side's code names the person's side (``ST36``
left, ``ST36-R`` right).

The labels follow ../shared/acupoints.md on this body's own bones and skin: proportional cun
measured on its skeleton (knee joint to ankle joint = 16 cun, elbow to wrist = 12 cun, the
sternocostal angle to the pubic symphysis = 13 cun, the scapula's medial border to the midline
= 3 cun), each point found where a ray from the bone out along the standard's direction leaves
the skin. They are the world's truth only: no node reads them.

Generating a body needs ``anny`` (torch, warp-lang; its model loads in seconds once its own
cache is built, tens of seconds the first time); a generated body is kept as a ``.npz`` per
seed and posture (``body_cache_dir``), which the world reads without importing anny.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tuina.operators.phantom import ATLAS, POSTURES

GENERATION = 1  # bump when a body or its labels would come out differently: old caches go
CACHE_ENV = "TUINA_BODY_CACHE"
# an adult lying for a massage: anny's phenotype values (0..1) drawn uniformly in these
# ranges; age 2/3 is anny's "young" adult (25 years), 1 its "old" (90)
# (anny's height 0.17-0.55 stands 1.55-1.97 m for a man, 1.45-1.83 m for a woman)
ADULT_RANGES = {"gender": (0.0, 1.0), "age": (0.67, 0.95), "muscle": (0.15, 0.85),
                "weight": (0.15, 0.85), "height": (0.17, 0.55), "proportions": (0.0, 0.6)}
ARM_ABDUCTION_DEG = 12.0  # arms along the body, clear of the hips
PATCH_SPACING_M = 0.03  # collision patches about this wide
PATCH_DEPTH_M = 0.012  # each patch a slab this thick under the skin
# posterior vertebral levels as fractions of C7 -> S1: 12 thoracic and 5 lumbar spinous
# processes, a lumbar one 1.4 times a thoracic one's height
_THORACIC = 1.0 / (12 + 5 * 1.4)
_LUMBAR = 1.4 * _THORACIC


@dataclass(frozen=True)
class Phenotype:
    """anny's phenotype values, each in 0..1."""

    gender: float = 0.5  # 0 male, 1 female
    age: float = 0.75
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.4
    proportions: float = 0.3


def draw_phenotype(seed: int) -> Phenotype:
    """The adult a seed lies on the table (uniform within ``ADULT_RANGES``)."""
    rng = np.random.default_rng([seed, 30])
    return Phenotype(**{k: float(rng.uniform(lo, hi)) for k, (lo, hi) in ADULT_RANGES.items()})


@dataclass
class Person:
    """A generated body in the body frame: its skin, collision patches and labelled points."""

    phenotype: Phenotype
    posture: str
    vertices: np.ndarray  # (N, 3) m
    faces: np.ndarray  # (M, 3) int, counter-clockwise seen from outside
    patches: list[np.ndarray]  # each a (K, 3) point set whose convex hull is a collision slab
    codes: list[str]  # the point-sides (left unsuffixed, right "-R")
    positions: np.ndarray  # (P, 3) on the skin
    normals: np.ndarray  # (P, 3) outward
    height_m: float

    def label(self, code: str) -> tuple[np.ndarray, np.ndarray]:
        """Position and outward normal of one point-side."""
        k = self.codes.index(code)
        return self.positions[k], self.normals[k]


# --- geometry on a mesh ----------------------------------------------------------------------

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
               direction: np.ndarray, normal_radius_m: float = 0.015
               ) -> tuple[np.ndarray, np.ndarray]:
    """Where a ray from ``inside`` along ``direction`` first leaves the skin, and the skin's
    outward normal there (area-weighted over ``normal_radius_m``, as a depth patch sees it)."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    t, idx = ray_hits(vertices, faces, np.asarray(inside, float), d)
    if not len(t):
        raise ValueError(f"no skin along {np.round(d, 3)} from {np.round(inside, 3)}")
    point = inside + t[0] * d
    fn = face_normals(vertices, faces)
    centres = vertices[faces].mean(axis=1)
    near = np.linalg.norm(centres - point, axis=1) < normal_radius_m
    n = fn[near].sum(axis=0) if near.any() else fn[idx[0]]
    n /= np.linalg.norm(n)
    return point, (n if n @ d > 0 else -n)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _across(axis: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """``towards`` made perpendicular to ``axis``."""
    axis = _unit(axis)
    return _unit(towards - (towards @ axis) * axis)


# --- the standard's rules on anny's skeleton (anny's frame: z up, -y front, +x left) --------

def _labels(vertices: np.ndarray, faces: np.ndarray, bones: dict[str, np.ndarray]
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every point-side's position and normal, from the standing, arms-down body's bones
    (heads) and skin."""
    front, up = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    on = {}

    def limb(a: np.ndarray, b: np.ndarray, fraction: float, first: np.ndarray,
             second: np.ndarray, deg: float) -> tuple[np.ndarray, np.ndarray]:
        axis = b - a
        u, w = _across(axis, first), _across(axis, second)
        phi = np.radians(deg)
        return skin_point(vertices, faces, a + fraction * axis,
                          np.cos(phi) * u + np.sin(phi) * w)

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
        return skin_point(vertices, faces, np.array([x, centre_y, z]), direction)

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
        radial = _across(index - wrist, thumb - meta2)
        dorsal = -s * _across(index - wrist, np.cross(_unit(index - wrist), radial))
        on["LI4" + suffix] = limb(meta2, index, 0.5, dorsal, radial, 35.0)
        volar = -_across(wrist - elbow, dorsal)
        on["LI11" + suffix] = limb(elbow, wrist, 0.03, volar, radial, 70.0)
        on["PC6" + suffix] = limb(elbow, wrist, 1 - 2 / 12, volar, radial, 0.0)
        on["ST25" + suffix] = trunk(s * 2 * abdomen_cun, umbilicus_z, front)
        # prone: the back, the shoulder, the buttock and the back of the leg
        back = -front
        for code, vertebra in (("BL13", "T3"), ("BL15", "T5"), ("BL17", "T7"),
                               ("BL18", "T9"), ("BL20", "T11"), ("BL21", "T12"),
                               ("BL23", "L2"), ("BL25", "L4")):
            inside = level(vertebra) + s * 1.5 * back_cun * np.array([1.0, 0.0, 0.0])
            on[code + suffix] = skin_point(vertices, faces, inside, back)
        c7 = bones["neck01"]
        acromion = shoulder + np.array([0.0, 0.0, 0.02])
        on["GB21" + suffix] = skin_point(vertices, faces, 0.5 * (c7 + acromion),
                                         _unit(up + 0.6 * back))
        # the greater trochanter lateral to the hip joint, the sacral hiatus on the midline
        trochanter = hip + lateral * 0.6 * abs(hip[0])
        gb30 = trochanter + (np.array([0.0, hip[1], hip[2]]) - trochanter) / 3.0
        on["GB30" + suffix] = skin_point(vertices, faces, gb30, back)
        on["BL40" + suffix] = limb(knee, ankle, 0.0, back, lateral, 0.0)
        on["BL57" + suffix] = limb(knee, ankle, 0.5, back, lateral, 0.0)
    return on


def point_side_codes() -> list[str]:
    """Every point-side code: each atlas point, and its right twin off the midline."""
    midline = {"CV12", "CV6"}
    return [c for a in ATLAS for c in ((a.code,) if a.code in midline
                                       else (a.code, f"{a.code}-R"))]


def lying_transform(posture: str) -> np.ndarray:
    """Rotation from anny's standing frame (z up, -y front, +x left) to the body frame lying
    ``posture``: head at +x, the front (supine) or the back (prone) up."""
    if posture == "supine":  # head +x, front +z, so the left is at -y
        return np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    if posture == "prone":  # head +x, back +z, the left at +y
        return np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    raise ValueError(f"unknown posture {posture!r}; choose one of {', '.join(POSTURES)}")


def collision_patches(vertices: np.ndarray, faces: np.ndarray, spacing_m: float,
                      depth_m: float) -> list[np.ndarray]:
    """The skin cut into patches: the vertices of one ``spacing_m`` grid cell that face one
    way (the nearest of the six axis directions), with the ring of vertices around them and
    their copy ``depth_m`` under the skin. The convex hull of each is a slab whose outer face
    is the skin where the skin is convex, and bridges a hollow narrower than the patch; together
    they are the surface a ball touches."""
    normals = vertex_normals(vertices, faces)
    facing = np.argmax(np.abs(normals), axis=1) * 2 + (np.take_along_axis(
        normals, np.argmax(np.abs(normals), axis=1)[:, None], axis=1)[:, 0] > 0)
    cell = np.floor(vertices / spacing_m).astype(np.int64)
    _, cluster = np.unique(np.column_stack([cell, facing]), axis=0, return_inverse=True)
    cluster = cluster.ravel()
    members = [set(np.flatnonzero(cluster == c)) for c in range(cluster.max() + 1)]
    border = cluster[faces]
    across = (border != border[:, :1]).any(axis=1)
    for f, c in zip(faces[across], border[across].min(axis=1), strict=True):
        members[c].update(f.tolist())  # a face across a border: whole in one patch
    patches = []
    for idx in members:
        if len(idx) < 3:
            continue
        idx = np.fromiter(idx, int)
        patches.append(np.concatenate([vertices[idx], vertices[idx] - depth_m * normals[idx]]))
    return patches


# --- generation and the cache ------------------------------------------------------------------

def body_cache_dir() -> Path:
    """Where generated bodies are kept: $TUINA_BODY_CACHE, else ~/.cache/tuina/bodies."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tuina" / "bodies")


def _cache_path(phenotype: Phenotype, posture: str) -> Path:
    key = json.dumps({"generation": GENERATION, "posture": posture, **asdict(phenotype)},
                     sort_keys=True)
    return body_cache_dir() / f"{posture}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


_MODEL = None


def _anny_model():
    global _MODEL  # the model takes seconds to load: once a process
    if _MODEL is None:
        try:
            import anny
        except ImportError as err:
            raise RuntimeError(f"a person's body needs the anny package ({err}); run make "
                               "setup") from None
        _MODEL = anny.Anny()
    return _MODEL


def _pose(model, phenotype: Phenotype, rotvecs: dict[str, np.ndarray]
          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    import roma
    import torch

    labels = list(model.bone_labels)
    pose = torch.eye(4, dtype=torch.float64)[None, None].repeat(1, len(labels), 1, 1)
    for name, rv in rotvecs.items():
        pose[0, labels.index(name), :3, :3] = roma.rotvec_to_rotmat(
            torch.as_tensor(rv, dtype=torch.float64))
    with torch.no_grad():
        out = model(pose_parameters=pose, phenotype_kwargs=asdict(phenotype))
    heads = out["bone_poses"][0, :, :3, 3].numpy()
    return out["vertices"][0].numpy().astype(float), dict(zip(labels, heads, strict=True))


def _arms_down(model, phenotype: Phenotype, posture: str) -> dict[str, np.ndarray]:
    """Joint rotations that lay the arms straight along the body, ``ARM_ABDUCTION_DEG`` out;
    prone, the feet pointed (as they lie on a table, toes down)."""
    from scipy.optimize import minimize

    ab = np.radians(ARM_ABDUCTION_DEG)
    rot: dict[str, np.ndarray] = {}
    for side, s in (("L", 1.0), ("R", -1.0)):
        want = np.array([s * np.sin(ab), 0.0, -np.cos(ab)])

        def cost(x: np.ndarray, side: str = side, s: float = s, want: np.ndarray = want
                 ) -> float:
            trial = {**rot, f"upperarm01.{side}": np.array([x[0], s * x[1], x[2]]),
                     f"lowerarm01.{side}": x[3:]}
            _, b = _pose(model, phenotype, trial)
            sh, el, wr = (b[f"{n}.{side}"] for n in ("upperarm01", "lowerarm01", "wrist"))
            return float(np.sum((_unit(el - sh) - want) ** 2)
                         + np.sum((_unit(wr - el) - want) ** 2))

        x = minimize(cost, np.array([0.0, 0.55, 0.0, 0.9, -0.2 * s, 0.07 * s]),
                     method="Powell", options={"maxfev": 400, "xtol": 1e-3}).x
        rot[f"upperarm01.{side}"] = np.array([x[0], s * x[1], x[2]])
        rot[f"lowerarm01.{side}"] = x[3:]
        if posture == "prone":  # the foot pointed: toes towards the table
            rot[f"foot.{side}"] = np.array([-1.1, 0.0, 0.0])
    return rot


def build_person(phenotype: Phenotype, posture: str) -> Person:
    """Generate the body lying ``posture`` with its labels (needs anny)."""
    R = lying_transform(posture)
    model = _anny_model()
    vertices, bones = _pose(model, phenotype, _arms_down(model, phenotype, posture))
    faces = model.faces.numpy().astype(np.int64) if hasattr(model.faces, "numpy") \
        else np.asarray(model.faces, np.int64)
    if faces.shape[1] == 4:  # quads: two triangles each
        faces = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
    labels = _labels(vertices, faces, bones)
    codes = point_side_codes()
    positions = np.array([labels[c][0] for c in codes]) @ R.T
    normals = np.array([labels[c][1] for c in codes]) @ R.T
    lying = vertices @ R.T
    # on the table: the trunk's lowest skin on its top (the face and the toes may reach
    # below it, as through a massage table's face hole and past its end)
    root = bones["root"] @ R.T
    trunk = (lying[:, 0] > root[0] - 0.05) & (lying[:, 0] < (bones["neck01"] @ R.T)[0])
    shift = np.array([-root[0], -root[1], -lying[trunk, 2].min()])
    lying, positions = lying + shift, positions + shift
    return Person(phenotype, posture, lying, faces,
                  collision_patches(lying, faces, PATCH_SPACING_M, PATCH_DEPTH_M),
                  codes, positions, normals, float(np.ptp(vertices[:, 2])))


def save_person(person: Person, path: Path) -> None:
    """Write a body to ``path`` (.npz), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = np.array([len(p) for p in person.patches])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, phenotype=json.dumps(asdict(person.phenotype)), posture=person.posture,
             vertices=person.vertices, faces=person.faces, patch_sizes=sizes,
             patch_points=np.concatenate(person.patches), codes=np.array(person.codes),
             positions=person.positions, normals=person.normals, height_m=person.height_m)
    os.replace(tmp, path)


def load_person(path: Path) -> Person:
    """A body written by ``save_person``."""
    with np.load(path) as z:
        sizes = z["patch_sizes"]
        points = z["patch_points"]
        patches = np.split(points, np.cumsum(sizes)[:-1])
        return Person(Phenotype(**json.loads(str(z["phenotype"]))), str(z["posture"]),
                      z["vertices"], z["faces"], list(patches), [str(c) for c in z["codes"]],
                      z["positions"], z["normals"], float(z["height_m"]))


def person_for(phenotype: Phenotype, posture: str) -> Person:
    """The body of ``phenotype`` lying ``posture``: read from the cache, or generated (needs
    anny) and kept there."""
    path = _cache_path(phenotype, posture)
    if path.exists():
        return load_person(path)
    person = build_person(phenotype, posture)
    save_person(person, path)
    return person


def seeded_person(seed: int, posture: str) -> Person:
    """The person a seed lies on the table in ``posture``."""
    return person_for(draw_phenotype(seed), posture)


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{x:.6g}" for x in np.ravel(values))


def add_person_geoms(asset, body, person: Person, tissue: dict[str, str]) -> None:
    """Add the person to an MJCF ``asset`` and mocap ``body`` (ElementTree elements): the skin,
    drawn for the camera and touching nothing, and the collision patches (convex slabs under
    the skin, geom group 3, which the camera does not draw) with the ``tissue`` attributes."""
    import xml.etree.ElementTree as ET

    ET.SubElement(asset, "mesh", name="skin", vertex=_fmt(person.vertices),
                  face=" ".join(map(str, person.faces.ravel())), inertia="shell")
    ET.SubElement(body, "geom", name="skin", type="mesh", mesh="skin", material="skin",
                  contype="0", conaffinity="0", group="0")
    for k, points in enumerate(person.patches):
        ET.SubElement(asset, "mesh", name=f"skin_patch_{k}", vertex=_fmt(points))
        ET.SubElement(body, "geom", name=f"skin_patch_{k}", type="mesh",
                      mesh=f"skin_patch_{k}", group="3", **tissue)


def contact_gaps_mm(person: Person, radius_m: float, cone_deg: float = 60.0,
                    rays: int = 400) -> dict[str, float]:
    """How much nearer the collision surface lies than the skin to a ball of ``radius_m``
    resting on each labelled point (its centre one radius out along the normal), in mm: the
    ball's distance to each, the least over ``rays`` rays in a ``cone_deg`` cone about the
    inward normal. Positive: the ball stops short of the skin; negative: it sinks into it."""
    import xml.etree.ElementTree as ET

    import mujoco

    root = ET.fromstring("<mujoco><asset><material name='skin'/></asset><worldbody>"
                         "<body name='person' mocap='true'/></worldbody></mujoco>")
    add_person_geoms(root.find("asset"), root.find("worldbody/body"), person,
                     {"contype": "2", "conaffinity": "1"})
    model = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    golden = np.pi * (3.0 - np.sqrt(5.0))  # a Fibonacci spiral over the cone's cap
    k = np.arange(rays)
    z = 1.0 - k / (rays - 1) * (1.0 - np.cos(np.radians(cone_deg)))
    r = np.sqrt(1.0 - z**2)
    local = np.stack([r * np.cos(golden * k), r * np.sin(golden * k), z], axis=1)
    groups = {g: np.array([g == 0, 0, 0, g == 3, 0, 0], np.uint8) for g in (0, 3)}
    geom = np.zeros(1, np.int32)
    gaps = {}
    for code, p, n in zip(person.codes, person.positions, person.normals, strict=True):
        inward = -n / np.linalg.norm(n)
        a = _across(inward, np.array([1.0, 0.0, 0.0]) if abs(inward[0]) < 0.9
                    else np.array([0.0, 1.0, 0.0]))
        basis = np.stack([a, np.cross(inward, a), inward], axis=1)
        centre = p + radius_m * (-inward)
        nearest = {}
        for g, mask in groups.items():
            hits = [mujoco.mj_ray(model, data, centre, basis @ d, mask, 1, -1, geom)
                    for d in local]
            nearest[g] = min(h for h in hits if h >= 0)
        gaps[code] = (nearest[0] - nearest[3]) * 1000.0
    return gaps
