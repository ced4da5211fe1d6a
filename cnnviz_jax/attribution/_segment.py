"""Saliency + GrabCut segmentation (Simonyan et al. 2014, section 3.2)."""

import numpy as np

from cnnviz_jax import _checks as checks

def segment_from_saliency(image, saliency_map, *, fg_quantile: float = 0.95,
                          bg_quantile: float = 0.30,
                          iterations: int = 5) -> np.ndarray:
  """Weakly supervised segmentation: GrabCut seeded by a saliency map.

  Simonyan et al. 2014, section 3.2: pixels above the 95% saliency quantile
  seed the foreground, pixels below the 30% quantile the background; GrabCut
  (Rother et al. 2004, OpenCV `cv2.grabCut`) labels the rest.

  Args:
    image: float32 `[H, W, 3]` RGB in [0, 1].
    saliency_map: `[H, W]` (e.g. `heatmap(saliency(...))[i]`), any range.
    fg_quantile, bg_quantile: seed thresholds as quantiles of the map.
    iterations: GrabCut iterations.

  Returns:
    bool numpy `[H, W]`, True on the foreground.
  """
  try:
    import cv2
  except ImportError as e:
    raise ImportError("segment_from_saliency needs OpenCV: pip install "
                      "opencv-python-headless") from e
  image = np.asarray(image, np.float32)
  sal = np.asarray(saliency_map, np.float32)
  checks.check_images(image[None], name="image")
  if sal.shape != image.shape[:2]:
    raise ValueError(f"saliency_map must be [H, W] = {image.shape[:2]}; got "
                     f"{sal.shape}.")
  if not 0 <= bg_quantile < fg_quantile <= 1:
    raise ValueError("need 0 <= bg_quantile < fg_quantile <= 1; got "
                     f"{bg_quantile}, {fg_quantile}.")
  hi, mid, lo = np.quantile(sal, [fg_quantile, 0.5, bg_quantile])
  mask = np.where(sal >= mid, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
  mask[sal <= lo] = cv2.GC_BGD
  mask[sal >= hi] = cv2.GC_FGD
  bgr = np.ascontiguousarray((image[..., ::-1] * 255 + 0.5).astype(np.uint8))
  bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
  cv2.grabCut(bgr, mask, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
  return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


