"""HSTU (Zhai et al., "Actions Speak Louder than Words", arXiv 2402.17152).

Each block (Sequential Transduction Unit) on rows x [*, D]:

    U, V, Q, K = split(phi1(LayerNorm(x) @ W_uvqk))          phi1 = SiLU | identity
    A = phi2(Q K^T + rab) masked causally                   "rel_bias": SiLU(.) / n
                                                             "softmax_rel_bias": softmax(./sqrt(dqk))
                                                             (masked keys get -inf first)
    y = x + W_o(dropout(U * LayerNorm(A V)))                 concat_ua: W_o([U, LN(AV), U * LN(AV)])

Layer norms here have no learned parameters (eps 1e-6). ``n`` is the fixed constant
``max_sequence_len + max_output_len`` (the padded length of the paper's trainer, 211 for its ML-1M
settings, in training and evaluation alike), not the batch's padded length, so a user's
outputs never depend on padding or batchmates.

Users are sorted by length and cut into groups of ``attention_group_size``; each group runs
through every block padded to its own longest length [b, w, D] (no jagged <-> dense conversions
inside or between blocks; a valid position only attends to earlier, valid ones, so padding rows
never reach a valid row). The attention itself is
:func:`generative_recommenders.ops.hstu_attention.hstu_attention`: its reference is the formula
above, and ``train_fn.kernels`` picks the kernel that runs (see docs/kernels.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from generative_recommenders.modeling.encoders.base import SequentialEncoder
from generative_recommenders.modeling.encoders.relative_bias import (
    RelativeBucketedTimeAndPositionBias,
    next_timestamps,
    relative_bias_indices,
)
from generative_recommenders.ops.attention import AttentionMask
from generative_recommenders.ops.dropout import Dropout
from generative_recommenders.ops.groups import (
    LengthGroups,
    check_group_size,
    length_groups,
    to_groups,
    ungroup,
)
from generative_recommenders.ops.hstu_attention import (
    NORMALIZATIONS,
    BiasWeights,
    RelativeIndex,
    hstu_attention,
)
from generative_recommenders.registry import ENCODERS

TIMESTAMPS_KEY = "timestamps"
LINEAR_CONFIGS = ("uvqk",)
LINEAR_ACTIVATIONS = {"silu": F.silu, "none": lambda x: x}
NORM_EPS = 1e-6


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {sorted(choices)}")


class HSTUBlock(nn.Module):
    """One Sequential Transduction Unit.

    Parameters: W_uvqk [D, H * (2 dv + 2 dqk)] (no bias), W_o Linear(H * dv * (3 if concat_ua
    else 1), D), and its own relative bias (129 + 2P - 1) when enabled.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        dqk: int,
        dv: int,
        linear_dropout_rate: float,
        attn_dropout_rate: float,
        normalization: str,
        linear_activation: str,
        concat_ua: bool,
        relative_bias: RelativeBucketedTimeAndPositionBias | None,
        attention_normalizer: float,
    ) -> None:
        super().__init__()
        _check_choice("normalization", normalization, NORMALIZATIONS)
        _check_choice("linear_activation", linear_activation, LINEAR_ACTIVATIONS)
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.dqk = dqk
        self.dv = dv
        self.normalization = normalization
        self.activation = LINEAR_ACTIVATIONS[linear_activation]
        self.concat_ua = concat_ua
        self.attention_normalizer = attention_normalizer
        self.uvqk = nn.Parameter(
            torch.empty(embedding_dim, num_heads * (2 * dv + 2 * dqk)).normal_(0.0, 0.02)
        )
        self.o = nn.Linear(num_heads * dv * (3 if concat_ua else 1), embedding_dim)
        nn.init.xavier_uniform_(self.o.weight)
        self.linear_dropout = Dropout(linear_dropout_rate)
        self.attn_dropout = Dropout(attn_dropout_rate)
        self.relative_bias = relative_bias

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [*, D] -> U [*, H dv], V [*, H dv], Q [*, H dqk], K [*, H dqk]."""
        h = self.activation(F.layer_norm(x, (self.embedding_dim,), eps=NORM_EPS) @ self.uvqk)
        hv, hqk = self.num_heads * self.dv, self.num_heads * self.dqk
        return tuple(torch.split(h, [hv, hv, hqk, hqk], dim=-1))

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: AttentionMask,
        index: RelativeIndex | None,
        bias: BiasWeights | None = None,
    ) -> torch.Tensor:
        """A V with A = phi2(Q K^T + rab) on the allowed pairs (0 elsewhere), dropout on A.

        q [B, Nq, H dqk], k [B, Nk, H dqk], v [B, Nk, H dv], mask [B | 1, Nq, Nk], index: the
        relative-bias indices (None: no bias) -> [B, Nq, H dv]. ``bias``: :meth:`bias_weights`
        when the caller already has them. The kernel is
        :func:`generative_recommenders.ops.hstu_attention.hstu_attention`."""
        if bias is None:
            bias = self.bias_weights()
        return hstu_attention(
            q, k, v, mask, bias, index, self.num_heads, self.normalization,
            self.attention_normalizer, self.attn_dropout.p, self.training,
        )  # fmt: skip

    def bias_weights(self) -> BiasWeights | None:
        """The relative bias's parameters for :meth:`attend` (None without a relative bias);
        make them once per forward and pass them to every group."""
        return None if self.relative_bias is None else self.relative_bias.weights()

    def output(self, u: torch.Tensor, attn: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """U [*, H dv], attention output [*, H dv], block input x [*, D] -> [*, D]."""
        a = F.layer_norm(attn, (attn.shape[-1],), eps=NORM_EPS)
        o_input = torch.cat([u, a, u * a], dim=-1) if self.concat_ua else u * a
        return x + self.o(self.linear_dropout(o_input))

    def forward(
        self,
        x: torch.Tensor,
        mask: AttentionMask,
        index: RelativeIndex | None,
        bias: BiasWeights | None = None,
    ) -> torch.Tensor:
        """x [b, w, D] (rows past a user's length are padding) -> [b, w, D]: projection ->
        attention -> output. A valid row only attends to earlier rows (``mask``), so padding
        rows never change valid ones."""
        u, v, q, k = self.project(x)
        return self.output(u, self.attend(q, k, v, mask, index, bias), x)


@dataclass
class AttentionGroup:
    """Users [start, end) of the length-sorted batch, run together padded to ``width``: the
    causal mask [1, width, width] and the relative-bias indices, as in :meth:`HSTUBlock.attend`."""

    start: int
    end: int
    width: int
    index: RelativeIndex | None
    mask: AttentionMask


@dataclass
class _LastQuery:
    """Bias indices and mask [b, 1, width] of the last position of each user of a group."""

    index: RelativeIndex | None
    mask: AttentionMask


@dataclass
class _Plan:
    """Users sorted by length (``sorting``: order and group bounds), their sorted lengths [B] on
    x's device, the attention groups, the groups' last queries (``encode`` only), and the input
    x [B, N, D] in batch order."""

    lengths: torch.Tensor
    groups: list[AttentionGroup]
    last_queries: list[_LastQuery]
    sorting: LengthGroups
    x: torch.Tensor


@dataclass
class HSTUCache:
    """State of already-encoded events, for :meth:`HSTU.encode_incremental`.

    lengths [B]: encoded events per user; timestamps [B, M] int64 (valid below lengths);
    keys / values: per block [B, M, H dqk] / [B, M, H dv]; last_inputs [B, D]: the first block's
    input at position lengths - 1 (it is recomputed when events are appended, because its
    attention bias depends on the next event's time).
    """

    lengths: torch.Tensor
    timestamps: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    last_inputs: torch.Tensor


@ENCODERS.register("HSTU", gin_name="hstu_encoder")
class HSTU(SequentialEncoder):
    """HSTU encoder: preprocessor -> num_blocks HSTUBlocks on length groups -> postprocessor.

    ``causal=False``: bidirectional attention over each row's non-padding positions (the masked
    objective); the relative bias is kept (its table covers keys after the query too).
    """

    def __init__(
        self,
        max_sequence_len: int,
        max_output_len: int,
        embedding_dim: int,
        embedding_module: nn.Module,
        similarity_module: nn.Module,
        input_features_preproc_module: nn.Module,
        output_postproc_module: nn.Module,
        num_blocks: int = 2,
        num_heads: int = 1,
        dqk: int = 64,
        dv: int = 64,
        linear_dropout_rate: float = 0.0,
        attn_dropout_rate: float = 0.0,
        normalization: str = "rel_bias",
        linear_config: str = "uvqk",
        linear_activation: str = "silu",
        concat_ua: bool = False,
        enable_relative_attention_bias: bool = True,
        activation_checkpoint: bool = False,
        verbose: bool = False,
        attention_group_size: int = 16,
        causal: bool = True,
    ) -> None:
        super().__init__(
            embedding_module,
            similarity_module,
            input_features_preproc_module,
            output_postproc_module,
            causal,
        )
        _check_choice("linear_config", linear_config, LINEAR_CONFIGS)
        self.max_sequence_len = max_sequence_len
        self.max_output_len = max_output_len
        self.embedding_dim = embedding_dim
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.dqk = dqk
        self.dv = dv
        self.linear_dropout_rate = linear_dropout_rate
        self.attn_dropout_rate = attn_dropout_rate
        self.normalization = normalization
        self.linear_config = linear_config
        self.linear_activation = linear_activation
        self.concat_ua = concat_ua
        self.enable_relative_attention_bias = enable_relative_attention_bias
        self.activation_checkpoint = activation_checkpoint
        self.verbose = verbose
        self.attention_group_size = check_group_size(attention_group_size)
        self.tokens_per_event = int(getattr(input_features_preproc_module, "tokens_per_event", 1))
        self.max_positions = self.tokens_per_event * (max_sequence_len + max_output_len)
        self.blocks = nn.ModuleList(
            HSTUBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                dqk=dqk,
                dv=dv,
                linear_dropout_rate=linear_dropout_rate,
                attn_dropout_rate=attn_dropout_rate,
                normalization=normalization,
                linear_activation=linear_activation,
                concat_ua=concat_ua,
                relative_bias=(
                    RelativeBucketedTimeAndPositionBias(self.max_positions)
                    if enable_relative_attention_bias
                    else None
                ),
                attention_normalizer=float(max_sequence_len + max_output_len),
            )
            for _ in range(num_blocks)
        )
        self._init_outside_blocks()

    def _init_outside_blocks(self) -> None:
        """Xavier-normal for every weight matrix outside the blocks and the item table (the
        positional table, the similarity module's layers), as the paper's HSTU initialises them."""
        for module in (self.input_preproc, self.similarity):
            for parameter in module.parameters():
                if parameter.dim() >= 2:
                    nn.init.xavier_normal_(parameter)

    def _token_timestamps(self, payloads: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """[B, N] event times -> [B, N'] token times (None without the payload)."""
        ts = payloads.get(TIMESTAMPS_KEY)
        if ts is None or self.tokens_per_event == 1:
            return ts
        return ts.repeat_interleave(self.tokens_per_event, dim=1)

    def _run_block(self, block: HSTUBlock, *args) -> torch.Tensor:
        if self.activation_checkpoint and self.training:
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _encode_all(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths, x, valid_mask = self.input_preproc(
            past_lengths, past_ids, past_embeddings, past_payloads
        )
        plan = self._plan(lengths, x, past_payloads, self._token_ids(past_ids), last_only=False)
        outputs = [
            self.output_postproc(h) * mask  # per group: ~sum(lengths) rows instead of B * N
            for h, mask in zip(
                self._run_groups(self.blocks, plan),
                to_groups(valid_mask, plan.sorting),
                strict=True,
            )
        ]
        return lengths, ungroup(outputs, plan.sorting.order, x.shape[1])

    def _run_groups(self, blocks, plan: _Plan) -> list[torch.Tensor]:  # noqa: ANN001
        """Every group's padded input [b, w, D] through ``blocks`` (block-major, so each block's
        bias table is built once) -> the groups' outputs."""
        hs = to_groups(plan.x, plan.sorting)
        for block in blocks:
            bias = block.bias_weights()
            hs = [
                self._run_block(block, h, g.mask, g.index, bias)
                for h, g in zip(hs, plan.groups, strict=True)
            ]
        return hs

    def encode(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """-> [B, D], the state after each user's last event (zero for an empty history).

        Equals ``gather_last(forward(...))`` (tested) but the last block computes only each
        user's last position: its attention costs O(n) instead of O(n^2) per user.
        """
        lengths, x, _ = self.input_preproc(past_lengths, past_ids, past_embeddings, past_payloads)
        plan = self._plan(lengths, x, past_payloads, self._token_ids(past_ids), last_only=True)
        hs = self._run_groups(self.blocks[:-1], plan)
        last = self.blocks[-1]
        states = []
        bias = last.bias_weights()
        for h, g, query in zip(hs, plan.groups, plan.last_queries, strict=True):
            u, v, q, k = last.project(h)
            users = torch.arange(g.end - g.start, device=h.device)
            rows = (plan.lengths[g.start : g.end] - 1).clamp(min=0)  # [b] last position
            attn = last.attend(q[users, rows].unsqueeze(1), k, v, query.mask, query.index, bias)
            states.append(last.output(u[users, rows], attn.squeeze(1), h[users, rows]))
        states = self.output_postproc(torch.cat(states) if len(states) > 1 else states[0])
        states = torch.empty_like(states).index_copy_(0, plan.sorting.order, states)
        return states * (lengths > 0).unsqueeze(1).to(states.dtype)

    def _token_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, N] event ids -> [B, N'] token ids (what the attention mask reads)."""
        return (
            ids if self.tokens_per_event == 1 else ids.repeat_interleave(self.tokens_per_event, 1)
        )

    def _plan(
        self,
        lengths: torch.Tensor,
        x: torch.Tensor,
        payloads: dict[str, torch.Tensor],
        ids: torch.Tensor,
        last_only: bool,
    ) -> _Plan:
        """Sort users by length (descending), cut them into attention groups, and build each
        group's bias indices and mask (and, for ``last_only``, those of the last positions)."""
        device = x.device
        ts = self._token_timestamps(payloads) if self.enable_relative_attention_bias else None
        sorting = length_groups(lengths, self.attention_group_size)
        order = sorting.order
        ts_sorted = next_sorted = None
        if ts is not None:  # next times from the full width: index ``length`` is the query time
            ts_sorted = ts.index_select(0, order)
            next_sorted = next_timestamps(ts_sorted)
        device_lengths = sorting.lengths.to(device)
        groups, last_queries = [], []
        blocks_with_all_rows = len(self.blocks) - (1 if last_only else 0)
        for start, end, width in sorting.bounds:
            group_ts = group_next = None
            if ts_sorted is not None:
                group_ts = ts_sorted[start:end, :width]
                group_next = next_sorted[start:end, :width]
            index = None
            if blocks_with_all_rows > 0:
                index = self._bias_index(width, group_next, group_ts, device)
            group_ids = None if self.causal else ids[order[start:end], :width]
            mask = (
                AttentionMask.causal(width, device)
                if self.causal
                else self.attention_mask(group_ids)
            )
            groups.append(AttentionGroup(start, end, width, index, mask))
            if last_only:
                last_queries.append(
                    self._last_query(device_lengths[start:end], width, group_next, group_ts)
                )
        return _Plan(device_lengths, groups, last_queries, sorting, x)

    def _last_query(
        self,
        lengths: torch.Tensor,
        width: int,
        next_times: torch.Tensor | None,
        ts: torch.Tensor | None,
    ) -> _LastQuery:
        """Bias index and mask [b, 1, width] of each user's last position (length - 1)."""
        device = lengths.device
        query_pos = (lengths - 1).clamp(min=0).unsqueeze(1)  # [b, 1]
        key_pos = torch.arange(width, device=device).unsqueeze(0)  # [1, width]
        index = None
        if self.enable_relative_attention_bias:
            query_times = None if next_times is None else next_times.gather(1, query_pos)
            index = relative_bias_indices(query_pos, key_pos, self.max_positions, query_times, ts)
        allowed = key_pos.unsqueeze(1) <= query_pos.unsqueeze(2)  # [b, 1, width]
        return _LastQuery(index, AttentionMask(allowed))

    def _bias_index(
        self,
        width: int,
        query_times: torch.Tensor | None,
        ts: torch.Tensor | None,
        device: torch.device,
    ) -> RelativeIndex | None:
        """Relative-bias table indices for ``width`` positions: query ("next") times and key
        times ts, both [b, width] (None: no time bias)."""
        if not self.enable_relative_attention_bias:
            return None
        positions = torch.arange(width, device=device).unsqueeze(0)
        return relative_bias_indices(positions, positions, self.max_positions, query_times, ts)

    # ---- incremental encoding (M-FALCON-style reuse of cached keys/values) ----

    def init_cache(
        self, batch_size: int, device: torch.device | str | None = None, dtype=torch.float32
    ) -> HSTUCache:
        """An empty cache for ``batch_size`` users."""
        hqk, hv = self.num_heads * self.dqk, self.num_heads * self.dv
        return HSTUCache(
            lengths=torch.zeros(batch_size, dtype=torch.int64, device=device),
            timestamps=torch.zeros(batch_size, 0, dtype=torch.int64, device=device),
            keys=[torch.zeros(batch_size, 0, hqk, dtype=dtype, device=device)] * self.num_blocks,
            values=[torch.zeros(batch_size, 0, hv, dtype=dtype, device=device)] * self.num_blocks,
            last_inputs=torch.zeros(batch_size, self.embedding_dim, dtype=dtype, device=device),
        )

    def encode_incremental(
        self,
        cache: HSTUCache,
        new_lengths: torch.Tensor,
        new_ids: torch.Tensor,
        new_embeddings: torch.Tensor,
        new_payloads: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, HSTUCache]:
        """Append events to the encoded histories and return the new last states.

        Args:
            cache: from :meth:`init_cache` or a previous call.
            new_lengths: [B] number of new events per user (may be 0).
            new_ids: [B, K] int64; new_embeddings: [B, K, D].
            new_payloads: same keys as in :meth:`forward`, [B, K]; as there, timestamps at index
                ``new_lengths`` (when K allows) is the query time.
        Returns:
            (states [B, D] after each user's last event, the updated cache). Only the new positions
            and the previous last one are computed; in eval mode the states equal :meth:`encode`
            on the concatenated histories.
        """
        if self.tokens_per_event != 1:
            raise ValueError("incremental encoding needs a one-token-per-event preprocessor")
        if not self.causal:
            raise ValueError(
                "incremental encoding needs a causal encoder (this one is bidirectional)"
            )
        B, K = new_ids.shape
        device = new_ids.device
        old = cache.lengths
        total = old + new_lengths
        steps = torch.arange(K, device=device).unsqueeze(0)
        _, x_new, _ = self.input_preproc(
            new_lengths, new_ids, new_embeddings, new_payloads, positions=old.unsqueeze(1) + steps
        )
        # Row 0 is the previous last position (old - 1), rows r >= 1 are positions old + r - 1.
        x = torch.cat([cache.last_inputs.unsqueeze(1), x_new], dim=1)
        rows = torch.arange(K + 1, device=device).unsqueeze(0)
        query_pos = old.unsqueeze(1) - 1 + rows
        row_valid = ((rows == 0) & (old > 0).unsqueeze(1)) | (
            (rows >= 1) & (rows <= new_lengths.unsqueeze(1))
        )
        width = int(total.max().item()) if B > 0 else 0
        scatter_pos = torch.where(row_valid, query_pos, width)  # invalid rows -> scratch column
        # Causal mask; invalid rows (clamped to position 0) stay finite and are zeroed below.
        key_index = torch.arange(width, device=device).view(1, 1, -1)
        mask = AttentionMask(key_index <= query_pos.clamp(min=0).unsqueeze(2))
        # Timestamps of all positions, with the one after the last new event for the last query.
        new_ts = new_payloads.get(TIMESTAMPS_KEY)
        ts_all = torch.zeros(B, width + K + 2, dtype=torch.int64, device=device)
        m = min(cache.timestamps.shape[1], width)
        ts_all[:, :m] = cache.timestamps[:, :m]
        if new_ts is not None and K > 0:
            ts_all.scatter_(1, old.unsqueeze(1) + steps, new_ts)
            ts_all.scatter_(1, (old + K).unsqueeze(1), new_ts[:, K - 1 :])
        index = None
        if self.enable_relative_attention_bias:
            key_pos = torch.arange(width, device=device).unsqueeze(0)
            query_times = key_times = None
            if new_ts is not None:
                query_times = ts_all.gather(1, query_pos.clamp(min=-1) + 1)
                key_times = ts_all[:, :width]
            index = relative_bias_indices(
                query_pos, key_pos, self.max_positions, query_times, key_times
            )
        block_input0 = x
        keys, values = [], []
        for block, k_cache, v_cache in zip(self.blocks, cache.keys, cache.values, strict=True):
            u, v, q, k = block.project(x)
            k_all = self._extend(k_cache, width, k, scatter_pos)
            v_all = self._extend(v_cache, width, v, scatter_pos)
            attn = block.attend(q, k_all, v_all, mask, index)
            x = torch.where(row_valid.unsqueeze(2), block.output(u, attn, x), 0.0)
            keys.append(k_all)
            values.append(v_all)
        last_row = new_lengths.to(torch.int64)
        batch = torch.arange(B, device=device)
        states = torch.where(
            (total > 0).unsqueeze(1), self.output_postproc(x[batch, last_row]), 0.0
        )
        new_cache = HSTUCache(
            lengths=total,
            timestamps=ts_all[:, :width],
            keys=keys,
            values=values,
            last_inputs=block_input0[batch, last_row],
        )
        return states, new_cache

    @staticmethod
    def _extend(
        cached: torch.Tensor, width: int, rows: torch.Tensor, scatter_pos: torch.Tensor
    ) -> torch.Tensor:
        """cached [B, M, E] + rows [B, R, E] written at scatter_pos [B, R] -> [B, width, E]."""
        B, M, E = cached.shape
        out = cached.new_zeros(B, width + 1, E)
        m = min(M, width)
        out[:, :m] = cached[:, :m]
        out = out.scatter(1, scatter_pos.unsqueeze(2).expand(-1, -1, E), rows)
        return out[:, :width]

    def debug_str(self) -> str:
        return (
            f"HSTU-b{self.num_blocks}-h{self.num_heads}-dqk{self.dqk}-dv{self.dv}"
            f"-l{self.linear_activation}-ddr{self.linear_dropout_rate}"
            f"-adr{self.attn_dropout_rate}-{self.normalization}"
            + ("-rab" if self.enable_relative_attention_bias else "")
            + ("-cua" if self.concat_ua else "")
            + self.direction_str()
        )
