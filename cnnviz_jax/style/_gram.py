"""Gram matrices and the style and content terms (Gatys et al. 2015, 2016).

A texture is described by the Gram matrices of a network's feature maps: the
channel co-activations averaged over positions, blind to where things are.
Style transfer matches them while keeping one layer's features of the content
image. Both terms are registered objective terms, so they add, scale, stack
and sweep like any other `objectives.Objective`.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from cnnviz_jax import objectives

Array = jax.Array

# Keeps the relative error finite when a target Gram (or feature map) is all
# zeros, e.g. a dead layer of a randomly initialized network.
_EPS = 1e-8


def gram_matrix(features: Array) -> Array:
  """Gram matrices of feature maps: `F^T F / (H W)` per image.

  Args:
    features: float `[N, H, W, C]` activations.

  Returns:
    float `[N, C, C]`, symmetric positive semi-definite; `F` is the `[H*W, C]`
    matrix of one image, so the result does not depend on the spatial
    arrangement of the positions (any permutation of them gives the same).
  """
  if getattr(features, "ndim", None) != 4:
    raise ValueError("gram_matrix needs feature maps [N, H, W, C]; got shape "
                     f"{getattr(features, 'shape', type(features).__name__)}.")
  n, h, w, c = features.shape
  f = features.reshape(n, h * w, c)
  # HIGHEST: the default TPU/GPU matmul precision (bf16 passes) loses the small
  # differences between two Grams that the style loss is made of.
  return jnp.einsum("npc,npd->ncd", f, f,
                    precision=jax.lax.Precision.HIGHEST) / (h * w)


def _check_gram(model, image_hw, static, args):
  static, args = objectives.check_layer(model, image_hw, static, args)
  shape = model.layer_shape(static[0], image_hw)
  c = shape[-1]
  if len(shape) != 3 or tuple(args["target"].shape[-2:]) != (c, c):
    raise ValueError(f"Gram target for {static[0]!r} has shape "
                     f"{tuple(args['target'].shape)}; that layer needs a spatial "
                     f"map and a [N, {c}, {c}] target (its activation is "
                     f"{tuple(shape)} at input {image_hw[0]}x{image_hw[1]}).")
  return static, args


@objectives.register("gram_match", taps=lambda layer: (layer,), check=_check_gram)
def _gram_match(acts, layer, target):
  # Gatys et al. 2016, eq. (4), as a relative error ||G - A||^2 / ||A||^2 so
  # that layers and networks of any activation scale weigh alike; negated
  # because objectives are maximized.
  g = gram_matrix(acts[layer])
  t = jnp.broadcast_to(target, g.shape)
  err = jnp.sum(jnp.square(g - t), axis=(1, 2))
  return -err / (jnp.sum(jnp.square(t), axis=(1, 2)) + _EPS)


def gram_loss(layer: str, target: Array) -> objectives.Objective:
  """Minus the relative Gram error at `layer`: `-||G(x) - A||^2 / ||A||^2`.

  Args:
    layer: a canonical tap name of the network (e.g. "relu3_1").
    target: float `[C, C]`, `[1, C, C]` (shared by every image) or `[N, C, C]`
      target Gram matrices (`gram_matrix` of the style's features).

  Returns:
    an `Objective` (maximized: 0 at a perfect match).
  """
  target = jnp.asarray(target, jnp.float32)
  if target.ndim == 2:
    target = target[None]
  if target.ndim != 3 or target.shape[1] != target.shape[2]:
    raise ValueError(f"Gram target for {layer!r} must be [C, C] or [N, C, C]; "
                     f"got shape {tuple(target.shape)}.")
  return objectives.term("gram_match", layer, target=target)


def style_loss(layers: Sequence[str], targets: Sequence[Array],
               layer_weights: Sequence[float]) -> objectives.Objective:
  """`sum_l w_l gram_loss(layer_l, target_l)`: the style term of Gatys et
  al. 2016 eq. (5) with the per-layer weights `w_l`."""
  if not (len(layers) == len(targets) == len(layer_weights)) or not layers:
    raise ValueError(f"style_loss needs as many layers ({len(layers)}), targets "
                     f"({len(targets)}) and weights ({len(layer_weights)}), >= 1.")
  return sum((w * gram_loss(l, t)
              for l, t, w in zip(layers, targets, layer_weights)),
             start=objectives.Objective(()))


def content_loss(layer: str, target: Array) -> objectives.Objective:
  """Minus the relative feature error at `layer` (Gatys et al. 2016, eq. (1);
  Mahendran & Vedaldi 2015): `objectives.feature_match`."""
  return objectives.feature_match(layer, target)


def blend_grams(grams: Sequence[Array], weights: Sequence[float]) -> Array:
  """The weighted mean of several styles' Gram matrices (one target that
  blends them, as neural-style does); weights >= 0 with a positive sum, so
  weights (1, 0) give the first style exactly."""
  w = [float(x) for x in weights]
  total = sum(w)
  return sum((wi / total) * g for wi, g in zip(w, grams) if wi)
