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

import os

from cnnviz_jax import attribution as A
from cnnviz_jax import viz
from cnnviz_jax.data import samples
from cnnviz_jax.models import predict
from experiments import launch

# Methods that read `config.layer`.
_CAM_METHODS = ("grad_cam", "guided_grad_cam")


def run(config, workdir: str) -> dict:
  """Explains the images of `config` with each method, scores the maps and
  writes the results to `workdir`.

  Returns:
    `{"model", "images", "num_images", "targets", "predictions",
    "deletion_auc": {method: AUC}, "insertion_auc": {method: AUC}}`, with a
    "random" map among the methods as the reference.
  """
  arch = launch.architecture(config)
  methods = launch.split_list(config.methods, "methods")
  unknown = [m for m in methods if m not in A.METHODS]
  if unknown:
    raise ValueError(f"unknown config.methods {unknown}; valid: {', '.join(A.METHODS)}.")
  if config.layer is not None:
    if not set(methods) & set(_CAM_METHODS):
      raise ValueError(f"config.layer is the Grad-CAM layer: it needs one of "
                       f"{', '.join(_CAM_METHODS)} in config.methods.")
    launch.check_layers(arch, [config.layer], "layer")
  launch.check_at_least(config, num_images=1, metric_steps=1, metric_patch=1)
  if config.images not in (None, "synthetic"):
    launch.check_files(config.images.split(","), "images")
  launch.prepare_workdir(workdir)
  model = launch.load_model(config, launch.key(config.seed, "init"))
  images, labels, source = samples.load_images(config.images, model.input_size,
                                               config.num_images, config.seed)
  preds = predict.top_k(model, images, 1)[0][:, 0]
  targets = labels if labels is not None else preds
  maps = {m: A.explain(model, images, targets, m,
                       key=launch.key(config.seed, f"explain/{m}"),
                       layer=config.layer if m in _CAM_METHODS else None)
          for m in methods}
  faithfulness = A.faithfulness(model, images, targets, maps,
                                key=launch.key(config.seed, "random_map"),
                                steps=config.metric_steps, patch=config.metric_patch)
  viz.save_attribution_grid(
      os.path.join(workdir, "grid.png"), images, maps,
      row_titles=[model.class_names[t] for t in targets], overlay_alpha=0.6)
  metrics = {
      "model": config.model, "images": source, "num_images": len(images),
      "targets": [model.class_names[t] for t in targets],
      "predictions": [model.class_names[t] for t in preds], **faithfulness}
  launch.write_results(workdir, metrics, config)
  return metrics


if __name__ == "__main__":
  launch.main("saliency", run)
