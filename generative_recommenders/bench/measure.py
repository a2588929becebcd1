"""The measurements: GEMM ceiling, training steps, evaluation, data pipeline."""

from __future__ import annotations

import importlib.util
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


def gemm_gflops(size: int, repeats: int, device: torch.device, dtype=torch.float32) -> float:
    """Median GFLOP/s of a [size, size] x [size, size] matmul."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:  # the first call warms up
            times.append(time.perf_counter() - start)
    return 2.0 * size**3 / statistics.median(times) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mem_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def write_synthetic_store(
    data_dir: pathlib.Path,
    name: str,
    num_users: int,
    num_items: int,
    mean_length: int,
    seed: int = 0,
) -> None:
    """A store of random histories (lengths 20..3x mean, skewed item popularity)."""
    from generative_recommenders.data.store import store_path, write_store

    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 3 * mean_length, num_users)
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


def run_train_setting(
    setting: str, data_dir: str, device: torch.device, steps: int, quick: bool
) -> dict:
    """Median step (forward, backward, optimizer) and full-evaluation time of one setting."""
    from generative_recommenders.config.build import build_training
    from generative_recommenders.config.registry import parse_gin
    from generative_recommenders.config.train import train_fn
    from generative_recommenders.data.store import SequenceStore
    from generative_recommenders.training.distributed import DistributedContext
    from generative_recommenders.training.inputs import encoder_inputs
    from generative_recommenders.training.optim import make_optimizer

    tune_allocator()
    gin_file, dataset = TRAIN_SETTINGS[setting]
    bindings = [f'train_fn.dataset_name = "{dataset}"', "create_data_loader.num_workers = 0"]
    if quick:
        bindings += list(QUICK_BINDINGS)
    parse_gin([str(REPO / gin_file)], bindings)
    config = train_fn()
    store = SequenceStore.open(data_dir, dataset)
    torch.manual_seed(0)
    built = build_training(config, store, DistributedContext(0, 0, 1, device))
    model = built.model.to(device).train()
    optimizer = make_optimizer(model, config.learning_rate, config.weight_decay)
    batches = []
    for batch in built.data.train.loader:
        batches.append(batch)
        if len(batches) >= steps + 2:
            break

    def step(batch) -> None:
        inputs = encoder_inputs(batch.to(device), write_target_id=True)
        optimizer.zero_grad(set_to_none=True)
        total, _, _ = model(inputs)
        total.backward()
        optimizer.step()
        float(total.item())

    times, flops = [], []
    for i, batch in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        step(batch)
        _sync(device)
        if i >= 2 or len(batches) <= 2:  # two warm-up steps
            times.append(time.perf_counter() - start)
            flops.append(
                train_step_flops(
                    model.encoder, batch.lengths.tolist(), config.num_negatives,
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
