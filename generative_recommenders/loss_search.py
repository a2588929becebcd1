"""Automatic loss-function search (AutoLossGen) on Ray: ``python -m generative_recommenders.loss_search``.

    python -m generative_recommenders.loss_search --gin_config_file=configs/ml-100k/sasrec.gin \
        --budget=32 --proxy_epochs=3 --top_k=3 --out=exps/loss_search/sasrec

Phase 1 samples formulas with a REINFORCE-trained controller and scores each by a short proxy
training (validation NDCG@10); phase 2 keeps the valid ones; phase 3 trains the best to the end
next to BCE, BPR and sampled softmax and reports test metrics. See docs/search.md.
"""

from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_multi_string("gin_config_file", [], "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Fixed gin bindings, applied after the files.")
flags.DEFINE_integer("budget", 32, "Number of formulas the controller samples (phase 1).")
flags.DEFINE_integer("proxy_epochs", 3, "Epochs of each proxy training (phase 1).")
flags.DEFINE_integer("top_k", 3, "Valid formulas taken to the effectiveness test (phase 3).")
flags.DEFINE_integer("seed", 0, "Seed of the controller; phase 3 runs use seed, seed + 1, ...")
flags.DEFINE_string("out", None, "Output folder (default: exps/loss_search/<date>); must be new.")
flags.DEFINE_string("address", "", "'' = a local Ray started here; 'auto' or ray://host:port.")
flags.DEFINE_string("data_dir", "tmp/", "Where preprocess_public_data.py wrote the stores.")
flags.DEFINE_integer("batch_size", 4, "Formulas per controller update (trained in parallel).")
flags.DEFINE_integer("seeds", 3, "Seeds per loss in the effectiveness test (phase 3).")
flags.DEFINE_integer("final_epochs", None, "Epochs in phase 3 (default: the config's num_epochs).")
flags.DEFINE_float("cpus_per_task", 1.0, "CPUs Ray reserves per training (also torch threads).")
flags.DEFINE_integer("max_tokens", 11, "Longest formula the controller writes, in tokens.")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from generative_recommenders.search.commands import run_loss_search_flags

    sys.exit(run_loss_search_flags(FLAGS))


if __name__ == "__main__":
    app.run(main)
