"""The package version: one definition, read by the package, the reports and the build (pyproject)."""

__version__ = "0.1.0"
