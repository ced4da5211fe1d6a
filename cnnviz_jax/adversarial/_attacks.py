"""FGSM, PGD and fooling images: the synthesis engine with an attack
objective, a sign (or L2-normalized) step, a projection onto the ball around
the clean image and [0, 1], and `keep_best`.

    adv = adversarial.pgd(model, images, labels, eps=8 / 255, steps=10,
                          step_size=2 / 255, key=key)
    adversarial.evaluate(model, images, adv, labels)   # success rate, norms

FGSM: Goodfellow et al. 2015. PGD: Madry et al. 2018 (random start in the
ball, steps along sign(g) for L-inf or g / ||g|| for L2, projection onto the
ball and onto [0, 1] after every step). Fooling images (lecture: elephant ->
koala) are targeted PGD with a small L-inf budget (`fool`).
"""

from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import _checks as checks
from cnnviz_jax.adversarial._losses import LOSSES
from cnnviz_jax.synthesis import engine
from cnnviz_jax.synthesis import param as param_lib
from cnnviz_jax.synthesis import transforms

Array = jax.Array
# A step size, or an optax schedule `step index -> step size`.
StepSize = Union[float, Callable[[int], float]]
NORMS = ("linf", "l2")
# The engine's step per norm: sign(g) for L-inf, g / ||g|| per image for L2.
_OPTIMIZERS = {"linf": ("sign", None), "l2": ("sgd", "l2")}


def attack_setup(images: Array, labels: Array, *, eps: float, step_size: StepSize,
                 norm: str = "linf", targeted: bool = False,
                 loss: str = "margin") -> engine.Setup:
  """The engine `Setup` of an attack: the attack objective (`LOSSES[loss]`),
  the projection onto the `norm` ball of radius `eps` around `images` (the
  pixels' [0, 1] follows) and the step size as the learning rate."""
  return engine.Setup(LOSSES[loss](labels, targeted),
                      step_ops=transforms.get(f"project_{norm}", images, eps),
                      learning_rate=step_size)


def attack_optimizer(norm: str):
  """The engine optimizer of an attack in `norm` (cached: one compile)."""
  return engine.make_optimizer(*_OPTIMIZERS[norm])


def _random_start(key, images, eps, norm):
  if norm == "linf":
    d = jax.random.uniform(key, images.shape, minval=-1.0, maxval=1.0) * eps
  else:
    d = jax.random.normal(key, images.shape)
    d = d / jnp.sqrt(jnp.sum(jnp.square(d), axis=(1, 2, 3), keepdims=True))
    r = jax.random.uniform(jax.random.fold_in(key, 1), (images.shape[0], 1, 1, 1))
    d = d * eps * r
  project = transforms.get(f"project_{norm}", images, eps)
  return jnp.clip(project(images + d, None, 0), 0.0, 1.0)


def _check_steps(steps):
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps must be a positive int; got {steps!r}.")


def _check(model, images, labels, eps, steps, step_size, norm, loss):
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {tuple(LOSSES)}; got {loss!r}.")
  checks.check_images(images, min_size=model.min_size)
  labels = jnp.asarray(labels)
  if labels.shape != (images.shape[0],):
    raise ValueError(f"labels must have shape [N] = ({images.shape[0]},); got "
                     f"{tuple(labels.shape)}.")
  checks.check_classes(labels, model.num_classes, name="labels")
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}; got {norm!r}.")
  checks.check_positive(eps, "eps")
  _check_steps(steps)
  if not callable(step_size):
    checks.check_positive(step_size, "step_size")
  return labels.astype(jnp.int32)


def _run(model, images, labels, key, *, eps, steps, step_size, norm, targeted,
         loss, keep_best):
  setup = attack_setup(images, labels, eps=eps, step_size=step_size, norm=norm,
                       targeted=targeted, loss=loss)
  init = images if key is None else _random_start(key, images, eps, norm)
  return engine.optimize(
      model, setup, param_lib.pixels(images.shape[0], images.shape[1:3]),
      key=key, steps=steps, optimizer=attack_optimizer(norm), init=init,
      keep_best=keep_best).images


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
    step_size: > 0 (L-inf: per pixel; L2: per image), or an optax schedule
      `step index -> size` such as `optax.cosine_decay_schedule(eps / 4, steps)`.
    key: PRNG key for the random start (None: start at the image).
    norm: "linf" or "l2".
    targeted: move towards `labels` instead of away from them.
    random_start: start at a uniform point of the ball (Madry et al.).
    loss: "margin" (Carlini-Wagner logit margin, default) or "ce".
    restarts: runs in all (Madry et al. 2018): each extra run starts from a
      new random point (key `fold_in(key, r)`) and attacks only the images
      the previous runs did not fool; needs concrete inputs and a key.
    keep_best: return, per image, the iterate with the highest attack
      objective (as Croce & Hein 2020 do) instead of the last one.

  Returns:
    adversarial images float32 `[N, H, W, 3]` in [0, 1], within `eps`.
  """
  labels = _check(model, images, labels, eps, steps, step_size, norm, loss)
  if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
    raise ValueError(f"restarts must be an int >= 1; got {restarts!r}.")
  if restarts > 1 and key is None:
    raise ValueError("restarts > 1 needs a key for the random starts.")
  if key is not None:
    checks.check_key(key)
  images = jnp.asarray(images)

  def run(x, y, k):
    return _run(model, x, y, k, eps=eps, steps=steps, step_size=step_size,
                norm=norm, targeted=targeted, loss=loss, keep_best=keep_best)
  adv = run(images, labels, key if random_start else None)
  for r in range(1, restarts):
    pred = jnp.argmax(model.apply(model.params, adv)[0], axis=1)
    left = np.flatnonzero(np.asarray((pred != labels) if targeted else (pred == labels)))
    if left.size == 0:
      break
    # Pad the survivors to a power of two: few distinct shapes to compile.
    size = 1 << int(np.ceil(np.log2(left.size)))
    idx = np.concatenate([left, np.full(size - left.size, left[0])])
    again = run(images[idx], labels[idx], jax.random.fold_in(key, r))
    adv = adv.at[left].set(again[:left.size])
  return adv


def fgsm(model, images: Array, labels: Array, *, eps: float, norm: str = "linf",
         targeted: bool = False, key: Optional[Array] = None,
         loss: str = "margin") -> Array:
  """Fast gradient sign method: one step of size `eps` (L2: along g/||g||).

  Same arguments and return as `pgd`; `key` is unused (no random start) and
  kept for a uniform signature (`attack_dataset` passes one).
  """
  del key
  return pgd(model, images, labels, eps=eps, steps=1, step_size=eps, key=None,
             norm=norm, targeted=targeted, random_start=False, loss=loss)


# Attacks by the name `attack_dataset` and the launcher config take.
ATTACKS = {"fgsm": fgsm, "pgd": pgd}


# Fooling defaults, chosen on the shipped CIFAR model at 4/255 with each
# image's runner-up class as target (first 100 correctly classified test
# images): 40 constant steps of eps/8 reach p >= 0.9 on 94; 100 steps with a
# cosine decay from eps/4 and the best iterate kept, on 95, with higher target
# probabilities on the rest. Adam on the perturbation, a log-probability loss
# and 200 steps did no better (the same images fail under every attack).
FOOL_STEPS = 100
# The first step of the default cosine decay, as a fraction of eps (above).
_FOOL_FIRST_STEP = 1 / 4


def fool(model, images: Array, targets: Array, *, eps: float = 4 / 255,
         steps: int = FOOL_STEPS, step_size: Optional[StepSize] = None,
         key: Optional[Array] = None) -> Array:
  """Fooling images: change images until the network says `targets`, within
  an invisible L-inf budget `eps`.

  Targeted L-inf PGD on the logit margin that keeps each image's best iterate;
  the default step size decays from eps/4 to 0 on a cosine
  (`optax.cosine_decay_schedule`: large steps first to cross the decision
  boundary, small ones last to climb inside it).

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
  _check_steps(steps)
  if step_size is None:
    step_size = optax.cosine_decay_schedule(eps * _FOOL_FIRST_STEP, steps)
  return pgd(model, images, targets, eps=eps, steps=steps, step_size=step_size,
             key=key, norm="linf", targeted=True, random_start=key is not None,
             keep_best=True)
