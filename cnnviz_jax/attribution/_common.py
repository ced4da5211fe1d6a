"""Shared machinery of the attribution methods: targets, scores, chunking,
fills and the ReLU backward rules.

What an attribution explains is an `objectives.Objective`, evaluated on the
model's taps. `targets` is one, or a shorthand for one:

- an int array `[N]` of classes: `objectives.class_logit(targets)`, the
  pre-softmax logit (Simonyan et al. 2014 section 3); occlusion and the
  faithfulness curves use `objectives.class_prob(targets)` when
  `probabilities=True`;
- `(layer, channel)`: `objectives.channel(layer, channel)`, the channel's
  spatial mean for conv layers, the unit for fully connected ones;
- `(layer, channel, y, x)`: `objectives.neuron(layer, channel, y, x)`, one
  unit of a conv layer;
- an `Objective` (per-image arguments `[N]`), scored as it is.

Methods that expand one image into many (IG steps, SmoothGrad samples, occlusion
positions) run those copies in chunks of one length (`cnnviz_jax._chunks`): a
Python loop over one jitted function of a chunk, compiled once. XLA:CPU ran
convolutions inside `lax.scan`/`lax.map` about 1.6-1.9x slower than as separate
calls, so the loop is not a scan; under an outer `jit` it unrolls. Results do not depend on the chunk size beyond float rounding.
"""

import functools
from typing import Any, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax import image
from cnnviz_jax import objectives

Array = jax.Array

# Pixels per network call when a chunk size is not given: 2**20 pixels is 20
# images at 224x224 (about 1.2 GB of VGG16 activations for the backward pass)
# or 1024 CIFAR images; it bounds memory for any image size.
_PIXELS_PER_CALL = 2 ** 20


Targets = Union[Array, np.ndarray, Sequence[int], tuple, objectives.Objective]


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
# Input checks and targets.

def _check_images(model, images) -> None:
  checks.check_images(images, min_size=model.min_size)


def _check_count(value: Any, name: str, minimum: int = 1) -> int:
  """A Python int >= `minimum` (bools refused: True is not a count)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
  return int(value)


def _check_rule(rule: str) -> None:
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}.")


def target_objective(model, images: Array, targets: Targets, *,
                     probabilities: bool = False) -> objectives.Objective:
  """The objective an attribution of `targets` explains, resolved for `model`
  at the size of `images` (canonical layer names; indices checked).

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` (only the shape is used).
    targets: int `[N]` classes, `(layer, channel)`, `(layer, channel, y, x)`
      or an `Objective` (see the module docstring).
    probabilities: class targets: `class_prob` instead of `class_logit`.

  Returns:
    a resolved `Objective` whose value is `[N]`.
  """
  n, h, w = images.shape[:3]
  if isinstance(targets, objectives.Objective):
    obj = targets
  elif isinstance(targets, (tuple, list)) and targets and isinstance(targets[0], str):
    if len(targets) == 2:
      obj = objectives.channel(*targets)
    elif len(targets) == 4:
      obj = objectives.neuron(*targets)
    else:
      raise ValueError(
          "a neuron target is (layer, channel) or (layer, channel, y, x); got "
          f"{targets!r}.")
  else:
    if isinstance(targets, (int, np.integer)):
      raise ValueError("targets must be an int array [N] with one class per "
                       f"image (got the scalar {targets}); use np.full(N, class).")
    if not hasattr(targets, "shape"):
      targets = np.asarray(targets)
    if tuple(targets.shape) != (n,):
      raise ValueError(f"targets must be an int array [N] = [{n}] of class "
                       "indices, a neuron spec (layer, channel[, y, x]) or an "
                       f"Objective; got shape {tuple(targets.shape)}.")
    objectives.check_integer(targets, "targets (class indices)")
    if checks.is_concrete(targets):
      targets = jnp.asarray(targets, jnp.int32)
    obj = (objectives.class_prob(targets) if probabilities
           else objectives.class_logit(targets))
  obj = objectives.resolve(obj, model, (h, w))
  _check_per_image(obj, n)
  return obj


def _check_per_image(obj, n: int) -> None:
  """Per-image arguments must have a leading axis N (or be scalars)."""
  for t in obj.terms:
    for name, v in t.args.items():
      shape = getattr(v, "shape", None) or ()
      if len(shape) and shape[0] != n:
        raise ValueError(f"objective term {t.kind!r} argument {name!r} has shape "
                         f"{tuple(shape)}; per-image arguments need a leading "
                         f"axis N = {n} (or a scalar).")


# --------------------------------------------------------------------------
# Scores and gradients: the objective evaluated on the model's taps. Copies of
# a batch (IG points, SmoothGrad samples, occlusion positions) `[C, N, ...]`
# run through the network as one batch `[C * N, ...]`; the objective is then
# mapped over the copies, so its per-image arguments `[N]` apply to each copy
# without knowing which arguments are per-image.

def _score(model, images, objective, relu=jax.nn.relu, params=None) -> Array:
  return objectives.evaluate(objective, model, images, params=params, relu=relu)


def _score_copies(model, copies, objective, relu=jax.nn.relu,
                  start=None) -> Array:
  """Scores `[C, N]` of copies `[C, N, H, W, 3]` of a batch (with `start`:
  copies of the activation of layer `start`, see `objectives.evaluate`)."""
  c, n = copies.shape[:2]
  acts = objectives.activations(
      objective, model, copies.reshape(c * n, *copies.shape[2:]), relu=relu,
      start=start)
  acts = {k: v.reshape(c, n, *v.shape[1:]) for k, v in acts.items()}
  return jax.vmap(objective)(acts)


@functools.partial(jax.jit, static_argnames=("rule",))
def _grad(model, images, objective, rule):
  """(scores [N], d score / d images [N, H, W, 3])."""
  scores, vjp = jax.vjp(lambda x: _score(model, x, objective, RULES[rule]),
                        images)
  return scores, vjp(jnp.ones_like(scores))[0]


def _grad_copies(model, copies, objective, rule) -> Array:
  """d score / d input for copies `[C, N, H, W, 3]` of a batch."""
  scores, vjp = jax.vjp(
      lambda x: _score_copies(model, x, objective, RULES[rule]), copies)
  return vjp(jnp.ones_like(scores))[0]


@jax.jit
def _scores(model, images, objective, params=None):
  return _score(model, images, objective, params=params)


def _chunk_size(chunk_size, total: int, images) -> int:
  if chunk_size is None:
    n, h, w = images.shape[:3]
    chunk_size = max(1, _PIXELS_PER_CALL // max(1, n * h * w))
  _check_count(chunk_size, "chunk_size")
  return max(1, min(int(chunk_size), total))



def target_scores(model, images: Array, targets: Targets, *,
                  probabilities: bool = False, params=None) -> Array:
  """The score that attributions explain, per image.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective` (see the
      module docstring).
    probabilities: class targets only: softmax probability instead of logit.
    params: parameters to use instead of `model.params`.

  Returns:
    float32 `[N]`.
  """
  _check_images(model, images)
  obj = target_objective(model, images, targets, probabilities=probabilities)
  return _scores(model, images, obj, params)


# --------------------------------------------------------------------------
# What occluded or deleted pixels become.

FILLS = ("mean", "zeros", "blur")


def fill_images(model, images: Array, fill: Any = "mean", *,
                blur_sigma: float = 4.0) -> Array:
  """The images that occluded / deleted pixels are taken from.

  Args:
    model: a `Model` (its dataset mean colour for "mean").
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    fill: "mean" (the model's dataset mean colour), "zeros", "blur" (a
      blurred copy of the image, std `blur_sigma` pixels), a float in [0, 1],
      or an array in [0, 1] broadcastable to `images`.
    blur_sigma: Gaussian std in pixels for "blur", > 0.

  Returns:
    float32 `[N, H, W, 3]`.
  """
  if isinstance(fill, str):
    if fill == "mean":
      return jnp.broadcast_to(jnp.asarray(model.mean, images.dtype), images.shape)
    if fill == "zeros":
      return jnp.zeros_like(images)
    if fill == "blur":
      if checks.is_concrete(blur_sigma):
        s = np.asarray(blur_sigma)
        if s.ndim or s.dtype.kind not in "iuf" or not np.isfinite(s) or s <= 0:
          raise ValueError(f"blur_sigma must be a finite number > 0 for "
                           f"fill='blur'; got {blur_sigma!r}.")
      return image.gaussian_blur(images, blur_sigma)
    raise ValueError(f"unknown fill {fill!r}; valid: 'mean' (the dataset mean),"
                     " 'zeros', 'blur', a float in [0, 1] or an image array.")
  shape = np.shape(fill)
  try:
    ok = np.broadcast_shapes(shape, images.shape) == tuple(images.shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f"fill must be one of {FILLS}, a float or an array "
                     f"broadcastable to images {tuple(images.shape)}; got shape "
                     f"{shape}.")
  if checks.is_concrete(fill):
    a = np.asarray(fill)
    if a.dtype.kind not in "iuf":
      raise ValueError(f"fill must be numeric; got dtype {a.dtype}.")
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1):
      raise ValueError("fill values must be finite and in [0, 1] (the image "
                       f"range); got range [{a.min():.4g}, {a.max():.4g}].")
  return jnp.broadcast_to(jnp.asarray(fill, images.dtype), images.shape)
