"""The DICOM Comprehensive SR of one scored series, built with highdicom.

Why not the SDK's ``DICOMTextSRWriterOperator``: its text SR copies the study but references no source instance, and
its custom tags take strings only. A Comprehensive SR carries the series score as a coded number, each flagged slice
as a number inferred from an IMAGE reference, and the scored instances as evidence
(``CurrentRequestedProcedureEvidenceSequence``: study, series and SOP instance UIDs), so a PACS links it back.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.tag import Tag
from pydicom.uid import generate_uid

__all__ = ["CODES", "build_quality_sr", "summary_text"]

# No standard code names a no-reference IQA score: private codes of this app (a "99" scheme designator by PS3.16).
_SCHEME = "99TFKT"
CODES = {
    "report": Code("18748-4", "LN", "Diagnostic Imaging Report"),
    "summary": Code("111412", "DCM", "Narrative Summary"),
    "series_score": Code("IQA-SERIES-MEAN", _SCHEME, "Image quality score, series mean"),
    "threshold": Code("IQA-THRESHOLD", _SCHEME, "Image quality flag threshold"),
    "n_flagged": Code("IQA-N-FLAGGED", _SCHEME, "Number of slices below threshold"),
    "slice_score": Code("IQA-SLICE", _SCHEME, "Image quality score, flagged slice"),
    "source": Code("121112", "DCM", "Source of Measurement"),
}
PIXEL_DATA = Tag("PixelData")
_SCORE_UNIT = Code("{score}", "UCUM", "score (0 = bad .. 4 = excellent)")
_COUNT_UNIT = Code("{slices}", "UCUM", "slices")


def summary_text(result: dict) -> str:
    """The human-readable summary (also the SR's TEXT item)."""
    flagged = ", ".join(f"#{s['instance_number']} ({s['score']:.2f})" for s in result["flagged"]) or "none"
    return (
        f"TFKT no-reference image quality (0 = bad .. 4 = excellent) of series {result['series_instance_uid']}: "
        f"mean {result['mean']:.3f} over {result['n_slices']} slices (min {result['min']:.3f}, "
        f"max {result['max']:.3f}). Slices below {result['threshold']:g}: {result['n_flagged']} [{flagged}]."
        + _derived_note(result)
    )


def _derived_note(result: dict) -> str:
    derived = result.get("derived_uids") or {}
    if not derived:
        return ""
    keywords = ", ".join(sorted({k for ks in derived.values() for k in ks}))
    return f" The source had blank {keywords}: the UIDs here were derived by this app."


def _content(result: dict, sop_classes: dict[str, str]) -> hd.sr.ContainerContentItem:
    root = hd.sr.ContainerContentItem(name=CODES["report"])
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items = [
        hd.sr.TextContentItem(name=CODES["summary"], value=summary_text(result), relationship_type=contains),
        hd.sr.NumContentItem(CODES["series_score"], result["mean"], _SCORE_UNIT, relationship_type=contains),
        hd.sr.NumContentItem(CODES["threshold"], result["threshold"], _SCORE_UNIT, relationship_type=contains),
        hd.sr.NumContentItem(CODES["n_flagged"], result["n_flagged"], _COUNT_UNIT, relationship_type=contains),
    ]
    items += [_flagged_item(item, sop_classes) for item in result["flagged"]]
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def _flagged_item(flagged: dict, sop_classes: dict[str, str]) -> hd.sr.NumContentItem:
    """NUM (the slice's score) INFERRED FROM IMAGE (the slice)."""
    num = hd.sr.NumContentItem(
        CODES["slice_score"], flagged["score"], _SCORE_UNIT, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    image = hd.sr.ImageContentItem(
        name=CODES["source"],
        referenced_sop_class_uid=sop_classes[flagged["sop_instance_uid"]],
        referenced_sop_instance_uid=flagged["sop_instance_uid"],
        referenced_frame_numbers=None if flagged["frame"] is None else flagged["frame"] + 1,
        relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM,
    )
    num.ContentSequence = hd.sr.ContentSequence([image])
    return num


# Patient and General Study attributes of type 2 (present, maybe empty) that highdicom copies from the first evidence.
_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


def _with_type2(dataset: Dataset) -> Dataset:
    """A header view of ``dataset`` with the absent type-2 attributes empty (the SDK's datasets stay as loaded)."""
    header = Dataset({tag: element for tag, element in dataset.items() if tag != PIXEL_DATA})
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def build_quality_sr(result: dict, evidence: Sequence[Dataset], model_name: str, version: str) -> hd.sr.ComprehensiveSR:
    """The SR of one series ``result`` (see ``tfkt_scoring.series_result``).

    Args:
        result: the scored series.
        evidence: the series' source instances (headers suffice): patient and study are copied from them, and each
            is listed as evidence.
        model_name: the algorithm, written as the SR's series description and manufacturer model.
        version: the app's version, written as the software version.
    """
    sop_classes = {str(ds.SOPInstanceUID): str(ds.SOPClassUID) for ds in evidence}
    return hd.sr.ComprehensiveSR(
        evidence=[_with_type2(evidence[0]), *evidence[1:]],
        content=_content(result, sop_classes),
        series_instance_uid=generate_uid(),
        series_number=9901,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="tfkt_bundle",
        is_complete=True,
        series_description=f"{model_name} image quality",
        manufacturer_model_name=model_name,
        software_versions=version,
    )
