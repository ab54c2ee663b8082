"""Python package of the tfkt_bundle MONAI bundle.

Imported the MONAI way (bundle root on ``sys.path``, ``"$import scripts"`` in configs) and by the tests.
Submodules are imported lazily by their users so that ``import scripts`` stays cheap.
"""
