"""Input encodings: uint8 images ``[N, H, W]`` -> integer spike/value trains ``[N, T, H, W]``.

numpy only (no torch). The float value a network sees is ``encoded * input_scale(kind)``.

- ``direct``: the pixel integers 0..255 repeated for every timestep (int16); scale 1/255.
- ``rate``: Bernoulli spikes (int8 0/1) with ``p = pixel / 255``; scale 1.0. Sample ``i`` of a
  call is drawn from ``np.random.default_rng([seed, first_index + i])``, so any subset of a
  dataset re-encodes identically however it is batched (pass the subset's dataset index as
  ``first_index``).
- ``frames``: for event datasets, whose samples are already time-binned event counts
  ``[N, B, ...]``: the B bins merged into T steps, a spike where any event fell
  (``core.events.frames_to_spikes``; T must divide B); scale 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import UserError

ENCODINGS = ("direct", "rate", "frames")
INPUT_SCALE = {"direct": 1 / 255, "rate": 1.0, "frames": 1.0}


def _check_kind(kind: str) -> None:
    if kind not in INPUT_SCALE:
        raise UserError(f"unknown encoding {kind!r}; valid encodings: {', '.join(ENCODINGS)}")


def input_scale(kind: str) -> float:
    """Factor that turns an encoded integer into the float the network sees."""
    _check_kind(kind)
    return INPUT_SCALE[kind]


def encode(
    images: np.ndarray,
    kind: str,
    timesteps: int,
    seed: int = 0,
    first_index: int = 0,
) -> np.ndarray:
    """Encode uint8 images ``[N, H, W]`` (or any ``[N, ...]``) as integers ``[N, T, ...]``."""
    _check_kind(kind)
    if int(timesteps) != timesteps or timesteps < 1:
        raise UserError(f"timesteps must be a positive integer, got {timesteps!r}")
    timesteps = int(timesteps)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise UserError(f"encode expects uint8 images, got dtype {images.dtype}")
    if images.ndim < 2:
        raise UserError(f"encode expects images [N, H, W], got shape {images.shape}")
    n = images.shape[0]
    if kind == "frames":
        from core.events import frames_to_spikes

        return frames_to_spikes(images, timesteps)
    if kind == "direct":
        out = np.broadcast_to(images[:, None].astype(np.int16), (n, timesteps, *images.shape[1:]))
        return np.ascontiguousarray(out)
    # rate: integer comparison u < pixel with u uniform in [0, 255) gives p = pixel / 255 exactly.
    out = np.empty((n, timesteps, *images.shape[1:]), dtype=np.int8)
    for i in range(n):
        rng = np.random.default_rng([int(seed), int(first_index) + i])
        u = rng.integers(0, 255, size=(timesteps, *images.shape[1:]), dtype=np.uint8)
        out[i] = u < images[i]
    return out

def encode_as_recorded(metadata: dict[str, Any], timesteps: int, images: np.ndarray,
                       first_index: int = 0) -> np.ndarray:
    """Encode dataset images exactly as the graph's metadata says the model was trained on
    (encoding kind and seed), so every caller feeds the targets the same spikes."""
    return encode(images, str(metadata["encoding"]), timesteps,
                  seed=int(metadata.get("encoding_seed", 0)), first_index=first_index)
