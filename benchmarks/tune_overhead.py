"""What a ``tune`` trial costs beyond the same training through ``main.py``.

    .venv/bin/python benchmarks/tune_overhead.py --config configs/ml-100k/sasrec.gin --epochs 10

Runs, alternately and ``--repeats`` times each, (a) ``main.py`` with the config under the
validation protocol for ``--epochs`` epochs and (b) ``python -m generative_recommenders.tune``
with one sample of a one-point search space (the config's own learning rate), FIFO scheduler,
the same epochs and every core for the trial. Both wall times are whole commands (Python start,
Ray start and stop, data loading, training, evaluation). Prints a table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(
            f"command failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}"
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ml-100k/sasrec.gin")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data_dir", default="tmp/")
    parser.add_argument("--out", default="tune_overhead.json")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    protocol = [
        '--gin_bindings=train_fn.eval_split = "valid"',
        f"--gin_bindings=train_fn.num_epochs = {args.epochs}",
        "--gin_bindings=train_fn.early_stopping_patience = 0",
    ]
    times: dict[str, list[float]] = {"main.py": [], "tune (1 trial)": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        space = root / "space.yaml"
        learning_rate = _config_learning_rate(args.config)
        space.write_text(f"train_fn.learning_rate: {{choice: [{learning_rate!r}]}}\n")
        for repeat in range(args.repeats):
            main_cmd = [
                sys.executable, "main.py", f"--gin_config_file={args.config}", *protocol,
                f"--data_dir={args.data_dir}", f"--exp_dir={root / 'exps'}",
                f"--ckpt_dir={root / 'ckpts'}",
            ]  # fmt: skip
            tune_cmd = [
                sys.executable, "-m", "generative_recommenders.tune",
                f"--gin_config_file={args.config}", f"--search_space={space}",
                "--gin_bindings=train_fn.early_stopping_patience = 0",
                "--num_samples=1", f"--max_epochs={args.epochs}", "--scheduler=fifo",
                f"--cpus_per_trial={cores}", f"--data_dir={args.data_dir}",
                f"--exp_dir={root / 'exps'}", f"--name=overhead{repeat}",
            ]  # fmt: skip
            times["main.py"].append(_timed(main_cmd))
            times["tune (1 trial)"].append(_timed(tune_cmd))
            print(
                f"repeat {repeat}: main.py {times['main.py'][-1]:.1f} s, "
                f"tune {times['tune (1 trial)'][-1]:.1f} s",
                flush=True,
            )
    base = statistics.median(times["main.py"])
    tuned = statistics.median(times["tune (1 trial)"])
    report = {
        "config": args.config,
        "epochs": args.epochs,
        "cores": cores,
        "load_average": os.getloadavg(),
        "seconds": times,
        "median_main_s": base,
        "median_tune_s": tuned,
        "overhead_pct": 100.0 * (tuned - base) / base,
    }
    pathlib.Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"| command | median wall s ({args.repeats} runs) |\n|---|---|")
    print(f"| main.py, {args.epochs} epochs | {base:.1f} |")
    print(f"| tune, 1 trial x {args.epochs} epochs | {tuned:.1f} |")
    print(f"overhead: {report['overhead_pct']:+.1f}% (load average {os.getloadavg()[0]:.1f})")


def _config_learning_rate(config: str) -> float:
    sys.path.insert(0, str(REPO))
    from generative_recommenders.config.run import RunOptions, load_config

    return load_config(RunOptions((config,), ())).learning_rate


if __name__ == "__main__":
    main()
