"""iommu-audit: prove that a KVM host is ready for PCI and disk passthrough."""

__version__ = "0.1.0"
