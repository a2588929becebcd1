"""Objectives x losses on ML-100K: encoder {SASRec, HSTU} x objective {autoregressive, masked} x
loss {full CE, sampled softmax 128, BCE, BPR, gBCE}, several seeds, one table in docs/objectives.md.

    .venv/bin/python benchmarks/objectives_ml100k.py                      # the whole grid, 3 seeds
    .venv/bin/python benchmarks/objectives_ml100k.py --encoders SASRec --losses ce,ssm --seeds 42
    .venv/bin/python benchmarks/objectives_ml100k.py --jobs 2 --threads 1  # two runs at a time

Every run is ``main.py`` on a gin file made from ``configs/ml-100k/{sasrec,hstu}.gin`` (their
searched ML-100K settings) with only the objective and loss lines changed, exactly as the
configs ``sasrec-ce.gin``, ``bert4rec.gin``, ``sasrec-gbce.gin``, ... are made (printed with
``--print_config``). The protocol is the validation one of those files: the best epoch is selected
on each user's second-to-last item (hr@10, early stopping), then tested once on the last item, with
all-item ranking and with ``pop100`` sampled ranking (``train_fn.sampled_eval = "pop100"``) side by
side. Per run it records the test metrics, the median training-epoch time, the peak RSS of the run's
process (``ru_maxrss`` from ``os.wait4``) and the wall time; results are cached per run in
``--root`` (rerunning skips finished runs). The table (mean +- standard error over seeds) goes
between the markers of ``--out`` (docs/objectives.md), leaving the rest of that file as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = pathlib.Path(__file__).resolve().parents[1]
BASES = {"SASRec": "configs/ml-100k/sasrec.gin", "HSTU": "configs/ml-100k/hstu.gin"}
OBJECTIVES = ("autoregressive", "masked")
LOSSES = ("ce", "ssm", "bce", "bpr", "gbce")
LOSS_NAMES = {
    "ce": "full CE",
    "ssm": "sampled softmax 128",
    "bce": "BCE (1 negative)",
    "bpr": "BPR 128",
    "gbce": "gBCE 128, t=0.75",
}
METRICS = ("hr@10", "ndcg@10", "mrr")
SAMPLED = "sampled_pop100/"
BEGIN, END = "<!-- objectives:begin -->", "<!-- objectives:end -->"
EPOCH_LINE = re.compile(r"epoch (\d+): loss \S+, \d+ sequences in ([0-9.]+)s")


def _set(text: str, key: str, value: str | None, note: str = "") -> str:
    """Replace (or with value None, remove) the binding ``key``; add it when absent."""
    pattern = re.compile(rf"^{re.escape(key)} = .*\n", re.M)
    line = "" if value is None else f"{key} = {value}" + (f"  # {note}" if note else "") + "\n"
    if pattern.search(text):
        return pattern.sub(line, text, count=1)
    return text + line


def cell_config(encoder: str, objective: str, loss: str) -> str:
    """The gin text of one cell: the base file with the objective and loss lines changed."""
    text = (REPO / BASES[encoder]).read_text()
    if objective == "masked":
        text = _set(text, "train_fn.objective", '"masked"', "OBJECTIVE")
        text = _set(text, "masked.mask_prob", "0.2", "OBJECTIVE: BERT4Rec's value for MovieLens")
    if loss == "ce":
        text = _set(text, "train_fn.loss_module", '"FullSoftmaxLoss"', "LOSS")
        return _set(text, "train_fn.num_negatives", None)
    if loss == "ssm":
        return _set(text, "train_fn.num_negatives", "128", "LOSS")
    # The sigmoid losses score raw dot products (no unit norms, temperature 1), as defined.
    text = _set(text, "train_fn.item_l2_norm", "False", "LOSS: raw dot products")
    text = _set(text, "train_fn.user_embedding_norm", '"layer_norm"', "LOSS: raw dot products")
    text = _set(text, "train_fn.temperature", None)
    if loss == "bce":
        text = _set(text, "train_fn.loss_module", '"BCELoss"', "LOSS")
        return _set(text, "train_fn.num_negatives", None)
    if loss == "bpr":
        text = _set(text, "train_fn.loss_module", '"BPRLoss"', "LOSS")
        return _set(text, "train_fn.num_negatives", "128", "LOSS")
    text = _set(text, "train_fn.loss_module", '"GBCELoss"', "LOSS")
    text = _set(text, "train_fn.num_negatives", "128", "LOSS")
    return _set(text, "GBCELoss.t", "0.75", "LOSS: gSASRec's t")


def run_cell(
    encoder: str,
    objective: str,
    loss: str,
    seed: int,
    root: pathlib.Path,
    threads: int,
    epochs: int | None = None,
) -> dict:
    """Train one cell with one seed (or read its cached result)."""
    suffix = "" if epochs is None else f"-e{epochs}"
    folder = root / f"{encoder}-{objective}-{loss}-s{seed}{suffix}"
    result_file = folder / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    gin_file = folder / "config.gin"
    gin_file.write_text(cell_config(encoder, objective, loss))
    command = [
        sys.executable,
        str(REPO / "main.py"),
        f"--gin_config_file={gin_file}",
        f"--gin_bindings=train_fn.random_seed = {seed}",
        '--gin_bindings=train_fn.sampled_eval = "pop100"',
        f"--exp_dir={folder / 'exps'}",
        f"--ckpt_dir={folder / 'ckpts'}",
        f"--data_dir={REPO / 'tmp'}",
    ]
    if epochs is not None:
        command.append(f"--gin_bindings=train_fn.num_epochs = {epochs}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    log = folder / "stdout.txt"
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{folder.name} failed; see {log}")
    text = log.read_text()
    epoch_seconds = [float(s) for _, s in EPOCH_LINE.findall(text)]
    metrics = json.loads(next((folder / "exps").glob("*/*/metrics.json")).read_text())
    result = {
        "encoder": encoder,
        "objective": objective,
        "loss": loss,
        "seed": seed,
        "test": metrics["test"],
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": len(epoch_seconds),
        "epoch_seconds": statistics.median(epoch_seconds[1:] or epoch_seconds),
        "peak_rss_mib": usage.ru_maxrss / 1024,  # Linux: KiB
        "wall_seconds": seconds,
        "threads": threads,
    }
    result_file.write_text(json.dumps(result, indent=1))
    return result


def _mean_se(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.mean(values):.4f} ± {se:.4f}"


def table(results: list[dict], seeds: list[int]) -> str:
    """Markdown: one row per (encoder, objective, loss), mean ± standard error over seeds."""
    header = (
        "| encoder | objective | loss | "
        + " | ".join(METRICS)
        + " | pop100 "
        + " | pop100 ".join(METRICS)
        + " | best epoch | epoch s | peak RSS MiB |"
    )
    lines = [header, "|---|---|---|" + "---|" * (2 * len(METRICS) + 3)]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["encoder"], r["objective"], r["loss"]), []).append(r)
    for (encoder, objective, loss), runs in groups.items():
        full = [_mean_se([r["test"][m] for r in runs]) for m in METRICS]
        sampled = [_mean_se([r["test"][SAMPLED + m] for r in runs]) for m in METRICS]
        best = "/".join(str(r["best_epoch"]) for r in runs)
        epoch = statistics.mean(r["epoch_seconds"] for r in runs)
        rss = max(r["peak_rss_mib"] for r in runs)
        lines.append(
            f"| {encoder} | {objective} | {LOSS_NAMES[loss]} | "
            + " | ".join(full + sampled)
            + f" | {best} | {epoch:.2f} | {rss:.0f} |"
        )
    return "\n".join(lines)


def write_section(out: pathlib.Path, body: str) -> None:
    """Put ``body`` between the markers of ``out`` (appended with them when absent)."""
    text = out.read_text() if out.is_file() else ""
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=",".join(BASES))
    parser.add_argument("--objectives", default=",".join(OBJECTIVES))
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--root", default="/tmp/gr-objectives")
    parser.add_argument("--out", default=str(REPO / "docs" / "objectives.md"))
    parser.add_argument("--epochs", type=int, default=None, help="override (smoke runs)")
    parser.add_argument("--print_config", default=None, help="ENCODER,OBJECTIVE,LOSS: print it")
    args = parser.parse_args()
    if args.print_config:
        print(cell_config(*args.print_config.split(",")), end="")
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    cells = [  # seed-major: a stopped grid still has every row for the first seeds
        (encoder, objective, loss, seed)
        for seed in seeds
        for encoder in args.encoders.split(",")
        for objective in args.objectives.split(",")
        for loss in args.losses.split(",")
    ]
    root = pathlib.Path(args.root)

    def one(cell: tuple[str, str, str, int]) -> dict:
        result = run_cell(*cell, root, args.threads, args.epochs)
        test = result["test"]
        print(
            f"{'-'.join(map(str, cell))}: hr@10 {test['hr@10']:.4f} pop100 hr@10 "
            f"{test[SAMPLED + 'hr@10']:.4f} best epoch {result['best_epoch']} "
            f"{result['epoch_seconds']:.2f} s/epoch {result['wall_seconds']:.0f} s",
            flush=True,
        )
        return result

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(one, cells))
    body = table(results, seeds)
    load = os.getloadavg()
    note = (
        f"Seeds {args.seeds}; {args.jobs} run(s) at a time, {args.threads} torch thread(s) each; "
        f"load average at the end {load[0]:.1f}. Command: `.venv/bin/python "
        f"benchmarks/objectives_ml100k.py --jobs {args.jobs} --threads {args.threads}`."
    )
    print(body)
    write_section(pathlib.Path(args.out), f"{note}\n\n{body}")


if __name__ == "__main__":
    main()
