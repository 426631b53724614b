"""The pinned Debian sources (data/pins/sources.json): fetched from the mirror, checked, atomic.

The ``vm``-marked tests fetch .dsc files (a few KB) from the host's Debian mirror: the
unmarked unit tests stay offline (Nix's checks.unit runs them with no network).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pytest

from conftest import venus_repro
from venus_repro.errors import PinError
from venus_repro.provision import apt, sources


def test_lock_sources_lists_every_pinned_source():
    proc = venus_repro("lock", "--sources", check=True)
    pinned = sources.load()
    assert {"mesa-trixie", "mesa-forky", "qemu-trixie", "qemu-forky", "qemu-sid"} <= set(pinned)
    for s in pinned.values():
        assert f"{s.name}: {s.package} {s.version} ({s.suite}) {s.orig.name}" in proc.stdout
        assert len(s.dsc.sha256) == len(s.orig.sha256) == 64 and s.orig.name.startswith(f"{s.package}_")


@pytest.mark.vm
def test_a_tarball_pin_that_its_dsc_contradicts_is_refused_before_the_download(tmp_path):
    pinned = sources.get("qemu-trixie")
    wrong = dataclasses.replace(pinned, orig=dataclasses.replace(pinned.orig, sha256="0" * 64))
    with pytest.raises(PinError, match=re.escape(f"lists {pinned.orig.name}")):
        sources.fetch(wrong, cache=tmp_path)
    # The .dsc came in (it matched its pin); the tarball was never fetched, and nothing partial stayed.
    assert sorted(p.name for p in (tmp_path / "sources").iterdir()) == [pinned.dsc.name]


@pytest.mark.vm
def test_a_damaged_cached_file_is_fetched_again(tmp_path):
    dsc = sources.get("qemu-trixie").dsc
    into = tmp_path / "sources"
    path = sources._fetch_file(dsc, into, apt.host_mirror())
    listed = sources.dsc_checksums(path.read_text())
    assert listed[sources.get("qemu-trixie").orig.name] == (sources.get("qemu-trixie").orig.size, sources.get("qemu-trixie").orig.sha256)
    path.write_bytes(path.read_bytes().replace(b"qemu", b"qemx", 1))
    again = sources._fetch_file(dsc, into, apt.host_mirror())
    assert again == path and hashlib.sha256(again.read_bytes()).hexdigest() == dsc.sha256
