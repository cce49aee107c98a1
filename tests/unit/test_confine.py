"""The confined view of a host copy: links resolve as on the host, nothing past the root."""

import os

import pytest

from iommu_audit import confine


@pytest.fixture
def copy(tmp_path):
    root = tmp_path / "copy"
    (root / "sys/devices/pci0000:00/0000:00:01.0").mkdir(parents=True)
    (root / "sys/devices/pci0000:00/0000:00:01.0/vendor").write_text("0x8086\n")
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    os.symlink("../../../devices/pci0000:00/0000:00:01.0", root / "sys/bus/pci/devices/0000:00:01.0")
    (root / "etc").mkdir()
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/vfio.conf").write_text("options vfio-pci ids=8086:1234\n")
    return root


def view_of(root, tmp_path):
    view = tmp_path / "view"
    view.mkdir()
    confine.build(str(root), str(view))
    return view


@pytest.mark.parametrize("target, expect", [
    ("/usr/lib/vfio.conf", ["usr", "lib", "vfio.conf"]),  # absolute: from the copy's root
    ("../usr/lib/vfio.conf", ["usr", "lib", "vfio.conf"]),
    ("../../../../../usr/lib/vfio.conf", ["usr", "lib", "vfio.conf"]),  # ".." stops at the root
    ("/", []),
    ("/etc/../../../nowhere", ["nowhere"]),
])
def test_host_path_resolves_inside_the_root(copy, target, expect):
    os.symlink(target, copy / "etc/link")
    assert confine.host_path(str(copy), ["etc", "link"]) == expect


def test_host_path_follows_chains_and_stops_loops(copy):
    os.symlink("/sys/bus/pci/devices/0000:00:01.0", copy / "etc/dev")
    assert confine.host_path(str(copy), ["etc", "dev", "vendor"]) == ["sys", "devices", "pci0000:00", "0000:00:01.0",
                                                                       "vendor"]
    os.symlink("b", copy / "etc/a")
    os.symlink("a", copy / "etc/b")
    assert confine.host_path(str(copy), ["etc", "a"]) is None


def test_faithful_links_keep_their_text_escaping_ones_are_rewritten(copy, tmp_path):
    (tmp_path / "outside.conf").write_text("outside\n")
    os.symlink(tmp_path / "outside.conf", copy / "etc/abs.conf")
    os.symlink("../../outside.conf", copy / "etc/climb.conf")
    os.symlink("/usr/lib/vfio.conf", copy / "etc/vfio.conf")
    view = view_of(copy, tmp_path)
    assert os.readlink(view / "sys/bus/pci/devices/0000:00:01.0") == "../../../devices/pci0000:00/0000:00:01.0"
    assert (view / "sys/bus/pci/devices/0000:00:01.0/vendor").read_text() == "0x8086\n"
    assert (view / "etc/vfio.conf").read_text() == "options vfio-pci ids=8086:1234\n"
    for name in ("abs.conf", "climb.conf"):
        link = view / "etc" / name
        assert view in link.resolve().parents and not link.exists()  # the copy holds no such file


def test_loops_stay_loops(copy, tmp_path):
    os.symlink("b", copy / "etc/a")
    os.symlink("a", copy / "etc/b")
    view = view_of(copy, tmp_path)
    with pytest.raises(OSError):
        (view / "etc/a").read_text()


def test_special_files_are_left_out_and_big_files_capped(copy, tmp_path, monkeypatch):
    os.mkfifo(copy / "etc/fifo")
    os.symlink("/dev/zero", copy / "etc/zero")
    (copy / "dmesg").write_bytes(b"x" * 100)
    monkeypatch.setattr(confine, "MAX_FILE_BYTES", 10)
    view = view_of(copy, tmp_path)
    assert not os.path.lexists(view / "etc/fifo")
    assert not (view / "etc/zero").exists()  # the copy's own /dev/zero: not there
    assert (view / "dmesg").read_bytes() == b"x" * 11  # one byte over the cap tells the probe it was longer


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_an_unreadable_directory_stays_unreadable(copy, tmp_path):
    (copy / "etc/libvirt/qemu").mkdir(parents=True)
    (copy / "etc/libvirt/qemu/vm.xml").write_text("<domain/>")
    os.chmod(copy / "etc/libvirt/qemu", 0o300)
    try:
        view = view_of(copy, tmp_path)
        assert (view / "etc/libvirt/qemu").is_dir() and not os.access(view / "etc/libvirt/qemu", os.R_OK)
    finally:
        os.chmod(copy / "etc/libvirt/qemu", 0o755)
        if (tmp_path / "view/etc/libvirt/qemu").exists():
            os.chmod(tmp_path / "view/etc/libvirt/qemu", 0o755)


def test_too_many_files_is_a_clear_error(copy, tmp_path, monkeypatch):
    monkeypatch.setattr(confine, "MAX_ENTRIES", 3)
    with pytest.raises(confine.ConfineError, match="more than 3 files; copy only the paths"):
        view_of(copy, tmp_path)
