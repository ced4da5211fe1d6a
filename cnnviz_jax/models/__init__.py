"""Models: torchvision-exact VGG/AlexNet in Flax, the shipped CIFAR VGG.

    model = models.load("cifar_vgg")                 # shipped weights, offline
    model = models.load("vgg16", "vgg16.safetensors")  # converted torchvision
    model = models.load("vgg16", key=jax.random.PRNGKey(0))  # random init
    logits, taps = model.apply(model.params, images, taps=("relu5_3", "fc7"))

`core` (layers as data, one interpreter, `Model`), `zoo` (architectures),
`checkpoint` (safetensors), `registry` (load by name), `predict` (batched
predictions and scores) and `train` (training the shipped model).

Any other network: `from_flax(module, variables, name=...)` or
`from_function(apply_fn, params)` (`wrap`, with program rewrites in
`rewrite`); torchvision's ResNets are Flax modules in `resnet`.
"""

from cnnviz_jax.models import checkpoint, core, predict, zoo
from cnnviz_jax.models import resnet, rewrite, wrap
from cnnviz_jax.models.wrap import WrappedModel, from_flax, from_function
from cnnviz_jax.models.core import (
    Layer, Model, count_params, init_params, param_shapes)
from cnnviz_jax.models.registry import (
    SHIPPED_WEIGHTS, build, load, load_or_init, names, spec)

__all__ = ["Layer", "Model", "build", "count_params", "init_params", "load",
           "load_or_init", "names", "param_shapes", "spec", "SHIPPED_WEIGHTS",
           "checkpoint", "core", "predict", "zoo", "WrappedModel", "from_flax",
           "from_function", "resnet", "rewrite", "wrap"]
