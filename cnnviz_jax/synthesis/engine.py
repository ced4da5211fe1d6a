"""The one optimization loop behind every image-synthesis technique.

    result = optimize.optimize(model, objective, param.pixels(10, (32, 32)),
                               key=key, steps=200, learning_rate=0.05,
                               transform=transforms.jitter(2),
                               step_ops=transforms.gaussian_blur(0.5, every=4))
    result.images      # float32 [10, 32, 32, 3] in [0, 1]
    result.history     # {"objective": [200, 10], "grad_norm": [200, 10]}

Each step: image = param.to_image(params); the network sees
transform(fold_in(key, step), image); the gradient of the objective (maximized)
is optionally normalized per image; an optax optimizer updates the params;
between-step operations run on the pixels, then the projection to [0, 1].

The steps run under `jit` as `lax.scan`s of `chunk` steps each (progress is
reported between chunks). On XLA:CPU a convolution gradient inside a `while`
loop ran 2.6x slower than the same step outside one (0.42 vs 0.16 s per step,
cifar_vgg, batch 10, measured here); a scan fully unrolled has no loop, so the
default is short chunks (`DEFAULT_CHUNK` steps) each fully unrolled: the same
speed as separate jitted steps with ~12 s of compilation, once per setting. Objectives, transforms, step operations and the
model are pytrees whose numbers are traced, and the optimizer's learning rate
lives in its state (`optax.inject_hyperparams`), so one compiled program
serves every target and hyperparameter value; `sweep` vmaps it over a stack of
settings as one computation.
"""

import functools
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from cnnviz_jax import _checks as checks
from cnnviz_jax import image
from cnnviz_jax import objectives as objectives_lib
from cnnviz_jax.synthesis import param as param_lib

Array = jax.Array

GRAD_NORMS = (None, "l2", "mean_abs", "max_abs", "sign")
# Steps per compiled chunk (see module doc): longer chunks compile longer
# (about 1.5 s more per unrolled cifar_vgg step on this CPU: 16 s for 5,
# 23 s for 10) without running faster.
DEFAULT_CHUNK = 5


class Result(NamedTuple):
  """Output of `optimize`.

  Attributes:
    images: float32 `[N, H, W, 3]` in [0, 1] (`[S, N, H, W, 3]` for a sweep).
    params: the final parameters (pixels or spectrum).
    history: `{"objective": [steps, N], "grad_norm": [steps, N]}`: the
      objective value (of the transformed image) and the raw gradient L2 norm
      before each update (a leading `[S]` for a sweep).
  """
  images: Array
  params: Any
  history: dict


class Setup(NamedTuple):
  """Everything a sweep may vary: one point of a hyperparameter sweep.

  Every number in it is a traced leaf, so points may differ in any of them:
  objective weights and targets, TV's beta, jitter and roll pixels, scale
  and rotation ranges, blur sigma, period and radius, clipping percentiles,
  projection radii, the learning rate. What is static (term kinds and
  layers, which transforms and operations are present and in which order,
  leaf shapes) must be equal across a sweep; static bounds (`Jitter.max_pixels`,
  `GaussianBlur.max_radius`) are raised to the sweep's maximum (`align_bounds`).
  """
  objective: objectives_lib.Objective
  transform: Any = None
  step_ops: Any = None
  learning_rate: Any = 0.05


@functools.lru_cache(maxsize=None)
def make_optimizer(name: str) -> optax.GradientTransformation:
  """An optax optimizer by name whose learning rate is a state hyperparameter
  (cached: the same object, hence the same compiled loop, for equal names)."""
  makers = {"adam": optax.adam, "sgd": optax.sgd, "rmsprop": optax.rmsprop,
            "adamw": optax.adamw}
  if name not in makers:
    raise ValueError(f"unknown optimizer {name!r}; valid names: "
                     f"{', '.join(makers)} (or pass an optax GradientTransformation).")
  return optax.inject_hyperparams(makers[name])(learning_rate=0.0)


def _init_opt_state(optimizer, params, learning_rate):
  state = optimizer.init(params)
  hp = getattr(state, "hyperparams", None)
  if hp is not None and "learning_rate" in hp:
    hp = dict(hp, learning_rate=jnp.asarray(learning_rate, jnp.float32))
    state = state._replace(hyperparams=hp)
  return state


def _normalize(g: Array, how: Optional[str]) -> Array:
  """Per-image gradient normalization (leading axis is the image)."""
  if how is None:
    return g
  axes = tuple(range(1, g.ndim))
  if how == "l2":
    return g / (jnp.sqrt(jnp.sum(jnp.square(g), axes, keepdims=True)) + 1e-12)
  if how == "mean_abs":  # DeepDream: step / mean |g| (Mordvintsev et al. 2015)
    return g / (jnp.mean(jnp.abs(g), axes, keepdims=True) + 1e-12)
  if how == "max_abs":
    return g / (jnp.max(jnp.abs(g), axes, keepdims=True) + 1e-12)
  if how == "sign":
    return jnp.sign(g)
  raise ValueError(f"grad_norm must be one of {GRAD_NORMS}; got {how!r}.")


def _evaluate(model, objective, images_in, images_net):
  taps = objective.taps
  layer_taps = tuple(t for t in taps if t not in ("input", "logits"))
  need_logits = "logits" in taps
  acts = {"input": images_in}
  if need_logits or layer_taps:
    logits, acts_net = model.apply(model.params, images_net, taps=layer_taps,
                                   logits=need_logits)
    acts.update(acts_net)
    if need_logits:
      acts["logits"] = logits
  return objective(acts)


def run_steps(model, objective, param, transform, step_ops, params, opt_state,
              key, start, *, optimizer, num_steps: int, grad_norm=None,
              unroll: int = 1):
  """`num_steps` steps from `start` as one `lax.scan` (pure; jit/vmap freely).

  Returns `(params, opt_state, {"objective": [num_steps, N],
  "grad_norm": [num_steps, N]})`.
  """
  is_pixels = param.kind == "pixels"

  def loss(p, k):
    img = param.to_image(p)
    x = img if transform is None else transform(k, img)
    vals = _evaluate(model, objective, img, x)
    return -jnp.sum(vals), vals

  def step(carry, i):
    p, s = carry
    k = jax.random.fold_in(key, i)
    (_, vals), g = jax.value_and_grad(loss, has_aux=True)(p, k)
    gnorm = jnp.sqrt(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1))
    g = _normalize(g, grad_norm)
    updates, s = optimizer.update(g, s, p)
    p = optax.apply_updates(p, updates)
    if is_pixels:
      if step_ops is not None:
        p = step_ops(p, -g, i)  # ascent direction
      p = jnp.clip(p, 0.0, 1.0)
    return (p, s), {"objective": vals, "grad_norm": gnorm}

  (params, opt_state), hist = jax.lax.scan(
      step, (params, opt_state), start + jnp.arange(num_steps), unroll=unroll)
  return params, opt_state, hist


_STATIC = ("optimizer", "num_steps", "grad_norm", "unroll")
_run_jit = jax.jit(run_steps, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _run_sweep(model, objective, param, transform, step_ops, params, opt_state,
               key, start, *, optimizer, num_steps, grad_norm, unroll):
  fn = functools.partial(run_steps, model, optimizer=optimizer,
                         num_steps=num_steps, grad_norm=grad_norm, unroll=unroll)
  return jax.vmap(lambda o, t, so, p, s, k: fn(o, param, t, so, p, s, k, start))(
      objective, transform, step_ops, params, opt_state, key)


def _check_common(model, objective, param, steps, grad_norm, chunk):
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps must be a positive int; got {steps!r}.")
  if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
    raise ValueError(f"chunk must be a positive int or None; got {chunk!r}.")
  if grad_norm not in GRAD_NORMS:
    raise ValueError(f"grad_norm must be one of {GRAD_NORMS}; got {grad_norm!r}.")
  if not isinstance(param, (param_lib.Pixels, param_lib.FFT)):
    raise ValueError(f"param must come from cnnviz_jax.param; got {param!r}.")
  if min(param.hw) < model.min_size:
    raise ValueError(f"image size {param.hw} is below the model's minimum "
                     f"{model.min_size}x{model.min_size}.")
  return objectives_lib.resolve(objective, model, param.hw)


def _chunks(steps, chunk):
  if chunk is None:
    # The largest divisor of `steps` up to DEFAULT_CHUNK: every chunk has the
    # same length, hence one compilation.
    chunk = max(d for d in range(1, min(DEFAULT_CHUNK, steps) + 1) if steps % d == 0)
  chunk = min(chunk, steps)
  done = 0
  while done < steps:
    n = min(chunk, steps - done)
    yield done, n
    done += n


def optimize(model, objective: objectives_lib.Objective, param, *,
             key: Array, steps: int, optimizer: Union[str, optax.GradientTransformation] = "adam",
             learning_rate: float = 0.05, transform: Optional[Callable] = None,
             step_ops: Optional[Callable] = None, grad_norm: Optional[str] = None,
             init: Optional[Array] = None, chunk: Optional[int] = None,
             unroll: Optional[int] = None,
             progress: Optional[Callable[[int, dict], None]] = None) -> Result:
  """Maximizes `objective` over images, the whole loop jitted.

  Args:
    model: a `cnnviz_jax.models.Model`.
    objective: an `Objective` (maximized), e.g. `class_logit(c) - 1e-3 * l2()`.
    param: `param.pixels(n, hw)` or `param.fft(n, hw)`.
    key: PRNG key; step `i` uses `fold_in(key, i)` (init uses a split).
    steps: number of steps, >= 1.
    optimizer: a name (`adam`, `sgd`, `rmsprop`, `adamw`) whose learning rate
      is `learning_rate`, or any optax GradientTransformation (then
      `learning_rate` is ignored).
    learning_rate: > 0.
    transform: input transform `(key, images) -> images` (`transforms.compose`).
    step_ops: between-step operation `(images, ascent_grad, step) -> images`
      (pixels only); the clip to [0, 1] always follows.
    grad_norm: None, "l2", "mean_abs" (DeepDream), "max_abs" or "sign".
    init: float32 `[N, H, W, 3]` in [0, 1] starting images (pixels only).
    chunk: steps per compiled scan (None: the largest divisor of `steps` up
      to `DEFAULT_CHUNK`); `progress(done, history)` is called between chunks.
    unroll: `lax.scan` unroll factor (None: the whole chunk, no loop).

  Returns:
    `Result(images, params, history)`.
  """
  objective = _check_common(model, objective, param, steps, grad_norm, chunk)
  if step_ops is not None and param.kind != "pixels":
    raise ValueError("step_ops (blur, clipping, projections) act on pixels; "
                     "use param.pixels or drop them.")
  if isinstance(optimizer, str):
    optimizer = make_optimizer(optimizer)
    checks.check_positive(learning_rate, "learning_rate")
  init_key, loop_key = jax.random.split(key)
  if init is not None:
    checks.check_images(init, name="init")
    if tuple(init.shape) != (param.n, *param.hw, 3):
      raise ValueError(f"init has shape {tuple(init.shape)}; param expects "
                       f"{(param.n, *param.hw, 3)}.")
  params = param.init(init_key, init)
  opt_state = _init_opt_state(optimizer, params, learning_rate)
  hist = []
  for start, n in _chunks(steps, chunk):
    params, opt_state, h = _run_jit(
        model, objective, param, transform, step_ops, params, opt_state,
        loop_key, jnp.int32(start), optimizer=optimizer, num_steps=n,
        grad_norm=grad_norm, unroll=unroll or n)
    hist.append(h)
    if progress is not None:
      progress(start + n, h)
  history = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *hist)
  return Result(param.to_image(params), params, history)


def octave_sizes(hw: tuple[int, int], octaves: int, scale: float,
                 min_size: int) -> list[tuple[int, int]]:
  """Image sizes from smallest to `hw`, each `scale` times the previous; sizes
  below `min_size` are dropped."""
  sizes = []
  for o in range(octaves - 1, -1, -1):
    s = (round(hw[0] / scale ** o), round(hw[1] / scale ** o))
    if min(s) >= min_size and s not in sizes:
      sizes.append(s)
  return sizes or [tuple(hw)]


def multiscale(model, objective, images: Array, *, key: Array,
               steps_per_octave: int, octaves: int = 4, octave_scale: float = 1.4,
               **kwargs) -> tuple[Array, list[dict]]:
  """Optimizes a pyramid of octaves, smallest first, carrying the detail up
  (DeepDream, Mordvintsev et al. 2015): at each size, the start is the input
  resized plus the upsampled detail found so far.

  Args:
    images: float32 `[N, H, W, 3]` in [0, 1].
    steps_per_octave: steps at each size.
    octaves: number of sizes (>= 1); octave_scale: ratio between sizes (> 1).
    **kwargs: passed to `optimize` (optimizer, learning_rate, transform, ...).

  Returns:
    `(images [N, H, W, 3], [history per octave])`; the output has the input's size.
  """
  checks.check_images(images, min_size=model.min_size)
  if not isinstance(octaves, int) or octaves < 1:
    raise ValueError(f"octaves must be an int >= 1; got {octaves!r}.")
  if not octave_scale > 1.0:
    raise ValueError(f"octave_scale must be > 1; got {octave_scale!r}.")
  n, h, w, _ = images.shape
  detail = None
  histories = []
  for o, hw in enumerate(octave_sizes((h, w), octaves, octave_scale, model.min_size)):
    base = image.resize(images, hw, "linear")
    detail = jnp.zeros_like(base) if detail is None else image.resize(detail, hw, "linear")
    start = jnp.clip(base + detail, 0.0, 1.0)
    res = optimize(model, objective, param_lib.pixels(n, hw),
                   key=jax.random.fold_in(key, o), steps=steps_per_octave,
                   init=start, **kwargs)
    detail = res.images - base
    histories.append(res.history)
  # The last octave has the input's size: its result is the output.
  return res.images, histories
