"""Data for the workflows: scored-dataset readers, splits, datalists, MONAI transforms and the slice stream."""
