"""Attribution: which pixels made the network decide?

Gradient saliency (Simonyan et al. 2014), deconvnet (Zeiler & Fergus 2014),
guided backprop (Springenberg et al. 2015), SmoothGrad (Smilkov et al. 2017),
integrated gradients (Sundararajan et al. 2017), Grad-CAM and guided Grad-CAM
(Selvaraju et al. 2017) and occlusion maps (Zeiler & Fergus 2014), as pure
functions of `(model, images, targets)`:

    model = models.load("cifar_vgg")
    grads = attribution.saliency(model, images, labels)           # [N, H, W, 3]
    ig, residual, delta = attribution.integrated_gradients(model, images, labels)
    cam = attribution.grad_cam(model, images, labels, layer="relu4_1")
    maps = attribution.heatmap(grads)                             # [N, H, W]

`targets` is either an int array `[N]` of classes (the score is the pre-softmax
logit, Simonyan et al. 2014 section 3) or a neuron spec `(layer, channel)` (the
channel's spatial mean for conv layers, the unit for fully connected ones) or
`(layer, channel, y, x)` (one unit of a conv layer).

Every function jits and accepts a batch; the images of a batch are independent,
so one backward pass of the summed scores gives every per-image gradient.
Methods that expand one image into many (IG steps, SmoothGrad samples, occlusion
positions) run those copies in chunks: a Python loop over one jitted function of
a chunk. XLA:CPU ran convolutions inside `lax.scan`/`lax.map` about 1.6-1.9x
slower than as separate calls, so the loop is not a scan; under an outer `jit`
it unrolls. Results do not depend on the chunk size beyond float rounding.
"""

import functools
import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import checks
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


# --------------------------------------------------------------------------
# Gradient methods.

def gradient(model, images: Array, targets: Targets, *,
             rule: str = "vanilla") -> Array:
  """d target score / d image, with the ReLU backward pass chosen by `rule`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    rule: "vanilla" (the gradient), "guided" (guided backprop) or "deconvnet".

  Returns:
    float32 `[N, H, W, 3]`, with respect to the [0, 1] image.
  """
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}.")
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  return _grad(model, images, classes, neuron, rule)[1]


def saliency(model, images: Array, targets: Targets) -> Array:
  """Vanilla gradient (Simonyan et al. 2014); Captum `Saliency(abs=False)`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.

  Returns:
    float32 `[N, H, W, 3]`; `heatmap(...)` gives Simonyan's max |.| map.
  """
  return gradient(model, images, targets, rule="vanilla")


def guided_backprop(model, images: Array, targets: Targets) -> Array:
  """Guided backpropagation (Springenberg et al. 2015): a `custom_vjp` ReLU in
  every relu layer. Same shapes as `saliency`; Captum `GuidedBackprop`."""
  return gradient(model, images, targets, rule="guided")


def deconvnet(model, images: Array, targets: Targets) -> Array:
  """Deconvnet backward pass (Zeiler & Fergus 2014). Same shapes as
  `saliency`; Captum `Deconvolution`."""
  return gradient(model, images, targets, rule="deconvnet")


@functools.partial(jax.jit, static_argnames=("neuron", "rule"))
def _smooth_chunk(model, images, classes, neuron, rule, key, sample_ids, sigma):
  n = images.shape[0]
  c = sample_ids.shape[0]
  # Smilkov et al. 2017 section 3: noise std relative to each input's range.
  span = images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))
  noise = jax.vmap(lambda s: jax.random.normal(
      jax.random.fold_in(key, s), images.shape, images.dtype))(sample_ids)
  noisy = images[None] + sigma * span[None, :, None, None, None] * noise
  _, g = _grad(model, noisy.reshape(c * n, *images.shape[1:]),
               _tile(classes, c), neuron, rule)
  g = g.reshape(c, *images.shape)
  return g.sum(0), (g * g).sum(0)


SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")


def smoothgrad(model, images: Array, targets: Targets, *, key: Array,
               samples: int = 50, sigma: float = 0.15, rule: str = "vanilla",
               variant: str = "mean", chunk_size: Optional[int] = None) -> Array:
  """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    key: PRNG key; sample `s` uses `fold_in(key, s)`, so results do not depend
      on `chunk_size`.
    samples: noisy copies per image (paper: 50).
    sigma: noise standard deviation relative to each image's value range
      (max - min); the paper recommends 10-20%.
    rule: the gradient underneath: "vanilla", "guided" or "deconvnet".
    variant: "mean" (SmoothGrad), "squared" (mean of squared gradients,
      SmoothGrad-SQ of Hooker et al. 2019) or "vargrad" (their variance,
      Adebayo et al. 2018).
    chunk_size: samples per network call (default: bounded pixel count).

  Returns:
    float32 `[N, H, W, 3]`.
  """
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}.")
  if variant not in SMOOTHGRAD_VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; valid: "
                     f"{', '.join(SMOOTHGRAD_VARIANTS)}.")
  if not isinstance(samples, (int, np.integer)) or samples < 1:
    raise ValueError(f"samples must be a positive int; got {samples!r}.")
  checks.check_positive(sigma, "sigma", allow_zero=True)
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  size = _chunk_size(chunk_size, samples, images)
  total, total_sq = 0.0, 0.0
  for lo, hi in _chunks(samples, size):
    s, sq = _smooth_chunk(model, images, classes, neuron, rule, key,
                          jnp.arange(lo, hi), jnp.float32(sigma))
    total, total_sq = total + s, total_sq + sq
  mean = total / samples
  if variant == "mean":
    return mean
  if variant == "squared":
    return total_sq / samples
  return jnp.maximum(total_sq / samples - mean * mean, 0.0)


# --------------------------------------------------------------------------
# Integrated gradients.

IG_METHODS = ("riemann_left", "riemann_right", "riemann_middle",
              "riemann_trapezoid", "gausslegendre")


def ig_steps(steps: int, method: str = "gausslegendre"):
  """Integration points `alphas` in [0, 1] and weights, as Captum computes them.

  Args:
    steps: number of points (> 1 for Riemann rules, > 0 for Gauss-Legendre).
    method: one of `IG_METHODS` (Captum's names).

  Returns:
    `(alphas, weights)`, float64 numpy `[steps]`.
  """
  if method not in IG_METHODS:
    raise ValueError(f"unknown integration method {method!r}; valid: "
                     f"{', '.join(IG_METHODS)}.")
  min_steps = 1 if method == "gausslegendre" else 2
  if not isinstance(steps, (int, np.integer)) or steps < min_steps:
    raise ValueError(f"steps must be an int >= {min_steps} for {method}; got "
                     f"{steps!r}.")
  n = int(steps)
  if method == "gausslegendre":
    # Captum `gauss_legendre_builders`: numpy's nodes on [-1, 1] mapped to [0, 1].
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (1 + x), 0.5 * w
  weights = np.full(n, 1.0 / n)
  # Captum builds the Riemann points with float32 `torch.linspace`; the same
  # float32 linspace here keeps the points bit-identical.
  lo, hi = {"left": (0.0, 1 - 1 / n), "right": (1 / n, 1.0),
            "middle": (1 / (2 * n), 1 - 1 / (2 * n)),
            "trapezoid": (0.0, 1.0)}[method.split("_")[1]]
  alphas = _linspace32(lo, hi, n)
  if method == "riemann_trapezoid":
    weights[0] /= 2
    weights[-1] /= 2
  return alphas, weights


def _linspace32(lo: float, hi: float, n: int) -> np.ndarray:
  """torch.linspace(lo, hi, n) in float32 (computed from both ends, as torch)."""
  step = np.float32((np.float32(hi) - np.float32(lo)) / (n - 1))
  i = np.arange(n)
  half = n // 2
  out = np.where(i < half, np.float32(lo) + step * i.astype(np.float32),
                 np.float32(hi) - step * (n - 1 - i).astype(np.float32))
  return out.astype(np.float32).astype(np.float64)


@functools.partial(jax.jit, static_argnames=("neuron", "rule"))
def _ig_chunk(model, images, baselines, classes, neuron, rule, alphas, weights):
  n, c = images.shape[0], alphas.shape[0]
  x = baselines[None] + alphas[:, None, None, None, None] * (images - baselines)[None]
  _, g = _grad(model, x.reshape(c * n, *images.shape[1:]), _tile(classes, c),
               neuron, rule)
  return jnp.tensordot(weights, g.reshape(c, *images.shape), axes=1)


class IGResult(NamedTuple):
  """Integrated gradients and their completeness residual.

  Attributes:
    attributions: float32 `[N, H, W, 3]`.
    residual: float32 `[N]`, sum of attributions - (f(x) - f(baseline));
      small relative to `delta` when the integral is accurate.
    delta: float32 `[N]`, f(x) - f(baseline).
  """
  attributions: Array
  residual: Array
  delta: Array


def integrated_gradients(model, images: Array, targets: Targets, *,
                         baselines=None, steps: int = 50,
                         method: str = "gausslegendre", rule: str = "vanilla",
                         chunk_size: Optional[int] = None) -> IGResult:
  """Integrated gradients (Sundararajan et al. 2017); Captum's
  `IntegratedGradients` with the same `method` names and points.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    baselines: None (black, as Captum), a float, or an array broadcastable to
      `images` in [0, 1].
    steps: integration points.
    method: one of `IG_METHODS`.
    rule: gradient rule (see `gradient`); "vanilla" is integrated gradients.
    chunk_size: integration points per network call (default: bounded pixel
      count); the result does not depend on it.

  Returns:
    `IGResult(attributions [N, H, W, 3], residual [N], delta [N])`; it
    unpacks as a tuple.
  """
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}.")
  alphas, weights = ig_steps(steps, method)
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  if baselines is None:
    baselines = jnp.zeros_like(images)
  else:
    baselines = jnp.broadcast_to(jnp.asarray(baselines, jnp.float32), images.shape)
    if checks.is_concrete(baselines):
      checks.check_images(baselines, name="baselines")
  size = _chunk_size(chunk_size, len(alphas), images)
  total = 0.0
  for lo, hi in _chunks(len(alphas), size):
    total = total + _ig_chunk(model, images, baselines, classes, neuron, rule,
                              jnp.asarray(alphas[lo:hi], jnp.float32),
                              jnp.asarray(weights[lo:hi], jnp.float32))
  attributions = total * (images - baselines)
  ends = _scores(model, jnp.concatenate([images, baselines]), _tile(classes, 2),
                 neuron, False)
  delta = ends[:images.shape[0]] - ends[images.shape[0]:]
  residual = attributions.sum(axis=(1, 2, 3)) - delta
  return IGResult(attributions, residual, delta)


# --------------------------------------------------------------------------
# Grad-CAM.

@functools.partial(jax.jit, static_argnames=("neuron", "layer", "relu"))
def _grad_cam(model, images, classes, neuron, layer, relu):
  k = model.layer_index(layer) + 1
  acts = _run(model, model.params, model.normalize(images), 0, k, jax.nn.relu)
  scores, vjp = jax.vjp(
      lambda a: _score_from(model, model.params, a, k, classes, neuron,
                            jax.nn.relu), acts)
  grads = vjp(jnp.ones_like(scores))[0]
  # Selvaraju et al. 2017, eq. 1-2: channel weights are the spatially averaged
  # gradients; the map is the weighted sum of the activation maps.
  cam = jnp.einsum("nc,nhwc->nhw", grads.mean(axis=(1, 2)), acts)
  return jax.nn.relu(cam) if relu else cam


def grad_cam(model, images: Array, targets: Targets, *, layer: str,
             relu: bool = True) -> Array:
  """Grad-CAM (Selvaraju et al. 2017) at a conv-stage layer.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec of a layer after `layer`.
    layer: the layer whose activations are weighted (e.g. `relu5_3` or its
      torchvision path `features.29`).
    relu: apply the paper's final ReLU (Captum `LayerGradCam`'s
      `relu_attributions`).

  Returns:
    float32 `[N, h, w]` at the layer's resolution; `upsample` brings it to the
    image size.
  """
  _check_images(model, images)
  layer = _check_layer(model, layer, images)
  classes, neuron = _parse_targets(model, images, targets)
  if neuron is not None and model.layer_index(neuron.layer) <= model.layer_index(layer):
    raise ValueError(f"neuron layer {neuron.layer} must come after the Grad-CAM"
                     f" layer {layer}.")
  return _grad_cam(model, images, classes, neuron, layer, bool(relu))


def upsample(maps: Array, size: tuple[int, int], method: str = "bilinear") -> Array:
  """Resizes maps `[N, h, w]` (or `[N, h, w, C]`) to `size = (H, W)`.

  Args:
    maps: the maps.
    size: output `(H, W)`.
    method: "nearest" (exactly torch's `interpolate(mode="nearest")`, which
      Captum's guided Grad-CAM uses) or any `jax.image.resize` method
      ("bilinear", "bicubic", ...).

  Returns:
    float32 `[N, H, W]` (or `[N, H, W, C]`).
  """
  h, w = maps.shape[1:3]
  H, W = size
  if method == "nearest":
    # torch: source index = floor(dst * (in / out)), with a float32 scale.
    rows = np.minimum(np.floor(np.arange(H, dtype=np.float32) *
                               np.float32(h / H)).astype(int), h - 1)
    cols = np.minimum(np.floor(np.arange(W, dtype=np.float32) *
                               np.float32(w / W)).astype(int), w - 1)
    return maps[:, rows][:, :, cols]
  return jax.image.resize(maps, (maps.shape[0], H, W, *maps.shape[3:]), method)


def guided_grad_cam(model, images: Array, targets: Targets, *, layer: str,
                    interpolation: str = "nearest") -> Array:
  """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM (with ReLU);
  Captum `GuidedGradCam` (which upsamples with "nearest").

  Returns:
    float32 `[N, H, W, 3]`.
  """
  cam = grad_cam(model, images, targets, layer=layer, relu=True)
  gb = guided_backprop(model, images, targets)
  return gb * upsample(cam, images.shape[1:3], interpolation)[..., None]


# --------------------------------------------------------------------------
# Occlusion.

def gaussian_blur(images: Array, sigma: float) -> Array:
  """Separable Gaussian blur of `[N, H, W, C]` images (reflect padding)."""
  radius = max(1, int(math.ceil(3 * sigma)))
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  k = jnp.asarray(k / k.sum(), images.dtype)
  x = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)),
              mode="reflect")
  x = sum(k[i] * x[:, i:i + images.shape[1]] for i in range(len(k)))
  return sum(k[i] * x[:, :, i:i + images.shape[2]] for i in range(len(k)))


def _fill(model, images, fill, blur_sigma):
  if isinstance(fill, str):
    if fill == "mean":
      return jnp.broadcast_to(jnp.asarray(model.mean, images.dtype), images.shape)
    if fill == "zeros":
      return jnp.zeros_like(images)
    if fill == "blur":
      return gaussian_blur(images, blur_sigma)
    raise ValueError(f"unknown fill {fill!r}; valid: 'mean' (the dataset mean),"
                     " 'zeros', 'blur', a float or an image array.")
  return jnp.broadcast_to(jnp.asarray(fill, images.dtype), images.shape)


@functools.partial(jax.jit, static_argnames=("neuron", "window", "probabilities"))
def _occlusion_chunk(model, images, fill, classes, neuron, window, probabilities,
                     ys, xs):
  n, h, w, _ = images.shape
  c = ys.shape[0]
  iy = jnp.arange(h)[None, :, None]
  ix = jnp.arange(w)[None, None, :]
  mask = ((iy >= ys[:, None, None]) & (iy < ys[:, None, None] + window[0]) &
          (ix >= xs[:, None, None]) & (ix < xs[:, None, None] + window[1]))
  mask = mask[:, None, :, :, None]
  x = jnp.where(mask, fill[None], images[None]).reshape(c * n, h, w, -1)
  return _scores(model, x, _tile(classes, c), neuron, probabilities).reshape(c, n)


def occlusion(model, images: Array, targets: Targets, *, window=(8, 8),
              stride=(4, 4), fill: Any = "mean", blur_sigma: float = 4.0,
              probabilities: bool = True,
              chunk_size: Optional[int] = None) -> Array:
  """Occlusion map (Zeiler & Fergus 2014, figure 7): the target's score with a
  square patch covered, at each patch position.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    window: patch `(height, width)` in pixels (or one int).
    stride: step between patch positions `(dy, dx)` (or one int).
    fill: "mean" (the model's dataset mean colour), "zeros", "blur" (a blurred
      copy of the image, std `blur_sigma` pixels), a float, or an array
      broadcastable to `images`.
    blur_sigma: Gaussian std in pixels for `fill="blur"`.
    probabilities: class targets: softmax probability (as Zeiler & Fergus)
      rather than the logit. Neuron targets always give the activation.
    chunk_size: patch positions per network call (default: bounded pixels).

  Returns:
    float32 `[N, rows, cols]`, rows = (H - window_h) // stride_h + 1; entry
    (i, j) is the score with the patch at `(i * stride_h, j * stride_w)`.
  """
  window = (window, window) if isinstance(window, (int, np.integer)) else tuple(window)
  stride = (stride, stride) if isinstance(stride, (int, np.integer)) else tuple(stride)
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  h, w = images.shape[1:3]
  for name, v in (("window", window), ("stride", stride)):
    if len(v) != 2 or min(v) < 1:
      raise ValueError(f"{name} must be a positive int or (h, w); got {v!r}.")
  if window[0] > h or window[1] > w:
    raise ValueError(f"window {window} is larger than the images ({h}x{w}).")
  fill_img = _fill(model, images, fill, blur_sigma)
  rows, cols = (h - window[0]) // stride[0] + 1, (w - window[1]) // stride[1] + 1
  ys = np.repeat(np.arange(rows) * stride[0], cols)
  xs = np.tile(np.arange(cols) * stride[1], rows)
  size = _chunk_size(chunk_size, rows * cols, images)
  parts = [_occlusion_chunk(model, images, fill_img, classes, neuron,
                            tuple(int(v) for v in window), bool(probabilities),
                            jnp.asarray(ys[lo:hi]), jnp.asarray(xs[lo:hi]))
           for lo, hi in _chunks(rows * cols, size)]
  out = jnp.concatenate(parts, axis=0)  # [positions, N]
  return out.T.reshape(images.shape[0], rows, cols)


# --------------------------------------------------------------------------
# Heatmaps and display helpers.

def heatmap(attributions: Array, reduce: str = "max_abs") -> Array:
  """Per-pixel map `[N, H, W]` from attributions `[N, H, W, 3]`.

  Args:
    attributions: float `[N, H, W, C]` (maps `[N, H, W]` pass through).
    reduce: over channels: "max_abs" (Simonyan et al. 2014, section 3.1),
      "sum" (signed), "abs_sum", or "norm" (L2).
  """
  if attributions.ndim == 3:
    return attributions
  if attributions.ndim != 4:
    raise ValueError(f"attributions must be [N, H, W, C]; got shape "
                     f"{attributions.shape}.")
  if reduce == "max_abs":
    return jnp.abs(attributions).max(axis=-1)
  if reduce == "sum":
    return attributions.sum(axis=-1)
  if reduce == "abs_sum":
    return jnp.abs(attributions).sum(axis=-1)
  if reduce == "norm":
    return jnp.sqrt((attributions ** 2).sum(axis=-1))
  raise ValueError(f"unknown reduce {reduce!r}; valid: max_abs, sum, abs_sum, norm.")


def normalize(maps: Array, *, percentile: float = 99.0, signed: bool = False) -> Array:
  """Scales each map `[N, ...]` for display.

  Args:
    maps: float `[N, ...]`.
    percentile: values at or above this percentile of |map| become 1 (99, as
      Smilkov et al. 2017, caps outliers).
    signed: keep the sign: map to [-1, 1]; otherwise map [min, pct] to [0, 1].

  Returns:
    same shape, in [0, 1] (or [-1, 1] when `signed`).
  """
  flat = maps.reshape(maps.shape[0], -1)
  eps = 1e-12
  if signed:
    top = jnp.percentile(jnp.abs(flat), percentile, axis=1)
    return jnp.clip(maps / (top.reshape(-1, *[1] * (maps.ndim - 1)) + eps), -1, 1)
  lo = flat.min(axis=1)
  top = jnp.percentile(flat, percentile, axis=1)
  shape = (-1, *[1] * (maps.ndim - 1))
  return jnp.clip((maps - lo.reshape(shape)) /
                  (top - lo + eps).reshape(shape), 0, 1)


def overlay(images, maps, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
  """Blends colour-mapped `[N, h, w]` maps (any range; normalized here,
  upsampled bilinearly when smaller) onto `[N, H, W, 3]` images.

  Returns:
    float32 numpy `[N, H, W, 3]` in [0, 1].
  """
  import matplotlib  # display only; imported lazily
  maps = jnp.asarray(maps, jnp.float32)
  if maps.shape[1:3] != images.shape[1:3]:
    maps = upsample(maps, images.shape[1:3], "bilinear")
  colours = matplotlib.colormaps[cmap](np.asarray(normalize(maps)))[..., :3]
  return ((1 - alpha) * np.asarray(images, np.float32) +
          alpha * colours.astype(np.float32)).clip(0, 1)


def save_grid(path: str, images, maps: dict, *, row_titles=None,
              overlay_alpha: Optional[float] = None) -> None:
  """Saves a PNG grid: one row per image, columns = image then each method.

  Args:
    path: output PNG.
    images: float32 `[N, H, W, 3]` in [0, 1].
    maps: `{method name: [N, h, w] map}` (e.g. `heatmap(...)` outputs).
    row_titles: optional label per image.
    overlay_alpha: None shows maps alone; a float blends them on the image.
  """
  from cnnviz_jax import pictures  # matplotlib, display only
  images = np.asarray(images)
  cells, titles = [], []
  for i in range(images.shape[0]):
    cells.append(images[i])
    titles.append("image")
    for name, m in maps.items():
      m = jnp.asarray(m[i:i + 1], jnp.float32)
      if overlay_alpha is None:
        cells.append(np.asarray(normalize(m))[0])
      else:
        cells.append(overlay(images[i:i + 1], m, alpha=overlay_alpha)[0])
      titles.append(name)
  pictures.save_grid(path, cells, titles=titles, row_titles=row_titles,
                     ncols=1 + len(maps))


# --------------------------------------------------------------------------
# Saliency + GrabCut segmentation (Simonyan et al. 2014, section 3.2).

def segment_from_saliency(image, saliency_map, *, fg_quantile: float = 0.95,
                          bg_quantile: float = 0.30,
                          iterations: int = 5) -> np.ndarray:
  """Weakly supervised segmentation: GrabCut seeded by a saliency map.

  Simonyan et al. 2014, section 3.2: pixels above the 95% saliency quantile
  seed the foreground, pixels below the 30% quantile the background; GrabCut
  (Rother et al. 2004, OpenCV `cv2.grabCut`) labels the rest.

  Args:
    image: float32 `[H, W, 3]` RGB in [0, 1].
    saliency_map: `[H, W]` (e.g. `heatmap(saliency(...))[i]`), any range.
    fg_quantile, bg_quantile: seed thresholds as quantiles of the map.
    iterations: GrabCut iterations.

  Returns:
    bool numpy `[H, W]`, True on the foreground.
  """
  try:
    import cv2
  except ImportError as e:
    raise ImportError("segment_from_saliency needs OpenCV: pip install "
                      "opencv-python-headless") from e
  image = np.asarray(image, np.float32)
  sal = np.asarray(saliency_map, np.float32)
  checks.check_images(image[None], name="image")
  if sal.shape != image.shape[:2]:
    raise ValueError(f"saliency_map must be [H, W] = {image.shape[:2]}; got "
                     f"{sal.shape}.")
  if not 0 <= bg_quantile < fg_quantile <= 1:
    raise ValueError("need 0 <= bg_quantile < fg_quantile <= 1; got "
                     f"{bg_quantile}, {fg_quantile}.")
  hi, mid, lo = np.quantile(sal, [fg_quantile, 0.5, bg_quantile])
  mask = np.where(sal >= mid, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
  mask[sal <= lo] = cv2.GC_BGD
  mask[sal >= hi] = cv2.GC_FGD
  bgr = np.ascontiguousarray((image[..., ::-1] * 255 + 0.5).astype(np.uint8))
  bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
  cv2.grabCut(bgr, mask, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
  return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


# --------------------------------------------------------------------------
# Sanity checks (Adebayo et al. 2018).

def rank_correlation(a, b) -> np.ndarray:
  """Spearman rank correlation per image between maps `[N, ...]` (ties get
  average ranks). Returns float64 numpy `[N]`."""
  from scipy import stats
  a = np.asarray(a, np.float64).reshape(len(a), -1)
  b = np.asarray(b, np.float64).reshape(len(b), -1)
  out = []
  for x, y in zip(a, b):
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    sx, sy = rx.std(), ry.std()
    out.append(0.0 if sx == 0 or sy == 0 else
               float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy)))
  return np.asarray(out)


class RandomizationResult(NamedTuple):
  """Attributes:
    layers: names of the randomized layers, top first (cascading: each entry
      has that layer and all above it randomized).
    correlations: float64 `[L, N]` rank correlation between original and
      randomized maps.
    maps: float32 `[L, N, ...]` the randomized maps; `original` `[N, ...]`.
  """
  layers: tuple
  correlations: np.ndarray
  maps: np.ndarray
  original: np.ndarray


def _param_layers(model) -> tuple[str, ...]:
  return tuple(l.name for l in model.layers if l.name in model.params)


def randomization_check(model, images: Array, targets: Targets,
                        method: Callable[..., Array], *, key: Array,
                        cascading: bool = True, absolute: bool = True,
                        reduce: str = "sum") -> RandomizationResult:
  """Model-parameter randomization test (Adebayo et al. 2018, section 3.1).

  Re-initializes the layers top (logits) down with the model's own
  initializers, recomputes the attribution with the randomized network and
  compares it with the original by rank correlation. A method that explains
  the model should decorrelate as more layers are randomized.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    method: `method(model, images, targets) -> [N, H, W, 3]` or `[N, h, w]`,
      e.g. `saliency` or `functools.partial(grad_cam, layer="relu4_1")`.
    key: PRNG key of the re-initialization.
    cascading: randomize cumulatively (True) or one layer at a time.
    absolute: compare absolute values (the paper reports both; absolute
      values discard sign flips, which randomization alone can cause).
    reduce: channel reduction for `[N, H, W, 3]` outputs (see `heatmap`).

  Returns:
    `RandomizationResult`.
  """
  _check_images(model, images)
  _parse_targets(model, images, targets)
  fresh = core.init_params(model.layers, key, model.input_size)

  def as_map(a):
    a = heatmap(jnp.asarray(a), reduce) if jnp.ndim(a) == 4 else jnp.asarray(a)
    return np.asarray(jnp.abs(a) if absolute else a, np.float32)

  original = as_map(method(model, images, targets))
  names, corrs, maps = [], [], []
  params = dict(model.params)
  for name in reversed(_param_layers(model)):
    if not cascading:
      params = dict(model.params)
    params[name] = fresh[name]
    m = as_map(method(model.replace(params=params), images, targets))
    names.append(name)
    maps.append(m)
    corrs.append(rank_correlation(original, m))
  return RandomizationResult(tuple(names), np.stack(corrs), np.stack(maps),
                             original)


# --------------------------------------------------------------------------
# Methods by name (launchers, metrics).

def explain(model, images: Array, targets: Targets, method: str, *,
            key: Optional[Array] = None, layer: Optional[str] = None,
            reduce: str = "max_abs", **kwargs) -> Array:
  """Heatmap `[N, H, W]` (or `[N, rows, cols]` for occlusion, `[N, h, w]` for
  Grad-CAM) of the named method, for launchers and metrics.

  Args:
    method: one of `METHODS`.
    key: PRNG key (SmoothGrad).
    layer: Grad-CAM layer (default: the last conv-stage relu).
    reduce: channel reduction (see `heatmap`).
    **kwargs: passed to the method.
  """
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}.")
  if method in ("grad_cam", "guided_grad_cam"):
    kwargs["layer"] = layer or default_cam_layer(model)
  if method == "smoothgrad":
    kwargs["key"] = jax.random.PRNGKey(0) if key is None else key
  out = METHODS[method](model, images, targets, **kwargs)
  if method == "integrated_gradients":
    out = out.attributions
  if method == "occlusion":
    # Low score when covered = important: flip so that high means important.
    return -out
  return heatmap(out, reduce)


def default_cam_layer(model) -> str:
  """The deepest relu layer with spatial activations (Selvaraju et al. use the
  last convolutional layer)."""
  spatial = []
  for l in model.layers:
    if l.kind in ("adaptive_avgpool", "global_avgpool", "flatten", "dense"):
      break
    spatial.append(l)
  relus = [l.name for l in spatial if l.kind == "relu"]
  return (relus or [l.name for l in spatial])[-1]


METHODS = {
    "saliency": saliency,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
    "occlusion": occlusion,
}
