"""Fuzz the markups readers with mutated real files: each input must read, or fail with FileFormatError.

``read_markups`` documents FileFormatError as its only error for a bad file; any other exception is a crash.
Seeds: Slicer's example files (``../shared/formats/examples``, when present) and files this package writes in all
five endings (labels with commas, quotes, tabs and unicode; undefined and preview points). Each input is a seed
with 1 to 3 mutations: flipped bits, a truncation, inserted bytes or tokens (quotes, separators, NUL, invalid
UTF-8, huge numbers, deep JSON nesting...), duplicated, deleted or swapped lines, and for JSON files a value
swapped for one of another type or a key deleted. One input in ten is written under another of the five endings.
The same ``--seed`` and ``--count`` give the same inputs.

Usage::

    python scripts/fuzz_markups.py --count 100000 --seed 0 [--examples DIR] [--save-failures DIR]

It prints the count of each outcome and exits 1 if any input raised something other than FileFormatError.

Result, recorded: ``python scripts/fuzz_markups.py --count 100000 --seed 0`` (2 cores shared with a training run,
208 s): 100,000 inputs, 33,802 read, 66,198 FileFormatError, no other exception. Before the fixes it found, in its
first 30,000 inputs, 51 csv.Error (a field over 128 KiB), 18 RecursionError (JSON nested deeper than the stack),
11 OverflowError (a JSON integer coordinate beyond the float range) and 6 ValueError (a JSON integer of over 4,300
digits); markups.py now turns each into a FileFormatError.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from LandmarkDetectorLib.errors import FileFormatError
from LandmarkDetectorLib.markups import MarkupsPoint, PointList, read_markups, write_markups

SUFFIXES = (".mrk.json", ".json", ".fcsv", ".csv", ".tsv")
DEFAULT_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "formats" / "examples"
TOKENS = [b",", b'"', b'""', b"\n", b"\r", b"\r\n", b"\t", b"#", b"{", b"}", b"[", b"]", b":", b"\x00", b"\xff",
          b"\xef\xbb\xbf", b"NaN", b"Infinity", b"-Infinity", b"-", b"1e999", b"-0", b"0x1F", b"\\u0000", b"\\ud800",
          "é漢字".encode(), b"1" + b"0" * 400, b"1" + b"0" * 5000, b"[" * 5000, b"x" * 140_000,
          b"# CoordinateSystem = RAS\n", b"# CoordinateSystem = 7\n", b"label,l,p,s\n", b"label,r,a,s,defined\n",
          b"vtkMRMLMarkupsFiducialNode_1"]
VALUES: list[Any] = [None, True, False, 0, -1, 1.5, 1e308, float("nan"), float("inf"), 10**30, 10**400, [10**400, 0, 0],
                     "", "x", "LPS", "RAS", "mm", "um", ["um"], "defined", "undefined", "preview", "missing",
                     "Fiducial", "Curve", [], {}, [1, 2], [1, 2, 3], [1, "2", 3], [True, 0, 0], ["a"], [[1, 2, 3]],
                     {"a": 1}, "\ud800", "a,b\n\"c\""]


def writer_seeds(folder: Path) -> list[Path]:
    """Files our writer makes, in every ending."""
    points = PointList((
        MarkupsPoint("L1", (1.0, 2.0, 3.0)),
        MarkupsPoint('a,b "quoted"\té ü 漢字', (-4.5, 5.25, 6.123456789012345), 'desc, with "comma"'),
        MarkupsPoint("not placed", (7.0, -8.0, 9.5), "kept position", "undefined"),
        MarkupsPoint("preview", (1e-300, -123456.789, 0.1 + 0.2), status="preview"),
    ), name="Fuzz seed")
    paths = []
    for suffix in SUFFIXES:
        path = folder / f"written{suffix}"
        write_markups(path, points, overwrite=True)
        paths.append(path)
    return paths


def load_seeds(examples: Path | None, folder: Path) -> list[tuple[str, bytes]]:
    """(suffix, content) of every seed file, sorted so that the inputs do not depend on the listing order."""
    files = writer_seeds(folder)
    if examples is not None and examples.is_dir():
        files += sorted(p for p in examples.iterdir() if p.name.lower().endswith(SUFFIXES))
    seeds = []
    for path in files:
        suffix = next(s for s in SUFFIXES if path.name.lower().endswith(s))
        seeds.append((suffix, path.read_bytes()))
    return seeds


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def insert(data: bytes, rng: random.Random) -> bytes:
    piece = rng.choice(TOKENS) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 8))
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at:]


def edit_lines(data: bytes, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    action = rng.randrange(3)
    if action == 0:
        lines.insert(i, lines[j])  # duplicate
    elif action == 1 and len(lines) > 1:
        del lines[i]
    else:
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def swap_json_value(data: bytes, rng: random.Random) -> bytes:
    """Replace a random value of a JSON document by one of VALUES, or delete a key (non-JSON data: unchanged)."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return data
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            slots.append((node, key))
            walk(value)

    walk(document)
    if not slots:
        return data
    container, key = rng.choice(slots)
    if isinstance(container, dict) and rng.random() < 0.2:
        del container[key]
    else:
        container[key] = rng.choice(VALUES)
    return json.dumps(document, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 4])).encode("utf-8",
                                                                                                    "surrogatepass")


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [flip_bits, truncate, insert, edit_lines, swap_json_value]


def fuzz(count: int, seed: int, examples: Path | None = DEFAULT_EXAMPLES,
         save_failures: Path | None = None) -> tuple[Counter[str], dict[str, str]]:
    """Read ``count`` mutated files.

    Returns:
        Outcome counts ("read", "FileFormatError" or another exception's name) and, per disallowed exception,
        its first message.
    """
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fuzz-markups-") as tmp:
        folder = Path(tmp)
        seeds = load_seeds(examples, folder)
        for index in range(count):
            suffix, data = rng.choice(seeds)
            for _ in range(rng.randint(1, 3)):
                data = rng.choice(MUTATIONS)(data, rng)
            if rng.random() < 0.1:
                suffix = rng.choice(SUFFIXES)
            path = folder / f"input{suffix}"
            path.write_bytes(data)
            try:
                read_markups(path)
                outcomes["read"] += 1
            except FileFormatError:
                outcomes["FileFormatError"] += 1
            except Exception as error:  # the fuzzer's purpose: count whatever escapes
                name = type(error).__name__
                outcomes[name] += 1
                if name not in failures:
                    failures[name] = f"input {index}: {str(error)[:200]}"
                    if save_failures is not None:
                        save_failures.mkdir(parents=True, exist_ok=True)
                        (save_failures / f"{index}-{name}{suffix}").write_bytes(data)
    return outcomes, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="number of inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--examples", type=Path, default=DEFAULT_EXAMPLES, help="folder of Slicer markups files")
    parser.add_argument("--save-failures", type=Path, help="write the first input of each crash type here")
    args = parser.parse_args(argv)
    logging.getLogger("LandmarkDetectorLib.markups").setLevel(logging.ERROR)  # its warnings are expected here
    outcomes, failures = fuzz(args.count, args.seed, args.examples, args.save_failures)
    print(f"{args.count} inputs (seed {args.seed}): " + ", ".join(f"{n} {k}" for k, n in outcomes.most_common()))
    for name, example in failures.items():
        print(f"  {name}: {example}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
