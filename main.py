"""Train a sequential recommender: ``python main.py --gin_config_file=configs/ml-100k/hstu.gin``.

Flags pick the topology and folders; everything about the model and the run is in gin.
"""

from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_multi_string("gin_config_file", [], "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after the files.")
flags.DEFINE_string("master_addr", "localhost", "Address of node 0 (TCP rendezvous).")
flags.DEFINE_integer("master_port", 12355, "Rendezvous port on node 0.")
flags.DEFINE_integer(
    "nproc_per_node", None, "Workers on this node (default: visible GPUs, or 1 on CPU)."
)
flags.DEFINE_integer("nnodes", 1, "Number of nodes.")
flags.DEFINE_integer("node_rank", 0, "This node's rank, 0..nnodes-1.")
flags.DEFINE_enum("device", "auto", ["auto", "cpu", "cuda"], "Where to train.")
flags.DEFINE_string("resume", None, "A checkpoint path, a run's checkpoint folder, or 'latest'.")
flags.DEFINE_string("data_dir", "tmp/", "Where preprocess_public_data.py wrote the stores.")
flags.DEFINE_string("exp_dir", "exps/", "TensorBoard logs and run records.")
flags.DEFINE_string("ckpt_dir", "ckpts/", "Checkpoints.")
flags.DEFINE_bool("debug_anomaly", False, "Turn on autograd anomaly detection (slow).")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from generative_recommenders.cli import run_main_flags

    sys.exit(run_main_flags(FLAGS))


if __name__ == "__main__":
    app.run(main)
