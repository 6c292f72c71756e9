// _linux, networking part: sockets (socket(7), ip(7), udp(7), tcp(7)) and IPv4 interface configuration
// (netdevice(7) SIOC* ioctls, route(8)'s SIOCADDRT). MicroPython's own socket module is switched off in this
// build (MICROPY_PY_SOCKET = 0: it brings getaddrinfo and the C library's resolver, which an initramfs cannot
// use); the agent's network boot (net.py, dhcp.py, dns.py, http.py) needs only these calls, and the fake machine
// replaces them (host-tools/mpinit/testing/net.py).
//
// Conventions as modlinux.c: convert arguments, make the call (retry on EINTR), OSError(errno) on failure (with
// the interface name as second argument for the interface calls), TypeError/ValueError for bad arguments.
// IPv4 addresses cross the boundary as dotted-quad strings, socket addresses as (address, port) tuples.
// The objects are listed in modlinux.c's module table (netsys.h); constants are exported there with C(name).

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/netlink.h>

#include "py/runtime.h"
#include "py/mphal.h"
#include "py/objstr.h"

#include "netsys.h"

// A dotted-quad string as an in_addr; ValueError for anything else (inet_pton(3) accepts exactly a.b.c.d).
static struct in_addr get_ipv4(mp_obj_t obj) {
    size_t len;
    const char *s = mp_obj_str_get_data(obj, &len);
    struct in_addr a;
    if (strlen(s) != len || inet_pton(AF_INET, s, &a) != 1) {
        mp_raise_ValueError(MP_ERROR_TEXT("expected an IPv4 address a.b.c.d"));
    }
    return a;
}

// (address, port) -> sockaddr_in.
static void get_sockaddr(mp_obj_t addr_in, struct sockaddr_in *sa) {
    size_t n;
    mp_obj_t *items;
    if (!mp_obj_is_type(addr_in, &mp_type_tuple) && !mp_obj_is_type(addr_in, &mp_type_list)) {
        mp_raise_TypeError(MP_ERROR_TEXT("expected an (address, port) tuple"));
    }
    mp_obj_get_array(addr_in, &n, &items);
    if (n != 2) {
        mp_raise_TypeError(MP_ERROR_TEXT("expected an (address, port) tuple"));
    }
    mp_int_t port = mp_obj_get_int(items[1]);
    if (port < 0 || port > 65535) {
        mp_raise_ValueError(MP_ERROR_TEXT("port out of range"));
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    sa->sin_addr = get_ipv4(items[0]);
}

static mp_obj_t new_ipv4_str(struct in_addr a) {
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof(buf));
    return mp_obj_new_str(buf, strlen(buf));
}

// ---------------------------------------------------------------------------------------------------------------
// Sockets

// socket(family, type, proto=0) -> fd, always close-on-exec: the hand-off's exec must not leak it to init.
static mp_obj_t linux_socket(size_t n_args, const mp_obj_t *args) {
    int family = mp_obj_get_int(args[0]);
    int type = mp_obj_get_int(args[1]);
    int proto = n_args > 2 ? mp_obj_get_int(args[2]) : 0;
    int fd = socket(family, type | SOCK_CLOEXEC, proto);
    if (fd < 0) {
        mp_raise_OSError(errno);
    }
    return MP_OBJ_NEW_SMALL_INT(fd);
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_socket_obj, 2, 3, linux_socket);

// bind(fd, (address, port)).
static mp_obj_t linux_bind(mp_obj_t fd_in, mp_obj_t addr_in) {
    int fd = mp_obj_get_int(fd_in);
    struct sockaddr_in sa;
    get_sockaddr(addr_in, &sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_2(linux_bind_obj, linux_bind);

// bind_netlink(fd, groups): bind a netlink socket (netlink(7): nl_pid 0 lets the kernel assign the port id) to the
// multicast groups given; the kernel's uevents go to group 1 of NETLINK_KOBJECT_UEVENT (lib/kobject_uevent.c
// kobject_uevent_net_broadcast(), what udev listens on).
static mp_obj_t linux_bind_netlink(mp_obj_t fd_in, mp_obj_t groups_in) {
    int fd = mp_obj_get_int(fd_in);
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = (unsigned int)mp_obj_get_int(groups_in);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_2(linux_bind_netlink_obj, linux_bind_netlink);

// poll(2) on one fd, EINTR retried (the timeout then restarts: a signal only lengthens the wait).
static int poll_one(int fd, short events, int timeout_ms, short *revents) {
    struct pollfd p;
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    int n;
    for (;;) {
        n = poll(&p, 1, timeout_ms);
        if (n >= 0 || errno != EINTR) {
            break;
        }
        mp_handle_pending(true);
    }
    *revents = p.revents;
    return n;
}

// connect(fd, (address, port), timeout_ms): a TCP connect that gives up with ETIMEDOUT after timeout_ms (a
// blocking connect(2) waits for the kernel's SYN retries, about two minutes: tcp_syn_retries in ip-sysctl.rst).
// The socket is switched to non-blocking for the connect (EINPROGRESS, poll for POLLOUT, then SO_ERROR as
// connect(2) describes) and back afterwards.
static mp_obj_t linux_connect(mp_obj_t fd_in, mp_obj_t addr_in, mp_obj_t timeout_in) {
    int fd = mp_obj_get_int(fd_in);
    struct sockaddr_in sa;
    get_sockaddr(addr_in, &sa);
    int timeout_ms = mp_obj_get_int(timeout_in);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) {
        mp_raise_OSError(errno);
    }
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int err = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        err = errno;
    }
    if (err == EINPROGRESS || err == EINTR) {
        short revents;
        int n = poll_one(fd, POLLOUT, timeout_ms, &revents);
        if (n == 0) {
            err = ETIMEDOUT;
        } else if (n < 0) {
            err = errno;
        } else {
            socklen_t len = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
                err = errno;
            }
        }
    }
    fcntl(fd, F_SETFL, fl);
    if (err != 0) {
        mp_raise_OSError(err);
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_3(linux_connect_obj, linux_connect);

// sendto(fd, data, addr=None) -> bytes sent; None sends on a connected socket. MSG_NOSIGNAL: a peer that closed
// gives EPIPE instead of SIGPIPE (send(2)), which would kill a process that is not PID 1.
static mp_obj_t linux_sendto(size_t n_args, const mp_obj_t *args) {
    int fd = mp_obj_get_int(args[0]);
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(args[1], &bufinfo, MP_BUFFER_READ);
    struct sockaddr_in sa;
    struct sockaddr *to = NULL;
    socklen_t tolen = 0;
    if (n_args > 2 && args[2] != mp_const_none) {
        get_sockaddr(args[2], &sa);
        to = (struct sockaddr *)&sa;
        tolen = sizeof(sa);
    }
    ssize_t n;
    MP_HAL_RETRY_SYSCALL(n, sendto(fd, bufinfo.buf, bufinfo.len, MSG_NOSIGNAL, to, tolen), mp_raise_OSError(err));
    return MP_OBJ_NEW_SMALL_INT(n);
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_sendto_obj, 2, 3, linux_sendto);

// recvfrom(fd, n) -> (bytes, (address, port)), the address None when the sender is not IPv4 (a connected TCP
// socket gives no address).
static mp_obj_t linux_recvfrom(mp_obj_t fd_in, mp_obj_t n_in) {
    int fd = mp_obj_get_int(fd_in);
    mp_int_t n = mp_obj_get_int(n_in);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative count"));
    }
    vstr_t vstr;
    vstr_init_len(&vstr, n);
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    ssize_t got;
    MP_HAL_RETRY_SYSCALL(got, recvfrom(fd, vstr.buf, n, 0, (struct sockaddr *)&sa, &salen), {
        vstr_clear(&vstr);
        mp_raise_OSError(err);
    });
    vstr.len = got;
    mp_obj_t t[2];
    t[0] = mp_obj_new_bytes_from_vstr(&vstr);
    if (salen >= sizeof(sa) && sa.sin_family == AF_INET) {
        mp_obj_t a[2] = { new_ipv4_str(sa.sin_addr), MP_OBJ_NEW_SMALL_INT(ntohs(sa.sin_port)) };
        t[1] = mp_obj_new_tuple(2, a);
    } else {
        t[1] = mp_const_none;
    }
    return mp_obj_new_tuple(2, t);
}
MP_DEFINE_CONST_FUN_OBJ_2(linux_recvfrom_obj, linux_recvfrom);

// recv_into(fd, buf) -> bytes received into the writable buffer (0: the peer closed). The download path: no
// allocation per read.
static mp_obj_t linux_recv_into(mp_obj_t fd_in, mp_obj_t buf_in) {
    int fd = mp_obj_get_int(fd_in);
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(buf_in, &bufinfo, MP_BUFFER_WRITE);
    ssize_t got;
    MP_HAL_RETRY_SYSCALL(got, recv(fd, bufinfo.buf, bufinfo.len, 0), mp_raise_OSError(err));
    return MP_OBJ_NEW_SMALL_INT(got);
}
MP_DEFINE_CONST_FUN_OBJ_2(linux_recv_into_obj, linux_recv_into);

// recv_fill(fd, buf, want, timeout_ms, out_fd=-1) -> n: receive into the writable buffer until it holds `want`
// bytes (at least 1, at most its length), the peer closes, or no byte arrives for timeout_ms (< 0: no limit).
// Every wait is a poll(2) and every wake-up takes what is queued, as a blocking read loop (busybox wget) does, so
// the socket's receive queue stays short; the caller runs once per buffer instead of once per wake-up. With
// out_fd >= 0 each piece is also written to out_fd as it arrives (the file grows while the rest is on its way, the
// TCP window stays open) and no more than `want` bytes are taken from the socket. Measured on a 256 MiB download
// under TCG (bench, issue 14): a recv per wake-up from Python 54 MB/s; SO_RCVLOWAT 64 KiB 50 MB/s (the queue grows
// to the mark before each read: 2.7 s of softirq against 1.8 s); this loop 52-54 MB/s, with out_fd 57-58 MB/s.
//   n >= want        the buffer holds n bytes
//   0 <= n < want    the peer closed after n bytes
//   n < 0            nothing came for timeout_ms after -n bytes (the stall is the caller's to report)
// OSError(ETIMEDOUT) when nothing came at all within timeout_ms; a socket error after some bytes returns them (it
// is reported once: the next call sees the closed connection); OSError(errno, out_fd) when a write failed.
static mp_obj_t linux_recv_fill(size_t n_args, const mp_obj_t *args) {
    int fd = mp_obj_get_int(args[0]);
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(args[1], &bufinfo, MP_BUFFER_WRITE);
    mp_int_t want = mp_obj_get_int(args[2]);
    int timeout_ms = mp_obj_get_int(args[3]);
    int out_fd = n_args > 4 ? mp_obj_get_int(args[4]) : -1;
    if (fd < 0) {
        mp_raise_OSError(EBADF);  // poll(2) ignores a negative fd: without this it would wait for nothing
    }
    if (want < 1 || (size_t)want > bufinfo.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("want outside 1..len(buf)"));
    }
    char *buf = bufinfo.buf;
    size_t limit = out_fd >= 0 ? (size_t)want : bufinfo.len;
    size_t got = 0;
    while (got < (size_t)want) {
        struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
        int ready = poll(&p, 1, timeout_ms < 0 ? -1 : timeout_ms);
        if (ready < 0) {
            if (errno == EINTR) {
                mp_handle_pending(true);
                continue;
            }
            if (got) {
                break;
            }
            mp_raise_OSError(errno);
        }
        if (ready == 0) {
            if (got) {
                return mp_obj_new_int(-(mp_int_t)got);
            }
            mp_raise_OSError(ETIMEDOUT);
        }
        ssize_t n = recv(fd, buf + got, limit - got, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
                continue;  // readable by poll, taken by nobody else: a spurious wake-up
            }
            if (got) {
                break;
            }
            mp_raise_OSError(errno);
        }
        if (n == 0) {
            break;
        }
        for (ssize_t w = 0; out_fd >= 0 && w < n;) {
            ssize_t k = write(out_fd, buf + got + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR) {
                continue;
            }
            if (k <= 0) {
                raise_errno_path(k < 0 ? errno : EIO, MP_OBJ_NEW_SMALL_INT(out_fd));
            }
            w += k;
        }
        got += (size_t)n;
    }
    return mp_obj_new_int((mp_int_t)got);
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_recv_fill_obj, 4, 5, linux_recv_fill);

// setsockopt(fd, level, option, value): value an int, or str/bytes passed as they are (SO_BINDTODEVICE takes
// an interface name, socket(7)).
static mp_obj_t linux_setsockopt(size_t n_args, const mp_obj_t *args) {
    int fd = mp_obj_get_int(args[0]);
    int level = mp_obj_get_int(args[1]);
    int opt = mp_obj_get_int(args[2]);
    int ret;
    if (mp_obj_is_int(args[3])) {
        int v = mp_obj_get_int(args[3]);
        ret = setsockopt(fd, level, opt, &v, sizeof(v));
    } else {
        size_t len;
        const char *s = mp_obj_str_get_data(args[3], &len);
        ret = setsockopt(fd, level, opt, s, len);
    }
    if (ret != 0) {
        mp_raise_OSError(errno);
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_setsockopt_obj, 4, 4, linux_setsockopt);

// poll(fd, events, timeout_ms) -> revents (0 when the timeout passed). One fd is all the agent ever waits on.
static mp_obj_t linux_poll(mp_obj_t fd_in, mp_obj_t events_in, mp_obj_t timeout_in) {
    short revents;
    int n = poll_one(mp_obj_get_int(fd_in), (short)mp_obj_get_int(events_in), mp_obj_get_int(timeout_in),
        &revents);
    if (n < 0) {
        mp_raise_OSError(errno);
    }
    return MP_OBJ_NEW_SMALL_INT(n == 0 ? 0 : revents);
}
MP_DEFINE_CONST_FUN_OBJ_3(linux_poll_obj, linux_poll);

// ---------------------------------------------------------------------------------------------------------------
// Interfaces (netdevice(7)): each call opens an AF_INET datagram socket for the ioctl, as ifconfig does.

static void get_ifreq(mp_obj_t name_in, struct ifreq *ifr) {
    size_t len;
    const char *name = mp_obj_str_get_data(name_in, &len);
    if (len == 0 || len >= IFNAMSIZ || strlen(name) != len) {
        mp_raise_ValueError(MP_ERROR_TEXT("bad interface name"));
    }
    memset(ifr, 0, sizeof(*ifr));
    memcpy(ifr->ifr_name, name, len);
}

// ioctl(request) on a fresh socket; OSError(errno, name) on failure.
static void if_ioctl(unsigned long request, void *arg, mp_obj_t name_in) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        mp_raise_OSError(errno);
    }
    int ret;
    do {
        ret = ioctl(s, request, arg);
    } while (ret != 0 && errno == EINTR);
    int err = errno;
    close(s);
    if (ret != 0) {
        raise_errno_path(err, name_in);  // the report says which interface an ioctl failed on
    }
}

// if_hwaddr(name) -> the 6-byte MAC (SIOCGIFHWADDR; ifr_hwaddr.sa_data holds it for Ethernet).
static mp_obj_t linux_if_hwaddr(mp_obj_t name_in) {
    struct ifreq ifr;
    get_ifreq(name_in, &ifr);
    if_ioctl(SIOCGIFHWADDR, &ifr, name_in);
    return mp_obj_new_bytes((const byte *)ifr.ifr_hwaddr.sa_data, 6);
}
MP_DEFINE_CONST_FUN_OBJ_1(linux_if_hwaddr_obj, linux_if_hwaddr);

// if_flags(name) -> IFF_* flags (SIOCGIFFLAGS): IFF_UP as set, IFF_RUNNING when the carrier is there
// (netdevice(7); dev_get_flags() in net/core/dev.c sets it from netif_running() && netif_carrier_ok()).
static mp_obj_t linux_if_flags(mp_obj_t name_in) {
    struct ifreq ifr;
    get_ifreq(name_in, &ifr);
    if_ioctl(SIOCGIFFLAGS, &ifr, name_in);
    return MP_OBJ_NEW_SMALL_INT((unsigned short)ifr.ifr_flags);
}
MP_DEFINE_CONST_FUN_OBJ_1(linux_if_flags_obj, linux_if_flags);

// if_set_flags(name, flags): SIOCSIFFLAGS (the low 16 bits; IFF_UP brings the link up).
static mp_obj_t linux_if_set_flags(mp_obj_t name_in, mp_obj_t flags_in) {
    struct ifreq ifr;
    get_ifreq(name_in, &ifr);
    ifr.ifr_flags = (short)mp_obj_get_int(flags_in);
    if_ioctl(SIOCSIFFLAGS, &ifr, name_in);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_2(linux_if_set_flags_obj, linux_if_set_flags);

static void set_ifaddr(struct ifreq *ifr, struct in_addr a) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr = a;
    memcpy(&ifr->ifr_addr, &sa, sizeof(sa));
}

// if_set_addr(name, address, netmask): SIOCSIFADDR then SIOCSIFNETMASK. The kernel adds the subnet's route and
// the broadcast address from them (devinet_ioctl() in net/ipv4/devinet.c).
static mp_obj_t linux_if_set_addr(mp_obj_t name_in, mp_obj_t addr_in, mp_obj_t mask_in) {
    struct ifreq ifr;
    get_ifreq(name_in, &ifr);
    struct in_addr addr = get_ipv4(addr_in);
    struct in_addr mask = get_ipv4(mask_in);
    set_ifaddr(&ifr, addr);
    if_ioctl(SIOCSIFADDR, &ifr, name_in);
    get_ifreq(name_in, &ifr);
    set_ifaddr(&ifr, mask);
    if_ioctl(SIOCSIFNETMASK, &ifr, name_in);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_3(linux_if_set_addr_obj, linux_if_set_addr);

// route_add(dest, netmask, gateway, name): SIOCADDRT (route(8)); gateway None for a route on the link, dest and
// netmask "0.0.0.0" for the default route. EEXIST when the same route is there.
static mp_obj_t linux_route_add(size_t n_args, const mp_obj_t *args) {
    struct ifreq check;
    get_ifreq(args[3], &check);  // validates the name
    struct rtentry rt;
    memset(&rt, 0, sizeof(rt));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr = get_ipv4(args[0]);
    memcpy(&rt.rt_dst, &sa, sizeof(sa));
    sa.sin_addr = get_ipv4(args[1]);
    memcpy(&rt.rt_genmask, &sa, sizeof(sa));
    rt.rt_flags = RTF_UP;
    if (args[2] != mp_const_none) {
        sa.sin_addr = get_ipv4(args[2]);
        memcpy(&rt.rt_gateway, &sa, sizeof(sa));
        rt.rt_flags |= RTF_GATEWAY;
    }
    rt.rt_dev = check.ifr_name;
    if_ioctl(SIOCADDRT, &rt, args[3]);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_route_add_obj, 4, 4, linux_route_add);
