"""Image-synthesis techniques, each a few lines on top of `optimize`.

    images = synthesis.visualize_class(model, range(10), key=key)
    recon = synthesis.invert(model, photos, "relu3_2", key=key)
    dream = synthesis.deepdream(model, photo, "relu4_2", key=key)

Recipes are named sets of keyword defaults (`RECIPES`), overridable per call.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import checks
from cnnviz_jax import objectives as O
from cnnviz_jax import optimize as opt
from cnnviz_jax import param as P
from cnnviz_jax import regularizers as R
from cnnviz_jax import transforms as T

Array = jax.Array

# Named recipes for class and neuron visualization. Weights are per-pixel
# means (see `regularizers`); learning rates are for Adam on [0, 1] pixels.
RECIPES = {
    # Simonyan et al. 2014: the class score with an L2 penalty, plain pixels.
    "simonyan": dict(l2=1.0, tv=0.0, l1=0.0, jitter=0, blur_sigma=0.0,
                     blur_every=4, clip_norm=0.0, clip_contribution=0.0,
                     learning_rate=0.05, param="pixels"),
    # Yosinski et al. 2015: small L2 decay, periodic Gaussian blur, clipping of
    # small-norm and small-contribution pixels, plus jitter (Lucid).
    "yosinski": dict(l2=0.3, tv=0.0, l1=0.0, jitter=2, blur_sigma=0.5,
                     blur_every=4, clip_norm=5.0, clip_contribution=5.0,
                     learning_rate=0.05, param="pixels"),
    # Lucid-style: Fourier parameterization with decorrelated colour, jitter.
    "fft": dict(l2=0.0, tv=0.0, l1=0.0, jitter=2, blur_sigma=0.0, blur_every=4,
                clip_norm=0.0, clip_contribution=0.0, learning_rate=0.05,
                param="fft"),
}
DEFAULT_RECIPE = "yosinski"


def recipe(name: str = DEFAULT_RECIPE, **overrides) -> dict:
  """The keyword defaults of recipe `name`, with `overrides` applied."""
  if name not in RECIPES:
    raise ValueError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}.")
  out = dict(RECIPES[name])
  unknown = set(overrides) - set(out)
  if unknown:
    raise ValueError(f"unknown recipe options {sorted(unknown)}; valid: "
                     f"{', '.join(sorted(out))}.")
  out.update(overrides)
  for k in ("l2", "tv", "l1", "blur_sigma", "clip_norm", "clip_contribution",
            "jitter"):
    checks.check_positive(out[k], k, allow_zero=True)
  checks.check_positive(out["learning_rate"], "learning_rate")
  checks.check_positive(out["blur_every"], "blur_every")
  return out


def setup(objective: O.Objective, r: dict) -> opt.Setup:
  """Objective, transforms and between-step operations for recipe dict `r`."""
  obj = objective
  for name, fn in (("l2", R.l2), ("l1", R.l1), ("tv", R.tv)):
    if r[name]:
      obj = obj - r[name] * fn()
  transform = T.jitter(r["jitter"]) if r["jitter"] else None
  ops = []
  if r["blur_sigma"]:
    ops.append(T.gaussian_blur(r["blur_sigma"], every=r["blur_every"]))
  if r["clip_norm"]:
    ops.append(T.clip_small_norm(r["clip_norm"]))
  if r["clip_contribution"]:
    ops.append(T.clip_small_contribution(r["clip_contribution"]))
  step_ops = T.compose_steps(*ops) if ops else None
  return opt.Setup(obj, transform, step_ops, r["learning_rate"])


def _param(r, n, hw):
  return P.PARAMETERIZATIONS[r["param"]](n, hw)


def visualize(model, objective: O.Objective, n: int, *, key: Array, steps: int,
              size: Optional[tuple[int, int]] = None, recipe_name: str = DEFAULT_RECIPE,
              init: Optional[Array] = None, **overrides) -> opt.Result:
  """Maximizes any objective with a recipe's regularizers; returns the Result.

  Args:
    objective: e.g. `objectives.channel("relu3_1", 5)`.
    n: number of images (the objective's per-image targets must match).
    size: `(H, W)`, default `model.input_size`.
  """
  r = recipe(recipe_name, **overrides)
  hw = tuple(size or model.input_size)
  s = setup(objective, r)
  return opt.optimize(model, s.objective, _param(r, n, hw), key=key, steps=steps,
                      learning_rate=s.learning_rate, transform=s.transform,
                      step_ops=s.step_ops, init=init)


def _class_array(model, classes) -> np.ndarray:
  c = np.asarray(list(classes) if not np.isscalar(classes) else [classes])
  if c.ndim != 1 or c.size == 0:
    raise ValueError(f"classes must be a non-empty sequence of ints; got {classes!r}.")
  checks.check_classes(c, model.num_classes, name="classes")
  return c.astype(np.int32)


def visualize_class(model, classes: Sequence[int], *, key: Array, steps: int = 100,
                    size: Optional[tuple[int, int]] = None,
                    recipe_name: str = DEFAULT_RECIPE, **overrides) -> Array:
  """Class model visualization: one image per class, optimized together.

  Args:
    model: a Model (defaults tuned on the shipped `cifar_vgg`).
    classes: class indices.
    key: PRNG key.
    steps: optimization steps (>= 1).
    size: `(H, W)`; default the model's input size.
    recipe_name: "yosinski" (default), "simonyan" or "fft"; `**overrides`
      change single options (`l2=`, `blur_sigma=`, `learning_rate=`, ...).

  Returns:
    float32 `[len(classes), H, W, 3]` in [0, 1].
  """
  c = _class_array(model, classes)
  return visualize(model, O.class_logit(jnp.asarray(c)), len(c), key=key,
                   steps=steps, size=size, recipe_name=recipe_name,
                   **overrides).images


def visualize_neuron(model, layer: str, channels: Sequence[int], *, key: Array,
                     steps: int = 100, y: Optional[int] = None,
                     x: Optional[int] = None, size=None,
                     recipe_name: str = DEFAULT_RECIPE, **overrides) -> Array:
  """Intermediate-neuron visualization: one image per channel of `layer`,
  maximizing the single unit at `(y, x)` (default: the center of the map;
  `visualize_channel` maximizes the channel mean instead).

  Returns float32 `[len(channels), H, W, 3]` in [0, 1]."""
  c = np.asarray(list(channels), np.int32)
  if c.ndim != 1 or c.size == 0:
    raise ValueError(f"channels must be a non-empty sequence of ints; got {channels!r}.")
  obj = O.neuron(layer, jnp.asarray(c), y, x)
  return visualize(model, obj, len(c), key=key, steps=steps, size=size,
                   recipe_name=recipe_name, **overrides).images


def visualize_channel(model, layer: str, channels: Sequence[int], *, key: Array,
                      steps: int = 100, size=None, recipe_name: str = DEFAULT_RECIPE,
                      diversity: float = 0.0, **overrides) -> Array:
  """Channel-mean visualization; `diversity` > 0 adds Lucid's batch diversity
  term on the same layer. Returns `[len(channels), H, W, 3]`."""
  c = np.asarray(list(channels), np.int32)
  obj = O.channel(layer, jnp.asarray(c))
  if diversity:
    checks.check_positive(diversity, "diversity")
    obj = obj + diversity * O.diversity(layer)
  return visualize(model, obj, len(c), key=key, steps=steps, size=size,
                   recipe_name=recipe_name, **overrides).images


# ----------------------------------------------------------------- inversion

def invert(model, images: Array, layer: str, *, key: Array, steps: int = 200,
           tv: float = 0.05, beta: float = 2.0, l2: float = 0.0,
           learning_rate: float = 0.05, jitter: int = 0,
           return_result: bool = False):
  """Feature inversion (Mahendran & Vedaldi 2015): from noise, find images
  whose `layer` activation matches that of `images`, with a TV^beta prior.

  Args:
    images: float32 `[N, H, W, 3]` in [0, 1].
    layer: any tap name (`model.layer_names`), e.g. "relu3_2" or "fc7".
    tv, beta, l2: regularizer weights (>= 0) and TV exponent (>= 1).

  Returns:
    reconstructions float32 `[N, H, W, 3]` in [0, 1] (the `Result` when
    `return_result`).
  """
  checks.check_images(images, min_size=model.min_size)
  layer = model.resolve(layer)
  for k, v in (("tv", tv), ("l2", l2), ("jitter", jitter)):
    checks.check_positive(v, k, allow_zero=True)
  _, acts = model.apply(model.params, images, taps=(layer,), logits=False)
  obj = O.feature_match(layer, acts[layer])
  if tv:
    obj = obj - tv * R.tv(beta)
  if l2:
    obj = obj - l2 * R.l2()
  n, h, w, _ = images.shape
  res = opt.optimize(model, obj, P.pixels(n, (h, w)), key=key, steps=steps,
                     learning_rate=learning_rate,
                     transform=T.jitter(jitter) if jitter else None)
  return res if return_result else res.images


def reconstruction_error(images: Array, recon: Array) -> Array:
  """Per-image relative pixel error ||x - x'|| / ||x - mean(x)|| `[N]`."""
  d = (recon - images).reshape(images.shape[0], -1)
  ref = (images - images.mean(axis=(1, 2, 3), keepdims=True)).reshape(images.shape[0], -1)
  return jnp.linalg.norm(d, axis=1) / (jnp.linalg.norm(ref, axis=1) + 1e-8)


# ----------------------------------------------------------------- DeepDream

def deepdream(model, image: Array, layer: str, *, key: Array, octaves: int = 3,
              octave_scale: float = 1.4, steps: int = 10, step_size: float = 0.01,
              jitter: Optional[int] = None, return_history: bool = False):
  """DeepDream (Mordvintsev et al. 2015): gradient ascent on half the squared
  activation of `layer` (gradient = activation), normalized by mean |g|, with a
  random roll and clipping, over `octaves` sizes with detail carried up.

  Args:
    image: float32 `[H, W, 3]` or `[N, H, W, 3]` in [0, 1], any size >= the
      model's minimum.
    layer: tap name, e.g. "relu4_2" (VGG) or "relu3_2" (cifar_vgg).
    steps: steps per octave; step_size: pixel step per step (the original's
      1.5 on a 0-255 scale is about 0.006).
    jitter: roll range in pixels (default 1/16 of the shorter side).

  Returns:
    the dreamed image, same shape as `image` (and the per-octave histories
    when `return_history`).
  """
  single = getattr(image, "ndim", 0) == 3
  images = jnp.asarray(image)[None] if single else image
  checks.check_images(images, min_size=model.min_size)
  layer = model.resolve(layer)
  checks.check_positive(step_size, "step_size")
  h, w = images.shape[1:3]
  j = max(1, min(h, w) // 16) if jitter is None else jitter
  checks.check_positive(j, "jitter", allow_zero=True)
  out, hist = opt.multiscale(
      model, O.layer_l2(layer), images, key=key, steps_per_octave=steps,
      octaves=octaves, octave_scale=octave_scale, optimizer="sgd",
      learning_rate=step_size, grad_norm="mean_abs",
      transform=T.roll(j) if j else None)
  out = out[0] if single else out
  return (out, hist) if return_history else out


# ----------------------------------------------------------- multifaceted

def kmeans(x: Array, k: int, *, key: Array, iters: int = 50):
  """Lloyd's k-means with k-means++ seeding. x: `[N, D]`.

  Returns `(centers [k, D], assignment int32 [N])`."""
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[0]
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, {n}] (number of points); got {k}.")
  keys = jax.random.split(key, k)
  idx = [int(jax.random.randint(keys[0], (), 0, n))]
  for i in range(1, k):
    d = jnp.min(jnp.sum(jnp.square(x[:, None] - x[jnp.asarray(idx)][None]), -1), 1)
    idx.append(int(jax.random.choice(keys[i], n, p=d / jnp.maximum(d.sum(), 1e-12))))
  centers = x[jnp.asarray(idx)]

  def step(c, _):
    d = jnp.sum(jnp.square(x[:, None] - c[None]), -1)
    a = jnp.argmin(d, axis=1)
    onehot = jax.nn.one_hot(a, k)
    counts = onehot.sum(0)
    new = (onehot.T @ x) / jnp.maximum(counts, 1)[:, None]
    return jnp.where(counts[:, None] > 0, new, c), None

  centers, _ = jax.lax.scan(step, centers, None, length=iters)
  assign = jnp.argmin(jnp.sum(jnp.square(x[:, None] - centers[None]), -1), 1)
  return centers, assign.astype(jnp.int32)


def multifaceted(model, images: Array, target: int, *, k: int, key: Array,
                 steps: int = 100, layer: str = "fc7",
                 recipe_name: str = DEFAULT_RECIPE, **overrides):
  """Multifaceted feature visualization (Nguyen et al. 2016): cluster a
  class's images in `layer` (fc7) space with k-means, start from each
  cluster's mean image and maximize the class; one facet per cluster.

  Args:
    images: float32 `[N, H, W, 3]` in [0, 1], images of class `target`.
    target: class index; k: number of facets (<= N).

  Returns:
    `(facets [k, H, W, 3], cluster means [k, H, W, 3], assignment [N])`.
  """
  checks.check_images(images, min_size=model.min_size)
  checks.check_classes(np.asarray([target]), model.num_classes, name="target")
  layer = model.resolve(layer)
  _, acts = model.apply(model.params, images, taps=(layer,), logits=False)
  feats = acts[layer].reshape(images.shape[0], -1)
  kkey, okey = jax.random.split(key)
  _, assign = kmeans(feats, k, key=kkey)
  onehot = jax.nn.one_hot(assign, k)
  means = jnp.einsum("nk,nhwc->khwc", onehot, images) / jnp.maximum(
      onehot.sum(0), 1)[:, None, None, None]
  res = visualize(model, O.class_logit(int(target)), k, key=okey, steps=steps,
                  size=images.shape[1:3], recipe_name=recipe_name, init=means,
                  **overrides)
  return res.images, means, assign
