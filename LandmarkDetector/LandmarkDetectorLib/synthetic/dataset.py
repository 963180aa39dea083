"""Synthetic datasets on disk: volumes with ground-truth Markups, reproducible from a seed.

Whole bodies and hands come from one of two generators: "primitive" (``body.py`` and ``hand.py``, shapes built from
primitives) or "anny" (``anny_body.py`` and ``anny_hand.py``, the anny body model; needs the ``train`` extra). Each case
``<anatomy>_s<seed>_<index:04d>`` (``<anatomy>_anny_s<seed>_<index:04d>`` for anny) is drawn from its own generator
``np.random.default_rng([seed, index])``, so a case does not depend on how many others are made, a seed reproduces
its files byte for byte, and different seeds give independent cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileio import check_writable_target
from ..markups import PointList, write_markups
from ..progress import CancelCheck, ProgressCallback, check_cancel, report
from ..volume_io import write_volume
from .body import build_body, sample_body, sample_pose
from .hand import build_hand, sample_hand
from .scan import CTScanConfig, MRScanConfig, SyntheticScan, ct_scan, mr_hand_scan

ANATOMIES = ("body", "hand")
GENERATORS = ("primitive", "anny")
FORMATS = ("nii.gz", "nrrd")
NOT_IN_VIEW = "outside the field of view"


def case_name(anatomy: str, seed: int, index: int, generator: str = "primitive") -> str:
    """Name of case ``index`` of a dataset, e.g. ``body_s7_0003`` (primitive) or ``body_anny_s7_0003``."""
    prefix = anatomy if generator == "primitive" else f"{anatomy}_{generator}"
    return f"{prefix}_s{seed}_{index:04d}"


def _check_generator(anatomy: str, generator: str) -> None:
    if generator not in GENERATORS:
        raise InputError(f"generator must be one of {GENERATORS}, got {generator!r}.")


def synthesize_case(anatomy: str, seed: int, index: int, *, ct_config: CTScanConfig | None = None,
                    mr_config: MRScanConfig | None = None, generator: str = "primitive") -> SyntheticScan:
    """Generate one case in memory: a CT-like body volume or an MR-like left-hand volume with its landmarks.

    Args:
        generator: "primitive" or "anny" (needs the anny package).
    Raises:
        InputError: unknown anatomy or generator, or a negative seed or index.
    """
    if anatomy not in ANATOMIES:
        raise InputError(f"anatomy must be one of {ANATOMIES}, got {anatomy!r}.")
    _check_generator(anatomy, generator)
    if seed < 0 or index < 0:
        raise InputError(f"seed and index must be >= 0, got seed {seed}, index {index}.")
    rng = np.random.default_rng([seed, index])
    if generator == "anny" and anatomy == "body":
        from .anny_body import anny_ct_scan, sample_anny_bodies

        return anny_ct_scan(sample_anny_bodies(rng, 1), rng, ct_config)
    if generator == "anny":
        from .anny_hand import anny_mr_scan, sample_anny_hands

        return anny_mr_scan(sample_anny_hands(rng, 1), rng, mr_config)
    if anatomy == "body":
        return ct_scan(build_body(sample_body(rng), sample_pose(rng)), rng, ct_config)
    return mr_hand_scan(build_hand(sample_hand(rng)), rng, mr_config)


def ground_truth(scan: SyntheticScan, name: str = "") -> PointList:
    """The case's landmarks as a point list; landmarks outside the volume are undefined (not in view)."""
    descriptions = ["" if ok else NOT_IN_VIEW for ok in scan.in_view]
    return PointList.from_arrays(list(scan.landmark_names), scan.landmarks_ras, descriptions,
                                 defined=scan.in_view, name=name)


def synthesize_dataset(anatomy: str, count: int, seed: int, out_dir: str | os.PathLike[str], *, fmt: str = "nii.gz",
                       overwrite: bool = False, progress: ProgressCallback | None = None,
                       should_cancel: CancelCheck | None = None, ct_config: CTScanConfig | None = None,
                       mr_config: MRScanConfig | None = None, generator: str = "primitive") -> list[Path]:
    """Write ``count`` cases to ``out_dir``: ``<case>.<fmt>`` (int16 volume) and ``<case>.mrk.json`` (ground truth,
    RAS positions written in LPS as Slicer does; not-in-view landmarks have position status "undefined").

    Args:
        anatomy: "body" (CT-like whole bodies) or "hand" (MR-like left hands).
        count: number of cases.
        seed: dataset seed (>= 0); the same seed gives byte-identical files.
        out_dir: existing or new folder.
        fmt: "nii.gz" or "nrrd" (gzip-compressed).
        overwrite: replace existing files; otherwise nothing is written if any target exists.
        progress: called with (fraction, "[i/n] case") after each case.
        should_cancel: checked before each case; files of finished cases stay.
        generator: "primitive" or "anny" (needs the anny package).
    Returns:
        The volume paths, in case order.
    Raises:
        InputError: unknown anatomy, generator or format, count < 1, negative seed.
        FileExistsError: a target exists and ``overwrite`` is False.
        Cancelled: should_cancel() returned True.
    """
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {FORMATS}, got {fmt!r}.")
    if anatomy not in ANATOMIES:
        raise InputError(f"anatomy must be one of {ANATOMIES}, got {anatomy!r}.")
    _check_generator(anatomy, generator)
    if count < 1 or seed < 0:
        raise InputError(f"count must be >= 1 and seed >= 0, got count {count}, seed {seed}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [case_name(anatomy, seed, index, generator) for index in range(count)]
    for name in names:  # refuse before any work, so nothing is half-written
        check_writable_target(out / f"{name}.{fmt}", overwrite)
        check_writable_target(out / f"{name}.mrk.json", overwrite)
    paths = []
    for index, name in enumerate(names):
        check_cancel(should_cancel)
        scan = synthesize_case(anatomy, seed, index, ct_config=ct_config, mr_config=mr_config, generator=generator)
        volume_path = out / f"{name}.{fmt}"
        write_volume(volume_path, scan.voxels_kji, scan.ijk_to_ras, overwrite=overwrite)
        write_markups(out / f"{name}.mrk.json", ground_truth(scan, name), overwrite=overwrite)
        paths.append(volume_path)
        report(progress, (index + 1) / count, f"[{index + 1}/{count}] {name}")
    return paths
