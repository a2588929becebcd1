"""An Amazon Reviews 2023 store with --meta_file: recommendations come back with product titles."""

from __future__ import annotations

import gzip
import json

import numpy as np

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions
from tests.recommend.conftest import NUM_ITEMS, _train


def _asin(i: int) -> str:
    return f"B0{i:08d}"


def test_recommendations_carry_titles_from_the_meta_file(tmp_path) -> None:
    rng = np.random.default_rng(5)
    reviews = []
    for user in range(1, 41):
        start = int(rng.integers(1, NUM_ITEMS + 1))
        for t in range(int(rng.integers(6, 16))):
            item = (start + t - 1) % NUM_ITEMS + 1
            reviews.append(
                {"rating": 5.0, "title": "gut", "text": "Schön ✓", "images": [],
                 "asin": _asin(item) + "V", "parent_asin": _asin(item),
                 "user_id": f"AUSER{user:03d}", "timestamp": 1_600_000_000_000 + 3_600_000 * t,
                 "helpful_vote": 0, "verified_purchase": True}
            )  # fmt: skip
    raw = tmp_path / "Video_Games.jsonl.gz"
    raw.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in reviews).encode()))
    titles = {_asin(i): f"Spiel Nr. {i} — Édition" for i in range(2, NUM_ITEMS + 1)}  # 1 has none
    meta = tmp_path / "meta_Video_Games.jsonl"
    meta.write_text(
        "".join(
            json.dumps({"title": t, "parent_asin": a, "store": "X"}, ensure_ascii=False) + "\n"
            for a, t in titles.items()
        ),
        encoding="utf-8",
    )
    data_dir = tmp_path / "data"
    summary = preprocess(
        "amazon-2023", SourceOptions(data_dir=data_dir, input_file=raw, meta_file=meta)
    )
    run_dir = _train(tmp_path / "run", data_dir, (f'train_fn.dataset_name = "{summary.dataset}"',))
    from generative_recommenders.recommend import Recommender

    rec = Recommender.from_run(run_dir)
    frame = rec.recommend(["AUSER001"], k=NUM_ITEMS, filter_viewed=False)
    assert len(frame) == NUM_ITEMS  # every product, each with its own title or "" (item 1)
    assert list(frame["title"]) == [titles.get(a, "") for a in frame["item_id"]]
    assert "" in list(frame["title"])
