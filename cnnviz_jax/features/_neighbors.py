"""Exact k-nearest neighbours, chunked so that any sizes fit in memory.

The database streams through in chunks of `chunk_size` rows (host -> device
once each); for every block of `query_chunk_size` queries a jitted step
computes the `[queries, chunk]` distances and merges them into the running
`[Q, k]` best with `lax.top_k`. Peak memory is one distance block
(1,024 x 4,096 float32 = 16 MB by default), so 10,000 queries against 50,000
images never hold the 2 GB full matrix.
"""

import functools
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("l2", "cosine")


def _prepare(x: jax.Array, metric: str) -> tuple[jax.Array, jax.Array]:
  """float32 rows, and their squared norms (l2) or unit rows (cosine)."""
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=1)
  if metric == "cosine":
    x = x / jnp.maximum(jnp.sqrt(sq), 1e-12)[:, None]
  return x, sq


@functools.partial(jax.jit, static_argnames=("k", "metric"))
def _step(best_d, best_i, queries, db, start, valid, *, k, metric):
  """Merges the distances to `db[:valid]` (rows `start + i`) into the best."""
  q, q_sq = _prepare(queries, metric)
  d, d_sq = _prepare(db, metric)
  # HIGHEST: the |q|^2 - 2 q.d + |d|^2 expansion loses digits in TF32 on GPUs.
  dots = jnp.matmul(q, d.T, precision=jax.lax.Precision.HIGHEST)
  if metric == "l2":
    dist = q_sq[:, None] - 2.0 * dots + d_sq[None, :]
  else:
    dist = 1.0 - dots
  dist = jnp.where(jnp.arange(db.shape[0])[None, :] < valid, dist, jnp.inf)
  neg, idx = jax.lax.top_k(-dist, min(k, db.shape[0]))
  # Running best first: for equal distances the lower database index wins.
  neg_all = jnp.concatenate([-best_d, neg], 1)
  idx_all = jnp.concatenate([best_i, (start + idx).astype(jnp.int32)], 1)
  neg_best, sel = jax.lax.top_k(neg_all, k)
  return -neg_best, jnp.take_along_axis(idx_all, sel, 1)


def _as_matrix(x, name: str) -> np.ndarray:
  if not hasattr(x, "shape"):
    x = np.asarray(x)
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"{name} must be a non-empty [N, D] array of feature "
                     f"vectors; got shape {tuple(x.shape)} (flatten images "
                     "with x.reshape(len(x), -1)).")
  return x


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  if len(x) == rows:
    return x
  return np.concatenate([x, np.zeros((rows - len(x), x.shape[1]), x.dtype)])


def nearest_neighbors(queries, database, *, k: int, metric: str = "l2",
                      chunk_size: int = 4096,
                      query_chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """The `k` nearest database rows of every query (exact, brute force).

  Args:
    queries: `[Q, D]` feature vectors (any real or uint8 dtype; float32
      inside).
    database: `[N, D]` feature vectors (host or device array).
    k: neighbours per query, 1..N.
    metric: "l2" (Euclidean distance) or "cosine" (1 - cosine similarity).
    chunk_size: database rows per step.
    query_chunk_size: queries per step.

  Returns:
    `(distances float32 [Q, k], indices int32 [Q, k])`, nearest first; equal
    distances keep the lower database index (a stable sort). The result is the
    same for any chunk sizes.

  Raises:
    ValueError: bad shapes, `k` out of 1..N, an unknown metric.
  """
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; accepted: {', '.join(METRICS)}.")
  queries = _as_matrix(queries, "queries")
  database = _as_matrix(database, "database")
  if queries.shape[1] != database.shape[1]:
    raise ValueError(f"queries have {queries.shape[1]} dimensions, the database "
                     f"{database.shape[1]}.")
  n = database.shape[0]
  if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
    raise ValueError(f"k must be an int in 1..{n} (the database size); got {k!r}.")
  for v, nm in ((chunk_size, "chunk_size"), (query_chunk_size, "query_chunk_size")):
    if not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"{nm} must be a positive int; got {v!r}.")
  chunk, qchunk = min(chunk_size, n), min(query_chunk_size, len(queries))
  qblocks = [jnp.asarray(_pad_rows(np.asarray(queries[i:i + qchunk]), qchunk))
             for i in range(0, len(queries), qchunk)]
  best = [(jnp.full((qchunk, k), jnp.inf, jnp.float32),
           jnp.full((qchunk, k), -1, jnp.int32)) for _ in qblocks]
  for start in range(0, n, chunk):
    part = np.asarray(database[start:start + chunk])
    db = jnp.asarray(_pad_rows(part, chunk))
    for b, q in enumerate(qblocks):
      best[b] = _step(*best[b], q, db, start, len(part), k=k, metric=metric)
    logging.log_every_n_seconds(
        logging.INFO, "nearest_neighbors: %d/%d database rows", 10,
        min(start + chunk, n), n)
  dist = np.concatenate([np.asarray(d) for d, _ in best])[:len(queries)]
  idx = np.concatenate([np.asarray(i) for _, i in best])[:len(queries)]
  if metric == "l2":
    dist = np.sqrt(np.maximum(dist, 0.0))
  return dist.astype(np.float32), idx


def precision_at_k(indices, database_labels: Sequence[int],
                   query_labels: Sequence[int]) -> float:
  """Fraction of neighbours sharing their query's label.

  Args:
    indices: int `[Q, k]` neighbour indices into the database.
    database_labels: int `[N]`.
    query_labels: int `[Q]`.

  Returns:
    mean over queries and neighbours of `labels[neighbour] == label[query]`.
  """
  indices = np.asarray(indices)
  db, q = np.asarray(database_labels), np.asarray(query_labels)
  if indices.ndim != 2 or len(indices) != len(q):
    raise ValueError(f"indices must be [Q, k] with Q = {len(q)} queries; got "
                     f"shape {indices.shape}.")
  return float(np.mean(db[indices] == q[:, None]))
