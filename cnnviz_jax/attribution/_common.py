"""Shared machinery of the attribution methods: targets, scores, chunking,
and the ReLU backward rules.

`targets` is either an int array `[N]` of classes (the score is the pre-softmax
logit, Simonyan et al. 2014 section 3) or a neuron spec `(layer, channel)` (the
channel's spatial mean for conv layers, the unit for fully connected ones) or
`(layer, channel, y, x)` (one unit of a conv layer).

Methods that expand one image into many (IG steps, SmoothGrad samples, occlusion
positions) run those copies in chunks: a Python loop over one jitted function of
a chunk. XLA:CPU ran convolutions inside `lax.scan`/`lax.map` about 1.6-1.9x
slower than as separate calls, so the loop is not a scan; under an outer `jit`
it unrolls. Results do not depend on the chunk size beyond float rounding.
"""

import functools
from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax.models import core

Array = jax.Array

# Pixels per network call when a chunk size is not given: 2**20 pixels is 20
# images at 224x224 (about 1.2 GB of VGG16 activations for the backward pass)
# or 1024 CIFAR images; it bounds memory for any image size.
_PIXELS_PER_CALL = 2 ** 20


class Neuron(NamedTuple):
  """An intermediate unit as a target.

  Attributes:
    layer: canonical layer name (`relu4_3`) or torchvision path.
    channel: channel (conv) or unit (fully connected) index.
    y, x: spatial position in the layer's map; None means the channel's
      spatial mean (conv layers only).
  """
  layer: str
  channel: int
  y: Optional[int] = None
  x: Optional[int] = None


Targets = Union[Array, np.ndarray, Sequence[int], tuple]


# --------------------------------------------------------------------------
# ReLUs with modified backward passes, swapped into the model via `relu=`.

@jax.custom_vjp
def guided_relu(x: Array) -> Array:
  """ReLU whose backward pass keeps only positive gradients at positive inputs
  (guided backpropagation, Springenberg et al. 2015, figure 1)."""
  return jax.nn.relu(x)


def _guided_fwd(x):
  return jax.nn.relu(x), x


def _guided_bwd(x, g):
  return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


@jax.custom_vjp
def deconv_relu(x: Array) -> Array:
  """ReLU whose backward pass is a ReLU of the gradient, ignoring the forward
  input (the deconvnet of Zeiler & Fergus 2014, as in Springenberg et al.)."""
  return jax.nn.relu(x)


def _deconv_fwd(x):
  return jax.nn.relu(x), None


def _deconv_bwd(_, g):
  return (jax.nn.relu(g),)


deconv_relu.defvjp(_deconv_fwd, _deconv_bwd)

RULES = {"vanilla": jax.nn.relu, "guided": guided_relu, "deconvnet": deconv_relu}


# --------------------------------------------------------------------------
# Input checks and target parsing.

def _check_images(model, images) -> None:
  checks.check_images(images, min_size=model.min_size)


def _parse_targets(model, images, targets):
  """-> (classes int array [N] or None, Neuron with canonical layer or None)."""
  n, h, w = images.shape[:3]
  if isinstance(targets, Neuron) or (
      isinstance(targets, (tuple, list)) and targets and isinstance(targets[0], str)):
    if not 2 <= len(targets) <= 4 or len(targets) == 3:
      raise ValueError(
          "a neuron target is (layer, channel) or (layer, channel, y, x); got "
          f"{targets!r}.")
    layer = model.resolve(targets[0])
    neuron = Neuron(layer, *[int(v) for v in targets[1:]])
    shape = _layer_shape(model.layers, (h, w), layer)
    if not 0 <= neuron.channel < shape[-1]:
      raise ValueError(f"channel {neuron.channel} out of range for layer "
                       f"{layer} with {shape[-1]} channels (shape {shape}).")
    if neuron.y is not None:
      if len(shape) != 3:
        raise ValueError(f"layer {layer} is not spatial (shape {shape}); use "
                         "(layer, channel).")
      if not (0 <= neuron.y < shape[0] and 0 <= neuron.x < shape[1]):
        raise ValueError(f"position ({neuron.y}, {neuron.x}) out of range for "
                         f"layer {layer} of spatial size {shape[:2]}.")
    return None, neuron
  if isinstance(targets, (int, np.integer)):
    raise ValueError("targets must be an int array [N] with one class per image"
                     f" (got the scalar {targets}); use np.full(N, class).")
  if not hasattr(targets, "shape"):
    targets = np.asarray(targets)
  if tuple(targets.shape) != (n,):
    raise ValueError(f"targets must be an int array [N] = [{n}] of class "
                     f"indices, or a neuron spec (layer, channel[, y, x]); got"
                     f" shape {tuple(targets.shape)}.")
  if not checks.is_concrete(targets):
    if not jnp.issubdtype(targets.dtype, jnp.integer):
      raise ValueError(f"targets must be integer class indices; got dtype "
                       f"{targets.dtype}.")
    return targets, None
  checks.check_classes(targets, model.num_classes)
  return jnp.asarray(targets, jnp.int32), None


@functools.lru_cache(maxsize=512)
def _layer_shape(layers: tuple, hw: tuple, layer: str) -> tuple:
  """`Model.layer_shape` cached on the architecture (it traces the network)."""
  k = [l.name for l in layers].index(layer) + 1
  net = core.SequentialNet(layers[:k])

  def f(x):
    return net.apply(net.init(jax.random.PRNGKey(0), x), x)[0]
  return tuple(jax.eval_shape(f, jax.ShapeDtypeStruct((1, *hw, 3),
                                                      jnp.float32)).shape[1:])


def _check_layer(model, layer: str, images) -> str:
  layer = model.resolve(layer)
  if len(_layer_shape(model.layers, tuple(images.shape[1:3]), layer)) != 3:
    raise ValueError(f"layer {layer} of {model.name} is not spatial; Grad-CAM "
                     "needs a conv-stage layer ([h, w, C] activations).")
  return layer


# --------------------------------------------------------------------------
# The network split at a layer, and the target score.

def _run(model, params, x, lo: int, hi: int, relu) -> Array:
  """Layers `lo..hi-1` of the model on (normalized) input or activation `x`."""
  if lo >= hi:
    return x
  return core.SequentialNet(model.layers[lo:hi]).apply(
      {"params": params}, x, relu=relu)[0]


def _score_from(model, params, x, start: int, classes, neuron, relu) -> Array:
  """Per-image target score `[N]` from the output `x` of layer `start - 1`."""
  if neuron is None:
    logits = _run(model, params, x, start, len(model.layers), relu)
    return jnp.take_along_axis(logits, classes[:, None], axis=1)[:, 0]
  act = _run(model, params, x, start, model.layer_index(neuron.layer) + 1, relu)
  if act.ndim == 2:
    return act[:, neuron.channel]
  if neuron.y is None:
    return act[..., neuron.channel].mean(axis=(1, 2))
  return act[:, neuron.y, neuron.x, neuron.channel]


def _score(model, params, images, classes, neuron, relu) -> Array:
  return _score_from(model, params, model.normalize(images), 0, classes,
                     neuron, relu)


def _tile(classes, copies: int):
  return None if classes is None else jnp.tile(classes, copies)


@functools.partial(jax.jit, static_argnames=("neuron", "rule"))
def _grad(model, images, classes, neuron, rule):
  """(scores [M], d score / d images [M, H, W, 3])."""
  scores, vjp = jax.vjp(
      lambda x: _score(model, model.params, x, classes, neuron, RULES[rule]),
      images)
  return scores, vjp(jnp.ones_like(scores))[0]


def _chunk_size(chunk_size, total: int, images) -> int:
  if chunk_size is None:
    n, h, w = images.shape[:3]
    chunk_size = max(1, _PIXELS_PER_CALL // (n * h * w))
  if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive int; got {chunk_size!r}.")
  return min(int(chunk_size), total)


def _chunks(total: int, size: int):
  return [(lo, min(lo + size, total)) for lo in range(0, total, size)]


def target_scores(model, images: Array, targets: Targets, *,
                  probabilities: bool = False, params=None) -> Array:
  """The score that attributions explain, per image.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec (see module docstring).
    probabilities: class targets only: softmax probability instead of logit.
    params: parameters to use instead of `model.params`.

  Returns:
    float32 `[N]`.
  """
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  return _scores(model.replace(params=model.params if params is None else params),
                 images, classes, neuron, probabilities)


@functools.partial(jax.jit, static_argnames=("neuron", "probabilities"))
def _scores(model, images, classes, neuron, probabilities):
  if neuron is None and probabilities:
    logits = _run(model, model.params, model.normalize(images), 0,
                  len(model.layers), jax.nn.relu)
    return jnp.take_along_axis(jax.nn.softmax(logits), classes[:, None], 1)[:, 0]
  return _score(model, model.params, images, classes, neuron, jax.nn.relu)


