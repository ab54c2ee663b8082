"""Reading CT: the HU window, DICOM series, NIfTI volumes, 2-D image files and one dispatch by input kind.

Numpy, pydicom, nibabel, tifffile and Pillow only: nothing here imports MONAI or torch, so reading and windowing
stay cheap for command-line tools and worker processes.
"""
