"""Attribution methods by name (launchers, faithfulness metrics)."""

from typing import Optional

import jax

from cnnviz_jax.attribution._cam import default_cam_layer, grad_cam, guided_grad_cam
from cnnviz_jax.attribution._common import Targets
from cnnviz_jax.attribution._gradients import (
    deconvnet, guided_backprop, integrated_gradients, saliency, smoothgrad)
from cnnviz_jax.attribution._occlusion import occlusion
from cnnviz_jax.viz._heatmaps import heatmap

Array = jax.Array

METHODS = {
    "saliency": saliency,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
    "occlusion": occlusion,
}

# The methods that draw random numbers, hence need `key`.
RANDOM_METHODS = ("smoothgrad",)


def explain(model, images: Array, targets: Targets, method: str, *,
            key: Optional[Array] = None, layer: Optional[str] = None,
            reduce: str = "max_abs", **kwargs) -> Array:
  """Heatmap of the named method, higher = more important for every method:
  `[N, H, W]` for pixel attributions (reduced with `heatmap`), `[N, rows,
  cols]` for occlusion (the score drop per patch position), `[N, h, w]` for
  Grad-CAM.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    method: one of `METHODS`.
    key: PRNG key, required by the methods in `RANDOM_METHODS` (SmoothGrad)
      and passed only to them.
    layer: Grad-CAM layer (default: the last conv-stage relu).
    reduce: channel reduction (see `heatmap`).
    **kwargs: passed to the method.

  Returns:
    float32 `[N, h, w]` (see above).
  """
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}.")
  if method in ("grad_cam", "guided_grad_cam"):
    kwargs["layer"] = layer or default_cam_layer(model)
  if method in RANDOM_METHODS:
    if key is None:
      raise ValueError(f"method {method!r} is random and needs a PRNG key: "
                       f"explain(..., {method!r}, key=jax.random.PRNGKey(0)).")
    kwargs["key"] = key
  out = METHODS[method](model, images, targets, **kwargs)
  if method == "integrated_gradients":
    out = out.attributions
  return heatmap(out, reduce)
