"""Small hand-made raw files in the publishers' exact formats, and helpers to build stores."""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np
import pytest

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions
from generative_recommenders.data.store import SequenceStore, write_store

# ML-1M ratings.dat: UserID::MovieID::Rating::Timestamp. User 7's rows are out of time order and
# two of them tie at t=100 (file order: 3952 before 20). User 9 has a single event.
ML1M_RATINGS = (
    "7::1::5::300\n"
    "7::3952::4::100\n"
    "7::20::3::100\n"
    "7::5::2::50\n"
    "3::20::1::10\n"
    "3::1::2::20\n"
    "3::5::3::30\n"
    "9::5::4::77\n"
)
# movies.dat is latin-1; titles may contain ':' and a non-ASCII letter.
ML1M_MOVIES = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "5::Father of the Bride Part II (1995)::Comedy\n"
    "20::Money Train (1995)::Action\n"
    "3952::Contender: The Bell (2000)::Drama|Thriller\n"
    "3953::Amélie (2001)::Comedy|Romance\n"
)
ML1M_USERS = "3::F::1::10::48067\n7::M::56::16::70072\n9::M::25::15::55117\n"


def write_ml_1m(root: pathlib.Path, as_zip: bool = True) -> pathlib.Path:
    """ml-1m.zip (members ml-1m/*.dat) or a directory ml-1m/ with the same files."""
    files = {
        "ratings.dat": ML1M_RATINGS.encode("latin-1"),
        "movies.dat": ML1M_MOVIES.encode("latin-1"),
        "users.dat": ML1M_USERS.encode("latin-1"),
    }
    if as_zip:
        path = root / "ml-1m.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(f"ml-1m/{name}", data)
        return path
    path = root / "ml-1m"
    path.mkdir()
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


ML20M_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,2,3.5,1112486027\n"
    "1,29,3.5,1112484676\n"
    "1,131262,4.0,1112484819\n"
    "2,29,5.0,974820889\n"
    "2,2,0.5,974820691\n"
)
ML20M_MOVIES = (
    "movieId,title,genres\n"
    "2,Jumanji (1995),Adventure|Children|Fantasy\n"
    '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama\n'
    "131262,Innocence (2014),(no genres listed)\n"
)


def write_ml_20m(root: pathlib.Path, ratings: str = ML20M_RATINGS) -> pathlib.Path:
    path = root / "ml-20m.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-20m/ratings.csv", ratings.encode())
        zf.writestr("ml-20m/movies.csv", ML20M_MOVIES.encode())
    return path


def opts(data_dir: pathlib.Path, input_file: pathlib.Path | None = None, **kw) -> SourceOptions:
    return SourceOptions(data_dir=data_dir, input_file=input_file, **kw)


def build(dataset: str, data_dir: pathlib.Path, input_file=None, **kw) -> SequenceStore:
    summary = preprocess(dataset, opts(data_dir, input_file, **kw))
    return SequenceStore.open(data_dir, summary.dataset)


def leftovers(data_dir: pathlib.Path) -> list[str]:
    """Everything in data_dir except the downloads cache (should be empty after a failure)."""
    if not data_dir.exists():
        return []
    return sorted(p.name for p in data_dir.iterdir() if p.name != "downloads")


@pytest.fixture
def data_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "data"


@pytest.fixture
def raw_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "raw"
    path.mkdir()
    return path


def small_store(data_dir: pathlib.Path, name: str = "toy") -> SequenceStore:
    """Users 10 (items 1..6, times 1..6), 20 (items 7, 8), 30 (item 9): ratings = item / 2."""
    item_ids = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=np.int64)
    write_store(
        data_dir / name,
        user_ids=np.array([10, 20, 30]),
        offsets=np.array([0, 6, 8, 9]),
        item_ids=item_ids,
        ratings=(item_ids / 2).astype(np.float32),
        timestamps=np.array([1, 2, 3, 4, 5, 6, 100, 200, 50]),
        meta={"dataset": name, "has_ratings": True},
    )
    return SequenceStore.open(data_dir, name)
