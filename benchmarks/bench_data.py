"""Data pipeline benchmark: preprocessing a synthetic 20M-interaction CSV, and window throughput.

    make bench-data                      # or: .venv/bin/python benchmarks/bench_data.py
    .venv/bin/python benchmarks/bench_data.py --interactions 2000000   # a quicker run
    .venv/bin/python benchmarks/bench_data.py --chunk_rows 0,1000000   # in memory vs chunked

Targets (2-core machine): preprocessing under 60 s and 4 GiB peak RSS; at least 50,000
windows/s at max length 200 in one process. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generative_recommenders.data.dataset import SequenceDataset, collate_sequences  # noqa: E402
from generative_recommenders.data.store import SequenceStore  # noqa: E402

NUM_USERS = 100_000
NUM_ITEMS = 1_000_000


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """[T, width] uint8 ASCII digits of non-negative integers that have exactly ``width`` digits."""
    out = np.empty((values.size, width), dtype=np.uint8)
    rest = values.copy()
    for k in range(width - 1, -1, -1):
        out[:, k] = rest % 10 + 48
        rest //= 10
    return out


def write_synthetic_csv(path: pathlib.Path, n: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    """user_id,item_id,timestamp,rating lines in random order, written as raw bytes.

    100k users (6-digit ids, 200 events each on average), 1M items with a skewed popularity
    (7-digit ids), 10-digit timestamps, ratings 1-5: 28 bytes per line.
    """
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(b"user_id,item_id,timestamp,rating\n")
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            users = rng.integers(100_000, 100_000 + NUM_USERS, m)
            items = 1_000_000 + (rng.random(m) ** 3 * NUM_ITEMS).astype(np.int64)
            times = rng.integers(1_000_000_000, 1_700_000_000, m)
            ratings = rng.integers(1, 6, m)
            line = np.empty((m, 28), dtype=np.uint8)
            line[:, 0:6] = _digits(users, 6)
            line[:, 7:14] = _digits(items, 7)
            line[:, 15:25] = _digits(times, 10)
            line[:, [6, 14, 25]] = ord(",")
            line[:, 26] = ratings + 48
            line[:, 27] = ord("\n")
            f.write(line.tobytes())


def time_preprocess(
    csv_path: pathlib.Path, data_dir: pathlib.Path, chunk_rows: int = 0
) -> tuple[float, float]:
    """(wall seconds, peak RSS GiB) of preprocess_public_data.py run as a child process."""
    cmd = [
        sys.executable, str(REPO / "preprocess_public_data.py"), "--dataset=csv",
        f"--input_file={csv_path}", "--name=synthetic", f"--data_dir={data_dir}",
        f"--chunk_rows={chunk_rows}",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"preprocessing failed:\n{out}")
    print(out, end="")
    return seconds, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def time_windows(store: SequenceStore, max_len: int, n: int, seed: int = 0) -> float:
    """Windows per second of SequenceDataset.__getitem__ over random users."""
    ds = SequenceDataset(store, max_sequence_length=max_len, ignore_last_n=1)
    idx = np.random.default_rng(seed).integers(0, len(ds), n).tolist()
    start = time.perf_counter()
    for i in idx:
        ds[i]
    return n / (time.perf_counter() - start)


def time_batches(store: SequenceStore, max_len: int, batch: int, n: int, seed: int = 0) -> float:
    """Batches per second of windows + collate_sequences (one process, no DataLoader)."""
    ds = SequenceDataset(store, max_sequence_length=max_len, ignore_last_n=1)
    idx = np.random.default_rng(seed).integers(0, len(ds), (n, batch)).tolist()
    start = time.perf_counter()
    for rows in idx:
        collate_sequences([ds[i] for i in rows])
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=20_000_000)
    parser.add_argument("--max_len", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--tmp_dir", default=None, help="where the CSV and store go (deleted)")
    parser.add_argument(
        "--chunk_rows",
        default="0",
        help="comma-separated --chunk_rows values to preprocess with (0: in memory)",
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp_dir, prefix="bench-data-") as tmp:
        tmp_path = pathlib.Path(tmp)
        csv_path = tmp_path / "synthetic.csv"
        start = time.perf_counter()
        write_synthetic_csv(csv_path, args.interactions)
        gen_s = time.perf_counter() - start
        size_mb = csv_path.stat().st_size / 1e6
        rows.append(("generate synthetic CSV", f"{gen_s:.1f} s", f"{size_mb:,.0f} MB"))
        for chunk_rows in (int(c) for c in args.chunk_rows.split(",")):
            seconds, rss = time_preprocess(csv_path, tmp_path / "data", chunk_rows)
            how = f" in chunks of {chunk_rows:,}" if chunk_rows else ""
            rows.append(
                (
                    f"preprocess {args.interactions:,} interactions{how}",
                    f"{seconds:.1f} s",
                    f"{args.interactions / seconds / 1e6:.2f} M interactions/s, "
                    f"peak RSS {rss:.2f} GiB",
                )
            )
        store = SequenceStore.open(tmp_path / "data", "synthetic")
        wps = time_windows(store, args.max_len, 200_000)
        rows.append((f"windows, max length {args.max_len}", f"{wps:,.0f} /s", "one process"))
        bps = time_batches(store, args.max_len, args.batch_size, 1_000)
        rows.append(
            (
                f"windows + collate, batch {args.batch_size}",
                f"{bps:,.0f} batches/s",
                f"{bps * args.batch_size:,.0f} windows/s",
            )
        )
        del store

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {cores} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}")  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'result':>18}  detail")
    for name, value, detail in rows:
        print(f"{name:<{width}}  {value:>18}  {detail}")


if __name__ == "__main__":
    main()
