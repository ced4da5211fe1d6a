"""A sweep sharded over several devices equals the one-device result.

Runs in a subprocess with 4 simulated CPU devices (XLA's host platform device
count), since the device count is fixed when JAX starts.
"""

import subprocess
import sys
import textwrap

from conftest import host_devices_env

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from cnnviz_jax import models, objectives as O
    from cnnviz_jax.synthesis import engine as opt, param as P, sweep_engine
    from cnnviz_jax.synthesis import transforms as T
    assert len(jax.devices()) == 4, jax.devices()
    m = models.load("tiny", key=jax.random.PRNGKey(0))
    p = P.pixels(2, (16, 16))
    # Every kind of traced setting varies: weights, TV beta, jitter, blur
    # sigma (0: none) and period, learning rate. The static bounds are given
    # so that the one-by-one runs share one compiled program.
    setups = [opt.Setup(O.class_logit(jnp.array([1, 3])) - l2 * O.l2()
                        - 0.1 * O.tv(beta),
                        T.jitter(j, max_pixels=3),
                        T.gaussian_blur(s, every=e, max_radius=3), lr)
              for l2, beta, j, s, e, lr in ((0.0, 1.0, 0, 0.0, 2, 0.05),
                                            (0.1, 1.5, 1, 0.3, 1, 0.02),
                                            (0.2, 2.0, 2, 0.6, 2, 0.1),
                                            (0.4, 3.0, 3, 1.0, 3, 0.05))]
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    st = sweep_engine.shard_sweep_axis(sweep_engine.stack(
        [opt.prepare(m, s, p, 4) for s in setups]), 4)
    leaf = jax.tree_util.tree_leaves(st.learning_rate)[0]
    assert len(leaf.sharding.device_set) == 4, leaf.sharding
    res = sweep_engine.sweep(m, setups, p, keys=keys, steps=4)
    for i, s in enumerate(setups):
      one = opt.optimize(m, s, p, key=keys[i], steps=4)
      np.testing.assert_allclose(res.images[i], one.images, atol=2e-5)
    print("ok")
""")


def test_sweep_sharded_over_four_devices():
  env = host_devices_env(4, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
