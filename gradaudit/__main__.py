"""`python -m gradaudit` runs the command line."""

from gradaudit.cli import entry_point

entry_point()
