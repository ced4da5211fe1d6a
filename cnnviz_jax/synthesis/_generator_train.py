"""Training the generator prior: a network that inverts a classifier's fully
connected features (Dosovitskiy & Brox 2016), as Nguyen et al. (2016b) use it.

For a real image `y` with code `h = phi_code(y)` (e.g. `relu6`), the generator
minimizes

    w_pix * |G(h) - y|^2 + w_feat * |C(G(h)) - C(y)|^2 / |C(y)|^2
        + w_adv * softplus(-D(G(h)))

with `C` a conv layer of the same classifier (the feature, or perceptual,
loss) and `D` a small discriminator trained at the same time with the usual
logistic loss (real vs `G(h)`). Both use Adam. The classifier is frozen.

Work is never lost: every `checkpoint_every` steps (and at the end of a run)
the state, the logged history and the config go to
`<workdir>/checkpoint.msgpack`, written atomically. The data order and every
random draw are functions of (seed, step), so a run stopped anywhere resumes
to the state an uninterrupted run reaches. A changed config is refused on
resume, except `steps_per_run` (and more `steps` is refused too: the
learning-rate schedule depends on it).
"""

import json
import os
import time
from typing import Any, NamedTuple, Optional

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import _checks as checks
from cnnviz_jax import io
from cnnviz_jax.models import checkpoint, registry
from cnnviz_jax.synthesis import _generator as gen

CHECKPOINT = "checkpoint.msgpack"
HISTORY = "history.json"  # a readable copy of the history in CHECKPOINT
# Config keys a resumed run may change: they split the run without altering
# the steps taken.
RESUMABLE_KEYS = ("steps_per_run", "log_every")
_CHECKPOINT_FORMAT = 1
# Keeps the relative feature loss finite for an all-zero target batch.
_FEATURE_EPS = 1e-8
# The code's mean and standard deviation (the random starts of the
# `generator` parameterization) come from this many training images, evenly
# spaced: 10,000 estimate 256 means to about 1% of a standard deviation, in
# about a minute of forward passes on the CPU here.
_STATS_IMAGES = 10_000
# Images per jitted forward pass when computing those statistics.
_STATS_BATCH = 500
REQUIRED_KEYS = (
    "model", "weights", "data", "train_limit", "seed", "code_layer",
    "feature_layer", "widths", "disc_widths", "batch_size", "steps",
    "steps_per_run", "steps_per_call", "learning_rate", "disc_learning_rate",
    "beta1", "warmup_steps", "pixel_weight", "feature_weight",
    "adversarial_weight", "log_every", "checkpoint_every")


class TrainState(NamedTuple):
  """Everything a step changes (a pytree).

  Attributes:
    step: int32 scalar, steps done.
    g_params, d_params: generator and discriminator parameters.
    g_opt, d_opt: their optax states.
    code_low, code_high: float32 `[D]`, per-dimension range of the codes of
      the training images seen so far.
  """
  step: Any
  g_params: Any
  d_params: Any
  g_opt: Any
  d_opt: Any
  code_low: Any
  code_high: Any


def check_config(cfg) -> None:
  """Raises ValueError naming every missing or invalid key of a generator
  training config (`experiments/configs/train_generator.py`)."""
  problems = checks.ConfigProblems(cfg, REQUIRED_KEYS,
                                   "experiments/configs/train_generator.py")
  need, is_int, is_num = problems.need, checks.is_int, checks.is_number
  need(cfg.model in registry.names(), "model", f"one of {registry.names()}")
  problems.integers("batch_size", "steps", "steps_per_call", "log_every",
                    "checkpoint_every")
  problems.integers("steps_per_run", "train_limit", "warmup_steps", minimum=0,
                    note=" (0: none)")
  need(is_int(cfg.seed), "seed", "an integer")
  for k in ("learning_rate", "disc_learning_rate"):
    need(is_num(cfg[k]) and cfg[k] > 0, k, "a number > 0")
  need(is_num(cfg.beta1) and 0 <= cfg.beta1 < 1, "beta1", "in [0, 1)")
  for k in ("pixel_weight", "feature_weight", "adversarial_weight"):
    need(is_num(cfg[k]) and cfg[k] >= 0, k, "a number >= 0")
  for k in ("widths", "disc_widths"):
    need(len(cfg[k]) >= 1 and all(is_int(w) and w > 0 for w in cfg[k]), k,
         "a non-empty list of integers > 0")
  problems.raise_if_any("generator training config")


def _check_layers(model, cfg):
  """The canonical code and feature layers; the code must be a vector."""
  try:
    code_layer = model.resolve(cfg.code_layer)
    feature_layer = model.resolve(cfg.feature_layer)
  except ValueError as e:
    raise ValueError(f"config.code_layer/feature_layer: {e}") from e
  if len(model.layer_shape(code_layer)) != 1:
    raise ValueError(f"config.code_layer {code_layer!r} must be a fully "
                     "connected layer (a vector per image); got shape "
                     f"{model.layer_shape(code_layer)}.")
  if len(model.layer_shape(feature_layer)) != 3:
    raise ValueError(f"config.feature_layer {feature_layer!r} must be a conv "
                     "layer ([h, w, C] per image).")
  return code_layer, feature_layer


def _optimizer(lr: float, cfg):
  """Adam (beta1 from the config: 0.5 steadies the adversarial game, Radford
  et al. 2016) with linear warmup and cosine decay over `cfg.steps`."""
  sched = optax.warmup_cosine_decay_schedule(
      0.0, lr, max(cfg.warmup_steps, 1), max(cfg.steps, cfg.warmup_steps + 1))
  return optax.adam(sched, b1=cfg.beta1)


def _read_checkpoint(path: str) -> dict:
  return checkpoint.read_training_state(
      path, _CHECKPOINT_FORMAT, json_fields=("config", "history"),
      what="generator checkpoint")


def _check_resume(old: dict, cfg, path: str) -> None:
  current = json.loads(cfg.to_json())
  keys = sorted((set(old) | set(current)) - set(RESUMABLE_KEYS))
  changed = [f"{k}: {old.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
             for k in keys if old.get(k) != current.get(k)]
  if changed:
    raise ValueError(
        f"cannot resume {path}: the config differs from the one it was "
        "trained with:\n  " + "\n  ".join(changed) + f"\nOnly "
        f"{', '.join(RESUMABLE_KEYS)} may change; use another --workdir.")


def _write_checkpoint(path: str, state: TrainState, cfg, history) -> None:
  blob = flax.serialization.msgpack_serialize({
      "format": _CHECKPOINT_FORMAT,
      "state": flax.serialization.to_state_dict(jax.device_get(state)),
      "config": cfg.to_json(), "history": json.dumps(history)})
  io.write_bytes(path, blob)
  io.write_json(os.path.join(os.path.dirname(path), HISTORY), history)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
  """The training images of `step`: a fresh permutation of `n` per epoch
  (seeded by `(seed, epoch)`), read in order; the tail that does not fill a
  batch is skipped."""
  per_epoch = n // batch_size
  epoch, i = divmod(step, per_epoch)
  perm = np.random.default_rng([seed, epoch]).permutation(n)
  return perm[i * batch_size:(i + 1) * batch_size]


def code_statistics(model, code_layer: str, images: np.ndarray):
  """Mean and standard deviation `[D]` of `code_layer` over up to
  `_STATS_IMAGES` of `images` (uint8 `[N, H, W, 3]`), evenly spaced."""
  idx = np.linspace(0, len(images) - 1, min(len(images), _STATS_IMAGES)).astype(int)
  forward = jax.jit(lambda x: model.apply(
      model.params, x.astype(jnp.float32) / 255.0, taps=(code_layer,),
      logits=False)[1][code_layer])
  codes = np.concatenate([np.asarray(forward(jnp.asarray(images[idx[i:i + _STATS_BATCH]])))
                          for i in range(0, len(idx), _STATS_BATCH)])
  return codes.mean(0).astype(np.float32), codes.std(0).astype(np.float32)


def train_generator(cfg, workdir: str, output: Optional[str] = None, *,
                    dataset=None) -> dict:
  """Trains a generator on `cfg.model`'s features (resuming from `workdir`).

  Args:
    cfg: a config (`experiments/configs/train_generator.py`).
    workdir: folder of the checkpoint and `history.json`.
    output: optional path of the trained generator (safetensors, read by
      `synthesis.load_generator`).
    dataset: optional uint8 `[N, H, W, 3]` training images used instead of
      `cfg.data` (tests).

  Returns:
    `{"steps_done": s, "finished": bool, "history": [...]}` plus the last
    logged losses, the training seconds of this run and the code range.
  """
  check_config(cfg)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"workdir {workdir} exists and is not a folder.")
  if output is not None and os.path.isdir(output):
    raise ValueError(f"output {output} is a folder; give a .safetensors path.")
  model = registry.load_or_init(
      cfg.model, cfg.weights, key=jax.random.PRNGKey(cfg.seed))
  code_layer, feature_layer = _check_layers(model, cfg)
  os.makedirs(workdir, exist_ok=True)
  for stale in io.remove_stale_temps(workdir):
    logging.info("removed %s, left by a run killed while writing", stale)
  if dataset is None:
    from cnnviz_jax.data import load_cifar10
    dataset, _ = load_cifar10(cfg.data, "train", cfg.train_limit or None)
  images = np.asarray(dataset)
  size = model.input_size[0]
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (
      size, size, 3):
    raise ValueError(f"training images must be uint8 [N, {size}, {size}, 3]; "
                     f"got {images.dtype} {images.shape}.")
  if len(images) < cfg.batch_size:
    raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(images)} "
                     "training images.")
  widths = tuple(int(w) for w in cfg.widths)
  if size % 2 ** (len(widths) - 1):
    raise ValueError(f"image size {size} must be divisible by "
                     f"2**(len(widths) - 1) = {2 ** (len(widths) - 1)}.")
  code_dim = model.layer_shape(code_layer)[0]
  g_net = gen.Generator(size, widths)
  d_net = gen.Discriminator(tuple(int(w) for w in cfg.disc_widths))
  g_tx = _optimizer(cfg.learning_rate, cfg)
  d_tx = _optimizer(cfg.disc_learning_rate, cfg)

  def create():
    kg, kd = jax.random.split(jax.random.PRNGKey(cfg.seed))
    g = g_net.init(kg, jnp.zeros((1, code_dim)))["params"]
    d = d_net.init(kd, jnp.zeros((1, size, size, 3)))["params"]
    return TrainState(jnp.zeros((), jnp.int32), g, d, g_tx.init(g),
                      d_tx.init(d), jnp.full((code_dim,), jnp.inf),
                      jnp.full((code_dim,), -jnp.inf))

  history = []
  ckpt = os.path.join(workdir, CHECKPOINT)
  if os.path.exists(ckpt):
    stored = _read_checkpoint(ckpt)
    _check_resume(stored["config"], cfg, ckpt)
    state = flax.serialization.from_state_dict(jax.eval_shape(create),
                                               stored["state"])
    state = jax.tree_util.tree_map(jnp.asarray, state)
    history = stored["history"]
    logging.info("resumed from %s at step %d", ckpt, int(state.step))
  else:
    state = create()

  mparams = model.params
  w_pix, w_feat, w_adv = (cfg.pixel_weight, cfg.feature_weight,
                          cfg.adversarial_weight)

  def one_step(state: TrainState, key, x_u8):
    x = x_u8.astype(jnp.float32) / 255.0
    # Horizontal flips: free variety; the classifier was trained with them.
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    x = jnp.where(flip, x[:, :, ::-1], x)
    _, taps = model.apply(mparams, x, taps=(code_layer, feature_layer),
                          logits=False)
    code, target = taps[code_layer], taps[feature_layer]

    def g_loss(g):
      fake = g_net.apply({"params": g}, code)
      _, t = model.apply(mparams, fake, taps=(feature_layer,), logits=False)
      pix = jnp.mean((fake - x) ** 2)
      feat = jnp.mean((t[feature_layer] - target) ** 2) / (
          jnp.mean(target ** 2) + _FEATURE_EPS)
      adv = jnp.mean(jax.nn.softplus(-d_net.apply({"params": state.d_params},
                                                  fake)))
      return w_pix * pix + w_feat * feat + w_adv * adv, (fake, pix, feat, adv)

    (g_total, (fake, pix, feat, adv)), g_grad = jax.value_and_grad(
        g_loss, has_aux=True)(state.g_params)
    fake = jax.lax.stop_gradient(fake)

    def d_loss(d):
      real_logit = d_net.apply({"params": d}, x)
      fake_logit = d_net.apply({"params": d}, fake)
      return jnp.mean(jax.nn.softplus(-real_logit)) + jnp.mean(
          jax.nn.softplus(fake_logit))

    d_total, d_grad = jax.value_and_grad(d_loss)(state.d_params)
    g_upd, g_opt = g_tx.update(g_grad, state.g_opt, state.g_params)
    d_upd, d_opt = d_tx.update(d_grad, state.d_opt, state.d_params)
    state = TrainState(
        state.step + 1, optax.apply_updates(state.g_params, g_upd),
        optax.apply_updates(state.d_params, d_upd), g_opt, d_opt,
        jnp.minimum(state.code_low, code.min(0)),
        jnp.maximum(state.code_high, code.max(0)))
    return state, jnp.stack([g_total, pix, feat, adv, d_total])

  base_key = jax.random.PRNGKey(cfg.seed)

  # XLA:CPU runs loops whose bodies hold conv weight gradients far slower than
  # the same steps unrolled (README, "XLA:CPU notes"): chunks are unrolled.
  @jax.jit
  def train_chunk(state, xs):
    def body(state, x):
      return one_step(state, jax.random.fold_in(base_key, state.step), x)
    return jax.lax.scan(body, state, xs, unroll=True)

  names = ("loss", "pixel", "feature", "adversarial", "discriminator")
  start = int(state.step)
  stop = cfg.steps if not cfg.steps_per_run else min(
      cfg.steps, start + cfg.steps_per_run)
  t0 = time.time()
  sums, count, last_ckpt = np.zeros(len(names)), 0, start
  step = start
  while step < stop:
    n = min(cfg.steps_per_call, stop - step)
    xs = np.stack([images[batch_indices(cfg.seed, s, len(images),
                                        cfg.batch_size)]
                   for s in range(step, step + n)])
    state, losses = train_chunk(state, jnp.asarray(xs))
    sums += np.asarray(losses).sum(0)
    count += n
    step += n
    if step % cfg.log_every < n or step == stop:
      avg = sums / count
      entry = {"step": step, **{k: float(v) for k, v in zip(names, avg)}}
      history.append(entry)
      rate = (time.time() - t0) / (step - start)
      logging.info("step %d/%d %s  %.2f s/step, %.0f s left", step, cfg.steps,
                   " ".join(f"{k} {v:.4f}" for k, v in zip(names, avg)),
                   rate, rate * (cfg.steps - step))
      sums, count = np.zeros(len(names)), 0
    if step - last_ckpt >= cfg.checkpoint_every or step == stop:
      _write_checkpoint(ckpt, state, cfg, history)
      last_ckpt = step
  seconds = time.time() - t0
  finished = int(state.step) >= cfg.steps
  result = {"steps_done": int(state.step), "finished": finished,
            "seconds_this_run": seconds, "history": history,
            "code_layer": code_layer, "feature_layer": feature_layer}
  if finished and output:
    mean, std = code_statistics(model, code_layer, images)
    prior = gen.GeneratorPrior(
        jax.device_get(state.g_params), np.asarray(state.code_low),
        np.asarray(state.code_high), mean, std, cfg.model, code_layer, size,
        widths)
    gen.save_generator(output, prior, {
        "source": "experiments/train_generator.py", "config": cfg.to_json(),
        "final_losses": json.dumps(history[-1] if history else {})})
    logging.info("wrote %s", output)
  return result
