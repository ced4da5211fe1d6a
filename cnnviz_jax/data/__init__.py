"""Data: CIFAR-10 readers (binary archive and JPEG layouts, never pickle), the
CIFAR-10 sample bundled with the package, image files, and sample images that
need no download (depends on nothing else in cnnviz_jax)."""

from cnnviz_jax.data._cifar import (
    CIFAR10_CLASSES, DEFAULT_CIFAR, IMAGE_EXTENSIONS, SAMPLE_CIFAR,
    image_files, load_cifar10, load_image, load_sample, resolve_cifar)
from cnnviz_jax.data import samples
