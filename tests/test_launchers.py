"""Smoke tests: each foundation launcher runs end to end on a tiny setting,
and every launcher config loads."""

import glob
import importlib
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from cnnviz_jax.data import samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
  out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(ROOT, "experiments", "configs", "*.py"))
    if not p.endswith(("__init__.py", "common.py")))


def test_every_launcher_has_a_config():
  launchers = {"adversarial", "class_viz", "classify", "deepdream", "inversion",
               "multifaceted", "neuron_viz", "saliency"}
  assert launchers <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  default, smoke = module.get_config(), module.get_config("smoke")
  assert isinstance(default, ml_collections.ConfigDict)
  assert set(smoke) == set(default)  # smoke changes values, never the options
  assert module.get_config("") == default
  assert f"experiments/configs/{name}.py" in module.__doc__  # launch command
  with pytest.raises(ValueError, match="accepted: '' .* 'smoke'"):
    module.get_config("smok")


def test_classify_on_bundled_photos(tmp_path):
  photos = list(samples.bundled_photo_paths().values())
  assert len(photos) >= 2  # sklearn and matplotlib ship them
  run("experiments/classify.py", "--config=experiments/configs/classify.py:smoke",
      f"--workdir={tmp_path}")
  preds = json.load(open(tmp_path / "predictions.json"))
  assert len(preds) == len(photos)
  assert all(abs(sum(p for _, p in r["top"]) - 1) < 1 for r in preds)
  assert (tmp_path / "predictions.png").stat().st_size > 10_000


def test_convert_launcher_offline(tmp_path):
  import torch
  from weights_conversion import torch_reference as tr
  torch.save(tr.torchvision_model("alexnet").state_dict(), tmp_path / "a.pth")
  run("-m", "weights_conversion.convert_torchvision", "--arch=alexnet",
      f"--state_dict={tmp_path / 'a.pth'}", f"--output={tmp_path / 'a.safetensors'}")
  from cnnviz_jax import models
  assert models.load("alexnet", str(tmp_path / "a.safetensors")).class_names[1] == "goldfish"
