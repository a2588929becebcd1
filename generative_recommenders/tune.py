"""Hyperparameter search on Ray Tune: ``python -m generative_recommenders.tune``.

    python -m generative_recommenders.tune --gin_config_file=configs/ml-100k/sasrec.gin \
        --search_space=configs/search/sasrec-ml100k.yaml --num_samples=16 --max_epochs=30

Trials train under the validation protocol and never see the test split; the best trial is tested
once at the end. See docs/search.md. Bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_multi_string("gin_config_file", [], "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Fixed gin bindings, applied after the files.")
flags.DEFINE_string("search_space", None, "YAML file: binding name -> distribution.")
flags.DEFINE_integer("num_samples", 10, "Number of trials (sampled configurations).")
flags.DEFINE_integer("max_epochs", 20, "Epochs per trial at most (train_fn.num_epochs).")
flags.DEFINE_enum("scheduler", "asha", ["asha", "fifo"], "asha stops weak trials early.")
flags.DEFINE_string("metric", "ndcg@10", "Validation metric to maximise (and select epochs by).")
flags.DEFINE_float("cpus_per_trial", 1.0, "CPUs Ray reserves per trial (also torch threads).")
flags.DEFINE_float("gpus_per_trial", 0.0, "GPUs per trial: 0, a fraction, or 1.")
flags.DEFINE_string("name", None, "Search name (default: tune-<date>); output in exp_dir/search/.")
flags.DEFINE_string("exp_dir", "exps/", "Where the search folder is written.")
flags.DEFINE_string("data_dir", "tmp/", "Where preprocess_public_data.py wrote the stores.")
flags.DEFINE_bool("resume", False, "Continue the unfinished trials of the search --name.")
flags.DEFINE_string("address", "", "'' = a local Ray started here; 'auto' or ray://host:port.")
flags.DEFINE_integer("seed", 0, "Seed of the search's sampling.")
flags.DEFINE_integer("grace_period", 1, "ASHA: epochs every trial runs before it can be stopped.")
flags.mark_flag_as_required("search_space")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from generative_recommenders.search.commands import run_tune_flags

    sys.exit(run_tune_flags(FLAGS))


if __name__ == "__main__":
    app.run(main)
