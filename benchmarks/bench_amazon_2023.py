"""Amazon Reviews 2023 preprocessing: wall time and peak RSS on synthetic review JSON lines.

    .venv/bin/python benchmarks/bench_amazon_2023.py                    # 3,000,000 reviews
    .venv/bin/python benchmarks/bench_amazon_2023.py --reviews 500000   # a quicker run

Writes gzipped ``<Category>.jsonl.gz`` files in the published layout (every key of a real review,
unicode text) and runs ``preprocess_public_data.py --dataset amazon-2023`` on each as a child
process. Three files: N/3 reviews, N reviews, and N/3 reviews whose text is 8x longer. Peak RSS
should grow with the number of reviews and distinct ids, not with the text: the third file's
peak should match the first's. Prints a table; asserts nothing.

Each file is generated in a child process of its own: on Linux a child's peak RSS (``ru_maxrss``)
starts from what its parent had mapped when it forked, so a parent that had built the synthetic
reviews itself would inflate every measurement. The benchmark's own RSS is printed as the floor.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", dtype=np.uint8)
TEXT = (
    "Läuft flüssig, the controls feel right and the story kept me up at night — 10/10. "
    "Would buy again; shipping was fast and the box arrived intact. 日本語のレビュー。 "
)


def _ids(rng: np.random.Generator, n: int, prefix: str, width: int) -> list[str]:
    chars = ALPHABET[rng.integers(0, ALPHABET.size, (n, width))]
    return [prefix + row.tobytes().decode() for row in chars]


def write_reviews(path: pathlib.Path, n: int, text_repeat: int, seed: int = 0) -> None:
    """n review lines: users ~ n/8 distinct 28-char ids, items ~ n/20 with skewed popularity."""
    rng = np.random.default_rng(seed)
    users = _ids(rng, max(n // 8, 1), "A", 27)
    items = _ids(rng, max(n // 20, 1), "B0", 8)
    user_idx = rng.integers(0, len(users), n)
    item_idx = (rng.random(n) ** 2 * len(items)).astype(np.int64)
    stamps = rng.integers(1_300_000_000_000, 1_700_000_000_000, n)
    ratings = rng.integers(1, 6, n)
    text = json.dumps(TEXT * text_repeat, ensure_ascii=False)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for u, i, t, r in zip(
            user_idx.tolist(), item_idx.tolist(), stamps.tolist(), ratings.tolist(), strict=True
        ):
            item = items[i]
            f.write(
                f'{{"rating": {r}.0, "title": "Great game", "text": {text}, "images": [], '
                f'"asin": "{item}", "parent_asin": "{item}", "user_id": "{users[u]}", '
                f'"timestamp": {t}, "helpful_vote": 0, "verified_purchase": true}}\n'
            )


def generate(path: pathlib.Path, n: int, text_repeat: int) -> float:
    """Seconds to write the file, in a child process (see the module docstring)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--generate", str(path), str(n), str(text_repeat)], check=True
    )
    return time.perf_counter() - start


def preprocess(path: pathlib.Path, data_dir: pathlib.Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS GiB, summary) of preprocess_public_data.py as a child process."""
    cmd = [
        sys.executable, str(REPO / "preprocess_public_data.py"), "--dataset=amazon-2023",
        f"--input_file={path}", f"--data_dir={data_dir}",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"preprocessing failed:\n{out}")
    return seconds, usage.ru_maxrss / 2**20, out  # ru_maxrss is in KiB on Linux


def _uncompressed_mb(path: pathlib.Path) -> float:
    size = 0
    with gzip.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            size += len(block)
    return size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=3_000_000)
    parser.add_argument("--tmp_dir", default=None, help="where the files and stores go (deleted)")
    parser.add_argument("--generate", nargs=3, help=argparse.SUPPRESS)  # PATH N TEXT_REPEAT
    args = parser.parse_args()
    if args.generate:
        write_reviews(pathlib.Path(args.generate[0]), int(args.generate[1]), int(args.generate[2]))
        return
    cases = [
        (args.reviews // 3, 1, "short text"),
        (args.reviews, 1, "short text"),
        (args.reviews // 3, 8, "8x longer text"),
    ]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp_dir, prefix="bench-amazon-2023-") as tmp:
        for n, repeat, what in cases:
            folder = pathlib.Path(tmp) / f"{n}-{repeat}"
            folder.mkdir()
            path = folder / "Video_Games.jsonl.gz"
            gen_s = generate(path, n, repeat)
            raw_mb, gz_mb = _uncompressed_mb(path), path.stat().st_size / 1e6
            seconds, rss, out = preprocess(path, folder / "data")
            kept = next((line for line in out.splitlines() if line.startswith("after")), "")
            rows.append(
                (f"{n:,} reviews, {what}", f"{raw_mb:,.0f} MB ({gz_mb:,.0f} MB gz)",
                 f"{seconds:.1f} s", f"{n / seconds / 1e3:.0f} k/s", f"{rss:.2f} GiB",
                 f"generated in {gen_s:.0f} s; {kept}")
            )  # fmt: skip
            path.unlink()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, "
          f"load average {load:.2f}; this benchmark's own peak RSS {floor:.2f} GiB")  # fmt: skip
    header = ("file", "size", "preprocess", "reviews/s", "peak RSS", "detail")
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(5)]
    for row in [header, *rows]:
        print("  ".join(f"{str(c):<{w}}" for c, w in zip(row[:5], widths, strict=True)), row[5])


if __name__ == "__main__":
    main()
