"""``Components``: everything a run uses, wherever it came from (Debian lock or Nix manifest)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..hostvulkan import HostDriver
from ..profile import Profile
from .kernel import ImageInfo

LVP_ICD = "/usr/share/vulkan/icd.d/lvp_icd.json"
RENDER_SERVER = "/usr/libexec/virgl_render_server"


@dataclasses.dataclass
class Components:
    """Everything a run uses, with the identities the result records.

    Host programs run inside ``host_root`` (the Debian profile's unpacked root,
    entered with chroot; ``/`` for the nix profile, whose store paths are
    self-contained): ``qemu``, ``render_server``, ``vulkan_icd``,
    ``virglrenderer`` and ``vulkaninfo`` are paths as seen there. The kernel,
    initramfs, demos and shim are host paths, bound in at the same path.
    """

    profile: Profile
    lock_digest: str  # sha256 of what pins the components: the lock file, or the Nix manifest
    host_root: Path
    host_arch: str
    kernel: ImageInfo
    kernel_flavour: str
    kernel_release: str | None
    initramfs: Path
    demo_bin: Path | None  # host builds of the demos (the reference frames); None: no reference
    versions: dict[str, str]  # registry component → version
    ring_wake: Path | None = None  # the vkr_ring_wake shim for the render server (see driver/shims.py)
    qemu: str = ""  # "": the guest architecture's system emulator in the host root (profile.ARCHES)
    render_server: str = RENDER_SERVER
    vulkan_icd: str = LVP_ICD
    virglrenderer: str | None = None  # libvirglrenderer.so.1 (QEMU's GL module links it)
    vulkaninfo: str = "vulkaninfo"
    # The EGL vendor file for QEMU's GL display (__EGL_VENDOR_LIBRARY_FILENAMES);
    # None: libglvnd's default search path (the Debian root's /usr/share/glvnd).
    egl_vendor: str | None = None
    accel: str = "auto"  # auto: KVM where it can run the guest, else TCG (machine.StartCommand decides)
    display: str = "sdl,gl=on"
    # --host-vulkan host: the host's own GPU driver, bound into the root (hostvulkan.py);
    # None: the root's lavapipe (vulkan_icd).
    host_driver: HostDriver | None = None
    # Files bound over the root's own (a path or a build source: registry.Part.key → host path).
    overrides: dict[str, Path] = dataclasses.field(default_factory=dict)
    # registry component → (source kind, detail): where each came from in this run.
    origins: dict[str, tuple[str, str | None]] = dataclasses.field(default_factory=dict)
    # registry component → the build it came from (provision/build.py), as recorded.
    builds: dict[str, dict] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.qemu = self.qemu or self.profile.arch.qemu

    def inside(self, path: str | Path) -> Path:
        """The host path of ``path`` as seen inside the host root."""
        return self.host_root / str(path).lstrip("/")
