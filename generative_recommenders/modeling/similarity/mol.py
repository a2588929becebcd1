"""Mixture-of-Logits similarity (MoL; Zhai et al., KDD'23, arXiv 2306.04039; arXiv 2407.15462).

    score(q, x) = sum_{p, r} w_{p r}(q, x) * <f_p(q), g_r(x)> / temperature

f_p (p < P) are query components (learned projections of q, plus optional hashed user-id
embeddings), g_r (r < Q) item components, each of size dot_product_dimension and l2-normalised when
``dot_product_l2_norm``. The gating weights w = softmax(G) over the P*Q pairs (then dropout) come
from a query-only MLP, an item-only MLP and a query-item MLP over the P*Q logits:
``"glu_silu"``: G = SiLU(g_query * g_item + g_qi); ``"none"``: G = g_query + g_item + g_qi
(absent parts are left out). See :mod:`.base` for the module contract.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from generative_recommenders.modeling.similarity.base import PreparedState
from generative_recommenders.ops.precision import bf16_autocast
from generative_recommenders.registry import SIMILARITIES

GLU_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "geglu": F.gelu,
    "swiglu": F.silu,
}


def _glu_silu(product: torch.Tensor | None, qi: torch.Tensor) -> torch.Tensor:
    return F.silu(qi if product is None else product + qi)


def _plain_sum(total: torch.Tensor | None, qi: torch.Tensor) -> torch.Tensor:
    return qi if total is None else total + qi


# Combines the query/item partial gates (None if both are off) with the query-item gate.
COMBINATIONS: dict[str, Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor]] = {
    "glu_silu": _glu_silu,
    "none": _plain_sum,
}


class GatedLinearUnit(nn.Module):
    """x [*, in] -> a * act(b) [*, out] where (a, b) = Linear(in, 2 out)(x); GeGLU / SwiGLU."""

    def __init__(self, in_features: int, out_features: int, nonlinearity: str) -> None:
        super().__init__()
        if nonlinearity not in GLU_ACTIVATIONS:
            raise ValueError(
                f"nonlinearity={nonlinearity!r}; expected one of {sorted(GLU_ACTIVATIONS)}"
            )
        self.proj = nn.Linear(in_features, 2 * out_features)
        self.act = GLU_ACTIVATIONS[nonlinearity]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.proj(x).chunk(2, dim=-1)
        return a * self.act(b)


def _projection(
    in_dim: int, out_dim: int, hidden_dim: int, dropout_rate: float, nonlinearity: str
) -> nn.Sequential:
    """Dropout -> (GLU(in, hidden) -> Linear(hidden, out)) or, for hidden_dim <= 0, Linear."""
    if hidden_dim > 0:
        return nn.Sequential(
            nn.Dropout(dropout_rate),
            GatedLinearUnit(in_dim, hidden_dim, nonlinearity),
            nn.Linear(hidden_dim, out_dim),
        )
    return nn.Sequential(nn.Dropout(dropout_rate), nn.Linear(in_dim, out_dim))


def _gating_mlp(
    in_dim: int, hidden_dim: int, out_dim: int, dropout_rate: float, last_bias: bool
) -> nn.Sequential:
    """Dropout -> Linear(in, hidden) -> SiLU -> Linear(hidden, out); a single Linear if hidden <= 0."""
    if hidden_dim > 0:
        return nn.Sequential(
            nn.Dropout(dropout_rate),
            nn.Linear(in_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, out_dim, bias=last_bias),
        )
    return nn.Sequential(nn.Dropout(dropout_rate), nn.Linear(in_dim, out_dim, bias=last_bias))


def _init_xavier_zero_bias(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def mutual_information_loss(weights: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Gating weights [..., K] (rows sum to 1) -> scalar loss.

    mean per-pair entropy - entropy of the mean distribution: minimising it makes each pair's
    gating confident while keeping the average use of the K components balanced.
    """
    flat = weights.reshape(-1, weights.shape[-1])
    per_pair = -(flat * torch.log(flat + eps)).sum(-1).mean()
    marginal = flat.mean(0)
    return per_pair + (marginal * torch.log(marginal + eps)).sum()


@SIMILARITIES.register("MoL", gin_name="create_mol_interaction_module")
class MoLSimilarity(nn.Module):
    """Mixture-of-Logits; bound in gin as ``create_mol_interaction_module.<parameter>``.

    Defaults of the groups, dimensions, temperature and dropouts are the published ML-1M MoL
    setting's (``configs/ml-1m/hstu-mol-sampled-softmax-n128-large-final.gin``).

    Shapes: queries [B, Dq], items [B, R, Di] or [X, Di], user_ids [B] int64 (needed when
    ``uid_embedding_hash_sizes`` is non-empty). Aux losses in forward: "mi_loss" always,
    "uid_embedding_l2_norm" (mean over users of the squared norms of their uid embeddings) when
    uid tables exist.
    """

    dot_product = False  # scores are a gated mixture, not <q, x>

    def __init__(
        self,
        query_embedding_dim: int,
        item_embedding_dim: int,
        dot_product_dimension: int = 64,
        query_dot_product_groups: int = 8,
        item_dot_product_groups: int = 4,
        temperature: float = 0.05,
        query_dropout_rate: float = 0.0,
        query_hidden_dim: int = 512,
        item_dropout_rate: float = 0.1,
        item_hidden_dim: int = -1,
        gating_query_hidden_dim: int = 128,
        gating_qi_hidden_dim: int = 128,
        gating_item_hidden_dim: int = 128,
        softmax_dropout_rate: float = 0.2,
        bf16_training: bool = False,
        gating_query_fn: bool = True,
        gating_item_fn: bool = True,
        dot_product_l2_norm: bool = True,
        query_nonlinearity: str = "geglu",
        item_nonlinearity: str = "geglu",
        uid_dropout_rate: float = 0.5,
        uid_embedding_hash_sizes: list[int] | None = None,
        uid_embedding_level_dropout: bool = False,
        gating_combination_type: str = "glu_silu",
        gating_item_dropout_rate: float = 0.0,
        gating_qi_dropout_rate: float = 0.0,
        eps: float = 1e-6,
        activation_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if gating_combination_type not in COMBINATIONS:
            raise ValueError(
                f"gating_combination_type={gating_combination_type!r}; expected one of "
                f"{sorted(COMBINATIONS)}"
            )
        hash_sizes = list(uid_embedding_hash_sizes or [])
        num_query_proj = query_dot_product_groups - len(hash_sizes)
        if num_query_proj < 1 or item_dot_product_groups < 1 or temperature <= 0:
            raise ValueError(
                "MoL needs query_dot_product_groups > len(uid_embedding_hash_sizes), "
                f"item_dot_product_groups >= 1 and temperature > 0; got {query_dot_product_groups}, "
                f"{hash_sizes}, {item_dot_product_groups}, {temperature}"
            )
        self.P, self.Q, self.d = (
            query_dot_product_groups,
            item_dot_product_groups,
            dot_product_dimension,
        )
        self.num_query_proj = num_query_proj
        self.temperature = temperature
        self.dot_product_l2_norm = dot_product_l2_norm
        self.eps = eps
        self.bf16_training = bf16_training
        self.activation_checkpoint = activation_checkpoint
        self.softmax_dropout_rate = softmax_dropout_rate
        self.uid_dropout_rate = uid_dropout_rate
        self.uid_embedding_level_dropout = uid_embedding_level_dropout
        self.uid_embedding_hash_sizes = hash_sizes
        self.gating_combination_type = gating_combination_type
        self._combine = COMBINATIONS[gating_combination_type]
        self._debug = (
            f"MoL-{self.P}x{self.Q}x{self.d}-t{temperature}-d{softmax_dropout_rate}"
            + ("-l2" if dot_product_l2_norm else "")
            + f"-q{query_hidden_dim}d{query_dropout_rate}{query_nonlinearity}"
            + f"-i{item_hidden_dim}d{item_dropout_rate}{item_nonlinearity}"
            + (f"-gq{gating_query_hidden_dim}" if gating_query_fn else "")
            + (f"-gi{gating_item_hidden_dim}d{gating_item_dropout_rate}" if gating_item_fn else "")
            + f"-gqi{gating_qi_hidden_dim}d{gating_qi_dropout_rate}-x-{gating_combination_type}"
            + (
                f"-uids{'-'.join(map(str, hash_sizes))}d{uid_dropout_rate}"
                + ("l" if uid_embedding_level_dropout else "")
                if hash_sizes
                else ""
            )
        )
        pq = self.P * self.Q
        self.query_proj = _projection(
            query_embedding_dim,
            num_query_proj * self.d,
            query_hidden_dim,
            query_dropout_rate,
            query_nonlinearity,
        )
        self.item_proj = _projection(
            item_embedding_dim,
            self.Q * self.d,
            item_hidden_dim,
            item_dropout_rate,
            item_nonlinearity,
        )
        self.gating_query = (
            _gating_mlp(query_embedding_dim, gating_query_hidden_dim, pq, 0.0, last_bias=False)
            if gating_query_fn
            else None
        )
        self.gating_item = (
            _gating_mlp(
                item_embedding_dim,
                gating_item_hidden_dim,
                pq,
                gating_item_dropout_rate,
                last_bias=False,
            )
            if gating_item_fn
            else None
        )
        self.gating_qi = _gating_mlp(
            pq, gating_qi_hidden_dim, pq, gating_qi_dropout_rate, last_bias=True
        )
        self.apply(_init_xavier_zero_bias)
        self.uid_tables = nn.ModuleList(nn.Embedding(size, self.d) for size in hash_sizes)
        for table in self.uid_tables:
            nn.init.trunc_normal_(table.weight, std=0.02, a=-0.04, b=0.04)
        self.softmax_dropout = nn.Dropout(softmax_dropout_rate)

    def debug_str(self) -> str:
        return self._debug

    def _autocast(self, device: torch.device):
        return bf16_autocast(device, self.bf16_training)

    def _normalize(self, components: torch.Tensor) -> torch.Tensor:
        if self.dot_product_l2_norm:
            return F.normalize(components, dim=-1, eps=self.eps)
        return components

    def _uid_components(self, user_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """user_ids [B] -> (uid components [B, U, d] after dropout, l2 penalty scalar)."""
        if user_ids is None:
            raise ValueError("MoL with uid_embedding_hash_sizes needs user_ids [B]")
        embs = torch.stack(
            [
                table(torch.remainder(user_ids, size))
                for table, size in zip(self.uid_tables, self.uid_embedding_hash_sizes, strict=True)
            ],
            dim=1,
        )
        penalty = (embs * embs).sum(-1).sum(-1).mean()
        if self.training and self.uid_dropout_rate > 0:
            if self.uid_embedding_level_dropout:
                keep = (
                    torch.rand(embs.shape[:2] + (1,), device=embs.device) >= self.uid_dropout_rate
                )
                embs = embs * keep.to(embs.dtype) / (1.0 - self.uid_dropout_rate)
            else:
                embs = F.dropout(embs, p=self.uid_dropout_rate, training=True)
        return embs, penalty

    def _prepare_queries(
        self, query_embeddings: torch.Tensor, user_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        B = query_embeddings.shape[0]
        comps = self.query_proj(query_embeddings).view(B, self.num_query_proj, self.d)
        aux: dict[str, torch.Tensor] = {}
        if self.uid_tables:
            uid_comps, aux["uid_embedding_l2_norm"] = self._uid_components(user_ids)
            comps = torch.cat([comps, uid_comps.to(comps.dtype)], dim=1)
        gate = (
            self.gating_query(query_embeddings)
            if self.gating_query is not None
            else query_embeddings.new_zeros(B, 0)
        )
        return self._normalize(comps), gate, aux

    def prepare_queries(
        self, query_embeddings: torch.Tensor, user_ids: torch.Tensor | None = None
    ) -> PreparedState:
        """[B, Dq] -> (components [B, P, d], query gate [B, P*Q] or [B, 0])."""
        comps, gate, _ = self._prepare_queries(query_embeddings, user_ids)
        return comps, gate

    def prepare_items(self, item_embeddings: torch.Tensor) -> PreparedState:
        """[X, Di] (or [..., Di]) -> (components [X, Q, d], item gate [X, P*Q] or [X, 0])."""
        lead = item_embeddings.shape[:-1]
        comps = self._normalize(self.item_proj(item_embeddings).view(*lead, self.Q, self.d))
        gate = (
            self.gating_item(item_embeddings)
            if self.gating_item is not None
            else item_embeddings.new_zeros(*lead, 0)
        )
        return comps, gate

    def _mix(
        self, logits: torch.Tensor, query_gate: torch.Tensor, item_gate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """logits [B, X, PQ] (already / temperature), query_gate [B, 1, PQ | 0], item_gate
        [B | 1, X, PQ | 0] -> (scores [B, X], gating weights [B, X, PQ] before dropout)."""
        parts = [g for g in (query_gate, item_gate) if g.shape[-1] > 0]
        partial = None
        if parts:
            partial = parts[0]
            for g in parts[1:]:
                partial = partial * g if self.gating_combination_type == "glu_silu" else partial + g
        weights = torch.softmax(self._combine(partial, self.gating_qi(logits)), dim=-1)
        return (self.softmax_dropout(weights) * logits).sum(-1), weights

    def score_prepared(self, query_state: PreparedState, item_state: PreparedState) -> torch.Tensor:
        """([B, P, d], [B, PQ]) x ([X, Q, d], [X, PQ]) -> [B, X]."""
        q_comps, q_gate = query_state
        x_comps, x_gate = item_state
        with self._autocast(q_comps.device):
            B, X = q_comps.shape[0], x_comps.shape[0]
            logits = torch.einsum("bpd,xqd->bxpq", q_comps, x_comps).reshape(B, X, self.P * self.Q)
            scores, _ = self._mix(
                logits / self.temperature, q_gate.unsqueeze(1), x_gate.unsqueeze(0)
            )
        return scores

    def forward(
        self,
        query_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor,
        user_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """[B, Dq] x ([B, R, Di] | [X, Di]) -> ([B, R] | [B, X], aux losses)."""
        with self._autocast(query_embeddings.device):
            B = query_embeddings.shape[0]
            q_comps, q_gate, aux = self._prepare_queries(query_embeddings, user_ids)
            x_comps, x_gate = self.prepare_items(item_embeddings)
            if item_embeddings.dim() == 3:
                logits = torch.einsum("bpd,brqd->brpq", q_comps, x_comps)
            else:
                logits = torch.einsum("bpd,xqd->bxpq", q_comps, x_comps)
                x_gate = x_gate.unsqueeze(0)
            logits = logits.reshape(B, logits.shape[1], self.P * self.Q) / self.temperature
            if self.activation_checkpoint and self.training:
                # The [B, X, P*Q] gating activations dominate memory; recompute them in backward.
                scores, weights = checkpoint(
                    self._mix, logits, q_gate.unsqueeze(1), x_gate, use_reentrant=False
                )
            else:
                scores, weights = self._mix(logits, q_gate.unsqueeze(1), x_gate)
            aux["mi_loss"] = mutual_information_loss(weights.float(), self.eps)
        return scores, aux
