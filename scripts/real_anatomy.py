"""Reference landmarks of the real-anatomy phantoms (mesh50_XCAT, HRA Visible Human male and female), derived from
their bone and skin meshes by the rules in Resources/RealAnatomy/body/METHOD.md.

Every mesh is turned into the subject's RAS frame (mm) on loading, and every rule works there:
mesh50_XCAT is LPS mm (R = -x, A = -y, S = z); HRA glTF is metres with x = left, y = superior, z = anterior
(R = -1000 x, A = 1000 z, S = 1000 y). Used by scripts/make_real_anatomy_set.py and Testing/Core/test_real_anatomy.py.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from numpy.typing import NDArray

LANDMARKS = ("HeadTop", "ShoulderR", "ShoulderL", "MiddleFingerTipR", "MiddleFingerTipL", "KneeR", "KneeL",
             "BigToeR", "BigToeL")
XCAT_DIR = "xcat-mesh50-wholebody"
HRA_DIR = "hra-visible-human"
XCAT_LABEL_ZIP, XCAT_LABEL_FILE = "Voxelized_mesh50XCAT_WholeBody.zip", "VoxWholeBody_658x280x1764.i33"
XCAT_SHAPE_KJI = (1764, 280, 658)
XCAT_BONE_LABEL = 7
# Voxel (i, j, k) of the label map lies at LPS (i - 328.5, j - 139.5, k - 881.5) mm (SOURCE.md).
XCAT_IJK_TO_RAS = np.array([[-1.0, 0, 0, 328.5], [0, -1.0, 0, 139.5], [0, 0, 1.0, -881.5], [0, 0, 0, 1]])
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
GLTF_TO_RAS = np.array([[-1000.0, 0, 0, 0], [0, 0, 1000.0, 0], [0, 1000.0, 0, 0], [0, 0, 0, 1]])
SUPERIOR = np.array([0.0, 0.0, 1.0])
SURFACE_MM = 0.5
"""Floor of every uncertainty: how well a 1 mm label map or a mesh of a few mm edges pins a surface point."""


@dataclass(frozen=True)
class Reference:
    """One reference landmark: RAS position (mm), uncertainty (mm) and how it was derived."""

    name: str
    point_ras: NDArray[np.float64]
    uncertainty_mm: float
    method: str

    @property
    def description(self) -> str:
        """Text for the control point's description field."""
        return f"reference; uncertainty {self.uncertainty_mm:.1f} mm; {self.method}"


@dataclass
class Subject:
    """A phantom's meshes (RAS mm) and its reference landmarks, in LANDMARKS order (absent ones left out)."""

    key: str
    title: str
    skin: trimesh.Trimesh
    bones: list[trimesh.Trimesh]
    references: list[Reference] = field(default_factory=list)

    def reference(self, name: str) -> Reference | None:
        """The reference of a landmark, or None if this subject has none."""
        return next((r for r in self.references if r.name == name), None)


# ---------------------------------------------------------------- loading

def _stl_ras(archive: zipfile.ZipFile, name: str) -> trimesh.Trimesh:
    mesh = trimesh.load(io.BytesIO(archive.read(name)), file_type="stl", process=True)
    return mesh.apply_transform(LPS_TO_RAS)


def _glb_ras(path: Path) -> dict[str, trimesh.Trimesh]:
    """Every mesh node of a .glb file, by node name, in RAS mm (node transforms applied)."""
    scene = trimesh.load(path, force="scene")
    meshes = {}
    for node in scene.graph.nodes_geometry:
        transform, geometry = scene.graph[node]
        meshes[node] = scene.geometry[geometry].copy().apply_transform(GLTF_TO_RAS @ transform)
    return meshes


def read_xcat_labels(data_dir: Path) -> NDArray[np.uint16]:
    """The mesh50_XCAT 1 mm label map [k, j, i] (k to the head, j to posterior, i to the left), read from the zip."""
    with zipfile.ZipFile(data_dir / XCAT_DIR / XCAT_LABEL_ZIP) as archive:
        raw = archive.read(XCAT_LABEL_FILE)
    return np.frombuffer(raw, dtype="<u2").reshape(XCAT_SHAPE_KJI)


# ---------------------------------------------------------------- geometry helpers

def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return v / np.linalg.norm(v)


def sphere_fit(points: NDArray[np.float64]) -> tuple[NDArray[np.float64], float, float]:
    """Least-squares sphere through points (N, 3): centre, radius, RMS of the radial residuals (mm)."""
    a = np.hstack([2.0 * points, np.ones((len(points), 1))])
    b = (points ** 2).sum(axis=1)
    solution = np.linalg.lstsq(a, b, rcond=None)[0]
    centre = solution[:3]
    radius = float(np.sqrt(solution[3] + centre @ centre))
    residual = np.linalg.norm(points - centre, axis=1) - radius
    return centre, radius, float(np.sqrt(np.mean(residual ** 2)))


def ray_exit(mesh: trimesh.Trimesh, origin: NDArray[np.float64], direction: NDArray[np.float64]) -> NDArray[np.float64]:
    """First point where a ray from ``origin`` along ``direction`` meets the mesh (Moller-Trumbore, all triangles)."""
    tri = mesh.triangles
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    d = _unit(direction)
    p = np.cross(d, e2)
    det = (e1 * p).sum(axis=1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - tri[:, 0]
    u = (s * p).sum(axis=1) * inv
    q = np.cross(s, e1)
    v = (q @ d) * inv
    t = (q * e2).sum(axis=1) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
    if not hit.any():
        raise ValueError(f"the ray from {origin} along {d} does not meet the skin")
    return origin + t[hit].min() * d


def _principal_axis(points: NDArray[np.float64], towards: NDArray[np.float64]) -> NDArray[np.float64]:
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return axis if axis @ towards > 0 else -axis


def _spread(main: NDArray[np.float64], variants: list[NDArray[np.float64]]) -> float:
    return float(max(np.linalg.norm(v - main) for v in variants))


def _combine(*terms: float) -> float:
    return float(np.sqrt(sum(t * t for t in terms)))


# ---------------------------------------------------------------- rules

def head_top(skin: trimesh.Trimesh) -> Reference:
    """Vertex: top of the skin; R and A from the skin cap within 2 mm of it (1 and 4 mm as variants)."""
    v = skin.vertices
    top = v[:, 2].max()

    def cap(depth: float) -> NDArray[np.float64]:
        near = v[v[:, 2] > top - depth]
        return np.array([near[:, 0].mean(), near[:, 1].mean(), top])

    main = cap(2.0)
    spread = _spread(main, [cap(1.0), cap(4.0)])
    return Reference("HeadTop", main, _combine(spread, SURFACE_MM),
                     f"most superior skin point, R and A from the 2 mm cap; variant spread {spread:.1f} mm")


def _hough_sphere(v: NDArray[np.float64], n: NDArray[np.float64], radii: NDArray[np.float64],
                  tolerance: float) -> tuple[NDArray[np.float64], float]:
    """Sphere most vertices agree on: each vertex votes for centre = vertex - r * normal, for each radius r."""
    best = (-1, v[0], float(radii[0]))
    for r in radii:
        centres = v - r * n
        distance = np.linalg.norm(centres[:, None] - centres[None], axis=2)
        votes = (distance < tolerance).sum(axis=1)
        i = int(np.argmax(votes))
        if votes[i] > best[0]:
            best = (int(votes[i]), centres[distance[i] < tolerance].mean(axis=0), float(r))
    return best[1], best[2]


def _head_fit(arm: trimesh.Trimesh, depth: float, tolerance: float) -> tuple[NDArray[np.float64], float, float, int]:
    v, n = arm.vertices, arm.vertex_normals
    region = v[:, 2] > v[:, 2].max() - depth
    v, n = v[region], n[region]
    centre, radius = _hough_sphere(v, n, np.arange(15.0, 35.01, 0.5), 2.0)
    for _ in range(5):
        offset = v - centre
        distance = np.linalg.norm(offset, axis=1)
        facing = (offset * n).sum(axis=1) / distance > np.cos(np.radians(30.0))
        inliers = facing & (np.abs(distance - radius) < tolerance)
        centre, radius, rms = sphere_fit(v[inliers])
    return centre, radius, rms, int(inliers.sum())


def humeral_head(arm: trimesh.Trimesh, name: str) -> Reference:
    """Centre of the humeral head: sphere through the outward-facing vertices of the arm's proximal end
    (Hough vote on vertex normals, then least squares on the inliers). Variants: cut depth 70/90/110 mm,
    inlier band 1.5/2/3 mm."""
    centre, radius, rms, count = _head_fit(arm, 90.0, 2.0)
    variants = [_head_fit(arm, depth, tol)[0] for depth in (70.0, 90.0, 110.0) for tol in (1.5, 2.0, 3.0)]
    spread = _spread(centre, variants)
    return Reference(name, centre, _combine(spread, rms, SURFACE_MM),
                     f"humeral head sphere fit r={radius:.1f} mm rms {rms:.1f} mm ({count} vertices); "
                     f"variant spread {spread:.1f} mm")


def digit_rays(parts: list[trimesh.Trimesh], distal: NDArray[np.float64]) -> list[list[int]]:
    """Group phalanx meshes into digits: each links to the nearest part proximal to it (along ``distal``) within
    50 mm and 16 mm sideways. Returns the digits, each listed distal to proximal."""
    centres = np.array([p.vertices.mean(axis=0) for p in parts])
    along = centres @ distal
    parent = {}
    for i, c in enumerate(centres):
        offset = centres - c
        ahead = offset @ distal
        side = np.linalg.norm(offset - ahead[:, None] * distal, axis=1)
        ok = (ahead < -3.0) & (ahead > -50.0) & (side < 16.0)
        if ok.any():
            parent[i] = int(np.flatnonzero(ok)[np.argmin(np.linalg.norm(offset[ok], axis=1))])
    children = set(parent.values())
    rays = []
    for tip in sorted(set(range(len(parts))) - children, key=lambda i: -along[i]):
        ray = [tip]
        while ray[-1] in parent:
            ray.append(parent[ray[-1]])
        rays.append(ray)
    return rays


def _skin_tip(skin: trimesh.Trimesh, bone: trimesh.Trimesh, direction: NDArray[np.float64]) -> NDArray[np.float64]:
    """Skin point beyond a distal phalanx: from its tip (the vertex furthest along direction), along direction."""
    tip = bone.vertices[np.argmax(bone.vertices @ direction)]
    return ray_exit(skin, tip, direction)


def bone_digit_tip(skin: trimesh.Trimesh, parts: list[trimesh.Trimesh], ray: list[int], limb: NDArray[np.float64],
                   name: str, what: str) -> Reference:
    """Skin tip of a digit from its distal phalanx. Main axis: proximal phalanx centre to distal phalanx centre
    (the distal phalanx's principal axis when the two are one mesh); variants: that principal axis, the limb axis."""
    distal_bone = parts[ray[0]]
    axis_pca = _principal_axis(distal_bone.vertices, limb)
    if len(ray) > 1:
        main_axis = _unit(distal_bone.vertices.mean(axis=0) - parts[ray[1]].vertices.mean(axis=0))
        basis = "phalanx centres"
    else:
        main_axis, basis = axis_pca, "principal axis of the distal phalanx"
    main = _skin_tip(skin, distal_bone, main_axis)
    variants = [_skin_tip(skin, distal_bone, axis) for axis in (axis_pca, limb)]
    spread = _spread(main, variants)
    soft = float(np.linalg.norm(main - distal_bone.vertices[np.argmax(distal_bone.vertices @ main_axis)]))
    return Reference(name, main, _combine(spread, SURFACE_MM),
                     f"skin beyond the {what} distal phalanx along its axis ({basis}), {soft:.1f} mm of soft tissue; "
                     f"variant spread {spread:.1f} mm")


def knee_centre(femur_v: NDArray[np.float64], tibia_v: NDArray[np.float64], tibia_n: NDArray[np.float64],
                name: str, source: str) -> Reference:
    """Midpoint of (the midpoint of the distal-most points of the two femoral condyles) and (the tibial plateau
    centre: mean of the tibia's upward-facing vertices from 15 mm below to 10 mm above the condyles' lowest point).
    Variants: plateau band 10/20 mm, upward threshold cos 45/cos 30 degrees, condyle points as mean of the 3 lowest."""

    def centre(band: float, upward: float, lowest: int) -> NDArray[np.float64]:
        distal = femur_v[femur_v[:, 2] < femur_v[:, 2].min() + 40.0]
        split = 0.5 * (distal[:, 0].min() + distal[:, 0].max())
        condyles = []
        for half in (distal[distal[:, 0] < split], distal[distal[:, 0] >= split]):
            order = np.argsort(half[:, 2])[:lowest]
            condyles.append(half[order].mean(axis=0))
        joint = min(c[2] for c in condyles)
        plateau = tibia_v[(tibia_n[:, 2] > upward) & (tibia_v[:, 2] > joint - band) & (tibia_v[:, 2] < joint + 10.0)]
        return 0.5 * (0.5 * (condyles[0] + condyles[1]) + plateau.mean(axis=0))

    main = centre(15.0, np.cos(np.radians(45.0)), 1)
    variants = [centre(10.0, np.cos(np.radians(45.0)), 1), centre(20.0, np.cos(np.radians(45.0)), 1),
                centre(15.0, np.cos(np.radians(30.0)), 1), centre(15.0, np.cos(np.radians(45.0)), 3)]
    spread = _spread(main, variants)
    return Reference(name, main, _combine(spread, SURFACE_MM),
                     f"midway between femoral condyles and tibial plateau centre ({source}); "
                     f"variant spread {spread:.1f} mm")


# ---------------------------------------------------------------- subjects

def xcat_subject(data_dir: Path, labels: NDArray[np.uint16] | None = None) -> Subject:
    """mesh50_XCAT: all nine landmarks from its Body and Skeleton meshes (knee joint line from the label map, which
    is read from data_dir when not given)."""
    with zipfile.ZipFile(data_dir / XCAT_DIR / "mesh50XCAT_WholeBody.zip") as archive:
        skin = _stl_ras(archive, "WholeBody_Body.stl")
        skeleton = _stl_ras(archive, "WholeBody_Skeleton.stl")
    if labels is None:
        labels = read_xcat_labels(data_dir)
    parts = skeleton.split(only_watertight=False)
    size = np.array([np.linalg.norm(p.extents) for p in parts])
    centres = np.array([p.vertices.mean(axis=0) for p in parts])
    refs = {"HeadTop": head_top(skin)}
    midline = refs["HeadTop"].point_ras[0]
    sole = skin.vertices[:, 2].min()
    for side, sign in (("R", 1.0), ("L", -1.0)):
        arm = next(p for p, c in zip(parts, centres, strict=True)
                   if c[0] * sign > 150.0 and p.extents[2] > 500.0 and p.vertices[:, 2].max() > 400.0)
        shoulder = refs[f"Shoulder{side}"] = humeral_head(arm, f"Shoulder{side}")
        arm_end = arm.vertices[np.argmin(arm.vertices[:, 2])]
        small = [i for i in range(len(parts)) if size[i] < 70.0 and centres[i][0] * sign > 0]
        hand = [parts[i] for i in small if np.linalg.norm(centres[i] - arm_end) < 250.0 and centres[i][2] > sole + 200]
        limb = _unit(np.mean([p.vertices.mean(axis=0) for p in hand], axis=0) - shoulder.point_ras)
        # The four digits reaching furthest along the arm are the fingers (the thumb and carpal pieces end
        # proximal to them); palms face the thighs (SOURCE.md), so the thumb side is anterior.
        fingers = sorted(digit_rays(hand, limb), key=lambda r: -(hand[r[0]].vertices @ limb).max())[:4]
        fingers.sort(key=lambda r: -hand[r[0]].vertices.mean(axis=0)[1])
        refs[f"MiddleFingerTip{side}"] = bone_digit_tip(skin, hand, fingers[1], limb, f"MiddleFingerTip{side}",
                                                        "middle finger's")
        foot = skeleton.vertices[(skeleton.vertices[:, 2] < sole + 70.0) & (skeleton.vertices[:, 0] * sign > 0)]
        toes = [parts[i] for i in small if centres[i][2] < sole + 60.0]
        foot_axis = _unit(np.mean([p.vertices.mean(axis=0) for p in toes], axis=0) - foot.mean(axis=0))
        big = min(digit_rays(toes, foot_axis), key=lambda r: abs(toes[r[0]].vertices.mean(axis=0)[0] - midline))
        refs[f"BigToe{side}"] = bone_digit_tip(skin, toes, big, foot_axis, f"BigToe{side}", "great toe's")
        refs[f"Knee{side}"] = _xcat_knee(labels, parts, size, centres, sign, f"Knee{side}")
    title = "mesh50_XCAT phantom (Visible Human Male, 50th-percentile man)"
    return Subject("xcat_m50", title, skin, parts, [refs[name] for name in LANDMARKS])


def xcat_joint_line(labels: NDArray[np.uint16], sign: float, around_s: float) -> float:
    """S (mm) of the axial slice with the least bone on one side within 70 mm below ``around_s`` (the patella):
    where the femoral condyles meet the tibial plateau."""
    k0 = int(round(around_s - 70.0 + 881.5))
    k1 = int(round(around_s + 881.5))
    half = slice(0, 329) if sign > 0 else slice(329, XCAT_SHAPE_KJI[2])  # i < 328.5 is the right side (R > 0)
    area = (labels[k0:k1, :, half] == XCAT_BONE_LABEL).sum(axis=(1, 2))
    return float(k0 + int(np.argmin(area)) - 881.5)


def _xcat_knee(labels: NDArray[np.uint16], parts: list[trimesh.Trimesh], size: NDArray, centres: NDArray,
               sign: float, name: str) -> Reference:
    """Knee centre of one side: the patella locates the knee; femur and tibia are split at the joint line."""
    patella = next(i for i in range(len(parts)) if 30.0 < size[i] < 80.0 and centres[i][0] * sign > 50.0
                   and -500.0 < centres[i][2] < -250.0)
    joint = xcat_joint_line(labels, sign, float(centres[patella][2]))
    legs = [p for i, p in enumerate(parts) if i != patella and size[i] >= 80.0]
    v = np.vstack([p.vertices for p in legs])
    n = np.vstack([p.vertex_normals for p in legs])
    near = (np.abs(v[:, 2] - joint) < 60.0) & (np.abs(v[:, 0] - centres[patella][0]) < 70.0)
    femur = near & (v[:, 2] >= joint)
    tibia = near & (v[:, 2] < joint)
    return knee_centre(v[femur], v[tibia], n[tibia], name, f"joint line S={joint:.1f} mm from the label map")


def hra_subject(data_dir: Path, sex: str) -> Subject:
    """HRA Visible Human male ("M") or female ("F"): seven landmarks, no shoulders (no humerus in the models)."""
    folder = data_dir / HRA_DIR
    skin = next(iter(_glb_ras(folder / f"VH_{sex}_Skin.glb").values()))
    knees = {side: _glb_ras(folder / f"VH_{sex}_Knee_{side}.glb") for side in ("R", "L")}
    # The femur mesh has holes where its named surface patches (condyles, fossa, epicondyles...) are cut out: the
    # femur is the mesh with its patches; cartilage and menisci are not bone.
    femurs = {side: [m for key, m in meshes.items()
                     if not any(part in key for part in ("tibia", "fibula", "patella_", "meniscus", "cartilage"))]
              for side, meshes in knees.items()}
    bones = [m for side in ("R", "L") for m in femurs[side] + [knees[side][f"VH_{sex}_{bone}_{side}"]
                                                               for bone in ("tibia", "fibula", "patella")]]
    title = f"HRA v1.1 Visible Human {'Male' if sex == 'M' else 'Female'}"
    subject = Subject(f"hra_vh{sex.lower()}", title, skin, bones)
    refs = {"HeadTop": head_top(skin)}
    for side, sign in (("R", 1.0), ("L", -1.0)):
        refs[f"MiddleFingerTip{side}"] = skin_finger_tip(skin, sign, f"MiddleFingerTip{side}")
        refs[f"BigToe{side}"] = skin_big_toe(skin, sign, f"BigToe{side}")
        femur = np.vstack([m.vertices for m in femurs[side]])
        tibia = knees[side][f"VH_{sex}_tibia_{side}"]
        refs[f"Knee{side}"] = knee_centre(femur, tibia.vertices, tibia.vertex_normals, f"Knee{side}",
                                          "HRA femur with its condyle patches, and tibia")
    subject.references = [refs[name] for name in LANDMARKS if name in refs]
    return subject


def _digits(skin: trimesh.Trimesh, axis: NDArray[np.float64], keep: NDArray[np.bool_],
            length: float) -> list[NDArray[np.int64]]:
    """Vertex indices of each digit: connected parts of the skin beyond ``length`` mm from the extreme point along
    axis (among the kept vertices)."""
    t = skin.vertices @ axis
    beyond = keep & (t > t[keep].max() - length)
    faces = np.flatnonzero(beyond[skin.faces].all(axis=1))
    pieces = trimesh.graph.connected_components(skin.face_adjacency[np.isin(skin.face_adjacency, faces).all(axis=1)],
                                                nodes=faces, min_len=20)
    return [np.unique(skin.faces[piece]) for piece in pieces]


def _skin_digit_tip(skin: trimesh.Trimesh, vertices: NDArray[np.int64], axis: NDArray[np.float64],
                    length: float) -> NDArray[np.float64]:
    """Skin point on the digit's axis: principal axis of its distal ``length`` mm, from their centre to the skin."""
    v = skin.vertices[vertices]
    t = v @ axis
    distal = v[t > t.max() - length]
    return ray_exit(skin, distal.mean(axis=0), _principal_axis(distal, axis))


def _skin_digit(skin: trimesh.Trimesh, digit: NDArray[np.int64], axis: NDArray[np.float64], name: str,
                what: str) -> Reference:
    main = _skin_digit_tip(skin, digit, axis, 30.0)
    spread = _spread(main, [_skin_digit_tip(skin, digit, axis, length) for length in (20.0, 40.0)])
    return Reference(name, main, _combine(spread, SURFACE_MM),
                     f"{what} on the skin, axis = principal axis of its distal 30 mm; variant spread (20/40 mm) "
                     f"{spread:.1f} mm")


def skin_finger_tip(skin: trimesh.Trimesh, sign: float, name: str) -> Reference:
    """Middle fingertip from the skin alone. The hand is the skin within 180 mm of the extreme point along the
    A-pose arm (30 degrees out from the body, down) among the skin lateral of 60% of the body's half width; the hand
    axis is its principal axis. The fingers are the four separate skin parts beyond the longest cut (60, 50, 40 or
    30 mm from the hand's end) that gives four; the thumb tip is the hand's point farthest from the fingers' axis
    line proximal to the cut; the middle finger is the second finger from the thumb's side."""
    v = skin.vertices
    arm = _unit(np.array([0.5 * sign, 0.0, -1.0]))
    lateral = v[:, 0] * sign > 0.6 * (v[:, 0] * sign).max()
    extreme = v[lateral][np.argmax(v[lateral] @ arm)]
    hand = np.linalg.norm(v - extreme, axis=1) < 180.0
    axis = _principal_axis(v[hand], arm)
    for cut in (60.0, 50.0, 40.0, 30.0):
        digits = _digits(skin, axis, hand, cut)
        if len(digits) == 4:
            break
    else:
        raise ValueError(f"{name}: no cut of the hand gives four separate fingers")
    centres = np.array([v[d].mean(axis=0) for d in digits])
    t = v @ axis
    proximal = np.flatnonzero(hand & (t < t[hand].max() - cut))
    offset = v[proximal] - centres.mean(axis=0)
    sideways = offset - (offset @ axis)[:, None] * axis
    thumb = v[proximal[np.argmax(np.linalg.norm(sideways, axis=1))]]
    across = _principal_axis(centres - (centres @ axis)[:, None] * axis, thumb - centres.mean(axis=0))
    order = sorted(range(4), key=lambda i: -(centres[i] @ across))  # from the thumb's side
    return _skin_digit(skin, digits[order[1]], axis, name,
                       f"middle finger (2nd of 4 fingers from the thumb, cut {cut:.0f} mm)")


def _rotate_about_s(v: NDArray[np.float64], degrees: float) -> NDArray[np.float64]:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])


def skin_big_toe(skin: trimesh.Trimesh, sign: float, name: str) -> Reference:
    """Big toe tip from the skin alone (the HRA toes are one skin surface): the foot is the skin within 80 mm of the
    sole on one side, its axis the horizontal part of its principal axis (anterior). The big toe is the medial third
    (in R) of the foot's front 40 mm; the tip is where the ray from the centre of the big toe's front 20 mm along the
    foot axis leaves the skin. Variants: medial quarter, axis turned 10 degrees in or out."""
    v = skin.vertices
    foot = (v[:, 2] < v[:, 2].min() + 80.0) & (v[:, 0] * sign > 0)
    axis = _principal_axis(v[foot], np.array([0.0, 1.0, 0.0]))
    axis = _unit(axis - (axis @ SUPERIOR) * SUPERIOR)
    t = v @ axis
    front = foot & (t > t[foot].max() - 40.0)
    side = np.abs(v[:, 0])

    def tip(share: float, direction: NDArray[np.float64]) -> NDArray[np.float64]:
        low, high = side[front].min(), side[front].max()
        toe = front & (side < low + share * (high - low))
        start = v[toe & (t > t[toe].max() - 20.0)].mean(axis=0)
        return ray_exit(skin, start, direction)

    main = tip(1 / 3, axis)
    spread = _spread(main, [tip(0.25, axis), tip(1 / 3, _rotate_about_s(axis, 10.0)),
                            tip(1 / 3, _rotate_about_s(axis, -10.0))])
    return Reference(name, main, _combine(spread, SURFACE_MM),
                     f"great toe: front of the medial third of the forefoot along the foot axis; variant spread "
                     f"{spread:.1f} mm")


# ---------------------------------------------------------------- pictures

def _section(ax, mesh: trimesh.Trimesh, point: NDArray[np.float64], normal: int, axes: tuple[int, int],
             colour: str, width: float) -> None:
    from matplotlib.collections import LineCollection

    plane_normal = np.eye(3)[normal]
    segments = trimesh.intersections.mesh_plane(mesh, plane_normal, point)
    if len(segments):
        ax.add_collection(LineCollection(segments[:, :, list(axes)], colors=colour, linewidths=width))


def _views(name: str) -> tuple[tuple[str, int, tuple[int, int]], ...]:
    """(view, axis normal to it, the two axes drawn) of a landmark's insets: cross-sections through joints and the
    head top; projections of a 60 mm neighbourhood for fingertips and toes (a section misses a digit's tip)."""
    if name.startswith("BigToe"):
        return (("axial projection", 2, (0, 1)), ("sagittal projection", 0, (1, 2)))
    if name.startswith("MiddleFinger") or name.endswith("Tip"):  # a body's middle fingertips, a hand's fingertips
        return (("coronal projection", 1, (0, 2)), ("sagittal projection", 0, (1, 2)))
    return (("coronal section", 1, (0, 2)), ("sagittal section", 0, (1, 2)))


def draw_subject(subject: Subject, path: Path) -> None:
    """Coronal and sagittal views of skin (grey) and bones (brown) with the reference points, and two close views
    (60 mm around) of each point; the circle's radius is the point's uncertainty. R and A grow to the image's left
    (radiological views), S upwards."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = subject.references
    columns = 4
    rows = int(np.ceil(len(refs) * 2 / columns))
    fig = plt.figure(figsize=(4 * columns + 8, max(4 * rows, 12)))
    grid = fig.add_gridspec(rows, columns + 2)
    bones = np.vstack([b.vertices for b in subject.bones])
    skin = subject.skin.vertices
    for panel, (axes, label) in enumerate((((0, 2), "coronal (patient's right on the left)"),
                                           ((1, 2), "sagittal (anterior on the left)"))):
        ax = fig.add_subplot(grid[:, panel])
        ax.scatter(-skin[:, axes[0]], skin[:, axes[1]], s=0.3, c="0.7")
        ax.scatter(-bones[::2, axes[0]], bones[::2, axes[1]], s=0.2, c="sienna", alpha=0.5)
        for r in refs:
            ax.plot(-r.point_ras[axes[0]], r.point_ras[axes[1]], "r+", ms=10, mew=2)
            ax.annotate(r.name, (-r.point_ras[axes[0]], r.point_ras[axes[1]]), fontsize=7, color="red",
                        xytext=(4, 4), textcoords="offset points")
        ax.set_aspect("equal")
        ax.set_title(f"{subject.key}\n{label}", fontsize=9)
        ax.set_xticks([])
    for n, r in enumerate(refs):
        for m, (view, normal, axes) in enumerate(_views(r.name)):
            ax = fig.add_subplot(grid[(2 * n + m) // columns, 2 + (2 * n + m) % columns])
            if view.endswith("section"):
                _section(ax, subject.skin, r.point_ras, normal, axes, "0.4", 1.0)
                for bone in subject.bones:
                    _section(ax, bone, r.point_ras, normal, axes, "sienna", 1.0)
            else:
                _section(ax, subject.skin, r.point_ras, normal, axes, "0.3", 0.8)
                for vertices, colour in ((skin, "0.6"), (bones, "sienna")):
                    near = vertices[np.all(np.abs(vertices - r.point_ras) < 60.0, axis=1)]
                    ax.scatter(near[:, axes[0]], near[:, axes[1]], s=1.0, c=colour)
            ax.plot(r.point_ras[axes[0]], r.point_ras[axes[1]], "r+", ms=12, mew=2)
            ax.add_patch(plt.Circle((r.point_ras[axes[0]], r.point_ras[axes[1]]), r.uncertainty_mm, fill=False,
                                    color="red", lw=0.8))
            ax.set_xlim(r.point_ras[axes[0]] + 60, r.point_ras[axes[0]] - 60)
            ax.set_ylim(r.point_ras[axes[1]] - 60, r.point_ras[axes[1]] + 60)
            ax.set_aspect("equal")
            ax.set_title(f"{r.name}: {view}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
