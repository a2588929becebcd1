"""Amazon Reviews 2023: review JSON lines (gzip or plain), the rating-only CSV, k-core, titles."""

from __future__ import annotations

import gzip
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import amazon_2023
from generative_recommenders.data.sources.kcore import k_core
from generative_recommenders.data.store import SequenceStore, create_command
from generative_recommenders.errors import UserInputError
from tests.data.conftest import leftovers, opts

REPO = pathlib.Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000  # milliseconds; a whole second


def review(user: str, parent: str, ms: int, rating: float = 5.0, **extra) -> dict:
    """One line of <Category>.jsonl as published: the four keys we read and the ones we skip."""
    return {
        "rating": rating,
        "title": "Spiel des Jahres — “ausgezeichnet” 🎮",
        "text": 'Läuft flüssig.\nZweite Zeile mit "Anführungszeichen" und \\ Backslash. 日本語',
        "images": [
            {
                "small_image_url": "https://m.media-amazon.com/images/I/x._SL256_.jpg",
                "medium_image_url": "https://m.media-amazon.com/images/I/x._SL800_.jpg",
                "large_image_url": "https://m.media-amazon.com/images/I/x._SL1600_.jpg",
                "attachment_type": "IMAGE",
            }
        ],
        "asin": extra.pop("asin", parent + "-V"),  # a colour/size variant of the product
        "parent_asin": parent,
        "user_id": user,
        "timestamp": ms,
        "helpful_vote": 3,
        "verified_purchase": True,
        **extra,
    }


def write_jsonl(path: pathlib.Path, records: list[dict], gz: bool) -> pathlib.Path:
    # Alternate raw UTF-8 and \\u-escaped lines: both are valid JSON the reader must take.
    text = "".join(
        json.dumps(r, ensure_ascii=bool(n % 2)) + "\n" for n, r in enumerate(records)
    ).encode("utf-8")
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def write_rating_csv(path: pathlib.Path, records: list[dict], gz: bool) -> pathlib.Path:
    lines = ["user_id,parent_asin,rating,timestamp"] + [
        f"{r['user_id']},{r['parent_asin']},{r['rating']},{r['timestamp']}" for r in records
    ]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# User AX: three reviews inside one second, out of millisecond order in the file, plus two with
# the very same millisecond (file order must decide). Every user and item has >= 2 events.
ORDER_RECORDS = [
    review("AX", "B0PROD0003", T0 + 900, 4.0),
    review("AX", "B0PROD0001", T0 + 100, 5.0),
    review("AX", "B0PROD0002", T0 + 500, 3.0),
    review("AY", "B0PROD0002", T0 - 5_000, 1.0, asin="B0PROD0002"),
    review("AY", "B0PROD0003", T0 + 2_000, 2.0),
    review("AY", "B0PROD0001", T0 + 2_000, 5.0),
    review("AX", "B0PROD0004", T0 + 3_000, 4.0),
    review("AY", "B0PROD0004", T0 + 4_000, 4.0),
]


def _store(data_dir: pathlib.Path, path: pathlib.Path, **kw) -> SequenceStore:
    summary = preprocess("amazon-2023", opts(data_dir, path, **kw))
    return SequenceStore.open(data_dir, summary.dataset)


@pytest.mark.parametrize("gz", [True, False])
def test_jsonl_items_are_parent_asins_in_millisecond_order(data_dir, raw_dir, gz):
    name = "Video_Games.jsonl.gz" if gz else "Video_Games.jsonl"
    path = write_jsonl(raw_dir / name, ORDER_RECORDS, gz)
    store = _store(data_dir, path, k_core=2)
    assert store.path.name == "amazon-2023-Video_Games"  # the category from the file name
    items = store.item_id_mapping()
    assert items.original.tolist() == ["B0PROD0001", "B0PROD0002", "B0PROD0003", "B0PROD0004"]
    assert store.user_id_mapping().original.tolist() == ["AX", "AY"]
    # AX: 100 ms, 500 ms, 900 ms inside one second, then +3 s; the file had 900 first.
    assert store.history(0).tolist() == [1, 2, 3, 4]
    assert store.timestamps[store.offsets[0] : store.offsets[1]].tolist() == [
        T0 // 1000,
        T0 // 1000,
        T0 // 1000,
        T0 // 1000 + 3,
    ]
    assert store.ratings[store.offsets[0] : store.offsets[1]].tolist() == [5.0, 3.0, 4.0, 4.0]
    # AY: B0PROD0003 and B0PROD0001 share a millisecond: file order.
    assert store.history(1).tolist() == [2, 3, 1, 4]
    assert store.meta["timestamps_floored_to_seconds"] is True
    assert store.meta["k_core"]["k"] == 2


@pytest.mark.parametrize("gz", [True, False])
def test_rating_only_csv_gives_the_same_store_as_the_jsonl(tmp_path, raw_dir, gz):
    jsonl = write_jsonl(raw_dir / "Video_Games.jsonl.gz", ORDER_RECORDS, gz=True)
    csv = write_rating_csv(
        raw_dir / ("Video_Games.csv.gz" if gz else "rating.csv"), ORDER_RECORDS, gz
    )
    a = _store(tmp_path / "a", jsonl, k_core=2)
    b = _store(tmp_path / "b", csv, k_core=2, category="Video_Games")  # detected by content
    for name in ("user_ids", "offsets", "item_ids", "timestamps", "ratings"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    assert a.item_id_mapping().equals(b.item_id_mapping())
    assert a.user_id_mapping().equals(b.user_id_mapping())


# A cascade for k = 2: only e is rare at first, and each removal makes the next user or item
# rare (e -> u5 -> d -> u4 -> c -> u3). The fixpoint, by hand: users u1, u2 with items a, b.
CASCADE = [
    ("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"),
    ("u3", "b"), ("u3", "c"), ("u4", "c"), ("u4", "d"), ("u5", "d"), ("u5", "e"),
]  # fmt: skip


def _codes(labels: list[str]) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def test_k_core_iterates_to_the_hand_computed_fixpoint():
    users = _codes([u for u, _ in CASCADE])
    items = _codes([i for _, i in CASCADE])
    result = k_core(users, items, 2)
    assert result.keep.tolist() == [True] * 4 + [False] * 6
    assert result.rounds == 6
    # One pass of counts would only drop (u5, e): not enough.
    one_pass = (np.bincount(users)[users] >= 2) & (np.bincount(items)[items] >= 2)
    assert one_pass.sum() == 9
    assert k_core(users, items, 1).keep.all() and k_core(users, items, 0).rounds == 0
    # k = 3: nothing has three events.
    assert not k_core(users, items, 3).keep.any()


def test_k_core_through_the_source_and_the_summary(data_dir, raw_dir):
    records = [review(u, i.upper() * 10, T0 + 1_000 * n) for n, (u, i) in enumerate(CASCADE)]
    path = write_jsonl(raw_dir / "Toys_and_Games.jsonl.gz", records, gz=True)
    summary = preprocess("amazon-2023", opts(data_dir, path, k_core=2))
    store = SequenceStore.open(data_dir, summary.dataset)
    assert store.user_id_mapping().original.tolist() == ["u1", "u2"]
    assert store.item_id_mapping().original.tolist() == ["A" * 10, "B" * 10]
    lines = summary.lines()
    assert "before k-core      5 users, 5 items, 10 interactions" in lines
    assert "after 2-core       2 users, 2 items, 4 interactions (6 rounds)" in lines
    assert store.meta["k_core"]["after"] == {"users": 2, "items": 2, "interactions": 4}


def test_default_k_core_is_5(data_dir, raw_dir):
    # Six users x five items, all pairs: a 5-core; one extra user with 4 reviews is not.
    records = [
        review(f"U{u}", f"P{i:09d}", T0 + 1000 * (5 * u + i)) for u in range(6) for i in range(5)
    ]
    records += [review("SHORT", f"P{i:09d}", T0 + 10**6 + i) for i in range(4)]
    store = _store(data_dir, write_jsonl(raw_dir / "All_Beauty.jsonl", records, gz=False))
    assert store.meta["k_core"]["k"] == 5
    assert "SHORT" not in store.user_id_mapping().original.tolist()
    assert store.num_users == 6 and int(store.offsets[-1]) == 30


def test_titles_from_the_meta_file(data_dir, raw_dir):
    path = write_jsonl(raw_dir / "Video_Games.jsonl.gz", ORDER_RECORDS, gz=True)
    meta = [
        {
            "main_category": "Video Games",
            "title": "Pokémon Scarlet — Nintendo Switch",
            "average_rating": 4.4,
            "rating_number": 1200,
            "features": ["Ein Abenteuer", "日本語"],
            "description": [],
            "price": None,
            "images": [{"thumb": "t.jpg", "large": "l.jpg", "variant": "MAIN", "hi_res": None}],
            "videos": [],
            "store": "Nintendo",
            "categories": ["Video Games", "Nintendo Switch"],
            "details": {"Release date": "November 18, 2022"},
            "parent_asin": "B0PROD0001",
            "bought_together": None,
        },
        {"title": "Not in the store", "parent_asin": "B0UNKNOWN9"},
        {"title": "  A  title\nwith   spaces ", "parent_asin": "B0PROD0003"},
        {"title": None, "parent_asin": "B0PROD0004"},
    ]
    meta_path = write_jsonl(raw_dir / "meta_Video_Games.jsonl.gz", meta, gz=True)
    store = _store(data_dir, path, k_core=2, meta_file=meta_path)
    table = store.items_table()
    assert table.item_id.tolist() == [1, 2, 3, 4]
    titles = table.title.fillna("").tolist()
    assert titles == ["Pokémon Scarlet — Nintendo Switch", "", "A title with spaces", ""]
    assert "meta_Video_Games.jsonl.gz" in store.meta["source_files"]


# ---------------------------------------------------------------------------- bad input


def _fails(data_dir: pathlib.Path, path, **kw) -> str:
    with pytest.raises(UserInputError) as e:
        preprocess("amazon-2023", opts(data_dir, path, **kw))
    msg = str(e.value)
    assert "\n" not in msg
    assert leftovers(data_dir) == []  # no store, no temporary directory
    return msg


def _write_lines(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_a_line_that_is_not_json_names_its_number(data_dir, raw_dir):
    good = json.dumps(review("A", "B0X", T0))
    path = _write_lines(raw_dir / "Video_Games.jsonl.gz", [good, good, '{"user_id": "A", oops'])
    msg = _fails(data_dir, path)
    assert msg.startswith(f"{path}: line 3: not valid JSON (")


@pytest.mark.parametrize("key", ["user_id", "parent_asin", "timestamp", "rating"])
def test_a_line_without_a_needed_key(data_dir, raw_dir, key):
    broken = review("A", "B0X", T0)
    del broken[key]
    path = _write_lines(
        raw_dir / "Video_Games.jsonl.gz", [json.dumps(review("A", "B0X", T0)), json.dumps(broken)]
    )
    msg = _fails(data_dir, path)
    assert msg.startswith(f"{path}: line 2: no '{key}', expected ")


@pytest.mark.parametrize("value", ['"yesterday"', "null", "true", "1700000000000.5"])
def test_a_timestamp_that_is_not_integer_milliseconds(data_dir, raw_dir, value):
    line = json.dumps(review("A", "B0X", T0)).replace(f'"timestamp": {T0}', f'"timestamp": {value}')
    path = _write_lines(
        raw_dir / "Video_Games.jsonl.gz", [json.dumps(review("A", "B0X", T0)), line]
    )
    assert _fails(data_dir, path) == (
        f"{path}: line 2: 'timestamp' is {json.dumps(json.loads(value))}, expected an "
        "integer number of milliseconds since 1970"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("timestamp", 10**20, "an integer number of milliseconds since 1970"),  # not int64
        ("timestamp", -5, "an integer number of milliseconds since 1970"),
        ("rating", "five", "a number"),
        ("rating", float("nan"), "a number"),
        ("user_id", "", "a non-empty string"),
        ("parent_asin", 1234567890, "a non-empty string"),
    ],
)
def test_a_value_of_the_wrong_kind(data_dir, raw_dir, key, value, expected):
    bad = {**review("A", "B0X", T0), key: value}
    path = _write_lines(
        raw_dir / "Video_Games.jsonl.gz", [json.dumps(review("A", "B0X", T0)), json.dumps(bad)]
    )
    assert _fails(data_dir, path) == (
        f"{path}: line 2: {key!r} is {json.dumps(value)}, expected {expected}"
    )


def test_a_non_numeric_timestamp_in_the_csv(data_dir, raw_dir):
    path = raw_dir / "Video_Games.csv"
    path.write_text(
        "user_id,parent_asin,rating,timestamp\nA,B0X,5.0,1700000000000\nA,B0Y,4.0,soon\n"
    )
    msg = _fails(data_dir, path)
    assert msg == f"{path}: line 3, column 'timestamp': got 'soon', expected an integer"


def test_an_empty_k_core_says_so_with_the_counts(data_dir, raw_dir):
    records = [review("A", "B0X", T0), review("A", "B0Y", T0 + 1), review("B", "B0X", T0 + 2)]
    path = write_jsonl(raw_dir / "Video_Games.jsonl.gz", records, gz=True)
    assert _fails(data_dir, path) == (
        f"{path}: the 5-core is empty, no users and items with >= 5 interactions each are left "
        "(before: 2 users, 2 items, 3 interactions; 1 rounds); lower --k_core"
    )


def test_neither_json_nor_the_csv(data_dir, raw_dir):
    path = raw_dir / "Video_Games.csv"
    path.write_text("user,item,rating,time\nA,B,5,1\n")
    assert _fails(data_dir, path) == (
        f"{path}: line 1 is neither a JSON review nor the CSV header "
        "user_id,parent_asin,rating,timestamp (got 'user,item,rating,time')"
    )


def test_truncated_gzip(data_dir, raw_dir):
    records = [review(f"U{n}", "B0X", T0 + n) for n in range(200)]
    path = write_jsonl(raw_dir / "Video_Games.jsonl.gz", records, gz=True)
    path.write_bytes(path.read_bytes()[:-40])
    assert _fails(data_dir, path).startswith(f"{path}: truncated or corrupt gzip file (")


def test_unknown_category_for_download(data_dir):
    msg = _fails(data_dir, None, category="Video_Game")
    assert msg.startswith("--category='Video_Game': not an Amazon Reviews 2023 category, expected")
    assert "Video_Games" in msg and "Books" in msg


def test_offline_download_names_the_flag(data_dir, monkeypatch):
    monkeypatch.setattr(amazon_2023, "BASE_URL", "http://127.0.0.1:9")
    msg = _fails(data_dir, None, category="Video_Games")
    assert msg.startswith(
        "could not download http://127.0.0.1:9/review_categories/Video_Games.jsonl.gz"
    )
    assert msg.endswith("pass --input_file=<path to Video_Games.jsonl.gz>")
    assert not (data_dir / "downloads" / "Video_Games.jsonl.gz").exists()


def _cli(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "preprocess_public_data.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_unknown_category_is_one_line_exit_2(tmp_path):
    proc = _cli(
        "--dataset=amazon-2023", "--category=Games", f"--data_dir={tmp_path}/d", cwd=tmp_path
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --category='Games': not an Amazon")
    assert not (tmp_path / "d").exists()


def test_cli_amazon_flags_elsewhere_are_an_error(tmp_path):
    proc = _cli("--dataset=ml-1m", "--k_core=3", f"--data_dir={tmp_path}/d", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --k_core only apply to --dataset=amazon-2023"
    ]


def test_cli_prints_before_and_after_the_k_core(tmp_path):
    path = write_jsonl(tmp_path / "Video_Games.jsonl.gz", ORDER_RECORDS, gz=True)
    proc = _cli(
        "--dataset=amazon-2023", f"--input_file={path}", "--k_core=2", f"--data_dir={tmp_path}/d",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "before k-core      2 users, 4 items, 8 interactions" in proc.stdout
    assert "after 2-core       2 users, 4 items, 8 interactions (0 rounds)" in proc.stdout
    assert (tmp_path / "d" / "amazon-2023-Video_Games" / "meta.json").is_file()


def test_store_names_and_the_command_that_recreates_one(data_dir, raw_dir):
    path = write_jsonl(raw_dir / "reviews.jsonl", ORDER_RECORDS, gz=False)
    assert _store(data_dir, path, k_core=2, category="Video_Games").path.name == (
        "amazon-2023-Video_Games"
    )
    assert _store(data_dir, path, k_core=2, name="games").path.name == "games"
    assert create_command("tmp", "amazon-2023-Video_Games") == (
        "python preprocess_public_data.py --dataset amazon-2023 --category Video_Games "
        "--data_dir tmp/"
    )
