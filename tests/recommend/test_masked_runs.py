"""A masked-objective run recommends, exports and serves with the appended mask token."""

from __future__ import annotations

import numpy as np

from generative_recommenders.recommend import Recommender, artifact
from generative_recommenders.recommend.export import export_artifact
from tests.recommend.conftest import item_name
from tests.recommend.test_cli import _cli


def test_a_masked_run_exports_and_serves_the_recommenders_top_k(masked_run_dir, tmp_path) -> None:
    recommender = Recommender.from_run(masked_run_dir)
    assert recommender.encoder.causal is False and recommender.encoder.mask_embedding is not None
    histories = {
        "short": [item_name(3)],
        "mid": [item_name(i) for i in (5, 6, 7, 9, 8)],
        "long": [item_name(i % 40 + 1) for i in range(27)],  # longer than the window (20)
    }
    served = artifact.load_artifact(export_artifact(recommender, tmp_path / "artefact"))
    rows = served.recommend_for_histories(histories, k=6)
    frame = recommender.recommend_for_histories(histories, k=6)
    assert [(r["user_id"], r["item_id"]) for r in rows] == list(
        zip(frame["user_id"], frame["item_id"], strict=True)
    )
    np.testing.assert_allclose([r["score"] for r in rows], frame["score"], rtol=1e-5, atol=1e-6)
    # The cached incremental path is for causal encoders; growing a history re-encodes it whole
    # and gives the same result as a fresh recommender.
    grown = {"mid": [*histories["mid"], item_name(10)]}
    again = recommender.recommend_for_histories(grown, k=6)
    fresh = Recommender.from_run(masked_run_dir).recommend_for_histories(grown, k=6)
    assert list(again["item_id"]) == list(fresh["item_id"])


def test_the_recommend_cli_serves_a_masked_run(masked_run_dir, tmp_path) -> None:
    done = _cli(f"--run_dir={masked_run_dir}", "--users=u1,u2", "--k=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 + 2 * 3 and lines[1].split()[0] == "u1"
