"""Grad-CAM and guided Grad-CAM (Selvaraju et al. 2017)."""


import jax
import jax.numpy as jnp

from cnnviz_jax.attribution._common import (
    Targets, _check_images, _check_layer, _parse_targets, _run, _score_from)
from cnnviz_jax.attribution._gradients import guided_backprop
from cnnviz_jax.image import resize as upsample

Array = jax.Array

def _grad_cam(model, images, classes, neuron, layer, relu):
  k = model.layer_index(layer) + 1
  acts = _run(model, model.params, model.normalize(images), 0, k, jax.nn.relu)
  scores, vjp = jax.vjp(
      lambda a: _score_from(model, model.params, a, k, classes, neuron,
                            jax.nn.relu), acts)
  grads = vjp(jnp.ones_like(scores))[0]
  # Selvaraju et al. 2017, eq. 1-2: channel weights are the spatially averaged
  # gradients; the map is the weighted sum of the activation maps.
  cam = jnp.einsum("nc,nhwc->nhw", grads.mean(axis=(1, 2)), acts)
  return jax.nn.relu(cam) if relu else cam


def grad_cam(model, images: Array, targets: Targets, *, layer: str,
             relu: bool = True) -> Array:
  """Grad-CAM (Selvaraju et al. 2017) at a conv-stage layer.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec of a layer after `layer`.
    layer: the layer whose activations are weighted (e.g. `relu5_3` or its
      torchvision path `features.29`).
    relu: apply the paper's final ReLU (Captum `LayerGradCam`'s
      `relu_attributions`).

  Returns:
    float32 `[N, h, w]` at the layer's resolution; `upsample` brings it to the
    image size.
  """
  _check_images(model, images)
  layer = _check_layer(model, layer, images)
  classes, neuron = _parse_targets(model, images, targets)
  if neuron is not None and model.layer_index(neuron.layer) <= model.layer_index(layer):
    raise ValueError(f"neuron layer {neuron.layer} must come after the Grad-CAM"
                     f" layer {layer}.")
  return _grad_cam(model, images, classes, neuron, layer, bool(relu))


def guided_grad_cam(model, images: Array, targets: Targets, *, layer: str,
                    interpolation: str = "nearest") -> Array:
  """Guided Grad-CAM: guided backprop times the upsampled Grad-CAM (with ReLU);
  Captum `GuidedGradCam` (which upsamples with "nearest").

  Returns:
    float32 `[N, H, W, 3]`.
  """
  cam = grad_cam(model, images, targets, layer=layer, relu=True)
  gb = guided_backprop(model, images, targets)
  return gb * upsample(cam, images.shape[1:3], interpolation)[..., None]



def default_cam_layer(model) -> str:
  """The deepest relu layer with spatial activations (Selvaraju et al. use the
  last convolutional layer)."""
  spatial = []
  for l in model.layers:
    if l.kind in ("adaptive_avgpool", "global_avgpool", "flatten", "dense"):
      break
    spatial.append(l)
  relus = [l.name for l in spatial if l.kind == "relu"]
  return (relus or [l.name for l in spatial])[-1]

