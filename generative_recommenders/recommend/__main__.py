"""Recommend from a trained run: ``python -m generative_recommenders.recommend --run_dir R --users 1,2``.

See docs/recommend.md. Bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_string("run_dir", None, "A run folder written by main.py (exps/<group>/<run name>/).")
flags.DEFINE_string("checkpoint", "best", "best (falls back to last.pt), latest, or a .pt path.")
flags.DEFINE_string("users", None, "Comma-separated user ids of the dataset, or 'all'.")
flags.DEFINE_string("history_file", None, "CSV or JSON lines of new histories (docs/recommend.md).")
flags.DEFINE_string("similar_items", None, "Comma-separated item ids: their nearest items.")
flags.DEFINE_enum("similarity", "cosine", ["cosine", "model"], "For --similar_items.")
flags.DEFINE_integer("k", 10, "Number of items per user / per item.")
flags.DEFINE_bool("filter_viewed", True, "Never recommend items already in the history.")
flags.DEFINE_string("exclude_items", None, "A file of item ids (one per line) never to return.")
flags.DEFINE_enum("format", "table", ["table", "csv", "json"], "Output format (stdout).")
flags.DEFINE_enum("on_unknown", "warn", ["error", "warn", "skip"], "Unknown user/item ids.")
flags.DEFINE_string("export", None, "Also write a self-contained retrieval artefact here.")
flags.DEFINE_string("data_dir", None, "Override the run's data_dir (where the store is).")
flags.DEFINE_string("query_time", "last", "HSTU query time: last (event), now, or unix seconds.")
flags.DEFINE_string("device", "cpu", "torch device for the model (cpu, cuda, ...).")
flags.mark_flag_as_required("run_dir")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from generative_recommenders.recommend.cli import run

    sys.exit(run(FLAGS))


if __name__ == "__main__":
    app.run(main)
