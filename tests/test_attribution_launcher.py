"""Smoke test of experiments/saliency.py on its smoke config (tiny model)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_saliency_runs_end_to_end(tmp_path):
  out = subprocess.run([sys.executable, "experiments/saliency.py",
                        "--config=experiments/configs/saliency.py:smoke",
                        f"--workdir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (tmp_path / "grid.png").stat().st_size > 1000
  stored = json.load(open(tmp_path / "metrics.json"))
  assert stored["num_images"] == 2
  assert set(stored["deletion_auc"]) == {"saliency", "grad_cam", "occlusion",
                                         "smoothgrad", "random"}
  assert all(0.0 <= v <= 1.0 for v in stored["insertion_auc"].values())
  assert json.load(open(tmp_path / "config.json"))["model"] == "tiny"
