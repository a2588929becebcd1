"""The trainer as a user runs it: main.py with gloo workers, run records, resume, protocols."""

from __future__ import annotations

import json
import math
import os
import pathlib
import socket
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from generative_recommenders.config.run import RunOptions, run_training
from generative_recommenders.training.launch import Topology
from tests.training.conftest import REPO, TINY_CONFIG, free_port
from tests.training.test_curves import assert_png


def _main(args: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _dirs(root: pathlib.Path, data_dir: pathlib.Path) -> list[str]:
    return [
        f"--data_dir={data_dir}",
        f"--exp_dir={root / 'exps'}",
        f"--ckpt_dir={root / 'ckpts'}",
    ]


def _only_run(folder: pathlib.Path) -> pathlib.Path:
    runs = [p for p in folder.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_two_gloo_workers_train_log_and_checkpoint(tmp_path, tiny_data_dir) -> None:
    result = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            "--gin_bindings=train_fn.num_epochs = 4",
            "--nproc_per_node=2",
            "--device=cpu",
            f"--master_port={free_port()}",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ndcg@10" in result.stdout and "test" in result.stdout  # the final table
    run_dir = _only_run(tmp_path / "exps")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "test" and 0.0 <= metrics["test"]["hr@10"] <= 1.0
    assert metrics["test"]["num_users"] == 61  # every user evaluated once across both ranks
    assert (run_dir / "config.gin").read_text().count("train_fn.num_epochs = 4") == 1
    record = json.loads((run_dir / "run.json").read_text())
    assert record["world_size"] == "2" and record["seed"] == "7"
    assert_png(run_dir / "curves.png")  # written by rank 0, path printed under the table
    assert f"curves: {run_dir / 'curves.png'}" in result.stdout
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporaries

    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "losses/ar_loss",
        "losses/main_loss",
        "loss/train",
        "lr",
        "throughput/sequences_per_s",
        "throughput/step_ms",
        "eval/ndcg@10",
        "eval_epoch_full/hr@10",
    }
    assert expected <= tags
    epoch_losses = [event.value for event in events.Scalars("loss/train")]
    assert len(epoch_losses) == 4 and epoch_losses[-1] < epoch_losses[0]

    checkpoints = pathlib.Path(record["checkpoint_dir"])
    assert {"last.pt", "ep3.pt"} <= {p.name for p in checkpoints.iterdir()}
    state = torch.load(checkpoints / "last.pt", weights_only=True)
    assert state["epoch"] == 4 and state["step"] > 0


def _run_in_process(root: pathlib.Path, data_dir: pathlib.Path, *bindings: str, resume=None):
    options = RunOptions(
        gin_config_files=(str(TINY_CONFIG),),
        gin_bindings=tuple(bindings),
        data_dir=str(data_dir),
        exp_dir=str(root / "exps"),
        ckpt_dir=str(root / "ckpts"),
        resume=resume,
    )
    topology = Topology("127.0.0.1", free_port(), 1, 1, 0, "cpu")
    return run_training(options, topology)


def _history(root: pathlib.Path) -> list[dict]:
    last = next((root / "ckpts").glob("*/*/last.pt"))
    return torch.load(last, weights_only=True)["history"]


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, tiny_data_dir) -> None:
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    full = _run_in_process(straight, tiny_data_dir, "train_fn.num_epochs = 3")
    _run_in_process(interrupted, tiny_data_dir, "train_fn.num_epochs = 2")
    resumed = _run_in_process(
        interrupted, tiny_data_dir, "train_fn.num_epochs = 3", resume="latest"
    )
    expected, got = _history(straight), _history(interrupted)
    assert [h["epoch"] for h in got] == [0, 1, 2]
    for a, b in zip(expected, got, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-9), key
    for key, value in full["test"].items():
        assert math.isclose(value, resumed["test"][key], rel_tol=1e-6, abs_tol=1e-9), key


def test_full_evaluation_is_the_same_for_one_and_two_workers(tmp_path, tiny_data_dir) -> None:
    # A learning rate of 0 keeps the seeded initial weights, so both runs score the same model.
    bindings = [
        "--gin_bindings=train_fn.learning_rate = 0.0",
        "--gin_bindings=train_fn.num_epochs = 1",
    ]
    results = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        run = _main(
            [
                f"--gin_config_file={TINY_CONFIG}",
                *bindings,
                f"--nproc_per_node={workers}",
                "--device=cpu",
                f"--master_port={free_port()}",
                *_dirs(root, tiny_data_dir),
            ],
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        results[workers] = json.loads((_only_run(root / "exps") / "metrics.json").read_text())
    one, two = results[1]["test"], results[2]["test"]
    assert one.keys() == two.keys() and one["num_users"] == 61
    for key in one:
        assert math.isclose(one[key], two[key], rel_tol=1e-9, abs_tol=1e-12), key


def test_validation_protocol_selects_and_tests_the_best_epoch(tmp_path, tiny_data_dir) -> None:
    result = _run_in_process(
        tmp_path,
        tiny_data_dir,
        "train_fn.num_epochs = 4",
        'train_fn.eval_split = "valid"',
        "train_fn.early_stopping_patience = 1",
    )
    assert result["protocol"] == "valid"
    history = _history(tmp_path)
    best = max(history, key=lambda h: h["ndcg@10"])
    assert result["best_epoch"] == best["epoch"]
    assert result["valid"]["ndcg@10"] == best["ndcg@10"]
    assert "lr" in best and not {"epoch", "loss", "lr"} & set(result["valid"])  # metrics only
    assert (next((tmp_path / "ckpts").glob("*/*")) / "best.pt").is_file()
    # early stopping: training ends one full evaluation after the last improvement
    assert history[-1]["epoch"] == min(best["epoch"] + 1, 3)
    assert set(result["test"]) >= {"hr@10", "ndcg@10", "mrr"}


def _one_line_error(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    return errors[0]


def test_busy_master_port_is_one_clear_line(tmp_path, tiny_data_dir) -> None:
    with socket.socket() as holder:
        holder.bind(("localhost", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = _main(
            [
                f"--gin_config_file={TINY_CONFIG}",
                "--nproc_per_node=2",
                "--device=cpu",
                f"--master_port={port}",
                *_dirs(tmp_path, tiny_data_dir),
            ],
            cwd=tmp_path,
        )
    assert f"port {port}" in _one_line_error(run)


def test_missing_dataset_names_the_command_that_makes_it(tmp_path) -> None:
    run = _main(
        [f"--gin_config_file={TINY_CONFIG}", *_dirs(tmp_path, tmp_path / "nothing")], tmp_path
    )
    line = _one_line_error(run)
    assert "preprocess_public_data.py" in line and "tiny" in line


@pytest.mark.parametrize(
    "binding, expected",
    [
        ("train_fn.no_such = 1", "no_such"),
        ('train_fn.main_module = "GRU"', "main_module"),
        ('train_fn.sampling_strategy = "global"', "sampling_strategy"),
        ("train_fn.max_steps = -1", "train_fn.max_steps=-1"),
        ('train_fn.on_nonfinite_loss = "ignore"', "train_fn.on_nonfinite_loss='ignore'"),
    ],
)
def test_bad_binding_is_one_clear_line(tmp_path, tiny_data_dir, binding, expected) -> None:
    run = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            f"--gin_bindings={binding}",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        tmp_path,
    )
    assert expected in _one_line_error(run)


def test_a_failing_worker_ends_the_whole_job(tmp_path, tiny_data_dir) -> None:
    # Both workers train an epoch, then fail at the first selection: the job must end, not hang.
    run = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            '--gin_bindings=train_fn.eval_split = "valid"',
            '--gin_bindings=train_fn.selection_metric = "ndcg@7"',
            "--nproc_per_node=2",
            "--device=cpu",
            f"--master_port={free_port()}",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert "train_fn.selection_metric='ndcg@7' is not a computed metric" in run.stderr
    assert "Traceback" not in run.stderr


def test_torchrun_launch_uses_its_ranks(tmp_path, tiny_data_dir) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            str(REPO / "main.py"),
            f"--gin_config_file={TINY_CONFIG}",
            "--gin_bindings=train_fn.num_epochs = 1",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("run folder:") == 1  # only rank 0 prints the final table
    record = json.loads((_only_run(tmp_path / "exps") / "run.json").read_text())
    assert record["world_size"] == "2"
    metrics = json.loads((_only_run(tmp_path / "exps") / "metrics.json").read_text())
    assert metrics["test"]["num_users"] == 61


def test_two_nodes_on_one_machine_form_one_job(tmp_path, tiny_data_dir) -> None:
    # The multi-node command (same flags, each node with its --node_rank), both nodes on loopback.
    port = free_port()
    common = [
        f"--gin_config_file={TINY_CONFIG}",
        "--gin_bindings=train_fn.num_epochs = 1",
        "--nnodes=2",
        "--nproc_per_node=1",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "--device=cpu",
        *_dirs(tmp_path, tiny_data_dir),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    node1 = subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), *common, "--node_rank=1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    node0 = _main([*common, "--node_rank=0"], cwd=tmp_path)
    node1_out, node1_err = node1.communicate(timeout=300)
    assert node0.returncode == 0, node0.stderr[-3000:]
    assert node1.returncode == 0, node1_err[-3000:]
    assert "run folder:" in node0.stdout and "run folder:" not in node1_out
    record = json.loads((_only_run(tmp_path / "exps") / "run.json").read_text())
    assert record["world_size"] == "2"


MOL_BINDINGS = (
    'train_fn.interaction_module_type = "MoL"',
    'train_fn.top_k_method = "MoLBruteForceTopK"',
    'train_fn.user_embedding_norm = "layer_norm"',
    "train_fn.item_l2_norm = False",
    "train_fn.temperature = 1.0",
    'train_fn.loss_weights = {"uid_embedding_l2_norm": 0.1, "mi_loss": 0.001}',
    "create_mol_interaction_module.query_dot_product_groups = 4",
    "create_mol_interaction_module.item_dot_product_groups = 2",
    "create_mol_interaction_module.dot_product_dimension = 8",
    "create_mol_interaction_module.uid_embedding_hash_sizes = [100]",
    "create_mol_interaction_module.query_hidden_dim = 32",
    "create_mol_interaction_module.item_hidden_dim = -1",
    "create_mol_interaction_module.gating_qi_hidden_dim = 16",
    "create_mol_interaction_module.gating_query_hidden_dim = 16",
    "create_mol_interaction_module.gating_item_hidden_dim = 16",
    'create_mol_interaction_module.gating_combination_type = "glu_silu"',
)


def test_mol_trains_and_retrieves_end_to_end(tmp_path, tiny_data_dir) -> None:
    # The paper's trainer could not build the MoL top-k; here the whole path runs from gin.
    result = _run_in_process(tmp_path, tiny_data_dir, "train_fn.num_epochs = 2", *MOL_BINDINGS)
    assert result["test"]["num_users"] == 61 and 0.0 <= result["test"]["mrr"] <= 1.0
    events = EventAccumulator(str(_only_run(tmp_path / "exps")))
    events.Reload()
    assert {"losses/mi_loss", "losses/uid_embedding_l2_norm"} <= set(events.Tags()["scalars"])
