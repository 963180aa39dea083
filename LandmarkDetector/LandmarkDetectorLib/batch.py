"""Detection over a folder of volumes: one landmark file per case and a summary; resumable, shardable, distributable.

Each case writes, in this order and each atomically, its record ``OUT/.landmark-detector-batch/<case>.json`` (status,
seconds, confidences, error) and then its landmark file ``OUT/<case>.mrk.json``. A case is finished when its landmark
file exists, so a batch killed at any moment and run again with ``resume`` redoes only unfinished cases, and the
summary (``summary.csv``) is rebuilt from the records. Records and outputs are written by whichever process ran the
case, so the same folder works for local processes, job-array shards and Dask workers on a shared file system.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, LandmarkDetectorError, UsageError
from .fileio import atomic_open, check_writable_target
from .markups import write_markups
from .volume_io import Volume, case_name, is_volume_path, read_volume

logger = logging.getLogger(__name__)

RECORDS_DIR = ".landmark-detector-batch"
SETTINGS_FILE = "settings.json"
READ_AHEAD = 2
"""Volumes a single-process batch reads ahead of the one it detects, each in its own thread (at most this many + 1
in memory)."""
OUTPUT_FORMATS = ("mrk.json", "fcsv", "csv")
_NOT_STORED = ("earlier", "traceback", "unexpected")  # CaseResult fields that are not written in a case's record


@dataclass(frozen=True)
class BatchCase:
    """One volume of the input folder: a file or a DICOM series folder."""

    name: str
    path: Path


@dataclass(frozen=True)
class BatchOptions:
    """What every case is run with.

    Attributes:
        model: model name or bundle path.
        device: "auto", "cpu" or "cuda".
        output_format: "mrk.json", "fcsv" or "csv".
        confidence_threshold: in-view probability needed to call a landmark found (None: the model's).
        mirror_tolerance_mm: largest left-right mirror disagreement of a found landmark, mm (None: the model's).
        threshold: body/air intensity threshold (None: the model's setting).
        table_removal_mm: table removal thickness (None: the model's setting).
        threads: CPU threads of the network (None: the model's default, one; see ``LandmarkModel.cpu_threads``).
    """

    model: str = "wholebody-ct"
    device: str = "auto"
    output_format: str = "mrk.json"
    confidence_threshold: float | None = None
    mirror_tolerance_mm: float | None = None
    threshold: float | None = None
    table_removal_mm: float | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise InputError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.output_format!r}.")


@dataclass
class CaseResult:
    """One case's record; ``status`` is "ok", "failed" or "skipped" (output already there, no record of it).

    ``earlier`` marks a case finished by an earlier run that this one skipped (resume); ``traceback`` (a failure's
    Python traceback) and ``unexpected`` (the failure is not an error of the input or the files but a bug to report)
    travel back to the process that runs the batch, which logs them (``run_batch``); none of the three is stored.
    """

    case: str
    status: str
    seconds: float | None = None
    found: int | None = None
    confidence: dict[str, float] = field(default_factory=dict)
    output: str = ""
    error: str = ""
    earlier: bool = False
    traceback: str = ""
    unexpected: bool = False


def find_volumes(folder: str | os.PathLike[str]) -> list[BatchCase]:
    """The volumes directly inside ``folder`` (files with a volume ending and DICOM series folders), sorted by name.

    Raises:
        InputError: not a folder, or two volumes with the same case name (their outputs would collide).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give a folder of volumes (or use `landmark-detector detect`).")
    cases: dict[str, BatchCase] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not is_volume_path(entry):
            continue
        name = case_name(entry)
        if name in cases:
            raise InputError(f"{cases[name].path.name} and {entry.name} in {root} have the same case name {name!r}; "
                             "rename one so that their outputs do not collide.")
        cases[name] = BatchCase(name, entry)
    return list(cases.values())


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" -> (K, N), 1 <= K <= N: this process takes every N-th case starting with the K-th."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"shard must look like K/N (e.g. 2/8), got {text!r}.") from None
    if not 1 <= k <= n:
        raise InputError(f"shard {text!r}: K must be between 1 and N.")
    return k, n


def shard_cases(cases: list[BatchCase], shard: tuple[int, int] | None) -> list[BatchCase]:
    """The cases of shard (K, N) of the sorted case list; all cases when ``shard`` is None."""
    if shard is None:
        return cases
    k, n = shard
    return cases[k - 1 :: n]


def output_path(out_dir: Path, case: BatchCase, options: BatchOptions) -> Path:
    return out_dir / f"{case.name}.{options.output_format}"


def record_path(out_dir: Path, case: BatchCase) -> Path:
    return out_dir / RECORDS_DIR / f"{case.name}.json"


def summary_name(shard: tuple[int, int] | None) -> str:
    return "summary.csv" if shard is None else f"summary-{shard[0]}-of-{shard[1]}.csv"


def read_record(out_dir: Path, case: BatchCase) -> CaseResult | None:
    """A case's record, or None when there is none (or it cannot be read)."""
    try:
        return CaseResult(**json.loads(record_path(out_dir, case).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def run_case(case: BatchCase, out_dir: Path, options: BatchOptions, overwrite: bool,
             volume: Callable[[], Volume] | None = None) -> CaseResult:
    """Detect one case, write its record and its landmark file; a failure is recorded, never raised.

    ``volume`` returns the case's volume when it was read ahead (default: read it here).
    """
    start = time.perf_counter()
    target = output_path(out_dir, case, options)
    try:
        from .pipeline import detect_landmarks, projection_settings

        model = cached_model(options.model, options.device, options.threads)
        start = time.perf_counter()  # a case's time leaves out loading the model, done once per process
        voxels = volume() if volume is not None else read_volume(case.path)
        landmarks = detect_landmarks(voxels.voxels_kji, voxels.ijk_to_ras, model, options.device,
                                     confidence_threshold=options.confidence_threshold,
                                     mirror_tolerance_mm=options.mirror_tolerance_mm,
                                     projection=projection_settings(model, options.threshold, options.table_removal_mm))
        result = CaseResult(case.name, "ok", found=int(landmarks.found.sum()), output=target.name,
                            confidence={n: round(float(c), 4) for n, c in zip(landmarks.names, landmarks.confidence,
                                                                               strict=True)})
        check_writable_target(target, overwrite)
        result.seconds = round(time.perf_counter() - start, 3)
        _write_record(out_dir, case, result)
        write_markups(target, landmarks.to_point_list(case.name), overwrite=overwrite)
    except Exception as error:  # a bad case never stops the batch; its message goes to the summary
        expected = isinstance(error, (LandmarkDetectorError, OSError))
        result = CaseResult(case.name, "failed", seconds=round(time.perf_counter() - start, 3),
                            error=str(error) if expected else f"{type(error).__name__}: {error}",
                            traceback=traceback.format_exc(), unexpected=not expected)
        try:
            _write_record(out_dir, case, result)
        except OSError as record_error:
            result.error += f" (and its record could not be written: {record_error})"
    return result


def _write_record(out_dir: Path, case: BatchCase, result: CaseResult) -> None:
    (out_dir / RECORDS_DIR).mkdir(exist_ok=True)
    with atomic_open(record_path(out_dir, case), "w", overwrite=True) as f:
        json.dump({k: v for k, v in asdict(result).items() if k not in _NOT_STORED}, f)


def batch_settings(options: BatchOptions) -> dict[str, Any]:
    """What decides a batch's outputs: the model (name and SHA-256 of its file) and the detection settings."""
    from .model import model_file, model_name_of, sha256_of

    path = model_file(options.model)
    return {"model": model_name_of(path), "model_sha256": sha256_of(path), "output_format": options.output_format,
            "confidence_threshold": options.confidence_threshold,
            "mirror_tolerance_mm": options.mirror_tolerance_mm, "threshold": options.threshold,
            "table_removal_mm": options.table_removal_mm}


def check_settings(out_dir: Path, settings: dict[str, Any], *, resume: bool) -> None:
    """Refuse to resume a batch whose outputs were made with another model or settings; record ``settings`` in
    ``OUT/.landmark-detector-batch/settings.json`` for the next run.

    Raises:
        UsageError: ``resume`` and the recorded settings differ from ``settings`` (nothing was run).
    """
    path = out_dir / RECORDS_DIR / SETTINGS_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if resume and isinstance(recorded, dict) and recorded != settings:
        changed = "; ".join(f"{key} {recorded.get(key)!r} then, {value!r} now" for key, value in settings.items()
                            if recorded.get(key) != value)
        raise UsageError(f"{out_dir} holds outputs made with other settings ({changed}); resuming would mix them. "
                         f"Resume with model {recorded.get('model')!r} and the same settings, write to another "
                         "folder, or pass overwrite=True to redo every case.")
    if resume and recorded is None and any(out_dir.glob(f"*.{settings['output_format']}")):
        logger.warning("%s has no record of the model its outputs were made with (an older version wrote them); "
                       "resuming with model %s without checking.", out_dir, settings["model"])
    if recorded != settings:
        path.parent.mkdir(exist_ok=True)
        with atomic_open(path, "w", overwrite=True) as f:
            json.dump(settings, f, indent=2)


@functools.lru_cache(maxsize=2)
def cached_model(model: str, device: str, threads: int | None) -> Any:
    """Load a model once per process (workers of a pool or a Dask cluster reuse it for every case); ``threads``, when
    given, sets its network's CPU threads."""
    from .model import load_model

    loaded = load_model(model, device)
    if threads is not None:
        loaded.cpu_threads = threads
    return loaded


def pending_cases(cases: list[BatchCase], out_dir: Path, options: BatchOptions, *, resume: bool,
                  overwrite: bool) -> tuple[list[BatchCase], list[CaseResult]]:
    """Split cases into those to run and the results of those already finished (resume).

    Raises:
        FileExistsError: outputs exist and neither ``resume`` nor ``overwrite`` was given (nothing was run).
    """
    done = [c for c in cases if output_path(out_dir, c, options).exists()]
    if done and not (resume or overwrite):
        examples = ", ".join(output_path(out_dir, c, options).name for c in done[:3])
        raise FileExistsError(f"{out_dir} already holds outputs for {len(done)} of {len(cases)} cases ({examples}"
                              f"{', ...' if len(done) > 3 else ''}); pass resume=True to skip finished cases or "
                              "overwrite=True to redo them.")
    if overwrite:
        return cases, []
    finished = []
    for case in done:
        record = read_record(out_dir, case)
        finished.append(dataclasses.replace(record, earlier=True) if record is not None and record.status == "ok"
                        else CaseResult(case.name, "skipped", output=output_path(out_dir, case, options).name,
                                        error="output already existed; no record of it", earlier=True))
    done_names = {c.name for c in done}
    return [c for c in cases if c.name not in done_names], finished


def remove_stale_temporaries(out_dir: Path, cases: list[BatchCase], options: BatchOptions,
                             summary: Path | None = None, *, settings: bool = False) -> None:
    """Delete the temporary files a killed run left for ``cases`` and ``summary`` (only theirs: other shards may be
    writing), and with ``settings`` those of the folder's settings record (for a run that owns the folder: one
    without a shard; shards leave them to the run that merges their summaries).

    ``fileio.atomic_path`` names them ``.<target name>.<random>.tmp<suffixes>``.
    """
    targets = {p for c in cases for p in (output_path(out_dir, c, options), record_path(out_dir, c))}
    targets |= {summary} if summary is not None else set()
    targets |= {out_dir / RECORDS_DIR / SETTINGS_FILE} if settings else set()
    for folder in {t.parent for t in targets if t.parent.is_dir()}:
        for entry in folder.iterdir():
            if entry.name.startswith(".") and ".tmp" in entry.name:
                target_name = entry.name[1:].rsplit(".tmp", 1)[0].rsplit(".", 1)[0]
                if folder / target_name in targets:
                    entry.unlink(missing_ok=True)


def run_batch(cases: list[BatchCase], out_dir: str | os.PathLike[str], options: BatchOptions = BatchOptions(), *,
              workers: int = 1, resume: bool = False, overwrite: bool = False, shard: tuple[int, int] | None = None,
              scheduler: str | None = None,
              on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Run detection on ``cases`` (already sharded), write one output per case and the summary CSV.

    Args:
        cases: the cases of this run (``shard_cases(find_volumes(folder), shard)``).
        out_dir: output folder (created).
        options: model, device, output format, confidence threshold.
        workers: local processes (1: in this process, threads reading ahead while this case is detected).
        resume: skip cases whose output exists (refused when they were made with another model or settings);
            overwrite: redo them. Without either, existing outputs are an error.
        shard: (K, N) of this run, names the summary file ``summary-K-of-N.csv``.
        scheduler: address of a Dask distributed scheduler to run the cases on (its workers must see ``out_dir``).
        on_result: called in this process with each case's result as it finishes (progress bars).
    Returns:
        Results of all cases (finished earlier ones included, marked ``earlier``), in case order.
    Raises:
        FileExistsError: outputs exist and neither ``resume`` nor ``overwrite`` was given.
        UsageError: ``resume`` in a folder made with another model or settings (``check_settings``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_writable_target(out / summary_name(shard), overwrite=True)
    settings = batch_settings(options)
    todo, finished = pending_cases(cases, out, options, resume=resume, overwrite=overwrite)
    check_settings(out, settings, resume=resume)
    remove_stale_temporaries(out, todo, options, out / summary_name(shard), settings=shard is None)
    if todo and not scheduler:  # a bad model is one clear error here rather than a failure per case
        cached_model(options.model, options.device, options.threads)
    results = {r.case: r for r in finished}
    for result in finished:
        if on_result:
            on_result(result)
    try:
        if scheduler:
            stream = _run_dask(todo, out, options, overwrite, scheduler)
        elif workers > 1:
            stream = _run_processes(todo, out, options, overwrite, workers)
        else:
            stream = _run_here(todo, out, options, overwrite)
        for result in stream:
            results[result.case] = result
            if result.status == "failed":
                # The traceback of a bug is shown with the failure; that of a bad input with --verbose or --debug.
                logger.warning("%s failed: %s", result.case, result.error)
                if result.traceback:
                    logger.log(logging.ERROR if result.unexpected else logging.DEBUG, "%s failed:\n%s", result.case,
                               result.traceback.rstrip())
            if on_result:
                on_result(result)
    finally:  # also after Ctrl+C: the summary lists what finished
        write_summary(out / summary_name(shard), [results[c.name] for c in cases if c.name in results])
    return [results[c.name] for c in cases]


def _run_here(cases: list[BatchCase], out: Path, options: BatchOptions, overwrite: bool) -> Iterator[CaseResult]:
    """Case by case, threads reading up to ``READ_AHEAD`` volumes ahead while this one is detected (decompression
    releases the GIL), so that the reading uses the cores the network leaves and a slow case does not stall it."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=READ_AHEAD) as reader:
        ahead = collections.deque(reader.submit(read_volume, case.path) for case in cases[:READ_AHEAD])
        for index, case in enumerate(cases):
            if index + READ_AHEAD < len(cases):
                ahead.append(reader.submit(read_volume, cases[index + READ_AHEAD].path))
            current = ahead.popleft()
            yield run_case(case, out, options, overwrite, volume=current.result)
            del current


def _run_processes(cases: list[BatchCase], out: Path, options: BatchOptions, overwrite: bool,
                   workers: int) -> Iterator[CaseResult]:
    context = multiprocessing.get_context("spawn")  # torch is not fork-safe once it has started threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_case, case, out, options, overwrite) for case in cases]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _run_dask(cases: list[BatchCase], out: Path, options: BatchOptions, overwrite: bool,
              scheduler: str) -> Iterator[CaseResult]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs Dask distributed: pip install distributed") from None
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as error:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({error}); check the address.") from None
    with client:
        futures = client.map(run_case, cases, out_dir=out, options=options, overwrite=overwrite, pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures)


def write_summary(path: Path, results: Iterable[CaseResult]) -> None:
    """summary.csv, written atomically: case, status, seconds, landmarks found, one ``confidence <name>`` column per
    landmark, output file, error message."""
    results = list(results)
    names = list(dict.fromkeys(name for r in results for name in r.confidence))
    with atomic_open(path, "w", overwrite=True, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "status", "seconds", "found", *(f"confidence {n}" for n in names), "output", "error"])
        for r in results:
            writer.writerow([r.case, r.status, "" if r.seconds is None else f"{r.seconds:.3f}",
                             "" if r.found is None else r.found, *(r.confidence.get(n, "") for n in names),
                             r.output, r.error])
