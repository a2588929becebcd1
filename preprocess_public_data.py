"""Turn raw interaction files into a sequence store under --data_dir.

    python preprocess_public_data.py --dataset ml-100k            # the embedded default
    python preprocess_public_data.py --dataset ml-1m --input_file ~/ml-1m.zip
    python preprocess_public_data.py --dataset csv --input_file events.tsv --name shop
    python preprocess_public_data.py --dataset amazon-2023 --category Video_Games \
        --input_file Video_Games.jsonl.gz --meta_file meta_Video_Games.jsonl.gz
    python preprocess_public_data.py --dataset fractal --source ml-100k \
        --num_row_multiplier 4 --num_col_multiplier 8 --name ml-100k-x4x8
    python preprocess_public_data.py --dataset ml-3b     # the ml-20m store expanded 16 x 32

Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import logging
import pathlib
import sys

from absl import app, flags

from generative_recommenders.data.fractal import FractalSettings
from generative_recommenders.data.fractal_store import ML_3B, expand_store
from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions, public_datasets
from generative_recommenders.errors import UserInputError
from generative_recommenders.imports import import_modules
from generative_recommenders.logs import configure_logging

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "dataset",
    "ml-100k",
    f"One of {', '.join(public_datasets())}, amazon-2023, csv, fractal (expand --source), ml-3b "
    "(ml-20m expanded 16 x 32), a registered source of --source_module, or all (the public ones).",
)
flags.DEFINE_multi_string(
    "source_module",
    [],
    "A Python module (dotted name, importable from the working directory) that registers a "
    "source with @SOURCES.register; repeatable.",
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
flags.DEFINE_integer(
    "chunk_rows",
    0,
    "csv: build the store in chunks of this many rows (peak memory set by it; the same store). "
    "0: in memory, or in chunks of 2,000,000 for files above 1 GiB.",
)
flags.DEFINE_string("source", None, "fractal: the existing store to expand (e.g. ml-100k).")
flags.DEFINE_integer("num_row_multiplier", 16, "fractal: users are multiplied by this (m).")
flags.DEFINE_integer("num_col_multiplier", 32, "fractal: items are multiplied by this (n).")
flags.DEFINE_float(
    "element_sample_rate", 1.0, "fractal: each expanded interaction is kept with this extra rate."
)
flags.DEFINE_float("block_sample_rate", 1.0, "fractal: each block is kept with this rate.")
flags.DEFINE_integer("seed", 0, "fractal: the same seed gives the same expansion.")


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
        chunk_rows=FLAGS.chunk_rows,
    )


def _check_flags(dataset: str) -> None:
    """Flags that only amazon-2023 reads are an error elsewhere (never silently ignored)."""
    if dataset == "amazon-2023":
        return
    given = [f"--{name}" for name in _AMAZON_2023_FLAGS if FLAGS[name].present]
    if given:
        raise UserInputError(f"{', '.join(given)} only apply to --dataset=amazon-2023")


_FRACTAL_FLAGS = (
    "source",
    "num_row_multiplier",
    "num_col_multiplier",
    "element_sample_rate",
    "block_sample_rate",
    "seed",
)


def _check_expansion_flags(dataset: str) -> None:
    """Flags a dataset does not read are an error (never silently ignored)."""
    reads = {"fractal": set(_FRACTAL_FLAGS), "ml-3b": set(_FRACTAL_FLAGS) - {"source"}}
    read = reads.get(dataset, set())
    given = [f"--{name}" for name in _FRACTAL_FLAGS if FLAGS[name].present and name not in read]
    if dataset in reads and FLAGS["input_file"].present:
        given.append("--input_file")
    if FLAGS["chunk_rows"].present and dataset != "csv":
        given.append("--chunk_rows")
    if given:
        raise UserInputError(f"{', '.join(given)} do not apply to --dataset={dataset}")


def _fractal_settings(rows: int, cols: int) -> FractalSettings:
    return FractalSettings(
        num_row_multiplier=rows,
        num_col_multiplier=cols,
        element_sample_rate=FLAGS.element_sample_rate,
        block_sample_rate=FLAGS.block_sample_rate,
        seed=FLAGS.seed,
    )


def run_fractal(dataset: str, opts: SourceOptions) -> None:
    """``--dataset fractal`` (expand ``--source``) or ``--dataset ml-3b`` (ml-20m, 16 x 32)."""
    if dataset == "ml-3b":
        settings = _fractal_settings(ML_3B["num_row_multiplier"], ML_3B["num_col_multiplier"])
        for flag in ("num_row_multiplier", "num_col_multiplier"):
            if FLAGS[flag].present and FLAGS[flag].value != ML_3B[flag]:
                raise UserInputError(
                    f"--{flag}={FLAGS[flag].value}: --dataset ml-3b is fixed at "
                    f"{ML_3B['num_row_multiplier']} x {ML_3B['num_col_multiplier']}; use "
                    "--dataset fractal --source ml-20m for other multipliers"
                )
        source, name = ML_3B["source"], opts.name or "ml-3b"
        hint = "--dataset=ml-3b expands the ml-20m store"
    else:
        if not FLAGS.source:
            raise UserInputError("--dataset=fractal needs --source=<an existing store name>")
        settings = _fractal_settings(FLAGS.num_row_multiplier, FLAGS.num_col_multiplier)
        source = FLAGS.source
        name = opts.name or f"{source}-x{settings.num_row_multiplier}x{settings.num_col_multiplier}"
        hint = f"--source={source}"
    summary = expand_store(source, name, settings, opts.data_dir, source_hint=hint)
    print("\n".join(summary.lines()), flush=True)


def run(dataset: str, opts: SourceOptions) -> None:
    """Preprocess ``dataset`` ("all": the four public ones) and print each summary."""
    _check_expansion_flags(dataset)
    if dataset in ("fractal", "ml-3b"):
        run_fractal(dataset, opts)
        return
    if dataset == "all":
        if opts.input_file is not None:
            raise UserInputError("--input_file cannot be combined with --dataset=all")
        datasets = public_datasets()
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
        import_modules(FLAGS.source_module)
        _check_flags(FLAGS.dataset)
        run(FLAGS.dataset, _options())
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(UserInputError.exit_code)


if __name__ == "__main__":
    app.run(main)
