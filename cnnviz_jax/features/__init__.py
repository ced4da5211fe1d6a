"""Looking inside a network: its filters, activation maps, receptive fields,
maximally activating patches, nearest neighbours, PCA and t-SNE maps.

    from cnnviz_jax import features
    w = features.filters(model)                               # [64, 3, 3, 3]
    maps = features.activation_maps(model, image, "relu3_2", top=16)
    features.receptive_field(model, "conv5_3")                # Field(196, 16, -90)
    feats = features.extract(model, images, "relu7")         # [N, 256], streamed
    top = features.top_activations(model, images, "relu3_2", [0, 1], k=9)
    crops = features.patches(model, images, top)            # [2, 9, S, S, 3]
    dist, idx = features.nearest_neighbors(q, feats, k=5, metric="cosine")
    xy = features.tsne(feats, key=key); cells = features.grid_layout(xy, 20, 20)

Dataset passes stream in jitted, fixed-size batches (one compilation, one
batch in memory) and log their progress with absl logging.
"""

from cnnviz_jax.features._activations import (activation_maps, extract,
                                              strongest_channels)
from cnnviz_jax.features._embedding import PCA, grid_layout, pca, tsne
from cnnviz_jax.features._filters import conv_layers, filters, mosaic
from cnnviz_jax.features._neighbors import (METRICS, nearest_neighbors,
                                           precision_at_k)
from cnnviz_jax.features._receptive import (Field, receptive_box,
                                           receptive_boxes, receptive_field,
                                           spatial_layers)
from cnnviz_jax.features._topk import TopActivations, patches, top_activations

__all__ = [
    "Field", "METRICS", "PCA", "TopActivations", "activation_maps",
    "conv_layers", "extract", "filters", "grid_layout", "mosaic",
    "nearest_neighbors", "patches", "pca", "precision_at_k", "receptive_box",
    "receptive_boxes", "receptive_field", "spatial_layers",
    "strongest_channels", "top_activations", "tsne",
]
