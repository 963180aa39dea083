"""3D volumes of synthetic anatomy: CT-like whole bodies in Hounsfield units and MR-like hands.

Voxelization evaluates each primitive's signed distance on the voxel grid inside the primitive's bounding box,
in float32 slabs of bounded size. A tissue covers the voxels deeper than its inset inside any of its primitives;
a voxel takes the last tissue (in painting order) that covers it, which makes the result independent of the order
of the primitives.

Scan conditions follow ANTHROPOMETRY.md: patient position (head/feet first, supine/prone) and file convention
decide the direction matrix; transverse fields of view of about 500 mm may cut the arms; longitudinal fields of
view may cut the head, the legs or both; a CT table (curved carbon plates, optional foam mattress) lies
below the patient (anterior when prone). Landmarks outside the volume are reported as not in view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .anatomy import Anatomy, Tissue
from .shapes import local_signed_distance, rotate, unit

SLAB_VOXELS = 1 << 20
"""Largest block of voxels evaluated at once (bounds the float32 temporaries to a few MB each)."""

CT_TISSUE_HU = {"fat": (-110.0, -80.0), "muscle": (30.0, 60.0), "lung": (-870.0, -760.0), "gas": (-1000.0, -960.0),
                "cortical": (900.0, 1400.0), "cancellous": (180.0, 320.0), "brain": (25.0, 40.0),
                "table": (150.0, 350.0), "mattress": (-900.0, -750.0)}
"""Per-case mean intensity ranges of each CT tissue (ANTHROPOMETRY.md)."""

MR_TISSUE_SIGNAL = {"fat": (0.85, 1.0), "muscle": (0.35, 0.5), "cortical": (0.02, 0.08), "marrow": (0.75, 0.95)}
"""Per-case T1-weighted signal of each hand tissue, as a fraction of the fat signal."""

PATIENT_POSITIONS = {
    # Scanner axes (x, y, z of DICOM's patient-based frame for this position) as RAS unit vectors, columns.
    "HFS": np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]).T,
    "FFS": np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]).T,
    "HFP": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).T,
    "FFP": np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]).T,
}

FILE_CONVENTIONS = {"dicom": (1, 1, 1), "nifti-ras": (-1, -1, 1), "reversed-slices": (1, 1, -1),
                    "flipped": (-1, -1, -1)}
"""Sign of each voxel axis relative to the scanner axes: DICOM-like LPS storage, RAS-flipped NIfTI storage..."""


@dataclass(frozen=True)
class SyntheticScan:
    """A generated volume with its ground truth.

    Attributes:
        voxels_kji: int16 voxels [k, j, i] (HU for CT, arbitrary units for MR).
        ijk_to_ras: 4x4 voxel-centre -> RAS mm.
        landmark_names: landmark names (DESIGN §2).
        landmarks_ras: (L, 3) exact landmark positions, RAS mm (also for landmarks out of view).
        in_view: (L,) True where the landmark lies inside the volume.
        info: how the case was made (position, convention, spacing, field of view...), JSON-serializable.
    """

    voxels_kji: NDArray[np.int16]
    ijk_to_ras: NDArray[np.float64]
    landmark_names: tuple[str, ...]
    landmarks_ras: NDArray[np.float64]
    in_view: NDArray[np.bool_]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CTScanConfig:
    """Ranges of the random CT scan conditions.

    Attributes:
        in_plane_mm: in-plane pixel size range (real scans: 0.8-1.4 mm; coarser is much faster).
        slice_mm: slice spacing range (real scans: 1-5 mm).
        fov_mm: transverse field of view range (square, centred on the patient).
        p_cut: probability that the longitudinal field of view cuts the body (head, legs, or both missing).
        p_prone, p_feet_first: probabilities of prone and feet-first positioning.
        p_oblique: probability of a tilted (oblique) direction matrix.
    """

    in_plane_mm: tuple[float, float] = (2.5, 4.0)
    slice_mm: tuple[float, float] = (2.5, 5.0)
    fov_mm: tuple[float, float] = (460.0, 520.0)
    p_cut: float = 0.4
    p_prone: float = 0.1
    p_feet_first: float = 0.2
    p_oblique: float = 0.1


@dataclass(frozen=True)
class MRScanConfig:
    """Ranges of the random hand MR scan conditions (see CTScanConfig)."""

    in_plane_mm: tuple[float, float] = (0.7, 1.2)
    slice_mm: tuple[float, float] = (1.0, 2.0)
    margin_mm: tuple[float, float] = (8.0, 30.0)
    p_oblique: float = 0.3


def voxelize(tissues: list[Tissue] | tuple[Tissue, ...], shape_kji: tuple[int, int, int],
             ijk_to_ras: NDArray[np.float64], labels: NDArray[np.uint8] | None = None,
             first_label: int = 1) -> NDArray[np.uint8]:
    """Label volume of tissues: voxel = first_label + index of the last tissue covering it (0 elsewhere).

    Args:
        tissues: regions in painting order (later ones win).
        shape_kji: volume shape.
        ijk_to_ras: 4x4 voxel-centre -> RAS mm (any orientation, oblique included).
        labels: existing labels to paint over (kept where no tissue covers a voxel; must be < first_label).
        first_label: label of tissues[0].
    Returns:
        uint8 labels [k, j, i].
    """
    out = np.zeros(shape_kji, dtype=np.uint8) if labels is None else labels
    ras_to_ijk = np.linalg.inv(ijk_to_ras)
    shapes_seen: dict[int, list[tuple[int, Tissue]]] = {}
    for t, tissue in enumerate(tissues):  # tissues sharing primitives are evaluated together
        shapes_seen.setdefault(id(tissue.shapes), []).append((first_label + t, tissue))
    for group in shapes_seen.values():
        shapes = group[0][1].shapes
        local_from_ras = shapes.local_from_ras
        lows, highs = shapes.boxes_ras()
        for n in range(len(shapes)):
            insets = [(label, float(tissue.inset_mm[n])) for label, tissue in group]
            box = _index_box(lows[n], highs[n], ras_to_ijk, shape_kji)
            if box is None:
                continue
            grid_to_local = local_from_ras[n, :, :3] @ ijk_to_ras[:3]  # 3x4: (i, j, k, 1) -> local
            linear = local_from_ras[n, :, :3]
            # Local distance is world distance for rigid maps; otherwise rescale it where insets need mm.
            rigid = np.allclose(linear @ linear.T, np.eye(3), atol=1e-9)
            linear = None if rigid or all(inset == 0 for _, inset in insets) else linear
            for slab in _slabs(box):
                _paint(out, slab, grid_to_local, local_from_ras[n, :, 3], shapes, n, linear, insets)
    return out


def _index_box(low: NDArray[np.float64], high: NDArray[np.float64], ras_to_ijk: NDArray[np.float64],
               shape_kji: tuple[int, int, int]) -> tuple[slice, slice, slice] | None:
    """Voxel index ranges (k, j, i slices) covering a RAS box, clipped to the volume; None if outside."""
    corners = np.array([[x, y, z, 1.0] for x in (low[0], high[0]) for y in (low[1], high[1])
                        for z in (low[2], high[2])])
    ijk = corners @ ras_to_ijk.T
    lo = np.maximum(np.ceil(ijk[:, :3].min(axis=0) - 1e-6).astype(int), 0)
    hi = np.minimum(np.floor(ijk[:, :3].max(axis=0) + 1e-6).astype(int) + 1, np.array(shape_kji[::-1]))
    if np.any(hi <= lo):
        return None
    return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])


def _slabs(box: tuple[slice, slice, slice]) -> list[tuple[slice, slice, slice]]:
    """Split a box along k into slabs of at most SLAB_VOXELS voxels."""
    ks, js, is_ = box
    per_k = (js.stop - js.start) * (is_.stop - is_.start)
    step = max(1, SLAB_VOXELS // max(per_k, 1))
    return [(slice(k, min(k + step, ks.stop)), js, is_) for k in range(ks.start, ks.stop, step)]


def _paint(out: NDArray[np.uint8], slab: tuple[slice, slice, slice], grid_to_local: NDArray[np.float64],
           offset: NDArray[np.float64], shapes: Any, n: int, linear: NDArray[np.float64] | None,
           insets: list[tuple[int, float]]) -> None:
    """Raise the labels of one slab where it lies inside primitive n (minus each tissue's inset)."""
    ks, js, is_ = slab
    k = np.arange(ks.start, ks.stop, dtype=np.float32)[:, None, None]
    j = np.arange(js.start, js.stop, dtype=np.float32)[None, :, None]
    i = np.arange(is_.start, is_.stop, dtype=np.float32)[None, None, :]
    g = grid_to_local.astype(np.float32)
    o = (grid_to_local[:, 3] + offset).astype(np.float32)
    x, y, z = ((g[c, 0] * i + g[c, 1] * j) + (g[c, 2] * k + o[c]) for c in range(3))
    d = local_signed_distance(x, y, z, float(shapes.length[n]), float(shapes.radius_a[n]), float(shapes.radius_b[n]),
                              linear)
    block = out[slab]
    for label, inset in insets:
        np.maximum(block, np.where(d < -inset, np.uint8(label), np.uint8(0)), out=block)


def grid_covering(direction: NDArray[np.float64], spacing_ijk: NDArray[np.float64], low_ras: NDArray[np.float64],
                  high_ras: NDArray[np.float64]) -> tuple[NDArray[np.float64], tuple[int, int, int]]:
    """The voxel grid with these axes (3x3 RAS unit columns) and spacing that covers a RAS box.

    Returns:
        ijk_to_ras and shape_kji.
    """
    corners = np.array([[x, y, z] for x in (low_ras[0], high_ras[0]) for y in (low_ras[1], high_ras[1])
                        for z in (low_ras[2], high_ras[2])])
    coords = corners @ direction  # coordinate of each corner along each voxel axis
    start = coords.min(axis=0)
    size = np.ceil((coords.max(axis=0) - start) / spacing_ijk - 1e-9).astype(int) + 1
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = direction * spacing_ijk
    ijk_to_ras[:3, 3] = direction @ start
    return ijk_to_ras, (int(size[2]), int(size[1]), int(size[0]))


def landmarks_in_view(points_ras: NDArray[np.float64], ijk_to_ras: NDArray[np.float64],
                      shape_kji: tuple[int, int, int]) -> NDArray[np.bool_]:
    """(L,) True for points inside the volume (within half a voxel of the outer voxel centres)."""
    ijk = points_ras @ np.linalg.inv(ijk_to_ras)[:3, :3].T + np.linalg.inv(ijk_to_ras)[:3, 3]
    return np.all((ijk >= -0.5) & (ijk <= np.array(shape_kji[::-1]) - 0.5), axis=1)


def _random_rotation(rng: np.random.Generator, max_deg: float) -> NDArray[np.float64]:
    """A rotation by 3..max_deg degrees about a random axis."""
    axis = unit(rng.normal(size=3))
    angle = float(rng.uniform(3.0, max_deg))
    return np.stack([rotate(e, axis, angle) for e in np.eye(3)], axis=1)


def ct_scan(anatomy: Anatomy, rng: np.random.Generator, config: CTScanConfig | None = None) -> SyntheticScan:
    """A CT-like volume (int16 HU) of a body built by ``body.build_body`` (supine, on a table at A = 0).

    Args:
        anatomy: a body with inner structures (``build_body(..., inner=True)``).
        rng: random generator for the scan conditions, intensities and noise.
        config: ranges of the scan conditions.
    Returns:
        SyntheticScan; ``info`` names the patient position, file convention, field of view and spacing.
    """
    low, high = anatomy.skin.bounds_ras()
    geometry = ct_geometry(rng, config or CTScanConfig(), low, high, anatomy.landmarks_ras)

    def paint(labels: NDArray[np.uint8], first_label: int) -> NDArray[np.uint8]:
        return voxelize(anatomy.tissues, geometry.shape_kji, geometry.ijk_to_ras, labels=labels,
                        first_label=first_label)

    return ct_volume(rng, geometry, low, high, paint, [t.name for t in anatomy.tissues], anatomy.landmark_names,
                     anatomy.landmark_array())


@dataclass(frozen=True)
class CTGeometry:
    """Where and how a CT case is scanned (drawn by ``ct_geometry``).

    Attributes:
        position: patient position, "HFS", "FFS", "HFP" or "FFP".
        convention: file convention (FILE_CONVENTIONS key).
        oblique: whether the direction matrix is tilted.
        spacing_mm: (3,) voxel spacing along i, j, k.
        fov_mm: transverse field of view.
        cut: longitudinal field of view cut: "none", "head", "legs" or "head+legs".
        ijk_to_ras: 4x4 voxel-centre -> RAS mm.
        shape_kji: volume shape.
    """

    position: str
    convention: str
    oblique: bool
    spacing_mm: NDArray[np.float64]
    fov_mm: float
    cut: str
    ijk_to_ras: NDArray[np.float64]
    shape_kji: tuple[int, int, int]

    @property
    def prone(self) -> bool:
        return self.position.endswith("P")


def ct_geometry(rng: np.random.Generator, config: CTScanConfig, low_ras: NDArray[np.float64],
                high_ras: NDArray[np.float64], landmarks_ras: dict[str, NDArray[np.float64]],
                prone: bool | None = None) -> CTGeometry:
    """Random scan conditions and voxel grid for a body lying on a table at A = 0 (any body generator).

    Args:
        rng: random generator.
        config: ranges of the scan conditions.
        low_ras, high_ras: the body's bounding box, RAS mm.
        landmarks_ras: at least ShoulderR/L and KneeR/L (where field-of-view cuts fall).
        prone: the patient's position if the body decides it (None: drawn with config.p_prone).
    """
    position = ("FF" if rng.random() < config.p_feet_first else "HF") + ("P" if rng.random() < config.p_prone else "S")
    if prone is not None:
        position = position[:2] + ("P" if prone else "S")
    convention = str(rng.choice(list(FILE_CONVENTIONS)))
    direction = PATIENT_POSITIONS[position] * np.array(FILE_CONVENTIONS[convention], dtype=np.float64)
    oblique = bool(rng.random() < config.p_oblique)
    if oblique:
        direction = _random_rotation(rng, 10.0) @ direction
    in_plane = float(rng.uniform(*config.in_plane_mm))
    spacing = np.array([in_plane, in_plane, float(rng.uniform(*config.slice_mm))])
    low, high, lm = low_ras, high_ras, landmarks_ras
    fov = float(rng.uniform(*config.fov_mm))
    centre_x = float(rng.normal(0.0, 15.0))
    centre_y = 0.45 * high[1] + float(rng.normal(0.0, 20.0))
    z_low, z_high, cut = low[2] - 15.0, high[2] + 15.0, "none"
    if rng.random() < config.p_cut:
        cut = str(rng.choice(["head", "legs", "head+legs"]))
        shoulder_z = min(lm["ShoulderR"][2], lm["ShoulderL"][2])
        knee_z = min(lm["KneeR"][2], lm["KneeL"][2])
        if "head" in cut:
            z_high = shoulder_z + float(rng.uniform(-60.0, 180.0))
        if "legs" in cut:
            z_low = knee_z + float(rng.uniform(-150.0, 0.55 * (shoulder_z - knee_z)))
    # The grid covers the field of view in patient axes; an oblique grid grows to cover it rather than cutting it.
    box_low = np.array([centre_x - fov / 2, centre_y - fov / 2, z_low])
    box_high = np.array([centre_x + fov / 2, centre_y + fov / 2, z_high])
    ijk_to_ras, shape_kji = grid_covering(direction, spacing, box_low, box_high)
    return CTGeometry(position, convention, oblique, spacing, fov, cut, ijk_to_ras, shape_kji)


def ct_volume(rng: np.random.Generator, geometry: CTGeometry, low_ras: NDArray[np.float64],
              high_ras: NDArray[np.float64],
              paint: Callable[[NDArray[np.uint8], int], NDArray[np.uint8]], tissue_names: list[str],
              landmark_names: tuple[str, ...], landmarks_ras: NDArray[np.float64]) -> SyntheticScan:
    """The CT volume of a body on ``geometry``'s grid: table (and mattress), the body's tissues, HU and noise.

    Args:
        rng: random generator (table, intensities, noise).
        geometry: from ``ct_geometry``.
        low_ras, high_ras: the body's bounding box, RAS mm (the table lies against it).
        paint: paints the body's tissues into a label volume: ``paint(labels, first_label)`` gives tissue t the
            label first_label + t (later tissues over earlier ones) and returns the labels.
        tissue_names: CT_TISSUE_HU keys of the painted tissues, in label order.
        landmark_names, landmarks_ras: the ground truth, (L,) and (L, 3) RAS mm.
    """
    shape_kji, ijk_to_ras = geometry.shape_kji, geometry.ijk_to_ras
    low, high = low_ras, high_ras
    table_tissues, table_labels = _table(rng, geometry.prone, float(low[1]), float(high[1]))
    labels = _table_labels(table_tissues, shape_kji, ijk_to_ras, float(low[2]), float(high[2]))
    labels = paint(labels, len(table_labels) + 1)
    names = ["air"] + table_labels + list(tissue_names)
    lut = np.array([-1000.0] + [float(rng.uniform(*CT_TISSUE_HU[name])) for name in names[1:]], dtype=np.float32)
    noise_hu = float(rng.uniform(6.0, 25.0))
    voxels = np.rint(lut).astype(np.int16)[labels]
    voxels += _noise(rng, shape_kji, noise_hu)
    np.maximum(voxels, np.int16(-1024), out=voxels)  # the darkest CT value; the LUT keeps the top below 3071
    points = np.asarray(landmarks_ras, dtype=np.float64)
    info = {"anatomy": "body", "position": geometry.position, "convention": geometry.convention,
            "oblique": geometry.oblique, "spacing_mm": geometry.spacing_mm.tolist(), "fov_mm": geometry.fov_mm,
            "cut": geometry.cut, "noise_hu": noise_hu, "table": table_tissues["kind"], "shape_kji": list(shape_kji)}
    return SyntheticScan(voxels, ijk_to_ras, tuple(landmark_names), points,
                         landmarks_in_view(points, ijk_to_ras, shape_kji), info)


def _noise(rng: np.random.Generator, shape_kji: tuple[int, int, int], sigma: float) -> NDArray[np.int16]:
    """Gaussian noise (int16) of this shape: slices cut at random offsets from a pool of 2^22 samples, which is
    several times cheaper than drawing every voxel and looks the same."""
    pool = np.rint(rng.standard_normal(1 << 22, dtype=np.float32) * np.float32(sigma)).astype(np.int16)
    per_slice = shape_kji[1] * shape_kji[2]
    if per_slice >= pool.size:
        return np.rint(rng.standard_normal(shape_kji, dtype=np.float32) * np.float32(sigma)).astype(np.int16)
    offsets = rng.integers(0, pool.size - per_slice, size=shape_kji[0])
    return np.stack([pool[o:o + per_slice] for o in offsets]).reshape(shape_kji)


def _table(rng: np.random.Generator, prone: bool, body_back: float,
           body_front: float) -> tuple[dict[str, Any], list[str]]:
    """Random CT table: one or two curved carbon plates and maybe a foam mattress, behind the patient's back
    (in front when prone)."""
    mattress = float(rng.uniform(20.0, 60.0)) if rng.random() < 0.6 else 0.0
    plates = 2 if rng.random() < 0.6 else 1
    table = {
        "kind": f"{plates} plate{'s' if plates > 1 else ''}" + (", mattress" if mattress else ""),
        "prone": prone, "surface": body_front if prone else body_back, "mattress_mm": mattress,
        "gap_mm": mattress + float(rng.uniform(0.0, 5.0)), "thickness_mm": float(rng.uniform(2.0, 5.0)),
        "radius_mm": float(rng.uniform(700.0, 2000.0)), "half_width_mm": float(rng.uniform(200.0, 260.0)),
        "plate_distance_mm": float(rng.uniform(30.0, 70.0)), "plates": plates,
    }
    return table, (["mattress"] if mattress else []) + ["table"]


def _table_labels(table: dict[str, Any], shape_kji: tuple[int, int, int], ijk_to_ras: NDArray[np.float64],
                  z_low: float, z_high: float) -> NDArray[np.uint8]:
    """Labels of the table (mattress 1 if present, plates next), evaluated slab by slab within its extent."""
    labels = np.zeros(shape_kji, dtype=np.uint8)
    plate_label = 2 if table["mattress_mm"] else 1
    sign = 1.0 if table["prone"] else -1.0  # direction from the body surface into the table
    m = ijk_to_ras.astype(np.float64)
    r, half = table["radius_mm"], table["half_width_mm"]
    depth_max = table["gap_mm"] + table["plates"] * (table["plate_distance_mm"] + table["thickness_mm"])
    sag = r - np.sqrt(r * r - half * half)
    ys = [table["surface"] - sign * (sag - 1.0), table["surface"] + sign * (depth_max + 1.0)]
    box = _index_box(np.array([-half, min(ys), z_low - 1e4]), np.array([half, max(ys), z_high + 1e4]),
                     np.linalg.inv(m), shape_kji)
    if box is None:
        return labels
    if np.allclose(m[:2, 2], 0.0) and np.allclose(m[2, :2], 0.0):
        # Transverse slices: the table's cross-section is the same on every slice; compute one and repeat it.
        box = (slice(0, 1), box[1], box[2])
        one = np.zeros((1,) + shape_kji[1:], dtype=np.uint8)
        _table_slab(one, box, m, table, sign, plate_label)
        labels[:, box[1], box[2]] = one[0, box[1], box[2]]
        return labels
    for slab in _slabs(box):
        _table_slab(labels, slab, m, table, sign, plate_label)
    return labels


def _table_slab(labels: NDArray[np.uint8], slab: tuple[slice, slice, slice], m: NDArray[np.float64],
                table: dict[str, Any], sign: float, plate_label: int) -> None:
    """Table labels of one slab of voxels."""
    r, half = table["radius_mm"], table["half_width_mm"]
    ks, js, is_ = slab
    k = np.arange(ks.start, ks.stop, dtype=np.float32)[:, None, None]
    j = np.arange(js.start, js.stop, dtype=np.float32)[None, :, None]
    i = np.arange(is_.start, is_.stop, dtype=np.float32)[None, None, :]
    x = (m[0, 0] * i + m[0, 1] * j) + (m[0, 2] * k + m[0, 3])
    y = (m[1, 0] * i + m[1, 1] * j) + (m[1, 2] * k + m[1, 3])
    # Depth below the body surface, minus the sag of a cradle curved up at the sides.
    depth = sign * (y - table["surface"]) + (r - np.sqrt(np.maximum(r * r - x * x, 0.0)))
    inside = np.abs(x) < half
    block = labels[slab]
    if table["mattress_mm"]:
        block[inside & (depth > 0) & (depth <= table["mattress_mm"])] = 1
    for p in range(table["plates"]):
        top = table["gap_mm"] + p * table["plate_distance_mm"]
        block[inside & (depth > top) & (depth <= top + table["thickness_mm"])] = plate_label


def mr_hand_scan(anatomy: Anatomy, rng: np.random.Generator, config: MRScanConfig | None = None) -> SyntheticScan:
    """An MR-like (T1-weighted) volume of a hand from ``hand.build_hand``: bright fat and marrow, dark cortex,
    a slow multiplicative bias field and Rician background noise; int16 voxels.

    Args:
        anatomy: a hand.
        rng: random generator for orientation, spacing, intensities and noise.
        config: ranges of the scan conditions.
    """
    low, high = anatomy.skin.bounds_ras()
    geometry = mr_geometry(rng, config or MRScanConfig(), low, high)
    labels = voxelize(anatomy.tissues, geometry.shape_kji, geometry.ijk_to_ras)
    return mr_volume(rng, geometry, labels, [t.name for t in anatomy.tissues], anatomy.landmark_names,
                     anatomy.landmark_array())


@dataclass(frozen=True)
class MRGeometry:
    """Where and how a hand MR case is scanned (drawn by ``mr_geometry``).

    Attributes:
        axes: permutation of the RAS axes that the voxel axes follow (before signs and any tilt).
        oblique: whether the direction matrix is tilted.
        spacing_mm: (3,) voxel spacing along i, j, k.
        ijk_to_ras: 4x4 voxel-centre -> RAS mm.
        shape_kji: volume shape.
    """

    axes: NDArray[np.int64]
    oblique: bool
    spacing_mm: NDArray[np.float64]
    ijk_to_ras: NDArray[np.float64]
    shape_kji: tuple[int, int, int]


def mr_geometry(rng: np.random.Generator, config: MRScanConfig, low_ras: NDArray[np.float64],
                high_ras: NDArray[np.float64]) -> MRGeometry:
    """Random axis order, signs, tilt, spacing and margins of a hand MR grid around a RAS box (any hand generator).

    Args:
        rng: random generator.
        config: ranges of the scan conditions.
        low_ras, high_ras: the hand's bounding box, RAS mm.
    """
    perm = rng.permutation(3)
    direction = np.eye(3)[:, perm] * rng.choice([-1.0, 1.0], size=3)
    if np.linalg.det(direction) < 0:
        direction[:, 0] *= -1.0
    oblique = bool(rng.random() < config.p_oblique)
    if oblique:
        direction = _random_rotation(rng, 20.0) @ direction
    in_plane = float(rng.uniform(*config.in_plane_mm))
    spacing = np.array([in_plane, in_plane, float(rng.uniform(*config.slice_mm))])
    margin_low = rng.uniform(*config.margin_mm, size=3)
    margin_high = rng.uniform(*config.margin_mm, size=3)
    ijk_to_ras, shape_kji = grid_covering(direction, spacing, low_ras - margin_low, high_ras + margin_high)
    return MRGeometry(perm, oblique, spacing, ijk_to_ras, shape_kji)


def mr_volume(rng: np.random.Generator, geometry: MRGeometry, labels: NDArray[np.uint8], tissue_names: list[str],
              landmark_names: tuple[str, ...], landmarks_ras: NDArray[np.float64]) -> SyntheticScan:
    """The MR volume of a hand's tissue labels on ``geometry``'s grid: T1 signal per tissue, bias field, Rician noise.

    Args:
        rng: random generator (intensities, bias field, noise).
        geometry: from ``mr_geometry``.
        labels: uint8 [k, j, i]: 0 air, t + 1 for tissue t.
        tissue_names: MR_TISSUE_SIGNAL keys of the labels 1, 2, ...
        landmark_names, landmarks_ras: the ground truth, (L,) and (L, 3) RAS mm.
    """
    shape_kji = geometry.shape_kji
    s0 = float(rng.uniform(400.0, 1600.0))
    lut = np.array([0.0] + [s0 * float(rng.uniform(*MR_TISSUE_SIGNAL[name])) for name in tissue_names],
                   dtype=np.float32)
    signal = lut[labels] * _bias_field(rng, shape_kji)
    sigma = np.float32(s0 * float(rng.uniform(0.01, 0.04)))
    real = signal + rng.standard_normal(shape_kji, dtype=np.float32) * sigma
    imag = rng.standard_normal(shape_kji, dtype=np.float32) * sigma
    voxels = np.clip(np.rint(np.sqrt(real * real + imag * imag)), 0, 32767).astype(np.int16)
    points = np.asarray(landmarks_ras, dtype=np.float64)
    info = {"anatomy": "hand", "oblique": geometry.oblique, "spacing_mm": geometry.spacing_mm.tolist(),
            "axes": geometry.axes.tolist(), "signal": s0, "noise_sigma": float(sigma), "shape_kji": list(shape_kji)}
    return SyntheticScan(voxels, geometry.ijk_to_ras, tuple(landmark_names), points,
                         landmarks_in_view(points, geometry.ijk_to_ras, shape_kji), info)


def _bias_field(rng: np.random.Generator, shape_kji: tuple[int, int, int]) -> NDArray[np.float32]:
    """Slowly varying multiplicative field (about +-25%): exp of a random quadratic along each axis."""
    field_1d = []
    for n in shape_kji:
        t = np.linspace(-1.0, 1.0, n, dtype=np.float32)
        a, b = rng.normal(0.0, 0.12, size=2)
        field_1d.append(np.exp(np.float32(a) * t + np.float32(b) * (t * t - np.float32(1 / 3))))
    return field_1d[0][:, None, None] * field_1d[1][None, :, None] * field_1d[2][None, None, :]
