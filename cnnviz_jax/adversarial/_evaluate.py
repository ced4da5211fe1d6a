"""Attack results: perturbation sizes, success rates, and attacks over a
dataset in batches."""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax._chunks import equal_chunks
from cnnviz_jax.adversarial._attacks import ATTACKS
from cnnviz_jax.models.predict import predict

Array = jax.Array
# PSNR's MSE floor: an unchanged image reports 200 dB instead of infinity.
_MIN_MSE = 1e-20


def perturbation(images: Array, adv: Array) -> dict:
  """Per-image size of the change: `{"linf", "l2", "psnr"}` each `[N]`
  (PSNR in dB for a peak of 1)."""
  d = (adv - images).reshape(images.shape[0], -1)
  mse = jnp.mean(jnp.square(d), axis=1)
  return {"linf": jnp.max(jnp.abs(d), axis=1),
          "l2": jnp.sqrt(jnp.sum(jnp.square(d), axis=1)),
          "psnr": 10.0 * jnp.log10(1.0 / jnp.maximum(mse, _MIN_MSE))}


def evaluate(model, images: Array, adv: Array, labels: Array,
             targets: Optional[Array] = None, batch_size: int = 250,
             confidence: float = 0.9) -> dict:
  """Attack results over a set of images.

  Args:
    images, adv: float32 `[N, H, W, 3]`: clean and attacked images.
    labels: true classes `[N]`.
    targets: target classes `[N]` for a targeted attack (None: untargeted).
    batch_size: images per forward pass.
    confidence: targeted only: `confident_success_rate` counts the images
      whose target probability is at least this (fooling images: 0.9).

  Returns:
    `{"success_rate", "clean_accuracy", "adv_accuracy", "mean_linf",
    "max_linf", "mean_l2", "mean_psnr"}` as floats, plus for a targeted attack
    `"target_prob_mean"`, `"target_prob_min"` and `"confident_success_rate"`.
    Success: untargeted, the prediction differs from the label; targeted, it
    equals the target.
  """
  pred_clean, _ = predict(model, images, batch_size)
  pred, probs = predict(model, adv, batch_size)
  labels = jnp.asarray(labels)
  success = (pred != labels) if targets is None else (pred == jnp.asarray(targets))
  p = perturbation(images, adv)
  out = {"success_rate": float(jnp.mean(success)),
         "clean_accuracy": float(jnp.mean(pred_clean == labels)),
         "adv_accuracy": float(jnp.mean(pred == labels)),
         "mean_linf": float(jnp.mean(p["linf"])), "max_linf": float(jnp.max(p["linf"])),
         "mean_l2": float(jnp.mean(p["l2"])), "mean_psnr": float(jnp.mean(p["psnr"]))}
  if targets is not None:
    pt = jnp.take_along_axis(probs, jnp.asarray(targets)[:, None], 1)[:, 0]
    out["target_prob_mean"] = float(jnp.mean(pt))
    out["target_prob_min"] = float(jnp.min(pt))
    out["confident_success_rate"] = float(jnp.mean(pt >= confidence))
  return out


def attack_dataset(model, images, labels, *, attack: str = "pgd", key: Array,
                   batch_size: int = 250, targets=None, **kwargs):
  """Runs `ATTACKS[attack]` over a dataset in batches (batch `b` uses key
  `fold_in(key, b)`) and evaluates it.

  Args:
    images: float32 in [0, 1] or uint8 `[N, H, W, 3]`.
    labels: true classes `[N]`.
    attack: a name in `ATTACKS`.
    key: PRNG key.
    batch_size: at most this many images per attack call (batches of one
      length, the last padded: one compiled program).
    targets: target classes `[N]` (targeted), or None.
    **kwargs: passed to the attack (`eps`, `steps`, `step_size`, ...).

  Returns:
    `(adv float32 [N, H, W, 3], evaluate(...) dict)`.
  """
  if attack not in ATTACKS:
    raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}.")
  images = np.asarray(images)
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / 255.0
  images = jnp.asarray(images)
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}.")
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"images must be [N, H, W, 3] with N >= 1; got shape "
                     f"{images.shape}.")
  goal = jnp.asarray(labels if targets is None else targets)
  advs = []
  for b, (ids, _) in enumerate(equal_chunks(images.shape[0], batch_size)):
    advs.append(ATTACKS[attack](model, images[ids], goal[ids],
                                key=jax.random.fold_in(key, b),
                                targeted=targets is not None, **kwargs))
  adv = jnp.concatenate(advs)[:images.shape[0]]
  return adv, evaluate(model, images, adv, labels, targets, batch_size)
