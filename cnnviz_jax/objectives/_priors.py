"""Image priors as objectives on the `"input"` tap, to be subtracted:

    obj = objectives.class_logit(3) - 1e-3 * objectives.l2() - 0.1 * objectives.tv(2.0)

Each returns a per-image penalty `[N]` (a mean over pixels, so that weights do
not depend on the image size) of the image `x` in [0, 1] measured from
mid-gray 0.5, the counterpart of zero for a mean-subtracted image.

Every number (the weights, TV's exponent beta) is a traced leaf of the
objective, so a sweep can vary it.
"""

import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks

from cnnviz_jax.objectives import _base as objectives
from cnnviz_jax.objectives._base import Objective

# Mid-gray: the pixel value a mean-subtracted image has at zero.
CENTER = 0.5


def _flat(x):
  return x.reshape(x.shape[0], -1)


@objectives.register("l2", taps=("input",))
def _l2(acts):
  return jnp.mean(jnp.square(_flat(acts["input"] - CENTER)), axis=1)


@objectives.register("l1", taps=("input",))
def _l1(acts):
  return jnp.mean(jnp.abs(_flat(acts["input"] - CENTER)), axis=1)


@objectives.register("tv", taps=("input",))
def _tv(acts, beta):
  # Mahendran & Vedaldi 2015, eq. (5): sum over pixels of
  # ((x[i, j+1] - x[i, j])^2 + (x[i+1, j] - x[i, j])^2)^(beta / 2).
  x = acts["input"]
  dx = x[:, :-1, 1:] - x[:, :-1, :-1]
  dy = x[:, 1:, :-1] - x[:, :-1, :-1]
  sq = jnp.square(dx) + jnp.square(dy)
  # A tiny floor keeps the gradient finite at zero for beta < 2.
  return jnp.mean(_flat(jnp.power(sq + 1e-8, beta / 2.0)), axis=1)


def l2() -> Objective:
  """Mean squared deviation from mid-gray (Simonyan et al. 2014)."""
  return objectives.term("l2")


def l1() -> Objective:
  """Mean absolute deviation from mid-gray (sparsity prior)."""
  return objectives.term("l1")


def tv(beta=2.0) -> Objective:
  """Total variation with exponent `beta` >= 1 (Mahendran & Vedaldi 2015).

  `beta` is a float or an array (a traced leaf of the objective: a sweep may
  vary it, and `jax.vmap` may map over it).
  """
  if checks.is_concrete(beta):
    b = np.asarray(beta)
    if b.dtype.kind not in "iuf" or not np.all(b >= 1.0):
      raise ValueError(f"tv exponent beta must be >= 1; got {beta!r}.")
    beta = float(b) if b.ndim == 0 else jnp.asarray(b, jnp.float32)
  return objectives.term("tv", beta=beta)

