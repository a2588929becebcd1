"""Every kind of bad input: one line naming the file and what was expected, exit 2, nothing left."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import movielens
from generative_recommenders.errors import UserInputError
from tests.data.conftest import ML1M_RATINGS, leftovers, opts, write_ml_1m, write_ml_20m

REPO = pathlib.Path(__file__).resolve().parents[2]


def _fails(dataset: str, data_dir: pathlib.Path, input_file=None, **kw) -> str:
    with pytest.raises(UserInputError) as e:
        preprocess(dataset, opts(data_dir, input_file, **kw))
    msg = str(e.value)
    assert "\n" not in msg
    assert leftovers(data_dir) == []  # no store, no temporary directory
    return msg


def _cli(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "preprocess_public_data.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_cli_unknown_dataset(tmp_path):
    proc = _cli("--dataset=ml-5m", f"--data_dir={tmp_path / 'd'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --dataset='ml-5m': unknown dataset, expected one of ml-100k, ml-1m, ml-20m, "
        "amzn-books, amazon-2023, csv, fractal, ml-3b, all"
    ]
    assert not (tmp_path / "d").exists()


def test_cli_missing_file(tmp_path):
    missing = tmp_path / "nope.zip"
    proc = _cli(
        "--dataset=ml-1m", f"--input_file={missing}", f"--data_dir={tmp_path}/d", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert _error_lines(proc) == [f"error: {missing}: no such file or directory"]
    assert proc.stdout == ""
    assert leftovers(tmp_path / "d") == []


def test_cli_non_numeric_timestamp(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,3\n1,3,yesterday\n")
    proc = _cli("--dataset=csv", f"--input_file={path}", f"--data_dir={tmp_path}/d", cwd=tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        f"error: {path}: line 3, column 'timestamp': got 'yesterday', expected a number"
    ]
    assert leftovers(tmp_path / "d") == []


def test_cli_success_prints_the_summary(tmp_path):
    archive = write_ml_1m(tmp_path)
    proc = _cli(
        "--dataset=ml-1m", f"--input_file={archive}", f"--data_dir={tmp_path}/d", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "users              3" in out and "interactions       8" in out
    assert "max item id        3,952" in out and "items              4" in out
    assert "sequence length    1 / 2.67 / 4 (min / mean / max)" in out
    # The single-event user is kept for MovieLens and counted.
    assert "short users        1 with a single event" in out
    assert f"output             {tmp_path}/d/ml-1m/" in out


def test_unknown_dataset_in_process(data_dir):
    assert "unknown dataset" in _fails("movies", data_dir)


def test_missing_column(data_dir, raw_dir):
    path = raw_dir / "e.csv"
    path.write_text("user,item_id,timestamp\n1,2,3\n")
    msg = _fails("csv", data_dir, path)
    assert msg == (
        f"{path}: missing column 'user_id' for the user (found: user, item_id, timestamp); "
        "set --user_id_column, --item_id_column, --timestamp_column, --rating_column"
    )


def test_misnamed_column_in_ml_20m(data_dir, raw_dir):
    archive = write_ml_20m(raw_dir, ratings="userId,movie_id,rating,timestamp\n1,2,3.5,1\n")
    msg = _fails("ml-20m", data_dir, archive)
    assert msg.startswith(f"{archive}:ml-20m/ratings.csv: missing column 'movieId' for the item")


def test_explicit_rating_column_must_exist(data_dir, raw_dir):
    path = raw_dir / "e.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,3\n1,3,4\n")
    assert "missing column 'stars' for the rating" in _fails(
        "csv", data_dir, path, rating_col="stars", rating_required=True
    )


def test_non_numeric_id(data_dir, raw_dir):
    (raw_dir / "ratings.dat").write_text(ML1M_RATINGS + "7::abc::4::900\n")
    msg = _fails("ml-1m", data_dir, raw_dir / "ratings.dat")
    assert msg == (
        f"{raw_dir / 'ratings.dat'}: line 9, column 'MovieID': got 'abc', expected an integer"
    )


def test_non_positive_item_id(data_dir, raw_dir):
    (raw_dir / "ratings.dat").write_text("1::0::4::900\n")
    assert "expected a positive integer id (0 is reserved for padding)" in _fails(
        "ml-1m", data_dir, raw_dir / "ratings.dat"
    )


def test_missing_value(data_dir, raw_dir):
    path = raw_dir / "e.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,3\n1,,4\n")
    assert _fails("csv", data_dir, path) == (
        f"{path}: line 3, column 'item_id': empty value, expected an id"
    )


def test_malformed_line(data_dir, raw_dir):
    path = raw_dir / "ratings_Books.csv"
    path.write_text("u1,i1,5.0,10\nu1,i2,4.0,11,extra\n")
    msg = _fails("amzn-books", data_dir, path)
    assert msg.startswith(f"{path}: malformed line (") and "line 2" in msg


@pytest.mark.parametrize("content", ["", "user_id,item_id,timestamp\n"])
def test_empty_file(data_dir, raw_dir, content):
    path = raw_dir / "e.csv"
    path.write_text(content)
    msg = _fails("csv", data_dir, path)
    assert msg.startswith(f"{path}: ")
    assert "the file is empty" in msg or "no interaction lines after the header" in msg


def test_checksum_mismatch_of_cached_wheel(data_dir):
    cached = data_dir / "downloads" / movielens.RECBOLE_WHEEL
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the wheel")
    msg = _fails("ml-100k", data_dir)
    assert msg.startswith(f"{cached}: checksum mismatch, sha256 is ")
    assert f"expected {movielens.RECBOLE_WHEEL_SHA256}" in msg


def test_checksum_mismatch_of_given_wheel(data_dir, raw_dir):
    wheel = raw_dir / movielens.RECBOLE_WHEEL
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", "x")
    assert "checksum mismatch" in _fails("ml-100k", data_dir, wheel)


def test_truncated_zip(data_dir, raw_dir):
    archive = write_ml_1m(raw_dir)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert _fails("ml-1m", data_dir, archive) == (
        f"{archive}: not a valid zip archive (truncated or corrupt download?)"
    )


def test_corrupt_zip_member(data_dir, raw_dir):
    archive = raw_dir / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-1m/ratings.dat", ML1M_RATINGS * 50)
    data = bytearray(archive.read_bytes())
    data[60:90] = bytes(30)  # damage the compressed ratings, keep the directory intact
    archive.write_bytes(bytes(data))
    msg = _fails("ml-1m", data_dir, archive)
    assert msg.startswith(f"{archive}:ml-1m/ratings.dat: truncated or corrupt")


def test_archive_without_the_expected_member(data_dir, raw_dir):
    archive = raw_dir / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/README", "hi")
    assert _fails("ml-1m", data_dir, archive) == (
        f"{archive}: no ratings.dat found, expected the ML-1M ratings.dat "
        "(UserID::MovieID::Rating::Timestamp)"
    )


def test_offline_download_fails_fast_naming_the_flag(data_dir, monkeypatch):
    # Port 9 on localhost refuses connections: the same path as a machine without network.
    monkeypatch.setitem(movielens.URLS, "ml-1m", "http://127.0.0.1:9/ml-1m.zip")
    msg = _fails("ml-1m", data_dir)
    assert msg.startswith("could not download http://127.0.0.1:9/ml-1m.zip")
    assert msg.endswith("download it yourself and pass --input_file=<path to ml-1m.zip>")


def test_user_with_one_event_dropped_by_csv_rule(data_dir, raw_dir):
    path = raw_dir / "e.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,3\n")
    msg = _fails("csv", data_dir, path)
    assert msg == "e: no user has at least 2 events (0 users, 0 events read)"


def test_input_file_with_all_is_rejected():
    from preprocess_public_data import run

    with pytest.raises(UserInputError, match="cannot be combined with --dataset=all"):
        run("all", opts(pathlib.Path("unused"), pathlib.Path("x.zip")))
