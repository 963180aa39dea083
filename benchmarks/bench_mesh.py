"""Benchmark of the triangle-mesh renderer and voxelizer (synthetic/mesh.py) against the analytic primitives'.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_mesh.py [--repeat 5] [--anny]``
Prints, per body, the time to render batches of 32 meshes of ~31k triangles (a 1.7 m "body" of six overlapping
ellipsoids, each body scaled and moved) as 112 x 240 depth images of 10 mm pixels, rays along A, each on its own
grid; the same for batches of 1; and the time to voxelize one such body at 3 mm. Ratios are against the analytic
renderer (``render.render_batch``) and voxelizer (``scan.voxelize``) on primitive bodies, timed in the same run.
``--anny`` also times real anny bodies (posing included; the first model load builds a cache, ~80 s).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "LandmarkDetector"))

from LandmarkDetectorLib.projection import view_pixel_to_ras  # noqa: E402
from LandmarkDetectorLib.synthetic import body  # noqa: E402
from LandmarkDetectorLib.synthetic.anatomy import Tissue  # noqa: E402
from LandmarkDetectorLib.synthetic.mesh import render_mesh_batch, voxelize_mesh  # noqa: E402
from LandmarkDetectorLib.synthetic.render import render_batch  # noqa: E402
from LandmarkDetectorLib.synthetic.scan import grid_covering, voxelize  # noqa: E402

BATCH = 32
SHAPE_VU = (240, 112)
PIXEL_MM = 10.0
VOXEL_MM = 3.0
PARTS = [((0, 0, 1250), (170, 110, 300)), ((0, 10, 1600), (80, 95, 110)), ((-230, 0, 1200), (45, 45, 330)),
         ((230, 0, 1200), (45, 45, 330)), ((-90, 0, 450), (75, 75, 450)), ((90, 0, 450), (75, 75, 450))]
"""Centre and semi-axes (RAS mm) of the ellipsoids: torso, head, arms, legs."""


def icosphere(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere with outward faces, subdivided ``level`` times (20 * 4**level triangles)."""
    g = (1 + 5 ** 0.5) / 2
    vertices = np.array([(-1, g, 0), (1, g, 0), (-1, -g, 0), (1, -g, 0), (0, -1, g), (0, 1, g), (0, -1, -g),
                         (0, 1, -g), (g, 0, -1), (g, 0, 1), (-g, 0, -1), (-g, 0, 1)], dtype=np.float64)
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    faces = np.array([(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
                      (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
                      (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)])
    for _ in range(level):
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        middle = vertices[unique].mean(axis=1)
        middle /= np.linalg.norm(middle, axis=1, keepdims=True)
        m = inverse.reshape(3, -1).T + len(vertices)
        vertices = np.concatenate([vertices, middle])
        faces = np.concatenate([np.stack([faces[:, 0], m[:, 0], m[:, 2]], axis=1),
                                np.stack([faces[:, 1], m[:, 1], m[:, 0]], axis=1),
                                np.stack([faces[:, 2], m[:, 2], m[:, 1]], axis=1), m])
    return vertices, faces


def ellipsoid_bodies(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, V, 3) vertices of ellipsoid bodies (scaled 0.85-1.15, parts moved by ~1 cm) and their faces."""
    sphere, sphere_faces = icosphere(4)
    faces = np.concatenate([sphere_faces + n * len(sphere) for n in range(len(PARTS))])
    bodies = []
    for _ in range(count):
        scale = rng.uniform(0.85, 1.15)
        parts = [(sphere * size + centre + rng.normal(size=3) * 10.0) * scale for centre, size in PARTS]
        bodies.append(np.concatenate(parts))
    return np.stack(bodies), faces


def ap_grids(vertices_ras: np.ndarray) -> np.ndarray:
    """(B, 4, 4) AP grids of SHAPE_VU pixels of PIXEL_MM, centred on each body, front plane at its front."""
    low, high = vertices_ras.min(axis=1), vertices_ras.max(axis=1)
    h, w = SHAPE_VU
    centre = (low + high) / 2
    origins = np.stack([centre[:, 0] + PIXEL_MM * (w - 1) / 2, high[:, 1], centre[:, 2] + PIXEL_MM * (h - 1) / 2], 1)
    return np.stack([view_pixel_to_ras("ap", origin, (PIXEL_MM, PIXEL_MM)) for origin in origins])


def best_ms(function, repeat: int) -> float:
    """Best of ``repeat`` calls, in ms."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="calls per measurement, best kept (default 5)")
    parser.add_argument("--anny", action="store_true", help="also time real anny bodies")
    args = parser.parse_args()
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cores {os.cpu_count()}")
    rng = np.random.default_rng(0)
    vertices, faces = ellipsoid_bodies(rng, BATCH)
    grids = ap_grids(vertices)
    primitives = [body.build_body(body.sample_body(rng), body.sample_pose(rng), inner=False).skin
                  for _ in range(BATCH)]
    depth = render_mesh_batch(vertices, faces, grids, SHAPE_VU)
    print(f"mesh bodies: {vertices.shape[1]} vertices, {len(faces)} triangles; {SHAPE_VU[1]} x {SHAPE_VU[0]} "
          f"pixels of {PIXEL_MM:g} mm, body fraction {np.isfinite(depth).mean():.2f}")

    t_analytic = best_ms(lambda: render_batch(primitives, grids, SHAPE_VU), args.repeat) / BATCH
    t_mesh = best_ms(lambda: render_mesh_batch(vertices, faces, grids, SHAPE_VU), args.repeat) / BATCH
    t_single = best_ms(lambda: [render_mesh_batch(v[None], faces, g, SHAPE_VU) for v, g in
                                zip(vertices[:8], grids[:8], strict=True)], args.repeat) / 8
    print(f"render, per body   analytic (batch {BATCH}) {t_analytic:6.2f} ms   mesh batch {BATCH} {t_mesh:6.2f} ms "
          f"(ratio {t_mesh / t_analytic:.2f}x)   mesh batch 1 {t_single:6.2f} ms ({t_single / t_analytic:.2f}x)")

    skin = primitives[0]
    low, high = skin.bounds_ras()
    ijk_to_ras, shape_kji = grid_covering(np.eye(3), np.full(3, VOXEL_MM), low - 10.0, high + 10.0)
    t_vox_analytic = best_ms(lambda: voxelize([Tissue("skin", skin, np.zeros(len(skin)))], shape_kji, ijk_to_ras),
                             args.repeat)
    ijk_to_ras_mesh, shape_mesh = grid_covering(np.eye(3), np.full(3, VOXEL_MM), vertices[0].min(axis=0) - 10.0,
                                                vertices[0].max(axis=0) + 10.0)
    t_vox = best_ms(lambda: voxelize_mesh(vertices[0], faces, ijk_to_ras_mesh, shape_mesh), args.repeat)
    print(f"voxelize at {VOXEL_MM:g} mm  analytic {t_vox_analytic:7.1f} ms {shape_kji}   "
          f"mesh {t_vox:7.1f} ms {shape_mesh} (ratio {t_vox / t_vox_analytic:.2f}x)")

    if args.anny:
        from LandmarkDetectorLib.synthetic.anny_body import sample_anny_bodies

        sample_anny_bodies(np.random.default_rng(1), 1)  # loads the model (and builds its cache the first time)
        start = time.perf_counter()
        bodies = sample_anny_bodies(np.random.default_rng(2), BATCH)
        t_pose = (time.perf_counter() - start) * 1000 / BATCH
        anny_grids = ap_grids(bodies.vertices_ras.astype(np.float64))
        t_anny = best_ms(lambda: render_mesh_batch(bodies.vertices_ras, bodies.faces, anny_grids, SHAPE_VU),
                         args.repeat) / BATCH
        print(f"anny: {bodies.vertices_ras.shape[1]} vertices, {len(bodies.faces)} triangles; per body: "
              f"sample + pose {t_pose:6.2f} ms, render {t_anny:6.2f} ms ({t_anny / t_analytic:.2f}x analytic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
