"""A parametric left hand: palm, five fingers with their phalanges, wrist and a piece of forearm.

Hand frame (mm): origin at the wrist centre, +X towards the thumb (radial), +Y distal (towards the fingertips),
+Z dorsal (back of the hand). For a left hand this frame is right-handed; a right hand is its mirror image.

MR placement (``build_hand``): the hand lies flat, palm down on the coil (palm facing posterior), fingers pointing
superior. So X = patient left (-R), Y = superior, Z = anterior: an "ap" projection sees the back of the hand with
the fingers up and the thumb on the image's right. Proportions follow ANTHROPOMETRY.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .anatomy import HAND_LANDMARKS, Anatomy, PartList, Tissue
from .shapes import cross3, rotate, unit

FINGERS = ("thumb", "index", "middle", "ring", "little")

HAND_TO_MR_RAS = np.array([[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""Hand frame -> RAS for a left hand lying palm down, fingers superior (module docstring)."""


@dataclass(frozen=True)
class HandParams:
    """Shape and pose of one hand.

    Attributes:
        length_mm: wrist crease to middle fingertip (17-20 cm in men, about 10% less in women).
        breadth_mm: across the knuckles of index to little finger.
        palm_fraction: palm length / hand length (about 0.55).
        finger_ratios: (5,) finger length from its knuckle / middle finger length, order FINGERS.
        thickness: multiplier of finger and palm thickness.
        spread_deg: angle between neighbouring long fingers in the palm plane.
        thumb_abduction_deg: thumb metacarpal angle from the index metacarpal in the palm plane (varies most).
        thumb_palmar_deg: thumb metacarpal angle towards the palm side.
        flexion_deg: (5,) flexion of each finger's joints (towards the palm).
        forearm_mm: length of the piece of forearm kept proximal to the wrist.
        roll_deg: rotation of the whole hand in the palm plane (about the dorsal axis) when placed in a scanner.
    """

    length_mm: float
    breadth_mm: float
    palm_fraction: float
    finger_ratios: tuple[float, float, float, float, float]
    thickness: float
    spread_deg: float
    thumb_abduction_deg: float
    thumb_palmar_deg: float
    flexion_deg: tuple[float, float, float, float, float]
    forearm_mm: float
    roll_deg: float = 0.0


def sample_hand(rng: np.random.Generator, *, female: bool | None = None, length_mm: float | None = None,
                forearm_mm: float | None = None) -> HandParams:
    """Random adult hand.

    Args:
        rng: random generator.
        female: sex (random if None); women's hands are about 10% smaller.
        length_mm: fixed hand length (e.g. from body height); otherwise sampled.
        forearm_mm: forearm piece length; otherwise 60-120 mm.
    """
    female = bool(rng.random() < 0.5) if female is None else female
    if length_mm is None:
        length_mm = float(np.clip(rng.normal(171.0 if female else 189.0, 8.5), 150.0, 220.0))
    ratios = np.array([0.70, 0.90, 1.0, 0.95, 0.75]) * rng.normal(1.0, 0.03, 5)
    ratios[2] = 1.0
    flexion = np.clip(rng.normal(6.0, 5.0) + rng.normal(0.0, 3.0, 5), 0.0, 20.0)
    return HandParams(
        length_mm=length_mm,
        breadth_mm=float(length_mm * rng.normal(0.455, 0.02)),
        palm_fraction=float(rng.normal(0.555, 0.012)),
        finger_ratios=tuple(float(r) for r in ratios),  # type: ignore[arg-type]
        thickness=float(rng.normal(1.0, 0.07)),
        spread_deg=float(rng.uniform(1.0, 12.0)),
        thumb_abduction_deg=float(rng.uniform(15.0, 65.0)),
        thumb_palmar_deg=float(rng.uniform(5.0, 35.0)),
        flexion_deg=tuple(float(f) for f in flexion),  # type: ignore[arg-type]
        forearm_mm=float(rng.uniform(60.0, 120.0)) if forearm_mm is None else forearm_mm,
        roll_deg=float(rng.normal(0.0, 8.0)),
    )


@dataclass(frozen=True)
class HandParts:
    """A hand in its own frame (module docstring), before placement.

    Attributes:
        skin: primitives with their subcutaneous fat thickness (mm) as values.
        bones: bone primitives (round, so their inset is exact) with 0 as values.
        tips: finger name -> (3,) fingertip on the skin, hand frame mm.
    """

    skin: PartList
    bones: PartList
    tips: dict[str, NDArray[np.float64]]


def _finger(parts: HandParts, name: str, base: NDArray[np.float64], direction: NDArray[np.float64],
            lengths: list[float], radii: list[float], flexion_deg: float, fat_mm: float) -> None:
    """A chain of phalanges from ``base`` with a rounded tip; flexes about the hand's radial axis at each joint."""
    hinge = unit(cross3(direction, (0.0, 0.0, 1.0)))
    joint = base
    d = direction
    for i, seg in enumerate(lengths):
        tip_radius = radii[i + 1]
        end = joint + d * (seg - (tip_radius if i == len(lengths) - 1 else 0.0))
        parts.skin.tapered(joint, end, radii[i], tip_radius, aspect=0.9, thickness_dir=[0, 0, 1], value=fat_mm)
        parts.bones.tapered(joint + d * 2.0, end - d * (1.0 if i < len(lengths) - 1 else 3.5),
                            radii[i] * 0.45, max(tip_radius * 0.35, 2.0))
        joint = end
        d = rotate(d, hinge, -flexion_deg)  # flexion turns the finger towards the palm (-Z)
    # The fingertip: the point of the tip ball farthest from the wrist (origin).
    tip_centre = joint
    parts.tips[name] = tip_centre + radii[-1] * unit(tip_centre)


def hand_parts(p: HandParams) -> HandParts:
    """Primitives of a left hand in the hand frame (module docstring), with fingertip landmarks."""
    parts = HandParts(PartList(), PartList(), {})
    palm = p.length_mm * p.palm_fraction
    middle = p.length_mm - palm
    b = p.breadth_mm
    t = p.thickness
    fat = 2.5
    # Knuckles (MCP joints) of index..little: an arch across the palm, the middle one most distal.
    mcp_x = np.array([0.36, 0.12, -0.12, -0.35]) * b
    mcp_y = palm - np.array([3.0, 0.0, 4.0, 14.0])
    radius_base = np.array([9.2, 9.6, 9.0, 8.0]) * t * b / 85.0
    for k, name in enumerate(FINGERS[1:]):
        angle = np.deg2rad(p.spread_deg * (1.0 - k) - (3.0 if name == "little" else 0.0))
        direction = np.array([np.sin(angle), np.cos(angle), 0.0])
        length = middle * p.finger_ratios[k + 1]
        segs = list(np.array([1.0, 0.6, 0.45]) / 2.05 * length)
        r0 = radius_base[k]
        radii = [r0, r0 * 0.92, r0 * 0.82, r0 * 0.72]
        base = np.array([mcp_x[k], mcp_y[k], 0.0])
        _finger(parts, name, base, direction, segs, radii, p.flexion_deg[k + 1], fat)
        parts.bones.tapered([mcp_x[k] * 0.55, 18.0, 0.0], base - direction * 3, 4.5 * t, 4.0 * t)
    # Thumb: metacarpal from the carpus, then proximal and distal phalanges.
    cmc = np.array([0.30 * b, 0.20 * palm, -4.0])
    abduct = np.deg2rad(p.thumb_abduction_deg + 10.0)
    meta_dir = np.array([np.sin(abduct), np.cos(abduct), 0.0])
    meta_dir = rotate(meta_dir, unit(cross3(meta_dir, (0.0, 0.0, 1.0))), -p.thumb_palmar_deg)  # towards the palm
    thumb_mcp = cmc + meta_dir * 0.42 * palm
    r_thumb = 10.5 * t * b / 85.0
    parts.skin.tapered(cmc, thumb_mcp, r_thumb * 1.25, r_thumb, value=fat)
    # The first web space: skin between the thumb and the index finger's knuckle.
    parts.skin.tapered(thumb_mcp - meta_dir * 4.0, [0.30 * b, 0.78 * palm, -1.0], r_thumb * 0.8, r_thumb * 0.7,
                       aspect=0.6, thickness_dir=(0.0, 0.0, 1.0), value=fat)
    parts.bones.tapered(cmc + meta_dir * 4, thumb_mcp - meta_dir * 3, 5.0 * t, 4.5 * t)
    thumb_dir = rotate(meta_dir, (0.0, 0.0, 1.0), 12.0)  # the phalanges turn back towards the fingers
    thumb_len = middle * p.finger_ratios[0]
    _finger(parts, "thumb", thumb_mcp, thumb_dir, [0.55 * thumb_len, 0.45 * thumb_len],
            [r_thumb, r_thumb * 0.9, r_thumb * 0.78], p.flexion_deg[0] * 0.7, fat)
    # Palm: a flat slab from the wrist to the knuckles, with thenar and hypothenar eminences.
    half_thick = 14.0 * t
    parts.skin.tapered([0.02 * b, 8.0, 0.0], [0.0, palm - 8.0, 0.0], 0.41 * b, 0.50 * b,
                       aspect=half_thick / (0.48 * b), thickness_dir=[0, 0, 1], cap=10.0, value=fat)
    parts.skin.ellipsoid([0.27 * b, 0.33 * palm, -6.0], [0.19 * b, 0.30 * palm, 12.0 * t], value=fat + 1)
    parts.skin.ellipsoid([-0.33 * b, 0.45 * palm, -5.0], [0.15 * b, 0.35 * palm, 11.0 * t], value=fat + 1)
    # Wrist and forearm piece: flattened (wider than thick), widening proximally.
    wrist_half = 0.34 * b
    end = np.array([0.0, -max(p.forearm_mm, 1.0), 1.0])
    parts.skin.tapered([0.0, 6.0, 0.0], end, wrist_half, wrist_half * (1.0 + p.forearm_mm / 400.0),
                       aspect=0.68 * t, thickness_dir=[0, 0, 1], cap=wrist_half * 0.5, value=3.0)
    parts.bones.ellipsoid([0.0, 8.0, 0.0], [0.30 * b, 12.0, 8.0 * t])  # carpus
    for x in (0.17 * b, -0.17 * b):  # distal radius and ulna
        parts.bones.tapered([x, -4.0, 0.0], [x * 0.8, end[1] - 5.0, 0.0], 9.0 * t, 6.5 * t)
    return parts


def hand_to_ras(wrist_ras: NDArray[np.float64], distal: NDArray[np.float64], palm_normal: NDArray[np.float64],
                left: bool) -> NDArray[np.float64]:
    """4x4 map from the (left) hand frame to RAS placing a left or right hand.

    Args:
        wrist_ras: wrist centre.
        distal: direction from the wrist towards the fingers.
        palm_normal: direction the palm faces (made perpendicular to ``distal``).
        left: False mirrors the left-hand model into a right hand.
    """
    f = unit(distal)
    p = unit(palm_normal - f * (palm_normal @ f))
    thumb = cross3(p, f) if left else cross3(f, p)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = thumb, f, -p, wrist_ras
    return m


def build_hand(params: HandParams) -> Anatomy:
    """A left hand for MR-like volumes, placed as in HAND_TO_MR_RAS (wrist at the origin), rolled by roll_deg.

    Tissues, painted in order: fat (skin envelope), muscle (inside the fat layer), cortical bone, marrow.
    """
    parts = hand_parts(params)
    roll = np.eye(4)
    roll[:3, :3] = np.stack([rotate(e, (0.0, 1.0, 0.0), params.roll_deg) for e in np.eye(3)], axis=1)
    m = roll @ HAND_TO_MR_RAS
    skin = parts.skin.union()
    bones = parts.bones.union()
    tissues = (Tissue("fat", skin, np.zeros(len(skin))), parts.skin.tissue("muscle"),
               Tissue("cortical", bones, np.zeros(len(bones))), Tissue("marrow", bones, np.full(len(bones), 1.5)))
    tips = {f"{name.capitalize()}Tip": parts.tips[name] for name in FINGERS}
    anatomy = Anatomy("hand", skin, tissues, {name: tips[name] for name in HAND_LANDMARKS})
    return anatomy.transformed(m)
