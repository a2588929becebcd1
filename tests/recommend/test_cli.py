"""``python -m generative_recommenders.recommend`` as a user runs it, and the history readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from generative_recommenders.errors import UserInputError
from generative_recommenders.recommend.cli import read_id_file
from generative_recommenders.recommend.histories import read_history_file
from tests.recommend.conftest import REPO, item_name


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "generative_recommenders.recommend", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_prints_a_readable_table(run_dir, tmp_path) -> None:
    done = _cli(f"--run_dir={run_dir}", "--users=u1,u2,nobody", "--k=4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["user_id", "item_id", "score", "rank", "title"]
    assert len(lines) == 1 + 2 * 4
    assert lines[1].split()[0] == "u1" and lines[1].split()[3] == "1"
    assert "Title of sku-" in lines[1]
    assert "nobody" in done.stderr and "no best.pt" in done.stderr


def test_cli_history_file_json_output_and_exclusions(run_dir, tmp_path) -> None:
    history = tmp_path / "h.jsonl"
    history.write_text(
        json.dumps({"user_id": "new", "items": [item_name(4), item_name(5)]})
        + "\n"
        + json.dumps({"user_id": "lost", "items": ["ghost"]})
        + "\n"
    )
    excluded = tmp_path / "x.txt"
    excluded.write_text(f"item_id\n{item_name(6)}\n\n# a comment\n{item_name(7)}\n")
    done = _cli(
        f"--run_dir={run_dir}",
        f"--history_file={history}",
        f"--exclude_items={excluded}",
        "--format=json",
        "--k=5",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and {r["user_id"] for r in rows} == {"new"}
    assert {item_name(4), item_name(5), item_name(6), item_name(7)}.isdisjoint(
        r["item_id"] for r in rows
    )
    assert "lost" in done.stderr and "ghost" in done.stderr


def test_cli_bad_input_is_one_line_and_status_2(run_dir, tmp_path) -> None:
    done = _cli(f"--run_dir={tmp_path / 'nope'}", "--users=u1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --run_dir=")
    done = _cli(f"--run_dir={run_dir}", "--users=nobody", "--on_unknown=error", cwd=tmp_path)
    assert done.returncode == 2 and "nobody" in done.stderr.strip().splitlines()[-1]
    done = _cli(f"--run_dir={run_dir}", "--checkpoint=/no/such.pt", "--users=u1", cwd=tmp_path)
    assert done.returncode == 2 and "no such checkpoint" in done.stderr


def test_cli_similar_items_csv_and_export(run_dir, tmp_path) -> None:
    out = tmp_path / "art"
    done = _cli(
        f"--run_dir={run_dir}",
        f"--similar_items={item_name(9)}",
        "--format=csv",
        "--k=3",
        f"--export={out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "query_item_id,item_id,score,rank,title" and len(lines) == 4
    assert (out / "manifest.json").is_file() and (out / "artifact.py").is_file()


def test_history_csv_is_ordered_by_time_per_user(tmp_path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("user_id,item_id,timestamp\nb,x2,20\na,y1,5\nb,x1,10\nb,x3,20\n")
    histories = read_history_file(path)
    assert [h.user_id for h in histories] == ["b", "a"]
    assert histories[0].items == ["x1", "x2", "x3"] and histories[0].timestamps == [10, 20, 20]


def test_history_files_reject_bad_rows(tmp_path) -> None:
    bad_time = tmp_path / "t.csv"
    bad_time.write_text("user_id,item_id,timestamp\na,1,yesterday\n")
    with pytest.raises(UserInputError, match="timestamp"):
        read_history_file(bad_time)
    no_item = tmp_path / "n.csv"
    no_item.write_text("user,item_id\na,1\n")
    with pytest.raises(UserInputError, match="user_id"):
        read_history_file(no_item)
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text('{"user_id": "a", "items": [1]}\nnot json\n')
    with pytest.raises(UserInputError, match="line 2"):
        read_history_file(bad_json)
    with pytest.raises(UserInputError, match="no such file"):
        read_history_file(tmp_path / "missing.csv")


def test_exclude_file_wants_one_id_per_line(tmp_path) -> None:
    good = tmp_path / "ok.txt"
    good.write_text("a\n b \n")
    assert read_id_file(str(good)) == ["a", "b"]
    bad = tmp_path / "bad.txt"
    bad.write_text("a,b\n")
    with pytest.raises(UserInputError, match="line 1"):
        read_id_file(str(bad))
