"""Output postprocessors applied to encoder states [..., D] -> [..., D]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class L2NormEmbeddingPostprocessor(nn.Module):
    """x / max(||x||_2, eps) along the last dimension; zero rows stay zero."""

    def __init__(self, embedding_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.eps = eps

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., D] of unit (or zero) norm."""
        return F.normalize(embeddings, p=2.0, dim=-1, eps=self.eps)

    def debug_str(self) -> str:
        return "l2"


class LayerNormEmbeddingPostprocessor(nn.Module):
    """Layer norm with a learned scale and bias over the last dimension."""

    def __init__(self, embedding_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.norm = nn.LayerNorm(embedding_dim, eps=eps)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., D]."""
        return self.norm(embeddings)

    def debug_str(self) -> str:
        return "ln"
