"""Reference vs fbgemm jagged conversions (forward + backward), the measurement behind "auto".

``python benchmarks/bench_jagged.py`` prints the median ms of each op and backend at the ML-1M
training shape (B = 128 histories of 20..200 rows, D = 50), alternating the backends.
"""

from __future__ import annotations

import statistics
import time

import torch

from generative_recommenders.ops import kernels
from generative_recommenders.ops.jagged import dense_to_jagged, jagged_to_dense, lengths_to_offsets


def main(repeats: int = 30) -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 201, (128,), generator=gen)
    offsets = lengths_to_offsets(lengths)
    dense = torch.randn(128, 200, 50, generator=gen, requires_grad=True)
    values = torch.randn(int(lengths.sum()), 50, generator=gen, requires_grad=True)
    cases = {
        "dense_to_jagged": lambda: dense_to_jagged(dense, offsets),
        "jagged_to_dense": lambda: jagged_to_dense(values, offsets, 200),
    }
    for op, run in cases.items():
        times = {"reference": [], "fbgemm": []}
        for _ in range(repeats):
            for choice in times:
                with kernels.using(choice):
                    start = time.perf_counter()
                    run().sum().backward()
                    times[choice].append((time.perf_counter() - start) * 1000)
        print(op, {k: round(statistics.median(v), 3) for k, v in times.items()}, "ms (fwd + bwd)")


if __name__ == "__main__":
    main()
