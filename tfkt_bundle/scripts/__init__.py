"""Python package of the tfkt_bundle MONAI bundle, imported as ``scripts`` (bundle root on ``sys.path``).

Sub-packages are layers; each imports only from those listed before it:

- ``utils``: atomic writes, the score scale, the progress bar;
- ``ctio``: reading CT (HU window, DICOM, NIfTI, 2-D image files) with no MONAI or torch import;
- ``data``: scored-dataset readers, splits, datalists, MONAI transforms and the slice stream;
- ``nets``: networks and their initial weights;
- ``evaluation``: metrics, metric handlers, reports;
- ``training``: losses, checkpoints, MLflow tracking;
- ``clinical``: per-series outputs of scoring;
- ``synthesis``: the low-dose simulator and the demo data (numpy/scipy/scikit-image and ``ctio`` only);
- ``demo``: the demo runner on top of everything.

Sub-packages are imported by their users, so ``import scripts`` stays cheap.
"""
