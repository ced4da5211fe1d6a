"""Data: CIFAR-10 readers, image files, and sample images that need no
download (depends on nothing else in cnnviz_jax)."""

from cnnviz_jax.data._cifar import (
    CIFAR10_CLASSES, DEFAULT_CIFAR, load_cifar10, load_image)
from cnnviz_jax.data import samples
