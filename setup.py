"""cnnviz_jax: visualizing and understanding convolutional networks in JAX."""

from setuptools import find_packages, setup

setup(
    name="cnnviz_jax",
    version="0.1.0",
    description="Visualizing and understanding CNNs in JAX/Flax",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cnnviz_jax", "cnnviz_jax.*",
                                    "experiments", "weights_conversion"]),
    package_data={"cnnviz_jax": ["models/weights/*.safetensors",
                                 "data/cifar10_sample.tar", "data/*.md",
                                 "style/weights/*.safetensors", "style/weights/*.md",
                                 "synthesis/weights/*.safetensors"]},
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2",
        "numpy",
        "pillow",
        "matplotlib",
        "absl-py",
        "safetensors",
        "ml_collections",
        "scikit-learn",   # KMeans (multifaceted), t-SNE, sample photographs
        "scipy",          # linear assignment (t-SNE grids), Spearman (sanity checks)
        "opencv-python-headless",  # GrabCut segmentation (gallery, attribution)
    ],
    extras_require={
        "convert": ["torch==2.14.1", "torchvision==0.29.1"],
        "test": ["pytest", "pytest-xdist>=3.2", "chex", "torch==2.14.1",
                 "torchvision==0.29.1", "captum"],
    },
)
