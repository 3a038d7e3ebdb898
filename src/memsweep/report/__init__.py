"""What people read: :mod:`~memsweep.report.document` (report.md/html, models.json; built
from ``sections``, ``headline``, ``blocks``, ``models_json``),
:mod:`~memsweep.report.plots` and :mod:`~memsweep.report.summary` (the end-of-run table)."""
