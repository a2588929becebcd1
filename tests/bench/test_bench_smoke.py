"""`python -m generative_recommenders.bench --quick` runs end to end and writes the documented schema."""

from __future__ import annotations

import json

import pytest

from generative_recommenders.bench.__main__ import _against_ceiling, main
from generative_recommenders.bench.flops import train_step_flops
from tests.modeling.model_builders import build_hstu, build_sasrec


def test_quick_bench_prints_the_table_and_writes_the_schema(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--quick", "--steps", "1", "--settings", "ml-1m/hstu", "--out", str(out)])
    report = json.loads(out.read_text())
    machine = report["machine"]
    assert machine["gemm_gflops_fp32"] > 0 and machine["threads"] >= 1
    low, high = machine["gemm_gflops_fp32_range"]
    assert low <= machine["gemm_gflops_fp32"] <= high
    assert machine["gemm_samples"] == 22  # 11 before and 11 after the training steps
    assert isinstance(machine["device"], str)
    (row,) = report["train"]
    assert row["setting"] == "ml-1m/hstu"
    for key in ("step_ms", "sequences_per_s", "useful_gflops", "mfu", "peak_mem_gib"):
        assert isinstance(row[key], float) and row[key] > 0, key
    assert "vs_paper_scaled" not in row  # quick sizes are not the paper's setting
    assert row["mfu"] == pytest.approx(
        row["useful_gflops"] / (row["step_ms"] / 1000.0) / machine["gemm_gflops_fp32"]
    )
    assert {r["num_items"] for r in report["eval"]} >= {300, 5000}
    assert all(r["users_per_s"] > 0 for r in report["eval"])
    assert report["data"]["windows_per_s"] > 0 and report["data"]["preprocess_rows_per_s"] > 0
    assert report["quick"] is True
    assert [r["distribution"] for r in report["memory"]] == ["short", "long"]
    for r in report["memory"]:
        assert r["setting"] == "ml-1m/hstu-large"
        assert r["batch_x_max_length"] == 8 * 20  # the quick batch and max length
        for key in ("valid_events_per_batch", "baseline_gib", "peak_gib"):
            assert isinstance(r[key], float) and r[key] > 0, key
        assert r["increment_gib"] == pytest.approx(r["peak_gib"] - r["baseline_gib"])
        # The first steps always allocate (autograd, optimizer state), so the increment is > 0.
        assert r["increment_gib"] > 0 and r["increment_mib_per_1k_events"] > 0
    short, long = report["memory"]
    assert short["valid_events_per_batch"] < long["valid_events_per_batch"] <= 8 * 20
    out_text = capsys.readouterr().out
    assert "| ml-1m/hstu |" in out_text and "| ml-1m/hstu-large, long |" in out_text


def test_bench_parts_select_what_runs(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--quick", "--parts", "memory", "--memory_steps", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["train"] == [] and report["eval"] == [] and report["data"] == {}
    assert len(report["memory"]) == 2
    assert "| memory |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--quick", "--parts", "memory,nope", "--out", str(out)])


def test_useful_flops_count_valid_tokens_and_half_the_attention_square():
    hstu = build_hstu()  # 2 blocks, 2 heads, dqk 4, dv 3, D 8
    d, h, dqk, dv = 8, 2, 4, 3
    per_block = 2 * 5 * (d * h * (2 * dv + 2 * dqk) + h * dv * d) + 25 * h * (dqk + dv)
    expected = 3 * (2 * per_block + 2 * 5 * (1 + 4) * d)
    assert train_step_flops(hstu, [5], num_negatives=4, dim=d) == pytest.approx(expected)
    # Padding does not count: two users of 2 and 3 tokens cost less than one of 5.
    assert train_step_flops(hstu, [2, 3], 4, d) < train_step_flops(hstu, [5], 4, d)
    sasrec = build_sasrec()
    assert train_step_flops(sasrec, [4, 0], 4, 8) == train_step_flops(sasrec, [4], 4, 8)


def test_gin_bindings_reach_the_training_settings(tmp_path):
    """--gin_bindings is applied in the setting's child: fewer negatives, fewer useful FLOPs."""
    flops = []
    for extra in ([], ["--gin_bindings", "train_fn.num_negatives = 2"]):
        out = tmp_path / "bench.json"
        argv = ["--quick", "--steps", "1", "--settings", "ml-1m/sasrec", "--parts", "train"]
        report = main([*argv, *extra, "--out", str(out)])
        assert report["gin_bindings"] == extra[1:]
        flops.append(report["train"][0]["useful_gflops"])
    assert flops[1] < flops[0]


def test_paper_ratio_is_scaled_by_the_measured_ceiling():
    rows = [
        {"setting": "ml-1m/hstu", "useful_gflops": 3.0, "step_ms": 150.0, "sequences_per_s": 850.0},
        {
            "setting": "ml-20m/hstu",
            "useful_gflops": 200.0,
            "step_ms": 2000.0,
            "sequences_per_s": 64.0,
        },
    ]
    _against_ceiling(rows, {"gemm_gflops_fp32": 380.0}, quick=False)
    hstu, ml20m = rows
    assert hstu["vs_paper_scaled"] == pytest.approx(850.0 / (81.9 * 380.0 / 190.0))
    assert hstu["mfu"] == pytest.approx(3.0 / 0.15 / 380.0)
    assert "vs_paper_scaled" not in ml20m  # no paper figure for this setting
