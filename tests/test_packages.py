"""Scenario guest packages are installed as packages (driver/provision/packages.py).

The maintainer-script readers are checked on the scripts Debian ships (quoted
below as they are in the packages); tests/test_vm.py boots guests with them.
"""

from __future__ import annotations

import pytest

from venus_repro.provision import packages

# libblas3's postinst (trixie, arm64), as shipped.
LIBBLAS3_POSTINST = """#!/bin/sh
set -e

update-alternatives --install /usr/lib/aarch64-linux-gnu/libblas.so.3 \\
                    libblas.so.3-aarch64-linux-gnu \\
                    /usr/lib/aarch64-linux-gnu/blas/libblas.so.3 10

# Automatically added by dh_makeshlibs/13.24.2
if [ "$1" = "configure" ]; then
	ldconfig
fi
# End automatically added section
"""

# The shape of a server package's postinst (users, services).
SERVICE_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    adduser --system --group --home /var/lib/foo foo
fi
if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
"""


def test_update_alternatives_links_are_read_with_their_slaves_and_priority():
    assert packages.alternatives(LIBBLAS3_POSTINST) == [
        ("/usr/lib/aarch64-linux-gnu/libblas.so.3", "libblas.so.3-aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu/blas/libblas.so.3", 10)
    ]
    editor = "update-alternatives --install /usr/bin/editor editor /bin/nano 40 --slave /usr/share/man/man1/editor.1.gz editor.1.gz /usr/share/man/man1/nano.1.gz\n"
    assert [a[0] for a in packages.alternatives(editor)] == ["/usr/bin/editor", "/usr/share/man/man1/editor.1.gz"]
    assert packages.alternatives("# update-alternatives --install /a b /c 1\n") == []


@pytest.mark.parametrize(
    "script,needs",
    [(LIBBLAS3_POSTINST, []), (SERVICE_POSTINST, ["adduser"]), ("#!/bin/sh\nset -e\n# adduser in a comment\n", [])],
)
def test_what_an_unpacked_guest_cannot_stand_in_for_is_named(script, needs):
    assert packages.needs_system(script) == needs


def test_libraries_in_an_ld_so_conf_d_folder_are_linked_into_the_default_one(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib/aarch64-linux-gnu/private").mkdir(parents=True)
    (root / "usr/lib/aarch64-linux-gnu/private/libfoo.so.1").write_bytes(b"\x7fELF")
    (root / "usr/lib/aarch64-linux-gnu/libc.so.6").write_bytes(b"\x7fELF")
    (root / "etc/ld.so.conf.d").mkdir(parents=True)
    (root / "etc/ld.so.conf.d/aarch64-linux-gnu.conf").write_text("# Multiarch support\n/usr/local/lib/aarch64-linux-gnu\n/lib/aarch64-linux-gnu\n/usr/lib/aarch64-linux-gnu\n")
    (root / "etc/ld.so.conf.d/foo.conf").write_text("/usr/lib/aarch64-linux-gnu/private\n")
    packages.link_library_paths(root)
    link = root / "usr/lib/aarch64-linux-gnu/libfoo.so.1"
    assert link.is_symlink() and str(link.readlink()) == "/usr/lib/aarch64-linux-gnu/private/libfoo.so.1"
    assert not (root / "usr/lib/aarch64-linux-gnu/libc.so.6").is_symlink()
