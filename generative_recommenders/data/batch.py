"""The typed batch that flows from the data loader to the model.

Item id 0 is padding everywhere. Ids are int64 and never pass through float.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class SequenceBatch:
    """A batch of B users' histories, right-padded to N positions.

    Attributes:
        rows: [B] int64, each user's row in the sequence store (0..num_users-1).
        user_ids: [B] int64, the store's user ids.
        ids: [B, N] int64 item ids, oldest first, 0 after ``lengths``.
        lengths: [B] int64 number of valid history positions.
        timestamps: [B, N] int64 event times in seconds, 0 on padding.
        ratings: [B, N] float32 ratings, 0 on padding (0 everywhere when the dataset has none).
        target_ids: [B] int64 item to predict after the history.
        target_timestamps: [B] int64.
        target_ratings: [B] float32.
    """

    rows: torch.Tensor
    user_ids: torch.Tensor
    ids: torch.Tensor
    lengths: torch.Tensor
    timestamps: torch.Tensor
    ratings: torch.Tensor
    target_ids: torch.Tensor
    target_timestamps: torch.Tensor
    target_ratings: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.ids.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.ids.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SequenceBatch:
        """Move every tensor to ``device``."""
        return SequenceBatch(
            **{
                f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                for f in fields(self)
            }
        )

    def pin_memory(self) -> SequenceBatch:
        """Pinned copy, so the DataLoader's ``pin_memory=True`` works with this type."""
        return SequenceBatch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})
