"""imgasdata: images as data for social science research.

A small toolkit that follows the book *Images as Data for Social Science
Research* (Webb Williams, Casas and Wilkerson): open and check image files,
fine-tune an ImageNet-pretrained CNN on your own labels, measure it on
held-out images, and label new images into a CSV, all offline.

Modules are named for what a researcher does: ``images``, ``datasets``,
``transforms``, ``models``, ``train``, ``metrics``, ``predict``, ``plots``,
``sample_data`` and ``cli``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imgasdata")  # one source: pyproject.toml, through the installed package's metadata
except PackageNotFoundError:  # a source folder that was never installed
    __version__ = "0.0.0+unknown"
del PackageNotFoundError, version
