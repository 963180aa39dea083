"""Peak memory of detection on a 512 x 512 x 1000 int16 volume (500 MiB), measured in a fresh process.

The child process imports the package and torch (its base), builds a CT-like body in the volume in place, loads
the model, then resets the kernel's peak-RSS counter (``/proc/self/clear_refs``, Linux) and runs
``detect_landmarks``. It reports the peak resident memory during detection above base + volume + model: the
issue's aim is a peak below twice the volume plus the model, i.e. less than one volume's size on top of them.
Run it for an axis-aligned volume (projected by index arithmetic) and an oblique one (resampled)::

    python benchmarks/bench_memory.py [--model hand-mr] [--orientation aligned|oblique|both]

Linux only (reads /proc/self/status). Measured with wholebody-ct on an idle 2-core machine: the model adds 224 MiB
(torch's runtime included); the peak during detection was 6 MiB above volume + model for the aligned volume (0.1 s)
and 7 MiB for the oblique one (1.2 s, the first call's graph optimization included): 735 and 736 MiB above the
process base against the aim of 1,224 MiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MIB = 1 << 20
SHAPE_KJI = (1000, 512, 512)
SPACING_IJK = (0.8, 0.8, 1.0)


def rss_bytes(field: str = "VmRSS") -> int:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak since start or the last reset), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(model_name: str, orientation: str) -> dict[str, float]:
    """Measure in this process; returns MiB and seconds."""
    import numpy as np

    from LandmarkDetectorLib import detect_landmarks, load_model

    base = rss_bytes()
    volume = np.full(SHAPE_KJI, -1000, dtype=np.int16)
    jj, ii = np.mgrid[0:SHAPE_KJI[1], 0:SHAPE_KJI[2]]
    for k in range(100, 900):  # an elliptic cylinder of soft tissue, 330 x 200 mm, 800 mm long
        volume[k][((ii - 256) / 205.0) ** 2 + ((jj - 256) / 125.0) ** 2 <= 1.0] = 40
    ijk_to_ras = np.diag([*SPACING_IJK, 1.0])
    if orientation == "oblique":
        angle = np.radians(20.0)
        rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        ijk_to_ras[:3, :3] = rotation @ ijk_to_ras[:3, :3]
    with_volume = rss_bytes()
    model = load_model(model_name, "cpu")
    with_model = rss_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    start = time.perf_counter()
    detect_landmarks(volume, ijk_to_ras, model, "cpu", confidence_threshold=0.0)
    seconds = time.perf_counter() - start
    peak = rss_bytes("VmHWM")
    return {"volume_mib": volume.nbytes / MIB, "base_mib": base / MIB, "volume_rss_mib": (with_volume - base) / MIB,
            "model_mib": (with_model - with_volume) / MIB, "peak_mib": peak / MIB,
            "extra_mib": (peak - with_model) / MIB, "seconds": seconds, "peak_reset": reset}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hand-mr", help="model name or .pt file (default hand-mr)")
    parser.add_argument("--orientation", choices=("aligned", "oblique", "both"), default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model, args.orientation)))
        return 0
    failed = False
    for orientation in ("aligned", "oblique") if args.orientation == "both" else (args.orientation,):
        done = subprocess.run([sys.executable, __file__, "--child", "--model", args.model, "--orientation",
                               orientation], capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        budget = 2 * r["volume_mib"] + r["model_mib"]
        used = r["peak_mib"] - r["base_mib"]
        ok = used < budget
        failed |= not ok
        print(f"{orientation}: volume {r['volume_mib']:.0f} MiB, model {r['model_mib']:.0f} MiB; peak during "
              f"detection {r['extra_mib']:.0f} MiB above volume + model ({r['extra_mib'] / r['volume_mib']:.3f} x the "
              f"volume), {used:.0f} MiB above the process base against an aim of {budget:.0f} MiB "
              f"(2 x volume + model): {'met' if ok else 'NOT met'}; detection {r['seconds']:.1f} s"
              + ("" if r["peak_reset"] else " (peak counter not reset: includes building the volume)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
