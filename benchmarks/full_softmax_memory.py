"""Peak memory and time of one training step with the full cross-entropy (FullSoftmaxLoss).

    .venv/bin/python benchmarks/full_softmax_memory.py                 # the 1M-item target + small
    .venv/bin/python benchmarks/full_softmax_memory.py --cases small   # reference vs chunked only

Each case runs in a fresh subprocess (so ru_maxrss is that case's own peak): a synthetic
LocalEmbeddingModule of X items (D = 50), random queries [B, N, D] requiring grad (standing in for
the encoder's output), every position supervised by a random item, FullSoftmaxLoss (dot product,
L2-normalised items, T = 0.05), backward and an Adam step over the table and the queries. The
first step is timed after a warm-up step at the small size only (at 1M one step is minutes).
Prints one table row per case; asserts nothing.

Cases: ``target`` = chunked at X = 1,000,000, B = 128, N = 200 (L = 25,600 positions), the
issue's target; ``small-reference`` / ``small-chunked`` = X = 20,000, B = 16, N = 50 (L = 800),
where the reference's [L, X] logits (64 MB) still fit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generative_recommenders.modeling.embeddings import LocalEmbeddingModule  # noqa: E402
from generative_recommenders.modeling.full_softmax_loss import FullSoftmaxLoss  # noqa: E402
from generative_recommenders.modeling.negatives import LocalNegativesSampler  # noqa: E402
from generative_recommenders.modeling.similarity.dot_product import (  # noqa: E402
    DotProductSimilarity,
)
from generative_recommenders.ops import kernels  # noqa: E402

CASES = {
    "small-reference": {"items": 20_000, "batch": 16, "length": 50, "kernel": "reference"},
    "small-chunked": {"items": 20_000, "batch": 16, "length": 50, "kernel": "chunked"},
    "target": {"items": 1_000_000, "batch": 128, "length": 200, "kernel": "chunked"},
}
DIM = 50


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(name: str, steps: int) -> dict:
    """One case in this process: build, ``steps`` training steps; peak RSS and step times."""
    spec = CASES[name]
    torch.manual_seed(0)
    items, batch, length = spec["items"], spec["batch"], spec["length"]
    table = LocalEmbeddingModule(items, DIM)
    catalogue = torch.arange(1, items + 1)
    # Unit-norm queries, as the configs' encoders output (user_embedding_norm = "l2_norm"): with
    # raw randn queries the logits / T reach +-150 and exp() underflows into denormal floats, which
    # made the same step ~3x slower on this CPU (x86 handles denormals in microcode).
    queries = torch.nn.Parameter(F.normalize(torch.randn(batch, length, DIM), dim=-1))
    ids = torch.randint(1, items + 1, (batch, length))
    weights = torch.ones(batch, length)
    sampler = LocalNegativesSampler(
        table.get_item_embeddings, catalogue, l2_norm=True, l2_norm_eps=1e-6
    )
    loss_module = FullSoftmaxLoss(
        temperature=0.05, item_embedding_fn=table.get_item_embeddings, catalogue_item_ids=catalogue
    )
    optimizer = torch.optim.Adam([*table.parameters(), queries], lr=1e-3)
    built_rss = _rss_mib()
    times, losses = [], []
    with kernels.using(spec["kernel"]):
        for _ in range(steps):
            start = time.perf_counter()
            loss, _ = loss_module(
                lengths=torch.full((batch,), length),
                output_embeddings=queries,
                supervision_ids=ids,
                supervision_embeddings=table.get_item_embeddings(ids),
                supervision_weights=weights,
                negatives_sampler=sampler,
                similarity_module=DotProductSimilarity(),
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
            losses.append(float(loss.detach()))
    return {
        "case": name,
        "items": items,
        "positions": batch * length,
        "kernel": spec["kernel"],
        "threads": torch.get_num_threads(),
        "built_rss_mib": built_rss,
        "peak_rss_mib": _rss_mib(),
        "step_s": times,
        "loss": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="small,target", help="small, target or small,target")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.steps)))
        return
    names = []
    for group in args.cases.split(","):
        names += [name for name in CASES if name == group or name.startswith(group + "-")]
    print("| case | items X | positions L | kernel | threads | RSS after build (MiB) | "
          "peak RSS (MiB) | step time (s) | loss |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        steps = 1 if name == "target" else 3  # small: the first step warms up, then 2 timed
        child = subprocess.run(
            [sys.executable, __file__, "--child", name, "--steps", str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        timed = row["step_s"][1:] or row["step_s"]
        print(
            f"| {name} | {row['items']:,} | {row['positions']:,} | {row['kernel']} | "
            f"{row['threads']} | {row['built_rss_mib']:,.0f} | {row['peak_rss_mib']:,.0f} | "
            f"{min(timed):.2f} | {row['loss'][-1]:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
