"""What people read: :mod:`~memsweep.report.document` (report.md/html/json),
:mod:`~memsweep.report.plots` and :mod:`~memsweep.report.summary` (the end-of-run table)."""
