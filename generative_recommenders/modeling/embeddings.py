"""Item-embedding tables: item ids [*] int64 -> embeddings [*, D]. Item id 0 is padding."""

from __future__ import annotations

import torch
from torch import nn

INIT_CHUNK_ELEMENTS = 1 << 22  # floats initialised per call (16 MiB in fp32)


def _init_table(table: nn.Embedding, std: float = 0.02) -> None:
    """Truncated normal (±2 std) on every row, then the padding row 0 set to zero.

    Tables over ``INIT_CHUNK_ELEMENTS`` floats are drawn in blocks of rows: ``trunc_normal_``'s
    rejection sampling makes ~4 temporaries the size of its input (for ML-3B's ~0.9 GB table,
    ~3.5 GB of peak memory at start-up); smaller tables are drawn in one call as always.
    """
    weight = table.weight
    rows = max(1, INIT_CHUNK_ELEMENTS // max(1, weight.shape[1]))
    for start in range(0, weight.shape[0], rows):
        block = weight[start : start + rows]
        nn.init.trunc_normal_(block, mean=0.0, std=std, a=-2 * std, b=2 * std)
    with torch.no_grad():
        table.weight[0].zero_()


class LocalEmbeddingModule(nn.Module):
    """One table of ``num_items + 1`` rows of size ``item_embedding_dim``; row 0 is padding.

    Row 0 stays zero: it is zero at init and ``padding_idx=0`` keeps its gradient zero.
    """

    def __init__(self, num_items: int, item_embedding_dim: int) -> None:
        super().__init__()
        if num_items < 1 or item_embedding_dim < 1:
            raise ValueError(
                f"num_items and item_embedding_dim must be >= 1, got {num_items}, "
                f"{item_embedding_dim}"
            )
        self.num_items = num_items
        self.item_embedding_dim = item_embedding_dim
        self.item_emb = nn.Embedding(num_items + 1, item_embedding_dim, padding_idx=0)
        _init_table(self.item_emb)

    def get_item_embeddings(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[*] int64 ids in 0..num_items -> [*, D]."""
        return self.item_emb(item_ids)

    def debug_str(self) -> str:
        return f"local_emb_d{self.item_embedding_dim}"


class CategoricalEmbeddingModule(nn.Module):
    """Items share the embedding of their category.

    ``item_id_to_category_id`` is a [num_items + 1] int64 tensor indexed by item id (entry 0,
    the padding id, is ignored) holding 0-based category ids. The table has ``C + 1`` rows for C
    categories: row 0 is padding, category c lives in row c + 1.
    """

    def __init__(
        self, num_items: int, item_embedding_dim: int, item_id_to_category_id: torch.Tensor
    ) -> None:
        super().__init__()
        mapping = torch.as_tensor(item_id_to_category_id)
        if mapping.dim() != 1 or mapping.numel() != num_items + 1:
            raise ValueError(
                f"item_id_to_category_id must have shape [{num_items + 1}] (num_items + 1), "
                f"got {list(mapping.shape)}"
            )
        if mapping.dtype.is_floating_point or (mapping[1:] < 0).any():
            raise ValueError("item_id_to_category_id must hold integer category ids >= 0")
        rows = mapping.to(torch.int64) + 1
        rows[0] = 0
        self.num_items = num_items
        self.item_embedding_dim = item_embedding_dim
        self.num_categories = int(rows.max().item())
        self.register_buffer("item_id_to_row", rows, persistent=False)
        self.category_emb = nn.Embedding(self.num_categories + 1, item_embedding_dim, padding_idx=0)
        _init_table(self.category_emb)

    def get_item_embeddings(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[*] int64 ids in 0..num_items -> [*, D] (the embedding of each item's category)."""
        return self.category_emb(self.item_id_to_row[item_ids])

    def debug_str(self) -> str:
        return f"cat_emb_c{self.num_categories}_d{self.item_embedding_dim}"
