"""A person lying on the table: an ``anny`` parametric body (MakeHuman's mesh, CC0) drawn per
seed, posed as a person lies for a massage, with the acupoints placed on that body as the
world's labels.

Body frame, as the phantom's: origin on the table surface under the pelvis, x towards the head,
z up from the table. Unlike the phantom, the person has a true left: supine (face up) the
person's left lies at -y, prone at +y; a point-side's code names the person's side (``ST36``
left, ``ST36-R`` right).

The labels follow ../shared/acupoints.md on this body's own bones and skin
(``tuina.operators.body_atlas``: proportional cun measured on its skeleton, knee joint to ankle
joint = 16 cun, elbow to wrist = 12 cun, the sternocostal angle to the pubic symphysis = 13 cun,
the scapula's medial border to the midline = 3 cun; each point where a ray from the bone out
along the standard's direction leaves the skin). They are the world's truth only: no node
reads them.

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

from tuina.body_model import AnnyBody, Phenotype
from tuina.operators.body_atlas import (
    across,
    label_points,
    lie_on_table,
    point_side_codes,
    vertex_normals,
)

# read by mujoco at import (contact_gaps_mm builds a model): headless EGL unless set otherwise
os.environ.setdefault("MUJOCO_GL", "egl")
GENERATION = 2  # bump when a body or its labels would come out differently: old caches go
CACHE_ENV = "TUINA_BODY_CACHE"
# an adult lying for a massage: anny's phenotype values (0..1) drawn uniformly in these
# ranges; age 2/3 is anny's "young" adult (25 years), 1 its "old" (90)
# (anny's height 0.17-0.55 stands 1.55-1.97 m for a man, 1.45-1.83 m for a woman)
ADULT_RANGES = {"gender": (0.0, 1.0), "age": (0.67, 0.95), "muscle": (0.15, 0.85),
                "weight": (0.15, 0.85), "height": (0.17, 0.55), "proportions": (0.0, 0.6)}
PATCH_SPACING_M = 0.03  # collision patches about this wide
PATCH_DEPTH_M = 0.012  # each patch a slab this thick under the skin


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


def build_person(phenotype: Phenotype, posture: str) -> Person:
    """Generate the body lying ``posture`` with its labels (needs anny)."""
    body = AnnyBody()
    rotations = body.lying_pose(posture, body.arms_along_the_body(phenotype))
    vertices, bones = body.pose(phenotype, rotations)
    labels = label_points(vertices, body.faces, bones)
    codes = point_side_codes()
    R, t = lie_on_table(vertices, bones, posture)
    lying = vertices @ R.T + t
    positions = np.array([labels[c][0] for c in codes]) @ R.T + t
    normals = np.array([labels[c][1] for c in codes]) @ R.T
    return Person(phenotype, posture, lying, body.faces,
                  collision_patches(lying, body.faces, PATCH_SPACING_M, PATCH_DEPTH_M),
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


def contact_gaps_mm(person: Person, radius_m: float, cone_deg: float = 60.0,
                    rays: int = 400) -> dict[str, float]:
    """How much nearer the collision surface lies than the skin to a ball of ``radius_m``
    resting on each labelled point (its centre one radius out along the normal), in mm: the
    ball's distance to each, the least over ``rays`` rays in a ``cone_deg`` cone about the
    inward normal. Positive: the ball stops short of the skin; negative: it sinks into it."""
    import xml.etree.ElementTree as ET

    import mujoco

    from tuina.sim.world import add_person_geoms

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
        a = across(inward, np.array([1.0, 0.0, 0.0]) if abs(inward[0]) < 0.9
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
