"""Lets monailabel 0.8.5 import under pydicom 3, which the bundle's DICOM reader needs (``pydicom.pixels``).

monailabel imports pydicom-seg 0.4.1 (its DICOM SEG export) at start-up, and pydicom-seg, written for pydicom 2,
does ``from pydicom._storage_sopclass_uids import SegmentationStorage``: pydicom 3 moved those constants to
``pydicom.uid``. This finder supplies the old module name, built from ``pydicom.uid``, only when it is asked for and
not found otherwise (under pydicom 2 the real module is found first). `make venv-label` installs a ``.pth`` file
that imports this module at interpreter start.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

OLD_MODULE = "pydicom._storage_sopclass_uids"


class _SOPClassUIDs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if name == OLD_MODULE else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        uid = importlib.import_module("pydicom.uid")
        module.__dict__.update({k: v for k, v in vars(uid).items() if not k.startswith("__")})


if not any(isinstance(finder, _SOPClassUIDs) for finder in sys.meta_path):
    sys.meta_path.append(_SOPClassUIDs())
