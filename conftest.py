"""iommu-audit: `pytest --profile NAME` runs the checks in checks/ against hosts.

The plugin (options, parametrization, verdicts) lives in iommu_audit/plugin.py.
"""

pytest_plugins = ["iommu_audit.plugin"]
