"""Gathering a sysroot: the confined view lives in memory when it can, on disk when it must; a host
read ahead (gather.Pending) gives what gather gives and leaves no view behind."""

import errno

import pytest

from iommu_audit import confine, gather


def test_the_view_is_built_in_memory_when_dev_shm_is_usable():
    bases = gather._view_bases()
    assert bases[-1] is None and (bases[0] == "/dev/shm" or bases == [None])


def test_a_refused_or_full_memory_view_falls_back_to_the_temporary_directory(host, tmp_path, monkeypatch):
    want = host.facts()
    monkeypatch.setattr(gather, "_view_bases", lambda: [str(tmp_path / "no-such-dir"), None])
    assert gather.parse(gather.gather(gather.Target("x", "sysroot", sysroot=str(host.root)))).pci == want.pci
    real, calls = confine.build, []

    def full(root, view):
        calls.append(view)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(root, view)

    monkeypatch.setattr(gather, "_view_bases", lambda: [str(tmp_path), None])
    monkeypatch.setattr(confine, "build", full)
    g = gather.gather(gather.Target("x", "sysroot", sysroot=str(host.root)))
    assert gather.parse(g).pci == want.pci and f"root={host.root}\n" in g.probe_output
    assert calls[0].startswith(str(tmp_path)) and not calls[1].startswith(str(tmp_path))


def test_an_unreadable_copy_is_still_one_clear_error(tmp_path, monkeypatch):
    def unreadable(root, view):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(gather, "_view_bases", lambda: ["/dev/shm", None])
    monkeypatch.setattr(confine, "build", unreadable)
    with pytest.raises(gather.GatherError) as err:
        gather.gather(gather.Target("x", "sysroot:/c", sysroot=str(tmp_path)))
    assert str(err.value) == "sysroot:/c: cannot read the host copy: [Errno 13] Permission denied"


@pytest.fixture
def views(tmp_path, monkeypatch):
    """Where the confined views go: a directory of their own, to see them removed."""
    d = tmp_path / "views"
    d.mkdir()
    monkeypatch.setattr(gather, "_view_bases", lambda: [str(d)])
    return d


def test_a_copy_read_ahead_gives_what_gather_gives_and_removes_its_view(host, views):
    target = gather.Target("x", "sysroot", sysroot=str(host.root))
    pending = gather.Pending(target)
    assert list(views.iterdir())  # built before the probe runs in its thread
    g = pending.result()
    assert gather.parse(g).pci == gather.parse(gather.gather(target)).pci
    assert f"root={host.root}\n" in g.probe_output
    assert not list(views.iterdir())


def test_a_copy_read_ahead_that_nothing_asks_for_leaves_no_view(host, views):
    gather.Pending(gather.Target("x", "sysroot", sysroot=str(host.root))).close()  # -k deselected its checks
    assert not list(views.iterdir())


def test_an_unreadable_copy_read_ahead_fails_when_its_facts_are_asked_for(tmp_path, views, monkeypatch):
    def unreadable(root, view):
        raise confine.ConfineError(f"{root}: not a directory")

    monkeypatch.setattr(confine, "build", unreadable)
    pending = gather.Pending(gather.Target("x", "sysroot:/c", sysroot=str(tmp_path / "copy")))  # no error yet
    with pytest.raises(gather.GatherError, match=r"^sysroot:/c: cannot read the host copy: .*copy: not a directory$"):
        pending.result()
    assert not list(views.iterdir())


def test_a_fleet_of_copies_reads_ahead_only_as_many_views_as_it_probes_at_once(host, views, dl360):
    from iommu_audit.plugin import AuditState

    targets = [gather.Target(f"h{i}", "sysroot", sysroot=str(host.root)) for i in range(gather.READ_AHEAD + 2)]
    state = AuditState(dl360, targets)
    state.prefetch()
    assert sorted(state.pending) == sorted(t.name for t in targets[:gather.READ_AHEAD])
    for t in targets:  # the rest is read when its checks ask
        state.gather(t)
    assert sorted(state.facts) == sorted(t.name for t in targets) and not list(views.iterdir())
