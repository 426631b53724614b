"""venus-repro: a reproducible Venus (Vulkan-in-QEMU) environment and test driver."""

__version__ = "0.1.0"
