"""GUI-free core of napari-diffdenoise: imports neither Qt, napari nor magicgui."""
