r"""Converts torchvision VGG/AlexNet weights to cnnviz_jax safetensors.

  # on a machine that is online: torchvision downloads its ImageNet weights
  python -m weights_conversion.convert_torchvision --arch=vgg16 \
      --output=vgg16.safetensors
  # offline: a local state dict (read with torch.load(weights_only=True))
  python -m weights_conversion.convert_torchvision --arch=vgg16 \
      --state_dict=vgg16-397923af.pth --output=vgg16.safetensors

Layout changes: conv OIHW -> HWIO; Linear [out, in] -> [in, out]; the rows of
the first Linear permuted from torch's NCHW flatten order to NHWC; BatchNorm
weight/bias/running statistics -> scale/bias/mean/var (num_batches_tracked is
dropped). Only this package and the tests import torch; the library never does.
"""

import json
import os
from typing import Mapping, Optional

from absl import app, flags, logging
import numpy as np

from cnnviz_jax import models
from cnnviz_jax.models import checkpoint, core, zoo
from weights_conversion import convert_resnet

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean",
       "running_var": "var"}


def _to_numpy(v):
  return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def convert_state_dict(arch: str, state_dict: Mapping) -> dict:
  """torchvision state dict of `arch` -> cnnviz_jax parameter pytree.

  Raises:
    ValueError: listing missing, unexpected and mis-shaped keys.
  """
  spec = models.spec(arch)
  by_alias = {l.alias: l for l in spec.layers if l.alias}
  flat, unexpected = {}, []
  prev_spatial = None
  for layer in spec.layers:  # for the flatten permutation below
    if layer.kind == "adaptive_avgpool":
      prev_spatial = layer.kw["size"]
  for key, value in state_dict.items():
    module, _, leaf = key.rpartition(".")
    layer = by_alias.get(module)
    v = _to_numpy(value)
    if leaf == "num_batches_tracked" and layer is not None and layer.kind == "bn":
      continue
    if layer is None:
      unexpected.append(key)
      continue
    if layer.kind == "conv" and leaf in ("weight", "bias"):
      flat[f"{layer.name}/{'kernel' if leaf == 'weight' else 'bias'}"] = (
          v.transpose(2, 3, 1, 0) if leaf == "weight" else v)
    elif layer.kind == "bn" and leaf in _BN:
      flat[f"{layer.name}/{_BN[leaf]}"] = v
    elif layer.kind == "dense" and leaf == "weight":
      if layer.name == "fc6" and prev_spatial is not None:
        h, w = prev_spatial
        out_f, in_f = v.shape
        c = in_f // (h * w)
        if c * h * w == in_f:
          v = v.reshape(out_f, c, h, w).transpose(0, 2, 3, 1).reshape(out_f, in_f)
      flat[f"{layer.name}/kernel"] = v.T
    elif layer.kind == "dense" and leaf == "bias":
      flat[f"{layer.name}/bias"] = v
    else:
      unexpected.append(key)
  expected = core.param_shapes(spec.layers, spec.input_size)
  extra = {k: np.zeros(0) for k in unexpected}
  checkpoint.check_keys({**flat, **extra}, expected,
                        f"torchvision {arch} state dict")
  return core.unflatten({k: np.ascontiguousarray(v, np.float32)
                         for k, v in flat.items()})


def imagenet_categories(arch: str) -> Optional[list]:
  """The 1000 class names from torchvision's weights metadata (no download)."""
  import torchvision
  try:
    return list(torchvision.models.get_model_weights(arch).DEFAULT.meta["categories"])
  except (ValueError, KeyError, AttributeError):
    return None


def convert(arch: str, output: str, state_dict_path: Optional[str] = None,
            overwrite: bool = False):
  """Converts and writes `output` (atomically). Returns the params pytree.

  Raises:
    FileExistsError: `output` exists and `overwrite` is False (checked before
      any work).
  """
  import torch
  import torchvision
  if os.path.isdir(output):
    raise ValueError(f"output {output} is a folder; give a .safetensors path.")
  if os.path.exists(output) and not overwrite:
    raise FileExistsError(f"output {output} exists; pass --overwrite (or "
                          "overwrite=True) to replace it.")
  valid = zoo.IMAGENET_ARCHITECTURES + convert_resnet.ARCHITECTURES
  if arch not in valid:
    raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(valid)}.")
  if state_dict_path:
    sd = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    source = state_dict_path
  else:
    net = torchvision.models.get_model(arch, weights="DEFAULT")
    sd, source = net.state_dict(), f"torchvision.models.{arch}(weights=DEFAULT)"
  if arch in convert_resnet.ARCHITECTURES:  # Flax modules, not layer tables
    params = convert_resnet.convert_state_dict(arch, sd)
  else:
    params = convert_state_dict(arch, sd)
  meta = {"arch": arch, "source": source,
          "torchvision_version": torchvision.__version__}
  cats = imagenet_categories(arch)
  if cats:
    meta["class_names"] = json.dumps(cats)
  checkpoint.save(output, params, meta)
  return params


_ARCH = flags.DEFINE_enum("arch", None, list(zoo.IMAGENET_ARCHITECTURES +
                                             convert_resnet.ARCHITECTURES),
                          "torchvision architecture.")
_OUTPUT = flags.DEFINE_string("output", None, "Output .safetensors path.")
_STATE_DICT = flags.DEFINE_string(
    "state_dict", None, "Local torchvision state dict (.pth); default: "
    "download through torchvision's API.")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace --output if it exists (default: refuse).")


def main(argv):
  del argv
  convert(_ARCH.value, _OUTPUT.value, _STATE_DICT.value, _OVERWRITE.value)
  logging.info("wrote %s", _OUTPUT.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["arch", "output"])
  app.run(main)
