"""Terms on activations and logits: classes, channels, neurons, DeepDream's
layer norm, feature inversion's match, and batch diversity.

Positions are settled here once: `channel(layer, c)` is the channel's spatial
mean; `neuron(layer, c)` with `y, x = None` is the centre unit of the map.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax.objectives._base import (
    Array, Objective, check_integer, check_layer, register, term)


def _in_range(value: Any, n: int, what: str, where: str) -> None:
  if checks.is_concrete(value):
    a = np.asarray(value)
    if a.size and (a.min() < 0 or a.max() >= n):
      raise ValueError(f"{what} {a.tolist()} out of range {where} (valid "
                       f"0..{n - 1}).")


def _check_channel(model, hw, static, args):
  static, args = check_layer(model, hw, static, args)
  shape = model.layer_shape(static[0], hw)
  _in_range(args["channel"], shape[-1], "channel",
            f"for layer {static[0]!r} with {shape[-1]} channels")
  return static, args


def _check_neuron(model, hw, static, args):
  static, args = _check_channel(model, hw, static, args)
  layer = static[0]
  shape = model.layer_shape(layer, hw)
  given = args["y"] is not None or args["x"] is not None
  if len(shape) != 3:
    if given:
      raise ValueError(f"layer {layer!r} is not spatial (shape {tuple(shape)}); "
                       "a neuron there takes no position (y, x): use "
                       "neuron(layer, channel) or channel(layer, channel).")
    return static, args
  for k, n in (("y", shape[0]), ("x", shape[1])):
    if args[k] is not None:
      _in_range(args[k], n, f"neuron position {k} =",
                f"for layer {layer!r} of spatial size {tuple(shape[:2])} at "
                f"input {hw[0]}x{hw[1]}")
  return static, args


def _check_class(model, hw, static, args):
  checks.check_classes(args["target"], model.num_classes, name="class index")
  return static, args


def _check_match(model, hw, static, args):
  static, args = check_layer(model, hw, static, args)
  shape = model.layer_shape(static[0], hw)
  target = args["target"]
  if tuple(target.shape[1:]) != tuple(shape):
    raise ValueError(f"feature target for {static[0]!r} has shape "
                     f"{tuple(target.shape)}; expected [N, {', '.join(map(str, shape))}] "
                     f"for input {hw[0]}x{hw[1]}.")
  return static, args


# ------------------------------------------------------------------ terms

def _per_image(index: Array, n: int) -> Array:
  return jnp.broadcast_to(jnp.asarray(index, jnp.int32), (n,))


def _pick(x: Array, index: Array) -> Array:
  """x[i, ..., index[i]] along the last axis, for x `[N, ..., C]`."""
  idx = _per_image(index, x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.take_along_axis(x, idx, axis=-1)[..., 0]


def _layer_taps(layer, *_):
  return (layer,)


@register("class_logit", taps=("logits",), check=_check_class)
def _class_logit(acts, target):
  return _pick(acts["logits"], target)


@register("class_prob", taps=("logits",), check=_check_class)
def _class_prob(acts, log, target):
  logp = jax.nn.log_softmax(acts["logits"], axis=-1)
  v = _pick(logp, target)
  return v if log else jnp.exp(v)


@register("channel", taps=_layer_taps, check=_check_channel)
def _channel(acts, layer, channel):
  a = _pick(acts[layer], channel)
  return a.reshape(a.shape[0], -1).mean(axis=1)


@register("neuron", taps=_layer_taps, check=_check_neuron)
def _neuron(acts, layer, channel, y, x):
  a = acts[layer]
  if a.ndim == 2:
    return _pick(a, channel)
  n, h, w = a.shape[:3]
  # The one place where a missing position is settled: the centre unit.
  y = h // 2 if y is None else y
  x = w // 2 if x is None else x
  rows = jnp.arange(n)
  return a[rows, _per_image(y, n), _per_image(x, n), _per_image(channel, n)]


@register("layer_l2", taps=_layer_taps, check=check_layer)
def _layer_l2(acts, layer):
  # Mean of a^2 / 2: its gradient w.r.t. the activation is the activation
  # itself (DeepDream, Mordvintsev et al. 2015), divided by the layer size.
  a = acts[layer]
  return 0.5 * jnp.mean(jnp.square(a).reshape(a.shape[0], -1), axis=1)


@register("feature_match", taps=_layer_taps, check=_check_match)
def _feature_match(acts, layer, target):
  # Mahendran & Vedaldi 2015, eq. (2): ||phi(x) - phi0||^2 / ||phi0||^2,
  # negated because objectives are maximized.
  a = acts[layer].reshape(acts[layer].shape[0], -1)
  t = target.reshape(target.shape[0], -1)
  return -jnp.sum(jnp.square(a - t), axis=1) / (jnp.sum(jnp.square(t), axis=1) + 1e-8)


@register("diversity", taps=_layer_taps, check=check_layer)
def _diversity(acts, layer):
  # Lucid's diversity: minus the mean cosine similarity between the Gram
  # matrices of the images of the batch (Mordvintsev et al. 2018, Distill).
  a = acts[layer]
  n = a.shape[0]
  flat = a.reshape(n, -1, a.shape[-1])
  gram = jnp.einsum("npc,npd->ncd", flat, flat).reshape(n, -1)
  gram = gram / (jnp.linalg.norm(gram, axis=1, keepdims=True) + 1e-8)
  sim = gram @ gram.T
  off = sim - jnp.diag(jnp.diag(sim))
  return -jnp.sum(off, axis=1) / max(n - 1, 1)


# --------------------------------------------------------------- factories

def class_logit(target) -> Objective:
  """Unnormalized class score (Simonyan et al. 2014). target: int or `[N]`."""
  check_integer(target, "class index")
  return term("class_logit", target=target)


def class_prob(target, log: bool = False) -> Objective:
  """Softmax probability (or log-probability) of `target` (int or `[N]`)."""
  check_integer(target, "class index")
  return term("class_prob", bool(log), target=target)


def channel(layer: str, index) -> Objective:
  """Mean activation of channel `index` (int or `[N]`) of `layer`: the
  spatial mean for conv layers, the unit itself for fully connected ones."""
  check_integer(index, f"channel index for {layer!r}")
  return term("channel", layer, channel=index)


def neuron(layer: str, index, y=None, x=None) -> Objective:
  """One unit: `layer[:, y, x, index]` (ints or `[N]`).

  `y, x = None` (the default) means the centre unit `(h // 2, w // 2)` of the
  layer's `h x w` map at the size of the images being scored; for the
  channel's spatial mean use `channel`. Fully connected layers take no
  position: `neuron("fc7", c)` is unit `c`.
  """
  check_integer(index, f"channel index for {layer!r}")
  for name, v in (("y", y), ("x", x)):
    if v is not None:
      check_integer(v, f"neuron position {name}")
  return term("neuron", layer, channel=index, y=y, x=x)


def layer_l2(layer: str) -> Objective:
  """Half the mean squared activation of `layer` (DeepDream)."""
  return term("layer_l2", layer)


def feature_match(layer: str, target: Array) -> Objective:
  """Minus the normalized squared distance to `target` `[N, ...]` (inversion)."""
  return term("feature_match", layer, target=jnp.asarray(target))


def diversity(layer: str) -> Objective:
  """Minus the mean Gram cosine similarity to the other images of the batch."""
  return term("diversity", layer)
