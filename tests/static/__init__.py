"""Tests of the static gain estimator (gradaudit.static)."""
