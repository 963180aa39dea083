"""Batch throughput against just reading the same files with the same threads, from a cold and a warm file cache.

Run: ``python benchmarks/bench_batch.py [--model wholebody-ct] [--cases 12] [--folder DIR]``. Writes ``--cases``
synthetic whole-body CTs (half NIfTI .nii.gz, half NRRD) into a temporary folder unless ``--folder`` is given, then
times, alternately ``--repeat`` times each, (a) reading every volume with ``read_volume`` in ``READ_AHEAD`` threads,
the threads a one-process batch reads with (the floor: a batch cannot finish before its reading), (b) reading them one
after the other, and (c) ``run_batch`` over the folder in one process (the model loaded once beforehand; its network
on one more thread). Each is timed from a warm file cache (the files read just before) and, where the kernel lets
this process drop its page cache (``/proc/sys/vm/drop_caches``, root on Linux), from a cold one; the output says
which it could do. Prints the best times and the batch's ratio to each reading (aim: at most 1.10x the threaded
reading).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import tempfile
import time
from pathlib import Path

from LandmarkDetectorLib.batch import READ_AHEAD, BatchOptions, cached_model, find_volumes, run_batch
from LandmarkDetectorLib.synthetic.dataset import synthesize_dataset
from LandmarkDetectorLib.volume_io import read_volume


def drop_file_cache() -> bool:
    """Write dirty pages and drop Linux's page cache (root only); False where the kernel does not allow it."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wholebody-ct")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--folder", type=Path, help="folder of volumes to use instead of synthetic ones")
    parser.add_argument("--threads", type=int, help="CPU threads of the network (default: the model's, one)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each; the best counts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        folder = args.folder
        if folder is None:
            folder = work / "volumes"
            half = args.cases // 2
            synthesize_dataset("body", half, 31, folder, fmt="nii.gz")
            synthesize_dataset("body", args.cases - half, 32, folder, fmt="nrrd")
        cases = find_volumes(folder)
        size = sum(p.stat().st_size for c in cases for p in ([c.path] if c.path.is_file() else c.path.iterdir()))
        print(f"{len(cases)} volumes, {size / 2**20:.0f} MiB on disk, in {folder}")
        options = BatchOptions(model=args.model, device="cpu", threads=args.threads)
        cached_model(options.model, options.device, options.threads)  # once, as a batch does before its cases

        def read_all() -> None:
            for case in cases:
                read_volume(case.path)

        def read_all_threads() -> None:
            with concurrent.futures.ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
                for _ in pool.map(lambda case: read_volume(case.path).ijk_to_ras, cases):
                    pass

        def batch(run: str) -> None:
            results = run_batch(cases, work / f"out-{run}", options)
            failed = [r for r in results if r.status != "ok"]
            if failed:
                raise SystemExit(f"{len(failed)} cases failed, e.g. {failed[0].case}: {failed[0].error}")

        steps = {"threads": read_all_threads, "read": read_all}
        names = [*steps, "batch"]
        results: dict[str, dict[str, float]] = {}
        for cache in ("cold", "warm"):
            if cache == "cold" and not drop_file_cache():
                print("cold file cache: not measured (this process may not write /proc/sys/vm/drop_caches)")
                continue
            times: dict[str, list[float]] = {name: [] for name in names}
            read_all()  # warm: the files are in the page cache; cold: each step below drops it first
            for run in range(args.repeat):
                for name, work_fn in (*steps.items(), ("batch", lambda r=f"{cache}{run}": batch(r))):
                    if cache == "cold":
                        drop_file_cache()
                    start = time.perf_counter()
                    work_fn()
                    times[name].append(time.perf_counter() - start)
            results[cache] = {name: min(values) for name, values in times.items()}
        for cache, best in results.items():
            per_case = {name: f"({seconds / len(cases) * 1000:.0f} ms per case)" for name, seconds in best.items()}
            print(f"{cache} file cache, best of {args.repeat}:")
            print(f"  read every volume, {READ_AHEAD} threads:          {best['threads']:6.2f} s  "
                  f"{per_case['threads']}")
            print(f"  read every volume, one after the other: {best['read']:6.2f} s  {per_case['read']}")
            print(f"  batch detection:                        {best['batch']:6.2f} s  {per_case['batch']}")
            print(f"  batch / reading with {READ_AHEAD} threads: {best['batch'] / best['threads']:.2f}x  "
                  f"(aim <= 1.10x); batch / reading one after the other: {best['batch'] / best['read']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
