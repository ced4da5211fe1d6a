r"""DeepDream (Mordvintsev et al. 2015) on any photograph at any size.

  python experiments/deepdream.py --workdir=runs/deepdream \
      --image=../shared/data/images/tubingen.jpg --max_side=256 \
      --model=vgg16 --weights=vgg16.safetensors --layer=relu4_2 --octaves=4
Default: cifar_vgg on a photograph an installed package ships (scikit-learn's
china.jpg), or a pattern the project makes when none is there.
Smoke: --steps=2 --octaves=1.
"""

import os

from absl import app, flags
import jax
import jax.numpy as jnp

from cnnviz_jax import data, models, pictures, samples, synthesis
from cnnviz_jax.models.checkpoint import write_json

_WORKDIR = flags.DEFINE_string("workdir", "runs/deepdream", "Output folder.")
_MODEL = flags.DEFINE_string("model", "cifar_vgg", "Model name.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Weights file (ImageNet models).")
_IMAGE = flags.DEFINE_string("image", None, "Photo (default: a bundled photo).")
_MAX_SIDE = flags.DEFINE_integer("max_side", 128, "Bound on the longer side.")
_LAYER = flags.DEFINE_string("layer", "relu3_2", "Layer to amplify.")
_OCTAVES = flags.DEFINE_integer("octaves", 3, "Number of octaves.")
_SCALE = flags.DEFINE_float("octave_scale", 1.4, "Size ratio between octaves.")
_STEPS = flags.DEFINE_integer("steps", 10, "Steps per octave.")
_STEP_SIZE = flags.DEFINE_float("step_size", 0.01, "Pixel step per step.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed.")


def default_image(side):
  photos = samples.bundled_photos(max_side=side)
  return photos.get("china", samples.synthetic_pattern(side))


def main(argv):
  del argv
  model = (models.load(_MODEL.value, _WEIGHTS.value) if _WEIGHTS.value or
           _MODEL.value == "cifar_vgg" else models.load(_MODEL.value, key=jax.random.PRNGKey(0)))
  image = (data.load_image(_IMAGE.value, max_side=_MAX_SIDE.value) if _IMAGE.value
           else default_image(_MAX_SIDE.value))
  image = jnp.asarray(image)
  out = synthesis.deepdream(model, image, _LAYER.value, key=jax.random.PRNGKey(_SEED.value),
                            octaves=_OCTAVES.value, octave_scale=_SCALE.value,
                            steps=_STEPS.value, step_size=_STEP_SIZE.value)

  def norm(x):
    a = model(x[None], taps=(_LAYER.value,), logits=False)[1][_LAYER.value]
    return float(jnp.linalg.norm(a))
  os.makedirs(_WORKDIR.value, exist_ok=True)
  pictures.save_image(os.path.join(_WORKDIR.value, "dream.png"), out)
  pictures.save_grid(os.path.join(_WORKDIR.value, "before_after.png"), [image, out],
                     titles=["input", f"dream {_LAYER.value}"], size=4.0)
  write_json(os.path.join(_WORKDIR.value, "metrics.json"),
            {"layer_norm_before": norm(image), "layer_norm_after": norm(out),
             "shape": list(out.shape)})
  write_json(os.path.join(_WORKDIR.value, "config.json"),
            {k: getattr(f, "value") for k, f in dict(
                model=_MODEL, weights=_WEIGHTS, image=_IMAGE, max_side=_MAX_SIDE,
                layer=_LAYER, octaves=_OCTAVES, octave_scale=_SCALE, steps=_STEPS,
                step_size=_STEP_SIZE, seed=_SEED).items()})


if __name__ == "__main__":
  app.run(main)
