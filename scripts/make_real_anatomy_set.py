"""Build the real-anatomy development set: CT-like volumes of the mesh50_XCAT and HRA Visible Human phantoms.

The reference landmarks are derived from the phantoms' bones and skin (Resources/RealAnatomy/body/METHOD.md).

    python scripts/make_real_anatomy_set.py --anatomy body --out out/real_anatomy/body
    python scripts/make_real_anatomy_set.py --anatomy body --derive-only   # rewrite Resources/RealAnatomy/body

Writes ``OUT/<case>.nii.gz`` + ``OUT/<case>.mrk.json`` as ``landmark-detector synth`` does (reference points inside the
scanned box defined, the others "undefined"; HRA cases have no shoulder points at all). These are real-anatomy
phantoms made from the Visible Human, not CT scans. The source data are read from ../shared/data and never copied.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import real_anatomy as ra
from numpy.typing import NDArray

from LandmarkDetectorLib.markups import PointList, read_markups, write_markups
from LandmarkDetectorLib.synthetic.dataset import NOT_IN_VIEW
from LandmarkDetectorLib.synthetic.mesh import voxelize_mesh
from LandmarkDetectorLib.synthetic.scan import (
    FILE_CONVENTIONS,
    PATIENT_POSITIONS,
    _noise,
    _table,
    _table_labels,
    grid_covering,
    landmarks_in_view,
)
from LandmarkDetectorLib.volume_io import write_volume

logger = logging.getLogger("make_real_anatomy_set")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
REFERENCE_DIR = REPO / "Resources" / "RealAnatomy" / "body"

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


def reference_point_list(subject: ra.Subject) -> PointList:
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


def compare_with_committed(subjects: dict[str, ra.Subject], folder: Path) -> float:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--anatomy", choices=("body",), default="body", help="anatomy of the set")
    parser.add_argument("--out", type=Path, help="output folder for the cases (required unless --derive-only)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--cases", nargs="+", choices=[c.name for c in CASES], metavar="CASE",
                        help="build only these cases (None: all)")
    parser.add_argument("--derive-only", action="store_true",
                        help="derive the reference landmarks and write them, the CSV and the pictures into "
                             "--reference-dir; build no volume")
    parser.add_argument("--reference-dir", type=Path, default=REFERENCE_DIR,
                        help="folder of the committed reference landmarks")
    parser.add_argument("--overwrite", action="store_true", help="replace existing case files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not args.derive_only and args.out is None:
        parser.error("--out is required unless --derive-only is given")
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
    args.out.mkdir(parents=True, exist_ok=True)
    for n, case in enumerate(cases, start=1):
        volume_path, markups_path = args.out / f"{case.name}.nii.gz", args.out / f"{case.name}.mrk.json"
        if not args.overwrite and (volume_path.exists() or markups_path.exists()):
            logger.error("%s exists; use --overwrite", volume_path)
            return 1
        voxels, ijk_to_ras, points, info = build_case(case, subjects[case.subject],
                                                      labels if case.subject == "xcat_m50" else None)
        write_volume(volume_path, voxels, ijk_to_ras, overwrite=args.overwrite)
        write_markups(markups_path, points, overwrite=args.overwrite)
        logger.info("[%d/%d] %s %s (%.0f s)", n, len(cases), case.name, info, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
