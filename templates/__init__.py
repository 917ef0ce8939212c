"""HTML report templates, shipped inside the wheel as the package `gradaudit.templates`.

The files here are data (report.html.j2, report.css, report.js), inlined by
`gradaudit.report.html_report` so the rendered report is one self-contained file.
"""
