"""A PyTorch copy of any cnnviz_jax Model: the baseline and peer for tests and
benchmarks (Captum, plain PyTorch loops) on the identical network.

`to_torch(model)` builds an `nn.Sequential` whose children are named by the
canonical layer names (`conv1_1`, `relu1_1`, ...), takes NCHW RGB in [0, 1]
and normalizes inside, exactly like `Model.apply`.
"""

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from cnnviz_jax.models import core


class Normalize(nn.Module):
  def __init__(self, mean, std):
    super().__init__()
    self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
    self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

  def forward(self, x):
    return (x - self.mean) / self.std


class FlattenNHWC(nn.Module):
  """Flattens in NHWC order, matching the JAX model's fc6 row order."""

  def forward(self, x):
    return x.permute(0, 2, 3, 1).flatten(1)


class GlobalAvgPool(nn.Module):
  def forward(self, x):
    return x.mean(dim=(2, 3))


def _t(x):
  return torch.from_numpy(np.array(x, np.float32))


def to_torch(model, normalize: bool = True) -> nn.Sequential:
  """The same network in PyTorch (eval mode, float32, CPU)."""
  params = core.flatten(model.params)
  mods = [("normalize", Normalize(model.mean, model.std))] if normalize else []
  channels = 3
  for layer in model.layers:
    kw, name = layer.kw, layer.name
    if layer.kind == "conv":
      m = nn.Conv2d(channels, kw["features"], kw["kernel"], kw["stride"],
                    kw["padding"])
      m.weight.data = _t(params[f"{name}/kernel"]).permute(3, 2, 0, 1).contiguous()
      m.bias.data = _t(params[f"{name}/bias"])
      channels = kw["features"]
    elif layer.kind == "bn":
      m = nn.BatchNorm2d(channels, eps=kw.get("eps", 1e-5))
      m.weight.data, m.bias.data = _t(params[f"{name}/scale"]), _t(params[f"{name}/bias"])
      m.running_mean.data = _t(params[f"{name}/mean"])
      m.running_var.data = _t(params[f"{name}/var"])
    elif layer.kind == "relu":
      m = nn.ReLU()
    elif layer.kind == "maxpool":
      m = nn.MaxPool2d(kw["window"], kw["stride"])
    elif layer.kind == "adaptive_avgpool":
      m = nn.AdaptiveAvgPool2d(kw["size"])
    elif layer.kind == "global_avgpool":
      m = GlobalAvgPool()
    elif layer.kind == "flatten":
      m = FlattenNHWC()
    elif layer.kind == "dropout":
      m = nn.Dropout()
    elif layer.kind == "dense":
      k = _t(params[f"{name}/kernel"])
      m = nn.Linear(k.shape[0], k.shape[1])
      m.weight.data = k.T.contiguous()
      m.bias.data = _t(params[f"{name}/bias"])
    else:
      raise ValueError(f"unknown layer kind {layer.kind}")
    mods.append((name, m))
  return nn.Sequential(OrderedDict(mods)).eval()


def torchvision_model(arch: str, seed: int = 0) -> nn.Module:
  """A randomly initialized torchvision model (fixed seed), eval mode.

  BatchNorm running statistics are randomized too, so that conversion of the
  statistics is actually exercised.
  """
  import torchvision
  torch.manual_seed(seed)
  net = torchvision.models.get_model(arch, weights=None).eval()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
  return net


def nhwc_to_nchw(x) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nchw_to_nhwc(x) -> np.ndarray:
  return x.detach().cpu().numpy().transpose(0, 2, 3, 1)
