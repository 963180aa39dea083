"""A parametric whole body lying supine on a CT table, with bones, lungs, a fat layer and exact landmarks.

Frame: RAS millimetres with the patient's midline at R = 0, the table top at A = 0 (the back, buttocks, calves
and heels rest on it, so the body is at A > 0) and the soles at S = 0 (the vertex at S = height). Proportions
are the means of ANTHROPOMETRY.md (Drillis & Contini) as fractions of the height H, varied per person by a few
percent for lengths and far more for girths, which grow with BMI through lean mass and subcutaneous fat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .anatomy import BODY_LANDMARKS, Anatomy, NullPartList, PartList, Tissue
from .hand import HandParams, hand_parts, hand_to_ras, sample_hand
from .shapes import concat, cross3, ellipsoid, rotate, tapered, unit

Vec = NDArray[np.float64]
HAND_PLACES = ("beside", "thigh", "groin", "belly")

# Trunk cross-sections of a lean man 1750 mm tall: height fraction, half-width, half-depth (mm, without fat),
# fat weight, and whether the level belongs to the lower trunk (moves with leg length, widens with hips).
_TRUNK_LEVELS = np.array([
    # frac   W      D    fat  lower
    [0.800, 118.0, 88.0, 0.6, 0],   # below the shoulders
    [0.760, 138.0, 100.0, 0.7, 0],  # axilla
    [0.720, 138.0, 104.0, 0.8, 0],  # nipple
    [0.665, 133.0, 100.0, 0.9, 0],  # lower chest
    [0.610, 121.0, 92.0, 1.0, 1],   # waist
    [0.570, 130.0, 94.0, 1.0, 1],   # iliac crest
    [0.525, 145.0, 100.0, 1.1, 1],  # hips (greater trochanters)
    [0.478, 112.0, 86.0, 1.0, 1],   # gluteal fold / crotch
])


@dataclass(frozen=True)
class BodyParams:
    """Shape of one person (lengths in mm).

    Attributes:
        female: sex; women have narrower shoulders, wider hips, more fat on hips, thighs and breasts.
        height_mm: standing height, 1450-2050.
        bmi: body mass index, 16-45 kg/m^2.
        head_scale: head size multiplier (heads vary little with height).
        leg_ratio, arm_ratio: segment length multipliers (about 1 +- 3%).
        shoulder_ratio, hip_ratio, depth_ratio: trunk width and depth multipliers.
        fat_mm: subcutaneous fat thickness on the trunk.
        belly_mm: extra anterior abdominal depth (visceral fat; more in men).
        breast_mm: breast projection (0 for flat chests; small in men).
        hand: hand shape (one for both hands).
        viscera_seed: seed of the random layout of visceral fat lobules and bowel gas.
    """

    female: bool
    height_mm: float
    bmi: float
    head_scale: float
    leg_ratio: float
    arm_ratio: float
    shoulder_ratio: float
    hip_ratio: float
    depth_ratio: float
    fat_mm: float
    belly_mm: float
    breast_mm: float
    hand: HandParams
    viscera_seed: int = 0


@dataclass(frozen=True)
class BodyPose:
    """Posture on the table; pairs are (right, left).

    Attributes:
        arms: "down" (along the body) or "raised" (above the head, a common CT protocol).
        hand_place: where each hand rests with arms down: "beside" the thigh, on the "thigh", over the "groin"
            or on the "belly".
        hand_offset: where along that place each hand rests, 0..1 (further down the thigh, further from the
            midline over the groin and belly).
        abduction_deg: minimum angle of each upper arm away from the trunk.
        raised_reach: with arms raised, for each arm: x offset of the wrist from the midline (mm; negative crosses
            to the other side), wrist height above the vertex (mm), and how far the elbow points outwards rather
            than upwards (0 = beside the head, 1.5 = out to the side).
        leg_spread_deg: abduction of each leg.
        foot_rotation_deg: external rotation of each foot (toes outwards).
        plantar_flex_deg: how far each foot points away from vertical (toes towards inferior).
        pronation_deg: rotation of each palm from facing the thigh towards facing the table (arms beside).
        head_lift_mm: height of the head rest under the occiput.
    """

    arms: str
    hand_place: tuple[str, str]
    hand_offset: tuple[float, float]
    abduction_deg: tuple[float, float]
    raised_reach: tuple[tuple[float, float, float], tuple[float, float, float]]
    leg_spread_deg: tuple[float, float]
    foot_rotation_deg: tuple[float, float]
    plantar_flex_deg: tuple[float, float]
    pronation_deg: tuple[float, float]
    head_lift_mm: float


def sample_body(rng: np.random.Generator, *, female: bool | None = None, height_mm: float | None = None,
                bmi: float | None = None) -> BodyParams:
    """Random adult body; any of sex, height and BMI may be fixed."""
    female = bool(rng.random() < 0.5) if female is None else female
    if height_mm is None:
        height_mm = float(np.clip(rng.normal(1640.0 if female else 1775.0, 75.0), 1450.0, 2050.0))
    if bmi is None:
        bmi = float(np.clip(np.exp(rng.normal(np.log(26.0), 0.2)), 16.0, 45.0))
    fat = max(2.0, 2.4 * (bmi - 16.5)) * (1.25 if female else 0.9) * float(np.exp(rng.normal(0.0, 0.2)))
    belly = max(0.0, bmi - 23.0) * (1.5 if female else 3.2) * float(rng.uniform(0.4, 1.3))
    if female:
        breast = float(rng.uniform(15.0, 45.0)) + 1.2 * max(0.0, bmi - 20.0)
    else:
        breast = 4.0 + 0.8 * max(0.0, bmi - 25.0)
    hand_length = height_mm * 0.108 * float(rng.normal(1.0, 0.03))
    return BodyParams(
        female=female, height_mm=height_mm, bmi=bmi,
        head_scale=float(rng.normal(1.0, 0.035)) * (height_mm / 1750.0) ** -0.6,
        leg_ratio=float(rng.normal(1.0, 0.025)), arm_ratio=float(rng.normal(1.0, 0.025)),
        shoulder_ratio=float(rng.normal(0.95 if female else 1.0, 0.04)),
        hip_ratio=float(rng.normal(1.07 if female else 1.0, 0.045)),
        depth_ratio=float(rng.normal(0.93 if female else 1.0, 0.05)),
        fat_mm=float(fat), belly_mm=float(belly), breast_mm=float(breast),
        hand=sample_hand(rng, female=female, length_mm=float(np.clip(hand_length, 150.0, 220.0)), forearm_mm=0.0),
        viscera_seed=int(rng.integers(2**31)),
    )


def sample_pose(rng: np.random.Generator) -> BodyPose:
    """Random posture as seen in CT: arms down (hands beside, on the thighs, groin or belly) or raised."""
    place = str(rng.choice(HAND_PLACES, p=[0.4, 0.2, 0.15, 0.25]))
    other = place if rng.random() < 0.6 else str(rng.choice(HAND_PLACES, p=[0.4, 0.2, 0.15, 0.25]))

    def pair(low: float, high: float) -> tuple[float, float]:
        return float(rng.uniform(low, high)), float(rng.uniform(low, high))

    reach = tuple((float(rng.uniform(-100.0, 140.0)), float(rng.uniform(-60.0, 160.0)), float(rng.uniform(0.2, 1.5)))
                  for _ in range(2))
    return BodyPose(
        arms="raised" if rng.random() < 0.35 else "down", hand_place=(place, other), hand_offset=pair(0.0, 1.0),
        abduction_deg=pair(2.0, 22.0), raised_reach=reach,  # type: ignore[arg-type]
        leg_spread_deg=pair(0.0, 8.0), foot_rotation_deg=pair(5.0, 45.0), plantar_flex_deg=pair(15.0, 50.0),
        pronation_deg=pair(-10.0, 80.0), head_lift_mm=float(rng.uniform(0.0, 45.0)))


class _Body:
    """Builds one body; the methods add parts in a fixed order, so every body has the same primitive layout."""

    def __init__(self, p: BodyParams, pose: BodyPose, inner: bool) -> None:
        self.p, self.pose = p, pose
        self.h = p.height_mm
        self.s = self.h / 1750.0
        self.girth = (p.bmi / 22.0) ** 0.15  # lean mass grows slowly with BMI
        self.limb_fat = 0.55 * p.fat_mm
        self.skin = PartList()  # value: subcutaneous fat thickness
        self.inner = inner
        self.bones = PartList() if inner else NullPartList()  # value: cortical thickness
        self.lungs = PartList() if inner else NullPartList()
        self.visceral = PartList() if inner else NullPartList()  # fat lobules between the bowel loops
        self.gas = PartList() if inner else NullPartList()  # bowel gas
        self.landmarks: dict[str, Vec] = {}
        self.hand = hand_parts(p.hand)
        self.thighs: dict[float, tuple[Vec, Vec, float, float]] = {}
        self._trunk_table()

    # ---- trunk ----
    def _trunk_table(self) -> None:
        """Skin half-width / half-depth of each trunk level (after sex, ratios, BMI and fat)."""
        p, t = self.p, _TRUNK_LEVELS
        self.z_hip = 0.53 * self.h * p.leg_ratio
        lower = t[:, 4] > 0
        self.level_z = t[:, 0] * self.h + np.where(lower, self.z_hip - 0.53 * self.h, 0.0)
        width = t[:, 1] * self.s * self.girth * np.where(lower, p.hip_ratio, p.shoulder_ratio)
        depth = t[:, 2] * self.s * self.girth * p.depth_ratio
        if p.female:
            width = width * np.where(lower, 1.0, 0.93)
        fat = p.fat_mm * t[:, 3] * np.where(lower & p.female, 1.25, 1.0)
        self.lean_w, self.lean_d, self.level_fat = width, depth, fat
        self.skin_w, self.skin_d = width + fat, depth + fat * 0.8
        waist = np.exp(-((t[:, 0] - 0.60) / 0.045) ** 2)  # the belly bulges around the waist
        self.belly = p.belly_mm * waist  # approximate profile of the belly ellipsoid, for placing hands on it
        self.back_lift = 18.0 * np.exp(-((t[:, 0] - 0.61) / 0.04) ** 2) * self.s  # lumbar lordosis

    def trunk_half_width(self, z: float) -> float:
        """Skin half-width of the trunk at height z (0 above and below the trunk)."""
        zs, ws = self.level_z[::-1], self.skin_w[::-1]
        return float(np.interp(z, zs, ws, left=0.0, right=0.0))

    def trunk_front(self, x: float, z: float) -> float:
        """Anterior skin surface (A coordinate) of the trunk at (x, z)."""
        zs = self.level_z[::-1]
        w = float(np.interp(z, zs, self.skin_w[::-1]))
        d = float(np.interp(z, zs, (self.skin_d + self.belly / 2)[::-1]))
        lift = float(np.interp(z, zs, self.back_lift[::-1]))
        return lift + d + d * np.sqrt(max(0.0, 1.0 - (x / w) ** 2))

    def build_trunk(self) -> None:
        z, w, d, fat, lift = self.level_z, self.skin_w, self.skin_d, self.level_fat, self.back_lift
        i, j = np.arange(len(z) - 1), np.arange(1, len(z))
        cap = np.where((i > 0) & (i < len(z) - 2), 0.5 * (z[i] - z[j]), np.where(i == 0, 70.0, 40.0) * self.s)
        seg_fat = (fat[i] + fat[j]) / 2
        zero = np.zeros(len(i))
        # Posterior-lateral lobes flatten the back on the table; the central ellipse rounds the front.
        lobe_w, lobe_d = 0.55 * w, 0.8 * d
        lobe_aspect = (lobe_d[i] / lobe_w[i] + lobe_d[j] / lobe_w[j]) / 2
        cw = 0.92 * w
        centre_aspect = (d[i] / cw[i] + d[j] / cw[j]) / 2
        for side in (1.0, -1.0):
            a = np.stack([side * 0.45 * w[i], lift[i] + lobe_d[i], z[i]], axis=1)
            b = np.stack([side * 0.45 * w[j], lift[j] + lobe_d[j], z[j]], axis=1)
            self._rows(a, b, lobe_w[i], lobe_w[j], lobe_aspect, cap, seg_fat)
        a = np.stack([zero, lift[i] + d[i], z[i]], axis=1)
        b = np.stack([zero, lift[j] + d[j], z[j]], axis=1)
        self._rows(a, b, cw[i], cw[j], centre_aspect, cap, seg_fat)
        # The belly: a smooth dome over the abdomen, from nothing (lean) to a large protrusion.
        k = 4  # waist
        bulge = self.p.belly_mm
        self.skin.ellipsoid([0.0, lift[k] + d[k] + bulge / 2, z[k] - 0.01 * self.h],
                            [0.85 * w[k], d[k] + bulge / 2, 0.09 * self.h + 0.4 * bulge], value=fat[k] + 0.3 * bulge)
        self._breasts()
        self._visceral_fat()

    def _rows(self, a: Vec, b: Vec, radius_a: Vec, radius_b: Vec, aspect: Vec | float, cap: Vec | None,
              fat: Vec | float) -> None:
        """Record skin segments row by row (they are all built in one vectorized call at the end)."""
        n = len(a)
        aspect, fat = np.broadcast_to(aspect, (n,)).tolist(), np.broadcast_to(fat, (n,)).tolist()
        caps = [None] * n if cap is None else np.broadcast_to(cap, (n,)).tolist()
        for row in zip(a.tolist(), b.tolist(), radius_a.tolist(), radius_b.tolist(), aspect, caps, fat, strict=True):
            self.skin.tapered(row[0], row[1], row[2], row[3], aspect=row[4], cap=row[5], value=row[6])

    def _breasts(self) -> None:
        b = self.p.breast_mm
        z = 0.72 * self.h - 0.3 * b
        for side in (1.0, -1.0):
            x = side * (0.42 * self.skin_w[2] + 0.2 * b)
            front = self.trunk_front(x, z)
            radius = 35.0 * self.s + 0.6 * b
            centre = np.array([x, front - radius * 0.6 + 0.45 * b, z])
            fat = 1e3 if self.p.female else self.p.fat_mm * 0.8  # a breast is mostly fat; a man's chest is muscle
            # Supine, breasts flatten and spread sideways.
            self.skin.ellipsoid(centre, [radius * 1.2, radius * 0.6 + 0.3 * b, radius * 1.05], value=fat)

    def _visceral_fat(self) -> None:
        """Visceral fat lobules (more with a belly) and bowel gas pockets, randomly placed in the abdomen."""
        if not self.inner:
            return
        rng = np.random.default_rng(self.p.viscera_seed)
        z_top, z_bottom = self.level_z[3], self.level_z[6]
        k = 4  # waist level: the abdomen's cross-section
        w, d, lift = self.lean_w[k] * 0.75, self.lean_d[k] * 0.8, self.back_lift[k] + self.level_fat[k] * 0.8
        size = 0.5 + self.p.belly_mm / 50.0
        for _ in range(8):
            angle = rng.uniform(0.0, 2 * np.pi)
            radius = np.sqrt(rng.uniform(0.0, 1.0)) * 0.8
            centre = [w * radius * np.cos(angle), lift + d * (1.15 + radius * np.sin(angle)) + 0.3 * self.belly[k],
                      rng.uniform(z_bottom, z_top)]
            self.visceral.ellipsoid(centre, rng.uniform([18.0, 14.0, 20.0], [40.0, 30.0, 50.0]) * size)
        for _ in range(5):  # gas along the colon frame: near the flanks and under the anterior wall
            angle = rng.uniform(-0.2, np.pi + 0.2)
            centre = [0.8 * w * np.cos(angle), lift + d * (1.0 + 0.75 * np.sin(angle)), rng.uniform(z_bottom, z_top)]
            self.gas.ellipsoid(centre, rng.uniform([6.0, 5.0, 8.0], [22.0, 16.0, 30.0]))

    # ---- head and neck ----
    def build_head_neck(self) -> None:
        p, h = self.p, self.h
        hh = 0.13 * h * p.head_scale  # vertex to chin
        y0 = self.pose.head_lift_mm
        crown = np.array([0.0, y0 + 0.43 * hh, h - 0.44 * hh])
        ear_y, ear_z = crown[1] - 0.02 * hh, h - 0.52 * hh
        # Cranium and ears; then face (forehead to chin) and nose.
        round_parts = ellipsoid([crown, [0.33 * hh, ear_y, ear_z], [-0.33 * hh, ear_y, ear_z]],
                                [[0.335 * hh, 0.43 * hh, 0.44 * hh], [0.04 * hh, 0.08 * hh, 0.13 * hh],
                                 [0.04 * hh, 0.08 * hh, 0.13 * hh]])
        face = tapered([[0.0, y0 + 0.56 * hh, h - 0.50 * hh], [0.0, y0 + 0.80 * hh, h - 0.42 * hh]],
                       [[0.0, y0 + 0.62 * hh, h - hh + 0.12 * hh], [0.0, y0 + 0.90 * hh, h - 0.63 * hh]],
                       [0.29 * hh * (1 + 0.004 * (p.bmi - 22)), 0.035 * hh], [0.12 * hh, 0.055 * hh],
                       aspect=[0.85, 1.0], cap=[0.1 * hh, 0.055 * hh])
        fat = 4.0 + 0.05 * p.fat_mm
        self.skin.add(round_parts, [fat, 2.0, 2.0])
        self.skin.add(face, fat)
        self.cranium = round_parts.subset(slice(0, 1))
        values, points = concat([round_parts, face]).support([0.0, 0.0, 1.0])
        self.landmarks["HeadTop"] = points[int(np.argmax(values))]
        neck_r = (52.0 if not p.female else 45.0) * self.s * self.girth + 0.35 * p.fat_mm
        self.neck_top = np.array([0.0, crown[1] - 0.05 * hh, h - 0.95 * hh])
        self.neck_base = np.array([0.0, self.skin_d[0] * 0.95, 0.845 * h])
        self.skin.tapered(self.neck_top, self.neck_base, neck_r, neck_r * 1.08, value=0.35 * p.fat_mm)
        self.bones.add(self.cranium, 5.0)
        self.skull_base = crown + np.array([0.0, -0.1 * hh, -0.38 * hh])

    # ---- shoulders and arms ----
    def shoulder_joint(self, side: float) -> Vec:
        biac = (0.245 if self.p.female else 0.259) * self.h * self.p.shoulder_ratio
        return np.array([side * (0.5 * biac - 16.0 * self.s), 0.9 * self.skin_d[1], 0.818 * self.h - 38.0 * self.s])

    def build_shoulder(self, side: float) -> Vec:
        joint = self.shoulder_joint(side)
        f = self.limb_fat
        self.skin.ellipsoid(joint + [side * 14.0 * self.s, 0.0, -12.0 * self.s],
                            [46.0 * self.s * self.girth + 0.6 * f, 50.0 * self.s * self.girth + 0.6 * f,
                            58.0 * self.s * self.girth + 0.5 * f], value=0.6 * f)
        neck_side = self.neck_base + [side * 38.0 * self.s, -10.0 * self.s, 0.0]
        acromion = joint + [0.0, -5.0 * self.s, 28.0 * self.s]
        r = 36.0 * self.s * self.girth + 0.5 * f
        self.skin.tapered(neck_side, acromion, r * 1.1, r, aspect=1.5, thickness_dir=[0, 1, 0], value=0.5 * f)
        # Shoulder girdle: fills the upper chest out to the deltoid under the trapezius.
        girdle = np.array([0.0, 0.85 * self.skin_d[1], 0.79 * self.h])
        reach = joint + [-side * 25.0 * self.s, -0.1 * self.skin_d[1], -8.0 * self.s]
        rg = 55.0 * self.s * self.girth + 0.6 * f
        self.skin.tapered(girdle, reach, rg, rg * 0.85, aspect=0.8 * self.skin_d[1] / rg,
                          thickness_dir=[0, 1, 0], value=0.6 * f)
        self.landmarks["ShoulderR" if side > 0 else "ShoulderL"] = joint
        return joint

    def _elbow_on_circle(self, shoulder: Vec, wrist: Vec, upper: float, fore: float, pole: Vec,
                         r_elbow: float, side: float) -> Vec:
        """Elbow position of a two-bone arm: on the circle of solutions, the best one by ``pole`` that stays
        above the table and outside the trunk."""
        axis = wrist - shoulder
        dist = float(np.sqrt(axis @ axis))
        axis = axis / dist
        along = (upper ** 2 - fore ** 2 + dist ** 2) / (2 * dist)
        radius = np.sqrt(max(upper ** 2 - along ** 2, 0.0))
        e1 = unit(cross3(axis, [0.0, 0.0, 1.0]) if abs(axis[2]) < 0.99 else cross3(axis, [1.0, 0.0, 0.0]))
        e2 = cross3(axis, e1)
        angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        cands = shoulder + along * axis + radius * (np.cos(angles)[:, None] * e1 + np.sin(angles)[:, None] * e2)
        half_width = np.interp(cands[:, 2], self.level_z[::-1], self.skin_w[::-1], left=0.0, right=0.0)
        clear = side * cands[:, 0] >= half_width + 0.4 * r_elbow
        ok = (cands[:, 1] >= r_elbow * 0.9) & clear
        score = cands @ pole + np.where(ok, 1e6, 0.0) + cands[:, 1] * 1e-3
        return cands[int(np.argmax(score))]

    def build_arm(self, side: float) -> None:
        p, pose, s = self.p, self.pose, self.s
        idx = 0 if side > 0 else 1
        shoulder = self.build_shoulder(side)
        upper = 0.186 * self.h * p.arm_ratio - 25.0 * s
        fore = 0.146 * self.h * p.arm_ratio
        f = self.limb_fat
        r_up, r_el = 40.0 * s * self.girth + 0.8 * f, 31.0 * s * self.girth + 0.5 * f
        r_fa = 37.0 * s * self.girth + 0.5 * f
        wrist_half = 0.34 * p.hand.breadth_mm
        place = pose.hand_place[idx]
        if pose.arms == "raised":
            dx, above, out = pose.raised_reach[idx]
            target = np.array([side * dx, 40.0 + 0.3 * max(above, 0.0), self.h + above])
            pole = np.array([side * out, -0.2, 1.0])
        else:
            target, pole = self._wrist_target(side, place, shoulder, upper + fore, wrist_half)
        if pose.arms == "down" and place == "beside":
            abd = np.deg2rad(pose.abduction_deg[idx])
            target[0] = side * max(side * target[0], abs(shoulder[0]) + np.sin(abd) * (upper + fore) * 0.6)
        for _ in range(2):  # the second pass lifts the wrist until the hand rests on the table instead of in it
            reach = float(np.sqrt((target - shoulder) @ (target - shoulder)))
            if reach > upper + fore - 2.0:
                target = shoulder + (target - shoulder) * (upper + fore - 2.0) / reach
            elbow = self._elbow_on_circle(shoulder, target, upper, fore, pole, r_el, side)
            wrist = elbow + unit(target - elbow) * fore
            distal = unit(wrist - elbow)
            palm = self._palm_normal(side, place, distal, idx)
            if pose.arms == "down" and place != "beside":
                break  # the hand rests on the body, far above the table
            below = self._hand_depth_below(wrist, distal, palm, side) - wrist[1]
            if below <= 0.0:
                break
            target = target + [0.0, below, 0.0]
        self.skin.tapered(shoulder, elbow, r_up, r_el, aspect=0.95, value=0.8 * f)
        mid = elbow + 0.3 * (wrist - elbow)
        self.skin.tapered(elbow, mid, r_el, r_fa, value=0.5 * f)
        self.skin.tapered(mid, wrist, r_fa, wrist_half + 0.15 * f, aspect=0.75, thickness_dir=palm,
                          cap=0.5 * wrist_half, value=0.4 * f)
        self.bones.sphere(shoulder, 23.0 * s, value=2.0)
        self.bones.tapered(shoulder, elbow - distal * 5.0, 12.0 * s, 15.0 * s, value=3.5)
        lateral = unit(cross3(distal, palm))
        for off, r0, r1 in ((1.0, 8.0, 11.0), (-1.0, 11.0, 7.0)):  # radius (thumb side) and ulna
            self.bones.tapered(elbow + lateral * off * 9.0 * s, wrist - distal * 15.0 + lateral * off * 12.0 * s,
                               r0 * s, r1 * s, value=2.5)
        self._hand(side, wrist, distal, palm)

    def _wrist_target(self, side: float, place: str, shoulder: Vec, reach: float,
                      wrist_half: float) -> tuple[Vec, Vec]:
        """Wrist position and elbow pole for arms down."""
        h, s = self.h, self.s
        offset = self.pose.hand_offset[0 if side > 0 else 1]
        thigh_x = self.hip_joint(side)[0] * 1.15
        if place == "thigh":
            z = self.z_hip - (0.06 + 0.1 * offset) * h
            y = self.thigh_top(z) + 12.0 * s
            return np.array([thigh_x + side * 10.0 * s, y, z]), np.array([side, -1.0, 0.0])
        if place == "groin":
            z = self.z_hip - (0.02 + 0.03 * offset) * h
            x = side * (30.0 + 60.0 * offset) * s
            return np.array([x, self.trunk_front(x, self.level_z[-2]) + 10.0 * s, z]), np.array([side, -1.0, 0.0])
        if place == "belly":
            z = self.level_z[4] - (0.02 - 0.05 * offset) * h
            x = side * (40.0 + 90.0 * offset) * s
            return np.array([x, self.trunk_front(x, z) + 12.0 * s, z]), np.array([side, -0.6, 0.0])
        z = shoulder[2] - reach * 0.97
        tip_z = z - self.p.hand.length_mm
        x = side * (max(self.trunk_half_width(z), self.thigh_lateral(side, z), self.thigh_lateral(side, tip_z))
                    + 0.5 * self.p.hand.breadth_mm + 5.0 * s)
        return np.array([x, wrist_half * 0.8 + 10.0 * s, z]), np.array([side, -1.0, 0.3])

    def thigh_lateral(self, side: float, z: float) -> float:
        """Distance of the lateral skin of a thigh from the midline at height z (legs must be built first)."""
        top, knee, r_top, r_knee = self.thighs[side]
        frac = float(np.clip((top[2] - z) / (top[2] - knee[2]), 0.0, 1.0))
        return abs(top[0] + frac * (knee[0] - top[0])) + r_top + frac * (r_knee - r_top)

    def _hand_depth_below(self, wrist: Vec, distal: Vec, palm: Vec, side: float) -> float:
        """How far the hand placed at ``wrist`` reaches below its wrist centre (towards the table), mm."""
        m = hand_to_ras(np.zeros(3), distal, palm, left=side < 0)
        values, _ = self.hand.skin.union().transformed(m).support([0.0, -1.0, 0.0])
        return float(values.max())

    def _palm_normal(self, side: float, place: str, distal: Vec, idx: int) -> Vec:
        if self.pose.arms == "down" and place == "beside":
            return rotate(np.array([-side, 0.0, 0.0]), distal, -side * self.pose.pronation_deg[idx])
        return np.array([0.0, -1.0, 0.0])

    def _hand(self, side: float, wrist: Vec, distal: Vec, palm: Vec) -> None:
        parts = self.hand
        m = hand_to_ras(wrist, distal, palm, left=side < 0)
        skin, fat = parts.skin.build()
        self.skin.add(skin.transformed(m), fat)
        if self.inner:
            self.bones.add(parts.bones.union().transformed(m), 1.5)
        tip = m[:3, :3] @ parts.tips["middle"] + m[:3, 3]
        self.landmarks["MiddleFingerTipR" if side > 0 else "MiddleFingerTipL"] = tip

    # ---- legs ----
    def hip_joint(self, side: float) -> Vec:
        return np.array([side * 0.05 * self.h * self.p.hip_ratio ** 0.5,
                         0.95 * self.lean_d[6] + 0.5 * self.level_fat[6],
                         self.z_hip])

    def thigh_radius(self) -> float:
        return 82.0 * self.s * self.girth + self.limb_fat * (1.5 if self.p.female else 1.0)

    def thigh_top(self, z: float) -> float:
        """Approximate anterior skin surface of the thigh at height z."""
        r_top, r_knee = self.thigh_radius(), self.knee_radius()
        frac = np.clip((self.z_hip - z) / (self.z_hip - self.z_knee), 0.0, 1.0)
        r = r_top + (r_knee - r_top) * frac
        return float(r * 2.0)

    def knee_radius(self) -> float:
        return 47.0 * self.s * self.girth + 0.4 * self.limb_fat

    @property
    def z_knee(self) -> float:
        return 0.285 * self.h * self.p.leg_ratio

    def build_leg(self, side: float) -> None:
        p, pose, s = self.p, self.pose, self.s
        idx = 0 if side > 0 else 1
        hip = self.hip_joint(side)
        spread = np.deg2rad(pose.leg_spread_deg[idx])
        r_thigh, r_knee = self.thigh_radius(), self.knee_radius()
        r_calf, r_ankle = 50.0 * s * self.girth + 0.6 * self.limb_fat, 31.0 * s + 0.2 * self.limb_fat
        z_ankle = 0.039 * self.h
        knee = self._next_joint(hip, self.z_hip - self.z_knee, side * np.sin(spread), r_knee)
        ankle = self._next_joint(knee, self.z_knee - z_ankle, side * np.sin(spread), 52.0 * s)
        for _ in range(2):  # move the ankle until the heel rests on the table
            fwd, up, _ = self._foot_frame(side, knee, ankle, idx)
            heel = ankle + fwd * (-0.25 * 0.152 * self.h + 30.0 * s) - up * (0.039 * self.h - 30.0 * s)
            ankle = self._next_joint(knee, self.z_knee - z_ankle, side * np.sin(spread),
                                     ankle[1] - (heel[1] - 30.0 * s))
        lean_thigh = 1.0 if not p.female else 1.25
        # The thigh's top fills the hip laterally (the hip width is measured over the trochanters).
        top = np.array([side * max(abs(hip[0]) + 10.0 * s, self.skin_w[6] - 0.95 * r_thigh), 0.92 * r_thigh,
                        self.z_hip - 0.035 * self.h])
        self.skin.tapered(top, knee, r_thigh, r_knee * 1.05, aspect=0.92, value=self.limb_fat * lean_thigh)
        self.thighs[side] = (top, knee, r_thigh, r_knee * 1.05)
        self.skin.sphere(knee, r_knee, value=0.4 * self.limb_fat)
        calf = knee + 0.3 * (ankle - knee) + [0.0, -4.0 * s, 0.0]
        self.skin.tapered(knee, calf, r_knee * 0.95, r_calf, value=0.6 * self.limb_fat)
        self.skin.tapered(calf, ankle, r_calf, r_ankle, value=0.4 * self.limb_fat)
        axis = unit(ankle - knee)
        self.bones.sphere(hip, 24.0 * s, value=2.0)
        trochanter = hip + [side * 45.0 * s, -5.0 * s, -35.0 * s]
        self.bones.tapered(hip, trochanter, 16.0 * s, 18.0 * s, value=2.0)
        self.bones.tapered(trochanter, knee + [0, 0, 40.0 * s], 15.0 * s, 16.0 * s, value=4.0)
        self.bones.ellipsoid(knee + [0.0, 0.0, 18.0 * s], [42.0 * s, 30.0 * s, 24.0 * s], value=2.0)  # condyles
        self.bones.tapered(knee - axis * 18.0 * s, knee - axis * 70.0 * s, 36.0 * s, 18.0 * s, value=2.0)  # plateau
        self.bones.tapered(knee - axis * 70.0 * s, ankle + axis * 8.0 * s, 15.0 * s, 13.0 * s, value=4.0)
        self.bones.tapered(knee - axis * 30.0 * s + [side * 28.0 * s, -12.0 * s, 0.0],
                           ankle + [side * 22.0 * s, -5.0 * s, 0.0], 7.0 * s, 8.0 * s, value=2.0)  # fibula
        self.bones.sphere(knee + [0.0, r_knee - 18.0 * s, 12.0 * s], 18.0 * s, value=2.0)  # patella
        self.landmarks["KneeR" if side > 0 else "KneeL"] = knee
        self._foot(side, knee, ankle, idx)

    def _next_joint(self, start: Vec, drop: float, spread_sin: float, y_end: float) -> Vec:
        """Joint reached from ``start`` by a segment of length ``drop``, abducted, ending at height y_end."""
        dx, dy = drop * spread_sin, y_end - start[1]
        dz = np.sqrt(max(drop ** 2 - dx ** 2 - dy ** 2, 1.0))
        return start + np.array([dx, dy, -dz])

    def _foot_frame(self, side: float, knee: Vec, ankle: Vec, idx: int) -> tuple[Vec, Vec, Vec]:
        """Unit vectors of the foot: forward (heel to toes), up (sole to instep), lateral."""
        down = unit(ankle - knee)
        ahead = unit(np.array([0.0, 1.0, 0.0]) - down * down[1])
        pf = np.deg2rad(self.pose.plantar_flex_deg[idx])
        fwd = np.cos(pf) * ahead + np.sin(pf) * down
        up = -np.cos(pf) * down + np.sin(pf) * ahead
        rot = side * self.pose.foot_rotation_deg[idx]
        fwd, up = rotate(fwd, down, rot), rotate(up, down, rot)
        return fwd, up, side * cross3(fwd, up)

    def _foot(self, side: float, knee: Vec, ankle: Vec, idx: int) -> None:
        s, h = self.s, self.h
        fwd, up, lat = self._foot_frame(side, knee, ankle, idx)
        length, width = 0.152 * h, 0.055 * h * (1.0 + 0.004 * (self.p.bmi - 22.0))
        ha = 0.039 * h
        fat = 3.0

        def at(forward: float, upward: float, lateral: float = 0.0) -> Vec:
            return ankle + fwd * forward + up * upward + lat * lateral

        heel = at(-0.25 * length + 30.0 * s, -(ha - 30.0 * s))
        self.skin.sphere(heel, 30.0 * s, value=fat)
        self.skin.tapered(at(0.0, 10.0 * s), heel, 31.0 * s, 29.0 * s, value=fat)
        mid = at(0.22 * length, -0.45 * ha, 0.05 * width)
        heads = at(0.5 * length, -(ha - 15.0 * s), 0.04 * width)
        self.skin.tapered(at(0.0, -5.0 * s), mid, 30.0 * s, 0.42 * width, aspect=0.75, thickness_dir=up,
                          value=fat)
        self.skin.tapered(mid, heads, 0.42 * width, 0.48 * width, aspect=0.33, thickness_dir=up, cap=12.0 * s,
                          value=fat)
        self.bones.ellipsoid(heel + fwd * 25.0 * s + up * 10.0 * s, [20.0 * s, 22.0 * s, 40.0 * s],
                             np.stack([lat, up, fwd], axis=1), value=2.0)  # calcaneus
        self.bones.sphere(ankle, 17.0 * s, value=2.0)  # talus
        # Toes, big toe first (medial): lateral offset / foot width, tip beyond the ankle / foot length, radius.
        lat_off = np.array([-0.30, -0.08, 0.10, 0.26, 0.40])[:, None]
        tip_f = np.array([0.25, 0.225, 0.205, 0.18, 0.15])[:, None]
        r = np.array([12.0, 8.5, 8.0, 7.5, 7.0])[:, None] * s
        base = ankle + fwd * (0.5 * length - 10.0 * s) - up * (ha - r - 3.0 * s) + lat * (lat_off * width)
        tip_centre = (ankle + fwd * ((0.5 + tip_f) * length - r) - up * (ha - r)
                      + lat * ((lat_off + 0.03 * np.arange(5)[:, None]) * width))
        joint = base + 0.55 * (tip_centre - base)
        self._rows(np.concatenate([base, joint]), np.concatenate([joint, tip_centre]),
                   np.concatenate([r[:, 0] * 1.1, r[:, 0]]), np.concatenate([r[:, 0], r[:, 0] * 0.9]), 1.0, None, 2.0)
        if self.inner:
            direction = (tip_centre - base) / np.linalg.norm(tip_centre - base, axis=1, keepdims=True)
            metatarsal = ankle + fwd * 0.18 * length - up * 0.5 * ha + lat * (lat_off * width * 0.6)
            self.bones.add(tapered(metatarsal, base, 4.5 * s, 4.0 * s), 1.5)
            self.bones.add(tapered(base + direction * 3.0, tip_centre - direction * 5.0, r[:, 0] * 0.4,
                                   r[:, 0] * 0.3), 1.0)
        self.landmarks["BigToeR" if side > 0 else "BigToeL"] = (tip_centre[0] + r[0, 0] * 0.9
                                                                 * unit(tip_centre[0] - ankle))

    # ---- inner trunk ----
    def build_inner(self) -> None:
        s = self.s
        z, d, w = self.level_z, self.lean_d, self.lean_w
        fat_post = 0.5 * self.level_fat
        # Spine: vertebral bodies from the skull base to the sacrum, in front of the back surface.
        top = self.skull_base
        n = 24
        zs = np.linspace(top[2] - 10.0 * s, z[5], n + 1)
        y_back = self.back_lift + fat_post + 0.45 * d
        y_spine = np.where(zs > z[0], np.interp(zs, [z[0], top[2]], [y_back[0], top[1]]),
                           np.interp(zs, z[::-1], y_back[::-1]))
        radius = np.interp(zs, [z[5], z[3], z[0], top[2]], [22.0, 17.0, 13.0, 10.0]) * s
        centres = np.stack([np.zeros(n + 1), y_spine, zs], axis=1)
        gap = 0.15 * (centres[1:] - centres[:-1])
        self.bones.add(tapered(centres[:-1] + gap, centres[1:] - gap, radius[:-1], radius[1:]), 1.5)
        # Posterior arches with their spinous processes, pointing backwards and down.
        mid = (centres[:-1] + centres[1:]) / 2
        arch = mid - np.stack([np.zeros(n), 0.9 * (radius[:-1] + radius[1:]), np.zeros(n)], axis=1)
        tip = np.stack([np.zeros(n), np.maximum(arch[:, 1] - 35.0 * s, 8.0 + fat_post[0]), mid[:, 2] - 12.0 * s],
                       axis=1)
        self.bones.add(tapered(arch, tip, 0.45 * radius[:-1], 4.0 * s), 1.2)
        # Ribs: arcs around the chest from the spine to the front, sloping down anteriorly.
        zr = np.linspace(z[0] - 15.0 * s, z[3] - 10.0 * s, 10)[:, None]
        half_w = np.interp(zr, z[::-1], w[::-1]) * 0.88
        half_d = np.interp(zr, z[::-1], d[::-1]) * 0.88
        y_c = np.interp(zr, z[::-1], (self.back_lift + fat_post + d)[::-1])
        frac = np.linspace(0.0, 1.0, 5)[None, :]
        angles = np.deg2rad(-100.0 + frac * (155.0 - 2.0 * np.arange(10)[:, None]))
        for side in (1.0, -1.0):
            pts = np.stack(np.broadcast_arrays(side * half_w * np.cos(angles), y_c + half_d * np.sin(angles),
                                               zr - 35.0 * s * frac), axis=2)
            self.bones.add(tapered(pts[:, :-1].reshape(-1, 3), pts[:, 1:].reshape(-1, 3), 5.0 * s, 5.0 * s), 1.5)
        front = float(np.interp(z[1], z[::-1], (self.back_lift + fat_post + 2 * d)[::-1]))
        self.bones.tapered([0.0, front, z[0] - 10.0 * s], [0.0, front + 5.0 * s, z[3] + 20.0 * s], 14.0 * s,
                           12.0 * s, aspect=0.5, value=1.5)  # sternum
        for side in (1.0, -1.0):
            joint = self.shoulder_joint(side)
            clavicle_end = joint + [-side * 10.0 * s, 15.0 * s, 30.0 * s]
            self.bones.tapered([side * 20.0 * s, front - 5.0 * s, z[0] + 5.0 * s], clavicle_end, 7.0 * s, 7.0 * s,
                               value=2.0)
            self.bones.ellipsoid([side * 0.6 * w[1], self.level_fat[1] * 0.5 + 25.0 * s, z[1]],
                                 [45.0 * s, 8.0 * s, 65.0 * s], value=2.0)  # scapula
            # Iliac wing: a thin plate from the sacrum running forwards and outwards.
            wing_long = unit(np.array([side * 0.55, 0.85, 0.0]))
            wing_axes = np.stack([cross3(wing_long, [0.0, 0.0, 1.0]), wing_long, [0.0, 0.0, 1.0]], axis=1)
            self.bones.ellipsoid([side * 0.55 * w[5], 0.75 * d[5] + fat_post[5], z[5] - 10.0 * s],
                                 [7.0 * s, 65.0 * s, 55.0 * s], wing_axes, value=2.0)
            hip = self.hip_joint(side)
            pubis = [side * 15.0 * s, hip[1] + 40.0 * s, hip[2] - 30.0 * s]
            self.bones.tapered(hip + [-side * 10.0 * s, 15.0 * s, 0.0], pubis, 12.0 * s, 10.0 * s, value=2.0)
            lung_top = np.array([side * 0.38 * w[0], 0.9 * d[0] + fat_post[0], z[0] + 25.0 * s])
            lung_base = np.array([side * 0.50 * w[3], 0.9 * d[3] + fat_post[3], z[3] + 10.0 * s])
            self.lungs.tapered(lung_top, lung_base, 30.0 * s, 0.36 * w[3], aspect=0.75 * d[3] / (0.36 * w[3]),
                               cap=40.0 * s)
        self.bones.tapered([0.0, 0.5 * d[5] + fat_post[5], z[5]], [0.0, 0.4 * d[6] + fat_post[6], z[7]],
                           38.0 * s, 15.0 * s, aspect=0.55, value=2.0)  # sacrum

    def anatomy(self) -> Anatomy:
        skin = self.skin.union()
        tissues = [Tissue("fat", skin, np.zeros(len(skin))), self.skin.tissue("muscle")]
        if self.inner:
            bones = self.bones.union()
            tissues += [self.visceral.tissue("fat"), self.gas.tissue("gas"), self.lungs.tissue("lung"),
                        Tissue("cortical", bones, np.zeros(len(bones))), self.bones.tissue("cancellous"),
                        Tissue("brain", self.cranium, np.array([11.0]))]
        return Anatomy("body", skin, tuple(tissues), {name: self.landmarks[name] for name in BODY_LANDMARKS})


def build_body(params: BodyParams, pose: BodyPose, *, inner: bool = True) -> Anatomy:
    """The body of ``params`` in ``pose``, supine on a table at A = 0 (module docstring).

    Args:
        params: body shape (``sample_body``).
        pose: posture (``sample_pose``).
        inner: also build bones, lungs and visceral fat (needed for volumes, not for silhouettes and depth).
    Returns:
        Anatomy with the skin surface, tissues (fat, muscle, visceral fat, lung, cortical and cancellous bone,
        brain) and the nine landmarks of BODY_LANDMARKS. The primitive layout is the same for every body, so
        bodies can be rendered in batches.
    """
    body = _Body(params, pose, inner)
    body.build_head_neck()
    body.build_trunk()
    for side in (1.0, -1.0):
        body.build_leg(side)
    for side in (1.0, -1.0):
        body.build_arm(side)
    if inner:
        body.build_inner()
    return body.anatomy()
