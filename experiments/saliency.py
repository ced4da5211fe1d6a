r"""Attribution maps for a few images: a PNG grid (image x method) plus a JSON
of faithfulness metrics (deletion / insertion AUC, Petsiuk et al. 2018).

  python experiments/saliency.py --config=experiments/configs/saliency.py \
      --workdir=runs/saliency --config.methods=saliency,grad_cam

Images: a CIFAR-10 archive (default: ../shared/data/cifar10-jpeg.tar when
present), a folder or comma list of image files, or "synthetic". Targets are
the true labels for CIFAR, else the model's predictions. Writes grid.png,
metrics.json and config.json. Options: experiments/configs/saliency.py
(`:smoke` for tests).
"""

import json
import os

from absl import app
import jax

from cnnviz_jax import attribution as A
from cnnviz_jax import models
from cnnviz_jax.data import samples
from cnnviz_jax.models import predict
from experiments import launch

_CONFIG, _WORKDIR = launch.define_flags("saliency")


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  methods = config.methods.split(",")
  unknown = [m for m in methods if m not in A.METHODS]
  if unknown:
    raise app.UsageError(f"unknown methods {unknown}; valid: {', '.join(A.METHODS)}")
  key = jax.random.PRNGKey(config.seed)
  model = models.load_or_init(config.model, config.weights, key=key)
  images, labels, source = samples.load_images(config.images, model.input_size,
                                               config.num_images, config.seed)
  preds = predict.top_k(model, images, 1)[0][:, 0]
  targets = labels if labels is not None else preds
  maps = {m: A.explain(model, images, targets, m, key=key, layer=config.layer)
          for m in methods}
  faithfulness = A.faithfulness(model, images, targets, maps, key=key,
                                      steps=config.metric_steps,
                                      patch=config.metric_patch)
  os.makedirs(workdir, exist_ok=True)
  A.save_grid(os.path.join(workdir, "grid.png"), images, maps,
              row_titles=[model.class_names[t] for t in targets], overlay_alpha=0.6)
  launch.write_results(workdir, {
      "model": config.model, "images": source, "num_images": len(images),
      "targets": [model.class_names[t] for t in targets],
      "predictions": [model.class_names[t] for t in preds], **faithfulness}, config)
  print(json.dumps(faithfulness, indent=1))


if __name__ == "__main__":
  app.run(main)
