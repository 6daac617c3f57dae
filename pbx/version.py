"""The installed version (pyproject's), for `clinic-pbx --version`, the panel's footer and health."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("clinic-pbx")
except metadata.PackageNotFoundError:  # run from a checkout that was not installed
    VERSION = "unknown"
