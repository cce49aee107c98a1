"""The root of an iommu-audit checkout: `pytest --profile NAME` runs the checks in checks/.

The plugin (iommu_audit/plugin.py: options, parametrization, verdicts) is loaded through its
pytest11 entry point, which `bash scripts/install.sh` installs into .venv. A pytest that did not
load it (a system pytest on the PATH, PYTEST_DISABLE_PLUGIN_AUTOLOAD) loads it from this checkout
instead, with testinfra's plugin that provides --hosts; the plugin says in one line what to
install if anything is missing.
"""

import sys

if "iommu_audit.plugin" not in sys.modules:  # the entry point did not load it
    # Our plugin first: when testinfra is missing, its import says so before testinfra's would fail.
    pytest_plugins = ["iommu_audit.plugin"] + ([] if "testinfra.plugin" in sys.modules else ["testinfra.plugin"])
