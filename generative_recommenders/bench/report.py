"""The printed tables of a bench report.

``bench.json``: ``{"machine": {"gemm_gflops_fp32", "gemm_gflops_fp32_range", "gemm_samples",
"threads", "device"}, "train": [{"setting", "step_ms", "sequences_per_s", "useful_gflops", "mfu",
"peak_mem_gib", "vs_paper_scaled" (the paper's settings), ...}], "eval": [{"setting",
"num_items", "users_per_s", ...}], "data": {...}, "memory": [{"setting", "distribution",
"history_lengths", "valid_events_per_batch", "batch_x_max_length", "baseline_gib", "peak_gib",
"increment_gib", "increment_mib_per_1k_events"}], "date", "quick", "gin_bindings"}``. A part left out with
``--parts`` is an empty list (``data``: an empty dict) and prints nothing.
"""

from __future__ import annotations


def _train_lines(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "| setting | step (ms) | sequences/s | x paper (GEMM-scaled) | useful GFLOP/step | MFU | "
        "full eval (s) | peak mem (GiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eval_s = f"{r['eval_s']:.2f}" if "eval_s" in r else "-"
        vs_paper = f"{r['vs_paper_scaled']:.2f}x" if "vs_paper_scaled" in r else "-"
        lines.append(
            f"| {r['setting']} | {r['step_ms']:.0f} | {r['sequences_per_s']:.1f} | {vs_paper} | "
            f"{r['useful_gflops']:.2f} | {100 * r['mfu']:.1f}% | {eval_s} | "
            f"{r['peak_mem_gib']:.2f} |"
        )
    return lines


def _eval_lines(rows: list[dict]) -> list[str]:
    lines = ["", "| evaluation | items | users/s |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['num_items']:,} | {r['users_per_s']:,.0f} |")
    return lines


def _data_lines(d: dict) -> list[str]:
    return [
        "",
        f"data: preprocessing {d['preprocess_rows_per_s']:,.0f} rows/s "
        f"({d['preprocess_interactions']:,} rows), windows {d['windows_per_s']:,.0f}/s, "
        f"windows + collate {d['collated_windows_per_s']:,.0f}/s",
    ]


def _memory_lines(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "| memory | history lengths | valid events/batch | batch x max length | baseline (GiB) | "
        "peak (GiB) | increment (GiB) | MiB per 1k events |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["history_lengths"]
        lines.append(
            f"| {r['setting']}, {r['distribution']} | {lo}-{hi} | "
            f"{r['valid_events_per_batch']:,.0f} | {r['batch_x_max_length']:,} | "
            f"{r['baseline_gib']:.3f} | {r['peak_gib']:.3f} | {r['increment_gib']:.3f} | "
            f"{r['increment_mib_per_1k_events']:.1f} |"
        )
    return lines


def format_table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['device']}, {m['threads']} threads, fp32 GEMM {m['gemm_gflops_fp32']:.1f} "
        f"GFLOP/s (median of {m['gemm_samples']} runs, {m['gemm_gflops_fp32_range'][0]:.0f}-"
        f"{m['gemm_gflops_fp32_range'][1]:.0f})",
    ]
    if report["train"]:
        lines += _train_lines(report["train"])
    if report["eval"]:
        lines += _eval_lines(report["eval"])
    if report["data"]:
        lines += _data_lines(report["data"])
    if report.get("memory"):
        lines += _memory_lines(report["memory"])
    return "\n".join(lines)
