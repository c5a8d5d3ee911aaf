"""GUI-free core of napari-diffdenoise: imports neither Qt, napari nor magicgui.

Its packages stand in layers, each importing only those below it (pyproject.toml's import
contracts check it): training, calibration, run, then sampling and io (neither imports the
other), model, imaging.
"""
