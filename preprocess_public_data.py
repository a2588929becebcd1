"""Turn raw interaction files into a sequence store under --data_dir.

    python preprocess_public_data.py --dataset ml-100k            # the embedded default
    python preprocess_public_data.py --dataset ml-1m --input_file ~/ml-1m.zip
    python preprocess_public_data.py --dataset csv --input_file events.tsv --name shop
    python preprocess_public_data.py --dataset amazon-2023 --category Video_Games \
        --input_file Video_Games.jsonl.gz --meta_file meta_Video_Games.jsonl.gz

Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import logging
import pathlib
import sys

from absl import app, flags

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions
from generative_recommenders.data.store import PUBLIC_DATASETS
from generative_recommenders.errors import UserInputError
from generative_recommenders.logs import configure_logging

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "dataset",
    "ml-100k",
    f"One of {', '.join(PUBLIC_DATASETS)}, amazon-2023, csv, or all (the four public).",
)
flags.DEFINE_string("data_dir", "tmp/", "Where stores (and downloads/) are written.")
flags.DEFINE_string(
    "input_file", None, "A local copy of the raw archive or file; your own file for --dataset=csv."
)
flags.DEFINE_string(
    "name",
    None,
    "Store name for --dataset=csv (default: the file's stem) or amazon-2023 "
    "(default: amazon-2023-<Category>).",
)
flags.DEFINE_string("user_id_column", "user_id", "csv: user id column.")
flags.DEFINE_string("item_id_column", "item_id", "csv: item id column.")
flags.DEFINE_string("timestamp_column", "timestamp", "csv: timestamp column (numeric seconds).")
flags.DEFINE_string("rating_column", "rating", "csv: rating column (optional unless set).")
flags.DEFINE_string("sep", None, "csv: field separator (default by extension: , or tab).")
flags.DEFINE_integer("min_user_interactions", 2, "csv: drop users with fewer events.")
flags.DEFINE_integer("min_item_interactions", 1, "csv: drop items with fewer events.")
flags.DEFINE_string(
    "category", None, "amazon-2023: the category, e.g. Video_Games (default: the file's name)."
)
flags.DEFINE_integer(
    "k_core", None, "amazon-2023: keep users and items with >= N interactions (iterated; 5)."
)
flags.DEFINE_string(
    "meta_file", None, "amazon-2023: meta_<Category>.jsonl(.gz), for item titles (items.csv)."
)
_AMAZON_2023_FLAGS = ("category", "k_core", "meta_file")


def _options() -> SourceOptions:
    return SourceOptions(
        data_dir=pathlib.Path(FLAGS.data_dir),
        input_file=pathlib.Path(FLAGS.input_file).expanduser() if FLAGS.input_file else None,
        name=FLAGS.name,
        user_col=FLAGS.user_id_column,
        item_col=FLAGS.item_id_column,
        timestamp_col=FLAGS.timestamp_column,
        rating_col=FLAGS.rating_column,
        rating_required=FLAGS["rating_column"].present,
        sep=FLAGS.sep.encode().decode("unicode_escape") if FLAGS.sep else None,
        min_user_interactions=FLAGS.min_user_interactions,
        min_item_interactions=FLAGS.min_item_interactions,
        category=FLAGS.category,
        k_core=FLAGS.k_core,
        meta_file=pathlib.Path(FLAGS.meta_file).expanduser() if FLAGS.meta_file else None,
    )


def _check_flags(dataset: str) -> None:
    """Flags that only amazon-2023 reads are an error elsewhere (never silently ignored)."""
    if dataset == "amazon-2023":
        return
    given = [f"--{name}" for name in _AMAZON_2023_FLAGS if FLAGS[name].present]
    if given:
        raise UserInputError(f"{', '.join(given)} only apply to --dataset=amazon-2023")


def run(dataset: str, opts: SourceOptions) -> None:
    """Preprocess ``dataset`` ("all": the four public ones) and print each summary."""
    if dataset == "all":
        if opts.input_file is not None:
            raise UserInputError("--input_file cannot be combined with --dataset=all")
        datasets = list(PUBLIC_DATASETS)
    else:
        datasets = [dataset]
    for name in datasets:
        summary = preprocess(name, opts)
        print("\n".join(summary.lines()), flush=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(2)
    configure_logging(logging.INFO)
    try:
        _check_flags(FLAGS.dataset)
        run(FLAGS.dataset, _options())
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(UserInputError.exit_code)


if __name__ == "__main__":
    app.run(main)
