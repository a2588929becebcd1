"""The ``python -m generative_recommenders.recommend`` command, kept apart from flag definitions
so tests can call :func:`run` with a plain namespace."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from generative_recommenders.errors import UserInputError
from generative_recommenders.logs import configure_logging

_LOG = logging.getLogger("generative_recommenders.recommend")
FORMATS = ("table", "csv", "json")


def split_ids(text: str | None) -> list[str]:
    """``"1, 2,u3"`` -> ``["1", "2", "u3"]`` (empty entries dropped)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def read_id_file(path: str) -> list[str]:
    """One item id per line; blank lines, ``#`` comments and an ``item_id`` header are skipped."""
    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"{file}: no such file (--exclude_items)")
    ids = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#") or (number == 1 and value == "item_id"):
            continue
        if "," in value:
            raise UserInputError(f"{file}: line {number}: expected one item id per line")
        ids.append(value)
    return ids


def format_frame(frame: pd.DataFrame, fmt: str) -> str:
    """The result as an aligned table, CSV, or a JSON array of row objects."""
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        records = frame.to_dict(orient="records")
        return json.dumps(records, indent=None, default=str, ensure_ascii=False)
    if frame.empty:
        return "(no recommendations)"
    if "title" in frame.columns:  # text reads best left-aligned
        titles = frame["title"].astype(str)
        frame = frame.assign(title=titles.str.ljust(max(titles.str.len().max(), len("title"))))
    return frame.to_string(index=False, float_format=lambda x: f"{x:.4f}", justify="left")


def run(flags) -> int:
    """Load the run, answer the query flags, optionally export; returns the exit status."""
    configure_logging(logging.INFO)
    try:
        return _run(flags)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code


def _run(flags) -> int:
    if flags.format not in FORMATS:
        raise UserInputError(f"--format={flags.format!r}: expected one of {', '.join(FORMATS)}")
    queries = [bool(flags.users), bool(flags.history_file), bool(flags.similar_items)]
    if sum(queries) > 1:
        raise UserInputError("pass only one of --users, --history_file, --similar_items")
    if not any(queries) and not flags.export:
        raise UserInputError(
            "nothing to do: pass --users, --history_file, --similar_items or --export"
        )
    if flags.k < 1:
        raise UserInputError(f"--k={flags.k}: expected a positive integer")
    from generative_recommenders.recommend.histories import read_history_file
    from generative_recommenders.recommend.recommender import Recommender, check_on_unknown

    check_on_unknown(flags.on_unknown)
    exclude = read_id_file(flags.exclude_items) if flags.exclude_items else None
    histories = read_history_file(flags.history_file) if flags.history_file else None
    rec = Recommender.from_run(
        flags.run_dir,
        checkpoint=flags.checkpoint,
        data_dir=flags.data_dir,
        device=flags.device,
        on_unknown=flags.on_unknown,
        query_time=None if flags.query_time == "last" else flags.query_time,
    )
    if flags.export:
        from generative_recommenders.recommend.export import export_artifact

        path = export_artifact(rec, flags.export)
        _LOG.info("exported the retrieval artefact to %s", path)
    frame = None
    start = time.perf_counter()
    if flags.users:
        users = rec.users.originals() if flags.users.strip() == "all" else split_ids(flags.users)
        frame = rec.recommend(
            users, k=flags.k, filter_viewed=flags.filter_viewed, exclude_items=exclude
        )
        what = f"{len(users)} users"
    elif histories is not None:
        frame = rec.recommend_for_histories(
            histories, k=flags.k, filter_viewed=flags.filter_viewed, exclude_items=exclude
        )
        what = f"{len(histories)} histories"
    elif flags.similar_items:
        items = split_ids(flags.similar_items)
        frame = rec.similar_items(items, k=flags.k, method=flags.similarity)
        what = f"{len(items)} items"
    if frame is not None:
        _LOG.info("top-%d for %s in %.3f s", flags.k, what, time.perf_counter() - start)
        print(format_frame(frame, flags.format))
    return 0
