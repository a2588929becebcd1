"""Exact brute-force retrieval over a :class:`CandidateIndex`, chunked over queries and items.

Scores come from the model's similarity module (``prepare_queries`` / ``prepare_items`` /
``score_prepared``, see ``modeling.similarity.base``), so retrieval scores exactly as the loss does.
At most ``query_chunk_size x item_chunk_size`` scores exist at any time. Filtered (invalid) items get
the score ``-inf``; an item whose score is ``-inf`` is never returned or counted.

Call it with the similarity module in eval mode (dropout off); everything here runs under
``torch.no_grad``.
"""

from __future__ import annotations

import torch
from torch import nn

from generative_recommenders.modeling.similarity.base import PreparedState
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.retrieval.index import CandidateIndex

_NEG_INF = float("-inf")


def _slice(state: PreparedState, start: int, end: int) -> PreparedState:
    return tuple(t[start:end] for t in state)


def _mask_invalid(scores: torch.Tensor, invalid_positions: torch.Tensor | None, start: int) -> None:
    """Set ``scores[b, p - start] = -inf`` for every invalid index row p in [start, start + Ic).

    scores: [Bc, Ic] (modified in place); invalid_positions: [Bc, H] index rows, -1 = none.
    """
    if invalid_positions is None or invalid_positions.shape[1] == 0:
        return
    local = invalid_positions - start
    inside = (invalid_positions >= 0) & (local >= 0) & (local < scores.shape[1])
    # amin with +inf leaves a score unchanged, so out-of-chunk entries can point anywhere.
    src = torch.full(local.shape, float("inf"), dtype=scores.dtype, device=scores.device)
    src.masked_fill_(inside, _NEG_INF)
    scores.scatter_reduce_(1, torch.where(inside, local, 0), src, reduce="amin")


class BruteForceTopK:
    """Exact top-k and exact target ranks with a similarity module over a candidate index.

    Args:
        similarity_module: the model's similarity (dot product or MoL).
        index: the candidate items.
        query_chunk_size: queries scored at once (``train_fn.eval_user_max_batch_size``); None = 1024.
        item_chunk_size: items scored at once.
    """

    def __init__(
        self,
        similarity_module: nn.Module,
        index: CandidateIndex,
        query_chunk_size: int | None = 1024,
        item_chunk_size: int = 65536,
    ) -> None:
        query_chunk_size = 1024 if query_chunk_size is None else int(query_chunk_size)
        if query_chunk_size < 1 or item_chunk_size < 1:
            raise ValueError("query_chunk_size and item_chunk_size must be >= 1")
        self.similarity = similarity_module
        self.query_chunk_size = query_chunk_size
        self.item_chunk_size = int(item_chunk_size)
        self.index = index
        self._cache_key: tuple[int, int] | None = None
        self._item_state: PreparedState | None = None

    def update_index(self, index: CandidateIndex) -> None:
        """Use ``index`` from now on (the prepared item state is rebuilt on next use)."""
        self.index = index
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the prepared item state (e.g. after the similarity's parameters changed)."""
        self._cache_key = None
        self._item_state = None

    @property
    def num_items(self) -> int:
        return self.index.num_items

    def _items(self) -> PreparedState:
        key = (id(self.index), self.index.version)
        if self._item_state is None or self._cache_key != key:
            with torch.no_grad():
                self._item_state = self.similarity.prepare_items(self.index.item_embeddings)
            self._cache_key = key
        return self._item_state

    def _item_chunks(self) -> list[tuple[int, int]]:
        size, step = self.num_items, self.item_chunk_size
        return [(start, min(start + step, size)) for start in range(0, size, step)]

    def _invalid_positions(self, invalid_ids: torch.Tensor | None) -> torch.Tensor | None:
        if invalid_ids is None:
            return None
        if invalid_ids.dim() != 2:
            raise ValueError(f"invalid_ids must be [B, H], got {list(invalid_ids.shape)}")
        return self.index.positions(invalid_ids.to(torch.int64).contiguous())

    def _query_chunks(
        self, query_embeddings: torch.Tensor, user_ids: torch.Tensor | None
    ) -> list[tuple[int, int, PreparedState]]:
        chunks = []
        device = self.index.device
        for start in range(0, query_embeddings.shape[0], self.query_chunk_size):
            end = min(start + self.query_chunk_size, query_embeddings.shape[0])
            uids = None if user_ids is None else user_ids[start:end].to(device)
            chunks.append(
                (
                    start,
                    end,
                    self.similarity.prepare_queries(query_embeddings[start:end].to(device), uids),
                )
            )
        return chunks

    def _scores(
        self,
        query_state: PreparedState,
        item_state: PreparedState,
        start: int,
        end: int,
        invalid_positions: torch.Tensor | None,
    ) -> torch.Tensor:
        scores = self.similarity.score_prepared(query_state, _slice(item_state, start, end))
        _mask_invalid(scores, invalid_positions, start)
        return scores  # [Bc, end - start]

    @torch.no_grad()
    def top_k(
        self,
        query_embeddings: torch.Tensor,
        k: int,
        invalid_ids: torch.Tensor | None = None,
        user_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best non-filtered items per query, best first.

        Args:
            query_embeddings: [B, D].
            k: number of results (>= 1).
            invalid_ids: [B, H] int64 ids never to return (0 = no entry), e.g. the history.
            user_ids: [B] int64 for user-aware similarities.

        Returns:
            (scores [B, k], ids [B, k] int64); where fewer than k items remain, the tail has
            score ``-inf`` and id 0. Equal scores come out in an unspecified order.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        item_state = self._items()
        invalid = self._invalid_positions(invalid_ids)
        all_scores, all_ids = [], []
        for q_start, q_end, query_state in self._query_chunks(query_embeddings, user_ids):
            rows_invalid = None if invalid is None else invalid[q_start:q_end]
            best_scores: torch.Tensor | None = None
            best_positions: torch.Tensor | None = None
            for start, end in self._item_chunks():
                scores = self._scores(query_state, item_state, start, end, rows_invalid)
                top_scores, top_positions = torch.topk(scores, min(k, end - start), dim=1)
                top_positions = top_positions + start
                if best_scores is not None:
                    top_scores = torch.cat([best_scores, top_scores], dim=1)
                    top_positions = torch.cat([best_positions, top_positions], dim=1)
                    top_scores, order = torch.topk(top_scores, min(k, top_scores.shape[1]), dim=1)
                    top_positions = top_positions.gather(1, order)
                best_scores, best_positions = top_scores, top_positions
            assert best_scores is not None and best_positions is not None
            missing = k - best_scores.shape[1]
            if missing > 0:
                best_scores = torch.cat(
                    [best_scores, best_scores.new_full((best_scores.shape[0], missing), _NEG_INF)],
                    dim=1,
                )
                best_positions = torch.cat(
                    [best_positions, best_positions.new_zeros((best_positions.shape[0], missing))],
                    dim=1,
                )
            ids = self.index.item_ids[best_positions]
            ids = ids.masked_fill(best_scores == _NEG_INF, 0)
            all_scores.append(best_scores)
            all_ids.append(ids)
        return torch.cat(all_scores), torch.cat(all_ids)

    @torch.no_grad()
    def target_ranks(
        self,
        query_embeddings: torch.Tensor,
        target_ids: torch.Tensor,
        invalid_ids: torch.Tensor | None = None,
        user_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact 1-based rank of each target among the non-filtered catalogue items.

        ``rank = 1 + #{other non-filtered items with score >= the target's score}`` (ties count
        against the target). A target that is filtered (in ``invalid_ids``), not in the index, or
        scores NaN gets ``rank = X + 1`` (X = catalogue size): a miss at every cutoff.

        Args:
            query_embeddings: [B, D]; target_ids: [B] int64; invalid_ids: [B, H] (0 = none);
            user_ids: [B] or None.

        Returns:
            [B] int64 ranks in 1..X+1.
        """
        item_state = self._items()
        num_items = self.num_items
        target_positions = self.index.positions(target_ids.to(torch.int64).contiguous())  # [B]
        invalid = self._invalid_positions(invalid_ids)
        missed = target_positions < 0
        if invalid is not None:
            missed |= (invalid == target_positions.unsqueeze(1)).any(dim=1)
        chunks = self._item_chunks()
        ranks = []
        for q_start, q_end, query_state in self._query_chunks(query_embeddings, user_ids):
            rows_invalid = None if invalid is None else invalid[q_start:q_end]
            rows_target = target_positions[q_start:q_end]
            if len(chunks) == 1:
                scores = self._scores(query_state, item_state, 0, num_items, rows_invalid)
                target_scores = scores.gather(1, rows_target.clamp(min=0).unsqueeze(1))  # [Bc, 1]
                counts = (scores >= target_scores).sum(dim=1, dtype=torch.int32).to(torch.int64)
            else:
                # The target's score is taken from the same chunk computation that scores it
                # against the others, so ties are exact whatever the matrix kernel does.
                target_scores = self._target_scores(query_state, item_state, rows_target)
                counts = torch.zeros_like(rows_target)
                for start, end in chunks:
                    scores = self._scores(query_state, item_state, start, end, rows_invalid)
                    # int32 accumulation: ~1.6x faster than the default int64 bool sum on CPU.
                    counts += (scores >= target_scores).sum(dim=1, dtype=torch.int32)
            rows_missed = missed[q_start:q_end] | torch.isnan(target_scores.squeeze(1))
            ranks.append(torch.where(rows_missed, num_items + 1, counts).to(torch.int64))
        return torch.cat(ranks)

    def _target_scores(
        self, query_state: PreparedState, item_state: PreparedState, target_positions: torch.Tensor
    ) -> torch.Tensor:
        """[Bc] index rows (-1 = absent) -> [Bc, 1] scores (NaN for absent) from their chunk."""
        step = self.item_chunk_size
        out = torch.full(
            (target_positions.shape[0], 1), float("nan"), device=target_positions.device
        )
        chunk_of = torch.where(target_positions >= 0, target_positions // step, -1)
        for chunk in torch.unique(chunk_of[chunk_of >= 0]).tolist():
            start, end = chunk * step, min((chunk + 1) * step, self.num_items)
            scores = self._scores(query_state, item_state, start, end, None)
            rows = (chunk_of == chunk).nonzero().squeeze(1)
            picked = scores[rows].gather(1, (target_positions[rows] - start).unsqueeze(1))
            out = out.to(picked.dtype)
            out[rows] = picked
        return out

    @torch.no_grad()
    def score_items(
        self,
        query_embeddings: torch.Tensor,
        item_ids: torch.Tensor,
        user_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores of each query's own candidates: [B, D] x ids [B, M] -> [B, M].

        Uses the similarity's ``forward`` with ``[B, M, D]`` items; ids not in the index score -inf.
        """
        positions = self.index.positions(item_ids.to(torch.int64).contiguous())  # [B, M]
        device = self.index.device
        out = []
        for start in range(0, query_embeddings.shape[0], self.query_chunk_size):
            end = min(start + self.query_chunk_size, query_embeddings.shape[0])
            rows = positions[start:end]
            items = self.index.item_embeddings[rows.clamp(min=0)]  # [Bc, M, D]
            uids = None if user_ids is None else user_ids[start:end].to(device)
            scores, _ = self.similarity(query_embeddings[start:end].to(device), items, uids)
            out.append(scores.masked_fill(rows < 0, _NEG_INF))
        return torch.cat(out)


class MIPSBruteForceTopK(BruteForceTopK):
    """Maximum inner product search: :class:`BruteForceTopK` with the dot-product similarity.

    ``similarity_module`` may be None (a fresh dot product is used); anything other than a dot
    product is refused, since MIPS would silently rank by the wrong score.
    """

    def __init__(
        self,
        similarity_module: nn.Module | None,
        index: CandidateIndex,
        query_chunk_size: int | None = 1024,
        item_chunk_size: int = 65536,
    ) -> None:
        if similarity_module is None:
            similarity_module = DotProductSimilarity()
        if not isinstance(similarity_module, DotProductSimilarity):
            raise ValueError(
                "top_k_method='MIPSBruteForceTopK' needs the dot-product similarity; "
                f"got {type(similarity_module).__name__} (use 'MoLBruteForceTopK')"
            )
        super().__init__(similarity_module, index, query_chunk_size, item_chunk_size)


class MoLBruteForceTopK(BruteForceTopK):
    """:class:`BruteForceTopK` with a Mixture-of-Logits similarity (full MoL scores per item)."""
