"""Image-synthesis techniques, each a few lines on top of `optimize`.

    images = synthesis.visualize_class(model, range(10), key=key)
    recon = synthesis.invert(model, photos, "relu3_2", key=key)
    dream = synthesis.deepdream(model, photo, "relu4_2", key=key)

Recipes are named sets of keyword defaults (`RECIPES`), overridable per call.
A sweep over recipe dicts (any of their numbers) runs as one computation:

    recipes = [synthesis.recipe(tv=t, tv_beta=b) for t in (0.1, 1.0) for b in (1.5, 2.0)]
    res = synthesis.sweep(model, objectives.class_logit(3), 1, recipes,
                          keys=jax.random.split(key, 4), steps=100)
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
# means (see `regularizers`); learning rates are for Adam on [0, 1] pixels;
# tv_beta is the TV exponent (2 as in `invert`, Mahendran & Vedaldi 2015).
RECIPES = {
    # Simonyan et al. 2014: the class score with an L2 penalty, plain pixels.
    "simonyan": dict(l2=1.0, tv=0.0, tv_beta=2.0, l1=0.0, jitter=0, blur_sigma=0.0,
                     blur_every=4, clip_norm=0.0, clip_contribution=0.0,
                     learning_rate=0.05, param="pixels"),
    # Yosinski et al. 2015: small L2 decay, periodic Gaussian blur, clipping of
    # small-norm and small-contribution pixels, plus jitter (Lucid).
    "yosinski": dict(l2=0.3, tv=0.0, tv_beta=2.0, l1=0.0, jitter=2, blur_sigma=0.5,
                     blur_every=4, clip_norm=5.0, clip_contribution=5.0,
                     learning_rate=0.05, param="pixels"),
    # Lucid-style: Fourier parameterization with decorrelated colour, jitter.
    "fft": dict(l2=0.0, tv=0.0, tv_beta=2.0, l1=0.0, jitter=2, blur_sigma=0.0,
                blur_every=4, clip_norm=0.0, clip_contribution=0.0,
                learning_rate=0.05, param="fft"),
}
DEFAULT_RECIPE = "yosinski"
# Recipe entries that are not numbers: the parameterization fixes the shapes
# of the optimized parameters, so a sweep cannot vary it. Every other entry
# is a number and a traced leaf of the `Setup` (`setups`).
STATIC_RECIPE_KEYS = ("param",)
# Entries older recipe dicts may lack, with the value they meant.
_RECIPE_DEFAULTS = {"tv_beta": 2.0}


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
  _check_recipe(out)
  return out


def _check_recipe(r: dict) -> dict:
  r = {**_RECIPE_DEFAULTS, **r}
  valid = set(RECIPES[DEFAULT_RECIPE])
  if set(r) != valid:
    raise ValueError(f"recipe dict has unknown options {sorted(set(r) - valid)} "
                     f"and lacks {sorted(valid - set(r))}; use synthesis.recipe().")
  for k in ("l2", "tv", "l1", "blur_sigma", "clip_norm", "clip_contribution",
            "jitter"):
    checks.check_positive(r[k], k, allow_zero=True)
  checks.check_positive(r["learning_rate"], "learning_rate")
  checks.check_positive(r["blur_every"], "blur_every")
  if checks.is_concrete(r["tv_beta"]) and not np.all(np.asarray(r["tv_beta"]) >= 1.0):
    raise ValueError(f"tv_beta must be >= 1; got {r['tv_beta']!r}.")
  if r["param"] not in P.PARAMETERIZATIONS:
    raise ValueError(f"unknown param {r['param']!r}; valid: "
                     f"{', '.join(P.PARAMETERIZATIONS)}.")
  return r


def _used(recipes, k) -> bool:
  """Whether some point uses the component switched on by a non-zero `k`."""
  return any(not checks.is_concrete(r[k]) or np.any(np.asarray(r[k]) != 0)
             for r in recipes)


def setups(objective, recipes: Sequence[dict]) -> list[opt.Setup]:
  """Setups for a sweep over recipe dicts, all of one structure (`opt.sweep`).

  Every numeric entry may vary across `recipes`: regularizer weights,
  `tv_beta`, `jitter`, `blur_sigma`, `blur_every`, the clipping percentiles,
  `learning_rate`. A component (a regularizer term, jitter, blur, clipping)
  is in every point when some point uses it (a non-zero value); at zero it
  is an exact no-op (weight 0, jitter 0, sigma 0 or percentile 0), so each
  point runs as `setup(objective, recipe)` alone does, up to float rounding.
  The jitter pad and blur kernel take the sweep's largest size (blur radius
  max(1, ceil(3 sigma)) for the largest sigma), and each point masks them to
  its own (`transforms.GaussianBlur`).

  Args:
    objective: an `Objective`, or one per recipe (differing only in numbers).
    recipes: dicts from `recipe` (every key present).

  Returns:
    `[len(recipes)]` `optimize.Setup`s.

  Raises:
    ValueError: for a bad value, or when a `STATIC_RECIPE_KEYS` entry
      (`param`) differs between recipes.
  """
  recipes = [_check_recipe(dict(r)) for r in recipes]
  if not recipes:
    raise ValueError("setups needs at least one recipe dict.")
  for k in STATIC_RECIPE_KEYS:
    vals = [r[k] for r in recipes]
    if any(v != vals[0] for v in vals):
      raise ValueError(f"recipe key {k!r} must be equal across the sweep (it fixes "
                       f"the parameterization's shapes); got {vals}. Run one "
                       f"sweep per {k} value.")
  if isinstance(objective, O.Objective):
    objs = [objective] * len(recipes)
  else:
    objs = list(objective)
    if len(objs) != len(recipes):
      raise ValueError(f"got {len(objs)} objectives for {len(recipes)} recipes.")
  out = []
  for obj, r in zip(objs, recipes):
    for name, fn in (("l2", R.l2), ("l1", R.l1), ("tv", R.tv)):
      if _used(recipes, name):
        obj = obj - r[name] * (fn(r["tv_beta"]) if name == "tv" else fn())
    transform = T.jitter(r["jitter"]) if _used(recipes, "jitter") else None
    ops = []
    if _used(recipes, "blur_sigma"):
      ops.append(T.gaussian_blur(r["blur_sigma"], every=r["blur_every"]))
    if _used(recipes, "clip_norm"):
      ops.append(T.clip_small_norm(r["clip_norm"]))
    if _used(recipes, "clip_contribution"):
      ops.append(T.clip_small_contribution(r["clip_contribution"]))
    step_ops = T.compose_steps(*ops) if ops else None
    out.append(opt.Setup(obj, transform, step_ops, r["learning_rate"]))
  return opt.align_bounds(out)


def setup(objective: O.Objective, r: dict) -> opt.Setup:
  """Objective, transforms and between-step operations for recipe dict `r`."""
  return setups(objective, [r])[0]


def sweep(model, objective, n: int, recipes: Sequence[dict], *, keys: Array,
          steps: int, size: Optional[tuple[int, int]] = None,
          init: Optional[Array] = None, **kwargs) -> opt.Result:
  """`visualize` for S recipe dicts as one vmapped computation (`setups`).

  Args:
    objective: an `Objective`, or one per recipe.
    n: images per point.
    recipes: S dicts from `recipe`, e.g. `[recipe(tv=t) for t in (0.1, 1.0)]`.
    keys: `[S]` PRNG keys.
    size: `(H, W)`, default `model.input_size`.
    **kwargs: passed to `optimize.sweep` (`chunk`, `progress`, ...).

  Returns:
    `Result` with a leading `[S]` axis; point `s` equals `visualize(model,
    objective, n, key=keys[s], **recipes[s])` up to float rounding.
  """
  recipes = list(recipes)
  ss = setups(objective, recipes)
  hw = tuple(size or model.input_size)
  return opt.sweep(model, ss, _param(recipes[0], n, hw), keys=keys, steps=steps,
                   init=init, **kwargs)


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
