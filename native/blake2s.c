/*
 * BLAKE2s (RFC 7693) for the handshake: HASH, MAC (keyed, 16-byte output) and HMAC of the
 * WireGuard whitepaper §5.4. OpenSSL offers BLAKE2s only through EVP objects whose set-up costs
 * more than hashing the few dozen bytes a handshake hashes, so it is written here, from the RFC,
 * and checked against the pure-TS reference (@noble/hashes) and the RFC's vectors in tests.
 *
 *   blake2s(out, key|null, ...parts)  out.length bytes (1..32) of BLAKE2s over the parts
 *   hmacBlake2s(out32, key, input)    HMAC (RFC 2104) with BLAKE2s-256, 64-byte blocks
 *   hkdfBlake2s(out1, out2|null, out3|null, key, input)
 *                                     the whitepaper's KDF1/2/3 in one call (three or four
 *                                     HMACs: one N-API crossing instead of one per HMAC)
 */
#include "common.h"

static const uint32_t IV[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};

/* Message word schedule of each of the 10 rounds (RFC 7693 §2.7). */
static const uint8_t SIGMA[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

typedef struct {
  uint32_t h[8];
  uint32_t t[2]; /* bytes hashed so far, 64-bit */
  uint8_t block[64];
  size_t fill;
  size_t outlen;
} blake2s_state;

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
static inline uint32_t load32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* The mixing function G (RFC 7693 §3.1) with BLAKE2s's rotations 16, 12, 8, 7. */
#define G(a, b, c, d, x, y)        \
  do {                             \
    v[a] = v[a] + v[b] + (x);      \
    v[d] = rotr(v[d] ^ v[a], 16);  \
    v[c] = v[c] + v[d];            \
    v[b] = rotr(v[b] ^ v[c], 12);  \
    v[a] = v[a] + v[b] + (y);      \
    v[d] = rotr(v[d] ^ v[a], 8);   \
    v[c] = v[c] + v[d];            \
    v[b] = rotr(v[b] ^ v[c], 7);   \
  } while (0)

/* Compression function F (RFC 7693 §3.2). */
static void compress(blake2s_state *s, int last) {
  uint32_t m[16], v[16];
  for (int i = 0; i < 16; i++) m[i] = load32(s->block + 4 * i);
  for (int i = 0; i < 8; i++) v[i] = s->h[i], v[i + 8] = IV[i];
  v[12] ^= s->t[0];
  v[13] ^= s->t[1];
  if (last) v[14] = ~v[14];
  for (int r = 0; r < 10; r++) {
    const uint8_t *z = SIGMA[r];
    G(0, 4, 8, 12, m[z[0]], m[z[1]]);
    G(1, 5, 9, 13, m[z[2]], m[z[3]]);
    G(2, 6, 10, 14, m[z[4]], m[z[5]]);
    G(3, 7, 11, 15, m[z[6]], m[z[7]]);
    G(0, 5, 10, 15, m[z[8]], m[z[9]]);
    G(1, 6, 11, 12, m[z[10]], m[z[11]]);
    G(2, 7, 8, 13, m[z[12]], m[z[13]]);
    G(3, 4, 9, 14, m[z[14]], m[z[15]]);
  }
  for (int i = 0; i < 8; i++) s->h[i] ^= v[i] ^ v[i + 8];
}

static void add_count(blake2s_state *s, uint32_t n) {
  s->t[0] += n;
  if (s->t[0] < n) s->t[1]++;
}

static void b2s_init(blake2s_state *s, size_t outlen, const uint8_t *key, size_t keylen) {
  memset(s, 0, sizeof *s);
  for (int i = 0; i < 8; i++) s->h[i] = IV[i];
  s->h[0] ^= 0x01010000u ^ ((uint32_t)keylen << 8) ^ (uint32_t)outlen; /* parameter block: fanout 1, depth 1 */
  s->outlen = outlen;
  if (keylen) {
    memcpy(s->block, key, keylen); /* the key, zero-padded, is the first block */
    s->fill = 64;
  }
}

static void b2s_update(blake2s_state *s, const uint8_t *in, size_t n) {
  while (n > 0) {
    if (s->fill == 64) { /* a full block is compressed only once more input follows: the last one is final */
      add_count(s, 64);
      compress(s, 0);
      s->fill = 0;
    }
    size_t take = 64 - s->fill < n ? 64 - s->fill : n;
    memcpy(s->block + s->fill, in, take);
    s->fill += take, in += take, n -= take;
  }
}

static void b2s_final(blake2s_state *s, uint8_t *out) {
  add_count(s, (uint32_t)s->fill);
  memset(s->block + s->fill, 0, 64 - s->fill);
  compress(s, 1);
  uint8_t full[32];
  for (int i = 0; i < 8; i++)
    full[4 * i] = (uint8_t)s->h[i], full[4 * i + 1] = (uint8_t)(s->h[i] >> 8), full[4 * i + 2] = (uint8_t)(s->h[i] >> 16), full[4 * i + 3] = (uint8_t)(s->h[i] >> 24);
  memcpy(out, full, s->outlen);
  memset(full, 0, sizeof full);
  memset(s, 0, sizeof *s); /* it held key material */
}

#define MAX_PARTS 8

static napi_value blake2s(napi_env env, napi_callback_info info) {
  size_t argc = 2 + MAX_PARTS;
  napi_value argv[2 + MAX_PARTS];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t olen = 0, klen = 0;
  uint8_t *out = argc >= 2 ? typed(env, argv[0], napi_uint8_array, &olen) : NULL;
  napi_valuetype kt = napi_null;
  if (argc >= 2) napi_typeof(env, argv[1], &kt);
  uint8_t *key = kt == napi_null || kt == napi_undefined ? NULL : typed(env, argv[1], napi_uint8_array, &klen);
  if (!out || olen < 1 || olen > 32 || argc > 2 + MAX_PARTS || (kt != napi_null && kt != napi_undefined && (!key || klen > 32)))
    return throw_code(env, "EINVAL", "blake2s(out[1..32], key[..32] | null, ...parts[..%d])", MAX_PARTS);
  blake2s_state s;
  b2s_init(&s, olen, key, key ? klen : 0);
  for (size_t i = 2; i < argc; i++) {
    size_t n = 0;
    uint8_t *p = typed(env, argv[i], napi_uint8_array, &n);
    if (!p && n != 0) return throw_code(env, "EINVAL", "blake2s: part %zu is not a Uint8Array", i - 2);
    if (!p) {
      bool is;
      napi_is_typedarray(env, argv[i], &is);
      if (!is) return throw_code(env, "EINVAL", "blake2s: part %zu is not a Uint8Array", i - 2);
      continue;
    }
    b2s_update(&s, p, n);
  }
  b2s_final(&s, out);
  return NULL;
}

static void hmac(uint8_t out[32], const uint8_t *key, size_t keylen, const uint8_t *in, size_t n) {
  uint8_t k[64] = {0}, pad[64], inner[32];
  blake2s_state s;
  if (keylen > 64) {
    b2s_init(&s, 32, NULL, 0);
    b2s_update(&s, key, keylen);
    b2s_final(&s, k);
  } else {
    memcpy(k, key, keylen);
  }
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
  b2s_init(&s, 32, NULL, 0);
  b2s_update(&s, pad, 64);
  b2s_update(&s, in, n);
  b2s_final(&s, inner);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
  b2s_init(&s, 32, NULL, 0);
  b2s_update(&s, pad, 64);
  b2s_update(&s, inner, 32);
  b2s_final(&s, out);
  memset(k, 0, sizeof k), memset(pad, 0, sizeof pad), memset(inner, 0, sizeof inner);
}

/* A Uint8Array argument's bytes; an empty one is valid input too (typed() gives NULL for it). NULL
 * when the argument is not a Uint8Array. */
static uint8_t *bytes_arg(napi_env env, napi_value v, size_t *len) {
  static const uint8_t empty[1];
  uint8_t *p = typed(env, v, napi_uint8_array, len);
  bool is = false;
  if (!p && napi_is_typedarray(env, v, &is) == napi_ok && is) p = (uint8_t *)empty, *len = 0;
  return p;
}

static napi_value hmac_blake2s(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t olen = 0, klen = 0, ilen = 0;
  uint8_t *out = argc >= 3 ? typed(env, argv[0], napi_uint8_array, &olen) : NULL;
  uint8_t *key = argc >= 3 ? bytes_arg(env, argv[1], &klen) : NULL;
  uint8_t *in = argc >= 3 ? bytes_arg(env, argv[2], &ilen) : NULL;
  if (!out || olen != 32 || !key || !in) return throw_code(env, "EINVAL", "hmacBlake2s(out32, key, input)");
  hmac(out, key, klen, in, ilen);
  return NULL;
}

/* An optional 32-byte output: a Uint8Array of 32 bytes, or null/undefined (NULL here, *ok stays). */
static uint8_t *opt_out32(napi_env env, napi_value v, bool *ok) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return *ok = false, NULL;
  if (t == napi_null || t == napi_undefined) return NULL;
  size_t len = 0;
  uint8_t *p = typed(env, v, napi_uint8_array, &len);
  if (!p || len != 32) *ok = false;
  return p;
}

/*
 * KDF_n(key, input) of the whitepaper (§5.4, HKDF with HMAC-BLAKE2s):
 *   τ0 = HMAC(key, input), τ1 = HMAC(τ0, 0x1), τi = HMAC(τ0, τ(i−1) ‖ i);
 * outputs τ1..τn, n = how many of out1..out3 are given (out1 always). τ0 is wiped.
 */
static napi_value hkdf_blake2s(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool ok = argc >= 5;
  size_t klen = 0, ilen = 0;
  uint8_t *outs[3] = {NULL, NULL, NULL};
  for (int i = 0; ok && i < 3; i++) outs[i] = opt_out32(env, argv[i], &ok);
  uint8_t *key = ok ? bytes_arg(env, argv[3], &klen) : NULL;
  uint8_t *in = ok ? bytes_arg(env, argv[4], &ilen) : NULL;
  if (!ok || !outs[0] || (outs[2] && !outs[1]) || !key || !in)
    return throw_code(env, "EINVAL", "hkdfBlake2s(out1, out2|null, out3|null, key, input)");
  uint8_t t0[32], msg[33];
  hmac(t0, key, klen, in, ilen);
  size_t mlen = 0;
  for (int i = 0; i < 3 && outs[i]; i++) {
    msg[mlen] = (uint8_t)(i + 1);
    hmac(outs[i], t0, 32, msg, mlen + 1);
    memcpy(msg, outs[i], 32);
    mlen = 32;
  }
  memset(t0, 0, sizeof t0), memset(msg, 0, sizeof msg);
  return NULL;
}

void km_register_hash(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"blake2s", NULL, blake2s, NULL, NULL, NULL, napi_default, NULL},
      {"hmacBlake2s", NULL, hmac_blake2s, NULL, NULL, NULL, napi_default, NULL},
      {"hkdfBlake2s", NULL, hkdf_blake2s, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
