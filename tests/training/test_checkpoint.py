from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from generative_recommenders.errors import UserInputError
from generative_recommenders.training import checkpoint as ckpt
from generative_recommenders.training.launch import Topology, check_port_free, validate_topology


def test_save_is_atomic_and_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ep0.pt"
    ckpt.save_checkpoint({"w": torch.arange(3), "epoch": 1, "run": {"name": "x"}}, path)
    assert [p.name for p in path.parent.iterdir()] == ["ep0.pt"]  # no temporary left behind
    state = ckpt.load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(3)) and state["epoch"] == 1


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"object": Path("x")}, path)  # an arbitrary class needs pickle to load
    with pytest.raises(UserInputError, match="not a readable checkpoint"):
        ckpt.load_checkpoint(path)


def test_prune_keeps_the_newest_and_latest_finds_it(tmp_path: Path) -> None:
    for epoch in (0, 3, 10, 7):
        ckpt.save_checkpoint({"epoch": epoch}, tmp_path / f"ep{epoch}.pt")
    ckpt.save_checkpoint({"epoch": -1}, tmp_path / "best.pt")
    ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "ep10.pt", "ep7.pt"]
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "ep10.pt"


def test_aliases_are_the_same_file_and_step_files_are_pruned(tmp_path: Path) -> None:
    for step in (3, 6, 9):
        ckpt.save_checkpoint({"step": step}, tmp_path / f"step{step}.pt", (tmp_path / "last.pt",))
    assert (tmp_path / "last.pt").samefile(tmp_path / "step9.pt")
    assert ckpt.load_checkpoint(tmp_path / "last.pt")["step"] == 9
    assert ckpt.load_checkpoint(tmp_path / "step6.pt")["step"] == 6  # replacing last.pt kept it
    ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step6.pt", "step9.pt"]


def test_mismatched_configuration_names_the_parameter(tmp_path: Path) -> None:
    model = {"encoder.w": torch.zeros(4, 2)}
    with pytest.raises(UserInputError, match=r"'encoder.w' has shape \(4, 3\)"):
        ckpt.check_compatible(model, {"encoder.w": torch.zeros(4, 3)}, tmp_path / "c.pt")
    with pytest.raises(UserInputError, match="'encoder.v' is not in this configuration"):
        ckpt.check_compatible(
            model, {"encoder.w": torch.zeros(4, 2), "encoder.v": torch.zeros(1)}, tmp_path
        )


def test_busy_port_is_one_clear_line() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UserInputError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port_free("127.0.0.1", port)


def test_impossible_topologies_are_refused() -> None:
    with pytest.raises(UserInputError, match="--node_rank=2"):
        validate_topology(Topology("127.0.0.1", 12355, 1, 2, 2, "cpu"))
    with pytest.raises(UserInputError, match="--master_port=70000"):
        validate_topology(Topology("127.0.0.1", 70000, 2, 1, 0, "cpu"))


def test_ranks_follow_node_rank_and_local_rank() -> None:
    topology = Topology("10.0.0.1", 29500, nproc_per_node=4, nnodes=3, node_rank=2, device="cpu")
    context = topology.context(local_rank=1)
    assert (context.rank, context.world_size, topology.init_method) == (
        9,
        12,
        "tcp://10.0.0.1:29500",
    )
