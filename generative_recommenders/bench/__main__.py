"""``python -m generative_recommenders.bench [--quick] [--out bench.json] [--parts ...]``: see the
package doc."""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

import torch

from generative_recommenders.bench import measure
from generative_recommenders.bench.report import format_table

PARTS = ("train", "retrieval", "data", "memory")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m generative_recommenders.bench")
    p.add_argument("--out", default="bench.json", help="where the JSON report goes")
    p.add_argument("--data_dir", default="tmp/", help="holds (or receives) the ML-100K store")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--steps", type=int, default=5, help="measured steps per setting (+2 warm-up)")
    p.add_argument("--settings", default=",".join(measure.TRAIN_SETTINGS))
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests); numbers meaningless")
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}"
    )
    p.add_argument(
        "--memory_steps", type=int, default=3, help="memory part: measured steps (+1 warm-up)"
    )
    p.add_argument(
        "--gin_bindings",
        action="append",
        default=[],
        help="extra gin binding for the training settings (repeatable), e.g. "
        "'train_fn.negatives_sharing = \"batch\"'",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _child(args: argparse.Namespace) -> None:
    device = _device(args.device)
    if args.child == "retrieval":
        sizes = [(3706, 2048), (1_000_000, 256)] if not args.quick else [(300, 64), (5000, 16)]
        result = [measure.run_retrieval(items, users, device) for items, users in sizes]
    elif args.child.startswith("memory:"):
        distribution = args.child.split(":", 1)[1]
        result = measure.run_memory_point(distribution, device, args.memory_steps, args.quick)
    else:
        result = measure.run_train_setting(
            args.child, args.data_dir, device, args.steps, args.quick, tuple(args.gin_bindings)
        )
    pathlib.Path(args.child_out).write_text(json.dumps(result))


def _in_child(args: argparse.Namespace, what: str, data_dir: str):
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "generative_recommenders.bench", "--child", what,
            "--child_out", str(out), "--data_dir", data_dir, "--device", args.device,
            "--steps", str(args.steps), "--memory_steps", str(args.memory_steps),
        ] + (["--quick"] if args.quick else [])  # fmt: skip
        cmd += [f"--gin_bindings={binding}" for binding in args.gin_bindings]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def _ensure_stores(args: argparse.Namespace, data_dir: pathlib.Path) -> None:
    from generative_recommenders.data.store import store_path

    if args.quick:
        measure.write_synthetic_store(data_dir, "ml-100k", 40, 300, 30)
        measure.write_synthetic_store(data_dir, "synthetic-ml-20m", 40, 500, 30, seed=1)
        return
    if not (store_path(data_dir, "ml-100k") / "meta.json").is_file():
        cmd = [sys.executable, str(measure.REPO / "preprocess_public_data.py"),
               "--dataset", "ml-100k", "--data_dir", str(data_dir)]  # fmt: skip
        subprocess.run(cmd, check=True)
    if not (store_path(data_dir, "synthetic-ml-20m") / "meta.json").is_file():
        # ML-20M-like: 26,744 items, mean history ~150; 2,000 users are enough for the steps.
        measure.write_synthetic_store(data_dir, "synthetic-ml-20m", 2000, 26_744, 150)


def _gemm_samples(args: argparse.Namespace, device: torch.device) -> list[float]:
    return measure.gemm_samples(256 if args.quick else 2048, 11, device)


def _machine(args: argparse.Namespace, device: torch.device, gemm: list[float]) -> dict:
    """GEMM ceiling (GFLOP/s: the median of ``gemm``, and its range), threads and device."""
    machine = {
        "gemm_gflops_fp32": statistics.median(gemm),
        "gemm_gflops_fp32_range": [min(gemm), max(gemm)],
        "gemm_samples": len(gemm),
        "threads": torch.get_num_threads(),
        "device": measure.device_name(device),
    }
    if device.type == "cuda":
        machine["gemm_gflops_bf16"] = measure.gemm_gflops(8192, 5, device, torch.bfloat16)
    return machine


def _train(args: argparse.Namespace, data_dir: pathlib.Path):
    """(train rows, full-evaluation rows) of the ``--settings``, each in its own child."""
    train = []
    eval_rows = []
    for setting in [s for s in args.settings.split(",") if s]:
        if setting not in measure.TRAIN_SETTINGS:
            raise SystemExit(f"--settings: unknown {setting!r}; choose from "
                             f"{', '.join(measure.TRAIN_SETTINGS)}")  # fmt: skip
        row = _in_child(args, setting, str(data_dir))
        if "eval_s" in row:
            eval_rows.append({
                "setting": f"{setting} full evaluation ({row['eval_users']} users)",
                "num_items": _num_items(data_dir, measure.TRAIN_SETTINGS[setting][1]),
                "users_per_s": row["eval_users"] / row["eval_s"],
                "seconds": row["eval_s"],
            })  # fmt: skip
        train.append(row)
    return train, eval_rows


def _against_ceiling(train: list[dict], machine: dict, quick: bool) -> None:
    """Adds each row's MFU and, for the paper's settings at their real sizes (not ``--quick``),
    its GEMM-scaled speed-up over the paper's trainer (``vs_paper_scaled``)."""
    ceiling = machine["gemm_gflops_fp32"]
    for row in train:
        row["mfu"] = row["useful_gflops"] / (row["step_ms"] / 1000.0) / ceiling
        paper = measure.PAPER_SEQUENCES_PER_S.get(row["setting"])
        if paper is not None and not quick:
            scaled = paper * ceiling / measure.PAPER_GEMM_GFLOPS
            row["vs_paper_scaled"] = row["sequences_per_s"] / scaled


def _memory(args: argparse.Namespace, data_dir: pathlib.Path) -> list[dict]:
    """One memory row per length distribution, each measured in its own child."""
    return [_in_child(args, f"memory:{d}", str(data_dir)) for d in measure.MEMORY_DISTRIBUTIONS]


def _parts(value: str) -> set[str]:
    parts = {p for p in value.split(",") if p}
    if parts - set(PARTS):
        raise SystemExit(f"--parts: unknown {sorted(parts - set(PARTS))}; choose from "
                         f"{', '.join(PARTS)}")  # fmt: skip
    return parts


def main(argv: list[str] | None = None) -> dict:
    args = _parse(argv)
    if args.child:
        _child(args)
        return {}
    parts = _parts(args.parts)
    device = _device(args.device)
    train, eval_rows, data, memory = [], [], {}, []
    with tempfile.TemporaryDirectory() as quick_dir:
        data_dir = pathlib.Path(quick_dir if args.quick else args.data_dir)
        gemm = _gemm_samples(args, device)
        if "train" in parts:
            _ensure_stores(args, data_dir)
            train, eval_rows = _train(args, data_dir)
            gemm += _gemm_samples(args, device)  # the ceiling before and after the steps
        machine = _machine(args, device, gemm)
        _against_ceiling(train, machine, args.quick)
        if "retrieval" in parts:
            eval_rows += _in_child(args, "retrieval", str(data_dir))
        if "data" in parts:
            data = measure.run_data(
                20_000 if args.quick else 2_000_000, 500 if args.quick else 50_000
            )
        if "memory" in parts:
            memory = _memory(args, data_dir)
    report = {
        "machine": machine,
        "train": train,
        "eval": eval_rows,
        "data": data,
        "memory": memory,
        "date": datetime.date.today().isoformat(),
        "quick": bool(args.quick),
        "gin_bindings": list(args.gin_bindings),
    }
    print(format_table(report))
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _num_items(data_dir: pathlib.Path, dataset: str) -> int:
    from generative_recommenders.data.store import SequenceStore

    return int(SequenceStore.open(data_dir, dataset).catalogue_item_ids().shape[0])


if __name__ == "__main__":
    main()
