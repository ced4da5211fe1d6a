"""Adversarial and fooling images: FGSM and PGD (L-inf and L2, targeted and
untargeted) with evaluation.

    adv = adversarial.pgd(model, images, labels, eps=8 / 255, steps=10,
                          step_size=2 / 255, key=key)
    adversarial.evaluate(model, images, adv, labels)   # success rate, norms

FGSM: Goodfellow et al. 2015. PGD: Madry et al. 2018 (random start in the
ball, steps along sign(g) for L-inf or g / ||g|| for L2, projection onto the
ball and onto [0, 1] after every step). Fooling images (lecture: elephant ->
koala) are targeted PGD with a small L-inf budget (`fool`).

Steps run jitted in fully unrolled chunks (see `optimize`: XLA:CPU is slower
inside loops).
"""

import functools
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax.models.predict import predict

Array = jax.Array
# A step size, or an optax-style schedule `step index -> step size`.
StepSize = Union[float, Callable[[int], float]]
NORMS = ("linf", "l2")
# Steps per compiled chunk (see optimize.DEFAULT_CHUNK).
CHUNK = 5


LOSSES = ("margin", "ce")


def _loss(model, x, labels, targeted, loss):
  """The value the attack ascends, per image `[N]`."""
  logits, _ = model.apply(model.params, x)
  own = jnp.take_along_axis(logits, labels[:, None], 1)[:, 0]
  if loss == "ce":
    ce = jax.nn.logsumexp(logits, axis=1) - own
    # Untargeted: raise the loss of the true class; targeted: lower it for
    # the target class.
    return -ce if targeted else ce
  # Carlini & Wagner 2017 margin: best other logit minus the labelled one.
  # Unlike cross-entropy it does not saturate: with a confident network the
  # softmax rounds to one in float32, the CE gradient is exactly zero and
  # sign(0) = 0 stalls PGD (measured: 5-step L-inf PGD 0.83 success with CE).
  other = jnp.max(jnp.where(jax.nn.one_hot(labels, logits.shape[1]) > 0,
                            -jnp.inf, logits), axis=1)
  return own - other if targeted else other - own


def _project(x, center, eps, norm):
  d = x - center
  if norm == "linf":
    d = jnp.clip(d, -eps, eps)
  else:
    n = jnp.sqrt(jnp.sum(jnp.square(d), axis=(1, 2, 3), keepdims=True))
    d = d * jnp.minimum(1.0, eps / (n + 1e-12))
  return jnp.clip(center + d, 0.0, 1.0)


def _direction(g, norm):
  if norm == "linf":
    return jnp.sign(g)
  n = jnp.sqrt(jnp.sum(jnp.square(g), axis=(1, 2, 3), keepdims=True))
  return g / (n + 1e-12)


@functools.partial(jax.jit, static_argnames=("norm", "targeted", "loss"))
def _pgd_chunk(model, carry, center, labels, eps, sizes, *, norm, targeted,
               loss):
  """`len(sizes)` steps, unrolled. carry: `(x, best_x, best_loss)`; the best
  iterate is the one with the highest attack loss seen so far, per image."""
  x, best_x, best = carry
  value_and_grad = jax.value_and_grad(
      lambda z: (lambda l: (jnp.sum(l), l))(
          _loss(model, z, labels, targeted, loss)), has_aux=True)
  for i in range(sizes.shape[0]):
    (_, per_image), g = value_and_grad(x)
    better = per_image > best
    best = jnp.where(better, per_image, best)
    best_x = jnp.where(better[:, None, None, None], x, best_x)
    x = _project(x + sizes[i] * _direction(g, norm), center, eps, norm)
  return x, best_x, best


def _random_start(key, center, eps, norm):
  if norm == "linf":
    d = jax.random.uniform(key, center.shape, minval=-1.0, maxval=1.0) * eps
  else:
    d = jax.random.normal(key, center.shape)
    d = d / jnp.sqrt(jnp.sum(jnp.square(d), axis=(1, 2, 3), keepdims=True))
    r = jax.random.uniform(jax.random.fold_in(key, 1), (center.shape[0], 1, 1, 1))
    d = d * eps * r
  return _project(center + d, center, eps, norm)


def _check(model, images, labels, eps, steps, step_size, norm, loss):
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}.")
  checks.check_images(images, min_size=model.min_size)
  labels = jnp.asarray(labels)
  if labels.shape != (images.shape[0],):
    raise ValueError(f"labels must have shape [N] = ({images.shape[0]},); got "
                     f"{tuple(labels.shape)}.")
  checks.check_classes(labels, model.num_classes, name="labels")
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}; got {norm!r}.")
  checks.check_positive(eps, "eps")
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps must be a positive int; got {steps!r}.")
  return labels.astype(jnp.int32), _step_sizes(step_size, steps)


def _step_sizes(step_size: StepSize, steps: int) -> np.ndarray:
  """The step size of every step, float32 `[steps]`, each > 0 (a schedule may
  reach 0 at its last step, as optax's cosine decay does)."""
  if callable(step_size):
    sizes = np.array([float(step_size(i)) for i in range(steps)], np.float32)
    if not np.all(np.isfinite(sizes)) or np.any(sizes < 0) or sizes[0] <= 0:
      raise ValueError("a step_size schedule must give finite sizes >= 0 and a "
                       f"first size > 0; got {sizes[:5]}...")
    return sizes
  checks.check_positive(step_size, "step_size")
  return np.full((steps,), step_size, np.float32)


def pgd(model, images: Array, labels: Array, *, eps: float, steps: int,
        step_size: StepSize, key: Optional[Array], norm: str = "linf",
        targeted: bool = False, random_start: bool = True,
        loss: str = "margin", restarts: int = 1,
        keep_best: bool = False) -> Array:
  """Projected gradient descent attack.

  Args:
    model: a Model.
    images: float32 `[N, H, W, 3]` in [0, 1].
    labels: int `[N]`: the true classes (untargeted) or the targets (targeted).
    eps: radius of the ball (L-inf: per pixel, e.g. 8/255; L2: per image).
    steps: >= 1.
    step_size: > 0 (L-inf: per pixel; L2: per image), or a schedule
      `step index -> size` such as `optax.cosine_decay_schedule(eps / 4, steps)`.
    key: PRNG key for the random start (None: start at the image).
    norm: "linf" or "l2".
    targeted: move towards `labels` instead of away from them.
    random_start: start at a uniform point of the ball (Madry et al.).
    loss: "margin" (Carlini-Wagner logit margin, default) or "ce".
    restarts: runs in all (Madry et al. 2018): each extra run starts from a
      new random point (key `fold_in(key, r)`) and attacks only the images
      the previous runs did not fool; needs concrete inputs and a key.
    keep_best: return, per image, the iterate with the highest attack loss
      (as Croce & Hein 2020 do) instead of the last one.

  Returns:
    adversarial images float32 `[N, H, W, 3]` in [0, 1], within `eps`.
  """
  labels, sizes = _check(model, images, labels, eps, steps, step_size, norm,
                         loss)
  if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
    raise ValueError(f"restarts must be an int >= 1; got {restarts!r}.")
  if restarts > 1 and key is None:
    raise ValueError("restarts > 1 needs a key for the random starts.")
  run = functools.partial(_pgd_run, model, eps=eps, sizes=sizes, norm=norm,
                          targeted=targeted, loss=loss, keep_best=keep_best)
  adv = run(jnp.asarray(images), labels, key if random_start else None)
  for r in range(1, restarts):
    pred = jnp.argmax(model.apply(model.params, adv)[0], axis=1)
    left = np.flatnonzero(np.asarray((pred != labels) if targeted else (pred == labels)))
    if left.size == 0:
      break
    # Pad the survivors to a power of two: few distinct shapes to compile.
    size = 1 << int(np.ceil(np.log2(left.size)))
    idx = np.concatenate([left, np.full(size - left.size, left[0])])
    again = run(jnp.asarray(images)[idx], labels[idx], jax.random.fold_in(key, r))
    adv = adv.at[left].set(again[:left.size])
  return adv


def _pgd_run(model, images, labels, key, *, eps, sizes, norm, targeted, loss,
             keep_best):
  center = images
  x = center
  if key is not None:
    x = _random_start(key, center, eps, norm)
  carry = (x, x, jnp.full((x.shape[0],), -jnp.inf, x.dtype))
  for done in range(0, len(sizes), CHUNK):
    carry = _pgd_chunk(model, carry, center, labels, jnp.float32(eps),
                       jnp.asarray(sizes[done:done + CHUNK]), norm=norm,
                       targeted=targeted, loss=loss)
  x, best_x, best = carry
  if not keep_best:
    return x
  last = _loss(model, x, labels, targeted, loss)
  return jnp.where((last >= best)[:, None, None, None], x, best_x)


def fgsm(model, images: Array, labels: Array, *, eps: float, norm: str = "linf",
         targeted: bool = False, key: Optional[Array] = None,
         loss: str = "margin") -> Array:
  """Fast gradient sign method: one step of size `eps` (L2: along g/||g||).

  Same arguments and return as `pgd`; `key` is unused (no random start) and
  kept for a uniform signature.
  """
  del key
  return pgd(model, images, labels, eps=eps, steps=1, step_size=eps, key=None,
             norm=norm, targeted=targeted, random_start=False, loss=loss)


ATTACKS = {"fgsm": fgsm, "pgd": pgd}


# Fooling defaults, chosen on the shipped CIFAR model at 4/255 with each
# image's runner-up class as target (first 100 correctly classified test
# images): 40 constant steps of eps/8 reach p >= 0.9 on 94; 100 steps with a
# cosine decay from eps/4 and the best iterate kept, on 95, with higher target
# probabilities on the rest. Adam on the perturbation, a log-probability loss
# and 200 steps did no better (the same images fail under every attack).
FOOL_STEPS = 100


def fool(model, images: Array, targets: Array, *, eps: float = 4 / 255,
         steps: int = FOOL_STEPS, step_size: Optional[StepSize] = None,
         key: Optional[Array] = None) -> Array:
  """Fooling images: change images until the network says `targets`, within
  an invisible L-inf budget `eps`.

  Targeted L-inf PGD on the logit margin that keeps each image's best iterate;
  the default step size decays from eps/4 to 0 on a cosine (large steps first
  to cross the decision boundary, small ones last to climb inside it).

  Args:
    model: a Model.
    images: float32 `[N, H, W, 3]` in [0, 1].
    targets: int `[N]` classes the network should output.
    eps: L-inf budget per pixel (4/255: PSNR of about 37 dB or more).
    steps: >= 1. step_size: a size or a schedule (see `pgd`).
    key: PRNG key for a random start in the ball (None: start at the image).

  Returns:
    the changed images float32 `[N, H, W, 3]` in [0, 1], within `eps`.
  """
  if step_size is None:
    # optax.cosine_decay_schedule(eps / 4, steps), written out so that bad
    # `steps` reach pgd's own check.
    step_size = lambda i: eps / 8 * (1 + np.cos(np.pi * i / steps))
  return pgd(model, images, targets, eps=eps, steps=steps, step_size=step_size,
             key=key, norm="linf", targeted=True, random_start=key is not None,
             keep_best=True)


def perturbation(images: Array, adv: Array) -> dict:
  """Per-image size of the change: `{"linf", "l2", "psnr"}` each `[N]`
  (PSNR in dB for a peak of 1)."""
  d = (adv - images).reshape(images.shape[0], -1)
  mse = jnp.mean(jnp.square(d), axis=1)
  return {"linf": jnp.max(jnp.abs(d), axis=1),
          "l2": jnp.sqrt(jnp.sum(jnp.square(d), axis=1)),
          "psnr": 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-20))}


def evaluate(model, images: Array, adv: Array, labels: Array,
             targets: Optional[Array] = None, batch_size: int = 250,
             confidence: float = 0.9) -> dict:
  """Attack results over a set of images.

  Args:
    images, adv: float32 `[N, H, W, 3]`: clean and attacked images.
    labels: true classes `[N]`.
    targets: target classes `[N]` for a targeted attack (None: untargeted).
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
  `fold_in(key, b)`) and evaluates it. images: float32 or uint8 `[N, H, W, 3]`.

  Returns `(adv [N, H, W, 3], evaluate(...) dict)`.
  """
  if attack not in ATTACKS:
    raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}.")
  images = np.asarray(images)
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / 255.0
  images = jnp.asarray(images)
  goal = labels if targets is None else targets
  advs = []
  for b, i in enumerate(range(0, images.shape[0], batch_size)):
    advs.append(ATTACKS[attack](model, images[i:i + batch_size],
                                jnp.asarray(goal[i:i + batch_size]),
                                key=jax.random.fold_in(key, b),
                                targeted=targets is not None, **kwargs))
  adv = jnp.concatenate(advs)
  return adv, evaluate(model, images, adv, labels, targets, batch_size)
