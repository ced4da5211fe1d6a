"""Training a `Stylizer` on the perceptual losses (Johnson et al. 2016;
Dumoulin et al. 2017 for several styles in one network).

The loss is the style-transfer objective of `_transfer` with the network's
output in place of the optimized image: `style_weight * sum_l w_l gram_loss
+ content_weight * content_loss - tv_weight * tv`, on the loss network's
`default_layers`, negated and averaged over the batch. Each image of a batch
gets its own style (a shuffled cycle over the styles), so conditional
instance norm sees every style in every step (`gram_loss` takes one target
per image).

Content images: random crops, at several scales and flipped, of a pool of
photographs, plus CIFAR-10 images upsampled to the crop size (a blurry but
varied complement where no COCO is at hand). Batches are drawn on the host
from `numpy.random.default_rng((seed, step))`, so step `s` sees the same
batch whether or not the run was interrupted before it.

Work is never lost: every `checkpoint_every` steps the step, the parameters,
the optimizer state and the loss history go to `<workdir>/checkpoint.msgpack`
(atomically), and the stylizer to `<workdir>/stylizer.safetensors`. A run
killed at any moment resumes to the same parameters an uninterrupted run
reaches; `steps_per_run` ends a sitting early. Steps run in jitted chunks
(`make_chunk`, unrolled) of a fixed length that divides `log_every` and
`checkpoint_every`, on multiples of it; sittings end at chunk ends (or at
`steps`), so a killed or split run resumes at a chunk start and reaches bit
for bit the parameters of an uninterrupted one. Two cases agree only up to
rounding (which Adam's first steps amplify on parameters whose gradient is
near zero): another chunk length (`steps_per_call`, `log_every`,
`checkpoint_every` changed on resuming), and `steps` raised after a run
ended inside a chunk (the chunk is then finished with its first steps
masked, and the state that crossed the call boundary came out 1 ulp
apart from the one the uninterrupted chunk carried on with).
"""

import dataclasses
import functools
import json
import os
import time
from typing import Callable, Optional, Sequence

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import image as image_lib
from cnnviz_jax import io
from cnnviz_jax import objectives as O
from cnnviz_jax.models import checkpoint
from cnnviz_jax.style import _gram, _transfer
from cnnviz_jax.style import _stylizer as S
from cnnviz_jax.style._content import (  # noqa: F401 (re-exported)
    ContentPool, batch_styles, content_pool, sample_batch, stacked_batches)

Array = jax.Array

CHECKPOINT = "checkpoint.msgpack"
EXPORT = "stylizer.safetensors"
# Config fields a resumed run may change: they split or extend the run (or
# its logging) without altering any step already taken.
RESUMABLE = ("steps", "steps_per_run", "steps_per_call", "checkpoint_every",
             "log_every")
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What a training run does (stored in checkpoints and the exported file).

  Attributes:
    style_names: one name per style (the network's style order).
    channels, num_residual, noise_channels: the `Stylizer` architecture
      (noise: fresh uniform maps for every image of every step, drawn from
      `(seed, step)`).
    crop: side of the square content crops, pixels.
    batch: images per step.
    steps: total optimizer steps.
    learning_rate: Adam's (Johnson et al. 2016: 1e-3).
    style_weight, content_weight, tv_weight: the objective's weights.
    style_size: longer side of each painting when its Grams are taken.
    scales: longer sides the photographs are resized to before cropping.
    cifar_fraction: the share of each batch that is upsampled CIFAR-10.
    loss_network: zoo model name.
    seed: initialization and data order.
  """
  style_names: tuple
  channels: tuple = (16, 32, 64)
  num_residual: int = 3
  noise_channels: int = 0
  crop: int = 80
  batch: int = 4
  steps: int = 2000
  learning_rate: float = 2e-3
  style_weight: float = 2.0
  content_weight: float = 1.0
  tv_weight: float = 10.0
  style_size: int = 160
  scales: tuple = (96, 160, 256, 384)
  cifar_fraction: float = 0.25
  loss_network: str = "cifar_vgg"
  seed: int = 0

  def to_json(self) -> dict:
    return recipe_json(self)


def recipe_json(recipe) -> dict:
  """A recipe dataclass as JSON-able fields (tuples as lists)."""
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in dataclasses.asdict(recipe).items()}


def recipe_defaults(cls) -> dict:
  """A recipe dataclass's default fields as JSON-able values: what a stored
  recipe written before a field existed is read with."""
  return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
          for f in dataclasses.fields(cls)
          if f.default is not dataclasses.MISSING}


def check_recipe(r: Recipe) -> None:
  """Raises ValueError naming the first invalid field."""
  if not r.style_names:
    raise ValueError("style_names is empty; train on at least one style.")
  if len(r.channels) != 3 or any(int(c) < 1 for c in r.channels):
    raise ValueError(f"channels must be 3 widths >= 1; got {r.channels!r}.")
  for k in ("num_residual", "noise_channels", "batch", "steps", "crop",
            "style_size"):
    least = 0 if k in ("num_residual", "noise_channels") else 1
    if int(getattr(r, k)) < least:
      raise ValueError(f"{k} must be >= {least}; got {getattr(r, k)!r}.")
  for k in ("learning_rate",):
    if not getattr(r, k) > 0:
      raise ValueError(f"{k} must be > 0; got {getattr(r, k)!r}.")
  for k in ("style_weight", "content_weight", "tv_weight"):
    if not getattr(r, k) >= 0:
      raise ValueError(f"{k} must be >= 0; got {getattr(r, k)!r}.")
  if not 0.0 <= r.cifar_fraction <= 1.0:
    raise ValueError(f"cifar_fraction must be in [0, 1]; got {r.cifar_fraction!r}.")
  if any(s < r.crop for s in r.scales) or not r.scales:
    raise ValueError(f"scales must be longer sides >= crop {r.crop}; got {r.scales!r}.")


# ------------------------------------------------------------------- data

def batch_for_step(pool, recipe: Recipe, step: int):
  """`(images [B, crop, crop, 3], style indices [B])` of step `step`: a
  function of the seed and the step only."""
  rng = np.random.default_rng((recipe.seed, step))
  x = sample_batch(pool, rng, recipe.batch, recipe.crop, recipe.cifar_fraction)
  return x, batch_styles(rng, recipe.batch, len(recipe.style_names))


# ------------------------------------------------------------------- loss

def style_targets(model, styles: Sequence[Array], layers: Sequence[str],
                  size: int) -> list[Array]:
  """Per layer, the styles' Gram matrices stacked: `[S, C, C]`. Each style
  (`[h, w, 3]` or `[1, h, w, 3]` in [0, 1]) is resized to a longer side of
  `size` first."""
  per_layer = [[] for _ in layers]
  for s in styles:
    s = jnp.asarray(s, jnp.float32)
    s = s[None] if s.ndim == 3 else s
    hw = s.shape[1:3]
    k = size / max(hw)
    s = jnp.clip(image_lib.resize(s, (max(1, round(hw[0] * k)),
                                      max(1, round(hw[1] * k))), "linear"), 0.0, 1.0)
    for i, g in enumerate(_transfer.style_grams(model, [s], layers)):
      per_layer[i].append(g[0])
  return [jnp.stack(g) for g in per_layer]


def make_loss(stylizer: S.Stylizer, model, recipe: Recipe) -> Callable:
  """`loss(params, loss_params, targets, images, styles, step=0) -> (scalar,
  parts)`: the weighted perceptual loss averaged over the batch, and its
  unweighted parts `{"style", "content", "tv"}` (batch means; style and
  content are the relative errors of `_gram`, style averaged over the
  layers). `targets` are `style_targets` (per layer `[S, C, C]`), `styles`
  int `[B]`; `step` (int) draws the noise input of a stylizer with
  `noise_channels`, one map per image, from `(recipe.seed, step)`."""
  layers, content_layer = _transfer.default_layers(model)
  lw = [1.0 / len(layers)] * len(layers)  # Gatys et al. 2016: equal layers

  def loss(params, loss_params, targets, images, styles, step=0):
    w = jax.nn.one_hot(styles, stylizer.num_styles)
    noise = None
    if stylizer.noise_channels:
      key = jax.random.fold_in(jax.random.PRNGKey(recipe.seed), step)
      noise = jax.random.uniform(key, (*images.shape[:3], stylizer.noise_channels))
    out = stylizer.apply({"params": params}, images, w, noise)
    _, feats = model.apply(loss_params, images, taps=(content_layer,), logits=False)
    style_obj = _gram.style_loss(layers, [t[styles] for t in targets], lw)
    content_obj = _gram.content_loss(
        content_layer, jax.lax.stop_gradient(feats[content_layer]))
    tv_obj = O.tv(2.0)
    acts = O.activations(style_obj + content_obj + tv_obj, model, out,
                         params=loss_params)
    parts = {"style": -style_obj(acts).mean(), "content": -content_obj(acts).mean(),
             "tv": tv_obj(acts).mean()}
    total = (recipe.style_weight * parts["style"] + recipe.content_weight *
             parts["content"] + recipe.tv_weight * parts["tv"])
    return total, parts

  return loss


class _ByIdentity:
  """A hashable handle on an unhashable object (a `Model` holds its
  parameters), equal only to itself: the cache below keeps it alive, so its
  id is never reused while cached."""

  def __init__(self, obj):
    self.obj = obj

  def __hash__(self):
    return id(self.obj)

  def __eq__(self, other):
    return isinstance(other, _ByIdentity) and other.obj is self.obj


@functools.lru_cache(maxsize=8)
def _cached_chunk(stylizer, model_handle, recipe):
  # One jitted chunk per (network, loss network, recipe) in a process (it
  # compiles once per chunk length): a resumed sitting, or a test's several
  # short runs, compile once.
  loss_fn = make_loss(stylizer, model_handle.obj, recipe)
  return make_chunk(loss_fn, optax.adam(recipe.learning_rate))


def make_chunk(loss_fn, optimizer):
  """`chunk(params, opt_state, loss_params, targets, *inputs, active) ->
  (params, opt_state, metrics)`: one optimizer step per leading index of
  the `inputs` `[n, ...]` (e.g. images and styles: the batches of n
  consecutive steps, `loss_fn`'s arguments after `targets`) where bool
  `active` `[n]` is set (elsewhere the state passes
  through unchanged), jitted, the n steps unrolled (XLA:CPU ran them as a
  loop ~6x slower, and 10 steps unrolled 1.19x faster than 10 calls of a
  one-step function: 88.8 vs 106.1 ms a step, the shipped recipe's 80 px
  batch of 4); the params and optimizer state donated. `metrics` maps
  `"loss"` and the loss's parts to `[n]` arrays. A new `n` compiles anew."""

  def chunk(params, opt_state, loss_params, targets, *batches):
    def one(state, batch):
      params, opt_state = state
      *inputs, on = batch
      (total, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, loss_params, targets, *inputs)
      updates, new_opt = optimizer.update(grads, opt_state, params)
      new = (optax.apply_updates(params, updates), new_opt)
      state = jax.tree_util.tree_map(lambda a, b: jnp.where(on, a, b), new, state)
      return state, {"loss": total, **parts}

    (params, opt_state), metrics = jax.lax.scan(
        one, (params, opt_state), batches, unroll=True)
    return params, opt_state, metrics

  return jax.jit(chunk, donate_argnums=(0, 1))


# --------------------------------------------------------------- training

def _read(path: str) -> dict:
  return checkpoint.read_training_state(path, _FORMAT)


def _check_resume(old: dict, new: dict, step: int, path: str,
                  defaults: dict) -> None:
  old = {**{k: v for k, v in defaults.items() if k in new}, **old}
  changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
             for k in sorted(set(old) | set(new))
             if k not in RESUMABLE and old.get(k) != new.get(k)]
  if new["steps"] < step:
    changed.append(f"steps: {new['steps']}, below the {step} steps already done")
  if changed:
    raise ValueError(f"cannot resume {path}: the recipe differs in fields that "
                     "alter the run:\n  " + "\n  ".join(changed) +
                     f"\nOnly {', '.join(RESUMABLE)} may change (steps upwards); "
                     "use another workdir for a new recipe.")


def check_loop_args(steps_per_run, checkpoint_every, log_every,
                    steps_per_call=1) -> None:
  """Raises ValueError naming a loop argument below its minimum."""
  for k, v in (("checkpoint_every", checkpoint_every), ("log_every", log_every),
               ("steps_per_call", steps_per_call)):
    if int(v) < 1:
      raise ValueError(f"{k} must be >= 1; got {v!r}.")
  if steps_per_run is not None and int(steps_per_run) < 1:
    raise ValueError(f"steps_per_run must be >= 1 or None; got {steps_per_run!r}.")


def chunk_length(steps_per_call: int, log_every: int,
                 checkpoint_every: int) -> int:
  """Steps per compiled chunk: the largest divisor of both `log_every` and
  `checkpoint_every` up to `steps_per_call`, so logs and checkpoints fall on
  chunk ends."""
  return max(d for d in range(1, int(steps_per_call) + 1)
             if log_every % d == 0 and checkpoint_every % d == 0)


def run_training(workdir: str, meta: dict, params, opt_state,
                 advance: Callable, export: Callable[[object, int], None], *,
                 steps_per_run: Optional[int], checkpoint_every: int,
                 log_every: int, progress: Optional[Callable[[dict], None]],
                 steps_per_call: int = 1,
                 defaults: Optional[dict] = None) -> dict:
  """The resumable loop of every feed-forward network trained here.

  Args:
    workdir: checkpoint folder; `<workdir>/checkpoint.msgpack` is resumed
      when there (its stored `meta` must equal `meta` but for `RESUMABLE`
      fields; `steps` may grow).
    meta: the run's recipe as JSON-able fields, with `steps`.
    params, opt_state: the initial state (the template a checkpoint fills).
    advance: `advance(params, opt_state, first, active) -> (params,
      opt_state, metrics)`, the optimizer steps `first + i` for which bool
      `active[i]` is set (`active` `[chunk_length(...)]`), each on its batch
      (a function of the seed and the step only, so a resumed run takes the
      same steps), in one call (`make_chunk`); `metrics` maps `"loss"` and
      any other scalar to one value per position.
    export: `export(params, step)` writes the trained network (atomically);
      called with every checkpoint.
    steps_per_run, checkpoint_every, log_every, progress, steps_per_call:
      as in `train`.
    defaults: recipe fields a stored recipe may lack (it was written before
      they existed), read as these values (`recipe_defaults`).

  Returns:
    `{"step", "done", "history", "seconds", "params"}`.
  """
  check_loop_args(steps_per_run, checkpoint_every, log_every, steps_per_call)
  os.makedirs(workdir, exist_ok=True)
  io.remove_stale_temps(workdir)
  total = int(meta["steps"])
  meta = dict(meta, steps_per_run=steps_per_run, steps_per_call=steps_per_call,
              checkpoint_every=checkpoint_every, log_every=log_every)
  state = {"step": 0, "params": params, "opt_state": opt_state, "history": []}
  path = os.path.join(workdir, CHECKPOINT)
  if os.path.exists(path):
    stored = _read(path)
    _check_resume(json.loads(stored["recipe"]), meta, int(stored["step"]), path,
                  defaults or {})
    template = {"params": params, "opt_state": opt_state}
    restored = flax.serialization.from_state_dict(
        template, {"params": stored["params"], "opt_state": stored["opt_state"]})
    state = {"step": int(stored["step"]),
             "params": jax.tree_util.tree_map(jnp.asarray, restored["params"]),
             "opt_state": jax.tree_util.tree_map(jnp.asarray, restored["opt_state"]),
             "history": json.loads(stored["history"])}
    logging.info("resumed %s at step %d", path, state["step"])

  def save():
    blob = flax.serialization.msgpack_serialize({
        "format": _FORMAT, "step": state["step"],
        "params": flax.serialization.to_state_dict(state["params"]),
        "opt_state": flax.serialization.to_state_dict(state["opt_state"]),
        "history": json.dumps(state["history"]), "recipe": json.dumps(meta)})
    io.write_bytes(path, blob)
    export(state["params"], state["step"])

  length = chunk_length(steps_per_call, log_every, checkpoint_every)
  start, t0 = state["step"], time.time()
  stop = total if steps_per_run is None else min(
      total, -(-(start + int(steps_per_run)) // length) * length)  # a chunk end
  window = []

  def log(e):
    parts = ", ".join(f"{k} {e[k]:.4g}" for k in e
                      if k not in ("step", "loss", "seconds_per_step", "seconds_left"))
    logging.info("step %d/%d  loss %.4f (%s)  %.2f s/step, %.0f s left",
                 e["step"], total, e["loss"], parts, e["seconds_per_step"],
                 e["seconds_left"])

  report = progress or log
  p, o = state["params"], state["opt_state"]
  done = start
  while done < stop:
    first = done - done % length  # chunks sit on multiples of `length`
    end = min(first + length, stop)
    active = np.zeros(length, bool)
    active[done - first:end - first] = True
    p, o, metrics = advance(p, o, first, active)
    window.append({k: np.asarray(v)[active] for k, v in metrics.items()})
    done = end
    if done % log_every == 0 or done == stop:
      means = {k: float(np.mean(np.concatenate([m[k] for m in window])))
               for k in window[0]}
      window = []
      entry = {"step": done, **means}
      state["history"].append(entry)
      rate = (time.time() - t0) / (done - start)
      report(dict(entry, seconds_per_step=rate, seconds_left=rate * (total - done)))
    if done % checkpoint_every == 0 or done == stop:
      state.update(step=done, params=p, opt_state=o)
      save()
  state.update(params=p, opt_state=o)
  if start == stop:  # nothing left to run: (re)write the exported network
    save()
  return {"step": state["step"], "done": state["step"] >= total,
          "history": state["history"], "seconds": time.time() - t0,
          "params": state["params"]}


def train(recipe: Recipe, model, styles: Sequence[Array], pool: ContentPool,
          workdir: str, *, steps_per_run: Optional[int] = None,
          checkpoint_every: int = 100, log_every: int = 20,
          progress: Optional[Callable[[dict], None]] = None,
          steps_per_call: int = 10) -> dict:
  """Trains (or resumes) a conditional-IN `Stylizer` over `styles`.

  Args:
    recipe: the run (`Recipe`).
    model: the loss network (`models.load(recipe.loss_network)`).
    styles: one painting per style, float `[h, w, 3]` in [0, 1].
    pool: the content images (`content_pool`).
    workdir: checkpoint folder; a checkpoint there is resumed.
    steps_per_run: stop after this many steps in this call, rounded up to
      the end of a chunk (None: run to `recipe.steps`); the checkpoint is
      written first.
    checkpoint_every: steps between checkpoints.
    log_every: steps between history entries and progress reports.
    progress: called with each history entry plus `seconds_left` (None:
      `absl.logging`).
    steps_per_call: the most steps per jitted call (`chunk_length`:
      unrolled, so longer chunks compile longer, once).

  Returns:
    `{"step", "done", "history", "seconds", "params", "stylizer"}`;
    `history` lists `{"step", "loss", "style", "content", "tv"}` (means over
    the last `log_every` steps). The stylizer is at
    `<workdir>/stylizer.safetensors`.
  """
  check_recipe(recipe)
  if len(styles) != len(recipe.style_names):
    raise ValueError(f"{len(styles)} style images for {len(recipe.style_names)} "
                     "style names.")
  check_loop_args(steps_per_run, checkpoint_every, log_every, steps_per_call)
  stylizer = S.Stylizer(num_styles=len(recipe.style_names),
                        channels=tuple(recipe.channels),
                        num_residual=recipe.num_residual,
                        noise_channels=recipe.noise_channels)
  layers, _ = _transfer.default_layers(model)
  targets = style_targets(model, styles, layers, recipe.style_size)
  optimizer = optax.adam(recipe.learning_rate)
  params = stylizer.init_params(jax.random.PRNGKey(recipe.seed),
                                (recipe.crop, recipe.crop))
  # `steps` does not enter the step: runs that differ only there share it.
  chunk_fn = _cached_chunk(stylizer, _ByIdentity(model),
                           dataclasses.replace(recipe, steps=1))

  def advance(p, o, first, active):
    x, s = stacked_batches(lambda step: batch_for_step(pool, recipe, step),
                           first, len(active))
    steps = np.arange(first, first + len(active), dtype=np.int32)
    return chunk_fn(p, o, model.params, targets, x, s, steps, active)

  def export(p, step):
    S.save_stylizer(os.path.join(workdir, EXPORT), stylizer, p,
                    style_names=recipe.style_names,
                    recipe=dict(recipe.to_json(), trained_steps=step))

  out = run_training(workdir, recipe.to_json(), params, optimizer.init(params),
                     advance, export, steps_per_run=steps_per_run,
                     checkpoint_every=checkpoint_every, log_every=log_every,
                     progress=progress, steps_per_call=steps_per_call,
                     defaults=recipe_defaults(Recipe))
  return dict(out, stylizer=stylizer)
