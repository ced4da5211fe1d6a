"""The one optimization loop behind image synthesis and adversarial attacks.

    setup = engine.Setup(objectives.class_logit(3) - 0.3 * objectives.l2(),
                         transform=transforms.jitter(2),
                         step_ops=transforms.gaussian_blur(0.5, every=4),
                         learning_rate=0.05)
    result = engine.optimize(model, setup, param.pixels(1, (32, 32)),
                             key=key, steps=200, optimizer="adam")
    result.images      # float32 [1, 32, 32, 3] in [0, 1]
    result.history     # {"objective": [200, 1], "grad_norm": [200, 1]}

Each step `i`: image = param.to_image(params); the network sees
`setup.transform(fold_in(key, i), image)`; the objective (maximized) is
evaluated per image; an optax transformation turns its gradient into an
update (the learning rate of step `i` injected into the optimizer's state);
then `param.constrain` runs `setup.step_ops` on the pixels (blur, clipping, a
projection onto an attack's ball) and the parameterization's own constraint.
Attacks are this loop with a margin objective, `optimizer="sign"` (or
`make_optimizer("sgd", normalize="l2")`), a projection in `step_ops` and
`keep_best`; L-BFGS (`optimizer="lbfgs"`) runs its line search inside the
same jitted loop.

The steps run under `jit` in chunks of `chunk` steps, each a fully unrolled
`lax.scan`, with progress (step, objective, time left) logged between
chunks. Why not one long scan: on XLA:CPU a convolution gradient inside a
`while` loop ran 2.6x slower than the same step outside one (0.42 vs 0.16 s
per step, cifar_vgg, batch 10, measured here); an unrolled chunk has no loop.
The setup, the model and the parameterization are pytrees whose numbers are
traced, so one compiled chunk serves every target, weight and learning rate,
and `sweep_engine.sweep` vmaps it over a stack of setups.
"""

import functools
import time
from typing import Any, Callable, NamedTuple, Optional, Union

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as objectives_lib

Array = jax.Array
# A learning rate: a number, one per step `[steps]`, or an optax schedule
# `step -> rate` (e.g. `optax.cosine_decay_schedule(0.01, steps)`).
LearningRate = Union[float, Array, Callable[[Any], Any]]

# Steps per compiled chunk (see module doc): longer chunks compile longer
# (about 1.5 s more per unrolled cifar_vgg step on this CPU: 16 s for 5,
# 23 s for 10) without running faster.
DEFAULT_CHUNK = 5
# Seconds between progress lines: a two-minute run logs about a dozen.
LOG_EVERY_S = 10.0
# Keeps a zero gradient at zero in the normalizations below.
_TINY = 1e-12


class Setup(NamedTuple):
  """What to optimize: one point of a hyperparameter sweep.

  Attributes:
    objective: an `Objective`, maximized.
    transform: `(key, images) -> images` applied before the network sees the
      image (`transforms.compose(...)`), or None.
    step_ops: `(images, ascent, step) -> images` run on the pixels after each
      update, before the parameterization's constraint
      (`transforms.compose_steps(...)`, `transforms.project_linf(x, eps)`), or
      None.
    learning_rate: > 0: a number, an array `[steps]`, or an optax schedule.

  Every number is a traced leaf, so sweep points may differ in any of them.
  What is static (term kinds and layers, which transforms are present and in
  which order, leaf shapes) must be equal across a sweep; static bounds
  (`Jitter.max_pixels`, `GaussianBlur.max_radius`) are raised to the sweep's
  maximum (`sweep_engine.align_bounds`).
  """
  objective: objectives_lib.Objective
  transform: Any = None
  step_ops: Any = None
  learning_rate: Any = 0.05


class State(NamedTuple):
  """The loop's carry: parameters, optimizer state and, per image, the best
  objective value seen `[N]` with its parameters (`keep_best`)."""
  params: Any
  opt_state: Any
  best_value: Array
  best_params: Any


class Result(NamedTuple):
  """Output of `optimize`.

  Attributes:
    images: float32 `[N, H, W, 3]` in [0, 1] (`[S, N, H, W, 3]` for a sweep).
    params: the final (or, with `keep_best`, the best) parameters.
    history: `{"objective": [steps, N], "grad_norm": [steps, N]}`: the
      objective (of the transformed image) and the raw gradient L2 norm
      before each update (a leading `[S]` for a sweep).
  """
  images: Array
  params: Any
  history: dict


# ---------------------------------------------------------------- optimizers

_NORMALIZERS = {
    "l2": lambda g, axes: jnp.sqrt(jnp.sum(jnp.square(g), axes, keepdims=True)),
    # DeepDream divides the step by mean |g| (Mordvintsev et al. 2015).
    "mean_abs": lambda g, axes: jnp.mean(jnp.abs(g), axes, keepdims=True),
    "max_abs": lambda g, axes: jnp.max(jnp.abs(g), axes, keepdims=True),
}


def normalize_by(how: str) -> optax.GradientTransformation:
  """Divides each image's update by its norm: "l2" (L2 PGD's g / ||g||),
  "mean_abs" (DeepDream) or "max_abs". The leading axis is the image."""
  if how not in _NORMALIZERS:
    raise ValueError(f"normalize must be one of {tuple(_NORMALIZERS)}; got {how!r}.")

  def update(updates, state, params=None):
    del params
    def one(g):
      return g / (_NORMALIZERS[how](g, tuple(range(1, g.ndim))) + _TINY)
    return jax.tree_util.tree_map(one, updates), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _sign_sgd(learning_rate):
  # Steps along sign(g) (FGSM, L-inf PGD): optax's sign, then the rate.
  return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(learning_rate))


OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd, "rmsprop": optax.rmsprop,
              "adamw": optax.adamw, "sign": _sign_sgd, "lbfgs": optax.lbfgs}


@functools.lru_cache(maxsize=None)
def make_optimizer(name: str, normalize: Optional[str] = None
                   ) -> optax.GradientTransformationExtraArgs:
  """An optax optimizer by name (`OPTIMIZERS`), optionally after
  `normalize_by(normalize)`, whose learning rate the engine sets at every
  step (`optax.inject_hyperparams`). "lbfgs" takes its step sizes from its
  zoom line search (the learning rate is ignored; no `normalize`). Cached:
  equal arguments give the same object, hence the same compiled loop."""
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; valid names: "
                     f"{', '.join(OPTIMIZERS)} (or pass an optax GradientTransformation).")
  if name == "lbfgs":
    if normalize is not None:
      raise ValueError("lbfgs takes no normalize: its line search scales the step.")
    return optax.lbfgs()
  pre = () if normalize is None else (normalize_by(normalize),)
  return optax.inject_hyperparams(
      lambda learning_rate: optax.chain(*pre, OPTIMIZERS[name](learning_rate)))(
          learning_rate=0.0)


@functools.lru_cache(maxsize=None)
def as_optimizer(optimizer) -> optax.GradientTransformationExtraArgs:
  """A name or an optax transformation as a transformation that accepts the
  loop's extra arguments (value, grad, value_fn); cached like `make_optimizer`."""
  if isinstance(optimizer, str):
    return make_optimizer(optimizer)
  if not isinstance(optimizer, optax.GradientTransformation):
    raise ValueError(f"optimizer must be a name ({', '.join(OPTIMIZERS)}) or an "
                     f"optax GradientTransformation; got {optimizer!r}.")
  return optax.with_extra_args_support(optimizer)


def _with_learning_rate(opt_state, rate):
  """Sets the injected learning rate, if the optimizer has one."""
  hp = getattr(opt_state, "hyperparams", None)
  if hp is None or "learning_rate" not in hp:
    return opt_state
  return opt_state._replace(hyperparams=dict(
      hp, learning_rate=jnp.asarray(rate, hp["learning_rate"].dtype)))


def learning_rates(learning_rate: LearningRate, steps: int) -> Array:
  """The learning rate of every step, float32 `[steps]`; a schedule may
  reach 0 after its first step (optax's cosine decay does at its end)."""
  if callable(learning_rate):
    rates = np.asarray(jax.vmap(learning_rate)(jnp.arange(steps)), np.float32)
    rates = np.broadcast_to(rates, (steps,))
    if not np.all(np.isfinite(rates)) or np.any(rates < 0) or rates[0] <= 0:
      raise ValueError("a learning_rate schedule must give finite rates >= 0 and "
                       f"a first rate > 0; got {rates[:5]}...")
    return jnp.asarray(rates)
  checks.check_positive(learning_rate, "learning_rate")
  rate = jnp.asarray(learning_rate, jnp.float32)
  if rate.ndim not in (0, 1) or (rate.ndim == 1 and rate.shape[0] != steps):
    raise ValueError(f"learning_rate must be a number or one per step [{steps}]; "
                     f"got shape {tuple(rate.shape)}.")
  return jnp.broadcast_to(rate, (steps,))


# ---------------------------------------------------------------- the loop

def objective_values(model, objective, images: Array, network_images=None) -> Array:
  """The per-image objective `[N]` (`objectives.evaluate`): terms that read
  the `"input"` tap see `images`, the others `network_images` (the
  transformed images; default `images`), so priors judge the image itself."""
  if network_images is None:
    return objectives_lib.evaluate(objective, model, images)
  on_input = [t for t in objective.terms if "input" in t.taps]
  on_net = [t for t in objective.terms if "input" not in t.taps]
  parts = [objectives_lib.evaluate(objectives_lib.Objective(tuple(terms)), model, x)
           for terms, x in ((on_net, network_images), (on_input, images)) if terms]
  return sum(parts)


def _loss(model, setup, param, params, key):
  img = param.to_image(params)
  x = None if setup.transform is None else setup.transform(key, img)
  vals = objective_values(model, setup.objective, img, x)
  return -jnp.sum(vals), vals


def _select(better, new, old):
  """Per image (leading axis): `new` where `better` `[N]`, else `old`."""
  return jax.tree_util.tree_map(
      lambda a, b: jnp.where(better.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
      new, old)


def init_state(param, optimizer, key: Array, init: Optional[Array] = None) -> State:
  """The loop's starting `State`: `param.init(key, init)`, the optimizer's
  state, best values at -inf."""
  params = param.init(key, init)
  return State(params, optimizer.init(params),
               jnp.full((param.n,), -jnp.inf, jnp.float32), params)


def run_steps(model, setup: Setup, param, state: State, key: Array, start, *,
              optimizer, num_steps: int, keep_best: bool = False,
              unroll: Optional[int] = None) -> tuple[State, dict]:
  """Steps `start .. start + num_steps - 1` as one `lax.scan` (pure: jit and
  vmap freely). `setup.learning_rate` is a number or indexed by the step.

  Returns `(state, {"objective": [num_steps, N], "grad_norm": [num_steps, N]})`.
  """
  rates = jnp.asarray(setup.learning_rate, jnp.float32)

  def step(state, i):
    k = jax.random.fold_in(key, i)
    loss = functools.partial(_loss, model, setup, param)
    (value, vals), g = jax.value_and_grad(loss, has_aux=True)(state.params, k)
    gnorm = jnp.sqrt(sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1)
                         for x in jax.tree_util.tree_leaves(g)))
    best_value, best_params = state.best_value, state.best_params
    if keep_best:
      better = vals > best_value
      best_value = jnp.where(better, vals, best_value)
      best_params = _select(better, state.params, best_params)
    opt_state = _with_learning_rate(state.opt_state, rates[i] if rates.ndim else rates)
    updates, opt_state = optimizer.update(
        g, opt_state, state.params, value=value, grad=g,
        value_fn=lambda p: loss(p, k)[0])
    params = optax.apply_updates(state.params, updates)
    # The ascent direction in pixels, for step operations that weigh pixels
    # by their contribution (pixels only: `param.check` rejects the rest).
    ascent = jax.tree_util.tree_map(jnp.negative, g)
    params = param.constrain(params, setup.step_ops, ascent, i)
    return (State(params, opt_state, best_value, best_params),
            {"objective": vals, "grad_norm": gnorm})

  return jax.lax.scan(step, state, start + jnp.arange(num_steps),
                      unroll=unroll or num_steps)


def final_params(model, setup: Setup, param, state: State, key: Array, steps):
  """With `keep_best`: per image, the last params unless an earlier iterate
  scored higher (the last one is scored with the key of step `steps`)."""
  _, last = _loss(model, setup, param, state.params, jax.random.fold_in(key, steps))
  return _select(last >= state.best_value, state.params, state.best_params)


# The arguments of `run_steps` that fix the compiled program.
STATIC_ARGNAMES = ("optimizer", "num_steps", "keep_best", "unroll")
_run_jit = jax.jit(run_steps, static_argnames=STATIC_ARGNAMES)
_final_jit = jax.jit(final_params)


def prepare(model, setup: Setup, param, steps: int, chunk: Optional[int] = None
            ) -> Setup:
  """Checks a setup for `model` and `param` and resolves it: the objective's
  layer names and defaults (`objectives.resolve`), the learning rate as one
  per step `[steps]`."""
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps must be a positive int; got {steps!r}.")
  if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int)
                            or chunk < 1):
    raise ValueError(f"chunk must be a positive int or None; got {chunk!r}.")
  if not isinstance(setup, Setup):
    raise ValueError(f"setup must be an engine.Setup; got {type(setup).__name__}.")
  if not all(hasattr(param, a) for a in ("init", "to_image", "constrain", "check")):
    raise ValueError("param must be a parameterization (init, to_image, constrain, "
                     f"check), e.g. synthesis.param.pixels(n, hw); got {param!r}.")
  if min(param.hw) < model.min_size:
    raise ValueError(f"image size {param.hw} is below the model's minimum "
                     f"{model.min_size}x{model.min_size}.")
  param.check(setup.step_ops)
  return setup._replace(
      objective=objectives_lib.resolve(setup.objective, model, param.hw),
      learning_rate=learning_rates(setup.learning_rate, steps))


def chunks(steps: int, chunk: Optional[int]):
  """`(start, length)` of each compiled chunk. None: the largest divisor of
  `steps` up to `DEFAULT_CHUNK`, so every chunk has one length (one compile)."""
  if chunk is None:
    chunk = max(d for d in range(1, min(DEFAULT_CHUNK, steps) + 1) if steps % d == 0)
  chunk = min(chunk, steps)
  for start in range(0, steps, chunk):
    yield start, min(chunk, steps - start)


def _mean_last(history: dict, axis: int) -> float:
  """The mean objective at the last step of a chunk's history."""
  return float(jnp.mean(jnp.take(history["objective"], -1, axis=axis)))


def drive(run_chunk, state, steps: int, chunk: Optional[int], progress=None, *,
          history_axis: int = 0, name: str = "optimize"):
  """Runs `run_chunk(state, start, length) -> (state, history)` over the
  chunks; between chunks calls `progress(done, history_of_chunk)` and logs
  the step, the mean objective and the time left after the first chunk and
  then every `LOG_EVERY_S`.

  Returns `(state, history concatenated along history_axis)`."""
  t0 = last = time.monotonic()
  hist = []
  first_done, t_first = 0, t0
  for start, n in chunks(steps, chunk):
    state, h = run_chunk(state, start, n)
    hist.append(h)
    done = start + n
    if progress is not None:
      progress(done, h)
    # Under an outer jit the values are tracers: nothing to report.
    if not checks.is_concrete(h["objective"]):
      continue
    now = time.monotonic()
    if start == 0:
      # The first chunk includes compilation: report it at once (a run says
      # what it does within seconds), without a time-left guess from it.
      first_done, t_first = done, now
      last = now
      logging.info("%s: step %d/%d, objective %.4g, compiled and ran in %.1f s",
                   name, done, steps, _mean_last(h, history_axis), now - t0)
    elif now - last >= LOG_EVERY_S:
      last = now
      rate = (now - t_first) / (done - first_done)
      logging.info("%s: step %d/%d, objective %.4g, %.0f s so far, about %.0f s "
                   "left", name, done, steps, _mean_last(h, history_axis),
                   now - t0, rate * (steps - done))
  history = jax.tree_util.tree_map(
      lambda *x: jnp.concatenate(x, axis=history_axis), *hist)
  return state, history


def optimize(model, setup: Setup, param, *, key: Optional[Array], steps: int,
             optimizer: Union[str, optax.GradientTransformation] = "adam",
             init: Optional[Array] = None, keep_best: bool = False,
             chunk: Optional[int] = None, unroll: Optional[int] = None,
             progress: Optional[Callable[[int, dict], None]] = None) -> Result:
  """Maximizes `setup.objective` over images, the loop jitted in chunks.

  Args:
    model: a `cnnviz_jax.models.Model`.
    setup: a `Setup` (objective, transform, step_ops, learning_rate).
    param: a parameterization, e.g. `param.pixels(n, hw)` or `param.fft(n, hw)`.
    key: PRNG key; split into the init key and the loop key, whose
      `fold_in(., i)` is step `i`'s key. None only where nothing is drawn
      (an `init` and no transform).
    steps: number of steps, >= 1.
    optimizer: a name in `OPTIMIZERS` (learning rate from the setup), a
      `make_optimizer(name, normalize=...)`, or any optax
      GradientTransformation (the setup's learning rate is injected only if
      its state has `hyperparams["learning_rate"]`, as
      `optax.inject_hyperparams` makes).
    init: float32 `[N, H, W, 3]` in [0, 1] starting images (None: noise).
    keep_best: return, per image, the iterate with the highest objective
      seen instead of the last one (attacks; Croce & Hein 2020).
    chunk: steps per compiled chunk (None: the largest divisor of `steps`
      up to `DEFAULT_CHUNK`); `progress(done, history)` runs between chunks.
    unroll: `lax.scan` unroll factor (None: the whole chunk, no loop).

  Returns:
    `Result(images, params, history)`.
  """
  setup = prepare(model, setup, param, steps, chunk)
  tx = as_optimizer(optimizer)
  if key is None:
    if init is None or setup.transform is not None:
      raise ValueError("optimize needs a key to draw the starting noise or the "
                       "transforms; key=None works only with an init and no transform.")
    # Nothing in the loop draws from it (checked above): any key gives the
    # same result.
    key = jax.random.PRNGKey(0)
  checks.check_key(key)
  init_key, loop_key = jax.random.split(key)
  state = init_state(param, tx, init_key, init)

  def run_chunk(state, start, n):
    return _run_jit(model, setup, param, state, loop_key, jnp.int32(start),
                    optimizer=tx, num_steps=n, keep_best=keep_best,
                    unroll=unroll or n)

  state, history = drive(run_chunk, state, steps, chunk, progress)
  params = state.params
  if keep_best:
    params = _final_jit(model, setup, param, state, loop_key, jnp.int32(steps))
  return Result(param.to_image(params), params, history)
