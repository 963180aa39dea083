"""Build the real-anatomy development sets: CT-like whole bodies, and MR-like (some CT-like) left hands, of the
mesh50_XCAT and HRA Visible Human phantoms.

The reference landmarks are derived from the phantoms' bones and skin (Resources/RealAnatomy/body/METHOD.md,
Resources/RealAnatomy/hand/METHOD.md).

    python scripts/make_real_anatomy_set.py --anatomy body --out out/real_anatomy/body
    python scripts/make_real_anatomy_set.py --anatomy body --derive-only   # rewrite Resources/RealAnatomy/body
    python scripts/make_real_anatomy_set.py --anatomy hand --out out/real_anatomy/hand

Writes ``OUT/<case>.nii.gz`` + ``OUT/<case>.mrk.json`` as ``landmark-detector synth`` does (reference points inside the
scanned box defined, the others "undefined"; HRA bodies have no shoulder points at all). These are real-anatomy
phantoms made from the Visible Human, not CT or MR scans. The source data are read from ../shared/data and never
copied.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import real_anatomy as ra
import real_hands as rh
import trimesh
from numpy.typing import NDArray
from scipy import ndimage

from LandmarkDetectorLib.markups import PointList, read_markups, write_markups
from LandmarkDetectorLib.synthetic.anatomy import HAND_LANDMARKS
from LandmarkDetectorLib.synthetic.dataset import NOT_IN_VIEW
from LandmarkDetectorLib.synthetic.mesh import voxelize_mesh
from LandmarkDetectorLib.synthetic.scan import (
    FILE_CONVENTIONS,
    PATIENT_POSITIONS,
    MRGeometry,
    _noise,
    _table,
    _table_labels,
    grid_covering,
    landmarks_in_view,
    mr_volume,
)
from LandmarkDetectorLib.volume_io import write_volume

logger = logging.getLogger("make_real_anatomy_set")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
REFERENCE_DIR = REPO / "Resources" / "RealAnatomy" / "body"
HAND_REFERENCE_DIR = REPO / "Resources" / "RealAnatomy" / "hand"

XCAT_HU = np.array([-1000.0, 40.0, -1000.0, 35.0, -900.0, 60.0, -800.0, 700.0], dtype=np.float32)
"""HU per mesh50_XCAT label: air, body, air cavity, brain, bronchi, liver, lungs, skeleton."""
SOFT_HU, BONE_HU, AIR_HU = 40.0, 700.0, -1000.0
TABLE_HU = {"mattress": -820.0, "table": 250.0}
NOISE_HU = 12.0
MARGIN_MM = 10.0


@dataclass(frozen=True)
class Case:
    """One volume: subject, voxel size (mm), CT table, file orientation and longitudinal field of view.

    orientation: "lps" (DICOM-like: i to the left, j to posterior, k to superior) or "ras" (NIfTI-like: i and j
    flipped). fov: "full" (vertex to soles plus 10 mm), "no-head" (cut at the neck), "no-legs" (cut above the knees)
    or "edge" (first and last slice centres 1 mm inside the big toes' tips and the vertex).
    """

    name: str
    subject: str
    in_plane_mm: float
    slice_mm: float
    table: bool
    orientation: str
    fov: str
    seed: int


CASES = (
    Case("xcat_m50_s1.5", "xcat_m50", 2.0, 1.5, False, "lps", "full", 1),
    Case("xcat_m50_s3_table", "xcat_m50", 2.5, 3.0, True, "lps", "full", 2),
    Case("xcat_m50_s3_ras", "xcat_m50", 2.0, 3.0, False, "ras", "full", 3),
    Case("xcat_m50_s5_table_ras", "xcat_m50", 3.0, 5.0, True, "ras", "full", 4),
    Case("xcat_m50_s3_table_edge", "xcat_m50", 2.5, 3.0, True, "lps", "edge", 5),
    Case("xcat_m50_s5_table_nohead", "xcat_m50", 3.0, 5.0, True, "lps", "no-head", 6),
    Case("xcat_m50_s3_nolegs_ras", "xcat_m50", 2.5, 3.0, False, "ras", "no-legs", 7),
    Case("hra_vhm_s2.5", "hra_vhm", 2.5, 2.5, False, "lps", "full", 8),
    Case("hra_vhm_s5_table_ras", "hra_vhm", 3.0, 5.0, True, "ras", "full", 9),
    Case("hra_vhf_s2.5_table", "hra_vhf", 2.5, 2.5, True, "lps", "full", 10),
    Case("hra_vhf_s5_ras", "hra_vhf", 3.0, 5.0, False, "ras", "full", 11),
)


def derive_subjects(data_dir: Path, labels: NDArray[np.uint16] | None = None) -> dict[str, ra.Subject]:
    """The three phantoms with their reference landmarks, by subject key."""
    subjects = [ra.xcat_subject(data_dir, labels), ra.hra_subject(data_dir, "M"), ra.hra_subject(data_dir, "F")]
    return {s.key: s for s in subjects}


def reference_point_list(subject: ra.Subject | rh.HandSubject) -> PointList:
    """A subject's reference landmarks as a point list (all defined)."""
    refs = subject.references
    return PointList.from_arrays([r.name for r in refs], [r.point_ras for r in refs],
                                 [r.description for r in refs], name=subject.key)


def write_reference(subjects: dict[str, ra.Subject], folder: Path) -> None:
    """Write <subject>.mrk.json, landmarks.csv and <subject>.png into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for subject in subjects.values():
        write_markups(folder / f"{subject.key}.mrk.json", reference_point_list(subject), overwrite=True)
        rows += [[subject.key, r.name, *(f"{x:.2f}" for x in r.point_ras), f"{r.uncertainty_mm:.1f}", r.method]
                 for r in subject.references]
        ra.draw_subject(subject, folder / f"{subject.key}.png")
    with open(folder / "landmarks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["subject", "name", "R", "A", "S", "uncertainty_mm", "method"])
        writer.writerows(rows)


def compare_with_committed(subjects: dict[str, ra.Subject] | dict[str, rh.HandSubject], folder: Path) -> float:
    """Largest distance (mm) between the derived landmarks and the committed reference files (inf if missing)."""
    worst = 0.0
    for subject in subjects.values():
        path = folder / f"{subject.key}.mrk.json"
        if not path.is_file():
            return float("inf")
        committed = read_markups(path)
        if committed.labels != [r.name for r in subject.references]:
            return float("inf")
        for r in subject.references:
            worst = max(worst, float(np.linalg.norm(np.subtract(committed.get(r.name).position_ras, r.point_ras))))
    return worst


# ---------------------------------------------------------------- grids

def case_grid(case: Case, subject: ra.Subject, table_depth_mm: float) -> tuple[NDArray[np.float64],
                                                                                tuple[int, int, int]]:
    """ijk_to_ras and shape_kji of a case: the subject's skin box plus margins, the table behind the back, and the
    case's longitudinal field of view; head-first supine."""
    convention = "dicom" if case.orientation == "lps" else "nifti-ras"
    direction = PATIENT_POSITIONS["HFS"] * np.array(FILE_CONVENTIONS[convention], dtype=np.float64)
    low, high = subject.skin.bounds[0] - MARGIN_MM, subject.skin.bounds[1] + MARGIN_MM
    low[1] -= table_depth_mm
    spacing = np.array([case.in_plane_mm, case.in_plane_mm, case.slice_mm])
    point = {r.name: r.point_ras for r in subject.references}
    if case.fov == "no-head":
        high[2] = point["HeadTop"][2] - 250.0  # through the neck, below the chin
    elif case.fov == "no-legs":
        low[2] = max(point["KneeR"][2], point["KneeL"][2]) + 80.0
    elif case.fov == "edge":
        # Slice centres from 1 mm above the lower big toe tip to 1 mm below the vertex, at ~slice_mm spacing.
        low[2] = min(point["BigToeR"][2], point["BigToeL"][2]) + 1.0
        high[2] = point["HeadTop"][2] - 1.0
        spacing[2] = (high[2] - low[2]) / round((high[2] - low[2]) / case.slice_mm)
    return grid_covering(direction, spacing, low, high)


def _box_average(values: NDArray[np.float32], axis: int, centres: NDArray[np.float64], width: float,
                 fill: float) -> NDArray[np.float32]:
    """Mean of piecewise-constant values (unit cells centred on 0..n-1) over [c - width/2, c + width/2] along axis,
    for each c of centres; ``fill`` outside the array (a CT voxel averages what its footprint covers)."""
    n = values.shape[axis]
    cumulative = np.cumsum(values, axis=axis, dtype=np.float64)
    pad = [(0, 0)] * values.ndim
    pad[axis] = (1, 0)
    cumulative = np.pad(cumulative, pad)
    shape = [1] * values.ndim
    shape[axis] = -1

    def integral(boundary: NDArray[np.float64]) -> NDArray[np.float64]:
        clipped = np.clip(boundary, 0.0, n)
        index = np.minimum(np.floor(clipped).astype(np.int64), n - 1)
        frac = (clipped - index).reshape(shape)
        below, above = np.take(cumulative, index, axis=axis), np.take(cumulative, index + 1, axis=axis)
        return below + frac * (above - below) + fill * (boundary - clipped).reshape(shape)

    return ((integral(centres + 0.5 + width / 2) - integral(centres + 0.5 - width / 2)) / width).astype(np.float32)


def resample_labels(labels_kji: NDArray[np.uint16], source_ijk_to_ras: NDArray[np.float64], lut: NDArray[np.float32],
                    ijk_to_ras: NDArray[np.float64], shape_kji: tuple[int, int, int]) -> NDArray[np.float32]:
    """HU volume on an axis-aligned grid from a label map (HU per label, box-averaged over each output voxel)."""
    to_source = np.linalg.inv(source_ijk_to_ras) @ ijk_to_ras
    shape_ijk = shape_kji[::-1]
    samples = {}  # source axis (0 = i) -> (output axis, positions, width) in source voxels
    for out_axis in range(3):
        src = int(np.argmax(np.abs(to_source[:3, out_axis])))
        step = to_source[src, out_axis]
        samples[src] = (out_axis, to_source[src, 3] + step * np.arange(shape_ijk[out_axis]), abs(step))
    _, k_pos, k_width = samples[2]
    _, j_pos, j_width = samples[1]
    _, i_pos, i_width = samples[0]
    rows = labels_kji.shape[1]
    slab = np.empty((len(k_pos), rows, labels_kji.shape[2]), dtype=np.float32)
    for j0 in range(0, rows, 16):  # bounded temporaries: 16 source rows at a time
        block = lut[labels_kji[:, j0:j0 + 16]]
        slab[:, j0:j0 + 16] = _box_average(block, 0, k_pos, k_width, AIR_HU)
    out = np.empty((len(k_pos), len(j_pos), len(i_pos)), dtype=np.float32)
    for k0 in range(0, len(k_pos), 64):
        part = _box_average(slab[k0:k0 + 64], 1, j_pos, j_width, AIR_HU)
        out[k0:k0 + 64] = _box_average(part, 2, i_pos, i_width, AIR_HU)
    # Source axes are (k, j, i); put them in the output's (k, j, i) order.
    order = [2 - samples[2 - axis][0] for axis in range(3)]  # output axis of each array axis
    return np.transpose(out, np.argsort(order))


def mesh_volume(subject: ra.Subject, ijk_to_ras: NDArray[np.float64],
                shape_kji: tuple[int, int, int]) -> NDArray[np.float32]:
    """HU volume of an HRA subject: soft tissue inside the skin, bone inside its closed knee bones (tibia, fibula,
    patella; the femur mesh is open where its landmark patches are cut out); air elsewhere."""
    hu = np.full(shape_kji, AIR_HU, dtype=np.float32)
    hu[voxelize_mesh(subject.skin.vertices, subject.skin.faces, ijk_to_ras, shape_kji)] = SOFT_HU
    for bone in (b for b in subject.bones if b.is_watertight):
        hu[voxelize_mesh(bone.vertices, bone.faces, ijk_to_ras, shape_kji)] = BONE_HU
    return hu


def build_case(case: Case, subject: ra.Subject, labels: NDArray[np.uint16] | None
               ) -> tuple[NDArray[np.int16], NDArray[np.float64], PointList, dict]:
    """Voxels (int16 HU with noise), ijk_to_ras, reference point list and a description of one case."""
    rng = np.random.default_rng([20261203, case.seed])
    table, table_names = _table(rng, False, float(subject.skin.bounds[0][1]), float(subject.skin.bounds[1][1]))
    depth = table["gap_mm"] + table["plates"] * (table["plate_distance_mm"] + table["thickness_mm"]) + 5.0
    ijk_to_ras, shape_kji = case_grid(case, subject, depth if case.table else 0.0)
    if labels is not None:
        hu = resample_labels(labels, ra.XCAT_IJK_TO_RAS, XCAT_HU, ijk_to_ras, shape_kji)
    else:
        hu = mesh_volume(subject, ijk_to_ras, shape_kji)
    if case.table:
        low, high = subject.skin.bounds[0][2], subject.skin.bounds[1][2]
        table_labels = _table_labels(table, shape_kji, ijk_to_ras, low, high)
        for label, name in enumerate(table_names, start=1):
            hu[(table_labels == label) & (hu < -500.0)] = TABLE_HU[name]
    voxels = np.rint(hu).astype(np.int16)
    voxels += _noise(rng, shape_kji, NOISE_HU)
    np.maximum(voxels, np.int16(-1024), out=voxels)
    refs = subject.references
    points = np.array([r.point_ras for r in refs])
    in_view = landmarks_in_view(points, ijk_to_ras, shape_kji)
    descriptions = [r.description if ok else f"{NOT_IN_VIEW}; {r.description}" for r, ok in zip(refs, in_view,
                                                                                                   strict=True)]
    point_list = PointList.from_arrays([r.name for r in refs], points, descriptions, defined=in_view, name=case.name)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    info = {"spacing_mm": [round(float(s), 3) for s in spacing], "shape_kji": list(shape_kji),
            "table": table["kind"] if case.table else "none", "orientation": case.orientation, "fov": case.fov,
            "not_in_view": [r.name for r, ok in zip(refs, in_view, strict=True) if not ok]}
    return voxels, ijk_to_ras, point_list, info


# ---------------------------------------------------------------- hands

HAND_FAT_MM = 3.0
"""Subcutaneous fat of the real-anatomy hands (bright in T1): the same layer for all, the phantoms have none."""
HAND_CORTEX_MM = 1.2
HAND_CT_HU = np.array([-1000.0, -100.0, 40.0, 1200.0, 250.0], dtype=np.float32)
"""HU of the CT-like hands per label: air, fat, muscle, cortical bone, marrow."""
HAND_MARGIN_MM = 15.0

SLICE_AXES = {
    # Voxel axes i, j, k as RAS unit columns of the placed hand (palm posterior, fingers superior).
    "axial-lps": np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]]),
    "axial-ras": np.eye(3),
    "coronal-lps": np.array([[-1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]]),
    "sagittal-ras": np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]),
}


@dataclass(frozen=True)
class HandCase:
    """One hand volume: subject (HandSubject key), modality ("mr" or "ct"), voxel size (mm), slice orientation
    (SLICE_AXES key) and the forearm kept proximal to the middle fingertip (the scan's cut, mm)."""

    name: str
    subject: str
    modality: str
    in_plane_mm: float
    slice_mm: float
    orientation: str
    reach_mm: float
    seed: int


HAND_CASES = (
    HandCase("xcat_m50_L_mr1.0_cor", "xcat_m50_L", "mr", 1.0, 1.0, "coronal-lps", 240.0, 101),
    HandCase("xcat_m50_R_mr0.8_ax", "xcat_m50_R", "mr", 0.8, 1.5, "axial-lps", 220.0, 102),
    HandCase("xcat_m50_L_ct0.7_ax", "xcat_m50_L", "ct", 0.7, 0.7, "axial-ras", 250.0, 103),
    HandCase("hra_vhm_L_mr1.0_cor", "hra_vhm_L", "mr", 1.0, 1.5, "coronal-lps", 230.0, 104),
    HandCase("hra_vhm_R_mr1.2_sag", "hra_vhm_R", "mr", 1.2, 1.2, "sagittal-ras", 250.0, 105),
    HandCase("hra_vhf_L_mr0.5_cor", "hra_vhf_L", "mr", 0.5, 1.0, "coronal-lps", 210.0, 106),
    HandCase("hra_vhf_R_ct1.0_ax", "hra_vhf_R", "ct", 1.0, 1.0, "axial-lps", 240.0, 107),
)


def derive_hands(data_dir: Path) -> dict[str, rh.HandSubject]:
    """The six hands with their reference fingertips, placed palm down, by key."""
    hands = rh.xcat_hands(data_dir) + rh.hra_hands(data_dir, "M") + rh.hra_hands(data_dir, "F")
    return {h.key: h for h in hands}


def hand_grid(case: HandCase, hand: rh.HandSubject) -> tuple[NDArray[np.float64], tuple[int, int, int]]:
    """ijk_to_ras and shape_kji of a hand case: the hand's skin box plus HAND_MARGIN_MM, cut proximally
    ``reach_mm`` below the middle fingertip (the forearm runs out of the volume there)."""
    low, high = hand.hand_skin.bounds[0] - HAND_MARGIN_MM, hand.hand_skin.bounds[1] + HAND_MARGIN_MM
    low[2] = hand.reference("MiddleTip").point_ras[2] - case.reach_mm
    spacing = np.array([case.in_plane_mm, case.in_plane_mm, case.slice_mm])
    return grid_covering(SLICE_AXES[case.orientation], spacing, low, high)


def hand_labels(hand: rh.HandSubject, ijk_to_ras: NDArray[np.float64],
                shape_kji: tuple[int, int, int]) -> NDArray[np.uint8]:
    """Labels of a placed hand: 1 fat (within HAND_FAT_MM of the skin), 2 muscle, 3 cortical bone, 4 marrow (bone
    deeper than HAND_CORTEX_MM); 0 air. The hand is the connected part of the skin's inside that the
    fingertips touch (the thigh beside a hanging hand is left out)."""
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)[::-1]  # along k, j, i
    inside = voxelize_mesh(hand.skin.vertices, hand.skin.faces, ijk_to_ras, shape_kji)
    parts, _ = ndimage.label(inside)
    to_ijk = np.linalg.inv(ijk_to_ras)
    found = []
    for r in hand.references:  # the inside voxels next to each fingertip (on the skin)
        i, j, k = np.rint(to_ijk[:3, :3] @ r.point_ras + to_ijk[:3, 3]).astype(int)
        found.append(parts[max(k - 3, 0):k + 4, max(j - 3, 0):j + 4, max(i - 3, 0):i + 4].ravel())
    found = np.concatenate(found)
    if not found.any():
        raise ValueError(f"{hand.key}: no voxel inside the skin next to the fingertips")
    inside = parts == np.bincount(found[found > 0]).argmax()
    labels = np.where(inside, np.where(ndimage.distance_transform_edt(inside, sampling=spacing) > HAND_FAT_MM, 2, 1),
                      0).astype(np.uint8)
    if hand.bones:
        bone = np.zeros(shape_kji, dtype=bool)
        for mesh in hand.bones:
            bone |= voxelize_mesh(mesh.vertices, mesh.faces, ijk_to_ras, shape_kji)
        bone &= inside
        labels[bone] = np.where(ndimage.distance_transform_edt(bone, sampling=spacing)[bone] > HAND_CORTEX_MM, 4, 3)
    return labels


def build_hand_case(case: HandCase, hand: rh.HandSubject) -> tuple[NDArray[np.int16], NDArray[np.float64], PointList,
                                                                    dict]:
    """Voxels (int16: MR signal or HU), ijk_to_ras, reference point list and a description of one hand case."""
    rng = np.random.default_rng([20261203, case.seed])
    ijk_to_ras, shape_kji = hand_grid(case, hand)
    labels = hand_labels(hand, ijk_to_ras, shape_kji)
    points = np.array([r.point_ras for r in hand.references])
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    if case.modality == "mr":
        axes = np.argmax(np.abs(ijk_to_ras[:3, :3]), axis=0)
        geometry = MRGeometry(axes, False, spacing, ijk_to_ras, shape_kji)
        voxels = mr_volume(rng, geometry, labels, ["fat", "muscle", "cortical", "marrow"], HAND_LANDMARKS,
                           points).voxels_kji
    else:
        voxels = np.rint(HAND_CT_HU[labels]).astype(np.int16) + _noise(rng, shape_kji, NOISE_HU)
        np.maximum(voxels, np.int16(-1024), out=voxels)
    in_view = landmarks_in_view(points, ijk_to_ras, shape_kji)
    refs = hand.references
    descriptions = [r.description if ok else f"{NOT_IN_VIEW}; {r.description}"
                    for r, ok in zip(refs, in_view, strict=True)]
    point_list = PointList.from_arrays([r.name for r in refs], points, descriptions, defined=in_view, name=case.name)
    info = {"modality": case.modality, "spacing_mm": [round(float(s), 3) for s in spacing],
            "shape_kji": list(shape_kji), "orientation": case.orientation, "reach_mm": case.reach_mm,
            "bones": bool(hand.bones), "not_in_view": [r.name for r, ok in zip(refs, in_view, strict=True) if not ok]}
    return voxels, ijk_to_ras, point_list, info


def write_hand_reference(hands: dict[str, rh.HandSubject], folder: Path) -> None:
    """Write <hand>.mrk.json (placed frame), landmarks.csv, placement.csv (the subject -> placed map of each hand) and
    <hand>.png into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, maps = [], []
    for hand in hands.values():
        write_markups(folder / f"{hand.key}.mrk.json", reference_point_list(hand), overwrite=True)
        rows += [[hand.key, r.name, *(f"{x:.2f}" for x in r.point_ras), f"{r.uncertainty_mm:.1f}", r.method]
                 for r in hand.references]
        maps.append([hand.key, *(f"{x:.6f}" for x in hand.to_placed[:3].ravel())])
        low, high = hand.hand_skin.bounds
        bones = [trimesh.Trimesh(vertices=b.vertices[np.all((b.vertices > low) & (b.vertices < high), axis=1)])
                 for b in hand.bones] or [trimesh.Trimesh(vertices=np.zeros((0, 3)))]
        ra.draw_subject(ra.Subject(hand.key, hand.title, hand.hand_skin, bones, hand.references),
                        folder / f"{hand.key}.png")
    with open(folder / "landmarks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["hand", "name", "R", "A", "S", "uncertainty_mm", "method"])
        writer.writerows(rows)
    with open(folder / "placement.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["hand"] + [f"m{r}{c}" for r in range(3) for c in range(4)])
        writer.writerows(maps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--anatomy", choices=("body", "hand"), default="body", help="anatomy of the set")
    parser.add_argument("--out", type=Path, help="output folder for the cases (required unless --derive-only)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--cases", nargs="+", choices=[c.name for c in CASES + HAND_CASES], metavar="CASE",
                        help="build only these cases of the anatomy (None: all)")
    parser.add_argument("--derive-only", action="store_true",
                        help="derive the reference landmarks and write them, the CSV and the pictures into "
                             "--reference-dir; build no volume")
    parser.add_argument("--reference-dir", type=Path,
                        help=f"folder of the committed reference landmarks (default {REFERENCE_DIR.relative_to(REPO)} "
                             f"or {HAND_REFERENCE_DIR.relative_to(REPO)})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing case files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not args.derive_only and args.out is None:
        parser.error("--out is required unless --derive-only is given")
    if args.anatomy == "hand":
        return _main_hand(args)
    args.reference_dir = args.reference_dir or REFERENCE_DIR
    cases = [c for c in CASES if not args.cases or c.name in args.cases]
    need_labels = args.derive_only or any(c.subject == "xcat_m50" for c in cases)
    started = time.perf_counter()
    labels = ra.read_xcat_labels(args.data) if need_labels else None
    logger.info("deriving the reference landmarks from %s", args.data)
    subjects = derive_subjects(args.data, labels)
    for subject in subjects.values():
        for r in subject.references:
            logger.info("  %-9s %-17s R %7.1f A %7.1f S %7.1f  +- %.1f mm", subject.key, r.name, *r.point_ras,
                        r.uncertainty_mm)
    if args.derive_only:
        write_reference(subjects, args.reference_dir)
        logger.info("wrote %s", args.reference_dir)
        return 0
    drift = compare_with_committed(subjects, args.reference_dir)
    if drift > 0.1:
        logger.warning("derived landmarks differ from %s by up to %.2f mm; rerun with --derive-only and commit",
                       args.reference_dir, drift)
    return _write_cases(cases, args, started, lambda case: build_case(
        case, subjects[case.subject], labels if case.subject == "xcat_m50" else None))


def _write_cases(cases: list, args: argparse.Namespace, started: float,
                 build: Callable[[Any], tuple[Any, Any, Any, Any]]) -> int:
    """Build each case with ``build`` and write ``<case>.nii.gz`` + ``<case>.mrk.json`` into ``args.out``; without
    ``--overwrite``, refuse before writing anything if any of those files exists."""
    paths = [(args.out / f"{case.name}.nii.gz", args.out / f"{case.name}.mrk.json") for case in cases]
    existing = [str(p) for pair in paths for p in pair if p.exists()]
    if existing and not args.overwrite:
        logger.error("%s exist%s; use --overwrite to replace, or another --out", ", ".join(existing),
                     "s" if len(existing) == 1 else "")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for n, (case, (volume_path, markups_path)) in enumerate(zip(cases, paths, strict=True), start=1):
        voxels, ijk_to_ras, points, info = build(case)
        write_volume(volume_path, voxels, ijk_to_ras, overwrite=args.overwrite)
        write_markups(markups_path, points, overwrite=args.overwrite)
        logger.info("[%d/%d] %s %s (%.0f s)", n, len(cases), case.name, info, time.perf_counter() - started)
    return 0


def _main_hand(args: argparse.Namespace) -> int:
    """--anatomy hand: derive the six hands, write their reference files (--derive-only) or build the cases."""
    reference_dir = args.reference_dir or HAND_REFERENCE_DIR
    cases = [c for c in HAND_CASES if not args.cases or c.name in args.cases]
    started = time.perf_counter()
    logger.info("deriving the reference fingertips from %s", args.data)
    hands = derive_hands(args.data)
    for hand in hands.values():
        for r in hand.references:
            logger.info("  %-10s %-9s R %7.1f A %7.1f S %7.1f  +- %.1f mm", hand.key, r.name, *r.point_ras,
                        r.uncertainty_mm)
    if args.derive_only:
        write_hand_reference(hands, reference_dir)
        logger.info("wrote %s", reference_dir)
        return 0
    drift = compare_with_committed(hands, reference_dir)
    if drift > 0.1:
        logger.warning("derived fingertips differ from %s by up to %.2f mm; rerun with --derive-only and commit",
                       reference_dir, drift)
    return _write_cases(cases, args, started, lambda case: build_hand_case(case, hands[case.subject]))


if __name__ == "__main__":
    sys.exit(main())
