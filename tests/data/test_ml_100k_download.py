"""The embedded default: ML-100K from the RecBole 1.2.1 wheel on PyPI (network; marked slow)."""

from __future__ import annotations

import numpy as np
import pytest

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import movielens
from generative_recommenders.data.store import SequenceStore
from tests.data.conftest import opts


@pytest.mark.slow
def test_ml_100k_from_pypi_matches_the_published_figures(tmp_path):
    summary = preprocess("ml-100k", opts(tmp_path))
    assert (summary.num_interactions, summary.num_users, summary.num_items) == (100_000, 943, 1_682)
    assert summary.max_item_id == 1_682
    assert (summary.length_min, round(summary.length_mean, 2), summary.length_max) == (
        20,
        106.04,
        737,
    )
    store = SequenceStore.open(tmp_path, "ml-100k")
    assert store.items_table().shape[0] == 1_682
    assert np.all(np.diff(store.timestamps[: store.offsets[1]]) >= 0)
    # The cached wheel is reused (and re-verified) on a second run.
    assert (tmp_path / "downloads" / movielens.RECBOLE_WHEEL).is_file()
    again = preprocess("ml-100k", opts(tmp_path))
    assert again.target_fingerprint == summary.target_fingerprint
