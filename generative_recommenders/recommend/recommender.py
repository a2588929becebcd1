"""Top-k recommendations from a trained run: for store users, for new histories, similar items.

Queries are encoded by the evaluator's own function (``training.inputs.encode_queries``):
the window is a user's most recent ``max_sequence_length`` events, oldest first, and the
timestamp written at index ``length`` (HSTU's query time) is, by default, the user's **last
event's** timestamp, i.e. "recommend right after the last event" (``query_time="now"`` uses the
current clock, an int uses that unix time). Retrieval is the exact chunked brute force of
``retrieval.BruteForceTopK`` over the whole catalogue with the model's own similarity (dot product
or MoL), on the item embeddings the evaluator uses (L2-normalised when ``train_fn.item_l2_norm``).
Viewed items (a user's whole known history, not only the window) and ``exclude_items`` are passed
as ``invalid_ids``, so they can never be returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.encoders.hstu import HSTU
from generative_recommenders.modeling.negatives import l2_normalize
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.recommend.cache import (
    HistoryCache,
    UserHistory,
    split_rows,
    stack_rows,
)
from generative_recommenders.recommend.histories import History, as_histories
from generative_recommenders.recommend.ids import IdCodec
from generative_recommenders.recommend.run_loading import LoadedRun, load_run
from generative_recommenders.retrieval import BruteForceTopK, CandidateIndex
from generative_recommenders.training.inputs import encode_queries

_LOG = logging.getLogger(__name__)
ON_UNKNOWN = ("error", "warn", "skip")
SIMILARITY_METHODS = ("cosine", "model")
QueryTime = int | str | None
_NEG_INF = float("-inf")


def check_on_unknown(value: str) -> str:
    if value not in ON_UNKNOWN:
        raise UserInputError(f"--on_unknown={value!r}: expected one of {', '.join(ON_UNKNOWN)}")
    return value


def _preview(values: Sequence[object], limit: int = 10) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


@dataclass
class _Sequence:
    """Item codes, times (s), ratings of one query, oldest first; the key it is reported under."""

    key: object
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray
    user_code: int = 0


class Recommender:
    """A trained run, ready to recommend (see the module docstring for what is encoded how).

    Args:
        run: from :func:`~generative_recommenders.recommend.run_loading.load_run`.
        on_unknown: default policy for unknown users/items, ``error`` | ``warn`` | ``skip``.
        query_time: default query time, None (last event) | ``"now"`` | unix seconds.
        query_chunk_size: queries scored at once by the retrieval.
        encode_chunk_size: histories encoded at once.
    """

    def __init__(
        self,
        run: LoadedRun,
        on_unknown: str = "warn",
        query_time: QueryTime = None,
        query_chunk_size: int = 1024,
        encode_chunk_size: int = 64,
    ) -> None:
        self.run = run
        self.encoder = run.encoder
        self.config = run.config
        self.store = run.store
        self.on_unknown = check_on_unknown(on_unknown)
        self.query_time = query_time
        self.encode_chunk_size = int(encode_chunk_size)
        self.device = next(self.encoder.parameters()).device
        catalogue = self.store.catalogue_item_ids()
        self.users = IdCodec(
            np.asarray(self.store.user_ids), self.store.user_id_mapping(), "user_id"
        )
        self.items = IdCodec(catalogue, self.store.item_id_mapping(), "item_id")
        self.catalogue = torch.as_tensor(catalogue, dtype=torch.int64, device=self.device)
        with torch.no_grad():
            raw = self.encoder.get_item_embeddings(self.catalogue).float()
        self.raw_item_embeddings = raw  # [X, D], the item table rows of the catalogue
        self.item_embeddings = (
            l2_normalize(raw, self.config.l2_norm_eps) if self.config.item_l2_norm else raw
        )  # [X, D], what retrieval scores (as in evaluation)
        self.retrieval = BruteForceTopK(
            self.encoder.similarity,
            CandidateIndex(self.catalogue, self.item_embeddings),
            query_chunk_size=query_chunk_size,
        )
        self._cosine: BruteForceTopK | None = None
        self.titles = self._titles()

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        checkpoint: str = "best",
        data_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        **kwargs,
    ) -> Recommender:
        """Load ``run_dir`` with ``checkpoint`` = ``"best"`` | ``"latest"`` | a path."""
        return cls(load_run(run_dir, checkpoint, data_dir, device), **kwargs)

    # ---- public API --------------------------------------------------------------------------

    def recommend(
        self,
        users: Iterable[object],
        k: int = 10,
        filter_viewed: bool = True,
        exclude_items: Iterable[object] | None = None,
        on_unknown: str | None = None,
        query_time: QueryTime = None,
    ) -> pd.DataFrame:
        """Top-k for store users (their full history in the store), best first.

        Returns a DataFrame ``user_id, item_id, score, rank`` (+ ``title``); ``attrs`` hold
        ``unknown_users`` and ``unknown_items`` (of ``exclude_items``).
        """
        policy = check_on_unknown(on_unknown or self.on_unknown)
        users = list(users)
        codes, unknown = self.users.encode(users)
        self._unknown("user", unknown, policy)
        exclude = self._exclusions(exclude_items, policy)
        rows = np.searchsorted(np.asarray(self.store.user_ids), codes)
        sequences = [
            _Sequence(
                key=self.users.decode([code])[0],
                items=np.asarray(self.store.history(int(row)), dtype=np.int64),
                timestamps=self._slice(self.store.timestamps, int(row)).astype(np.int64),
                ratings=self._slice(self.store.ratings, int(row)).astype(np.float32),
                user_code=int(code),
            )
            for code, row in zip(codes.tolist(), rows.tolist(), strict=True)
        ]
        queries = self._encode_full(sequences, query_time)
        frame = self._top_k(sequences, queries, k, filter_viewed, exclude)
        frame.attrs.update(unknown_users=unknown, unknown_items=self._last_unknown_exclusions)
        return frame

    def recommend_for_histories(
        self,
        histories: object,
        k: int = 10,
        filter_viewed: bool = True,
        exclude_items: Iterable[object] | None = None,
        on_unknown: str | None = None,
        query_time: QueryTime = None,
        cache: HistoryCache | None = None,
    ) -> pd.DataFrame:
        """Top-k for histories the model never saw (new users with known items).

        ``histories``: a DataFrame ``user_id, item_id[, timestamp, rating]``, a mapping
        ``{user_id: [item ids]}`` or a list of :class:`History`. Without timestamps every event
        gets time 0. Unknown items are dropped per ``on_unknown``; a history with no known item
        gets no recommendations and is listed in ``attrs["empty_histories"]`` (and logged).
        With ``cache`` (a :class:`HistoryCache`), the events are *appended* to what the cache
        holds for each user and HSTU encodes only the new positions.
        """
        policy = check_on_unknown(on_unknown or self.on_unknown)
        parsed = as_histories(histories)
        exclude = self._exclusions(exclude_items, policy)
        unknown_items: list[object] = []
        sequences: list[_Sequence] = []
        empty: list[object] = []
        for history in parsed:
            seq, unknown = self._known_events(history)
            unknown_items.extend(unknown)
            if cache is not None:
                state = cache.get(history.user_id)
                state.items.extend(seq.items.tolist())
                state.timestamps.extend(seq.timestamps.tolist())
                state.ratings.extend(seq.ratings.tolist())
                seq = _Sequence(
                    history.user_id,
                    np.asarray(state.items, dtype=np.int64),
                    np.asarray(state.timestamps, dtype=np.int64),
                    np.asarray(state.ratings, dtype=np.float32),
                )
            if len(seq.items) == 0:
                empty.append(history.user_id)
                continue
            sequences.append(seq)
        self._unknown("item", unknown_items, policy)
        if empty:
            _LOG.warning(
                "no recommendations for %d histories with no known item: %s",
                len(empty),
                _preview(empty),
            )
        if cache is None:
            queries = self._encode_full(sequences, query_time)
        else:
            queries = self._encode_cached(sequences, cache, query_time)
        frame = self._top_k(sequences, queries, k, filter_viewed, exclude)
        frame.attrs.update(
            unknown_items=unknown_items + self._last_unknown_exclusions, empty_histories=empty
        )
        return frame

    def similar_items(
        self,
        items: Iterable[object],
        k: int = 10,
        method: str = "cosine",
        on_unknown: str | None = None,
    ) -> pd.DataFrame:
        """Item-to-item neighbours: ``query_item_id, item_id, score, rank`` (+ ``title``).

        ``"cosine"``: cosine of the item-table rows. ``"model"``: the item's retrieval embedding
        used as a query with the run's similarity (MoL when the run used MoL; for a dot-product
        run this is the dot product of the retrieval embeddings). The item itself is excluded.
        """
        policy = check_on_unknown(on_unknown or self.on_unknown)
        if method not in SIMILARITY_METHODS:
            raise UserInputError(
                f"similar items method={method!r}: expected one of {', '.join(SIMILARITY_METHODS)}"
            )
        items = list(items)
        codes, unknown = self.items.encode(items)
        self._unknown("item", unknown, policy)
        positions = self.retrieval.index.positions(torch.as_tensor(codes, device=self.device))
        if method == "cosine":
            retrieval = self._cosine_retrieval()
            queries = retrieval.index.item_embeddings[positions]
        else:
            retrieval = self.retrieval
            queries = self.item_embeddings[positions]
        scores, ids = retrieval.top_k(queries, k, invalid_ids=torch.as_tensor(codes).view(-1, 1))
        keys = self.items.decode(codes)
        frame = self._frame(keys, scores, ids, key_column="query_item_id")
        frame.attrs.update(unknown_items=unknown)
        return frame

    def history_cache(self) -> HistoryCache:
        """An empty cache for :meth:`recommend_for_histories` (``cache=``)."""
        return HistoryCache()

    def user_queries(self, users: Iterable[object], query_time: QueryTime = None) -> torch.Tensor:
        """[B, D] query embeddings of known store users (unknown ones raise)."""
        codes, unknown = self.users.encode(users)
        self._unknown("user", unknown, "error")
        rows = np.searchsorted(np.asarray(self.store.user_ids), codes)
        sequences = [
            _Sequence(
                0,
                np.asarray(self.store.history(int(r)), dtype=np.int64),
                self._slice(self.store.timestamps, int(r)).astype(np.int64),
                self._slice(self.store.ratings, int(r)).astype(np.float32),
            )
            for r in rows.tolist()
        ]
        return self._encode_full(sequences, query_time)

    # ---- encoding ----------------------------------------------------------------------------

    def _slice(self, array: np.ndarray, row: int) -> np.ndarray:
        return np.asarray(array[int(self.store.offsets[row]) : int(self.store.offsets[row + 1])])

    def _query_time(self, seq: _Sequence, query_time: QueryTime) -> int:
        chosen = self.query_time if query_time is None else query_time
        if chosen is None or chosen == "last":
            return int(seq.timestamps[-1]) if len(seq.timestamps) else 0
        if chosen == "now":
            return int(time.time())
        try:
            return int(chosen)
        except (TypeError, ValueError):
            raise UserInputError(
                f"--query_time={chosen!r}: expected 'last', 'now' or unix seconds"
            ) from None

    @torch.no_grad()
    def _encode_full(self, sequences: list[_Sequence], query_time: QueryTime) -> torch.Tensor:
        """Encode each sequence's window -> [B, D] float32 (chunks of similar lengths)."""
        N = self.config.max_sequence_length
        D = self.encoder.item_embedding_dim
        out = torch.zeros(len(sequences), D, device=self.device)
        lengths = np.array([min(len(s.items), N) for s in sequences], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.encode_chunk_size):
            chunk = order[start : start + self.encode_chunk_size]
            width = max(int(lengths[chunk].max()), 1)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            ts = np.zeros((len(chunk), width), dtype=np.int64)
            ratings = np.zeros((len(chunk), width), dtype=np.float32)
            targets_ts = np.zeros(len(chunk), dtype=np.int64)
            for i, j in enumerate(chunk.tolist()):
                seq, n = sequences[j], int(lengths[j])
                ids[i, :n] = seq.items[-n:] if n else []
                ts[i, :n] = seq.timestamps[-n:] if n else []
                ratings[i, :n] = seq.ratings[-n:] if n else []
                targets_ts[i] = self._query_time(seq, query_time)
            out[torch.as_tensor(chunk, device=self.device)] = self._encode_batch(
                ids, ts, ratings, lengths[chunk], targets_ts
            )
        return out

    def _encode_batch(self, ids, ts, ratings, lengths, query_ts) -> torch.Tensor:
        zeros = torch.zeros(len(lengths), dtype=torch.int64)
        batch = SequenceBatch(
            rows=zeros,
            user_ids=zeros,
            ids=torch.as_tensor(ids),
            lengths=torch.as_tensor(lengths, dtype=torch.int64),
            timestamps=torch.as_tensor(ts),
            ratings=torch.as_tensor(ratings),
            target_ids=zeros,
            target_timestamps=torch.as_tensor(query_ts, dtype=torch.int64),
            target_ratings=zeros.float(),
        ).to(self.device)
        return encode_queries(self.encoder, batch)

    @torch.no_grad()
    def _encode_cached(
        self,
        sequences: list[_Sequence],
        cache: HistoryCache,
        query_time: QueryTime,
    ) -> torch.Tensor:
        """Encode grown histories, reusing HSTU's cache (only unencoded events are computed)."""
        N = self.config.max_sequence_length
        out = torch.zeros(len(sequences), self.encoder.item_embedding_dim, device=self.device)
        incremental = []
        full = []
        can_cache = (
            isinstance(self.encoder, HSTU)
            and self.encoder.tokens_per_event == 1
            and self.encoder.causal  # a bidirectional encoder recomputes every state anyway
        )
        for i, seq in enumerate(sequences):
            state = cache.get(seq.key)
            if can_cache and len(seq.items) <= N:
                incremental.append(i)
            else:
                state.encoded = None  # the window slid (or no cache support): full encode
                full.append(i)
        if full:
            out[full] = self._encode_full([sequences[i] for i in full], query_time)
            cache.full_calls += len(full)
        if incremental:
            states = [cache.get(sequences[i].key) for i in incremental]
            out[incremental] = self._encode_incremental(
                [sequences[i] for i in incremental], states, query_time
            )
            cache.incremental_calls += len(incremental)
        return out

    def _encode_incremental(
        self,
        sequences: list[_Sequence],
        states: list[UserHistory],
        query_time: QueryTime,
    ) -> torch.Tensor:
        """Encode the events each user's cache has not encoded yet -> [B, D]."""
        encoder = self.encoder
        assert isinstance(encoder, HSTU)
        B = len(sequences)
        counts = [
            len(seq.items) - (st.encoded.length if st.encoded is not None else 0)
            for seq, st in zip(sequences, states, strict=True)
        ]
        K = max(counts) + 1  # one more column for the query time at index new_lengths
        ids = np.zeros((B, K), dtype=np.int64)
        ts = np.zeros((B, K), dtype=np.int64)
        ratings = np.zeros((B, K), dtype=np.float32)
        for b, (seq, count) in enumerate(zip(sequences, counts, strict=True)):
            if count:
                ids[b, :count] = seq.items[-count:]
                ts[b, :count] = seq.timestamps[-count:]
                ratings[b, :count] = seq.ratings[-count:]
            ts[b, count] = self._query_time(seq, query_time)
        template = encoder.init_cache(1, device=self.device)
        batched = stack_rows([s.encoded for s in states], encoder.num_blocks, template)
        new_ids = torch.as_tensor(ids, device=self.device)
        queries, updated = encoder.encode_incremental(
            batched,
            torch.as_tensor(counts, dtype=torch.int64, device=self.device),
            new_ids,
            encoder.get_item_embeddings(new_ids),
            {
                "timestamps": torch.as_tensor(ts, device=self.device),
                "ratings": torch.as_tensor(ratings, device=self.device),
            },
        )
        for state, row in zip(states, split_rows(updated), strict=True):
            state.encoded = row
        return queries.float()

    # ---- retrieval and output ----------------------------------------------------------------

    def _top_k(
        self,
        sequences: list[_Sequence],
        queries: torch.Tensor,
        k: int,
        filter_viewed: bool,
        exclude: np.ndarray,
    ) -> pd.DataFrame:
        if k < 1:
            raise UserInputError(f"--k={k}: expected a positive integer")
        width = (max((len(s.items) for s in sequences), default=0) if filter_viewed else 0) + len(
            exclude
        )
        invalid = None
        if width:
            invalid = np.zeros((len(sequences), width), dtype=np.int64)
            for i, seq in enumerate(sequences):
                n = len(seq.items) if filter_viewed else 0
                invalid[i, :n] = seq.items
                invalid[i, n : n + len(exclude)] = exclude
            invalid = torch.as_tensor(invalid, device=self.device)
        user_codes = torch.as_tensor([s.user_code for s in sequences], dtype=torch.int64)
        if sequences:
            scores, ids = self.retrieval.top_k(queries, k, invalid_ids=invalid, user_ids=user_codes)
        else:
            scores = torch.zeros(0, k)
            ids = torch.zeros(0, k, dtype=torch.int64)
        return self._frame([s.key for s in sequences], scores, ids, key_column="user_id")

    def _frame(
        self, keys: list[object], scores: torch.Tensor, ids: torch.Tensor, key_column: str
    ) -> pd.DataFrame:
        scores_np = scores.cpu().numpy()
        ids_np = ids.cpu().numpy()
        valid = np.isfinite(scores_np) & (ids_np != 0)
        rows, cols = np.nonzero(valid)
        codes = ids_np[rows, cols]
        frame = pd.DataFrame(
            {
                key_column: pd.Series([keys[r] for r in rows.tolist()], dtype=object),
                "item_id": pd.Series(self.items.decode(codes), dtype=object),
                "score": scores_np[rows, cols].astype(np.float64),
                "rank": (cols + 1).astype(np.int64),
            }
        )
        if self.titles is not None:
            frame["title"] = [self.titles.get(int(c), "") for c in codes.tolist()]
        return frame

    def _titles(self) -> dict[int, str] | None:
        table = self.store.items_table()
        if table is None or "title" not in table.columns or "item_id" not in table.columns:
            return None
        # An empty title reads back as NaN: leave it out (shown as "") rather than print "nan".
        pairs = zip(table["item_id"], table["title"], strict=True)
        return {int(i): str(t) for i, t in pairs if not pd.isna(t)}

    def _cosine_retrieval(self) -> BruteForceTopK:
        if self._cosine is None:
            normalized = l2_normalize(self.raw_item_embeddings, 1e-12)
            self._cosine = BruteForceTopK(
                DotProductSimilarity(), CandidateIndex(self.catalogue, normalized)
            )
        return self._cosine

    # ---- unknown ids -------------------------------------------------------------------------

    def _unknown(self, kind: str, unknown: list[object], policy: str) -> None:
        if not unknown:
            return
        distinct = list(dict.fromkeys(map(str, unknown)))
        message = (
            f"{len(distinct)} unknown {kind} id(s) not in dataset '{self.store.name}': "
            f"{_preview(distinct)}"
        )
        if policy == "error":
            raise UserInputError(f"{message} (--on_unknown=error)")
        if policy == "warn":
            _LOG.warning("%s; skipped", message)

    def _exclusions(self, exclude_items: Iterable[object] | None, policy: str) -> np.ndarray:
        self._last_unknown_exclusions: list[object] = []
        if exclude_items is None:
            return np.zeros(0, dtype=np.int64)
        codes, unknown = self.items.encode(exclude_items)
        self._unknown("item", unknown, policy)
        self._last_unknown_exclusions = unknown
        return np.unique(codes)

    def _known_events(self, history: History) -> tuple[_Sequence, list[object]]:
        codes, known_mask, unknown = [], [], []
        for item in history.items:
            code = self.items.encode_one(item)
            known_mask.append(code is not None)
            if code is None:
                unknown.append(item)
            else:
                codes.append(code)
        mask = np.asarray(known_mask, dtype=bool)
        n = len(history.items)
        ts = np.asarray(history.timestamps if history.timestamps is not None else [0] * n)
        ratings = np.asarray(history.ratings if history.ratings is not None else [0.0] * n)
        return (
            _Sequence(
                history.user_id,
                np.asarray(codes, dtype=np.int64),
                ts.astype(np.int64)[mask] if n else np.zeros(0, np.int64),
                ratings.astype(np.float32)[mask] if n else np.zeros(0, np.float32),
            ),
            unknown,
        )
