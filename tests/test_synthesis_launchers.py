"""Smoke tests: every synthesis launcher runs end to end on a tiny setting."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar")


def run(script, tmp_path, *args):
  out = subprocess.run([sys.executable, f"experiments/{script}", f"--workdir={tmp_path}",
                        *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.load(open(tmp_path / "config.json"))
  return json.load(open(tmp_path / "metrics.json"))


def test_class_viz(tmp_path):
  m = run("class_viz.py", tmp_path, "--steps=5", "--classes=0,1")
  assert set(m["class_prob"]) == {"airplane", "automobile"}
  assert (tmp_path / "classes.png").exists()


def test_neuron_viz(tmp_path):
  m = run("neuron_viz.py", tmp_path, "--steps=5", "--channels=0,1", "--layer=relu2_1")
  assert len(m["channel_mean_activation"]) == 2


def test_inversion(tmp_path):
  m = run("inversion.py", tmp_path, "--steps=5", "--layers=relu1_1,relu2_1")
  assert list(m["relative_pixel_error"]) == ["relu1_1", "relu2_1"]


def test_deepdream(tmp_path):
  m = run("deepdream.py", tmp_path, "--steps=2", "--octaves=2", "--max_side=48",
          "--layer=relu2_1")
  assert m["layer_norm_after"] > m["layer_norm_before"]


@pytest.mark.skipif(not os.path.exists(CIFAR), reason=f"CIFAR-10 not found at {CIFAR}")
def test_multifaceted(tmp_path):
  m = run("multifaceted.py", tmp_path, "--steps=2", "--k=2", "--images_per_class=10",
          "--split=test")
  assert sum(m["cluster_sizes"]) == 10


@pytest.mark.skipif(not os.path.exists(CIFAR), reason=f"CIFAR-10 not found at {CIFAR}")
def test_adversarial(tmp_path):
  m = run("adversarial.py", tmp_path, "--n=16", "--steps=2", "--fool_steps=2")
  assert m["attack"]["max_linf"] <= 8 / 255 + 1e-6
