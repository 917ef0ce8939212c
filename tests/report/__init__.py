"""Tests of the report renderers (gradaudit/report, templates/, the JSON Schema)."""
