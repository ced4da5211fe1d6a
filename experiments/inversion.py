r"""Feature inversion (Mahendran & Vedaldi 2015) from a ladder of layers: lower
layers reconstruct nearly exactly, deeper ones keep shape and lose detail.

  python experiments/inversion.py --workdir=runs/inversion \
      --layers=relu1_1,relu2_2,relu3_2,relu4_1,fc7 --steps=300
Uses the first CIFAR-10 test image, or a project-made image when CIFAR is
absent (--image=PATH for any photo, resized to --size). Smoke: --steps=5.
"""

import os

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import data, models, pictures, synthesis
from cnnviz_jax.models.checkpoint import write_json

_WORKDIR = flags.DEFINE_string("workdir", "runs/inversion", "Output folder.")
_MODEL = flags.DEFINE_string("model", "cifar_vgg", "Model name.")
_LAYERS = flags.DEFINE_list("layers", ["relu1_1", "relu2_2", "relu3_2", "relu4_1", "fc7"],
                            "Layers, shallow to deep.")
_IMAGE = flags.DEFINE_string("image", None, "Image file (default: CIFAR test image 0).")
_SIZE = flags.DEFINE_integer("size", 32, "Image side for --image.")
_STEPS = flags.DEFINE_integer("steps", 300, "Optimization steps per layer.")
_TV = flags.DEFINE_float("tv", 0.05, "Total-variation weight.")
_BETA = flags.DEFINE_float("beta", 2.0, "Total-variation exponent.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def default_image(size):
  if os.path.exists(data.DEFAULT_CIFAR):
    x, _ = data.load_cifar10(data.DEFAULT_CIFAR, "test", limit=1)
    return x[:1].astype(np.float32) / 255.0
  # A project-made picture: a disk and a stripe on a gradient.
  yy, xx = np.mgrid[:size, :size] / size
  img = np.stack([xx, yy, 1 - xx], -1) * 0.6
  img[(yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.06] = (0.9, 0.2, 0.1)
  img[:, int(size * 0.75):int(size * 0.85)] = (0.1, 0.8, 0.3)
  return img[None].astype(np.float32)


def main(argv):
  del argv
  model = models.load(_MODEL.value) if _MODEL.value == "cifar_vgg" else models.load(
      _MODEL.value, key=jax.random.PRNGKey(0))
  x = (data.load_image(_IMAGE.value, size=(_SIZE.value, _SIZE.value))[None]
       if _IMAGE.value else default_image(_SIZE.value))
  x = jnp.asarray(x)
  recons, errors = [], {}
  for layer in _LAYERS.value:
    r = synthesis.invert(model, x, layer, key=jax.random.PRNGKey(_SEED.value),
                         steps=_STEPS.value, tv=_TV.value, beta=_BETA.value)
    recons.append(r[0])
    errors[layer] = float(synthesis.reconstruction_error(x, r)[0])
  os.makedirs(_WORKDIR.value, exist_ok=True)
  pictures.save_grid(os.path.join(_WORKDIR.value, "inversion.png"), [x[0]] + recons,
                     titles=["original"] + [f"{l} err {errors[l]:.2f}" for l in _LAYERS.value])
  write_json(os.path.join(_WORKDIR.value, "metrics.json"),
            {"relative_pixel_error": errors})
  write_json(os.path.join(_WORKDIR.value, "config.json"),
            dict(model=_MODEL.value, layers=_LAYERS.value, image=_IMAGE.value,
                 steps=_STEPS.value, tv=_TV.value, beta=_BETA.value, seed=_SEED.value))


if __name__ == "__main__":
  app.run(main)
