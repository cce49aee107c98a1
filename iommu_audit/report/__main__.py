import sys

from iommu_audit.report.verify import main

sys.exit(main())
