"""mpinit host tools: build initramfs images, kernel-module closures, live media; probe disks; boot QEMU."""

__version__ = "0.1.0"
