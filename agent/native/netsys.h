// The networking calls of _linux (netsys.c), listed in modlinux.c's module table.
#ifndef MPINIT_NETSYS_H
#define MPINIT_NETSYS_H

#include "py/obj.h"

// modlinux.c's OSError(errno, path or interface name), shared with netsys.c.
NORETURN void raise_errno_path(int err, mp_obj_t path);

MP_DECLARE_CONST_FUN_OBJ_VAR_BETWEEN(linux_socket_obj);
MP_DECLARE_CONST_FUN_OBJ_2(linux_bind_obj);
MP_DECLARE_CONST_FUN_OBJ_2(linux_bind_netlink_obj);
MP_DECLARE_CONST_FUN_OBJ_3(linux_connect_obj);
MP_DECLARE_CONST_FUN_OBJ_VAR_BETWEEN(linux_sendto_obj);
MP_DECLARE_CONST_FUN_OBJ_2(linux_recvfrom_obj);
MP_DECLARE_CONST_FUN_OBJ_2(linux_recv_into_obj);
MP_DECLARE_CONST_FUN_OBJ_VAR_BETWEEN(linux_recv_fill_obj);
MP_DECLARE_CONST_FUN_OBJ_VAR_BETWEEN(linux_setsockopt_obj);
MP_DECLARE_CONST_FUN_OBJ_3(linux_poll_obj);
MP_DECLARE_CONST_FUN_OBJ_1(linux_if_hwaddr_obj);
MP_DECLARE_CONST_FUN_OBJ_1(linux_if_flags_obj);
MP_DECLARE_CONST_FUN_OBJ_2(linux_if_set_flags_obj);
MP_DECLARE_CONST_FUN_OBJ_3(linux_if_set_addr_obj);
MP_DECLARE_CONST_FUN_OBJ_VAR_BETWEEN(linux_route_add_obj);

#endif
