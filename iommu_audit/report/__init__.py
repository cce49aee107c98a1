"""The auditor's compliance report: one HTML file (pytest-html), a JSON twin, and its verification.

  model.py   results of a run -> one JSON-able document (matrix, verdicts, evidence, hash)
  html.py    that document -> the report's HTML sections
  verify.py  recompute a report's hashes; extract its facts for a re-audit (`iommu-audit verify`)
  plugin.py  the pytest hooks: options, result collection, pytest-html and JUnit integration
"""
