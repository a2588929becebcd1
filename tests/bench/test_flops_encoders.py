"""FLOPs of an encoder of one's own: its forward_flops method, never a guess."""

from __future__ import annotations

import pytest
from torch import nn

from generative_recommenders.bench.flops import encoder_forward_flops
from tests.modeling.model_builders import build_hstu, build_sasrec


class _Counted(nn.Module):
    def forward_flops(self, lengths) -> float:
        return 10.0 * sum(lengths)


def test_an_encoder_reports_its_own_count_or_is_refused() -> None:
    assert encoder_forward_flops(_Counted(), [2, 3]) == 50.0
    with pytest.raises(ValueError, match="no FLOPs count for Module"):
        encoder_forward_flops(nn.Module(), [2, 3])
    # The built-in ones keep their formulas (and differ from each other).
    assert encoder_forward_flops(build_hstu(), [4]) > 0
    assert encoder_forward_flops(build_sasrec(), [4]) > 0
