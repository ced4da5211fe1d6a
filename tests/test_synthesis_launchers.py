"""Smoke tests: every synthesis launcher runs end to end on its smoke config."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar")


def run(name, tmp_path, *overrides):
  """Runs experiments/<name>.py with `--config=experiments/configs/<name>.py:smoke`."""
  out = subprocess.run([sys.executable, f"experiments/{name}.py",
                        f"--config=experiments/configs/{name}.py:smoke",
                        f"--workdir={tmp_path}", *overrides],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.load(open(tmp_path / "config.json"))
  return json.load(open(tmp_path / "metrics.json"))


def test_class_viz(tmp_path):
  m = run("class_viz", tmp_path)
  assert set(m["class_prob"]) == {"airplane", "automobile"}
  assert (tmp_path / "classes.png").exists()


def test_neuron_viz(tmp_path):
  m = run("neuron_viz", tmp_path)
  assert len(m["channel_mean_activation"]) == 2


def test_inversion(tmp_path):
  m = run("inversion", tmp_path)
  assert list(m["relative_pixel_error"]) == ["relu1_1", "relu2_1"]


def test_deepdream(tmp_path):
  m = run("deepdream", tmp_path)
  assert m["layer_norm_after"] > m["layer_norm_before"]


@pytest.mark.skipif(not os.path.exists(CIFAR), reason=f"CIFAR-10 not found at {CIFAR}")
def test_multifaceted(tmp_path):
  m = run("multifaceted", tmp_path)
  assert sum(m["cluster_sizes"]) == 10


@pytest.mark.skipif(not os.path.exists(CIFAR), reason=f"CIFAR-10 not found at {CIFAR}")
def test_adversarial(tmp_path):
  m = run("adversarial", tmp_path)
  assert m["attack"]["max_linf"] <= 8 / 255 + 1e-6
  assert m["fooling"]["max_linf"] <= 4 / 255 + 1e-6
  assert 0.0 <= m["fooling"]["confident_success_rate"] <= 1.0
  assert (tmp_path / "fooling.png").exists()
