"""Glue between ``main.py``'s absl flags and the training run (kept out of main.py to test it)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from generative_recommenders.errors import UserInputError
from generative_recommenders.logs import configure_logging
from generative_recommenders.training.curves import CURVES_FILE

TABLE_METRICS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "hr@200", "ndcg@200", "mrr")
# Exit statuses besides 0 (done) and 2 (bad input); docs/training.md, "Exit codes".
EXIT_NONFINITE_LOSS = 3
EXIT_PREEMPTED = 75  # EX_TEMPFAIL of sysexits.h: "temporary failure, retry" (for requeue rules)


def run_main_flags(flags) -> int:
    """Run training from parsed flags; returns the process exit status."""
    configure_logging()
    if not flags.gin_config_file:
        print("error: pass at least one --gin_config_file (see configs/)", file=sys.stderr)
        return 2
    try:
        from generative_recommenders.config.run import RunOptions, run_training
        from generative_recommenders.training.launch import (
            Topology,
            default_nproc_per_node,
            resolve_device,
        )

        device = resolve_device(flags.device)
        topology = Topology(
            master_addr=flags.master_addr,
            master_port=flags.master_port,
            nproc_per_node=flags.nproc_per_node or max(1, default_nproc_per_node(device)),
            nnodes=flags.nnodes,
            node_rank=flags.node_rank,
            device=device,
        )
        options = RunOptions(
            gin_config_files=tuple(flags.gin_config_file),
            gin_bindings=tuple(flags.gin_bindings),
            data_dir=flags.data_dir,
            exp_dir=flags.exp_dir,
            ckpt_dir=flags.ckpt_dir,
            resume=flags.resume,
            debug_anomaly=flags.debug_anomaly,
        )
        result = run_training(options, topology)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if result and "stopped" in result:
        return report_stop(result["stopped"], sys.argv)
    if result:
        print(format_result(result))
    return 0


def resume_command(argv: list[str], checkpoint: str) -> str:
    """``argv`` (this process's command line) with ``--resume`` set to ``checkpoint``, quoted
    for a POSIX shell."""
    kept, skip_next = [], False
    for token in argv[1:]:
        if skip_next:
            skip_next = False
        elif token in ("--resume", "-resume"):
            skip_next = True
        elif not token.startswith(("--resume=", "-resume=")):
            kept.append(token)
    resume = f"--resume={Path(checkpoint).resolve()}"
    return shlex.join([sys.executable, argv[0], *kept, resume])


def report_stop(stopped: dict, argv: list[str]) -> int:
    """One line on stderr for a run that ended early; returns its exit status."""
    if stopped["reason"] == "preempted":
        print(
            f"preempted by {stopped['signal']} at step {stopped['step']}: checkpoint "
            f"{stopped['checkpoint']} written; resume with: "
            f"{resume_command(argv, stopped['checkpoint'])}",
            file=sys.stderr,
        )
        return EXIT_PREEMPTED
    last = stopped["checkpoint"]
    where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    print(
        f"error: non-finite loss ({stopped['loss']}) at step {stopped['step']}; {where} "
        '(lower train_fn.learning_rate, or train_fn.on_nonfinite_loss = "skip", and --resume it)',
        file=sys.stderr,
    )
    return EXIT_NONFINITE_LOSS


def format_result(result: dict) -> str:
    """A small table of the final test metrics (and the validation ones under "valid")."""
    rows = [("test", result["test"])]
    if result.get("protocol") == "valid":
        rows.insert(0, (f"valid (best epoch {result['best_epoch']})", result.get("valid", {})))
    width = max(len(name) for name, _ in rows)
    header = " " * width + "".join(f"{m:>10}" for m in TABLE_METRICS)
    lines = [header]
    for name, metrics in rows:
        cells = "".join(
            f"{metrics[m]:>10.4f}" if m in metrics else f"{'-':>10}" for m in TABLE_METRICS
        )
        lines.append(f"{name:<{width}}{cells}")
    if "run_dir" in result:
        lines.append(f"run folder: {result['run_dir']} (tensorboard --logdir {result['run_dir']})")
        curves = Path(result["run_dir"]) / CURVES_FILE
        if curves.is_file():
            lines.append(f"curves: {curves}")
    return "\n".join(lines)
