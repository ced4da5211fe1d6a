"""Equal chunks of a batch of work: one compiled program per chunked call.

A loop over `range(0, total, size)` leaves a shorter last chunk, and every
jitted function the loop calls compiles a second time for it (for an attack
or a VGG gradient, seconds). `equal_chunks` splits `total` items into
`ceil(total / size)` chunks of one length, at most `size`, padding the last
one with at most one repeated item per chunk.
"""

import numpy as np


def equal_chunks(total: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """`(ids, valid)` per chunk, for `total >= 1` items in chunks of at most
  `size >= 1`.

  `ids` int `[length]` are item indices, the last chunk padded by repeating
  item `total - 1`; `valid` bool `[length]` marks the real items. Callers
  drop the padding's outputs (`[:total]` after concatenating) or weight
  them by 0. E.g. `equal_chunks(5, 4)`: ids `[0, 1, 2]` and `[3, 4, 4]`.
  """
  if total < 1 or size < 1:
    raise ValueError(f"total and size must be >= 1; got {total}, {size}.")
  k = -(-total // size)
  flat = np.arange(k * -(-total // k)).reshape(k, -1)
  return list(zip(np.minimum(flat, total - 1), flat < total))
