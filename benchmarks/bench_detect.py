"""Time ``detect_landmarks`` on a 512 x 512 x 1000 int16 CT in memory against one pass over the volume's memory.

The baseline is ``volume.max()`` on the same array, in the same process and on one thread as the projection: one
pass at memory bandwidth, the floor of anything that reads the whole volume. It is measured alternately with the
detection (the best of ``--repeat`` runs of each counts), so that other load on the machine hits both alike.

Run: ``python benchmarks/bench_detect.py [--model wholebody-ct] [--slices 1000] [--repeat 5] [--threads 1]``. Prints
the baseline, the whole detection (projection + network + back-projection) with its ratio to it (aim: at most 1x;
moonshot 0.5x), the same detection without the model's limb tips (``limbtips.py``, which read the volume around
each middle fingertip; the step's cost is the difference), the network alone (aim: at most 30 ms) and the
projection alone, and the detection's peak extra memory (tracemalloc: numpy buffers) as a multiple of the volume's
size. The volume is a solid cylinder, so the limb tips read a box full of body: their worst case.
"""

from __future__ import annotations

import argparse
import dataclasses
import tracemalloc

from bench_projection import best_time, best_times, ct_like_volume

from LandmarkDetectorLib import detect_landmarks, load_model
from LandmarkDetectorLib.framing import Canvas
from LandmarkDetectorLib.pipeline import framed, model_projection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wholebody-ct")
    parser.add_argument("--slices", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the network (default 1, the model's)")
    args = parser.parse_args()
    import numpy as np

    volume, ijk_to_ras = ct_like_volume(args.slices, np.random.default_rng(0))
    model = load_model(args.model, "cpu")
    model.cpu_threads = args.threads
    spec = model.metadata.canvas
    print(f"volume {volume.shape[::-1]} (i, j, k) int16, {volume.nbytes / 2**20:.0f} MiB; model {args.model} "
          f"({model.metadata.architecture}, {spec.width} x {spec.height} px), network on {args.threads} CPU thread(s)")
    detect = lambda: detect_landmarks(volume, ijk_to_ras, model, "cpu")  # noqa: E731
    tipless = dataclasses.replace(model, metadata=dataclasses.replace(model.metadata, limb_tips={}))
    detect_tipless = lambda: detect_landmarks(volume, ijk_to_ras, tipless, "cpu")  # noqa: E731
    detect()  # warm-up: first TorchScript calls optimize the graph
    canvas: Canvas = framed(model_projection(volume, ijk_to_ras, model.metadata.projection, spec), spec)
    inputs = canvas.network_input()[None]
    projection = model.metadata.projection
    times = best_times({"max": volume.max, "detect": detect, "tipless": detect_tipless,
                        "projection": lambda: model_projection(volume, ijk_to_ras, projection, spec)}, args.repeat)
    t_max, t_detect, t_projection = times["max"], times["detect"], times["projection"]
    t_network = best_time(lambda: model.predict(inputs), args.repeat * 4)
    print(f"volume.max():        {t_max * 1000:8.1f} ms   (one memory pass, the baseline)")
    print(f"detect_landmarks:    {t_detect * 1000:8.1f} ms   ratio {t_detect / t_max:.2f}x one pass  (aim <= 1x)")
    if model.metadata.limb_tips:
        t_tipless = times["tipless"]
        print(f"  without limb tips: {t_tipless * 1000:6.1f} ms   ratio {t_tipless / t_max:.2f}x one pass; limb tips "
              f"{(t_detect - t_tipless) * 1000:.1f} ms")
    print(f"  network alone:     {t_network * 1000:8.1f} ms   (aim <= 30 ms)")
    print(f"  projection alone:  {t_projection * 1000:8.1f} ms   ratio {t_projection / t_max:.2f}x one pass")
    tracemalloc.start()
    detect()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak extra memory:   {peak / 2**20:8.1f} MiB = {peak / volume.nbytes:.3f} x the volume (numpy buffers)")


if __name__ == "__main__":
    main()
