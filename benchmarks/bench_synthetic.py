"""Benchmark of the synthetic anatomy generator (not a test): 2D render throughput and 3D volume time per case.

Run: python benchmarks/bench_synthetic.py [--seconds S]
Prints silhouette + depth pairs per second at the paper's input sizes (body 76 x 160, hand 96 x 96), with 1 and 2
worker processes, both for rendering ready-made anatomies and end to end (sample + build + frame + render); the same
for new posed bodies of the anny body model (shape + pose + landmarks + render, on the 10 mm grid training renders,
131 x 271), if anny is installed; then the time to make one CT-like body volume and one MR-like hand volume.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LandmarkDetector"))

from LandmarkDetectorLib.projection import view_pixel_to_ras  # noqa: E402
from LandmarkDetectorLib.synthetic import body, hand  # noqa: E402
from LandmarkDetectorLib.synthetic.anny_body import sample_anny_bodies  # noqa: E402
from LandmarkDetectorLib.synthetic.mesh import render_mesh_batch  # noqa: E402
from LandmarkDetectorLib.synthetic.render import frame_grids, render_batch  # noqa: E402
from LandmarkDetectorLib.synthetic.scan import CTScanConfig, ct_scan, mr_hand_scan  # noqa: E402

SIZES = {"body": (160, 76), "hand": (96, 96), "anny": (271, 131)}
BATCH = 128
ANNY_BATCH = 32
ANNY_SPACING_MM = 10.0
_READY: dict[str, list] = {}  # per worker process: anatomies built once, for "render only"


def make(kind: str, rng: np.random.Generator):
    if kind == "body":
        return body.build_body(body.sample_body(rng), body.sample_pose(rng), inner=False)
    return hand.build_hand(hand.sample_hand(rng))


def prepare() -> None:
    """Pool initializer: build the anatomies that "render only" renders again and again."""
    for kind in ("body", "hand"):
        rng = np.random.default_rng(0)
        _READY[kind] = [make(kind, rng) for _ in range(BATCH)]
    if anny_available():
        _READY["anny"] = sample_anny_bodies(np.random.default_rng(0), ANNY_BATCH)


def anny_available() -> bool:
    try:
        import anny  # noqa: F401
    except ImportError:
        return False
    return True


def anny_grids(vertices_ras: np.ndarray) -> np.ndarray:
    """Training's AP grids: 10 mm pixels centred on each body, front plane at its most anterior point."""
    h, w = SIZES["anny"]
    low, high = vertices_ras.min(axis=1), vertices_ras.max(axis=1)
    origins = (low + high) / 2 - ANNY_SPACING_MM * np.array([-(w - 1) / 2, 0.0, -(h - 1) / 2])
    origins[:, 1] = high[:, 1]
    return np.stack([view_pixel_to_ras("ap", o, (ANNY_SPACING_MM, ANNY_SPACING_MM)) for o in origins])


def work(job: tuple[str, bool, int, int]) -> int:
    """Render ``count`` pairs in batches; returns the number rendered (end to end: new anatomies every batch)."""
    kind, end_to_end, count, seed = job
    rng = np.random.default_rng(seed)
    shape = SIZES[kind]
    done = 0
    while kind == "anny" and done < count:
        bodies = sample_anny_bodies(rng, ANNY_BATCH) if end_to_end else _READY["anny"]
        depth = render_mesh_batch(bodies.vertices_ras, bodies.faces, anny_grids(bodies.vertices_ras), shape)
        done += len(depth)
    while done < count:
        anatomies = [make(kind, rng) for _ in range(BATCH)] if end_to_end else _READY[kind]
        grids = frame_grids([a.skin for a in anatomies], shape)
        depth = render_batch([a.skin for a in anatomies], grids, shape)
        silhouette = np.isfinite(depth)
        done += len(silhouette)
    return done


def throughput(kind: str, end_to_end: bool, workers: int, seconds: float) -> float:
    """Pairs per second with ``workers`` processes, each rendering about ``seconds`` worth of pairs."""
    if not _READY:
        prepare()
    batch = ANNY_BATCH if kind == "anny" else BATCH
    probe = time.perf_counter()
    work((kind, end_to_end, batch, 0))
    per_pair = (time.perf_counter() - probe) / batch
    count = max(batch, int(seconds / per_pair) // batch * batch)
    jobs = [(kind, end_to_end, count, 100 + w) for w in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers, initializer=prepare) as pool:
        pool.map(work, [(kind, end_to_end, batch, 1)] * workers, chunksize=1)  # warm up the workers
        start = time.perf_counter()
        total = sum(pool.map(work, jobs, chunksize=1))
        return total / (time.perf_counter() - start)


def volume_times(repeats: int) -> list[tuple[str, float, str]]:
    """(what, seconds per case, shape) for CT-like bodies at several spacings and MR-like hands."""
    rows = []
    for label, config in (("CT body, default (2.5-4 mm)", CTScanConfig()),
                          ("CT body, 3 mm", CTScanConfig(in_plane_mm=(3.0, 3.0), slice_mm=(3.0, 3.0), p_cut=0.0)),
                          ("CT body, 2 mm", CTScanConfig(in_plane_mm=(2.0, 2.0), slice_mm=(2.0, 2.0), p_cut=0.0))):
        times, shape = [], ""
        for seed in range(repeats):
            rng = np.random.default_rng(seed)
            start = time.perf_counter()
            anatomy = body.build_body(body.sample_body(rng), body.sample_pose(rng))
            scan = ct_scan(anatomy, rng, config)
            times.append(time.perf_counter() - start)
            shape = "x".join(map(str, scan.voxels_kji.shape))
        rows.append((label, float(np.mean(times)), f"last {shape}"))
    times = []
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        scan = mr_hand_scan(hand.build_hand(hand.sample_hand(rng)), rng)
        times.append(time.perf_counter() - start)
    rows.append(("MR hand, default (0.7-1.2 mm)", float(np.mean(times)), "x".join(map(str, scan.voxels_kji.shape))))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="rendering time per measurement (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="volumes per 3D measurement (default 3)")
    args = parser.parse_args()
    print(f"CPU cores available: {multiprocessing.cpu_count()}")
    print("2D silhouette + depth pairs per second")
    print(f"{'anatomy':8} {'size':>8} {'what':>22} {'1 worker':>10} {'2 workers':>10}")
    for kind in ("body", "hand", "anny") if anny_available() else ("body", "hand"):
        h, w = SIZES[kind]
        for end_to_end in (False, True):
            rates = [throughput(kind, end_to_end, workers, args.seconds) for workers in (1, 2)]
            what = ("shape+pose+render" if kind == "anny" else "sample+build+render") if end_to_end else "render only"
            print(f"{kind:8} {f'{w}x{h}':>8} {what:>22} {rates[0]:10.0f} {rates[1]:10.0f}")
    if not anny_available():
        print("anny bodies: not measured (anny is not installed; pip install 'landmark-detector[train]')")
    print("\n3D volumes: seconds per case (build + voxelize + intensities; file writing not included)")
    for label, seconds, shape in volume_times(args.repeats):
        print(f"{label:32} {seconds:6.2f} s   {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
