"""Smoke tests: each foundation launcher runs end to end on a tiny setting."""

import json
import os
import subprocess
import sys

from cnnviz_jax import samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
  out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def test_classify_on_bundled_photos(tmp_path):
  photos = list(samples.bundled_photo_paths().values())
  assert len(photos) >= 2  # sklearn and matplotlib ship them
  run("experiments/classify.py", f"--workdir={tmp_path}", "--images=" + ",".join(photos))
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
