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

def explain(model, images: Array, targets: Targets, method: str, *,
            key: Optional[Array] = None, layer: Optional[str] = None,
            reduce: str = "max_abs", **kwargs) -> Array:
  """Heatmap `[N, H, W]` (or `[N, rows, cols]` for occlusion, `[N, h, w]` for
  Grad-CAM) of the named method, for launchers and metrics.

  Args:
    method: one of `METHODS`.
    key: PRNG key (SmoothGrad).
    layer: Grad-CAM layer (default: the last conv-stage relu).
    reduce: channel reduction (see `heatmap`).
    **kwargs: passed to the method.
  """
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}.")
  if method in ("grad_cam", "guided_grad_cam"):
    kwargs["layer"] = layer or default_cam_layer(model)
  if method == "smoothgrad":
    kwargs["key"] = jax.random.PRNGKey(0) if key is None else key
  out = METHODS[method](model, images, targets, **kwargs)
  if method == "integrated_gradients":
    out = out.attributions
  if method == "occlusion":
    # Low score when covered = important: flip so that high means important.
    return -out
  return heatmap(out, reduce)



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
