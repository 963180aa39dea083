"""Reference fingertips of the real-anatomy hands (the two hands of the mesh50_XCAT phantom, the four of the HRA
Visible Human male and female), each turned into a left hand lying palm down as in a hand MR coil, by the rules in
Resources/RealAnatomy/hand/METHOD.md.

Every hand is derived in its subject's RAS frame (mm; real_anatomy.py loads the meshes so) and then placed by one
map: a mirror R -> -R for right hands, then one rotation and translation that take the hand frame (origin at the
knuckles' centre; +X radial, +Y distal, +Z dorsal, built from the fingers) to hand.HAND_TO_MR_RAS's placement: palm
facing posterior, fingers superior, thumb towards the patient's left. Used by scripts/make_real_anatomy_set.py.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import real_anatomy as ra
import trimesh
from numpy.typing import NDArray

from LandmarkDetectorLib.synthetic.anatomy import HAND_LANDMARKS
from LandmarkDetectorLib.synthetic.hand import HAND_TO_MR_RAS

MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])
FINGER_NAMES = HAND_LANDMARKS[1:]
FINGER_WORDS = ("index finger", "middle finger", "ring finger", "little finger")
THUMB_BONE_MM = 15.0
"""A mesh50_XCAT thumb gets a bone-based variant where its bones come this close to the skin's thumb tip."""
PALM_MM = 40.0
"""The palm's centre lies this far proximal to the knuckles' centre (where the thumb is seen from)."""


@dataclass
class HandSubject:
    """One hand placed palm down (module docstring).

    Attributes:
        key: e.g. "xcat_m50_R" (the subject and the side it had; right hands are mirrored into left ones).
        title: source, for pictures and METHOD.md.
        to_placed: 4x4 map from the subject's RAS frame to the placed frame (a mirror for right hands).
        skin: the subject's whole skin, placed (a closed surface; the other parts of the body are far from the hand
            or separate from it).
        hand_skin: the skin of the hand and the distal forearm, placed (open at the cut; for pictures and boxes).
        bones: closed bone meshes of the hand and forearm, placed (none for the HRA hands).
        references: the five fingertips, placed, in HAND_LANDMARKS order.
    """

    key: str
    title: str
    to_placed: NDArray[np.float64]
    skin: trimesh.Trimesh
    hand_skin: trimesh.Trimesh
    bones: list[trimesh.Trimesh]
    references: list[ra.Reference] = field(default_factory=list)

    def reference(self, name: str) -> ra.Reference | None:
        return next((r for r in self.references if r.name == name), None)


# ---------------------------------------------------------------- placement

def placement(knuckles: NDArray[np.float64], distal: NDArray[np.float64], mirrored: bool) -> NDArray[np.float64]:
    """4x4 subject RAS -> placed RAS of a hand.

    Args:
        knuckles: (4, 3) points at the knuckles of the index, middle, ring and little fingers, subject RAS.
        distal: the hand's axis towards the fingertips, subject RAS.
        mirrored: a right hand (mirrored first, R -> -R).
    """
    mirror = MIRROR if mirrored else np.eye(4)
    k = knuckles @ mirror[:3, :3].T
    d = ra._unit(mirror[:3, :3] @ distal)
    across = k[0] - k[3]
    radial = ra._unit(across - (across @ d) * d)
    hand_frame = np.stack([radial, d, np.cross(radial, d)], axis=1)  # columns: +X radial, +Y distal, +Z dorsal
    m = np.eye(4)
    m[:3, :3] = HAND_TO_MR_RAS[:3, :3] @ hand_frame.T
    m[:3, 3] = -m[:3, :3] @ k.mean(axis=0)
    return m @ mirror


def _placed(mesh: trimesh.Trimesh, m: NDArray[np.float64]) -> trimesh.Trimesh:
    out = mesh.copy()
    out.apply_transform(m)  # trimesh reverses the winding of a mirror, keeping the normals outward
    return out


def _placed_reference(r: ra.Reference, m: NDArray[np.float64]) -> ra.Reference:
    return ra.Reference(r.name, m[:3, :3] @ r.point_ras + m[:3, 3], r.uncertainty_mm, r.method)


def hand_region(skin: trimesh.Trimesh, tip: NDArray[np.float64], distal: NDArray[np.float64],
                reach_mm: float) -> trimesh.Trimesh:
    """The skin of a hand and its forearm up to ``reach_mm`` proximal to the middle fingertip: the faces beyond that
    plane connected to the fingertip (other parts of the body beyond the plane are left out)."""
    t = (skin.vertices - tip) @ distal
    faces = np.flatnonzero((t[skin.faces] > -reach_mm).all(axis=1))
    adjacency = skin.face_adjacency[np.isin(skin.face_adjacency, faces).all(axis=1)]
    pieces = trimesh.graph.connected_components(adjacency, nodes=faces)
    nearest = int(np.argmin(np.linalg.norm(skin.triangles_center - tip, axis=1)))
    piece = next(p for p in pieces if nearest in p)
    return skin.submesh([piece], append=True)


# ---------------------------------------------------------------- thumb from the skin

def _thumb_tip(skin: trimesh.Trimesh, extreme: NDArray[np.float64], palm: NDArray[np.float64],
               length_mm: float) -> NDArray[np.float64]:
    """Skin point on the thumb's axis: the skin within ``length_mm`` of the thumb's extreme point along the direction
    from the palm's centre to it, connected to it, gives the axis (its principal axis) and the ray's start (its centre).
    """
    direction = ra._unit(extreme - palm)
    beyond = (skin.vertices - extreme) @ direction > -length_mm
    faces = np.flatnonzero(beyond[skin.faces].all(axis=1))
    adjacency = skin.face_adjacency[np.isin(skin.face_adjacency, faces).all(axis=1)]
    nearest = faces[np.argmin(np.linalg.norm(skin.triangles_center[faces] - extreme, axis=1))]
    piece = next(p for p in trimesh.graph.connected_components(adjacency, nodes=faces) if nearest in p)
    tip = skin.vertices[np.unique(skin.faces[piece])]
    return ra.ray_exit(skin, tip.mean(axis=0), ra._principal_axis(tip, direction))


def thumb_reference(hand_skin: trimesh.Trimesh, finger_tips: NDArray[np.float64], knuckles: NDArray[np.float64],
                    extra: tuple[tuple[str, NDArray[np.float64]], ...] = ()) -> ra.Reference:
    """ThumbTip from the skin: the thumb's extreme point is the hand vertex farthest from the fingers' line (from
    the knuckles' centre to the fingertips' centre) among those from 80 mm proximal to 40 mm distal to the knuckles;
    the tip is where the thumb's axis leaves the skin (``_thumb_tip``: the skin within 30 mm of the extreme point,
    seen from the palm's centre PALM_MM proximal to the knuckles). Variants: 20 and 40 mm, and ``extra``."""
    v = hand_skin.vertices
    centre = knuckles.mean(axis=0)
    axis = ra._unit(finger_tips.mean(axis=0) - centre)
    palm = centre - PALM_MM * axis
    t = (v - centre) @ axis
    candidates = np.flatnonzero((t > -80.0) & (t < 40.0))
    offset = v[candidates] - centre
    sideways = offset - (offset @ axis)[:, None] * axis
    extreme = v[candidates[np.argmax(np.linalg.norm(sideways, axis=1))]]
    main = _thumb_tip(hand_skin, extreme, palm, 30.0)
    variants = [_thumb_tip(hand_skin, extreme, palm, length) for length in (20.0, 40.0)]
    variants += [point for _, point in extra]
    spread = ra._spread(main, variants)
    others = "".join(f", {name} {np.linalg.norm(point - main):.1f} mm away" for name, point in extra)
    return ra.Reference("ThumbTip", main, ra._combine(spread, ra.SURFACE_MM),
                        f"thumb on the skin: axis of its distal 30 mm{others}; variant spread {spread:.1f} mm")


# ---------------------------------------------------------------- subjects

def xcat_hands(data_dir: Path) -> list[HandSubject]:
    """The two mesh50_XCAT hands: fingertips from the distal phalanges (as the body set's MiddleFingerTip), the thumb
    from the skin with a bone-based variant."""
    with zipfile.ZipFile(data_dir / ra.XCAT_DIR / "mesh50XCAT_WholeBody.zip") as archive:
        skin = ra._stl_ras(archive, "WholeBody_Body.stl")
        skeleton = ra._stl_ras(archive, "WholeBody_Skeleton.stl")
    parts = skeleton.split(only_watertight=False)
    size = np.array([np.linalg.norm(p.extents) for p in parts])
    centres = np.array([p.vertices.mean(axis=0) for p in parts])
    sole = skin.vertices[:, 2].min()
    hands = []
    for side, sign in (("L", -1.0), ("R", 1.0)):
        arm = next(p for p, c in zip(parts, centres, strict=True)
                   if c[0] * sign > 150.0 and p.extents[2] > 500.0 and p.vertices[:, 2].max() > 400.0)
        shoulder = ra.humeral_head(arm, f"Shoulder{side}")
        arm_end = arm.vertices[np.argmin(arm.vertices[:, 2])]
        small = [i for i in range(len(parts)) if size[i] < 70.0 and centres[i][0] * sign > 0]
        hand_bones = [parts[i] for i in small
                      if np.linalg.norm(centres[i] - arm_end) < 250.0 and centres[i][2] > sole + 200]
        limb = ra._unit(np.mean([p.vertices.mean(axis=0) for p in hand_bones], axis=0) - shoulder.point_ras)
        # As in real_anatomy.xcat_subject: the four digits reaching furthest are the fingers, the thumb side anterior.
        fingers = sorted(ra.digit_rays(hand_bones, limb), key=lambda r: -(hand_bones[r[0]].vertices @ limb).max())[:4]
        fingers.sort(key=lambda r: -hand_bones[r[0]].vertices.mean(axis=0)[1])
        refs = [ra.bone_digit_tip(skin, hand_bones, ray, limb, name, f"{word}'s")
                for ray, name, word in zip(fingers, FINGER_NAMES, FINGER_WORDS, strict=True)]
        tips = np.array([r.point_ras for r in refs])
        region = hand_region(skin, refs[1].point_ras, limb, 260.0)
        bone_vertices = np.vstack([arm.vertices] + [b.vertices for b in hand_bones])
        # Knuckles: the proximal end of each finger's most proximal separate bone.
        knuckles = np.array([hand_bones[ray[-1]].vertices[np.argmin(hand_bones[ray[-1]].vertices @ limb)]
                             for ray in fingers])
        thumb = thumb_reference(region, tips, knuckles)
        if np.min(np.linalg.norm(bone_vertices - thumb.point_ras, axis=1)) < THUMB_BONE_MM:
            from_bone = _bone_thumb(region, bone_vertices, tips, knuckles)
            thumb = thumb_reference(region, tips, knuckles, (("the bone-based variant", from_bone),))
        else:  # the phantom's left thumb has no bones (none within THUMB_BONE_MM of its tip)
            thumb = ra.Reference(thumb.name, thumb.point_ras, thumb.uncertainty_mm,
                                 thumb.method.replace("; variant", "; no thumb bones in the phantom; variant"))
        m = placement(knuckles, limb, mirrored=side == "R")
        bones = [arm] + hand_bones
        hands.append(HandSubject(f"xcat_m50_{side}", "mesh50_XCAT phantom (Visible Human Male, 50th-percentile man)",
                                 m, _placed(skin, m), _placed(region, m), [_placed(b, m) for b in bones],
                                 [_placed_reference(r, m) for r in [thumb] + refs]))
    return hands


def _bone_thumb(hand_skin: trimesh.Trimesh, bone_vertices: NDArray[np.float64], finger_tips: NDArray[np.float64],
                knuckles: NDArray[np.float64]) -> NDArray[np.float64]:
    """The thumb tip from its bones: the bone vertex farthest from the fingers' line (as for the skin), the principal
    axis of the bone within 25 mm of it, and the skin where that axis leaves it from that vertex."""
    centre = knuckles.mean(axis=0)
    axis = ra._unit(finger_tips.mean(axis=0) - centre)
    lo, hi = hand_skin.bounds
    inside = np.all((bone_vertices > lo) & (bone_vertices < hi), axis=1)
    v = bone_vertices[inside]
    offset = v - centre
    t = offset @ axis
    sideways = np.linalg.norm(offset - t[:, None] * axis, axis=1)
    extreme = v[np.argmax(np.where((t > -80.0) & (t < 40.0), sideways, -1.0))]
    near = v[np.linalg.norm(v - extreme, axis=1) < 25.0]
    direction = ra._principal_axis(near, extreme - near.mean(axis=0))
    tip = near[np.argmax(near @ direction)]
    return ra.ray_exit(hand_skin, tip, direction)


def hra_hands(data_dir: Path, sex: str) -> list[HandSubject]:
    """The two hands of an HRA Visible Human model ("M" or "F"), skin only: fingers as in
    real_anatomy.skin_finger_tip (the four skin parts beyond the longest cut that gives four), each tip on the axis of
    its distal 30 mm; the thumb from the skin."""
    skin = next(iter(ra._glb_ras(data_dir / ra.HRA_DIR / f"VH_{sex}_Skin.glb").values()))
    v = skin.vertices
    hands = []
    for side, sign in (("L", -1.0), ("R", 1.0)):
        arm = ra._unit(np.array([0.5 * sign, 0.0, -1.0]))
        lateral = v[:, 0] * sign > 0.6 * (v[:, 0] * sign).max()
        extreme = v[lateral][np.argmax(v[lateral] @ arm)]
        hand = np.linalg.norm(v - extreme, axis=1) < 180.0
        axis = ra._principal_axis(v[hand], arm)
        for cut in (60.0, 50.0, 40.0, 30.0):
            digits = ra._digits(skin, axis, hand, cut)
            if len(digits) == 4:
                break
        else:
            raise ValueError(f"hra_vh{sex.lower()} {side}: no cut of the hand gives four separate fingers")
        centres = np.array([v[d].mean(axis=0) for d in digits])
        finger_refs = [ra._skin_digit(skin, d, axis, "", "") for d in digits]
        tips = np.array([r.point_ras for r in finger_refs])
        region = hand_region(skin, tips.mean(axis=0), axis, 260.0)
        knuckles = np.array([v[d][np.argmin(v[d] @ axis)] for d in digits])
        thumb = thumb_reference(region, tips, knuckles)
        across = ra._principal_axis(centres - (centres @ axis)[:, None] * axis, thumb.point_ras - centres.mean(axis=0))
        order = sorted(range(4), key=lambda i: -(centres[i] @ across))  # from the thumb's side
        refs = [ra.Reference(name, finger_refs[i].point_ras, finger_refs[i].uncertainty_mm,
                             f"{word} ({n + 1} of 4 fingers from the thumb, cut {cut:.0f} mm): "
                             + finger_refs[i].method.split(" on the skin, ")[1])
                for n, (i, name, word) in enumerate(zip(order, FINGER_NAMES, FINGER_WORDS, strict=True))]
        knuckles = knuckles[order]  # the proximal end of each finger's skin part, from the index finger
        m = placement(knuckles, axis, mirrored=side == "R")
        title = f"HRA v1.1 Visible Human {'Male' if sex == 'M' else 'Female'} (skin only)"
        hands.append(HandSubject(f"hra_vh{sex.lower()}_{side}", title, m, _placed(skin, m), _placed(region, m), [],
                                 [_placed_reference(r, m) for r in [thumb] + refs]))
    return hands
