# The guest kernel: nixpkgs' Linux 6.12 for aarch64 with 16K pages.
#
# 16K because on Apple Silicon with HVF the guest must use the host's page
# size: with 4K pages Venus places blobs at offsets HVF cannot map
# (RESOURCE_MAP_BLOB, ctrl 0x208, fails and vkCreateInstance returns -1).
# Everything the guest needs is built in, so the initramfs has no module step.
# An aarch64-linux derivation; on aarch64-darwin a Linux builder builds it.
{
  lib,
  linux_6_12,
}:
linux_6_12.override {
  structuredExtraConfig = with lib.kernel; {
    ARM64_4K_PAGES = no;
    ARM64_16K_PAGES = yes;
    # virtio-gpu (Venus needs blob resources and context init, both in 6.12).
    DRM = yes;
    DRM_VIRTIO_GPU = yes;
    VIRTIO_PCI = yes;
    VIRTIO_MMIO = yes;
    # The exchange disk (virtio-blk) and the console.
    VIRTIO_BLK = yes;
    VIRTIO_CONSOLE = yes;
    # 9p, for sharing a host directory by hand.
    NET_9P = yes;
    NET_9P_VIRTIO = yes;
    "9P_FS" = yes;
    # No signing key is generated (reproducible) and no module is loaded anyway.
    MODULE_SIG = lib.mkForce no;
  };
  # The page size is the point of this kernel: say it in its name.
  extraMeta.description = "Linux ${linux_6_12.version} for the venus-repro guest (aarch64, 16K pages)";
}
