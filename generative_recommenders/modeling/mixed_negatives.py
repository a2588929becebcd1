"""Mixed negatives: in-batch items plus catalogue items (uniform or by popularity) per position.

``train_fn.sampling_strategy = "mixed"``. Every position draws exactly ``num_in_batch`` negatives
from the batch's distinct valid items (as the in-batch sampler with dedup) and ``num_catalogue``
from the whole catalogue (``catalogue = "uniform"``, as the local sampler, or ``"popularity"``,
as the popularity sampler with ``exponent``): columns ``0..num_in_batch-1`` of the ``[L, R]``
slots are the in-batch ones, the rest the catalogue ones. The loss's R must be
``num_in_batch + num_catalogue``: the run gives the loss that R when ``train_fn.num_negatives``
is unbound and refuses a different one (``config/build.py``).

Candidate table: ``concat(in-batch distinct items [U_b], catalogue [X])``, slots ``0..U_b-1`` the
in-batch part and ``U_b..U_b+X-1`` the catalogue. A batch item is in both parts, so
``candidate_slots`` is None (accidental hits are masked by id) unless one part is empty.

logQ: one draw of the R yields item j with probability
``q_j = (num_in_batch * q_batch(j) + num_catalogue * q_cat(j)) / R``, with ``q_batch`` the in-batch
frequency ``count_in_batch(j) / valid positions`` (see ``modeling/negatives.py``) and ``q_cat`` the
catalogue part's exact probability; both slots of an item get that same q.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from generative_recommenders.modeling.negatives import (
    InBatchNegativesSampler,
    LocalNegativesSampler,
    Lookup,
    _UniformSampler,
)
from generative_recommenders.modeling.popularity_negatives import (
    PopularityNegativesSampler,
    popularity_weights,
)
from generative_recommenders.registry import SAMPLERS

CATALOGUE_KINDS = ("uniform", "popularity")


@SAMPLERS.register("mixed")
class MixedNegativesSampler(_UniformSampler):
    """``num_in_batch`` in-batch plus ``num_catalogue`` catalogue negatives per position.

    Args:
        item_embedding_fn: ids [*] -> embeddings [*, D] from the current item table.
        catalogue_item_ids: [X] int64 distinct item ids (no 0).
        l2_norm: L2-normalise the candidate embeddings.
        l2_norm_eps: lower clamp of the norm.
        num_in_batch: negatives per position from the batch's distinct items
            (``MixedNegativesSampler.num_in_batch``).
        num_catalogue: negatives per position from the catalogue
            (``MixedNegativesSampler.num_catalogue``).
        catalogue: ``"uniform"`` or ``"popularity"`` (``MixedNegativesSampler.catalogue``).
        exponent: the popularity exponent a (``count^a``; 1.0 unless bound), only with
            ``catalogue="popularity"`` (bound with ``"uniform"`` it is refused).
        item_counts: [max item id + 1] int64 training interactions per id (offered by the run;
            needed for ``catalogue="popularity"``).
        generator: optional ``torch.Generator`` (on the draws' device) for reproducible draws.
    """

    def __init__(
        self,
        item_embedding_fn: Callable[[torch.Tensor], torch.Tensor],
        catalogue_item_ids: torch.Tensor,
        l2_norm: bool,
        l2_norm_eps: float,
        num_in_batch: int = 64,
        num_catalogue: int = 64,
        catalogue: str = "uniform",
        exponent: float | None = None,
        item_counts: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(l2_norm, l2_norm_eps, generator)
        for name, value in (("num_in_batch", num_in_batch), ("num_catalogue", num_catalogue)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"MixedNegativesSampler.{name}={value!r}: expected an integer >= 0"
                )
        if num_in_batch + num_catalogue == 0:
            raise ValueError(
                "MixedNegativesSampler.num_in_batch=0 and MixedNegativesSampler.num_catalogue=0: "
                "expected at least one negative in total"
            )
        if catalogue not in CATALOGUE_KINDS:
            raise ValueError(
                f"MixedNegativesSampler.catalogue={catalogue!r}: expected one of "
                f"{', '.join(map(repr, CATALOGUE_KINDS))}"
            )
        if exponent is not None and catalogue != "popularity":
            raise ValueError(
                f"MixedNegativesSampler.exponent={exponent!r} applies to catalogue='popularity' "
                f"only, but MixedNegativesSampler.catalogue={catalogue!r}"
            )
        self.num_in_batch = int(num_in_batch)
        self.num_catalogue = int(num_catalogue)
        self.catalogue = catalogue
        self.exponent = 1.0 if exponent is None else float(exponent)
        self.in_batch = InBatchNegativesSampler(l2_norm, l2_norm_eps, dedup_embeddings=True)
        self.catalogue_sampler: LocalNegativesSampler
        if catalogue == "popularity":
            # Checked here first so a refusal names this sampler's own bindings.
            popularity_weights(item_counts, catalogue_item_ids, self.exponent, type(self).__name__)
            self.catalogue_sampler = PopularityNegativesSampler(
                item_embedding_fn,
                catalogue_item_ids,
                l2_norm,
                l2_norm_eps,
                item_counts=item_counts,
                exponent=self.exponent,
            )
        else:
            self.catalogue_sampler = LocalNegativesSampler(
                item_embedding_fn, catalogue_item_ids, l2_norm, l2_norm_eps
            )

    @property
    def num_to_sample(self) -> int:
        """R = num_in_batch + num_catalogue: the negatives per position this sampler draws."""
        return self.num_in_batch + self.num_catalogue

    def num_to_sample_bindings(self) -> str:
        """Where R comes from, for messages: ``MixedNegativesSampler.num_in_batch + ...``."""
        return (
            f"MixedNegativesSampler.num_in_batch + MixedNegativesSampler.num_catalogue = "
            f"{self.num_in_batch} + {self.num_catalogue}"
        )

    def _parts(self) -> tuple[bool, bool]:
        """Which parts the candidate table holds (an unused part is left out of it)."""
        return self.num_in_batch > 0, self.num_catalogue > 0

    def _num_batch_slots(self) -> int:
        """U_b: the in-batch part's slots (0 when it is not used)."""
        return self.in_batch.num_candidates() if self.num_in_batch > 0 else 0

    def process_batch(
        self, ids: torch.Tensor, presences: torch.Tensor, embeddings: torch.Tensor
    ) -> None:
        """The in-batch part keeps the batch's distinct valid items (see the in-batch sampler)."""
        if self.num_in_batch > 0:
            self.in_batch.process_batch(ids, presences, embeddings)

    def num_candidates(self) -> int:
        with_catalogue = self.catalogue_sampler.num_candidates() if self.num_catalogue else 0
        return self._num_batch_slots() + with_catalogue

    def candidate_ids(self) -> torch.Tensor:
        batch, catalogue = self._parts()
        parts = [self.in_batch.candidate_ids()] if batch else []
        if catalogue:
            parts.append(self.catalogue_sampler.candidate_ids())
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def candidate_table(self) -> torch.Tensor:
        batch, catalogue = self._parts()
        parts = [self.in_batch.candidate_table()] if batch else []
        if catalogue:
            parts.append(self.catalogue_sampler.candidate_table())
        if len(parts) == 1:
            return parts[0]
        return torch.cat([parts[0].to(parts[1].dtype), parts[1]])

    def make_lookup(self, num_draws: int) -> Lookup:
        """Slots below U_b from the batch's table, the others from the catalogue's lookup."""
        size = self._num_batch_slots()
        batch_lookup = self.in_batch.make_lookup(num_draws) if size else None
        catalogue_lookup = (
            self.catalogue_sampler.make_lookup(num_draws) if self.num_catalogue else None
        )

        def lookup(slots: torch.Tensor) -> torch.Tensor:
            if catalogue_lookup is None:
                return batch_lookup(slots)
            if batch_lookup is None:
                return catalogue_lookup(slots)
            flat = slots.reshape(-1)
            in_batch = flat < size
            where_batch = in_batch.nonzero().squeeze(1)
            where_catalogue = (~in_batch).nonzero().squeeze(1)
            from_batch = batch_lookup(flat.index_select(0, where_batch))  # [n_b, D]
            from_catalogue = catalogue_lookup(flat.index_select(0, where_catalogue) - size)
            out = from_catalogue.new_zeros(flat.shape[0], from_catalogue.shape[-1])
            out = out.index_put((where_batch,), from_batch.to(out.dtype))
            out = out.index_put((where_catalogue,), from_catalogue)
            return out.view(*slots.shape, out.shape[-1])

        return lookup

    def _sorted_candidates(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        batch, catalogue = self._parts()
        if batch and catalogue:
            return None  # every batch item is also in the catalogue part
        if batch:
            return self.in_batch._sorted_candidates()
        return self.catalogue_sampler._sorted_candidates()

    def draw_slots(
        self,
        num_positions: int,
        num_to_sample: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """[L, R] int64: columns 0..num_in_batch-1 in-batch slots (uniform over U_b), the other
        num_catalogue columns catalogue slots (+ U_b). R must be num_in_batch + num_catalogue."""
        if num_to_sample != self.num_to_sample:
            raise ValueError(
                f"MixedNegativesSampler draws num_in_batch + num_catalogue = {self.num_in_batch} + "
                f"{self.num_catalogue} negatives per position, but {num_to_sample} were asked for"
            )
        gen = generator if generator is not None else self.generator
        parts = []
        if self.num_in_batch:
            parts.append(self.in_batch.draw_slots(num_positions, self.num_in_batch, device, gen))
        if self.num_catalogue:
            slots = self.catalogue_sampler.draw_slots(
                num_positions, self.num_catalogue, device, gen
            )
            parts.append(slots + self._num_batch_slots())
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def candidate_log_q(self) -> torch.Tensor:
        """[U] log of the mixture q per slot (the same for an item's two slots; 0 where q = 0)."""
        total = float(self.num_to_sample)
        ids = self.candidate_ids()
        q = torch.zeros(ids.shape[0], dtype=torch.float64, device=ids.device)
        if self.num_in_batch:  # in-batch frequency of every slot's id (0 for ids not in it)
            batch_ids = self.in_batch.candidate_ids()  # sorted, distinct
            batch_q = self.in_batch.candidate_log_q().to(torch.float64).exp()
            index = torch.searchsorted(batch_ids, ids).clamp_(max=batch_ids.numel() - 1)
            found = batch_ids.index_select(0, index) == ids
            q += torch.where(found, batch_q.index_select(0, index), 0.0) * self.num_in_batch
        if self.num_catalogue:  # the catalogue part's probability of every slot's id
            q += self._catalogue_q(ids) * self.num_catalogue
        # A slot with q = 0 (a zero-count item of a popularity catalogue) is never drawn, so its
        # correction is never used; keep it finite, as the popularity sampler does.
        return torch.log(q / total).masked_fill_(q == 0, 0.0).to(torch.float32)

    def _catalogue_q(self, ids: torch.Tensor) -> torch.Tensor:
        """[U] float64 probability that one catalogue draw yields each id (0 outside it)."""
        sampler = self.catalogue_sampler
        sorted_ids, sorted_slots = sampler._sorted_candidates()
        if isinstance(sampler, PopularityNegativesSampler):
            per_slot = sampler.probabilities()
        else:
            per_slot = torch.full(
                (sorted_ids.numel(),), 1.0 / sorted_ids.numel(), dtype=torch.float64
            )
        per_slot = per_slot.to(ids.device)
        index = torch.searchsorted(sorted_ids, ids).clamp_(max=sorted_ids.numel() - 1)
        found = sorted_ids.index_select(0, index) == ids
        slot = sorted_slots.index_select(0, index)
        return torch.where(found, per_slot.index_select(0, slot), 0.0)

    def debug_str(self) -> str:
        kind = "uni" if self.catalogue == "uniform" else f"pop-a{self.exponent:g}"
        return (
            f"mixed-b{self.num_in_batch}-c{self.num_catalogue}-{kind}"
            f"{'-l2' if self._l2_norm else ''}"
        )
