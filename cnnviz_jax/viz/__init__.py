"""Pictures a person wants to look at: PNG grids, heatmaps, overlays and the
HTML gallery (display only; depends on nothing else in cnnviz_jax but io)."""

from cnnviz_jax.viz._grids import save_grid
from cnnviz_jax.viz._grids import enlarge, save_image, to_uint8
from cnnviz_jax.viz._gallery import (
    Figure, Section, format_value, save_html_gallery, sections_json)
from cnnviz_jax.viz._heatmaps import heatmap, normalize, overlay
from cnnviz_jax.viz._heatmaps import save_grid as save_attribution_grid
