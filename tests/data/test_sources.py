"""Each source on small hand-made files in the publisher's exact format."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from generative_recommenders.errors import UserInputError
from tests.data.conftest import build, write_ml_1m, write_ml_20m


def _seqs(store) -> dict[int, list[int]]:
    return {int(store.user_ids[r]): store.history(r).tolist() for r in range(store.num_users)}


@pytest.mark.parametrize("as_zip", [True, False])
def test_ml_1m(data_dir, raw_dir, as_zip):
    store = build("ml-1m", data_dir, write_ml_1m(raw_dir, as_zip=as_zip))
    # Raw ids kept; user 7 sorted by time with the t=100 tie in file order (3952 before 20).
    assert _seqs(store) == {3: [20, 1, 5], 7: [5, 3952, 20, 1], 9: [5]}
    assert store.max_item_id == 3952
    assert store.catalogue_item_ids().tolist() == [1, 5, 20, 3952]
    r7 = int(np.flatnonzero(store.user_ids == 7)[0])
    lo, hi = store.offsets[r7], store.offsets[r7 + 1]
    assert store.timestamps[lo:hi].tolist() == [50, 100, 100, 300]
    assert store.ratings[lo:hi].tolist() == [2.0, 4.0, 3.0, 5.0]
    assert store.has_ratings
    items = store.items_table()
    row = items[items.item_id == 3952].iloc[0]
    assert (row.title, row.genres, row.year) == ("Contender: The Bell", "Drama|Thriller", 2000)
    assert items[items.item_id == 3953].iloc[0].title == "Amélie"
    assert store.item_id_mapping() is None  # raw ids, nothing remapped
    # The single-event user is kept (MovieLens keeps every user) and counted in the meta.
    assert store.meta["users_dropped"] == 0


def test_ml_20m(data_dir, raw_dir):
    store = build("ml-20m", data_dir, write_ml_20m(raw_dir))
    assert _seqs(store) == {1: [29, 131262, 2], 2: [2, 29]}
    assert store.max_item_id == 131262
    r2 = int(np.flatnonzero(store.user_ids == 2)[0])
    assert store.ratings[store.offsets[r2] : store.offsets[r2 + 1]].tolist() == [0.5, 5.0]
    items = store.items_table().set_index("item_id")
    assert items.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert items.loc[29, "year"] == 1995
    assert items.loc[131262, "genres"] in ("", None) or pd.isna(items.loc[131262, "genres"])


def test_ml_100k_grouplens_zip(data_dir, raw_dir):
    path = raw_dir / "ml-100k.zip"
    genres = ["0"] * 19
    genres[1] = genres[5] = "1"  # Action, Comedy
    item = "|".join(["242", "Kolya (1996)", "24-Jan-1997", "", "http://x"] + genres)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/u.data", "196\t242\t3\t881250949\n196\t302\t4\t881250000\n")
        zf.writestr("ml-100k/u.item", (item + "\n").encode("latin-1"))
    store = build("ml-100k", data_dir, path)
    assert _seqs(store) == {196: [302, 242]}
    table = store.items_table()
    assert table.iloc[0].tolist() == [242, "Kolya", "Action|Comedy", 1996]


def test_ml_100k_recbole_files(data_dir, raw_dir):
    (raw_dir / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "5\t17\t3\t200\n5\t9\t1\t100\n6\t9\t5\t150\n6\t17\t4\t150\n"
    )
    (raw_dir / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "9\tDead Man Walking\t1995\tDrama\n17\tFrom Dusk Till Dawn\t1996\tAction Comedy Crime\n"
    )
    store = build("ml-100k", data_dir, raw_dir)
    assert _seqs(store) == {5: [9, 17], 6: [9, 17]}
    table = store.items_table().set_index("item_id")
    assert table.loc[17, "genres"] == "Action|Comedy|Crime"
    assert table.loc[9, "year"] == 1995


def _amazon_rows() -> list[tuple[str, str, float, int]]:
    rows = []
    popular = ["0000031852", "B1", "B2", "B3", "B4"]  # 5+ raw interactions each
    for u in ["A", "B", "C", "D", "E"]:
        rows += [(u, item, 4.0, 10 * (k + 1)) for k, item in enumerate(popular)]
    rows.append(("A", "RARE", 1.0, 5))  # an item with 1 interaction: dropped
    # F has 5 raw interactions (kept by the user filter) but only 2 survive the item filter.
    rows += [("F", f"RARE{k}", 1.0, k) for k in range(3)] + [
        ("F", "B1", 2.0, 7),
        ("F", "B2", 2.0, 8),
    ]
    rows.append(("Z", "B1", 1.0, 1))  # Z has one raw interaction: dropped
    return rows


def test_amazon_books(data_dir, raw_dir):
    path = raw_dir / "ratings_Books.csv"
    path.write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in _amazon_rows()))
    store = build("amzn-books", data_dir, path)
    items = store.item_id_mapping()
    users = store.user_id_mapping()
    # Rare items are gone before remapping; codes follow the sorted original ids and the
    # leading zeros of the ASIN survive.
    assert items.original.tolist() == ["0000031852", "B1", "B2", "B3", "B4"]
    assert items.item_id.tolist() == [1, 2, 3, 4, 5]
    assert users.original.tolist() == ["A", "B", "C", "D", "E", "F"]
    # F is left with 2 < 5 events: dropped when the store is built; with Z, 2 users dropped.
    assert store.user_ids.tolist() == [1, 2, 3, 4, 5]
    assert store.meta["users_dropped"] == 2
    assert store.history(0).tolist() == [1, 2, 3, 4, 5]  # A, without RARE
    assert store.max_item_id == 5


def test_custom_csv_string_ids(data_dir, raw_dir):
    path = raw_dir / "shop.csv"
    path.write_text(
        "user_id,item_id,timestamp,rating\n"
        "bob,sku-9,20,1\nbob,sku-1,10,2\nann,sku-9,5,3\nann,sku-2,6,4\ncid,sku-1,1,5\n"
    )
    store = build("csv", data_dir, path)
    assert store.path.name == "shop"
    assert store.item_id_mapping().values.tolist() == [["sku-1", 1], ["sku-2", 2], ["sku-9", 3]]
    assert store.user_id_mapping().values.tolist() == [["ann", 1], ["bob", 2]]
    # cid has one event, below the default --min_user_interactions=2: dropped and counted.
    assert _seqs(store) == {1: [3, 2], 2: [1, 3]}
    assert store.meta["users_dropped"] == 1


def test_custom_tsv_integer_ids_without_ratings(data_dir, raw_dir):
    path = raw_dir / "events.tsv"
    path.write_text("uid\tiid\tts\n100\t7\t3\n100\t70\t1\n200\t7\t2\n200\t8\t2\n200\t70\t9\n")
    store = build(
        "csv", data_dir, path, name="ev", user_col="uid", item_col="iid", timestamp_col="ts",
        min_item_interactions=2,
    )  # fmt: skip
    # Item 8 (one interaction) is filtered out; integer user ids are kept as they are.
    assert store.user_ids.tolist() == [100, 200]
    assert store.item_id_mapping().values.tolist() == [["7", 1], ["70", 2]]
    assert _seqs(store) == {100: [2, 1], 200: [1, 2]}
    assert not store.has_ratings
    assert np.all(np.asarray(store.ratings) == 0)
    assert store.user_id_mapping() is None


def test_custom_fractional_timestamps_sort_before_flooring(data_dir, raw_dir):
    path = raw_dir / "f.csv"
    path.write_text("user_id,item_id,timestamp\n1,a,5.7\n1,b,5.2\n1,c,4.9\n")
    store = build("csv", data_dir, path)
    assert store.history(0).tolist() == [3, 2, 1]  # c (4.9), b (5.2), a (5.7)
    assert store.timestamps[:3].tolist() == [4, 5, 5]


def test_custom_corrupt_parquet_is_a_clear_error(data_dir, raw_dir):
    path = raw_dir / "events.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(UserInputError, match="events.parquet"):
        build("csv", data_dir, path)


def test_custom_parquet(data_dir, raw_dir):
    path = raw_dir / "events.parquet"
    pd.DataFrame(
        {"user_id": ["x", "x", "y", "y"], "item_id": [5, 6, 6, 5], "timestamp": [2, 1, 1, 2]}
    ).to_parquet(path)
    store = build("csv", data_dir, path)
    assert _seqs(store) == {1: [2, 1], 2: [2, 1]}


def test_custom_ids_that_turn_to_strings_in_a_later_chunk(data_dir, raw_dir, monkeypatch):
    from generative_recommenders.data import readers

    monkeypatch.setattr(readers, "CHUNK_ROWS", 2)  # first chunk integer-looking, later strings
    path = raw_dir / "mixed.csv"
    path.write_text("user_id,item_id,timestamp\nu,12,1\nu,7,2\nu,0012,3\nu,abc,4\n")
    store = build("csv", data_dir, path)
    # Read again as strings throughout: "0012" and "12" stay distinct ids.
    assert store.item_id_mapping().original.tolist() == ["0012", "12", "7", "abc"]
    assert store.history(0).tolist() == [2, 3, 1, 4]
