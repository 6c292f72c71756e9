// _linux.crc32 / _linux.crc32c: the reflected CRC-32s the block-device probes check (GPT header and entry array:
// UEFI spec 2.10 section 5.3.2, CRC-32 of IEEE 802.3; EROFS and f2fs superblocks: CRC-32C, Castagnoli).
// MicroPython 1.25 has binascii.crc32 only together with the deflate module, which this runtime leaves out, and
// the Python loop in probe.py costs ~10 ms per GPT disk under QEMU TCG (16 KiB of entries, issue 14): here it is
// the classic byte-wise table (zlib's crc32 without its slicing), generated on first use from the polynomial.
//
//   crc32(data, crc=0) -> int    zlib.crc32 semantics: crc is a previous result, inverted before and after
//   crc32c(data, crc) -> int     raw: no inversions (the kernel's crc32c(seed, ...), lib/crc32.c), as probe.py's
//
// The agent reaches them through mpinit_agent.syscalls (the only importer of _linux); CPython code uses zlib's.

#include <stdint.h>

#include "py/runtime.h"

static uint32_t crc_table_ieee[256];
static uint32_t crc_table_castagnoli[256];

static const uint32_t *crc_table(uint32_t *table, uint32_t poly) {
    if (table[1] == 0) {    // entry 1 is never 0 for a non-zero polynomial: the table is made
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
            }
            table[i] = c;
        }
    }
    return table;
}

static uint32_t crc_raw(const uint32_t *table, const uint8_t *p, size_t n, uint32_t crc) {
    while (n--) {
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    }
    return crc;
}

static mp_obj_t linux_crc32(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(args[0], &buf, MP_BUFFER_READ);
    uint32_t crc = n_args > 1 ? (uint32_t)mp_obj_get_int_truncated(args[1]) : 0;
    const uint32_t *t = crc_table(crc_table_ieee, 0xEDB88320);
    crc = crc_raw(t, buf.buf, buf.len, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF;
    return mp_obj_new_int_from_uint(crc);
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(linux_crc32_obj, 1, 2, linux_crc32);

static mp_obj_t linux_crc32c(mp_obj_t data, mp_obj_t seed) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(data, &buf, MP_BUFFER_READ);
    const uint32_t *t = crc_table(crc_table_castagnoli, 0x82F63B78);
    return mp_obj_new_int_from_uint(crc_raw(t, buf.buf, buf.len, (uint32_t)mp_obj_get_int_truncated(seed)));
}
MP_DEFINE_CONST_FUN_OBJ_2(linux_crc32c_obj, linux_crc32c);
