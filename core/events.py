"""Event streams as numpy arrays (no torch, no tonic): binning, spike frames, and event streams
*converted* from static images by simulated saccades.

An event stream is a structured array of :data:`EVENT_DTYPE` (``x``, ``y``, ``t`` in
microseconds, ``p`` polarity 0 = OFF / 1 = ON), sorted by ``t``: tonic's ``xytp`` layout.

- :func:`bin_events` accumulates a stream into ``n_bins`` frames ``[n_bins, P, H, W]``
  with the arithmetic of tonic's ``ToFrame(n_time_bins=...)`` (equal windows of
  ``(t_last - t_first) // n_bins`` us from the first event; events past the last window are
  dropped). It exists so that core stays torch-free (tonic imports torch); tests pin it
  against tonic's own ``ToFrame``.
- :func:`frames_to_spikes` turns stored frames into the network's input spikes: the bins are
  merged in groups of ``n_bins / T`` and a pixel spikes in a step if any event fell into it.
- :func:`saccade_events` converts a static image into an event stream the way N-MNIST was
  recorded (Orchard et al. 2015: a DVS watching a screen while the sensor makes three
  saccades along a triangle). These streams are **converted**, not recorded: every dataset made
  of them has ``converted`` in its description (``core.datasets.describe``).
"""

from __future__ import annotations

import numpy as np

from core.errors import DatasetError

EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])

#: Saccade path of :func:`saccade_events`, in units of the margin: three straight moves
#: around a triangle back to the start (N-MNIST's three saccades).
SACCADE_PATH = ((0.0, 0.0), (1.0, 0.5), (0.0, 1.0), (0.0, 0.0))
#: Contrast threshold of the simulated DVS pixel on log(1 + intensity) (intensity 0..255):
#: 0.15 is a typical DVS contrast sensitivity (10-20 %, Lichtsteiner et al. 2008).
CONTRAST = 0.15
#: Microseconds between two positions of the simulated saccade (N-MNIST: each saccade takes
#: about 100 ms; 10 positions per saccade at 10 ms each).
STEP_US = 10_000


def bin_events(events: np.ndarray, sensor_size: tuple[int, int, int], n_bins: int
               ) -> np.ndarray:
    """Event counts per time bin: int16 ``[n_bins, P, H, W]`` for ``sensor_size = (W, H, P)``
    (tonic's order), as tonic's ``ToFrame(sensor_size, n_time_bins=n_bins)`` computes them.

    Raises:
        DatasetError: ``n_bins < 1``, an empty stream, or an event outside the sensor.
    """
    if int(n_bins) < 1:
        raise DatasetError(f"n_bins must be >= 1, got {n_bins}")
    w, h, p = (int(s) for s in sensor_size)
    if len(events) == 0:
        raise DatasetError("cannot bin an empty event stream")
    x, y, pol = (np.asarray(events[k], dtype=np.int64) for k in ("x", "y", "p"))
    if x.min() < 0 or x.max() >= w or y.min() < 0 or y.max() >= h or pol.min() < 0 \
            or pol.max() >= p:
        raise DatasetError(f"events outside the sensor {tuple(sensor_size)} (W, H, P)")
    t = np.asarray(events["t"], dtype=np.int64)
    window = (t[-1] - t[0]) // int(n_bins)  # tonic: integer division, windows from t[0]
    starts = np.arange(int(n_bins)) * window + t[0]
    lo = np.searchsorted(t, starts)
    hi = np.searchsorted(t, starts + window)
    frames = np.zeros((int(n_bins), p, h, w), dtype=np.int16)
    for i in range(int(n_bins)):
        sl = slice(lo[i], hi[i])
        np.add.at(frames, (i, pol[sl], y[sl], x[sl]), 1)
    return frames


def frames_to_spikes(frames: np.ndarray, timesteps: int) -> np.ndarray:
    """Stored frames ``[N, B, ...]`` (event counts) as input spikes int8 ``[N, T, ...]``:
    bins ``k*B/T .. (k+1)*B/T - 1`` merged into step ``k``, 1 where any event fell.

    Raises:
        DatasetError: ``T`` does not divide the number of bins ``B``.
    """
    frames = np.asarray(frames)
    n, b = frames.shape[:2]
    if int(timesteps) < 1 or b % int(timesteps):
        raise DatasetError(f"the frames have {b} time bins; T={timesteps} must divide it "
                           f"(T in {[d for d in range(1, b + 1) if b % d == 0]})")
    grouped = frames.reshape(n, int(timesteps), b // int(timesteps), *frames.shape[2:])
    return (grouped.max(axis=2) > 0).astype(np.int8)


def saccade_events(image: np.ndarray, margin: int, steps_per_saccade: int = 10,
                   contrast: float = CONTRAST) -> np.ndarray:
    """A static uint8 image ``[H, W]`` as the event stream a DVS of ``(W + 2m, H + 2m)`` pixels
    would record while the image moves along :data:`SACCADE_PATH` (``m = margin``).

    Each position (``steps_per_saccade`` per saccade, :data:`STEP_US` apart, integer pixel
    offsets rounded from the path) shows the image on a black canvas; a pixel emits one ON
    (OFF) event when ``log(1 + intensity)`` rose (fell) by at least ``contrast`` since its last
    event, and then remembers the new level. Deterministic: no sensor noise. Events of one
    position are ordered by (y, x). Returns :data:`EVENT_DTYPE` sorted by ``t`` (possibly
    empty for a blank image).

    Raises:
        DatasetError: a negative margin or a non-2-D image.
    """
    img = np.asarray(image)
    if img.ndim != 2 or int(margin) < 0:
        raise DatasetError(f"saccade_events needs a 2-D image and margin >= 0, got shape "
                           f"{img.shape}, margin {margin}")
    m = int(margin)
    h, w = img.shape
    canvas_hw = (h + 2 * m, w + 2 * m)
    level = np.log1p(img.astype(np.float64))
    ref = np.zeros(canvas_hw)  # the sensor first sees the black screen
    out = []
    k = 0
    for (ax, ay), (bx, by) in zip(SACCADE_PATH[:-1], SACCADE_PATH[1:], strict=True):
        for j in range(int(steps_per_saccade)):
            f = (j + 1) / int(steps_per_saccade)
            dx = int(round((ax + (bx - ax) * f) * 2 * m))
            dy = int(round((ay + (by - ay) * f) * 2 * m))
            now = np.zeros(canvas_hw)
            now[dy:dy + h, dx:dx + w] = level
            diff = now - ref
            for pol, mask in ((1, diff >= contrast), (0, diff <= -contrast)):
                ys, xs = np.nonzero(mask)
                ev = np.zeros(len(ys), dtype=EVENT_DTYPE)
                ev["x"], ev["y"], ev["t"], ev["p"] = xs, ys, k * STEP_US, pol
                out.append(ev)
                ref[mask] = now[mask]
            k += 1
    events = np.concatenate(out) if out else np.zeros(0, dtype=EVENT_DTYPE)
    return events[np.argsort(events["t"], kind="stable")]


def convert_images(images: np.ndarray, margin: int, n_bins: int) -> np.ndarray:
    """Static uint8 images ``[N, H, W]`` as converted event frames uint8 ``[N, n_bins, 2, H+2m,
    W+2m]`` (:func:`saccade_events`, then :func:`bin_events`; counts capped at 255)."""
    images = np.asarray(images)
    n, h, w = images.shape
    size = (w + 2 * margin, h + 2 * margin, 2)
    out = np.zeros((n, int(n_bins), 2, h + 2 * margin, w + 2 * margin), dtype=np.uint8)
    for i in range(n):
        ev = saccade_events(images[i], margin)
        if len(ev):
            out[i] = np.minimum(bin_events(ev, size, n_bins), 255)
    return out
