"""The fake kernel's log buffer, read through /dev/kmsg as Documentation/ABI/testing/dev-kmsg describes.

Records are `(level, seq, usec, text)`. The agent's own writes to /dev/kmsg ("<6>mpinit: ..." lines) become
records with facility LOG_USER, as kernel/printk/printk.c devkmsg_write() files them; tests add the kernel's own
lines with `log()` (e.g. through `FakeMachine.fail(..., kmsg=[...])`: what the kernel says when the injected
failure happens). Each reader opened with O_RDONLY starts at the oldest record; `read()` returns one whole record
"prio,seq,usec,flags;text\n" per call (EINVAL when the buffer is too small for it, EAGAIN at the end with
O_NONBLOCK), and `lseek(fd, 0, SEEK_END)` moves the reader after the last record (devkmsg_llseek()).
Not modelled: records overwritten in a full buffer (EPIPE), continuation lines (dictionary KEY=value), blocking
reads (a blocking read at the end raises EAGAIN too rather than hanging the test).
"""

from __future__ import annotations

import errno
import os

from mpinit_agent import linux_abi as abi

LOG_USER = 1 << 3           # <syslog.h>: facility 1, shifted as in the record's prio field
FD_BASE = 2000              # reader fds: far above pyfakefs's own descriptors and net.py's sockets (1000...)


class KernelLog:
    def __init__(self, clock):
        self.clock = clock          # () -> ms of the fake's virtual clock
        self.records = []           # [(prio, seq, usec, text)]
        self._partial = ""          # a write not yet ended by "\n"
        self._readers = {}          # fd -> index of the next record
        self._next_fd = FD_BASE

    # ---- what goes in

    def log(self, text, level=3, facility=0):
        """A line the kernel prints (level 3 = KERN_ERR by default); several lines for a text with newlines."""
        for line in str(text).split("\n"):
            self.records.append((facility | level, len(self.records), self.clock() * 1000, line))

    def user_write(self, data):
        """Bytes written to /dev/kmsg: each "<N>text" line a record (devkmsg_write: LOG_USER unless the prefix
        names a facility)."""
        self._partial += data
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            prio = LOG_USER | 6
            if line.startswith("<") and ">" in line[:5]:
                try:
                    n = int(line[1:line.index(">")])
                    prio = n if n >> 3 else (LOG_USER | n)
                    line = line[line.index(">") + 1:]
                except ValueError:
                    pass
            self.records.append((prio, len(self.records), self.clock() * 1000, line))

    def lines(self):
        return [r[3] for r in self.records]

    # ---- readers (open/read/lseek/close of /dev/kmsg)

    def owns(self, fd):
        return fd in self._readers

    def open(self):
        fd = self._next_fd
        self._next_fd += 1
        self._readers[fd] = 0
        return fd

    def read(self, fd, n):
        i = self._readers[fd]
        if i >= len(self.records):
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        prio, seq, usec, text = self.records[i]
        rec = ("%d,%d,%d,-;%s\n" % (prio, seq, usec, text)).encode()
        if n < len(rec):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))  # devkmsg_read: the buffer holds no record
        self._readers[fd] = i + 1
        return rec

    def lseek(self, fd, offset, whence):
        if offset != 0:
            raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))  # devkmsg_llseek: only offset 0
        if whence == abi.SEEK_SET:
            self._readers[fd] = 0
        elif whence == abi.SEEK_END:
            self._readers[fd] = len(self.records)
        else:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return 0

    def close(self, fd):
        del self._readers[fd]
