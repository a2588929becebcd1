"""Histories the model never saw: a :class:`History` type and the readers of ``--history_file``.

Accepted files (the extension decides; ``.jsonl`` / ``.json`` are JSON lines, anything else CSV):

- CSV with a header: ``user_id,item_id`` and optionally ``timestamp`` (unix seconds) and
  ``rating``; one event per row. A user's events are ordered by timestamp (stable: equal times
  keep file order) or, without a timestamp column, kept in file order.
- JSON lines, each either one event ``{"user_id": .., "item_id": .., "timestamp": ..}`` or a whole
  history ``{"user_id": .., "items": [..], "timestamps": [..], "ratings": [..]}`` (the last two
  optional, aligned with ``items``, oldest first).

Users keep the order of their first appearance. Item ids are the dataset's own ids, as strings
or numbers. Nothing read is evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from generative_recommenders.errors import UserInputError


@dataclass
class History:
    """One user's events, oldest first: items (dataset ids), timestamps (s) and ratings or None."""

    user_id: object
    items: list
    timestamps: list[int] | None = None
    ratings: list[float] | None = None

    def __post_init__(self) -> None:
        for name in ("timestamps", "ratings"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.items):
                raise UserInputError(
                    f"history of user {self.user_id!r}: {len(values)} {name} for "
                    f"{len(self.items)} items, expected one per item"
                )


def _number(value: object, where: str, field: str, kind=float):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UserInputError(
            f"{where}: field '{field}': got {value!r}, expected a number"
        ) from None


def histories_from_events(events: pd.DataFrame, where: str = "histories") -> list[History]:
    """Rows ``user_id, item_id[, timestamp, rating]`` -> one History per user (first-seen order)."""
    for column in ("user_id", "item_id"):
        if column not in events.columns:
            raise UserInputError(
                f"{where}: missing column '{column}' (found: {', '.join(map(str, events.columns))});"
                " expected user_id,item_id[,timestamp,rating]"
            )
    frame = events.reset_index(drop=True)
    has_time = "timestamp" in frame.columns
    has_rating = "rating" in frame.columns
    if has_time:
        frame = frame.assign(
            timestamp=[
                _number(v, f"{where}: row {i + 1}", "timestamp", lambda x: int(float(x)))
                for i, v in enumerate(frame["timestamp"])
            ]
        )
        frame = frame.sort_values("timestamp", kind="stable")
    if has_rating:
        frame = frame.assign(
            rating=[
                _number(v, f"{where}: row {i + 1}", "rating") for i, v in enumerate(frame["rating"])
            ]
        )
    order = pd.unique(events["user_id"].astype(str))
    groups = {str(k): g for k, g in frame.groupby(frame["user_id"].astype(str), sort=False)}
    out = []
    for key in order:
        group = groups[key]
        out.append(
            History(
                user_id=group["user_id"].iloc[0],
                items=group["item_id"].tolist(),
                timestamps=[int(t) for t in group["timestamp"]] if has_time else None,
                ratings=[float(r) for r in group["rating"]] if has_rating else None,
            )
        )
    return out


def _read_csv(path: Path) -> list[History]:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype={"user_id": str, "item_id": str},
            keep_default_na=False,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise UserInputError(
            f"{path}: the file is empty, expected a header user_id,item_id"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        first = str(error).strip().splitlines()[0]
        raise UserInputError(f"{path}: malformed CSV ({first})") from None
    if frame.empty:
        raise UserInputError(f"{path}: no event rows after the header")
    return histories_from_events(frame, where=str(path))


def _read_json_lines(path: Path) -> list[History]:
    events: list[dict] = []
    whole: dict[str, History] = {}
    order: list[str] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                record = json.loads(line)
            except ValueError:
                raise UserInputError(f"{where}: not valid JSON") from None
            if not isinstance(record, dict) or "user_id" not in record:
                raise UserInputError(f"{where}: expected an object with a 'user_id' field")
            key = str(record["user_id"])
            if key not in order:
                order.append(key)
            if "items" in record:
                if not isinstance(record["items"], list):
                    raise UserInputError(f"{where}: field 'items': expected a list of item ids")
                timestamps = record.get("timestamps")
                ratings = record.get("ratings")
                history = History(
                    user_id=record["user_id"],
                    items=list(record["items"]),
                    timestamps=None
                    if timestamps is None
                    else [
                        _number(t, where, "timestamps", lambda x: int(float(x))) for t in timestamps
                    ],
                    ratings=None
                    if ratings is None
                    else [_number(r, where, "ratings") for r in ratings],
                )
                if key in whole:
                    raise UserInputError(f"{where}: a second history for user {key!r}")
                whole[key] = history
            elif "item_id" in record:
                events.append(record)
            else:
                raise UserInputError(f"{where}: expected an 'items' list or an 'item_id' field")
    if events and whole:
        raise UserInputError(f"{path}: mixes event lines and whole-history lines; use one kind")
    if events:
        return histories_from_events(pd.DataFrame(events), where=str(path))
    if not whole:
        raise UserInputError(f"{path}: no histories in the file")
    return [whole[key] for key in order]


def read_history_file(path: str | Path) -> list[History]:
    """Read ``--history_file`` (CSV/TSV or JSON lines, see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file (--history_file)")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return _read_json_lines(path)
    return _read_csv(path)


def as_histories(histories: object) -> list[History]:
    """A DataFrame of events, a ``{user_id: [items]}`` mapping or History objects -> Histories."""
    if isinstance(histories, pd.DataFrame):
        return histories_from_events(histories)
    if isinstance(histories, Mapping):
        return [History(user_id=u, items=list(items)) for u, items in histories.items()]
    if isinstance(histories, Iterable):
        out = list(histories)
        if all(isinstance(h, History) for h in out):
            return out
    raise TypeError(
        "histories must be a DataFrame (user_id, item_id[, timestamp, rating]), a mapping "
        "{user_id: [item ids]} or a list of History"
    )
