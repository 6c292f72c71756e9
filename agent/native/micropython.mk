# The `_linux` user C module (MicroPython's USER_C_MODULES points at agent/, this is agent/native/).
LINUX_MOD_DIR := $(USERMOD_DIR)

SRC_USERMOD_C += $(LINUX_MOD_DIR)/modlinux.c
SRC_USERMOD_C += $(LINUX_MOD_DIR)/initmain.c
SRC_USERMOD_C += $(LINUX_MOD_DIR)/sha512.c
SRC_USERMOD_C += $(LINUX_MOD_DIR)/crc.c
SRC_USERMOD_C += $(LINUX_MOD_DIR)/netsys.c
SRC_USERMOD_C += $(LINUX_MOD_DIR)/dirstream.c

# initmain.c takes over main() at link time: the linker sends the C runtime's call of main to __wrap_main, which
# decides between "run the agent as PID 1", "refuse" and "plain MicroPython", then calls __real_main (the port's).
LDFLAGS_USERMOD += -Wl,--wrap=main

# dirstream.c: directory listings without musl's per-opendir mmap/munmap (the reason is in that file).
LDFLAGS_USERMOD += -Wl,--wrap=opendir -Wl,--wrap=readdir -Wl,--wrap=closedir
