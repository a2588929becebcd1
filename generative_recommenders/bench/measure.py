"""The measurements: GEMM ceiling, training steps, evaluation, data pipeline, training memory."""

from __future__ import annotations

import gc
import importlib.util
import os
import pathlib
import resource
import statistics
import tempfile
import time

import numpy as np
import torch

from generative_recommenders.bench.flops import train_step_flops
from generative_recommenders.ops.allocator import tune_allocator

REPO = pathlib.Path(__file__).resolve().parents[2]

# setting -> (gin file, dataset); ML-1M settings run on the real ML-100K store.
TRAIN_SETTINGS = {
    "ml-1m/sasrec": ("configs/ml-1m/sasrec-sampled-softmax-n128-final.gin", "ml-100k"),
    "ml-1m/hstu": ("configs/ml-1m/hstu-sampled-softmax-n128-final.gin", "ml-100k"),
    "ml-1m/hstu-large": ("configs/ml-1m/hstu-sampled-softmax-n128-large-final.gin", "ml-100k"),
    "ml-20m/hstu": ("configs/ml-20m/hstu-sampled-softmax-n128-final.gin", "synthetic-ml-20m"),
}
# The paper's public trainer on a 2-core AVX-512 machine whose fp32 GEMM ran at 190 GFLOP/s
# (ML-100K, batch 128, anomaly detection off): sequences/s per setting. Ratios against it are
# scaled by this run's GEMM ceiling: ours / (paper * ceiling / 190).
PAPER_SEQUENCES_PER_S = {"ml-1m/sasrec": 90.6, "ml-1m/hstu": 81.9, "ml-1m/hstu-large": 29.6}
PAPER_GEMM_GFLOPS = 190.0

QUICK_BINDINGS = (
    "train_fn.local_batch_size = 8",
    "train_fn.max_sequence_length = 20",
    "train_fn.num_negatives = 8",
    "train_fn.eval_batch_size = 16",
)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def gemm_samples(size: int, repeats: int, device: torch.device, dtype=torch.float32) -> list[float]:
    """GFLOP/s of each of ``repeats`` [size, size] x [size, size] matmuls (after one warm-up)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    samples = []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:  # the first call warms up
            samples.append(2.0 * size**3 / (time.perf_counter() - start) / 1e9)
    return samples


def gemm_gflops(size: int, repeats: int, device: torch.device, dtype=torch.float32) -> float:
    """Median GFLOP/s of a [size, size] x [size, size] matmul."""
    return statistics.median(gemm_samples(size, repeats, device, dtype))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mem_gib(device: torch.device) -> float:
    """Peak memory (GiB): CUDA allocated bytes, or this process's RSS high-water mark.

    On Linux the RSS peak is ``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` of a child started
    by ``subprocess`` (vfork + exec) also holds the parent's high-water mark.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        status = pathlib.Path("/proc/self/status").read_text()
        kib = int(status.split("VmHWM:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 2**20


def write_synthetic_store(
    data_dir: pathlib.Path,
    name: str,
    num_users: int,
    num_items: int,
    mean_length: int,
    seed: int = 0,
    length_range: tuple[int, int] | None = None,
) -> None:
    """A store of random histories with skewed item popularity.

    History lengths (events) are uniform in ``length_range`` = [lo, hi), by default
    [20, 3 x mean_length).
    """
    from generative_recommenders.data.store import store_path, write_store

    rng = np.random.default_rng(seed)
    lo, hi = length_range or (20, 3 * mean_length)
    lengths = rng.integers(lo, hi, num_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    items = 1 + (rng.random(total) ** 2 * num_items).astype(np.int64)
    items[:num_items] = np.arange(1, num_items + 1)  # every item occurs
    gaps = rng.integers(1, 100_000, total)
    timestamps = 1_000_000_000 + np.cumsum(gaps)
    write_store(
        store_path(data_dir, name),
        user_ids=np.arange(1, num_users + 1),
        offsets=offsets,
        item_ids=items,
        ratings=rng.integers(1, 6, total).astype(np.float32),
        timestamps=timestamps,
        meta={"dataset": name, "semantics": "synthetic benchmark data", "has_ratings": True},
    )


def _configure(setting: str, dataset: str, quick: bool, extra_bindings: tuple[str, ...] = ()):
    """Parse the setting's gin file for ``dataset`` (one process, no loader workers) and the
    caller's extra bindings (applied last)."""
    from generative_recommenders.config.registry import parse_gin
    from generative_recommenders.config.train import train_fn

    bindings = [f'train_fn.dataset_name = "{dataset}"', "create_data_loader.num_workers = 0"]
    if quick:
        bindings += list(QUICK_BINDINGS)
    parse_gin([str(REPO / TRAIN_SETTINGS[setting][0])], bindings + list(extra_bindings))
    return train_fn()


def _build(config, data_dir: str, dataset: str, device: torch.device):
    """(built training, model on ``device`` in train mode, optimizer), seeded."""
    from generative_recommenders.config.build import build_training
    from generative_recommenders.data.store import SequenceStore
    from generative_recommenders.training.distributed import DistributedContext
    from generative_recommenders.training.optim import make_optimizer

    store = SequenceStore.open(data_dir, dataset)
    torch.manual_seed(0)
    built = build_training(config, store, DistributedContext(0, 0, 1, device))
    model = built.model.to(device).train()
    return built, model, make_optimizer(model, config.learning_rate, config.weight_decay)


def _first_batches(loader, count: int) -> list:
    """The loader's first ``count`` batches (fewer if it ends first)."""
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) >= count:
            break
    return batches


def _train_step(model, optimizer, batch, device: torch.device) -> None:
    """One forward, backward and optimizer step on ``batch``."""
    from generative_recommenders.training.inputs import encoder_inputs

    inputs = encoder_inputs(batch.to(device), write_target_id=True)
    optimizer.zero_grad(set_to_none=True)
    total, _, _ = model(inputs)
    total.backward()
    optimizer.step()
    float(total.item())


def run_train_setting(
    setting: str,
    data_dir: str,
    device: torch.device,
    steps: int,
    quick: bool,
    extra_bindings: tuple[str, ...] = (),
) -> dict:
    """Median step (forward, backward, optimizer) and full-evaluation time of one setting."""
    tune_allocator()
    dataset = TRAIN_SETTINGS[setting][1]
    config = _configure(setting, dataset, quick, extra_bindings)
    built, model, optimizer = _build(config, data_dir, dataset, device)
    batches = _first_batches(built.data.train.loader, steps + 2)
    times, flops = [], []
    for i, batch in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        _train_step(model, optimizer, batch, device)
        _sync(device)
        if i >= 2 or len(batches) <= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
            flops.append(
                train_step_flops(
                    model.encoder, batch.lengths.tolist(), config.num_negatives or 1,
                    config.item_embedding_dim,
                )
            )  # fmt: skip
    step_s = statistics.median(times)
    result = {
        "setting": setting,
        "step_ms": step_s * 1000.0,
        "sequences_per_s": config.local_batch_size / step_s,
        "useful_gflops": statistics.median(flops) / 1e9,
    }
    if dataset == "ml-100k":
        encoder = model.encoder
        eval_times = []
        for _ in range(2):
            encoder.eval()
            start = time.perf_counter()
            with torch.no_grad():
                metrics = built.evaluate_fn(encoder, built.data.selection, None)
            _sync(device)
            eval_times.append(time.perf_counter() - start)
        result["eval_s"] = min(eval_times)
        result["eval_users"] = int(metrics["num_users"])
    result["peak_mem_gib"] = peak_mem_gib(device)
    return result


def _rss_gib() -> float:
    """This process's resident set size now (GiB; the high-water mark where /proc is missing)."""
    try:
        pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return peak_mem_gib(torch.device("cpu"))
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def _reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark to its current RSS (Linux >= 4.0); True if done."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_baseline_gib(device: torch.device) -> float:
    """Memory in use now (GiB), after resetting the peak that :func:`peak_mem_gib` reads.

    CUDA: allocated bytes after ``reset_peak_memory_stats``. CPU: RSS after resetting the
    high-water mark; where that cannot be reset the peak stays the whole process's (one process
    per measurement keeps it honest).
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**30
    _reset_peak_rss()
    return _rss_gib()


# setting of the memory demonstration; distribution -> history lengths [lo, hi) in events,
# (full sizes: max length 200, quick sizes: max length 20).
MEMORY_SETTING = "ml-1m/hstu-large"
MEMORY_DISTRIBUTIONS = {"short": ((10, 41), (4, 9)), "long": ((180, 261), (18, 27))}
MEMORY_NUM_ITEMS = (3706, 300)  # ML-1M's catalogue (full, quick)


def run_memory_point(distribution: str, device: torch.device, steps: int, quick: bool) -> dict:
    """Training-memory increment of :data:`MEMORY_SETTING` on one synthetic length distribution.

    Writes a store whose history lengths follow ``distribution`` (same catalogue, batch and max
    length for every distribution), takes the memory baseline once the model, optimizer and
    batches exist, then runs 1 warm-up + ``steps`` training steps and reads the peak (GiB).
    """
    tune_allocator()
    length_range = MEMORY_DISTRIBUTIONS[distribution][int(quick)]
    num_items = MEMORY_NUM_ITEMS[int(quick)]
    dataset = f"synthetic-memory-{distribution}"
    config = _configure(MEMORY_SETTING, dataset, quick)
    # Enough users for every step's batch, and enough events for every item to occur.
    num_users = max(config.local_batch_size * (steps + 1), -(-num_items // length_range[0]))
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_store(
            pathlib.Path(tmp), dataset, num_users, num_items, sum(length_range) // 2,
            length_range=length_range,
        )  # fmt: skip
        built, model, optimizer = _build(config, tmp, dataset, device)
        batches = _first_batches(built.data.train.loader, steps + 1)
        baseline = memory_baseline_gib(device)
        for batch in batches:
            _train_step(model, optimizer, batch, device)
        _sync(device)
        peak = peak_mem_gib(device)
    events = statistics.mean(float(b.lengths.sum()) for b in batches)
    increment = max(0.0, peak - baseline)
    return {
        "setting": MEMORY_SETTING,
        "distribution": distribution,
        "history_lengths": [length_range[0], length_range[1] - 1],
        "valid_events_per_batch": events,
        "batch_x_max_length": batches[0].batch_size * batches[0].max_length,
        "baseline_gib": baseline,
        "peak_gib": peak,
        "increment_gib": increment,
        "increment_mib_per_1k_events": increment * 1024.0 / (events / 1000.0),
    }


def run_retrieval(
    num_items: int, num_users: int, device: torch.device, dim: int = 50, history: int = 200
) -> dict:
    """Users/s of exact target ranks over the whole catalogue with seen-item filtering."""
    from generative_recommenders.retrieval import CandidateIndex
    from generative_recommenders.retrieval.brute_force import MIPSBruteForceTopK

    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(1, num_items + 1, dtype=torch.int64)
    embeddings = torch.nn.functional.normalize(torch.randn(num_items, dim, generator=gen), dim=-1)
    retrieval = MIPSBruteForceTopK(None, CandidateIndex(ids.to(device), embeddings.to(device)))
    queries = torch.randn(num_users, dim, generator=gen).to(device)
    targets = torch.randint(1, num_items + 1, (num_users,), generator=gen).to(device)
    seen = torch.randint(1, num_items + 1, (num_users, min(history, num_items)), generator=gen)
    seen = seen.to(device)
    retrieval.target_ranks(queries[:8], targets[:8], seen[:8])  # warm-up (prepares the items)
    times = []
    for _ in range(2):
        _sync(device)
        start = time.perf_counter()
        retrieval.target_ranks(queries, targets, seen)
        _sync(device)
        times.append(time.perf_counter() - start)
    return {
        "setting": f"retrieval d{dim}, {history} seen filtered",
        "num_items": num_items,
        "users_per_s": num_users / min(times),
    }


def _bench_data_module():
    path = REPO / "benchmarks" / "bench_data.py"
    spec = importlib.util.spec_from_file_location("bench_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_data(interactions: int, windows: int) -> dict:
    """Preprocessing rows/s (child process) and window / batch throughput of the result."""
    from generative_recommenders.data.store import SequenceStore

    bench_data = _bench_data_module()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        csv_path = tmp_path / "events.csv"
        bench_data.write_synthetic_csv(csv_path, interactions)
        seconds, rss = bench_data.time_preprocess(csv_path, tmp_path)
        store = SequenceStore.open(tmp_path, "synthetic")
        windows_per_s = bench_data.time_windows(store, 200, windows)
        batches_per_s = bench_data.time_batches(store, 200, 128, max(1, windows // 128))
    return {
        "preprocess_interactions": interactions,
        "preprocess_rows_per_s": interactions / seconds,
        "preprocess_peak_rss_gib": rss,
        "windows_per_s": windows_per_s,
        "collated_windows_per_s": batches_per_s * 128,
    }
