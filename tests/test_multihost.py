"""Sweeps across processes (`experiments/sweep.py` on `jax.distributed`): two
local processes with two CPU devices each write the same table as one
process with four devices and as one with one; a process that dies stops
the other with an error instead of a hang; the smoke presets run in-process.

The multi-process runs are real command lines in subprocesses (the device
count and the process layout are fixed when JAX starts), each with a
timeout, so that no failure can hang the suite.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from conftest import host_devices_env, tiny_model
from test_launchers import grid_size, read_png
from cnnviz_jax.synthesis import sweep_engine
from experiments import sweep
from experiments.configs import sweep as sweep_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = [sys.executable, os.path.join(ROOT, "experiments", "sweep.py"),
           f"--config={os.path.join(ROOT, 'experiments', 'configs', 'sweep.py')}:smoke"]
# Seconds any one subprocess may take: a loaded 2-core machine needs about a
# minute for one smoke run (imports, compilation); far beyond it is a hang.
TIMEOUT_S = 300
# The survivor of a dead peer must stop within the heartbeat timeout plus
# its own start-up and compilation; 5 s keeps the test short.
HEARTBEAT_S = 5
# Float rounding differs with the devices' batch sizes (XLA:CPU blocks a
# convolution by its batch); the settings must match exactly.
RTOL, ATOL = 1e-5, 1e-7


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return host_devices_env(devices, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)


def _start(args, devices):
  return subprocess.Popen(args, cwd=ROOT, env=_env(devices), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(procs, timeout=TIMEOUT_S):
  """Waits for every process (killing all at the deadline); returns
  `[(returncode, stderr)]`, returncode None for a killed one."""
  deadline = time.monotonic() + timeout
  out = []
  for p in procs:
    try:
      _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
      out.append((p.returncode, err))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      _, err = p.communicate()
      out.append((None, err))
  return out


def _table(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    m = json.load(f)
  return m, [{k: v for k, v in p.items() if k != "final_loss"} for p in m["points"]], \
      np.array([p["final_loss"] for p in m["points"]])


def test_two_processes_write_the_table_of_one(tmp_path):
  port = _free_port()
  dist = [f"--config.coordinator=localhost:{port}", "--config.num_processes=2"]
  runs = {
      "two_processes": _start(COMMAND + [f"--workdir={tmp_path / 'two'}", *dist,
                                         "--config.process_id=0"], 2),
      "second_process": _start(COMMAND + [f"--workdir={tmp_path / 'second'}", *dist,
                                          "--config.process_id=1"], 2),
      "four_devices": _start(COMMAND + [f"--workdir={tmp_path / 'four'}"], 4),
  }
  # Meanwhile, the one-device reference: this process (the launcher's smoke
  # preset in-process) unless the suite runs with several devices.
  try:
    if jax.device_count() == 1:
      _check_smoke(sweep_config.get_config("smoke"), tmp_path / "one")
    else:
      runs["one_device"] = _start(COMMAND + [f"--workdir={tmp_path / 'one'}"], 1)
  except BaseException:
    for p in runs.values():
      p.kill()
      p.communicate()
    raise
  for name, (rc, err) in zip(runs, _finish(list(runs.values()))):
    assert rc == 0, f"{name} exited with {rc}:\n{err[-3000:]}"
  # Only process 0 writes.
  assert not (tmp_path / "second").exists()
  two, settings, losses = _table(tmp_path / "two")
  assert (two["num_processes"], two["num_devices"]) == (2, 4)
  assert two["num_points"] == 18  # not a multiple of 4: padded, padding dropped
  for name, devices in (("four", 4), ("one", 1)):
    m, s, l = _table(tmp_path / name)
    assert (m["num_processes"], m["num_devices"]) == (1, devices)
    assert s == settings, name
    np.testing.assert_allclose(l, losses, rtol=RTOL, atol=ATOL, err_msg=name)
  read_png(tmp_path / "two" / "sheet.png",
           grid_size(2, 9, title_lines=_title_lines(settings)))


def test_a_dead_process_stops_the_other(tmp_path):
  port = _free_port()
  dist = [f"--config.coordinator=localhost:{port}", "--config.num_processes=2",
          f"--config.heartbeat_timeout_s={HEARTBEAT_S}"]
  survivor = _start(COMMAND + [f"--workdir={tmp_path}", *dist, "--config.process_id=0"], 2)
  # Process 1 joins and starts its devices, then dies before the sweep (a
  # crash, a preemption).
  dying = _start([sys.executable, "-c", (
      "import os, jax; from experiments import sweep; "
      "from experiments.configs import sweep as c; cfg = c.get_config('smoke'); "
      f"cfg.coordinator = 'localhost:{port}'; cfg.num_processes = 2; "
      f"cfg.process_id = 1; cfg.heartbeat_timeout_s = {HEARTBEAT_S}; "
      "sweep.initialize_distributed(cfg); jax.devices(); os._exit(3)")], 2)
  t0 = time.monotonic()
  (rc, err), (dead_rc, dead_err) = _finish([survivor, dying])
  assert dead_rc == 3, dead_err[-2000:]
  assert rc is not None, f"the survivor hung for {time.monotonic() - t0:.0f} s"
  assert rc != 0
  assert ("another process has probably died" in err
          or "another task died" in err), err[-3000:]
  assert not (tmp_path / "metrics.json").exists()


def _check_smoke(config, workdir):
  """Runs `config` in-process; checks its files and what its table must show."""
  m = sweep.run(config, str(workdir))
  assert json.load(open(workdir / "metrics.json")) == json.loads(json.dumps(m))
  axes = list(m["axes"].items())
  assert m["num_points"] == len(m["points"]) == np.prod([len(v) for _, v in axes])
  assert m["steady_points_per_second"] > 0
  losses = {tuple(p[a] for a, _ in axes): p["final_loss"] for p in m["points"]}
  assert all(np.isfinite(list(losses.values())))
  if config.technique == "class_viz":
    # The tiny network's logits are about 1e-5: the loss is the L2 penalty,
    # so it grows with the point's own l2 weight (a mislabelled table fails).
    for blur in m["axes"]["blur_sigma"]:
      for c in m["axes"]["class"]:
        row = [losses[(l2, blur, c)] for l2 in m["axes"]["l2"]]
        assert np.all(np.diff(row) > 0), row
  if config.technique == "style_transfer":
    # From the same (content) start, the Gram term dominates the loss after
    # two steps: it grows with the style weight at a fixed TV weight.
    for tv in m["axes"]["tv_weight"]:
      row = [losses[(w, tv)] for w in m["axes"]["style_weight"]]
      assert np.all(np.diff(row) > 0), row
  ncols = len(axes[-1][1])
  h, w = m["image_hw"]
  read_png(workdir / "sheet.png",
           grid_size(ncols, m["num_points"] // ncols, aspect=h / w,
                     title_lines=_title_lines(_table(workdir)[1])))


def _title_lines(settings) -> int:
  """Lines of the sheet's longest thumbnail title (`sweep.label`) over the
  points' settings (`_table`)."""
  names = tiny_model().class_names
  return max(1 + sweep.label(p, names).count("\n") for p in settings)


@pytest.mark.parametrize("arg", ["style_transfer,smoke", "deepdream,smoke"])
def test_smoke_in_process(tmp_path, arg):
  _check_smoke(sweep_config.get_config(arg), tmp_path)


def test_grid_and_process_checks():
  assert sweep.parse_grid("l2=0,0.5;class=1,2", "class_viz") == [
      ("l2", [0.0, 0.5]), ("class", [1, 2])]
  assert [sweep_engine.padded_size(s, 4) for s in (1, 4, 18)] == [4, 4, 20]
  assert sweep.grid_points([("a", [1, 2]), ("b", [3, 4])]) == [
      dict(a=1, b=3), dict(a=1, b=4), dict(a=2, b=3), dict(a=2, b=4)]
  for spec, match in (("l2=0;l3=1", "no axis 'l3'; valid: class, l2"),
                      ("class=0.5", "integers"), ("l2=0;l2=1", "twice"),
                      ("l2", "axis=v1,v2"), ("l2=a", "needs numbers")):
    with pytest.raises(ValueError, match=match):
      sweep.parse_grid(spec, "class_viz")
  with pytest.raises(ValueError, match="no axis 'class'"):
    sweep.parse_grid("class=1", "style_transfer")
  config = sweep_config.get_config("smoke")
  config.coordinator = "localhost:1234"
  with pytest.raises(ValueError, match="missing: config.num_processes, config.process_id"):
    sweep.initialize_distributed(config)
  config.num_processes, config.process_id = 2, 2
  with pytest.raises(ValueError, match="process_id must be in 0..1"):
    sweep.initialize_distributed(config)
  config.coordinator, config.process_id = "localhost", 0
  with pytest.raises(ValueError, match="HOST:PORT"):
    sweep.initialize_distributed(config)
  assert sweep.cluster_environment({}) is None
  assert sweep.cluster_environment({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None
  assert sweep.cluster_environment({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) == "SLURM"
  assert sweep.cluster_environment({"TPU_WORKER_HOSTNAMES": "a,b"}) == "Cloud TPU"
  assert sweep.cluster_environment({"TPU_WORKER_HOSTNAMES": "a"}) is None
