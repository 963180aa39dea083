"""Detection while another program keeps one core busy, with the network on all cores and on one thread.

Run: ``python benchmarks/bench_busy.py [--model wholebody-ct] [--slices 300] [--repeat 40]``. Times the median
``detect_landmarks`` on a 512 x 512 x ``--slices`` CT in memory, with the network on as many CPU threads as the
machine has cores and on 1 (the default, ``LandmarkModel.cpu_threads``), first on an idle machine and then beside a
process that spins on one core, and prints each median as a ratio to the idle all-cores one. torch's OpenMP threads
wait for each other at every layer: when one shares its core, each wait costs a scheduler time slice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from bench_projection import ct_like_volume, run_times

from LandmarkDetectorLib import detect_landmarks, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wholebody-ct")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    volume, ijk_to_ras = ct_like_volume(args.slices, np.random.default_rng(0))
    model = load_model(args.model, "cpu")
    detect = lambda: detect_landmarks(volume, ijk_to_ras, model, "cpu")  # noqa: E731
    detect()  # warm-up: first TorchScript calls optimize the graph
    medians: dict[tuple[str, int], float] = {}
    for load in ("idle", "one core busy"):
        spinner = (subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None)
        try:
            time.sleep(0.2)
            for threads in (cores, 1):
                model.cpu_threads = threads
                medians[load, threads] = statistics.median(run_times(detect, args.repeat))
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    baseline = medians["idle", cores]
    print(f"detect_landmarks on {volume.shape[::-1]} (i, j, k) int16, {cores} cores, median of {args.repeat}:")
    for (load, threads), seconds in medians.items():
        print(f"  {load:14s} network on {threads} thread{'s' if threads > 1 else ' '}  {seconds * 1000:8.1f} ms   "
              f"{seconds / baseline:6.2f} x idle with {cores} threads")


if __name__ == "__main__":
    main()
