"""``report.html``: one self-contained page for a scoring run (every image embedded, no external file or script).

The series table first, then per series its score plot and thumbnails of its worst slices in the scoring window,
and with three or more series that carry CTDIvol, mean quality against dose.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.ctio.slices import read_ct_slice
from scripts.ctio.window import apply_hu_window
from scripts.utils.atomic import atomic_write_text

__all__ = ["write_report_page", "thumbnail_png"]

LOGGER = logging.getLogger(__name__)
THUMBNAIL_SIZE = 192
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
    """
    parts = [f"<h1>{html.escape(title)}</h1>", _series_table(summaries)]
    if dose_plot is not None:
        parts.append(f"<h2>Dose and quality</h2>{_img(Path(dose_plot).read_bytes(), 'mean score against CTDIvol')}")
    for summary, plot in zip(summaries, series_plots):
        parts.append(_series_section(summary, Path(plot), hu_window))
    if skipped:
        parts.append(_skipped_section(skipped))
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    return atomic_write_text(path, page)


def _series_table(summaries: Sequence[dict]) -> str:
    header = ["series", "slices", "mean", "median", "min", "p10", "below", "kVp", "CTDIvol", "kernel", "thickness"]
    rows = []
    for s in summaries:
        acq = s["acquisition"]
        cells = [
            f'<td class="text"><a href="#{s["folder"]}">{_title(s)}</a></td>',
            *(f"<td>{v}</td>" for v in (s["n_slices"], *(f"{s[k]:.2f}" for k in ("mean", "median", "min", "p10")))),
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


def _series_section(summary: dict, plot: Path, hu_window: Sequence[float]) -> str:
    acq = summary["acquisition"]
    facts = ", ".join(f"{label}: {_fmt(acq[key])}" for key, label in FIELD_LABELS.items() if key in acq)
    thumbs = "".join(_thumbnail_figure(ref, hu_window) for ref in summary["worst"])
    return (
        f'<section id="{summary["folder"]}"><h2>{_title(summary)}</h2>'
        f"<p>{html.escape(summary['series'])}<br>{html.escape(facts)}</p>"
        f"{_img(plot.read_bytes(), 'score along z')}<h3>Worst slices</h3>{thumbs}</section>"
    )


def _thumbnail_figure(ref: dict, hu_window: Sequence[float]) -> str:
    caption = f"{ref['score']:.2f}"
    if ref.get("instance_number") is not None:
        caption += f" · instance {int(ref['instance_number'])}"
    if ref.get("z") is not None:
        caption += f" · z {ref['z']:.1f} mm"
    try:
        image = _img(thumbnail_png(ref, hu_window), ref.get("name", ""))
    except Exception as err:  # the page still shows the scores of a slice that can no longer be read
        LOGGER.warning("no thumbnail for %s: %s", ref.get("name"), err)
        image = f"<p>(not readable: {html.escape(str(err))})</p>"
    return f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>"


def thumbnail_png(ref: dict, hu_window: Sequence[float], size: int = THUMBNAIL_SIZE) -> bytes:
    """PNG bytes of a slice named by a summary's slice reference, windowed and shrunk to at most ``size`` pixels."""
    frame = ref.get("frame")
    array, is_hu = read_ct_slice(ref["source"], int(ref.get("slice_index") or 0), None if frame is None else int(frame))
    display = apply_hu_window(array, hu_window) if is_hu else np.clip(array, 0.0, 1.0)
    image = Image.fromarray(np.round(display * 255).astype(np.uint8))
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
