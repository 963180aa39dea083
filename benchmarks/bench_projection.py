"""Time the projection of a 512 x 512 x 1000 int16 CT against one pass over the same array's memory.

The baseline is ``volume.max()`` on the same array in the same process and thread: it streams the array once at
memory bandwidth (``volume.sum()`` upcasts int16 and runs about 5x slower, so it is no floor). Ratios to it compare
between machines and survive other load on the machine better than seconds do; the baseline is measured alternately
with the projection, and the best of ``--repeat`` runs of each counts.

Run: ``python benchmarks/bench_projection.py [--slices 1000] [--repeat 3]``. Prints the full-resolution projection
(the aim for an axis-aligned volume is at most 1.5x), the extra memory it allocates (tracemalloc peak), the same
volume turned 20 degrees projected at a model's 10 mm pixels, and an oblique volume's time per voxel at full
resolution.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from LandmarkDetectorLib.projection import ProjectionConfig, project_volume


def ct_like_volume(slices: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Axial LPS-style CT: an elliptic body cylinder on a two-plate table, with noise (int16, [k, j, i])."""
    j, i = np.mgrid[0:512, 0:512]
    body = ((i - 256) / 170.0) ** 2 + ((j - 240) / 110.0) ** 2 <= 1
    table = ((j >= 360) & (j < 363)) | ((j >= 380) & (j < 383))
    axial = np.where(body, 40, np.where(table, 300, -1000)).astype(np.int16)
    volume = np.empty((slices, 512, 512), dtype=np.int16)
    noise = rng.integers(-20, 21, size=(8, 512, 512), dtype=np.int16)
    for k in range(slices):
        np.add(axial, noise[k % 8], out=volume[k])
    ijk_to_ras = np.diag([-0.9, -0.9, 1.5, 1.0])
    return volume, ijk_to_ras


def run_times(function, repeat: int) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``function``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def best_time(function, repeat: int) -> float:
    return min(run_times(function, repeat))


def best_times(functions: dict, repeat: int) -> dict:
    """The best of ``repeat`` runs of each function, run in turn (so that load on the machine hits each alike)."""
    times: dict = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            times[name] += run_times(function, 1)
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    volume, ijk_to_ras = ct_like_volume(args.slices, np.random.default_rng(0))
    config = ProjectionConfig()
    print(f"volume {volume.shape[::-1]} (i, j, k) int16, {volume.nbytes / 2**20:.0f} MiB")
    times = best_times({"max": volume.max, "projection": lambda: project_volume(volume, ijk_to_ras, config)},
                       args.repeat)
    t_max, t_proj = times["max"], times["projection"]
    print(f"volume.max() (one memory pass): {t_max * 1000:8.1f} ms")
    print(f"project_volume (aligned):  {t_proj * 1000:8.1f} ms   ratio {t_proj / t_max:.2f}x one pass  (aim <= 1.5x)")
    tracemalloc.start()
    image = project_volume(volume, ijk_to_ras, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"extra memory (peak):       {peak / 2**20:8.1f} MiB = {peak / volume.nbytes:.3f} x the volume")
    print(f"silhouette {image.shape}, body fraction {image.silhouette.mean():.3f}")
    # Oblique: trilinear resampling at full resolution, measured on a smaller volume and reported per voxel; and the
    # whole volume at a model's 10 mm pixels (nearest voxel), as detection projects it.
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rotated = ijk_to_ras.copy()
    rotated[:3, :3] = rotation @ ijk_to_ras[:3, :3]
    model_pixels = ProjectionConfig(pixel_spacing_mm=10.0)
    times = best_times({"max": volume.max, "oblique": lambda: project_volume(volume, rotated, model_pixels),
                        "aligned": lambda: project_volume(volume, ijk_to_ras, model_pixels)}, args.repeat)
    for name in ("aligned", "oblique"):
        print(f"project_volume ({name}, 10 mm pixels): {times[name] * 1000:8.1f} ms   ratio "
              f"{times[name] / times['max']:.2f}x one pass")
    small = volume[:100, ::2, ::2].copy()
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([-1.8, -1.8, 1.5])
    t_obl = best_time(lambda: project_volume(small, oblique, config), 1)
    t_small = best_time(small.max, args.repeat)
    print(f"project_volume (oblique):  {t_obl * 1000:8.1f} ms for {small.size / 1e6:.1f} M voxels "
          f"({t_obl / small.size * 1e9:.1f} ns/voxel, ratio {t_obl / t_small:.0f}x one pass over them)")


if __name__ == "__main__":
    main()
