// _linux.sha512: SHA-512 (FIPS 180-4) for checksum=y, because MicroPython 1.25's hashlib has sha256 only (its
// sha1/md5 come from the TLS libraries this runtime leaves out) and archiso media ship airootfs.sha512.
// A hashlib-compatible object: sha512([data]) with update(data) and digest(); the agent reaches it through
// mpinit_agent.syscalls (the only importer of _linux) when hashlib has no sha512.

#include <stdint.h>
#include <string.h>

#include "py/runtime.h"

typedef struct _sha512_obj_t {
    mp_obj_base_t base;
    uint64_t state[8];
    uint64_t length;        // bytes hashed so far (FIPS 180-4 allows 2^128 bits; 2^64 bytes is plenty here)
    size_t used;            // bytes waiting in block
    uint8_t block[128];
} sha512_obj_t;

// FIPS 180-4 section 5.3.5: the first 64 bits of the fractional parts of the square roots of the first 8 primes;
// section 4.2.3: of the cube roots of the first 80 primes. Generated from those definitions with integer roots.
static const uint64_t sha512_init[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
};

static const uint64_t sha512_k[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

static void sha512_compress(uint64_t *state, const uint8_t *p) {
    uint64_t w[80];
    for (int i = 0; i < 16; i++) {
        uint64_t v = 0;
        for (int j = 0; j < 8; j++) {
            v = (v << 8) | p[i * 8 + j];   // big-endian words (section 3.1)
        }
        w[i] = v;
    }
    for (int i = 16; i < 80; i++) {
        uint64_t s0 = ROTR(w[i - 15], 1) ^ ROTR(w[i - 15], 8) ^ (w[i - 15] >> 7);
        uint64_t s1 = ROTR(w[i - 2], 19) ^ ROTR(w[i - 2], 61) ^ (w[i - 2] >> 6);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint64_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint64_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 80; i++) {
        uint64_t t1 = h + (ROTR(e, 14) ^ ROTR(e, 18) ^ ROTR(e, 41)) + ((e & f) ^ (~e & g)) + sha512_k[i] + w[i];
        uint64_t t2 = (ROTR(a, 28) ^ ROTR(a, 34) ^ ROTR(a, 39)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

static void sha512_feed(sha512_obj_t *self, const uint8_t *data, size_t len) {
    self->length += len;
    if (self->used) {
        size_t take = 128 - self->used;
        if (take > len) {
            take = len;
        }
        memcpy(self->block + self->used, data, take);
        self->used += take;
        data += take;
        len -= take;
        if (self->used < 128) {
            return;
        }
        sha512_compress(self->state, self->block);
        self->used = 0;
    }
    while (len >= 128) {
        sha512_compress(self->state, data);
        data += 128;
        len -= 128;
    }
    memcpy(self->block, data, len);
    self->used = len;
}

static mp_obj_t sha512_update(mp_obj_t self_in, mp_obj_t data_in) {
    sha512_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(data_in, &bufinfo, MP_BUFFER_READ);
    sha512_feed(self, bufinfo.buf, bufinfo.len);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(sha512_update_obj, sha512_update);

static mp_obj_t sha512_digest(mp_obj_t self_in) {
    // Padding (section 5.1.2) on a copy, so that update() may go on after digest(), as in hashlib.
    sha512_obj_t copy = *(sha512_obj_t *)MP_OBJ_TO_PTR(self_in);
    uint64_t bits = copy.length * 8;
    uint8_t pad[144] = {0x80};
    size_t padlen = (copy.used < 112 ? 112 : 240) - copy.used;
    uint8_t lenbytes[16] = {0};
    for (int i = 0; i < 8; i++) {
        lenbytes[15 - i] = (uint8_t)(bits >> (8 * i));
    }
    sha512_feed(&copy, pad, padlen);
    sha512_feed(&copy, lenbytes, 16);
    vstr_t vstr;
    vstr_init_len(&vstr, 64);
    uint8_t *out = (uint8_t *)vstr.buf;
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 8; j++) {
            out[i * 8 + j] = (uint8_t)(copy.state[i] >> (56 - 8 * j));
        }
    }
    return mp_obj_new_bytes_from_vstr(&vstr);
}
static MP_DEFINE_CONST_FUN_OBJ_1(sha512_digest_obj, sha512_digest);

static mp_obj_t sha512_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 0, 1, false);
    sha512_obj_t *self = mp_obj_malloc(sha512_obj_t, type);
    memcpy(self->state, sha512_init, sizeof(self->state));
    self->length = 0;
    self->used = 0;
    if (n_args == 1) {
        sha512_update(MP_OBJ_FROM_PTR(self), args[0]);
    }
    return MP_OBJ_FROM_PTR(self);
}

static const mp_rom_map_elem_t sha512_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_update), MP_ROM_PTR(&sha512_update_obj) },
    { MP_ROM_QSTR(MP_QSTR_digest), MP_ROM_PTR(&sha512_digest_obj) },
};
static MP_DEFINE_CONST_DICT(sha512_locals_dict, sha512_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    linux_sha512_type,
    MP_QSTR_sha512,
    MP_TYPE_FLAG_NONE,
    make_new, sha512_make_new,
    locals_dict, &sha512_locals_dict
    );
