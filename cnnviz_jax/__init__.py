"""cnnviz_jax: visualizing and understanding convolutional networks in JAX.

Every technique is a pure function of `(model or params, images, ...)` on
float32 NHWC RGB images in [0, 1].
"""

__version__ = "0.1.0"
