"""Maps of a feature space: PCA, t-SNE, and snapping 2-D points to a grid
(the lecture's t-SNE grid of CIFAR/ImageNet images, after Karpathy's
"t-SNE visualization of CNN codes")."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize


class PCA(NamedTuple):
  """A principal component analysis.

  Attributes:
    coords: float32 `[N, dims]` the data in the principal axes.
    components: float32 `[dims, D]` unit principal axes, by variance.
    mean: float32 `[D]`.
    explained_variance: float32 `[dims]` variance along each axis (N - 1
      denominator).
  """
  coords: np.ndarray
  components: np.ndarray
  mean: np.ndarray
  explained_variance: np.ndarray


def _check_matrix(x, name: str = "x") -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"{name} must be [N, D] with N >= 2 rows; got shape {x.shape}.")
  if not np.isfinite(x).all():
    raise ValueError(f"{name} contains NaN or infinite values.")
  return x


def pca(x, dims: int) -> PCA:
  """Principal components by an SVD of the centred data (one jitted call).

  Signs are fixed as scikit-learn fixes them (`svd_flip`): each axis's
  largest-magnitude coefficient is positive, so results are deterministic.

  Args:
    x: `[N, D]` data.
    dims: components kept, 1..min(N, D).
  """
  x = _check_matrix(x)
  if not isinstance(dims, (int, np.integer)) or not 1 <= dims <= min(x.shape):
    raise ValueError(f"dims must be an int in 1..{min(x.shape)} (min(N, D)); "
                     f"got {dims!r}.")
  mean, u, s, vt = _svd(jnp.asarray(x))
  u, s, vt = u[:, :dims], s[:dims], vt[:dims]
  big = np.argmax(np.abs(np.asarray(vt)), axis=1)
  signs = np.sign(np.asarray(vt)[np.arange(dims), big])
  vt = np.asarray(vt) * signs[:, None]
  coords = np.asarray(u) * (np.asarray(s) * signs)[None, :]
  return PCA(coords.astype(np.float32), vt.astype(np.float32),
             np.asarray(mean, np.float32),
             (np.asarray(s) ** 2 / (len(x) - 1)).astype(np.float32))


@jax.jit
def _svd(x):
  mean = x.mean(axis=0)
  u, s, vt = jnp.linalg.svd(x - mean, full_matrices=False)
  return mean, u, s, vt


def tsne(x, dims: int = 2, *, key: jax.Array, perplexity: float = 30.0,
         pca_dims: int = 50, max_iter: int = 1000) -> np.ndarray:
  """t-SNE (van der Maaten and Hinton 2008) with scikit-learn's Barnes-Hut.

  The data are first reduced to `pca_dims` principal components, the usual
  preprocessing (van der Maaten's reference code does the same) that makes
  the neighbour search cheap for wide features.

  Args:
    x: `[N, D]` features.
    dims: output dimensions (2 or 3 use Barnes-Hut, more the exact method).
    key: PRNG key; the optimization's seed is drawn from it.
    perplexity: effective neighbour count, < N.
    pca_dims: PCA dimensions first (0: none).
    max_iter: optimization steps (>= 250).

  Returns:
    float32 `[N, dims]`.
  """
  from sklearn.manifold import TSNE  # scikit-learn imports slowly: only here
  x = _check_matrix(x)
  if not 0 < perplexity < len(x):
    raise ValueError(f"perplexity must be in (0, N={len(x)}); got {perplexity}.")
  if pca_dims and x.shape[1] > pca_dims and len(x) > pca_dims:
    x = pca(x, pca_dims).coords
  seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
  return TSNE(n_components=dims, perplexity=perplexity, init="pca",
              learning_rate="auto", max_iter=max_iter, random_state=seed,
              method="barnes_hut" if dims <= 3 else "exact").fit_transform(
                  x).astype(np.float32)


def grid_layout(coords, rows: int, cols: int) -> np.ndarray:
  """Snaps 2-D points to a full `rows x cols` grid, each point at most once.

  Points and cell centres are both scaled to the unit square; the assignment
  minimizing the total squared distance is exact (`linear_sum_assignment`).
  With more points than cells, the points left out are those that fit worst.

  Args:
    coords: `[N, 2]` points (e.g. a t-SNE map), N >= rows * cols.
    rows, cols: grid size.

  Returns:
    int `[rows, cols]`: the index of the point in each cell, all distinct.

  Raises:
    ValueError: fewer points than cells (the grid could not be filled).
  """
  coords = np.asarray(coords, np.float64)
  if coords.ndim != 2 or coords.shape[1] != 2:
    raise ValueError(f"coords must be [N, 2]; got shape {coords.shape}.")
  if rows < 1 or cols < 1 or len(coords) < rows * cols:
    raise ValueError(f"a {rows}x{cols} grid needs at least {rows * cols} points "
                     f"and rows, cols >= 1; got {len(coords)} points.")
  lo, span = coords.min(0), np.ptp(coords, 0)
  unit = (coords - lo) / np.where(span > 0, span, 1.0)
  gy, gx = np.meshgrid((np.arange(rows) + 0.5) / rows,
                       (np.arange(cols) + 0.5) / cols, indexing="ij")
  cells = np.stack([gx.ravel(), gy.ravel()], 1)   # x -> columns, y -> rows
  cost = ((cells[:, None, :] - unit[None, :, :]) ** 2).sum(-1)  # [cells, N]
  cell_idx, point = scipy.optimize.linear_sum_assignment(cost)
  out = np.empty(rows * cols, np.int64)
  out[cell_idx] = point
  return out.reshape(rows, cols)
