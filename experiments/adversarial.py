r"""Adversarial attacks with evaluation, and fooling images.

  python experiments/adversarial.py --workdir=runs/adversarial --attack=pgd \
      --norm=linf --eps=0.0313725 --steps=10 --step_size=0.0078431 --n=1000
  (add --targeted for random targets); fooling images: --fool_eps=0.0156863.
Needs CIFAR-10 (../shared/data/cifar10-jpeg.tar). Smoke: --n=16 --steps=2 --fool_steps=2.
"""

import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import adversarial, data, models, pictures
from cnnviz_jax.models.checkpoint import write_json

_WORKDIR = flags.DEFINE_string("workdir", "runs/adversarial", "Output folder.")
_DATA = flags.DEFINE_string("data", data.DEFAULT_CIFAR, "CIFAR-10 location.")
_ATTACK = flags.DEFINE_enum("attack", "pgd", list(adversarial.ATTACKS), "Attack.")
_NORM = flags.DEFINE_enum("norm", "linf", list(adversarial.NORMS), "Threat model.")
_EPS = flags.DEFINE_float("eps", 8 / 255, "Ball radius.")
_STEPS = flags.DEFINE_integer("steps", 10, "PGD steps.")
_STEP_SIZE = flags.DEFINE_float("step_size", 2 / 255, "PGD step size.")
_RESTARTS = flags.DEFINE_integer("restarts", 1, "PGD runs (random restarts).")
_TARGETED = flags.DEFINE_bool("targeted", False, "Random target classes.")
_N = flags.DEFINE_integer("n", 1000, "Correctly classified test images attacked.")
_FOOL_EPS = flags.DEFINE_float("fool_eps", 4 / 255, "L-inf budget for fooling images.")
_FOOL_STEPS = flags.DEFINE_integer("fool_steps", 40, "Steps for fooling images.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def main(argv):
  del argv
  model = models.load("cifar_vgg")
  x, y = data.load_cifar10(_DATA.value, "test", limit=_N.value // 8 + 1)
  x = jnp.asarray(x.astype(np.float32) / 255.0)
  pred, _ = adversarial.predict(model, x)
  ok = np.flatnonzero(np.asarray(pred) == y)[:_N.value]
  x, y = x[ok], y[ok]
  key = jax.random.PRNGKey(_SEED.value)
  targets = None
  if _TARGETED.value:
    targets = (y + np.asarray(jax.random.randint(key, y.shape, 1, 10))) % 10
  kw = dict(eps=_EPS.value, norm=_NORM.value)
  if _ATTACK.value == "pgd":
    kw.update(steps=_STEPS.value, step_size=_STEP_SIZE.value, restarts=_RESTARTS.value)
  adv, metrics = adversarial.attack_dataset(model, x, y, attack=_ATTACK.value, key=key,
                                            targets=targets, **kw)
  # Fooling images (lecture: elephant -> koala): 8 images to their runner-up class.
  fx = x[:8]
  ft = jnp.argsort(model(fx)[0], axis=1)[:, -2]
  fooled = adversarial.fool(model, fx, ft, eps=_FOOL_EPS.value, steps=_FOOL_STEPS.value)
  fmetrics = adversarial.evaluate(model, fx, fooled, y[:8], ft)
  fprobs = jax.nn.softmax(model(fooled)[0])[jnp.arange(8), ft]
  os.makedirs(_WORKDIR.value, exist_ok=True)
  names = model.class_names
  diff = 0.5 + (fooled - fx) / (2 * _FOOL_EPS.value)
  pictures.save_grid(
      os.path.join(_WORKDIR.value, "fooling.png"), list(fx) + list(diff) + list(fooled),
      titles=[names[int(c)] for c in y[:8]] + ["change x%.0f" % (0.5 / _FOOL_EPS.value)] * 8
      + [f"{names[int(t)]} {p:.2f}" for t, p in zip(ft, fprobs)], ncols=8)
  write_json(os.path.join(_WORKDIR.value, "metrics.json"),
            {"attack": metrics, "fooling": fmetrics})
  write_json(os.path.join(_WORKDIR.value, "config.json"),
            dict(attack=_ATTACK.value, norm=_NORM.value, eps=_EPS.value, steps=_STEPS.value,
                 step_size=_STEP_SIZE.value, restarts=_RESTARTS.value,
                 targeted=_TARGETED.value, n=_N.value, fool_eps=_FOOL_EPS.value,
                 fool_steps=_FOOL_STEPS.value, seed=_SEED.value))


if __name__ == "__main__":
  app.run(main)
