"""The package's version, where the core may import it: the package root imports the core, so a core
module importing the root would close a circle (and run the root's imports first)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-diffdenoise")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
