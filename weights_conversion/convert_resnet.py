r"""Converts torchvision ResNet-18/50 weights to cnnviz_jax safetensors.

Through the same CLI as VGG/AlexNet:

  python -m weights_conversion.convert_torchvision --arch=resnet50 \
      --output=resnet50.safetensors       # [--state_dict=resnet50.pth]

The file holds the Flax variables of `models.resnet` flattened with `/`:
`params/layer1/0/conv1/kernel` (conv OIHW -> HWIO), `params/.../bn1/scale`,
`params/.../bn1/bias`, `batch_stats/.../bn1/mean` and `.../var` (BatchNorm
weight, bias, running statistics; `num_batches_tracked` is dropped),
`params/fc/kernel` (Linear [out, in] -> [in, out]). torchvision module paths
map one to one: `layer2.0.downsample.1` is `layer2/0/downsample/1`.
"""

from typing import Mapping

import numpy as np

from cnnviz_jax.models import checkpoint, core, resnet

ARCHITECTURES = tuple(resnet.ARCHITECTURES)

_BN_PARAMS = {"weight": "scale", "bias": "bias"}
_BN_STATS = {"running_mean": "mean", "running_var": "var"}


def _to_numpy(v):
  return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def convert_state_dict(arch: str, state_dict: Mapping) -> dict:
  """torchvision ResNet state dict -> `{"params", "batch_stats"}` pytree.

  Raises:
    ValueError: unknown `arch`, or listing missing, unexpected and mis-shaped
      keys.
  """
  if arch not in resnet.ARCHITECTURES:
    raise ValueError(f"unknown ResNet {arch!r}; valid: {', '.join(ARCHITECTURES)}.")
  expected = resnet.variable_shapes(arch)
  flat, unexpected = {}, []
  for key, value in state_dict.items():
    module, _, leaf = key.rpartition(".")
    path = module.replace(".", "/")
    v = _to_numpy(value)
    if f"params/{path}/kernel" in expected and leaf in ("weight", "bias"):
      if leaf == "bias":
        flat[f"params/{path}/bias"] = v
      else:  # conv OIHW -> HWIO, Linear [out, in] -> [in, out]
        flat[f"params/{path}/kernel"] = (v.transpose(2, 3, 1, 0) if v.ndim == 4
                                         else v.T)
    elif f"params/{path}/scale" in expected and leaf in _BN_PARAMS:
      flat[f"params/{path}/{_BN_PARAMS[leaf]}"] = v
    elif f"batch_stats/{path}/mean" in expected and leaf in _BN_STATS:
      flat[f"batch_stats/{path}/{_BN_STATS[leaf]}"] = v
    elif f"batch_stats/{path}/mean" in expected and leaf == "num_batches_tracked":
      continue
    else:
      unexpected.append(key)
  extra = {k: np.zeros(0) for k in unexpected}
  checkpoint.check_keys({**flat, **extra}, expected,
                        f"torchvision {arch} state dict")
  return core.unflatten({k: np.ascontiguousarray(v, np.float32)
                         for k, v in flat.items()})
