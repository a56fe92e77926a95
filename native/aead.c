/*
 * Transport-data AEAD and X25519 through the OpenSSL that Node itself is linked with (Node's
 * binary exports its libcrypto symbols; its headers ship with Node's). See native-notes/ for
 * why and for the measured cost of each step.
 *
 * Nothing here keeps protocol state: JavaScript passes the key, the counters and the buffers.
 * One call seals or opens a whole batch for one keypair, so the key schedule is set up once per
 * batch and the per-packet cost is the cipher itself plus setting the 12-byte nonce. The batch
 * loops and their bounds checks are in aead_batch.c (no N-API there: fuzz/ calls them too).
 *
 *   aeadSealBatch(key, hi, lo, buf, offs, lens, count)
 *       packet i: plaintext buf[offs[i] .. +lens[i]] becomes ciphertext in place and its 16-byte
 *       tag is written right after it; counters are consecutive from (hi, lo) (WireGuard's
 *       64-bit little-endian counter in nonce bytes 4..11, whitepaper §5.4.6).
 *   aeadOpenBatch(key, his, los, buf, offs, lens, count, ok)
 *       packet i: ciphertext+tag buf[offs[i] .. +lens[i]] is decrypted in place with counter
 *       (his[i], los[i]); ok[i] = 1 when the tag verified, else 0 (its bytes are then garbage).
 *   x25519(out, scalar, point) → false when the result is all zero (a low-order point)
 *   x25519Base(out, scalar)      public key for a private key
 */
#include "common.h"
#include "aead_batch.h"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

static EVP_CIPHER *g_cipher;  /* fetched once: an implicit fetch on every init costs a lookup */
static EVP_CIPHER_CTX *g_ctx; /* one context, re-keyed per batch (the JS thread is the only user) */

static int ready(napi_env env) {
  if (g_ctx) return 1;
  g_cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
  g_ctx = EVP_CIPHER_CTX_new();
  if (!g_cipher || !g_ctx) {
    throw_code(env, "ENOCRYPTO", "OpenSSL has no ChaCha20-Poly1305 cipher");
    return 0;
  }
  return 1;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

static napi_value seal_batch(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t hi, lo, count;
  size_t klen = 0, blen = 0, olen = 0, llen = 0;
  if (argc < 7 || !get_u32(env, argv[1], &hi) || !get_u32(env, argv[2], &lo) || !get_u32(env, argv[6], &count))
    return throw_code(env, "EINVAL", "aeadSealBatch(key, hi, lo, buf, offs, lens, count)");
  uint8_t *key = typed(env, argv[0], napi_uint8_array, &klen);
  uint8_t *buf = typed(env, argv[3], napi_uint8_array, &blen);
  uint32_t *offs = typed(env, argv[4], napi_uint32_array, &olen);
  uint32_t *lens = typed(env, argv[5], napi_uint32_array, &llen);
  if (!key || klen != KM_KEY_LEN || !buf || !offs || !lens || count > olen || count > llen)
    return throw_code(env, "EINVAL", "aeadSealBatch: bad arguments");
  int64_t bad = km_aead_bad_slice(blen, offs, lens, count, KM_TAG_LEN);
  if (bad >= 0) return throw_code(env, "EINVAL", "aeadSealBatch: packet %u (and its tag) lies outside the buffer", (uint32_t)bad);
  if (!ready(env)) return NULL;
  if (count == 0) return NULL;
  int r = km_aead_seal_batch(g_ctx, g_cipher, key, hi, lo, buf, offs, lens, count);
  if (r < 0) return throw_code(env, "ENOCRYPTO", r == -1 ? "ChaCha20-Poly1305 key setup failed" : "ChaCha20-Poly1305 seal failed");
  return NULL;
}

static napi_value open_batch(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint32_t count;
  size_t klen = 0, hlen = 0, lolen = 0, blen = 0, olen = 0, llen = 0, oklen = 0;
  if (argc < 8 || !get_u32(env, argv[6], &count)) return throw_code(env, "EINVAL", "aeadOpenBatch(key, his, los, buf, offs, lens, count, ok)");
  uint8_t *key = typed(env, argv[0], napi_uint8_array, &klen);
  uint32_t *his = typed(env, argv[1], napi_uint32_array, &hlen);
  uint32_t *los = typed(env, argv[2], napi_uint32_array, &lolen);
  uint8_t *buf = typed(env, argv[3], napi_uint8_array, &blen);
  uint32_t *offs = typed(env, argv[4], napi_uint32_array, &olen);
  uint32_t *lens = typed(env, argv[5], napi_uint32_array, &llen);
  uint8_t *ok = typed(env, argv[7], napi_uint8_array, &oklen);
  if (!key || klen != KM_KEY_LEN || !his || !los || !buf || !offs || !lens || !ok || count > hlen || count > lolen || count > olen ||
      count > llen || count > oklen)
    return throw_code(env, "EINVAL", "aeadOpenBatch: bad arguments");
  int64_t bad = km_aead_bad_slice(blen, offs, lens, count, 0);
  if (bad >= 0) return throw_code(env, "EINVAL", "aeadOpenBatch: packet %u lies outside the buffer", (uint32_t)bad);
  if (!ready(env)) return NULL;
  if (count == 0) return NULL;
  if (km_aead_open_batch(g_ctx, g_cipher, key, his, los, buf, offs, lens, count, ok) < 0)
    return throw_code(env, "ENOCRYPTO", "ChaCha20-Poly1305 key setup failed");
  return NULL;
}

/*
 * aeadOne(encrypt, key, nonce12, input, aad, out) → boolean: one ChaCha20-Poly1305 with
 * additional data, for the handshake's small messages (whitepaper §5.4: AEAD(k, 0, x, H)).
 * Seal writes input.length + 16 bytes to out; open writes input.length − 16 and returns false
 * (out zeroed) when the tag does not verify.
 */
static napi_value aead_one(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool enc = false;
  size_t kl = 0, nl = 0, il = 0, al = 0, ol = 0;
  static uint8_t empty[1];
  if (argc < 6 || napi_get_value_bool(env, argv[0], &enc) != napi_ok) return throw_code(env, "EINVAL", "aeadOne(encrypt, key, nonce12, input, aad, out)");
  uint8_t *key = typed(env, argv[1], napi_uint8_array, &kl);
  uint8_t *nonce = typed(env, argv[2], napi_uint8_array, &nl);
  uint8_t *in = typed(env, argv[3], napi_uint8_array, &il);
  uint8_t *aad = typed(env, argv[4], napi_uint8_array, &al);
  uint8_t *out = typed(env, argv[5], napi_uint8_array, &ol);
  if (!in && il == 0) in = empty;
  if (!aad && al == 0) aad = empty;
  if (!out && ol == 0) out = empty;
  if (!key || kl != KM_KEY_LEN || !nonce || nl != 12 || (enc ? ol != il + KM_TAG_LEN : (il < KM_TAG_LEN || ol != il - KM_TAG_LEN)))
    return throw_code(env, "EINVAL", "aeadOne: bad key, nonce or lengths");
  if (!ready(env)) return NULL;
  int n = 0, f = 0, ok;
  if (enc) {
    ok = EVP_EncryptInit_ex2(g_ctx, g_cipher, key, nonce, NULL) && EVP_EncryptUpdate(g_ctx, NULL, &n, aad, (int)al) &&
         EVP_EncryptUpdate(g_ctx, out, &n, in, (int)il) && EVP_EncryptFinal_ex(g_ctx, out + n, &f) &&
         EVP_CIPHER_CTX_ctrl(g_ctx, EVP_CTRL_AEAD_GET_TAG, KM_TAG_LEN, out + il);
  } else {
    size_t cl = il - KM_TAG_LEN;
    ok = EVP_DecryptInit_ex2(g_ctx, g_cipher, key, nonce, NULL) && EVP_CIPHER_CTX_ctrl(g_ctx, EVP_CTRL_AEAD_SET_TAG, KM_TAG_LEN, in + cl) &&
         EVP_DecryptUpdate(g_ctx, NULL, &n, aad, (int)al) && EVP_DecryptUpdate(g_ctx, out, &n, in, (int)cl) &&
         EVP_DecryptFinal_ex(g_ctx, out + n, &f) > 0;
    if (!ok && ol) memset(out, 0, ol);
  }
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

/* ───────────────────────── X25519 (RFC 7748) ───────────────────────── */

/*
 * OpenSSL's raw scalar multiplication, when the binary exports it (Node's does): it skips the
 * EVP_PKEY objects and their allocations, about half the cost of a derive. The EVP route is the
 * fallback and gives the same bytes (both are RFC 7748 X25519; tested against its vectors).
 */
typedef int (*x25519_fn)(uint8_t out[32], const uint8_t scalar[32], const uint8_t point[32]);
typedef void (*x25519_base_fn)(uint8_t out[32], const uint8_t scalar[32]);
static x25519_fn g_x25519;
static x25519_base_fn g_x25519_base;
static int g_resolved;

static void resolve(void) {
  if (g_resolved) return;
  g_resolved = 1;
  if (getenv("KEYMESH_X25519_EVP")) return; /* force the EVP route (tests compare the two) */
  g_x25519 = (x25519_fn)dlsym(RTLD_DEFAULT, "ossl_x25519");
  g_x25519_base = (x25519_base_fn)dlsym(RTLD_DEFAULT, "ossl_x25519_public_from_private");
  if (!g_x25519 || !g_x25519_base) g_x25519 = NULL, g_x25519_base = NULL;
}

static int evp_x25519(uint8_t out[32], const uint8_t scalar[32], const uint8_t *point) {
  int ok = 0;
  EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, 32);
  if (!priv) return 0;
  if (!point) {
    size_t len = 32;
    ok = EVP_PKEY_get_raw_public_key(priv, out, &len) && len == 32;
    EVP_PKEY_free(priv);
    return ok;
  }
  EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, point, 32);
  EVP_PKEY_CTX *ctx = pub ? EVP_PKEY_CTX_new(priv, NULL) : NULL;
  size_t len = 32;
  /* derive fails on an all-zero result (low-order point): that is the `false` answer */
  ok = ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, pub) > 0 && EVP_PKEY_derive(ctx, out, &len) > 0 && len == 32;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pub);
  EVP_PKEY_free(priv);
  return ok;
}

static napi_value x25519(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t ol = 0, sl = 0, pl = 0;
  uint8_t *out = argc >= 2 ? typed(env, argv[0], napi_uint8_array, &ol) : NULL;
  uint8_t *scalar = argc >= 2 ? typed(env, argv[1], napi_uint8_array, &sl) : NULL;
  uint8_t *point = argc >= 3 ? typed(env, argv[2], napi_uint8_array, &pl) : NULL;
  if (!out || ol != 32 || !scalar || sl != 32 || (argc >= 3 && (!point || pl != 32)))
    return throw_code(env, "EINVAL", "x25519(out32, scalar32, point32) / x25519Base(out32, scalar32)");
  resolve();
  int ok;
  if (!point) {
    if (g_x25519_base) g_x25519_base(out, scalar), ok = 1;
    else ok = evp_x25519(out, scalar, NULL);
  } else if (g_x25519) {
    ok = g_x25519(out, scalar, point) == 1;
  } else {
    ok = evp_x25519(out, scalar, point);
  }
  if (!ok) memset(out, 0, 32);
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

static napi_value x25519_backend(napi_env env, napi_callback_info info) {
  resolve();
  napi_value r;
  napi_create_string_utf8(env, g_x25519 ? "openssl-raw" : "openssl-evp", NAPI_AUTO_LENGTH, &r);
  return r;
}

void km_register_aead(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"aeadSealBatch", NULL, seal_batch, NULL, NULL, NULL, napi_default, NULL},
      {"aeadOpenBatch", NULL, open_batch, NULL, NULL, NULL, napi_default, NULL},
      {"aeadOne", NULL, aead_one, NULL, NULL, NULL, napi_default, NULL},
      {"x25519", NULL, x25519, NULL, NULL, NULL, napi_default, NULL},
      {"x25519Base", NULL, x25519, NULL, NULL, NULL, napi_default, NULL},
      {"x25519Backend", NULL, x25519_backend, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
