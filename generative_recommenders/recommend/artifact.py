"""Serve top-k from an exported retrieval artefact with torch, numpy and json only.

No gin, no training code: this file is copied into every exported folder, so
``sys.path.insert(0, DIR); import artifact; artifact.load_artifact(DIR)`` works on a machine with
just ``torch`` and ``numpy``. Inside the package: ``generative_recommenders.recommend.artifact``.

    art = load_artifact("exports/ml-100k-hstu")
    rows = art.recommend_for_histories({"alice": [1, 50, 181]}, k=10)
    # [{"user_id": "alice", "item_id": 7, "score": 0.41, "rank": 1, "title": "..."}, ...]

Queries are encoded as in the package: the most recent ``max_sequence_length`` events, oldest
first, and the query time (index ``length``) = the last event's timestamp unless ``query_time``
is given. Missing timestamps are 0. Scores are dot products with the catalogue embeddings;
viewed items (``filter_viewed``) and ``exclude_items`` are never returned.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

FORMAT = "generative-recommenders-retrieval"
VERSION = 2  # 2: the query encoder takes [B, N] histories and the query times [B]
FILES = {
    "manifest": "manifest.json",
    "query_encoder": "query_encoder.pt",
    "item_embeddings": "item_embeddings.npy",
    "item_ids": "item_ids.npy",
    "items": "items.json",
    "loader": "artifact.py",
}


class ArtifactError(ValueError):
    """A missing or inconsistent artefact file (one line naming it)."""


def _canonical_key(value: object) -> str:
    return str(value).strip()


class RetrievalArtifact:
    """An exported artefact in memory: query encoder, item matrix [X, D], id mapping."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest_file = self.folder / FILES["manifest"]
        if not manifest_file.is_file():
            raise ArtifactError(f"{manifest_file}: no manifest (not an exported artefact)")
        self.manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != VERSION:
            raise ArtifactError(
                f"{manifest_file}: format {self.manifest.get('format')!r} version "
                f"{self.manifest.get('version')!r}, expected {FORMAT!r} version {VERSION}"
            )
        if self.manifest.get("similarity") != "dot_product":
            raise ArtifactError(f"{manifest_file}: unsupported similarity")
        files = self.manifest.get("files", FILES)
        # TorchScript: [B, N+1] ids, times, ratings, lengths [B] -> [B, D], B = batch_size.
        self.encoder = torch.jit.load(str(self.folder / files["query_encoder"]), map_location="cpu")
        self.encoder.eval()
        self.item_embeddings = torch.from_numpy(
            np.load(self.folder / files["item_embeddings"], allow_pickle=False)
        )  # [X, D] float32
        self.item_codes = np.load(self.folder / files["item_ids"], allow_pickle=False)  # [X]
        items = json.loads((self.folder / files["items"]).read_text(encoding="utf-8"))
        self.item_ids: list = list(items["ids"])  # the dataset's own id of each row
        self.titles: list | None = items.get("titles")
        if not (len(self.item_ids) == len(self.item_codes) == self.item_embeddings.shape[0]):
            raise ArtifactError(f"{self.folder}: item files disagree on the number of items")
        self._row_of = {_canonical_key(v): r for r, v in enumerate(self.item_ids)}
        self.max_sequence_length = int(self.manifest["max_sequence_length"])
        self.batch_size = int(self.manifest["batch_size"])
        self.last_report: dict[str, list] = {}

    @property
    def num_items(self) -> int:
        return int(self.item_embeddings.shape[0])

    def item_rows(self, items: list) -> tuple[list[int], list]:
        """The dataset's item ids -> (matrix rows of the known ones, the unknown ids)."""
        rows, unknown = [], []
        for item in items:
            row = self._row_of.get(_canonical_key(item))
            if row is None:
                unknown.append(item)
            else:
                rows.append(row)
        return rows, unknown

    @torch.no_grad()
    def encode(
        self,
        rows: list[list[int]],
        timestamps: list[list[int]],
        query_times: list[int],
    ) -> torch.Tensor:
        """Histories as matrix rows (oldest first) with their times -> queries [B, D]."""
        N = self.max_sequence_length
        codes = torch.from_numpy(np.asarray(self.item_codes, dtype=np.int64))
        out = []
        for start in range(0, len(rows), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(rows)))
            batch = self.batch_size  # the traced size: short chunks are padded with empty rows
            ids = torch.zeros(batch, N, dtype=torch.int64)
            ts = torch.zeros(batch, N, dtype=torch.int64)
            lengths = torch.zeros(batch, dtype=torch.int64)
            times = torch.zeros(batch, dtype=torch.int64)
            for b, i in enumerate(chunk):
                window = rows[i][-N:]
                n = len(window)
                ids[b, :n] = codes[torch.as_tensor(window, dtype=torch.int64)]
                ts[b, :n] = torch.as_tensor(timestamps[i][-N:][:n], dtype=torch.int64)
                times[b] = int(query_times[i])
                lengths[b] = n
            # The traced program is the package's own query encoding (widening included).
            queries = self.encoder(ids, ts, torch.zeros(batch, N), lengths, times)
            out.append(queries[: len(chunk)])
        if not out:
            return torch.zeros(0, self.item_embeddings.shape[1])
        return torch.cat(out)

    @torch.no_grad()
    def top_k(
        self, queries: torch.Tensor, k: int, invalid_rows: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [B, D] -> (scores [B, k'], matrix rows [B, k']), k' = min(k, X); -inf = none."""
        k = min(k, self.num_items)
        all_scores, all_rows = [], []
        for start in range(0, queries.shape[0], 1024):
            scores = queries[start : start + 1024] @ self.item_embeddings.t()  # [Bc, X]
            for b, rows in enumerate(invalid_rows[start : start + 1024]):
                if rows:
                    scores[b, torch.as_tensor(rows, dtype=torch.int64)] = float("-inf")
            top_scores, top_rows = torch.topk(scores, k, dim=1)
            all_scores.append(top_scores)
            all_rows.append(top_rows)
        if not all_scores:
            return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.int64)
        return torch.cat(all_scores), torch.cat(all_rows)

    def recommend_for_histories(
        self,
        histories,
        k: int = 10,
        filter_viewed: bool = True,
        exclude_items: list | None = None,
        query_time: int | str | None = None,
    ) -> list[dict]:
        """Top-k rows ``{user_id, item_id, score, rank[, title]}`` per history, best first.

        ``histories``: ``{user_id: [item ids]}`` or a list of ``{"user_id": .., "items": [..],
        "timestamps": [..]}`` dicts. Unknown items are skipped; ``self.last_report`` lists them
        and the histories left with no known item (which get no rows).
        """
        if isinstance(histories, dict):
            histories = [{"user_id": u, "items": list(v)} for u, v in histories.items()]
        excluded, unknown_excluded = self.item_rows(list(exclude_items or []))
        users, rows, times, query_times, empty, unknown = [], [], [], [], [], []
        for history in histories:
            items = list(history["items"])
            stamps = list(history.get("timestamps") or [0] * len(items))
            if len(stamps) != len(items):
                raise ArtifactError(
                    f"history of user {history['user_id']!r}: {len(stamps)} timestamps for "
                    f"{len(items)} items, expected one per item"
                )
            found = [self._row_of.get(_canonical_key(item)) for item in items]
            unknown.extend(item for item, row in zip(items, found, strict=True) if row is None)
            known_rows = [row for row in found if row is not None]
            known_times = [t for row, t in zip(found, stamps, strict=True) if row is not None]
            if not known_rows:
                empty.append(history["user_id"])
                continue
            users.append(history["user_id"])
            rows.append(known_rows)
            times.append([int(t) for t in known_times])
            if query_time is None or query_time == "last":
                query_times.append(int(known_times[-1]))
            elif query_time == "now":
                query_times.append(int(time.time()))
            else:
                query_times.append(int(query_time))
        self.last_report = {
            "unknown_items": unknown + unknown_excluded,
            "empty_histories": empty,
        }
        queries = self.encode(rows, times, query_times)
        invalid = [(r if filter_viewed else []) + excluded for r in rows]
        scores, best = self.top_k(queries, k, invalid)
        out = []
        for b, user in enumerate(users):
            rank = 0
            for score, row in zip(scores[b].tolist(), best[b].tolist(), strict=True):
                if score == float("-inf"):
                    break
                rank += 1
                record = {
                    "user_id": user,
                    "item_id": self.item_ids[row],
                    "score": float(score),
                    "rank": rank,
                }
                if self.titles is not None:
                    record["title"] = self.titles[row]
                out.append(record)
        return out


def load_artifact(folder: str | Path) -> RetrievalArtifact:
    """Open an exported artefact folder (see the module docstring)."""
    return RetrievalArtifact(folder)
