"""Scale benchmark: ML-100K fractal-expanded to growing sizes, then training on each.

    make bench-scale        # = .venv/bin/python benchmarks/bench_scale.py
    .venv/bin/python benchmarks/bench_scale.py --sizes 1x1,4x8 --train_sizes 4x8   # quicker

For each size: expansion + store time, interactions/s, bytes on disk per interaction and the
peak RSS of the expanding process (each measured in its own subprocess, ru_maxrss via wait4).
For the training sizes: 50 steps of the ml-3b HSTU setting (batch 96, sequence length 500,
--num_blocks blocks, the config's 4 by default) with steps/s, the data loader's batches/s
measured alone (same loader, no model), and the peak RSS of the training process (and of its
largest loader worker); then, in a fresh process, --full_steps steps on full batches only (users
with at least 500 positions before their target, so every batch is [96, 500] at every size:
the most activation memory a step of this setting can take) and that process's peak RSS. The
memory target compares the full-batch peaks: with the real loader the sizes differ in positions
per batch (users of 4x8 have 262 interactions on average, of 32x64 1,222), which moves the
activations, not anything that grows with the data. Writes docs/benchmarks.md's scale section
(between its markers), docs/scale/bench_scale.json and docs/scale/bench_scale.png. Big stores are deleted
after they are measured. Asserts nothing; the targets are compared in the printed table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = REPO / "configs" / "ml-3b" / "hstu-sampled-softmax-n96-seqlen500-final.gin"
DOC = REPO / "docs" / "benchmarks.md"
OUT_DIR = REPO / "docs" / "scale"
START, END = "<!-- bench-scale:start -->", "<!-- bench-scale:end -->"
KEEP = {"1x1", "4x8"}  # stores small enough to keep after measuring


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/bench_scale.py")
    p.add_argument("--data_dir", default=str(REPO / "tmp"), help="holds the ml-100k store")
    p.add_argument("--sizes", default="1x1,4x8,16x32,32x64")
    p.add_argument("--train_sizes", default="4x8,32x64", help="sizes trained on (subset)")
    p.add_argument("--steps", type=int, default=50, help="measured training steps (+2 warm-up)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--loader_batches", type=int, default=100)
    p.add_argument("--num_blocks", type=int, default=4, help="HSTU blocks (config: 4)")
    p.add_argument(
        "--full_steps", type=int, default=4, help="steps on full batches (+2 warm-up) for memory"
    )
    p.add_argument("--no_docs", action="store_true", help="print only; leave docs/ alone")
    p.add_argument(
        "--update",
        action="store_true",
        help="merge into docs/scale/bench_scale.json: re-measured sizes replace their rows",
    )
    p.add_argument(
        "--render", default=None, help="re-write the table, plot and doc from this JSON only"
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child_size", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _multipliers(size: str) -> tuple[int, int]:
    m, n = size.split("x")
    return int(m), int(n)


def _name(size: str) -> str:
    return f"ml-100k-x{size}"


# --- children ----------------------------------------------------------------------------------


def _vm_hwm_bytes(pid: str = "self") -> int:
    """Peak RSS of a process (VmHWM in /proc), 0 when unreadable."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _children_peak_bytes() -> int:
    """The largest peak RSS among this process's live children (the loader workers)."""
    pids = set()
    for task in pathlib.Path("/proc/self/task").iterdir():
        try:
            pids.update((task / "children").read_text().split())
        except OSError:
            continue
    return max((_vm_hwm_bytes(pid) for pid in pids), default=0)


def _child_expand(args) -> dict:
    from generative_recommenders.data.fractal import FractalSettings
    from generative_recommenders.data.fractal_store import expand_store

    m, n = _multipliers(args.child_size)
    s = expand_store("ml-100k", _name(args.child_size), FractalSettings(m, n), args.data_dir)
    return {
        "interactions": s.num_interactions,
        "expected_interactions": s.expected_interactions,
        "users": s.num_users,
        "items": s.num_items,
        "bytes_on_disk": s.bytes_on_disk,
        "seconds_expand": s.seconds_expand,
        "seconds_plan": s.seconds_plan,
        "seconds_total_in_process": s.seconds_total,
        "interactions_per_s": s.interactions_per_second,
    }


def _full_batch_loader(dataset, batch_size: int):
    """A training loader over the users whose window is full (max_sequence_length positions)."""
    import numpy as np
    from torch.utils.data import Subset

    from generative_recommenders.data.loader import create_data_loader

    offsets = np.asarray(dataset.store.offsets)
    history = offsets[dataset.rows + 1] - offsets[dataset.rows] - 1 - dataset.ignore_last_n
    full = np.flatnonzero(history >= dataset.max_sequence_length).tolist()
    if len(full) < batch_size:
        raise SystemExit(f"bench_scale: only {len(full)} users with full windows")
    subset = Subset(dataset, full)
    subset.max_sequence_length = dataset.max_sequence_length  # the loader's prefetch sizing
    loader = create_data_loader(
        subset, batch_size=batch_size, world_size=1, rank=0, shuffle=True, random_seed=0,
        drop_last=True,
    )  # fmt: skip
    return loader, len(full)


def _child_train(args) -> dict:
    import torch

    from generative_recommenders.config.build import build_training
    from generative_recommenders.config.registry import parse_gin
    from generative_recommenders.config.train import train_fn
    from generative_recommenders.data.store import SequenceStore
    from generative_recommenders.training.distributed import DistributedContext
    from generative_recommenders.training.inputs import encoder_inputs
    from generative_recommenders.training.optim import make_optimizer

    name = _name(args.child_size)
    parse_gin(
        [str(CONFIG)],
        [f'train_fn.dataset_name = "{name}"', f"hstu_encoder.num_blocks = {args.num_blocks}"],
    )
    config = train_fn()
    store = SequenceStore.open(args.data_dir, name)
    torch.manual_seed(0)
    name = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    built = build_training(config, store, DistributedContext(0, 0, 1, device))
    model = built.model.to(device).train()
    optimizer = make_optimizer(model, config.learning_rate, config.weight_decay)
    loader = built.data.train.loader
    parameters = sum(p.numel() for p in model.parameters())
    full_users = None
    if args.child == "train_full":
        loader, full_users = _full_batch_loader(built.data.train.dataset, config.local_batch_size)
    steps = args.full_steps if full_users is not None else args.steps

    # The loader alone: a fresh pass, no model.
    iterator = iter(loader)
    next(iterator)  # workers started
    start, count = time.perf_counter(), 0
    for _ in range(args.loader_batches if full_users is None else 0):
        try:
            next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        count += 1
    loader_s = max(time.perf_counter() - start, 1e-9)
    del iterator

    # Training: loader + forward + backward + optimizer, as the trainer runs it.
    times, positions, done, t_start = [], [], 0, 0.0
    iterator = iter(loader)
    while done < steps + 2:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        t0 = time.perf_counter()
        inputs = encoder_inputs(batch.to(device), write_target_id=True)
        optimizer.zero_grad(set_to_none=True)
        total, _, _ = model(inputs)
        total.backward()
        optimizer.step()
        float(total.item())  # waits for the device
        done += 1
        if done == 2:  # two warm-up steps, then the clock starts
            t_start = time.perf_counter()
        elif done > 2:
            times.append(time.perf_counter() - t0)
            positions.append(int(batch.lengths.sum()))
    t_end = time.perf_counter()
    main_peak = _vm_hwm_bytes()
    worker_peak = _children_peak_bytes()  # persistent workers are still alive here
    item_table = store.max_item_id + 1
    return {
        "users": store.num_users,
        "interactions": store.num_interactions,
        "max_item_id": store.max_item_id,
        "parameters": parameters,
        "item_table_params": item_table * config.item_embedding_dim,
        "batch_size": config.local_batch_size,
        "max_sequence_length": config.max_sequence_length,
        "num_blocks": args.num_blocks,
        "device": str(device),
        "loader_workers": loader.num_workers,
        "full_batches_only": full_users is not None,
        "users_trained_on": full_users if full_users is not None else len(loader.dataset),
        "measured_steps": len(times),
        "positions_per_batch_mean": sum(positions) / len(positions),
        "loader_batches_per_s": count / loader_s if full_users is None else None,
        "step_s_median": sorted(times)[len(times) // 2],
        # Steps per wall-clock second with the loader feeding them (what training consumes).
        "steps_per_s": len(times) / (t_end - t_start),
        "peak_rss_main_bytes": main_peak,
        "peak_rss_worker_bytes": worker_peak,
    }


def _child(args) -> None:
    result = _child_expand(args) if args.child == "expand" else _child_train(args)
    pathlib.Path(args.child_out).write_text(json.dumps(result))


# --- parent ------------------------------------------------------------------------------------


def _run_child(kind: str, size: str, args) -> dict:
    """Run one measurement in a fresh process; its result plus wall time and ru_maxrss."""
    out = pathlib.Path(args.data_dir) / f".bench-scale-{kind}-{size}.json"
    cmd = [
        sys.executable, __file__, f"--child={kind}", f"--child_size={size}",
        f"--child_out={out}", f"--data_dir={args.data_dir}", f"--steps={args.steps}",
        f"--loader_batches={args.loader_batches}", f"--num_blocks={args.num_blocks}",
        f"--full_steps={args.full_steps}",
        f"--device={args.device}",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench_scale: {kind} {size} failed (exit {proc.returncode})")
    result = json.loads(out.read_text())
    out.unlink()
    result["wall_s"] = wall
    result["ru_maxrss_bytes"] = usage.ru_maxrss * 1024  # the child's own peak RSS
    return result


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _ensure_source(data_dir: str) -> None:
    if (pathlib.Path(data_dir) / "ml-100k" / "meta.json").is_file():
        return
    subprocess.run(
        [sys.executable, str(REPO / "preprocess_public_data.py"), "--dataset=ml-100k",
         f"--data_dir={data_dir}"],
        check=True, cwd=REPO,
    )  # fmt: skip


def _check_disk(data_dir: str, size: str) -> None:
    m, n = _multipliers(size)
    # Upper bound: every block full, 20 bytes per interaction.
    need = 100_000 * m * n * 20
    free = shutil.disk_usage(data_dir).free
    print(f"[{size}] disk: {free / 1e9:.1f} GB free, at most {need / 1e9:.1f} GB needed")
    if need * 1.2 > free:
        raise SystemExit(f"bench_scale: not enough disk for {size} in {data_dir}")


def main(argv=None) -> None:
    args = _parse(argv)
    if args.child:
        _child(args)
        return
    if args.render:
        report = json.loads(pathlib.Path(args.render).read_text())
        _publish(report, args.no_docs)
        return
    _ensure_source(args.data_dir)
    sizes = args.sizes.split(",")
    train_sizes = set(args.train_sizes.split(",")) if args.train_sizes else set()
    rows = []
    for size in sizes:
        _check_disk(args.data_dir, size)
        load_before = _load()
        expand = _run_child("expand", size, args)
        row = {
            "size": size,
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_before_expand": load_before,
            "expand": expand,
        }
        print(f"[{size}] expand: {json.dumps(expand)}  (load {load_before})", flush=True)
        if size in train_sizes:
            load_before = _load()
            train = _run_child("train", size, args)
            row["train"] = train
            row["load_before_train"] = load_before
            print(f"[{size}] train: {json.dumps(train)}  (load {load_before})", flush=True)
            row["train_full"] = _run_child("train_full", size, args)
            print(f"[{size}] full batches: {json.dumps(row['train_full'])}", flush=True)
        rows.append(row)
        if size not in KEEP:
            shutil.rmtree(pathlib.Path(args.data_dir) / _name(size))
    saved = OUT_DIR / "bench_scale.json"
    if args.update and saved.is_file():
        old = {r["size"]: r for r in json.loads(saved.read_text())["rows"]}
        for row in rows:
            if "train" not in row and "train" in old.get(row["size"], {}):
                # Keep the earlier training measurement of a size re-expanded now.
                for key in ("train", "train_full", "load_before_train"):
                    if key in old[row["size"]]:
                        row[key] = old[row["size"]][key]
                row["train_measured_at"] = old[row["size"]].get("measured_at")
            old[row["size"]] = row
        order = ["1x1", "4x8", "16x32", "32x64", "32x8"]
        rows = sorted(old.values(), key=lambda r: (order + [r["size"]]).index(r["size"]))
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor()})",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_after": _load(),
        "config": str(CONFIG.relative_to(REPO)),
        "num_blocks": args.num_blocks,
        "steps": args.steps,
        "full_steps": args.full_steps,
        "rows": rows,
    }
    _publish(report, args.no_docs)


def _publish(report: dict, no_docs: bool) -> None:
    table = format_report(report)
    print(table)
    if not no_docs:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "bench_scale.json").write_text(json.dumps(report, indent=2) + "\n")
        _plot(report, OUT_DIR / "bench_scale.png")
        _write_doc_section(table)


def _gb(x: float) -> str:
    return f"{x / 2**30:.2f}"


def format_report(report: dict) -> str:
    rows = report["rows"]
    lines = [
        f"Written {report['date']} on {report['machine']}; load average (1, 5, 15 min) before "
        "each measurement in the table, after the last run: " + report["load_after"] + ".",
        "",
        "| size | interactions | users | items | expand s in process (with start-up) | "
        "interactions/s writing (end to end) | bytes/interaction | expand peak RSS GiB | load "
        "(when) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        e = r["expand"]
        lines.append(
            f"| {r['size']} | {e['interactions']:,} | {e['users']:,} | {e['items']:,} | "
            f"{e['seconds_total_in_process']:.1f} ({e['wall_s']:.1f}) | "
            f"{e['interactions_per_s']:,.0f} "
            f"({e['interactions'] / e['seconds_total_in_process']:,.0f}) | "
            f"{e['bytes_on_disk'] / e['interactions']:.1f} | "
            f"{_gb(e['ru_maxrss_bytes'])} | {r['load_before_expand']} "
            f"({r.get('measured_at', '?')}) |"
        )
    trained = [r for r in rows if "train" in r]
    if trained:
        lines += [
            "",
            f"Training: {report['config']} with hstu_encoder.num_blocks = "
            f"{report['num_blocks']} (config: 4), batch 96, sequence length 500, "
            f"{report['steps']} measured steps after 2 warm-up steps on "
            f"{trained[0]['train']['device']}, loader workers as the config (8, clamped to the "
            "cores).",
            "",
            "| size | items | parameters | positions / batch | steps/s | loader batches/s "
            "(alone) | loader / training | peak RSS GiB (main) | largest worker GiB | "
            "full batches: peak RSS GiB | load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in trained:
            t, f = r["train"], r.get("train_full")
            full = (
                f"{_gb(f['ru_maxrss_bytes'])} ({f['positions_per_batch_mean']:,.0f} pos.)"
                if f
                else "-"
            )
            lines.append(
                f"| {r['size']} | {t['max_item_id']:,} | {t['parameters']:,} | "
                f"{t.get('positions_per_batch_mean', float('nan')):,.0f} | "
                f"{t['steps_per_s']:.3f} | {t['loader_batches_per_s']:.1f} | "
                f"{t['loader_batches_per_s'] / t['steps_per_s']:.0f}x | "
                f"{_gb(t['ru_maxrss_bytes'])} | {_gb(t['peak_rss_worker_bytes'])} | "
                f"{full} | {r['load_before_train']} |"
            )
    lines += ["", *targets(report)]
    return "\n".join(lines)


def targets(report: dict) -> list[str]:
    """The issue's targets against the measured numbers (one line each)."""
    by = {r["size"]: r for r in report["rows"]}
    out = ["Targets:"]
    fastest = max((r["expand"]["interactions_per_s"] for r in report["rows"]), default=0)
    large = [r for r in report["rows"] if r["expand"]["interactions"] >= 500_000]
    slowest = min((r["expand"]["interactions_per_s"] for r in large), default=0)
    out.append(
        f"- expansion >= 2,000,000 interactions/s (writing): {slowest:,.0f} (slowest size >= 0.5 M "
        f"interactions) .. {fastest:,.0f} -> {'met' if large and slowest >= 2e6 else 'NOT met'}"
    )
    if "4x8" in by and "32x64" in by:
        a = by["4x8"]["expand"]["ru_maxrss_bytes"]
        b = by["32x64"]["expand"]["ru_maxrss_bytes"]
        out.append(
            f"- expansion peak RSS 32x64 <= 1.5 x 4x8: {_gb(b)} vs 1.5 x {_gb(a)} = "
            f"{_gb(1.5 * a)} GiB -> {'met' if b <= 1.5 * a else 'NOT met'}"
        )
    for kind, what in (("train_full", "full batches"), ("train", "the real loader")):
        if kind not in by.get("4x8", {}) or kind not in by.get("32x64", {}):
            continue
        a, b = by["4x8"][kind], by["32x64"][kind]
        # Per item-table parameter, float32: weight, gradient and AdamW's two moments.
        extra = (b["item_table_params"] - a["item_table_params"]) * 4 * 4
        bound = 1.1 * (a["ru_maxrss_bytes"] + extra)
        verdict = "met" if b["ru_maxrss_bytes"] <= bound else "NOT met"
        if kind == "train":
            verdict += (
                f" (positions per batch {a['positions_per_batch_mean']:,.0f} vs "
                f"{b['positions_per_batch_mean']:,.0f}: activations differ; informative only)"
                if "positions_per_batch_mean" in a
                else ""
            )
        out.append(
            f"- training peak RSS 32x64 <= 1.1 x (4x8 + 16 bytes x extra item-table "
            f"parameters), {what}: {_gb(b['ru_maxrss_bytes'])} vs 1.1 x "
            f"({_gb(a['ru_maxrss_bytes'])} + {_gb(extra)}) = {_gb(bound)} GiB -> {verdict}"
        )
    if "train_full" in by.get("4x8", {}) and "train_full" in by.get("32x8", {}):
        a, b = by["4x8"]["train_full"], by["32x8"]["train_full"]
        ratio = b["ru_maxrss_bytes"] / a["ru_maxrss_bytes"]
        out.append(
            f"- same catalogue (n = 8), {b['interactions'] / a['interactions']:.1f}x the "
            f"interactions (4x8 -> 32x8), full batches: training peak RSS {_gb(a['ru_maxrss_bytes'])} -> "
            f"{_gb(b['ru_maxrss_bytes'])} GiB ({ratio:.2f}x; flat in interactions: "
            f"{'yes, within 10%' if ratio <= 1.1 else 'NO'})"
        )
    for size, r in by.items():
        if "train" in r:
            t = r["train"]
            ratio = t["loader_batches_per_s"] / t["steps_per_s"]
            out.append(
                f"- loader >= 5 x training at {size}: {ratio:.0f}x -> "
                f"{'met' if ratio >= 5 else 'NOT met'}"
            )
    return out


def _plot(report: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(report["rows"], key=lambda r: r["expand"]["interactions"])
    x = [r["expand"]["interactions"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.loglog(x, [r["expand"]["seconds_total_in_process"] for r in rows], "o-", label="expand")
    ax1.set_xlabel("interactions")
    ax1.set_ylabel("seconds")
    ax1.set_title("expansion + store time")
    ax2.semilogx(x, [r["expand"]["ru_maxrss_bytes"] / 2**30 for r in rows], "o-",
                 label="expansion")  # fmt: skip
    trained = [r for r in rows if "train" in r]
    if trained:
        ax2.semilogx(
            [r["expand"]["interactions"] for r in trained],
            [r["train"]["ru_maxrss_bytes"] / 2**30 for r in trained],
            "s-",
            label="training, the real loader (positions per batch differ)",
        )
    full = [r for r in trained if "train_full" in r]
    if full:
        ax2.semilogx(
            [r["expand"]["interactions"] for r in full],
            [r["train_full"]["ru_maxrss_bytes"] / 2**30 for r in full],
            "^-",
            label="training, full [96, 500] batches",
        )
    for r in rows:
        ax2.annotate(r["size"], (r["expand"]["interactions"], r["expand"]["ru_maxrss_bytes"] / 2**30),
                     textcoords="offset points", xytext=(0, 6), fontsize=8)  # fmt: skip
    for r in trained:
        ax2.annotate(r["size"], (r["expand"]["interactions"], r["train"]["ru_maxrss_bytes"] / 2**30),
                     textcoords="offset points", xytext=(0, 6), fontsize=8)  # fmt: skip
    ax2.set_xlabel("interactions")
    ax2.set_ylabel("peak RSS (GiB)")
    ax2.set_ylim(bottom=0)
    ax2.set_title("peak memory")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _write_doc_section(table: str) -> None:
    text = DOC.read_text()
    body = (
        f"{START}\n_Written by `make bench-scale`; do not edit by hand._\n\n{table}\n\n"
        f"![time and memory against size](scale/bench_scale.png)\n{END}"
    )
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + body + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Scale (fractal expansion)\n\n" + body + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    main()
