"""``landmark-detector batch``: a folder of volumes, bad cases, resume after a kill, shards, processes and Dask."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from LandmarkDetectorLib import batch, pipeline
from LandmarkDetectorLib.batch import (
    READ_AHEAD,
    RECORDS_DIR,
    BatchOptions,
    find_volumes,
    parse_shard,
    remove_stale_temporaries,
    run_batch,
    shard_cases,
)
from LandmarkDetectorLib.cli import main
from LandmarkDetectorLib.errors import InputError
from LandmarkDetectorLib.markups import read_markups
from LandmarkDetectorLib.synthetic.dataset import synthesize_case
from LandmarkDetectorLib.volume_io import write_volume

from phantoms import write_dicom_series

SEED = 535_353
CASES = 4
MODEL = ["--model", "hand-mr", "--device", "cpu"]


@pytest.fixture(scope="module")
def scans():
    return [synthesize_case("hand", SEED, i) for i in range(CASES)]


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory, scans):
    """Four synthetic hands: two NIfTI, one NRRD, one DICOM series folder."""
    folder = tmp_path_factory.mktemp("volumes")
    for index, scan in enumerate(scans):
        if index == 3:
            write_dicom_series(folder / "hand_3", scan.voxels_kji, scan.ijk_to_ras)
        else:
            write_volume(folder / f"hand_{index}.{'nrrd' if index == 2 else 'nii.gz'}", scan.voxels_kji,
                         scan.ijk_to_ras)
    return folder


@pytest.fixture
def mixed_folder(tmp_path, good_folder):
    """The good cases plus a truncated NIfTI, a text file named .nrrd, a stray text file and an empty folder."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for entry in good_folder.iterdir():
        (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (folder / "truncated.nii.gz").write_bytes((good_folder / "hand_0.nii.gz").read_bytes()[:4000])
    (folder / "notes.nrrd").write_text("not an image\n")
    (folder / "README.txt").write_text("ignored\n")
    (folder / "empty").mkdir()
    return folder


def summary_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.mrk.json"))}


def assert_same_landmarks(folder: Path, reference: Path) -> None:
    """Same files, labels and statuses; positions equal to 0.001 mm (thread counts change float rounding)."""
    assert list(outputs(folder)) == list(outputs(reference))
    for name in outputs(reference):
        a, b = read_markups(folder / name), read_markups(reference / name)
        assert [(p.label, p.status) for p in a.points] == [(p.label, p.status) for p in b.points]
        np.testing.assert_allclose(a.positions_ras(), b.positions_ras(), atol=1e-3)


def test_find_volumes_takes_files_and_dicom_folders(mixed_folder):
    names = [c.name for c in find_volumes(mixed_folder)]
    assert names == ["hand_0", "hand_1", "hand_2", "hand_3", "notes", "truncated"]


def test_find_volumes_refuses_colliding_names(tmp_path, scans):
    for suffix in ("nrrd", "nii.gz"):
        write_volume(tmp_path / f"case.{suffix}", scans[0].voxels_kji, scans[0].ijk_to_ras)
    with pytest.raises(InputError, match="same case name 'case'"):
        find_volumes(tmp_path)


def test_batch_of_good_and_bad_cases(tmp_path, mixed_folder, scans, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(mixed_folder), "--out", str(out), *MODEL]) == 1  # two cases failed
    assert "4 ok, 2 failed" in capsys.readouterr().out
    rows = summary_rows(out / "summary.csv")
    assert list(rows) == ["hand_0", "hand_1", "hand_2", "hand_3", "notes", "truncated"]
    assert rows["truncated"]["status"] == "failed" and "truncated" in rows["truncated"]["error"]
    assert rows["notes"]["status"] == "failed" and "cannot read" in rows["notes"]["error"]
    for index, scan in enumerate(scans):
        row = rows[f"hand_{index}"]
        assert row["status"] == "ok" and row["found"] == "5" and float(row["confidence MiddleTip"]) > 0.5
        assert float(row["seconds"]) > 0
        points = read_markups(out / f"hand_{index}.mrk.json")
        errors = np.linalg.norm(points.positions_ras() - scan.landmarks_ras, axis=1)
        assert errors.max() < 8.0, (index, errors)
    assert sorted(p.name for p in out.iterdir()) == [
        RECORDS_DIR, "hand_0.mrk.json", "hand_1.mrk.json", "hand_2.mrk.json", "hand_3.mrk.json", "summary.csv"]


def failure_logs(records, case: str) -> list[tuple[int, bool]]:
    """(level, has a traceback) of each log record about ``case`` failing."""
    return [(r.levelno, "Traceback (most recent call last)" in r.getMessage()) for r in records
            if r.getMessage().startswith(f"{case} failed")]


def test_a_failed_cases_traceback_is_logged_where_people_see_it(tmp_path, mixed_folder, monkeypatch, caplog):
    """A bad input gets a one-line warning and its traceback at DEBUG (shown by -v and --debug); a bug (an unexpected
    exception) gets its traceback at ERROR, shown whatever the flags, as ``detect`` shows it."""
    cases = [c for c in find_volumes(mixed_folder) if c.name in ("hand_1", "notes")]

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "detect_landmarks", bug)
    with caplog.at_level(logging.DEBUG, logger="LandmarkDetectorLib.batch"):
        results = run_batch(cases, tmp_path / "out", BatchOptions(model="hand-mr", device="cpu"))
    assert [r.status for r in results] == ["failed", "failed"]
    assert failure_logs(caplog.records, "notes") == [(logging.WARNING, False), (logging.DEBUG, True)]
    assert failure_logs(caplog.records, "hand_1") == [(logging.WARNING, False), (logging.ERROR, True)]
    assert "ZeroDivisionError: a bug" in caplog.text
    record = (tmp_path / "out" / RECORDS_DIR / "hand_1.json").read_text()
    assert "Traceback" not in record and "unexpected" not in record


@pytest.mark.slow
def test_a_worker_processs_failure_is_logged_by_the_batch(tmp_path, mixed_folder, caplog):
    cases = [c for c in find_volumes(mixed_folder) if c.name == "notes"]
    with caplog.at_level(logging.DEBUG, logger="LandmarkDetectorLib.batch"):
        run_batch(cases, tmp_path / "out", BatchOptions(model="hand-mr", device="cpu"), workers=2)
    assert failure_logs(caplog.records, "notes") == [(logging.WARNING, False), (logging.DEBUG, True)]


def test_batch_never_overwrites_without_being_asked(tmp_path, good_folder, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "hand_1.mrk.json").write_text("the user's own file")
    assert main(["batch", str(good_folder), "--out", str(out), *MODEL]) == 2  # wrong usage
    error = capsys.readouterr().err
    assert "--resume" in error and "--overwrite" in error and "=True" not in error
    assert (out / "hand_1.mrk.json").read_text() == "the user's own file"
    assert not (out / "hand_0.mrk.json").exists()  # refused before running anything
    assert main(["batch", str(good_folder), "--out", str(out), "--resume", *MODEL]) == 0
    assert (out / "hand_1.mrk.json").read_text() == "the user's own file"
    assert summary_rows(out / "summary.csv")["hand_1"]["status"] == "skipped"
    assert main(["batch", str(good_folder), "--out", str(out), "--overwrite", *MODEL]) == 0
    assert len(read_markups(out / "hand_1.mrk.json").points) == 5


def test_batch_other_formats_and_bad_model(tmp_path, good_folder, capsys):
    out = tmp_path / "fcsv"
    assert main(["batch", str(good_folder), "--out", str(out), "--format", "fcsv", *MODEL]) == 0
    assert sorted(p.name for p in out.glob("*.fcsv")) == [f"hand_{i}.fcsv" for i in range(CASES)]
    capsys.readouterr()
    assert main(["batch", str(good_folder), "--out", str(tmp_path / "bad"), "--model", str(good_folder /
                                                                                          "hand_2.nrrd")]) == 1
    assert "not a TorchScript model bundle" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_stale_temporaries_of_this_run_are_removed_and_others_kept(tmp_path, good_folder):
    out = tmp_path / "out"
    (out / RECORDS_DIR).mkdir(parents=True)
    ours = [out / ".hand_0.mrk.json.ab12cd.tmp.mrk.json", out / RECORDS_DIR / ".hand_0.json.x_9.tmp.json",
            out / ".summary.csv.k9k9k9.tmp.csv"]
    others = [out / ".hand_1.mrk.json.ab12cd.tmp.mrk.json", out / ".summary-1-of-2.csv.k9k9k9.tmp.csv",
              out / "hand_0.mrk.json"]
    for path in ours + others:
        path.write_text("")
    remove_stale_temporaries(out, find_volumes(good_folder)[:1], BatchOptions(), out / "summary.csv")
    assert [p.exists() for p in ours + others] == [False] * len(ours) + [True] * len(others)


def test_a_killed_runs_settings_temporary_is_removed_by_a_run_over_all_cases(tmp_path, good_folder):
    """A batch killed while it records its settings leaves ``.settings.json.<random>.tmp.json``; a shard leaves it
    (another shard may be writing the same record), a run over all cases removes it."""
    out = tmp_path / "out"
    cases = find_volumes(good_folder)[:1]
    options = BatchOptions(model="hand-mr", device="cpu")
    run_batch(cases, out, options)
    stale = out / RECORDS_DIR / f".{batch.SETTINGS_FILE}.0123abcd.tmp.json"
    stale.write_text("{")
    run_batch(cases, out, options, resume=True, shard=(1, 1))
    assert stale.exists()
    run_batch(cases, out, options, resume=True)
    assert not stale.exists() and (out / RECORDS_DIR / batch.SETTINGS_FILE).is_file()


def test_reading_ahead_keeps_order_and_at_most_read_ahead_plus_one_volumes(tmp_path, monkeypatch):
    cases = [batch.BatchCase(f"c{i}", tmp_path / f"c{i}.nrrd") for i in range(7)]
    started, held = [], []

    def slow_read(path):
        started.append(path.stem)
        time.sleep(0.01)
        return path.stem

    def run_case(case, out, options, overwrite, volume):
        time.sleep(0.03)  # detection slower than reading: the readers get as far ahead as they may
        assert volume() == case.name
        held.append(len(started) - len(held))  # volumes read or being read, this one included
        return batch.CaseResult(case.name, "ok")

    monkeypatch.setattr(batch, "read_volume", slow_read)
    monkeypatch.setattr(batch, "run_case", run_case)
    results = list(batch._run_here(cases, tmp_path, BatchOptions(), overwrite=False))
    assert [r.case for r in results] == [c.name for c in cases] and sorted(started) == [c.name for c in cases]
    assert max(held) == READ_AHEAD + 1


def test_shard_arguments():
    assert parse_shard("2/5") == (2, 5)
    for bad in ("0/3", "4/3", "x", "1/2/3"):
        with pytest.raises(InputError):
            parse_shard(bad)


def test_shards_cover_every_case_once_and_resume_merges_their_summaries(tmp_path, good_folder):
    cases = find_volumes(good_folder)
    shards = [shard_cases(cases, (k, 3)) for k in (1, 2, 3)]
    assert sorted(c.name for s in shards for c in s) == [c.name for c in cases]
    out = tmp_path / "out"
    for k in (1, 2, 3):
        assert main(["batch", str(good_folder), "--out", str(out), "--shard", f"{k}/3", *MODEL]) == 0
        assert len(summary_rows(out / f"summary-{k}-of-3.csv")) == len(shards[k - 1])
    assert main(["batch", str(good_folder), "--out", str(out), "--resume", *MODEL]) == 0
    rows = summary_rows(out / "summary.csv")
    assert list(rows) == [c.name for c in cases] and {r["status"] for r in rows.values()} == {"ok"}


@pytest.mark.slow
def test_batch_killed_and_resumed_loses_nothing(tmp_path, good_folder):
    """SIGKILL a batch process as soon as its first case is done and again later; resuming gives exactly the
    outputs of an uninterrupted run, and no temporary file is left behind."""
    reference = tmp_path / "reference"
    assert main(["batch", str(good_folder), "--out", str(reference), *MODEL]) == 0
    out = tmp_path / "out"
    command = [sys.executable, "-m", "LandmarkDetectorLib.cli", "batch", str(good_folder), "--out", str(out),
               "--resume", *MODEL]
    for finished_before_kill in (1, 2):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(list(out.glob("*.mrk.json"))) < finished_before_kill and time.monotonic() < deadline:
            assert process.poll() is None, "the batch ended before it could be killed"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert main(["batch", str(good_folder), "--out", str(out), "--resume", *MODEL]) == 0
    assert outputs(out) == outputs(reference)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    assert {r["status"] for r in summary_rows(out / "summary.csv").values()} == {"ok"}


@pytest.mark.slow
def test_batch_in_worker_processes_matches_one_process(tmp_path, good_folder):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["batch", str(good_folder), "--out", str(one), *MODEL]) == 0
    assert main(["batch", str(good_folder), "--out", str(two), "--workers", "2", *MODEL]) == 0
    assert_same_landmarks(two, one)
    assert list(summary_rows(two / "summary.csv")) == [f"hand_{i}" for i in range(CASES)]


@pytest.mark.slow
def test_batch_on_a_local_dask_cluster(tmp_path, good_folder):
    distributed = pytest.importorskip("distributed")
    one = tmp_path / "one"
    assert main(["batch", str(good_folder), "--out", str(one), *MODEL]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        results = run_batch(find_volumes(good_folder), out, BatchOptions(model="hand-mr", device="cpu"),
                            scheduler=cluster.scheduler_address)
    assert [r.status for r in results] == ["ok"] * CASES
    assert_same_landmarks(out, one)


@pytest.mark.slow
def test_unreachable_dask_scheduler_is_a_clear_error(tmp_path, good_folder, capsys):
    pytest.importorskip("distributed")
    assert main(["batch", str(good_folder), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9",
                 *MODEL]) == 1
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def written_names(folder: Path) -> set[str]:
    """Names of everything under ``folder`` (temporaries included), as a batch writes them."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.is_dir() else set()


@pytest.mark.slow
def test_batch_killed_at_random_moments_resumes_to_the_same_outputs(tmp_path, good_folder):
    """SIGKILL a batch five times at random moments (seeded delays): while it starts and loads the model, or at a
    random delay after it begins writing a file (a record, a landmark file or the summary). Resuming gives
    exactly the outputs of an uninterrupted run, with no temporary file left."""
    folder = tmp_path / "volumes"  # six copies of the cases: a batch long enough to be killed five times
    folder.mkdir()
    for copy in range(6):
        for entry in good_folder.iterdir():
            (shutil.copytree if entry.is_dir() else shutil.copyfile)(entry, folder / f"{copy}-{entry.name}")
    reference = tmp_path / "reference"
    assert main(["batch", str(folder), "--out", str(reference), *MODEL]) == 0
    out = tmp_path / "out"
    command = [sys.executable, "-m", "LandmarkDetectorLib.cli", "batch", str(folder), "--out", str(out),
               "--resume", *MODEL]
    rng = np.random.default_rng(8_088)
    kills = 0
    for attempt in range(5):
        before = written_names(out)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt == 0:  # somewhere in start-up (about 1.3 s): imports, model loading, reading the first volume
            time.sleep(rng.uniform(0.3, 1.2))
        else:  # within a file being written (short delays) or in the next case's detection (longer ones)
            deadline = time.monotonic() + 120
            while written_names(out) == before and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.01 if attempt % 2 else 0.4))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 3
    assert main(["batch", str(folder), "--out", str(out), "--resume", *MODEL]) == 0
    assert outputs(out) == outputs(reference)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    rows, expected = summary_rows(out / "summary.csv"), summary_rows(reference / "summary.csv")
    assert [(r["case"], r["status"], r["found"]) for r in rows.values()] == \
        [(r["case"], r["status"], r["found"]) for r in expected.values()]
