"""Grad-CAM and guided Grad-CAM (Selvaraju et al. 2017)."""

import functools

import jax
import jax.numpy as jnp

from cnnviz_jax import objectives
from cnnviz_jax.attribution._common import (
    Targets, _check_images, target_objective)
from cnnviz_jax.attribution._gradients import guided_backprop
from cnnviz_jax.image import resize as upsample
from cnnviz_jax.models import core

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("layer", "relu"))
def _grad_cam(model, images, objective, layer, relu):
  if isinstance(model, core.Model):
    # A layer list: run it to `layer`, then its tail from the activations.
    acts = model.apply(model.params, images, taps=(layer,), logits=False)[1][layer]
    scores, vjp = jax.vjp(
        lambda a: objectives.evaluate(objective, model, a, start=layer), acts)
    grads = vjp(jnp.ones_like(scores))[0]
  else:
    # Any program (wrapped models): the gradient at a tap is that of a zero
    # perturbation added where the program computes it, so layers inside a
    # residual block (no cut point) work too; still one forward pass.
    taps = tuple(t for t in objective.taps if t not in ("input", "logits"))

    def score(delta):
      logits, acts = model.apply(model.params, images, taps=taps + (layer,),
                                 perturb={layer: delta})
      return objective({**acts, "input": images, "logits": logits}), acts[layer]
    zero = jnp.zeros((images.shape[0],
                      *model.layer_shape(layer, tuple(images.shape[1:3]))))
    scores, vjp, acts = jax.vjp(score, zero, has_aux=True)
    grads = vjp(jnp.ones_like(scores))[0]
  # Selvaraju et al. 2017, eq. 1-2: channel weights are the spatially averaged
  # gradients; the map is the weighted sum of the activation maps.
  cam = jnp.einsum("nc,nhwc->nhw", grads.mean(axis=(1, 2)), acts)
  return jax.nn.relu(cam) if relu else cam


def _check_cam_layer(model, layer: str, images) -> str:
  layer = model.resolve(layer)
  if len(model.layer_shape(layer, tuple(images.shape[1:3]))) != 3:
    raise ValueError(f"layer {layer} of {model.name} is not spatial; Grad-CAM "
                     "needs a conv-stage layer ([h, w, C] activations).")
  return layer


def grad_cam(model, images: Array, targets: Targets, *, layer: str,
             relu: bool = True) -> Array:
  """Grad-CAM (Selvaraju et al. 2017) at a conv-stage layer.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective` reading only
      layers after `layer` (and the logits).
    layer: the layer whose activations are weighted (e.g. `relu5_3` or its
      torchvision path `features.29`); on a wrapped model any spatial tap,
      inside a residual block too.
    relu: apply the paper's final ReLU (Captum `LayerGradCam`'s
      `relu_attributions`).

  Returns:
    float32 `[N, h, w]` at the layer's resolution; `upsample` brings it to the
    image size.
  """
  _check_images(model, images)
  layer = _check_cam_layer(model, layer, images)
  objective = target_objective(model, images, targets)
  k = model.layer_index(layer)
  for tap in objective.taps:
    if tap == "input" or (tap != "logits" and model.layer_index(tap) <= k):
      raise ValueError(f"target layer {tap} must come after the Grad-CAM layer "
                       f"{layer}.")
  return _grad_cam(model, images, objective, layer, bool(relu))


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
  last convolutional layer); for a wrapped model (`models.from_flax`), its
  last-finished tap with spatial activations (a ResNet's `layer4`)."""
  if not hasattr(model, "layers"):
    return [n for n, shape in model.tap_shapes if len(shape) == 3][-1]
  spatial = []
  for l in model.layers:
    if l.kind in ("adaptive_avgpool", "global_avgpool", "flatten", "dense"):
      break
    spatial.append(l)
  relus = [l.name for l in spatial if l.kind == "relu"]
  return (relus or [l.name for l in spatial])[-1]
