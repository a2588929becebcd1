"""Quality on real data: the paper's ML-1M settings on ML-100K, several seeds, one table.

    .venv/bin/python benchmarks/quality_ml100k.py --protocol test --seeds 42,1,2
    .venv/bin/python benchmarks/quality_ml100k.py --protocol test --epochs 101 --seeds 42
    .venv/bin/python benchmarks/quality_ml100k.py --protocol valid --seeds 42
    .venv/bin/python benchmarks/quality_ml100k.py --settings HSTU \
        --bindings 'train_fn.negatives_sharing = "batch"'

Each run is ``main.py`` with the paper's gin file, ``train_fn.dataset_name="ml-100k"`` and the
seed; ``--protocol valid`` adds the validation split with early stopping; ``--bindings`` adds
gin bindings to every run (they also name the runs' folders). The script prints a
markdown table of the final metrics (mean over seeds, and each run) with wall times, and writes
it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = {  # name: (paper gin file, epochs of the quality bar)
    "SASRec": ("configs/ml-1m/sasrec-sampled-softmax-n128-final.gin", 35),
    "HSTU": ("configs/ml-1m/hstu-sampled-softmax-n128-final.gin", 35),
    "HSTU-large": ("configs/ml-1m/hstu-sampled-softmax-n128-large-final.gin", 13),
}
METRICS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "mrr")


def run_one(
    setting: str,
    seed: int,
    epochs: int,
    protocol: str,
    root: pathlib.Path,
    workers: int,
    extra_bindings: tuple[str, ...] = (),
) -> tuple[dict, float]:
    gin_file, _ = SETTINGS[setting]
    tag = "".join(f"-{_slug(b)}" for b in extra_bindings)
    exp_dir = root / f"{setting}-s{seed}-e{epochs}-{protocol}{tag}"
    bindings = [
        'train_fn.dataset_name = "ml-100k"',
        f"train_fn.num_epochs = {epochs}",
        f"train_fn.random_seed = {seed}",
        f"create_data_loader.num_workers = {workers}",
    ]
    if protocol == "valid":
        bindings += ['train_fn.eval_split = "valid"', "train_fn.early_stopping_patience = 20"]
    bindings += list(extra_bindings)
    command = [
        sys.executable,
        str(REPO / "main.py"),
        f"--gin_config_file={REPO / gin_file}",
        *[f"--gin_bindings={b}" for b in bindings],
        f"--exp_dir={exp_dir / 'exps'}",
        f"--ckpt_dir={exp_dir / 'ckpts'}",
        f"--data_dir={REPO / 'tmp'}",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    metrics_file = next((exp_dir / "exps").glob("*/*/metrics.json"))
    return json.loads(metrics_file.read_text()), seconds


def _slug(binding: str) -> str:
    """A folder-name-safe form of a gin binding."""
    return "".join(c if c.isalnum() or c in "._" else "_" for c in binding.replace(" ", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("test", "valid"), default="test")
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default: the quality bar's")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--workers", type=int, default=1, help="data-loader workers")
    parser.add_argument("--root", default="/tmp/gr-quality")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument(
        "--bindings", action="append", default=[], help="extra gin binding for every run"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        f"protocol `{args.protocol}`, seeds {args.seeds}"
        + "".join(f", `{b}`" for b in args.bindings),
        "",
        "| setting | epochs | run | " + " | ".join(METRICS) + " | wall time |",
        "|---|---|---|" + "---|" * len(METRICS) + "---|",
    ]
    for setting in args.settings.split(","):
        epochs = args.epochs or SETTINGS[setting][1]
        runs = []
        for seed in seeds:
            result, seconds = run_one(
                setting, seed, epochs, args.protocol, pathlib.Path(args.root), args.workers,
                tuple(args.bindings),
            )  # fmt: skip
            runs.append((seed, result, seconds))
            cells = " | ".join(f"{result['test'][m]:.4f}" for m in METRICS)
            extra = f" (best epoch {result['best_epoch']})" if args.protocol == "valid" else ""
            lines.append(
                f"| {setting} | {epochs} | seed {seed}{extra} | {cells} | {seconds:.0f} s |"
            )
            print(lines[-1], flush=True)
        if len(runs) > 1:
            means = " | ".join(
                f"**{statistics.mean(r[1]['test'][m] for r in runs):.4f}**" for m in METRICS
            )
            total = sum(r[2] for r in runs)
            lines.append(f"| {setting} | {epochs} | mean | {means} | {total:.0f} s |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        pathlib.Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
