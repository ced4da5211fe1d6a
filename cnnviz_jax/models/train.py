"""Training of the shipped CIFAR-10 VGG (`cifar_vgg`).

The training network is `cifar_vgg` with a BatchNorm after every convolution;
at export the BatchNorms are folded into the convolutions, so the shipped model
is the plain conv + ReLU network of `models.zoo.cifar_vgg` and computes exactly
what was evaluated. Random crop (4-pixel reflect padding) and horizontal flip
run on the device inside the jitted step.
"""

import json
import os
import time
from typing import Any, NamedTuple

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import io
from cnnviz_jax.models import checkpoint, core, zoo
from cnnviz_jax.models import registry


class TrainNet(nn.Module):
  """`cifar_vgg` with BatchNorm after each conv (folded away at export)."""

  @nn.compact
  def __call__(self, x, train: bool):
    spec = zoo.cifar_vgg()
    x = (x - jnp.asarray(spec.mean)) / jnp.asarray(spec.std)
    for layer in spec.layers:
      kw = layer.kw
      if layer.kind == "conv":
        p = kw["padding"]
        x = nn.Conv(kw["features"], (kw["kernel"],) * 2,
                    padding=((p, p), (p, p)), name=layer.name,
                    kernel_init=nn.initializers.variance_scaling(
                        2.0, "fan_out", "normal"))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         epsilon=1e-5, name="bn" + layer.name[4:])(x)
      elif layer.kind == "relu":
        x = nn.relu(x)
      elif layer.kind == "maxpool":
        x = core.max_pool(x, kw["window"], kw["stride"])
      elif layer.kind == "global_avgpool":
        x = x.mean(axis=(1, 2))
      elif layer.kind == "dense":
        x = nn.Dense(kw["features"], name=layer.name)(x)
      else:
        raise ValueError(f"unexpected layer kind {layer.kind}")
    return x


class TrainState(NamedTuple):
  params: Any
  batch_stats: Any
  opt_state: Any
  epoch: int


def fold_batchnorm(params, batch_stats, eps: float = 1e-5):
  """Folds each `bnX_Y` into `convX_Y`: returns `cifar_vgg` params."""
  out = {}
  for name, leaves in params.items():
    if name.startswith("bn"):
      continue
    leaves = dict(leaves)
    if name.startswith("conv"):
      bn = "bn" + name[4:]
      s = params[bn]["scale"] * jax.lax.rsqrt(batch_stats[bn]["var"] + eps)
      leaves["kernel"] = leaves["kernel"] * s
      leaves["bias"] = (leaves["bias"] - batch_stats[bn]["mean"]) * s + params[bn]["bias"]
    out[name] = leaves
  return out


def augment(key, images_u8):
  """Random crop with 4-pixel reflect padding + horizontal flip; -> [0, 1]."""
  n, h, w, _ = images_u8.shape
  x = images_u8.astype(jnp.float32) / 255.0
  x = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
  k1, k2 = jax.random.split(key)
  offs = jax.random.randint(k1, (n, 2), 0, 9)
  crop = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, 3)))
  x = crop(x, offs)
  flip = jax.random.bernoulli(k2, 0.5, (n, 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1], x)


def make_optimizer(cfg, steps_per_epoch: int):
  total = cfg.epochs * steps_per_epoch
  sched = optax.linear_onecycle_schedule(
      total, cfg.peak_lr, pct_start=cfg.warmup_epochs / cfg.epochs,
      div_factor=10.0, final_div_factor=100.0)
  # Weight decay on kernels only (not biases or BatchNorm scales).
  mask = lambda p: jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == "kernel", p)
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay, mask),
      optax.sgd(sched, momentum=cfg.momentum, nesterov=True))


def _write_bytes(path: str, blob: bytes) -> None:
  with open(path, "wb") as f:
    f.write(blob)


def train_and_evaluate(cfg, workdir: str,
                       output: str | None = None) -> dict:
  """Trains (resuming from `workdir` if a checkpoint is there), evaluates on
  the test split and writes the folded `cifar_vgg` weights to `output`.

  Returns:
    metrics dict (test accuracy, epochs, time).
  """
  from cnnviz_jax.data import load_cifar10
  os.makedirs(workdir, exist_ok=True)
  t0 = time.time()
  x_train, y_train = load_cifar10(cfg.data, "train", cfg.train_limit or None)
  x_test, y_test = load_cifar10(cfg.data, "test", cfg.test_limit or None)
  logging.info("data: %d train, %d test images (%.1fs)", len(x_train),
               len(x_test), time.time() - t0)
  chunk = max(1, min(cfg.steps_per_call, len(x_train) // cfg.batch_size))
  steps_per_epoch = len(x_train) // cfg.batch_size // chunk * chunk
  if steps_per_epoch == 0:
    raise ValueError(f"batch_size {cfg.batch_size} exceeds the {len(x_train)} "
                     "training images.")
  tx = make_optimizer(cfg, steps_per_epoch)
  net = TrainNet()
  key = jax.random.PRNGKey(cfg.seed)
  variables = net.init(key, jnp.zeros((1, 32, 32, 3)), train=False)
  state = TrainState(variables["params"], variables["batch_stats"],
                     tx.init(variables["params"]), 0)
  ckpt = os.path.join(workdir, "train_state.msgpack")
  if os.path.exists(ckpt):
    with open(ckpt, "rb") as f:
      state = flax.serialization.from_bytes(state, f.read())
    logging.info("resumed from %s at epoch %d", ckpt, state.epoch)

  def loss_fn(params, batch_stats, x, y):
    logits, upd = net.apply({"params": params, "batch_stats": batch_stats}, x,
                            train=True, mutable=["batch_stats"])
    onehot = optax.smooth_labels(jax.nn.one_hot(y, 10), cfg.label_smoothing)
    loss = optax.softmax_cross_entropy(logits, onehot).mean()
    return loss, (upd["batch_stats"], (logits.argmax(-1) == y).mean())

  @jax.jit
  def train_chunk(params, batch_stats, opt_state, key, xs, ys, first):
    """`xs.shape[0]` steps, unrolled, over batches `xs [steps, B, 32, 32, 3]`."""
    def step(carry, inp):
      params, batch_stats, opt_state = carry
      i, x, y = inp
      x = augment(jax.random.fold_in(key, i), x)
      (loss, (batch_stats, acc)), g = jax.value_and_grad(loss_fn, has_aux=True)(
          params, batch_stats, x, y)
      updates, opt_state = tx.update(g, opt_state, params)
      return (optax.apply_updates(params, updates), batch_stats, opt_state), (loss, acc)
    (params, batch_stats, opt_state), (loss, acc) = jax.lax.scan(
        step, (params, batch_stats, opt_state),
        (first + jnp.arange(xs.shape[0]), xs, ys), unroll=True)
    return params, batch_stats, opt_state, loss, acc

  @jax.jit
  def predict(params, x_u8):
    return registry.build("cifar_vgg", params).apply(
        params, x_u8.astype(jnp.float32) / 255.0)[0].argmax(-1)

  def test_accuracy(params):
    preds = np.concatenate([np.asarray(predict(params, x_test[i:i + 500]))
                            for i in range(0, len(x_test), 500)])
    return float((preds == y_test).mean())

  x_train_d = jnp.asarray(x_train)
  y_train_d = jnp.asarray(y_train)
  history = []
  hist_path = os.path.join(workdir, "history.json")
  if os.path.exists(hist_path):
    with open(hist_path) as f:
      history = json.load(f)
  last = cfg.epochs if not cfg.epochs_per_run else min(
      cfg.epochs, state.epoch + cfg.epochs_per_run)
  while state.epoch < last:
    te = time.time()
    rng = np.random.default_rng([cfg.seed, state.epoch])
    perm = rng.permutation(len(x_train))[:steps_per_epoch * cfg.batch_size]
    perm = perm.reshape(-1, chunk, cfg.batch_size)
    params, bstats, opt_state = state.params, state.batch_stats, state.opt_state
    epoch_key = jax.random.fold_in(key, state.epoch)
    losses, accs = [], []
    for c, idx in enumerate(perm):
      idx = jnp.asarray(idx)
      params, bstats, opt_state, loss, acc = train_chunk(
          params, bstats, opt_state, epoch_key, x_train_d[idx], y_train_d[idx],
          c * chunk)
      losses.append(loss), accs.append(acc)
    state = TrainState(params, bstats, opt_state, state.epoch + 1)
    rec = {"epoch": state.epoch, "loss": float(jnp.concatenate(losses).mean()),
           "train_acc": float(jnp.concatenate(accs).mean()),
           "seconds": time.time() - te}
    if state.epoch % cfg.eval_every == 0 or state.epoch == cfg.epochs:
      rec["test_acc"] = test_accuracy(fold_batchnorm(params, bstats))
    history.append(rec)
    logging.info("epoch %d/%d %s", state.epoch, cfg.epochs, rec)
    blob = flax.serialization.to_bytes(state)
    io.atomic_write(ckpt, lambda p: _write_bytes(p, blob))
    io.write_json(hist_path, history)
  folded = fold_batchnorm(state.params, state.batch_stats)
  if state.epoch < cfg.epochs:
    logging.info("stopped at epoch %d of %d; rerun to resume", state.epoch, cfg.epochs)
    return {"epochs_done": state.epoch}
  acc = test_accuracy(folded)
  metrics = {"test_accuracy": acc, "epochs": cfg.epochs, "seed": cfg.seed,
             "train_seconds": sum(h["seconds"] for h in history),
             "device": jax.devices()[0].device_kind,
             "test_images": int(len(x_test))}
  logging.info("final: %s", metrics)
  if output:
    checkpoint.save(output, folded, {
        "arch": "cifar_vgg", "source": "experiments/train_cifar.py",
        "class_names": list(zoo.CIFAR10_CLASSES),
        "metrics": metrics, "config": cfg.to_json()})
  return metrics
