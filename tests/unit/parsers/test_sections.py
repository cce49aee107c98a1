from iommu_audit.parsers.sections import split

OUTPUT = """
::iommu-audit:: probe 1 root=/
hostname\tnode1

::iommu-audit:: boot_config
::iommu-audit:::file /etc/default/grub
GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"

::iommu-audit:::file /etc/kernel/cmdline
root=/dev/sda1 intel_iommu=on

::iommu-audit:: domain running z ceph 1
<domain/>
::iommu-audit:: end
"""


def test_sections_rows_files_and_domain_names_with_spaces():
    s = {x.name: x for x in split(OUTPUT)}
    assert s["probe"].arg("root") == "/" and s["probe"].rows() == [["hostname", "node1"]]
    assert [p for p, _ in s["boot_config"].files()] == ["/etc/default/grub", "/etc/kernel/cmdline"]
    assert s["domain"].args == ("running", "z ceph 1") and s["domain"].body == "<domain/>"
    assert "end" in s


def test_text_before_the_first_marker_is_ignored():
    assert [x.name for x in split("motd banner\n::iommu-audit:: end\n")] == ["end"]
