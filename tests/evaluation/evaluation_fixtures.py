"""Tiny deterministic evaluation data, a brute-force reference, and the gloo worker."""

from __future__ import annotations

import json
import math

import torch
import torch.distributed as dist

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.evaluation.evaluator import Evaluator
from generative_recommenders.retrieval import CandidateIndex, MIPSBruteForceTopK

D = 5


class World:
    """U users over a gappy catalogue: full histories, windows of the last ``window`` items."""

    def __init__(self, num_users=7, num_items=20, window=4, full=7, seed=0, rated=True):
        gen = torch.Generator().manual_seed(seed)
        self.catalogue = (torch.randperm(num_items, generator=gen) * 2 + 3).to(torch.int64)
        self.embeddings = torch.randn(num_items, D, generator=gen)
        self.queries = torch.randn(num_users, D, generator=gen)
        self.window = window
        self.histories, self.targets, self.ratings = [], [], []
        for user in range(num_users):
            length = 1 + (user * 3) % full
            picks = torch.randperm(num_items, generator=gen)[: length + 1]
            items = self.catalogue[picks].tolist()
            self.histories.append(items[:-1])
            self.targets.append(items[-1])
            self.ratings.append(float(5 if rated and user % 3 == 0 else 3))
        self.full = full

    def index(self) -> CandidateIndex:
        return CandidateIndex(self.catalogue, self.embeddings)

    def batches(self, users: list[int], batch_size: int) -> list[SequenceBatch]:
        out = []
        for start in range(0, len(users), batch_size):
            chunk = users[start : start + batch_size]
            B, N = len(chunk), self.window
            ids = torch.zeros(B, N, dtype=torch.int64)
            lengths = torch.zeros(B, dtype=torch.int64)
            for row, user in enumerate(chunk):
                tail = self.histories[user][-N:]
                ids[row, : len(tail)] = torch.tensor(tail)
                lengths[row] = len(tail)
            out.append(
                SequenceBatch(
                    rows=torch.tensor(chunk),
                    user_ids=torch.tensor(chunk) + 100,
                    ids=ids,
                    lengths=lengths,
                    timestamps=torch.zeros(B, N, dtype=torch.int64),
                    ratings=torch.zeros(B, N),
                    target_ids=torch.tensor([self.targets[u] for u in chunk]),
                    target_timestamps=torch.zeros(B, dtype=torch.int64),
                    target_ratings=torch.tensor([self.ratings[u] for u in chunk]),
                )
            )
        return out

    def query_fn(self, batch: SequenceBatch) -> torch.Tensor:
        return self.queries[batch.rows]

    def seen_fn(self, batch: SequenceBatch) -> torch.Tensor:
        seen = torch.zeros(batch.batch_size, self.full, dtype=torch.int64)
        for row, user in enumerate(batch.rows.tolist()):
            seen[row, : len(self.histories[user])] = torch.tensor(self.histories[user])
        return seen

    def reference_rank(self, user: int, filter_seen: str) -> int:
        """1 + #{valid other items with score >= target's}, by a Python loop."""
        history = self.histories[user]
        if filter_seen == "none":
            banned: set = set()
        else:
            banned = set(history[-self.window :] if filter_seen == "window" else history)
        target = self.targets[user]
        if target in banned:
            return len(self.catalogue) + 1
        scores = {
            int(i): float(self.queries[user] @ e)
            for i, e in zip(self.catalogue, self.embeddings, strict=True)
        }
        return 1 + sum(
            s >= scores[target] for i, s in scores.items() if i != target and i not in banned
        )


def reference_metrics(ranks: list[int], k_max: int) -> dict[str, float]:
    def hr(k):
        return sum(r <= min(k, k_max) for r in ranks) / len(ranks)

    def ndcg(k):
        return sum(1 / math.log2(r + 1) for r in ranks if r <= min(k, k_max)) / len(ranks)

    out = {f"hr@{k}": hr(k) for k in (1, 10, 50, 100, 200, 500, 1000)}
    out.update({f"ndcg@{k}": ndcg(k) for k in (1, 10, 50, 100, 200)})
    out["mrr"] = sum(1 / min(r, k_max + 1) for r in ranks) / len(ranks)
    return out


def evaluate_users(world: World, users: list[int], batch_size: int, **evaluator_kw):
    evaluator = Evaluator(
        top_k_method=lambda index: MIPSBruteForceTopK(None, index, query_chunk_size=2),
        **evaluator_kw,
    )
    return evaluator.evaluate(
        world.batches(users, batch_size), world.query_fn, world.index(), seen_fn=world.seen_fn
    )


def gloo_worker(rank: int, world_size: int, init_file: str, out_dir: str, settings: dict) -> None:
    """Evaluate users rank::world_size on a gloo group and write the result as JSON."""
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        world = World(num_users=settings["num_users"])
        users = list(range(settings["num_users"]))[rank::world_size]
        result = evaluate_users(world, users, settings["batch_size"], **settings["evaluator"])
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()
