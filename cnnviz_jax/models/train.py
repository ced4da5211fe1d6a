"""Training a zoo model on CIFAR-10: the shipped `cifar_vgg` (`tiny` in tests).

The training network is the model's layers with a BatchNorm (a `bn` layer)
after every convolution, run by the one interpreter (`core.SequentialNet`,
with `batch_stats=True`). At export the BatchNorms are folded into the
convolutions, so the written model is the plain architecture of `models.zoo`
and computes exactly what was evaluated. Random crop (4-pixel reflect padding)
and horizontal flip run on the device inside the jitted step.

Work is never lost: after every epoch the training state, the history and the
config go to one file, `<workdir>/checkpoint.msgpack`, written atomically
(fsynced, then renamed into place). A run killed at any moment resumes from
its last epoch to the same weights and history as an uninterrupted run.
Resuming checks that the config and the data are those the checkpoint was
made with; only `epochs` (upwards) and `epochs_per_run` may change.
"""

import hashlib
import json
import os
import time
from typing import Any, Optional

from absl import logging
import flax
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import _checks as checks
from cnnviz_jax import image, io
from cnnviz_jax.models import checkpoint, core, registry

CHECKPOINT = "checkpoint.msgpack"
HISTORY = "history.json"  # a readable copy of the history in CHECKPOINT
# Config keys a resumed run may change: they extend or split the run without
# altering the steps already taken (`epochs` only upwards).
RESUMABLE_KEYS = ("epochs", "epochs_per_run")
# Running statistics: new = 0.9 * old + 0.1 * batch (flax's default; torch's
# momentum=0.1 is the same average).
BN_MOMENTUM = 0.9
BN_EPS = 1e-5  # torch's BatchNorm2d default
# Images per jitted evaluation call (bounded memory on any device).
EVAL_BATCH = 500
_CHECKPOINT_FORMAT = 1


class TrainState(train_state.TrainState):
  """flax's TrainState (`step`, `params`, `opt_state`) plus the BatchNorm
  running statistics `{bn name: {"mean", "var"}}`."""
  batch_stats: Any


def training_layers(name: str) -> tuple:
  """The layers of zoo model `name` with a `bn` after each conv (`convX_Y` is
  followed by `bnX_Y`)."""
  out = []
  for layer in registry.spec(name).layers:
    out.append(layer)
    if layer.kind == "conv":
      out.append(core.Layer("bn" + layer.name[len("conv"):], "bn", "",
                            (("eps", BN_EPS),)))
  return tuple(out)


def _split(full):
  """Training-network params -> (trainable params, BatchNorm statistics)."""
  params, stats = {}, {}
  for name, leaves in full.items():
    if name.startswith("bn"):
      stats[name] = {k: leaves[k] for k in ("mean", "var")}
      leaves = {k: leaves[k] for k in ("scale", "bias")}
    params[name] = dict(leaves)
  return params, stats


def merge(params, batch_stats):
  """(trainable params, BatchNorm statistics) -> training-network params."""
  return {name: {**leaves, **batch_stats.get(name, {})}
          for name, leaves in params.items()}


def fold_batchnorm(params, batch_stats, eps: float = BN_EPS):
  """Folds each `bnX_Y` into `convX_Y`: returns params of the plain model."""
  out = {}
  for name, leaves in params.items():
    if name.startswith("bn"):
      continue
    leaves = dict(leaves)
    if name.startswith("conv"):
      bn = "bn" + name[len("conv"):]
      s = params[bn]["scale"] * jax.lax.rsqrt(batch_stats[bn]["var"] + eps)
      leaves["kernel"] = leaves["kernel"] * s
      leaves["bias"] = ((leaves["bias"] - batch_stats[bn]["mean"]) * s
                        + params[bn]["bias"])
    out[name] = leaves
  return out


def augment(key, images_u8):
  """Random crop with 4-pixel reflect padding + horizontal flip.

  Args:
    key: PRNG key.
    images_u8: uint8 `[N, H, W, 3]`.

  Returns:
    float32 `[N, H, W, 3]` in [0, 1].
  """
  n, h, w, _ = images_u8.shape
  x = images_u8.astype(jnp.float32) / 255.0
  x = image.reflect_pad(x, 4)
  k1, k2 = jax.random.split(key)
  offs = jax.random.randint(k1, (n, 2), 0, 9)
  crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, 3)))
  x = crop(x, offs)
  flip = jax.random.bernoulli(k2, 0.5, (n, 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1], x)


def make_optimizer(cfg, steps_per_epoch: int):
  """SGD + Nesterov with a one-cycle schedule; weight decay on kernels only
  (not biases or BatchNorm scales)."""
  total = cfg.epochs * steps_per_epoch
  sched = optax.linear_onecycle_schedule(
      total, cfg.peak_lr, pct_start=cfg.warmup_epochs / cfg.epochs,
      div_factor=10.0, final_div_factor=100.0)
  mask = lambda p: jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == "kernel", p)
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay, mask),
      optax.sgd(sched, momentum=cfg.momentum, nesterov=True))


# optax.linear_onecycle_schedule anneals from 0.85 of the steps on
# (`pct_final`): the warmup must end before that.
_MAX_WARMUP_FRACTION = 0.85


def check_config(cfg) -> None:
  """Raises ValueError naming every invalid or missing key of a training
  config (`experiments/configs/train_cifar.py`), before any work is done."""
  required = ("model", "data", "seed", "epochs", "batch_size", "peak_lr",
              "warmup_epochs", "momentum", "weight_decay", "label_smoothing",
              "eval_every", "steps_per_call", "epochs_per_run", "train_limit",
              "test_limit")
  problems = checks.ConfigProblems(cfg, required,
                                   "experiments/configs/train_cifar.py")
  need, is_int, is_num = problems.need, checks.is_int, checks.is_number
  need(cfg.model in registry.names(), "model", f"one of {registry.names()}")
  problems.integers("epochs", "batch_size", "eval_every", "steps_per_call")
  problems.integers("epochs_per_run", "train_limit", "test_limit", minimum=0,
                    note=" (0: no limit)")
  need(is_int(cfg.seed), "seed", "an integer")
  need(is_num(cfg.peak_lr) and cfg.peak_lr > 0, "peak_lr", "a number > 0")
  need(is_num(cfg.momentum) and 0 <= cfg.momentum < 1, "momentum", "in [0, 1)")
  need(is_num(cfg.weight_decay) and cfg.weight_decay >= 0, "weight_decay",
       "a number >= 0")
  need(is_num(cfg.label_smoothing) and 0 <= cfg.label_smoothing < 1,
       "label_smoothing", "in [0, 1)")
  if is_int(cfg.epochs) and cfg.epochs > 0:
    need(is_num(cfg.warmup_epochs) and
         0 < cfg.warmup_epochs < _MAX_WARMUP_FRACTION * cfg.epochs,
         "warmup_epochs", f"in (0, {_MAX_WARMUP_FRACTION} * epochs)")
  problems.raise_if_any("training config")


def _check_dataset(dataset, num_classes: int):
  """`((x_train, y_train), (x_test, y_test))`: uint8 `[N, H, W, 3]` images
  and int labels `[N]` in [0, num_classes)."""
  try:
    (x_train, y_train), (x_test, y_test) = dataset
  except (TypeError, ValueError) as e:
    raise ValueError("dataset must be ((x_train, y_train), (x_test, y_test))"
                     ) from e
  out = []
  for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or not len(x):
      raise ValueError(f"{split} images must be uint8 [N >= 1, H, W, 3]; got "
                       f"{x.dtype} {x.shape}.")
    if y.shape != (len(x),) or y.dtype.kind not in "iu" or (
        y.min() < 0 or y.max() >= num_classes):
      raise ValueError(f"{split} labels must be integers [N = {len(x)}] in "
                       f"[0, {num_classes}); got {y.dtype} {y.shape}.")
    out += [x, y.astype(np.int32)]
  return out


def _fingerprint(arrays) -> str:
  """sha256 of the training and test arrays: resuming on other data is
  refused even when the path is the same."""
  h = hashlib.sha256()
  for a in arrays:
    h.update(str((a.dtype.str, a.shape)).encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _read_checkpoint(path: str) -> dict:
  return checkpoint.read_training_state(path, _CHECKPOINT_FORMAT,
                                        json_fields=("config",))


def _check_resume(stored: dict, cfg, fingerprint: str, epoch: int,
                  path: str) -> None:
  """Raises ValueError naming the config keys (and data) that differ from
  those `path` was trained with, except the keys a resumed run may change."""
  current = json.loads(cfg.to_json())
  old = stored["config"]
  # The data is compared by content (a moved archive is the same data).
  keys = sorted((set(old) | set(current)) - {"data"} - set(RESUMABLE_KEYS))
  changed = [f"{k}: {old.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
             for k in keys if old.get(k) != current.get(k)]
  if stored["data_sha256"] != fingerprint:
    changed.append(f"data (contents differ from the data of {path})")
  if cfg.epochs < epoch:
    changed.append(f"epochs: {old['epochs']} -> {cfg.epochs}, below the "
                   f"{epoch} epochs already done")
  if changed:
    raise ValueError(
        f"cannot resume {path}: the config differs from the one it was "
        "trained with in keys that alter the run:\n  " + "\n  ".join(changed)
        + f"\nOnly {', '.join(RESUMABLE_KEYS)} (epochs upwards) may change; "
        "use another --workdir to train with the new config.")
  if cfg.epochs != old["epochs"]:
    logging.warning("epochs %d -> %d: the learning-rate schedule is stretched "
                    "from epoch %d on", old["epochs"], cfg.epochs, epoch)


def train_and_evaluate(cfg, workdir: str, output: Optional[str] = None, *,
                       dataset=None) -> dict:
  """Trains `cfg.model` (resuming from `workdir` if a checkpoint is there),
  evaluates on the test split and writes the folded weights to `output`.

  Args:
    cfg: a training config (`experiments/configs/train_cifar.py`).
    workdir: folder of the checkpoint and `history.json`.
    output: optional path of the final weights (safetensors).
    dataset: optional in-memory data `((x_train, y_train), (x_test,
      y_test))`, uint8 `[N, H, W, 3]` images and int `[N]` labels, used
      instead of `cfg.data` (tests train `tiny` on a few images).

  Returns:
    `{"epochs_done": e}` when `cfg.epochs_per_run` stopped the run early, else
    the metrics (test accuracy, epochs, seed, train seconds, device, number
    of test images).
  """
  check_config(cfg)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"workdir {workdir} exists and is not a folder.")
  if output is not None and os.path.isdir(output):
    raise ValueError(f"output {output} is a folder; give a .safetensors path.")
  os.makedirs(workdir, exist_ok=True)
  for stale in io.remove_stale_temps(workdir):
    logging.info("removed %s, left by a run killed while writing", stale)
  spec = registry.spec(cfg.model)
  t0 = time.time()
  if dataset is None:
    from cnnviz_jax.data import load_cifar10
    dataset = (load_cifar10(cfg.data, "train", cfg.train_limit or None),
               load_cifar10(cfg.data, "test", cfg.test_limit or None))
  x_train, y_train, x_test, y_test = _check_dataset(dataset, spec.num_classes)
  fingerprint = _fingerprint((x_train, y_train, x_test, y_test))
  logging.info("data: %d train, %d test images (%.1fs)", len(x_train),
               len(x_test), time.time() - t0)
  chunk = max(1, min(cfg.steps_per_call, len(x_train) // cfg.batch_size))
  steps_per_epoch = len(x_train) // cfg.batch_size // chunk * chunk
  if steps_per_epoch == 0:
    raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(x_train)} "
                     "training images.")

  layers = training_layers(cfg.model)
  net = core.SequentialNet(layers)
  key = jax.random.PRNGKey(cfg.seed)

  def create():
    params, stats = _split(core.init_params(layers, key, spec.input_size))
    return TrainState.create(apply_fn=net.apply, params=params,
                             tx=make_optimizer(cfg, steps_per_epoch),
                             batch_stats=stats)

  history = []
  ckpt = os.path.join(workdir, CHECKPOINT)
  if os.path.exists(ckpt):
    stored = _read_checkpoint(ckpt)
    epoch = int(stored["state"]["step"]) // steps_per_epoch
    _check_resume(stored, cfg, fingerprint, epoch, ckpt)
    # The structure only (no initialization to overwrite): eval_shape.
    state = flax.serialization.from_state_dict(jax.eval_shape(create),
                                               stored["state"])
    history = list(stored["history"])
    logging.info("resumed from %s at epoch %d", ckpt, epoch)
  else:
    state = create()
  mean, std = jnp.asarray(spec.mean), jnp.asarray(spec.std)

  def loss_fn(params, batch_stats, x, y):
    (logits, _), upd = net.apply(
        {"params": merge(params, batch_stats)}, (x - mean) / std,
        batch_stats=True, mutable=["batch_stats"])
    onehot = optax.smooth_labels(jax.nn.one_hot(y, spec.num_classes),
                                 cfg.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, onehot).mean()
    return loss, (upd["batch_stats"], (logits.argmax(-1) == y).mean())

  @jax.jit
  def train_chunk(state, key, xs, ys, first):
    """`xs.shape[0]` steps, unrolled, over batches `xs [steps, B, H, W, 3]`."""
    def step(state, inp):
      i, x, y = inp
      x = augment(jax.random.fold_in(key, i), x)
      (loss, (batch, acc)), g = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, state.batch_stats, x, y)
      # sow keeps a tuple of values per call; each bn runs once per step.
      stats = jax.tree_util.tree_map(
          lambda old, new: BN_MOMENTUM * old + (1 - BN_MOMENTUM) * new[0],
          state.batch_stats, batch)
      return state.apply_gradients(grads=g, batch_stats=stats), (loss, acc)
    return jax.lax.scan(step, state, (first + jnp.arange(xs.shape[0]), xs, ys),
                        unroll=True)

  @jax.jit
  def predict(params, x_u8):
    return registry.build(cfg.model, params).apply(
        params, x_u8.astype(jnp.float32) / 255.0)[0].argmax(-1)

  def test_accuracy(params):
    preds = np.concatenate([np.asarray(predict(params, x_test[i:i + EVAL_BATCH]))
                            for i in range(0, len(x_test), EVAL_BATCH)])
    return float((preds == y_test).mean())

  x_train_d = jnp.asarray(x_train)
  y_train_d = jnp.asarray(y_train)
  epoch = int(state.step) // steps_per_epoch
  last = cfg.epochs if not cfg.epochs_per_run else min(
      cfg.epochs, epoch + cfg.epochs_per_run)
  while epoch < last:
    te = time.time()
    rng = np.random.default_rng([cfg.seed, epoch])
    perm = rng.permutation(len(x_train))[:steps_per_epoch * cfg.batch_size]
    perm = perm.reshape(-1, chunk, cfg.batch_size)
    epoch_key = jax.random.fold_in(key, epoch)
    losses, accs = [], []
    for c, idx in enumerate(perm):
      idx = jnp.asarray(idx)
      state, (loss, acc) = train_chunk(state, epoch_key, x_train_d[idx],
                                       y_train_d[idx], c * chunk)
      losses.append(loss), accs.append(acc)
    epoch += 1
    rec = {"epoch": epoch, "loss": float(jnp.concatenate(losses).mean()),
           "train_acc": float(jnp.concatenate(accs).mean()),
           "seconds": time.time() - te}
    if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
      rec["test_acc"] = test_accuracy(fold_batchnorm(state.params,
                                                     state.batch_stats))
    history.append(rec)
    logging.info("epoch %d/%d %s", epoch, cfg.epochs, rec)
    # State, history and config in one file, atomically: a kill at any
    # moment leaves either the previous epoch's file or this one.
    io.write_bytes(ckpt, flax.serialization.msgpack_serialize({
        "format": _CHECKPOINT_FORMAT,
        "state": flax.serialization.to_state_dict(state),
        "history": history, "config": cfg.to_json(),
        "data_sha256": fingerprint}))
    io.write_json(os.path.join(workdir, HISTORY), history)
  if epoch < cfg.epochs:
    logging.info("stopped at epoch %d of %d; rerun to resume", epoch, cfg.epochs)
    return {"epochs_done": epoch}
  folded = fold_batchnorm(state.params, state.batch_stats)
  acc = test_accuracy(folded)
  metrics = {"test_accuracy": acc, "epochs": cfg.epochs, "seed": cfg.seed,
             "train_seconds": sum(h["seconds"] for h in history),
             "device": jax.devices()[0].device_kind,
             "test_images": int(len(x_test))}
  logging.info("final: %s", metrics)
  if output:
    checkpoint.save(output, folded, {
        "arch": cfg.model, "source": "experiments/train_cifar.py",
        "class_names": list(registry.build(cfg.model, folded).class_names),
        "metrics": metrics, "config": cfg.to_json()})
  return metrics
