"""The anny parametric human body (MakeHuman's mesh and rig, assets in its wheel): a phenotype
posed as a person lies for a massage.

Loading anny imports torch and warp-lang and reads the model's files: seconds once anny has
built its own cache, about a minute the first time on a fresh machine. One model is kept per
process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PHENOTYPE_KEYS = ("gender", "age", "muscle", "weight", "height", "proportions")
ARM_ABDUCTION_DEG = 12.0  # arms straight along the body, this far out: clear of the hips
# joint rotations (rotation vectors, anny's "local-ref" pose) that lay the arms of the default
# phenotype along the body, ARM_ABDUCTION_DEG out; other shapes need slightly other ones
ARMS_ALONG_THE_BODY = {
    "upperarm01.L": (0.0314, 0.5322, -0.0168), "lowerarm01.L": (0.9074, -0.1922, 0.0709),
    "upperarm01.R": (0.0314, -0.5322, 0.0168), "lowerarm01.R": (0.9074, 0.1922, -0.0709)}
POINTED_FOOT = (-1.1, 0.0, 0.0)  # prone, the feet pointed: the toes towards the table


@dataclass(frozen=True)
class Phenotype:
    """anny's phenotype values, each in 0..1."""

    gender: float = 0.5  # 0 male, 1 female
    age: float = 0.75  # 2/3 a young adult (25 years), 1 old (90)
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.4
    proportions: float = 0.3

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, k) for k in PHENOTYPE_KEYS])

    @classmethod
    def from_vector(cls, values: np.ndarray) -> Phenotype:
        return cls(**{k: float(v) for k, v in zip(PHENOTYPE_KEYS, values, strict=True)})


_MODEL: Any = None


def anny_model() -> Any:
    """The anny model, loaded once a process; RuntimeError naming the fix when anny is
    missing."""
    global _MODEL
    if _MODEL is None:
        try:
            import warp

            # its banner and module lines would go to stdout, among a tool's JSON
            warp.config.quiet = True
            warp.config.log_level = warp.LOG_WARNING
            import anny
        except ImportError as err:
            raise RuntimeError(f"a human body needs the anny package ({err}); run make "
                               "setup") from None
        _MODEL = anny.Anny()
    return _MODEL


class AnnyBody:
    """Pose anny's body: its skin and its bones' heads, standing, in anny's frame (z up,
    -y the front, +x the person's left)."""

    def __init__(self, model: Any = None):
        self.model = model if model is not None else anny_model()
        self.bone_labels = list(self.model.bone_labels)
        faces = np.asarray(self.model.faces, dtype=np.int64)
        if faces.shape[1] == 4:  # quads: two triangles each
            faces = np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
        self.faces = faces

    def pose(self, phenotype: Phenotype, rotations: dict[str, Any]
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Skin vertices (N, 3) and bone heads of ``phenotype`` with joint ``rotations``
        (bone -> rotation vector)."""
        import roma
        import torch

        pose = torch.eye(4, dtype=torch.float64)[None, None].repeat(
            1, len(self.bone_labels), 1, 1)
        for name, rv in rotations.items():
            pose[0, self.bone_labels.index(name), :3, :3] = roma.rotvec_to_rotmat(
                torch.as_tensor(np.asarray(rv, float), dtype=torch.float64))
        with torch.no_grad():
            out = self.model(pose_parameters=pose, phenotype_kwargs=asdict(phenotype))
        heads = out["bone_poses"][0, :, :3, 3].numpy().astype(float)
        return (out["vertices"][0].numpy().astype(float),
                dict(zip(self.bone_labels, heads, strict=True)))

    def shaped(self, shape: np.ndarray, posture: str
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Skin and bones of a fit's shape vector: the phenotype's six values, then how far
        each arm (left, right) is turned out from the default lying pose's (rad, about the
        front axis)."""
        rotations = self.lying_pose(posture)
        for side, s, turn in (("L", 1.0, shape[6]), ("R", -1.0, shape[7])):
            rotations[f"upperarm01.{side}"] = np.add(rotations[f"upperarm01.{side}"],
                                                     (0.0, -s * turn, 0.0))
        return self.pose(Phenotype.from_vector(shape[:6]), rotations)

    def lying_pose(self, posture: str, arms: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
        """The joint rotations of a person lying ``posture``: the arms along the body
        (``arms``, or the default phenotype's), the feet pointed when prone."""
        rotations = dict(arms if arms is not None else ARMS_ALONG_THE_BODY)
        if posture == "prone":
            rotations.update({"foot.L": POINTED_FOOT, "foot.R": POINTED_FOOT})
        return rotations

    def arms_along_the_body(self, phenotype: Phenotype) -> dict[str, np.ndarray]:
        """The arm rotations that lay this phenotype's arms straight along the body,
        ARM_ABDUCTION_DEG out (a search over the shoulder and the elbow)."""
        from scipy.optimize import minimize

        ab = np.radians(ARM_ABDUCTION_DEG)
        found: dict[str, np.ndarray] = {}
        for side, s in (("L", 1.0), ("R", -1.0)):
            want = np.array([s * np.sin(ab), 0.0, -np.cos(ab)])
            start = np.concatenate([ARMS_ALONG_THE_BODY[f"upperarm01.{side}"],
                                    ARMS_ALONG_THE_BODY[f"lowerarm01.{side}"]])

            def cost(x: np.ndarray, side: str = side, want: np.ndarray = want) -> float:
                _, b = self.pose(phenotype, {**found, f"upperarm01.{side}": x[:3],
                                             f"lowerarm01.{side}": x[3:]})
                shoulder, elbow, wrist = (b[f"{n}.{side}"] for n in
                                          ("upperarm01", "lowerarm01", "wrist"))
                upper = (elbow - shoulder) / np.linalg.norm(elbow - shoulder)
                fore = (wrist - elbow) / np.linalg.norm(wrist - elbow)
                return float(np.sum((upper - want) ** 2) + np.sum((fore - want) ** 2))

            x = minimize(cost, start, method="Powell",
                         options={"maxfev": 300, "xtol": 1e-3}).x
            found[f"upperarm01.{side}"], found[f"lowerarm01.{side}"] = x[:3], x[3:]
        return found
