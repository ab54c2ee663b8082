"""``report.html``: one self-contained page for a scoring run (every image embedded, no external file or script).

The series table first, then per series its score plot and thumbnails of its worst slices in the scoring window,
each beside a map of per-region quality when a network to explain is given (:mod:`scripts.nets.explain`: the score
each region of the slice would get, over the slice, on a fixed 0-4 colour scale), and with three or more series that
carry CTDIvol, mean quality against dose.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from scripts.ctio.slices import read_ct_slice
from scripts.ctio.window import apply_hu_window
from scripts.utils.atomic import atomic_write_text
from scripts.utils.scores import SCORE_RANGE

__all__ = ["write_report_page", "thumbnail_png", "quality_map_png"]

LOGGER = logging.getLogger(__name__)
THUMBNAIL_SIZE = 192
# Red where a region would score low, blue where high; diverging, so the scale's middle reads as neutral.
MAP_COLOURS = colormaps["RdYlBu"]
MAP_OPACITY = 0.5
QualityMap = Callable[[np.ndarray], np.ndarray]  # a slice as the network sees it -> per-region scores, same shape
FIELD_LABELS = {
    "study_date": "study date",
    "series_number": "series number",
    "manufacturer": "manufacturer",
    "model": "model",
    "kvp": "kVp",
    "exposure_mas": "exposure (mAs, mean)",
    "ctdi_vol": "CTDIvol (mGy, mean)",
    "convolution_kernel": "kernel",
    "slice_thickness": "slice thickness (mm)",
    "pixel_spacing": "pixel spacing (mm)",
}
_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #eee; } td.text { text-align: left; }
tr.flagged td { background: #fde8e8; }
figure { display: inline-block; margin: 0.3em; text-align: center; font-size: 0.8em; }
figure img { margin: 0 1px; }
.scale { display: inline-block; width: 12em; height: 0.8em; vertical-align: middle; border: 1px solid #999; }
section { margin-top: 2em; border-top: 1px solid #ddd; }
"""


def write_report_page(
    path: str | os.PathLike,
    summaries: Sequence[dict],
    hu_window: Sequence[float],
    series_plots: Sequence[str | os.PathLike],
    dose_plot: str | os.PathLike | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    title: str = "CT image quality",
    quality_map: QualityMap | None = None,
    map_note: str = "",
) -> Path:
    """Write the page atomically and return its path.

    Args:
        path: the ``report.html`` to write.
        summaries: per-series summaries (:func:`scripts.clinical.summary.summarize_series`).
        hu_window: display window for the thumbnails of HU slices (the window the network saw).
        series_plots: each series' ``scores.png``, in the order of ``summaries``.
        dose_plot: the dose-quality PNG, when there is one.
        skipped: (path, reason) of every input, file or slice that was not scored.
        title: page heading.
        quality_map: per-region scores of a slice as the network sees it (windowed HU, or the image file's values),
            drawn over each thumbnail; None: thumbnails alone.
        map_note: said once under the table, e.g. why there are no maps.
    """
    parts = [f"<h1>{html.escape(title)}</h1>", _series_table(summaries)]
    if map_note:
        parts.append(f"<p>{html.escape(map_note)}</p>")
    if dose_plot is not None:
        parts.append(f"<h2>Dose and quality</h2>{_img(Path(dose_plot).read_bytes(), 'mean score against CTDIvol')}")
    for summary, plot in zip(summaries, series_plots):
        parts.append(_series_section(summary, Path(plot), hu_window, quality_map))
    if skipped:
        parts.append(_skipped_section(skipped))
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    return atomic_write_text(path, page)


def _series_table(summaries: Sequence[dict]) -> str:
    spread = any("score_sd" in s for s in summaries)  # scored over flips and rotations (--uncertainty)
    stats = ("mean", *(("score_sd",) if spread else ()), "median", "min", "p10")
    header = ["series", "slices", *(("mean", "score SD", "median") if spread else ("mean", "median")), "min", "p10"]
    header += ["below", "kVp", "CTDIvol", "kernel", "thickness"]
    rows = []
    for s in summaries:
        acq = s["acquisition"]
        numbers = (f"{s[k]:.2f}" if k in s else "" for k in stats)
        cells = [
            f'<td class="text"><a href="#{s["folder"]}">{_title(s)}</a></td>',
            *(f"<td>{v}</td>" for v in (s["n_slices"], *numbers)),
            f"<td>{s['n_below']}</td>",
            *(f"<td>{html.escape(_fmt(acq.get(k)))}</td>" for k in ("kvp", "ctdi_vol")),
            *(
                f'<td class="text">{html.escape(_fmt(acq.get(k)))}</td>'
                for k in ("convolution_kernel", "slice_thickness")
            ),
        ]
        flagged = ' class="flagged"' if s["n_below"] else ""
        rows.append(f"<tr{flagged}>{''.join(cells)}</tr>")
    head = "".join(f"<th>{h}</th>" for h in header)
    threshold = summaries[0]["threshold"] if summaries else ""
    intro = f"<p>{len(summaries)} series; flagged: slices scored below {threshold}.</p>"
    return f"{intro}<table><tr>{head}</tr>{''.join(rows)}</table>"


def _title(summary: dict) -> str:
    return html.escape(summary["title"])


def _skipped_section(skipped: Sequence[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><td class="text">{html.escape(p)}</td><td class="text">{html.escape(r)}</td></tr>' for p, r in skipped
    )
    table = f"<table><tr><th>file</th><th>reason</th></tr>{rows}</table>"
    return f"<section><h2>Not scored ({len(skipped)})</h2>{table}</section>"


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _series_section(summary: dict, plot: Path, hu_window: Sequence[float], quality_map: QualityMap | None) -> str:
    acq = summary["acquisition"]
    facts = ", ".join(f"{label}: {_fmt(acq[key])}" for key, label in FIELD_LABELS.items() if key in acq)
    thumbs = "".join(_thumbnail_figure(ref, hu_window, quality_map) for ref in summary["worst"])
    legend = _map_legend() if quality_map is not None else ""
    return (
        f'<section id="{summary["folder"]}"><h2>{_title(summary)}</h2>'
        f"<p>{html.escape(summary['series'])}<br>{html.escape(facts)}</p>"
        f"{_img(plot.read_bytes(), 'score along z')}<h3>Worst slices</h3>{legend}{thumbs}</section>"
    )


def _map_legend() -> str:
    low, high = SCORE_RANGE
    stops = ", ".join(_css_colour(MAP_COLOURS(t)) for t in np.linspace(0.0, 1.0, 9))
    scale = f'<span class="scale" style="background: linear-gradient(to right, {stops})"></span>'
    return (
        f"<p>Right of each slice: the score each region would get if the whole slice were like it, "
        f"{low:g} {scale} {high:g}; the slice's score is their average weighted by the network's attention.</p>"
    )


def _css_colour(rgba: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


def _thumbnail_figure(ref: dict, hu_window: Sequence[float], quality_map: QualityMap | None = None) -> str:
    caption = f"{ref['score']:.2f}" + (f" ± {ref['score_sd']:.2f}" if ref.get("score_sd") is not None else "")
    if ref.get("instance_number") is not None:
        caption += f" · instance {int(ref['instance_number'])}"
    if ref.get("z") is not None:
        caption += f" · z {ref['z']:.1f} mm"
    try:
        array, is_hu = _read_slice(ref)
    except Exception as err:  # the page still shows the scores of a slice that can no longer be read
        LOGGER.warning("no thumbnail for %s: %s", ref.get("name"), err)
        image = f"<p>(not readable: {html.escape(str(err))})</p>"
        return f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>"
    seen = apply_hu_window(array, hu_window) if is_hu else np.asarray(array, dtype=np.float32)  # as scored
    display = np.clip(seen, 0.0, 1.0)
    image = _img(_png(display), ref.get("name", ""))
    if quality_map is not None:
        image += _map_image(quality_map, seen, display, ref)
    return f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _map_image(quality_map: QualityMap, seen: np.ndarray, display: np.ndarray, ref: dict) -> str:
    try:
        regions = np.asarray(quality_map(seen), dtype=np.float32)
    except Exception as err:  # the thumbnail and its score stay; the map says why it is missing
        LOGGER.warning("no quality map for %s: %s", ref.get("name"), err)
        return f"<p>(no map: {html.escape(str(err))})</p>"
    alt = f"per-region quality {float(regions.min()):.2f} to {float(regions.max()):.2f}"
    return _img(quality_map_png(display, regions), alt, css_class="map")


def quality_map_png(display: np.ndarray, regions: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """PNG bytes of per-region scores over a slice in [0, 1] (same shape), semi-transparent on the fixed 0-4 colour
    scale of :data:`MAP_COLOURS`, shrunk like the thumbnail."""
    if regions.shape != display.shape:
        raise ValueError(f"a map of shape {regions.shape} does not fit a slice of shape {display.shape}")
    low, high = SCORE_RANGE
    colours = MAP_COLOURS(np.clip((regions - low) / (high - low), 0.0, 1.0))[..., :3]
    blended = (1.0 - MAP_OPACITY) * display[..., None] + MAP_OPACITY * colours
    return _png(blended, size)


def thumbnail_png(ref: dict, hu_window: Sequence[float], size: int = THUMBNAIL_SIZE) -> bytes:
    """PNG bytes of a slice named by a summary's slice reference, windowed and shrunk to at most ``size`` pixels."""
    array, is_hu = _read_slice(ref)
    return _png(apply_hu_window(array, hu_window) if is_hu else np.clip(array, 0.0, 1.0), size)


def _read_slice(ref: dict) -> tuple[np.ndarray, bool]:
    frame = ref.get("frame")
    return read_ct_slice(ref["source"], int(ref.get("slice_index") or 0), None if frame is None else int(frame))


def _png(values: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """A grey (H, W) or colour (H, W, 3) image in [0, 1] as PNG, shrunk to at most ``size`` pixels a side."""
    image = Image.fromarray(np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8))
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _img(png: bytes, alt: str, css_class: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    kind = f' class="{css_class}"' if css_class else ""
    return f'<img{kind} src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
