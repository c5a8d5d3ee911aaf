"""What goes in and out: images opened lazily, the run's output maps (declared once) and their
TIFF and OME-Zarr writers, checkpoints and the bioimage.io format."""
