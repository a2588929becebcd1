"""The exported artefact: same top-k as in-process, loadable with torch/numpy/json only."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from generative_recommenders.errors import UserInputError
from generative_recommenders.recommend import Recommender, artifact
from generative_recommenders.recommend.export import export_artifact
from tests.recommend.conftest import item_name

ALLOWED_IMPORTS = {"torch", "numpy", "json", "__future__", "time", "pathlib"}


def _histories() -> dict[str, list[str]]:
    return {
        "short": [item_name(3)],
        "mid": [item_name(i) for i in (5, 6, 7, 9, 8)],
        "long": [item_name(i % 40 + 1) for i in range(27)],  # longer than the window (20)
        "unknown": ["ghost"],
    }


@pytest.fixture(scope="module")
def exported(recommender, tmp_path_factory):
    return export_artifact(recommender, tmp_path_factory.mktemp("export") / "artefact")


def test_artifact_top_k_equals_in_process(recommender, exported) -> None:
    served = artifact.load_artifact(exported)
    exclude = [item_name(1), item_name(12)]
    rows = served.recommend_for_histories(_histories(), k=8, exclude_items=exclude)
    frame = recommender.recommend_for_histories(_histories(), k=8, exclude_items=exclude)
    assert [(r["user_id"], r["item_id"], r["rank"]) for r in rows] == list(
        zip(frame["user_id"], frame["item_id"], frame["rank"], strict=True)
    )
    np.testing.assert_allclose([r["score"] for r in rows], frame["score"], rtol=1e-5, atol=1e-6)
    assert [r["title"] for r in rows] == list(frame["title"])
    assert served.last_report["empty_histories"] == ["unknown"]
    assert served.last_report["unknown_items"] == ["ghost"]


def test_artifact_serves_all_store_users_like_the_recommender(recommender, exported) -> None:
    served = artifact.load_artifact(exported)
    users = recommender.users.originals()
    histories = []
    for user in users:
        row = int(np.searchsorted(recommender.store.user_ids, recommender.users.encode_one(user)))
        start, end = int(recommender.store.offsets[row]), int(recommender.store.offsets[row + 1])
        histories.append(
            {
                "user_id": user,
                "items": recommender.items.decode(recommender.store.item_ids[start:end]),
                "timestamps": recommender.store.timestamps[start:end].tolist(),
            }
        )
    rows = served.recommend_for_histories(histories, k=5)
    frame = recommender.recommend(users, k=5)
    assert [(r["user_id"], r["item_id"]) for r in rows] == list(
        zip(frame["user_id"], frame["item_id"], strict=True)
    )


def test_the_loader_imports_only_torch_numpy_json_and_stdlib() -> None:
    tree = ast.parse(open(artifact.__file__, encoding="utf-8").read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in artifact.py"
            imported.add(node.module.split(".")[0])
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS


def test_the_exported_folder_serves_without_the_package(exported, tmp_path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["similarity"] == "dot_product" and manifest["model"] == "HSTU"
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(exported)!r})
        import artifact
        art = artifact.load_artifact({str(exported)!r})
        rows = art.recommend_for_histories({{"x": ["{item_name(2)}", "{item_name(3)}"]}}, k=3)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("gin", "generative_recommenders", "pandas"))
        print(json.dumps({{"rows": rows, "leaked": leaked}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["leaked"] == []
    assert [r["rank"] for r in out["rows"]] == [1, 2, 3]


def test_export_refuses_mol_in_one_line(mol_run_dir, tmp_path) -> None:
    rec = Recommender.from_run(mol_run_dir)
    with pytest.raises(UserInputError, match="only dot-product") as caught:
        export_artifact(rec, tmp_path / "mol")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "mol").exists()
