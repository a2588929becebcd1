"""Fractal expansion of a sequence store (Belletti et al., 2019, "Scalable Realistic
Recommendation Datasets through Fractal Expansions"), streamed into a new store.

The source's user x item matrix R (M users, N catalogue items) is expanded m x n times:

1. R̂: R with each entry the rating divided by the source's largest rating (1 when the source
   has no ratings). Its k = min(m, n, M, N) leading singular triplets U [M, k], σ [k], V [N, k]
   come from a seeded randomized SVD (subspace iteration).
2. The reduced matrix (the paper's Algorithm 2): U and V are resized to m and n rows by
   averaging consecutive groups of rows (an area-average downsampling), X = Ũ diag(σ) Ṽᵀ
   [m, n], and P = (X - min X) / (max X - min X) maps it onto [0, 1] (P = 1 when X is
   constant). When k covers R's rank, X is exactly the mean of R̂ over each (user group,
   item group) block.
3. The randomized Kronecker product R ⊗ P: block (i, j) is a copy of R with its rows
   permuted by π_ij and its columns by σ_ij; each source interaction (u, v) becomes the
   interaction of user i·M + π_ij(u) with item j·N + σ_ij(v) with probability
   P[i, j] · element_sample_rate, and a whole block is kept with probability
   block_sample_rate. The copy keeps the source's timestamp and rating.

Every draw is a function of (seed, block, source position): the keep/drop of an interaction is
a counter-based hash, permutations come from a generator seeded by (seed, i, j). So the output
depends only on the seed and the settings, not on the chunking. Users are written in order of
their new id; a user's events (from the n blocks of its row) are merged by a stable sort on
timestamp, ties in (block column, source) order. Users left without events are not written.

Memory: the source's arrays, the current row block's permutations, one chunk of users
(about ``chunk_interactions`` gathered events) and the item counts; nothing grows with the
number of output interactions.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from generative_recommenders.data.store import SequenceStore, StoreWriter
from generative_recommenders.errors import UserInputError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Bytes on disk per output interaction: item id (8) + timestamp (8) + rating (4).
BYTES_PER_INTERACTION = 20
# Bytes per output user: offset (8) + user id (8).
BYTES_PER_USER = 16
# The reduced matrix is dense [m, n]; beyond this many blocks it stops being "small".
MAX_BLOCKS = 10_000_000
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class FractalSettings:
    """How to expand: multipliers, sampling rates, seed and the chunk size (events per chunk)."""

    num_row_multiplier: int
    num_col_multiplier: int
    element_sample_rate: float = 1.0
    block_sample_rate: float = 1.0
    seed: int = 0
    chunk_interactions: int = 1 << 22

    def validate(self) -> None:
        """UserInputError naming the flag unless every setting is in range."""
        for flag, value in (
            ("--num_row_multiplier", self.num_row_multiplier),
            ("--num_col_multiplier", self.num_col_multiplier),
        ):
            if value < 1:
                raise UserInputError(f"{flag}={value}: expected an integer >= 1")
        blocks = self.num_row_multiplier * self.num_col_multiplier
        if blocks > MAX_BLOCKS:
            raise UserInputError(
                f"--num_row_multiplier x --num_col_multiplier = {blocks:,}: expected at most "
                f"{MAX_BLOCKS:,} blocks"
            )
        for flag, rate in (
            ("--element_sample_rate", self.element_sample_rate),
            ("--block_sample_rate", self.block_sample_rate),
        ):
            if not (isinstance(rate, int | float) and 0.0 < rate <= 1.0):
                raise UserInputError(f"{flag}={rate}: expected a rate in (0, 1]")
        if self.seed < 0:
            raise UserInputError(f"--seed={self.seed}: expected an integer >= 0")
        if self.chunk_interactions < 1:
            raise UserInputError(f"chunk_interactions={self.chunk_interactions}: expected >= 1")


@dataclass
class SourceMatrix:
    """The source store as a normalized matrix over dense item codes.

    Attributes:
        offsets: [M + 1] int64 (the store's). codes: [T] int32 item code in 0..N-1 per event.
        catalogue: [N] int64 the store's item id of each code. values: [T] float32 R̂ entries.
    """

    offsets: np.ndarray
    codes: np.ndarray
    catalogue: np.ndarray
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.offsets.shape[0] - 1, self.catalogue.shape[0]

    @property
    def nnz(self) -> int:
        return int(self.codes.shape[0])


def source_matrix(store: SequenceStore) -> SourceMatrix:
    """R̂ of ``store``: rating / max rating (1 without ratings), items as dense codes."""
    catalogue = store.catalogue_item_ids()
    code_of = np.full(store.max_item_id + 1, -1, dtype=np.int64)
    code_of[catalogue] = np.arange(catalogue.shape[0])
    codes = code_of[store.item_ids].astype(np.int32)
    if store.has_ratings and store.num_interactions:
        ratings = np.asarray(store.ratings, dtype=np.float32)
        top = float(ratings.max())
        values = ratings / top if top > 0 else np.ones_like(ratings)
    else:
        values = np.ones(store.num_interactions, dtype=np.float32)
    return SourceMatrix(np.array(store.offsets, dtype=np.int64), codes, catalogue, values)


def _sparse(offsets: np.ndarray, codes: np.ndarray, values: np.ndarray, n: int) -> torch.Tensor:
    """[M, n] float64 sparse CSR tensor (duplicate entries are summed by the products)."""
    import torch  # here: plain preprocessing runs should not pay torch's import

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(np.asarray(offsets, dtype=np.int64)),
            torch.from_numpy(np.asarray(codes, dtype=np.int64)),
            torch.from_numpy(np.asarray(values, dtype=np.float64)),
            size=(offsets.shape[0] - 1, n),
            check_invariants=False,  # built from a validated store
        )


def truncated_svd(
    matrix: torch.Tensor, k: int, seed: int, oversample: int = 10, power_iters: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k leading singular triplets of a [M, N] (sparse) matrix: U [M, k], σ [k], V [N, k].

    Randomized subspace iteration (Halko, Martinsson and Tropp, 2011) from a Gaussian start
    seeded by ``seed``, re-orthonormalized after every product.
    """
    import torch

    rows, cols = matrix.shape
    q = min(k + oversample, rows, cols)
    omega = np.random.default_rng([seed, 0x5FD]).standard_normal((cols, q))
    mt = matrix.t().to_sparse_csr() if matrix.layout == torch.sparse_csr else matrix.t()
    y = torch.linalg.qr(matrix @ torch.from_numpy(omega)).Q  # [M, q]
    for _ in range(power_iters):
        z = torch.linalg.qr(mt @ y).Q  # [N, q]
        y = torch.linalg.qr(matrix @ z).Q
    b = (mt @ y).t()  # [q, N] = yᵀ A
    u_small, s, vh = torch.linalg.svd(b, full_matrices=False)
    u = y @ u_small
    return u[:, :k].numpy(), s[:k].numpy(), vh[:k].t().numpy()


def resize_rows(a: np.ndarray, rows: int) -> np.ndarray:
    """[R, k] -> [rows, k]: row g is the mean of a's rows floor(gR/rows) .. (at least one)."""
    total = a.shape[0]
    starts = (np.arange(rows, dtype=np.int64) * total) // rows
    ends = np.maximum((np.arange(1, rows + 1, dtype=np.int64) * total) // rows, starts + 1)
    sums = np.concatenate([np.zeros((1, a.shape[1])), np.cumsum(a, axis=0)])
    return (sums[ends] - sums[starts]) / (ends - starts)[:, None]


def reduced_matrix(u: np.ndarray, s: np.ndarray, v: np.ndarray, m: int, n: int) -> np.ndarray:
    """The paper's Algorithm 2: [m, n] float64 probabilities in [0, 1] from R̂'s SVD."""
    x = resize_rows(u, m) @ np.diag(s) @ resize_rows(v, n).T
    low, high = float(x.min()), float(x.max())
    # Relative tolerance: a constant X (e.g. R̂ all ones) has round-off differences only.
    if high - low <= 1e-9 * max(abs(high), abs(low), 1e-300):
        return np.ones((m, n))
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer on uint64 (wrapping arithmetic): a well-mixed hash."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _block_key(seed: int, block: int, stream: int) -> np.uint64:
    """A 64-bit key per (seed, block, stream), itself hashed so nearby blocks decorrelate."""
    mixed = (seed * 0x9E3779B97F4A7C15 + block * 0xD1B54A32D192ED03 + stream) & _MASK64
    return _splitmix64(np.array([mixed], dtype=np.uint64))[0]


def keep_draws(positions: np.ndarray, key: np.uint64, probability: float) -> np.ndarray:
    """[K] bool: source positions kept, each with ``probability``, as a hash of (key, position)."""
    if probability >= 1.0:
        return np.ones(positions.shape[0], dtype=bool)
    threshold = np.uint64(int(probability * (1 << 53)))
    hashed = _splitmix64(positions.astype(np.uint64) + key)
    return (hashed >> np.uint64(11)) < threshold


def kept_blocks(settings: FractalSettings) -> np.ndarray:
    """[m, n] bool: blocks kept by --block_sample_rate (a hash of (seed, block))."""
    m, n = settings.num_row_multiplier, settings.num_col_multiplier
    blocks = np.arange(m * n, dtype=np.uint64)
    keep = keep_draws(blocks, _block_key(settings.seed, 0, 1), settings.block_sample_rate)
    return keep.reshape(m, n)


def block_permutations(seed: int, i: int, j: int, rows: int, cols: int):
    """(π_ij [rows], σ_ij [cols]) int64: where source row u / item code v go in block (i, j)."""
    rng = np.random.default_rng([seed, i, j])
    return rng.permutation(rows), rng.permutation(cols)


@dataclass
class ExpansionPlan:
    """What the expansion will do, known before anything is written."""

    source: SourceMatrix
    settings: FractalSettings
    probabilities: np.ndarray  # [m, n] P
    blocks: np.ndarray  # [m, n] bool kept blocks
    singular_values: np.ndarray  # [k] σ of R̂

    @property
    def expected_interactions(self) -> float:
        p = self.probabilities * self.blocks * self.settings.element_sample_rate
        return float(p.sum()) * self.source.nnz

    @property
    def max_users(self) -> int:
        return self.settings.num_row_multiplier * self.source.shape[0]

    @property
    def num_item_ids(self) -> int:
        """max item id + 1 of the expansion's id space (ids 1 .. n·N)."""
        return self.settings.num_col_multiplier * self.source.shape[1] + 1

    def estimated_bytes(self) -> int:
        return int(
            self.expected_interactions * BYTES_PER_INTERACTION
            + self.max_users * BYTES_PER_USER
            + self.num_item_ids * 8
        )


def plan_expansion(store: SequenceStore, settings: FractalSettings) -> ExpansionPlan:
    """Validate, build R̂, its SVD and the reduced matrix (cheap next to the expansion)."""
    settings.validate()
    source = source_matrix(store)
    rows, cols = source.shape
    if source.nnz == 0:
        raise UserInputError(f"{store.path}/: the source store has no interactions")
    m, n = settings.num_row_multiplier, settings.num_col_multiplier
    k = min(m, n, rows, cols)
    matrix = _sparse(source.offsets, source.codes, source.values, cols)
    u, s, v = truncated_svd(matrix, k, settings.seed)
    return ExpansionPlan(source, settings, reduced_matrix(u, s, v, m, n), kept_blocks(settings), s)


def check_disk(plan: ExpansionPlan, data_dir: pathlib.Path) -> None:
    """UserInputError when the estimated output does not fit in the free space of data_dir."""
    probe = pathlib.Path(data_dir)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    # 5% for the Bernoulli spread and the file system, plus the small files.
    needed = int(plan.estimated_bytes() * 1.05) + (16 << 20)
    if needed > free:
        raise UserInputError(
            f"--data_dir={data_dir}: the expansion needs about {needed / 1e9:,.2f} GB "
            f"(~{plan.expected_interactions:,.0f} interactions x {BYTES_PER_INTERACTION} bytes), "
            f"only {free / 1e9:,.2f} GB are free"
        )


def _gather_users(offsets: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All event positions of ``users`` (in the given order) and each user's count."""
    starts = offsets[users]
    counts = offsets[users + 1] - starts
    total = int(counts.sum())
    # positions = start of the event's user + rank of the event within that user.
    firsts = np.zeros(counts.shape[0], dtype=np.int64)
    np.cumsum(counts[:-1], out=firsts[1:])
    positions = np.arange(total, dtype=np.int64) + np.repeat(starts - firsts, counts)
    return positions, counts


@dataclass
class _RowBlock:
    """The inverse row permutations and column permutations of one row block's kept blocks."""

    columns: list[int]  # the kept j
    inverse_rows: list[np.ndarray]  # per kept j: [M] source row of each new row
    column_maps: list[np.ndarray]  # per kept j: [N] new item id of each source code


def _row_block(plan: ExpansionPlan, i: int) -> _RowBlock:
    rows, cols = plan.source.shape
    settings = plan.settings
    out = _RowBlock([], [], [])
    for j in range(settings.num_col_multiplier):
        if not plan.blocks[i, j] or plan.probabilities[i, j] <= 0.0:
            continue
        pi, sigma = block_permutations(settings.seed, i, j, rows, cols)
        inverse = np.empty(rows, dtype=np.int64)
        inverse[pi] = np.arange(rows, dtype=np.int64)
        out.columns.append(j)
        out.inverse_rows.append(inverse)
        out.column_maps.append(j * cols + sigma + 1)
    return out


def expand_chunks(
    plan: ExpansionPlan, store: SequenceStore
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (user_ids [u], lengths [u], item_ids, ratings, timestamps [Σ lengths]) in user order.

    Users without events are skipped; every user appears in exactly one chunk.
    """
    rows, _ = plan.source.shape
    settings = plan.settings
    m, n = settings.num_row_multiplier, settings.num_col_multiplier
    offsets = plan.source.offsets
    mean_length = plan.source.nnz / max(rows, 1)
    rows_per_chunk = max(1, int(settings.chunk_interactions // max(1.0, n * mean_length)))
    timestamps = np.asarray(store.timestamps)
    ratings = np.asarray(store.ratings)
    codes = plan.source.codes
    t_min = int(timestamps.min())
    span = int(timestamps.max()) - t_min + 1
    for i in range(m):
        block = _row_block(plan, i)
        if not block.columns:
            continue
        keys = [_block_key(settings.seed, i * n + j, 0) for j in block.columns]
        probs = [plan.probabilities[i, j] * settings.element_sample_rate for j in block.columns]
        for r0 in range(0, rows, rows_per_chunk):
            r1 = min(rows, r0 + rows_per_chunk)
            parts_rows, parts_pos, parts_items = [], [], []
            for c in range(len(block.columns)):
                positions, counts = _gather_users(offsets, block.inverse_rows[c][r0:r1])
                keep = keep_draws(positions, keys[c], probs[c])
                new_rows = np.repeat(np.arange(r1 - r0, dtype=np.int64), counts)[keep]
                positions = positions[keep]
                parts_rows.append(new_rows)
                parts_pos.append(positions)
                parts_items.append(block.column_maps[c][codes[positions]])
            new_rows = np.concatenate(parts_rows)
            if new_rows.size == 0:
                continue
            positions = np.concatenate(parts_pos)
            times = timestamps[positions]
            # Stable: equal (row, time) keep block-column then source order.
            if (r1 - r0) * span < 2**62:
                order = np.argsort(new_rows * span + (times - t_min), kind="stable")
            else:
                order = np.lexsort((times, new_rows))
            new_rows = new_rows[order]
            lengths = np.bincount(new_rows, minlength=r1 - r0)
            present = np.flatnonzero(lengths)
            yield (
                (i * rows + r0 + present + 1).astype(np.int64),
                lengths[present],
                np.concatenate(parts_items)[order],
                ratings[positions[order]],
                times[order],
            )


def write_expansion(plan: ExpansionPlan, store: SequenceStore, writer: StoreWriter) -> float:
    """Stream every chunk into ``writer``; returns the seconds spent."""
    start = time.perf_counter()
    for chunk in expand_chunks(plan, store):
        writer.append(*chunk)
    return time.perf_counter() - start


def describe(plan: ExpansionPlan) -> dict:
    """Settings and the reduced matrix's summary, for meta.json."""
    s = plan.settings
    p = plan.probabilities
    return {
        "method": "fractal expansion (Belletti et al. 2019), randomized Kronecker product",
        "num_row_multiplier": s.num_row_multiplier,
        "num_col_multiplier": s.num_col_multiplier,
        "element_sample_rate": s.element_sample_rate,
        "block_sample_rate": s.block_sample_rate,
        "seed": s.seed,
        "source_users": plan.source.shape[0],
        "source_items": plan.source.shape[1],
        "source_interactions": plan.source.nnz,
        "blocks_kept": int(plan.blocks.sum()),
        "reduced_matrix_mean": float(p.mean()),
        "reduced_matrix_min": float(p.min()),
        "reduced_matrix_max": float(p.max()),
        "singular_values": [float(x) for x in plan.singular_values],
        "expected_interactions": plan.expected_interactions,
        "item_id_rule": "block (i, j), source item code c -> j * N + sigma_ij(c) + 1",
        "user_id_rule": "block (i, j), source row u -> i * M + pi_ij(u) + 1",
    }


def spectrum_of_store(store: SequenceStore, k: int, seed: int) -> np.ndarray:
    """[k'] leading singular values of a store's R̂ (k' = min(k, users, items))."""
    source = source_matrix(store)
    rows, cols = source.shape
    k = min(k, rows, cols)
    matrix = _sparse(source.offsets, source.codes, source.values, cols)
    return truncated_svd(matrix, k, seed, power_iters=2)[1]


def expected_spectrum(plan: ExpansionPlan, source_spectrum: np.ndarray, k: int) -> np.ndarray:
    """[k] leading values of σ(R̂) ⊗ σ(P · rates): the spectrum of the expected expansion."""
    rate = plan.settings.element_sample_rate
    p = plan.probabilities * plan.blocks * rate
    sp = np.linalg.svd(p, compute_uv=False)
    products = np.sort(np.outer(source_spectrum, sp).ravel())[::-1]
    return products[:k]


def log_binned_degrees(degrees: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(degree, fraction of rows with that degree) for degrees >= 1 (a log-log plot's points)."""
    degrees = np.asarray(degrees)
    degrees = degrees[degrees > 0]
    values, counts = np.unique(degrees, return_counts=True)
    return values, counts / max(1, degrees.size)
