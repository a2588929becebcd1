"""The dataset's own ids (what users type) <-> the store's int64 codes (what the model sees).

A store keeps MovieLens movie ids and integer user ids as they are; a ``csv`` store maps items
(always) and string user ids to ``1..n`` and saves ``item_id_mapping.csv`` /
``user_id_mapping.csv`` (columns ``original,<kind>_id``). An :class:`IdCodec` hides which case
applies: ``encode`` takes what a user typed (``"u7"``, ``"51"`` or ``51``) and ``decode`` gives the
dataset's own id back, an ``int`` when every original id is a canonical integer, else a ``str``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


def _canonical_int(text: str) -> int | None:
    """``"51"`` -> 51; ``"051"``, ``"5.0"``, ``"u5"`` -> None (they are not written as ints)."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if str(value) == text else None


class IdCodec:
    """Maps one kind of id (users or items) both ways.

    Args:
        codes: [M] int64, the codes that exist (e.g. catalogue item ids, store user ids).
        mapping: the store's mapping table (columns ``original``, ``code_column``) or None when
            the codes are the dataset's own integer ids.
        code_column: ``"user_id"`` or ``"item_id"``.
    """

    def __init__(self, codes: np.ndarray, mapping: pd.DataFrame | None, code_column: str) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)
        self._known = set(self.codes.tolist())
        self._to_code: dict[str, int] = {}
        self._to_original: dict[int, int | str] = {}
        self.mapped = mapping is not None
        if mapping is not None:
            originals = [str(v) for v in mapping["original"].tolist()]
            mapped_codes = mapping[code_column].astype(np.int64).tolist()
            as_ints = [_canonical_int(o) for o in originals]
            all_ints = all(v is not None for v in as_ints)
            for original, as_int, code in zip(originals, as_ints, mapped_codes, strict=True):
                self._to_code[original] = code
                self._to_original[code] = as_int if all_ints else original

    def encode_one(self, value: object) -> int | None:
        """The code of one id as typed by a user, or None when the dataset has no such id."""
        text = str(value).strip()
        if self.mapped:
            code = self._to_code.get(text)
        else:
            code = _canonical_int(text)
        return code if code is not None and code in self._known else None

    def encode(self, values: Iterable[object]) -> tuple[np.ndarray, list[object]]:
        """Ids -> (codes [M] int64 of the known ones, in order; the unknown ids, in order)."""
        codes, unknown = [], []
        for value in values:
            code = self.encode_one(value)
            if code is None:
                unknown.append(value)
            else:
                codes.append(code)
        return np.asarray(codes, dtype=np.int64), unknown

    def decode(self, codes: Sequence[int] | np.ndarray) -> list[int | str]:
        """Codes -> the dataset's own ids (int where the dataset's ids are integers)."""
        if not self.mapped:
            return [int(c) for c in np.asarray(codes).tolist()]
        return [self._to_original[int(c)] for c in np.asarray(codes).tolist()]

    def originals(self) -> list[int | str]:
        """The dataset's own id of every code in ``codes``, aligned with it."""
        return self.decode(self.codes)
