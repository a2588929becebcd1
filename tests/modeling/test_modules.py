"""Embedding tables, input preprocessors and output postprocessors."""

import math

import pytest
import torch

from generative_recommenders.modeling.embeddings import (
    CategoricalEmbeddingModule,
    LocalEmbeddingModule,
)
from generative_recommenders.modeling.postprocessors import (
    L2NormEmbeddingPostprocessor,
    LayerNormEmbeddingPostprocessor,
)
from generative_recommenders.modeling.preprocessors import (
    CombinedItemAndRatingInputFeaturesPreprocessor,
    LearnablePositionalEmbeddingInputFeaturesPreprocessor,
    LearnablePositionalEmbeddingRatedInputFeaturesPreprocessor,
)


def test_local_embeddings_padding_row_is_zero_and_stays_zero():
    torch.manual_seed(0)
    emb = LocalEmbeddingModule(num_items=10, item_embedding_dim=4)
    assert emb.item_emb.weight.shape == (11, 4)
    ids = torch.tensor([[0, 3, 10], [0, 0, 1]])
    out = emb.get_item_embeddings(ids)
    assert out.shape == (2, 3, 4) and torch.count_nonzero(out[:, 0]) == 0
    out.sum().backward()
    assert torch.count_nonzero(emb.item_emb.weight.grad[0]) == 0
    assert emb.item_emb.weight[1:].abs().max() <= 0.04  # truncated at 2 std of 0.02


def test_categorical_embeddings_share_rows_by_category():
    mapping = torch.tensor([0, 2, 0, 2, 1])  # item ids 0..4; entry 0 ignored
    emb = CategoricalEmbeddingModule(4, 3, mapping)
    out = emb.get_item_embeddings(torch.tensor([1, 3, 2, 0]))
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], out[2])
    assert torch.count_nonzero(out[3]) == 0
    with pytest.raises(ValueError, match="num_items"):
        CategoricalEmbeddingModule(5, 3, mapping)


def test_positional_preprocessor_scales_adds_positions_and_masks():
    torch.manual_seed(0)
    pre = LearnablePositionalEmbeddingInputFeaturesPreprocessor(6, 4, dropout_rate=0.0)
    ids = torch.tensor([[5, 6, 7, 0], [1, 0, 0, 0]])
    lengths = torch.tensor([3, 1])
    embs = torch.randn(2, 4, 4)
    out_lengths, x, mask = pre(lengths, ids, embs, {})
    assert torch.equal(out_lengths, lengths) and mask.shape == (2, 4, 1)
    torch.testing.assert_close(x[0, 2], embs[0, 2] * 2.0 + pre.pos_emb.weight[2])
    assert torch.count_nonzero(x[0, 3]) == 0 and torch.count_nonzero(x[1, 1:]) == 0
    assert mask[:, :, 0].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]


def test_rated_preprocessor_concatenates_rating_embeddings():
    torch.manual_seed(0)
    pre = LearnablePositionalEmbeddingRatedInputFeaturesPreprocessor(
        6, 4, dropout_rate=0.0, rating_embedding_dim=2, num_ratings=5
    )
    ids, lengths = torch.tensor([[5, 6]]), torch.tensor([2])
    embs = torch.randn(1, 2, 4)
    ratings = torch.tensor([[4.0, 1.0]])
    _, x, _ = pre(lengths, ids, embs, {"ratings": ratings})
    assert x.shape == (1, 2, 6)
    want = torch.cat([embs[0, 0], pre.rating_emb.weight[4]]) * math.sqrt(6) + pre.pos_emb.weight[0]
    torch.testing.assert_close(x[0, 0], want)


def test_combined_preprocessor_interleaves_items_and_ratings():
    torch.manual_seed(0)
    pre = CombinedItemAndRatingInputFeaturesPreprocessor(5, 4, dropout_rate=0.0, num_ratings=5)
    ids, lengths = torch.tensor([[5, 6, 0]]), torch.tensor([2])
    embs = torch.randn(1, 3, 4)
    ratings = torch.tensor([[3.0, 5.0, 0.0]])
    out_lengths, x, mask = pre(lengths, ids, embs, {"ratings": ratings})
    assert out_lengths.tolist() == [4] and x.shape == (1, 6, 4)
    assert mask[0, :, 0].tolist() == [1, 1, 1, 1, 0, 0]
    torch.testing.assert_close(x[0, 2], embs[0, 1] * 2.0 + pre.pos_emb.weight[2])
    torch.testing.assert_close(x[0, 3], pre.rating_emb.weight[5] * 2.0 + pre.pos_emb.weight[3])


def test_postprocessors():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(
        L2NormEmbeddingPostprocessor(2)(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]])
    )
    ln = LayerNormEmbeddingPostprocessor(2)
    torch.testing.assert_close(ln(x)[0], torch.tensor([-1.0, 1.0]), rtol=1e-4, atol=1e-4)
