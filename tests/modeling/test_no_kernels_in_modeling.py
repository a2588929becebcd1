"""modeling/ reads as the math: device and kernel choices live in ops/ (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

MODELING = Path(__file__).resolve().parents[2] / "generative_recommenders" / "modeling"
FORBIDDEN = {
    "a device-type branch": re.compile(r"device\.type|\.is_cuda\b|device_type\s*=|\.is_cpu\b"),
    "a view's base tensor": re.compile(r"\._base\b"),
    "storage offsets": re.compile(r"storage_offset"),
    "isinstance dispatch on a similarity class": re.compile(r"isinstance\([^)]*Similarity"),
    "a custom autograd function": re.compile(r"autograd\.Function|torch\.autograd\.function"),
}


def _violations() -> list[str]:
    found = []
    for path in sorted(MODELING.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(MODELING)}:{number}: {what}: {line.strip()}")
    return found


def test_modeling_has_no_device_branches_views_internals_or_autograd_functions():
    assert _violations() == []


def test_the_patterns_catch_what_they_name():
    """Each pattern matches the code it forbids (so the check above can fail)."""
    samples = {
        "a device-type branch": 'if x.device.type != "cpu":',
        "a view's base tensor": "base = x._base",
        "storage offsets": "x.storage_offset()",
        "isinstance dispatch on a similarity class": "isinstance(sim, DotProductSimilarity)",
        "a custom autograd function": "class _F(torch.autograd.Function):",
    }
    for what, sample in samples.items():
        assert FORBIDDEN[what].search(sample), what
