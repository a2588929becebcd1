"""The printed table of a bench report.

``bench.json``: ``{"machine": {"gemm_gflops_fp32", "threads", "device"}, "train": [{"setting",
"step_ms", "sequences_per_s", "useful_gflops", "mfu", "peak_mem_gib", ...}], "eval": [{"setting",
"num_items", "users_per_s", ...}], "data": {...}}``.
"""

from __future__ import annotations


def format_table(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['device']}, {m['threads']} threads, fp32 GEMM {m['gemm_gflops_fp32']:.1f} "
        "GFLOP/s",
        "",
        "| setting | step (ms) | sequences/s | useful GFLOP/step | MFU | full eval (s) | peak mem "
        "(GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["train"]:
        eval_s = f"{r['eval_s']:.2f}" if "eval_s" in r else "-"
        lines.append(
            f"| {r['setting']} | {r['step_ms']:.0f} | {r['sequences_per_s']:.1f} | "
            f"{r['useful_gflops']:.2f} | {100 * r['mfu']:.1f}% | {eval_s} | "
            f"{r['peak_mem_gib']:.2f} |"
        )
    lines += ["", "| evaluation | items | users/s |", "|---|---|---|"]
    for r in report["eval"]:
        lines.append(f"| {r['setting']} | {r['num_items']:,} | {r['users_per_s']:,.0f} |")
    d = report["data"]
    lines += [
        "",
        f"data: preprocessing {d['preprocess_rows_per_s']:,.0f} rows/s "
        f"({d['preprocess_interactions']:,} rows), windows {d['windows_per_s']:,.0f}/s, "
        f"windows + collate {d['collated_windows_per_s']:,.0f}/s",
    ]
    return "\n".join(lines)
