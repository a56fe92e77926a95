/*
 * Target aead: the bounds of the in-place transport AEAD (aeadSealBatch / aeadOpenBatch,
 * aead_batch.c). JavaScript passes a buffer and per-packet offsets and lengths; the checks decide
 * whether OpenSSL may write the ciphertext and its 16-byte tag there. OpenSSL is not built with
 * AddressSanitizer, so its own accesses are not watched: the harness asks ASan whether every byte
 * a packet (and its tag) spans is addressable before letting it run.
 *
 * Input: buffer length (2 bytes, at most 4096), packet count (1, at most 16), key (32), then per
 * packet a form byte and an offset and a length (2 bytes each, or 4 with form bit 0: anything at
 * all), then the counter (hi, lo: 4 bytes each).
 * Checked beyond memory safety: the checks agree with a naive twin; sealed packets that do not
 * overlap open again (tags verify, plaintext back); a flipped byte makes its packet fail.
 */
#include "fuzz.h"
#include "aead_batch.h"

#include <sanitizer/asan_interface.h>

#define MAX_PACKETS 16

/* Does [off, off + len + extra) lie inside blen bytes? Written to be obviously right, not fast. */
static int naive_inside(size_t blen, uint64_t off, uint64_t len, uint64_t extra) {
  return off <= blen && len <= blen - off && extra <= blen - off - len && len + KM_TAG_LEN <= 0x7fffffff;
}

/* The first packet the naive twin refuses, or -1. */
static int64_t naive_bad(size_t blen, const uint32_t *offs, const uint32_t *lens, uint32_t count, uint32_t extra) {
  for (uint32_t i = 0; i < count; i++)
    if (!naive_inside(blen, offs[i], lens[i], extra)) return i;
  return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static EVP_CIPHER *cipher;
  static EVP_CIPHER_CTX *ctx;
  if (!ctx) {
    cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    ctx = EVP_CIPHER_CTX_new();
    if (!cipher || !ctx) FAIL("no ChaCha20-Poly1305 in this OpenSSL");
  }
  reader r = {data, size};
  size_t blen = take16(&r) % 4097;
  uint32_t count = take8(&r) % (MAX_PACKETS + 1);
  uint8_t key[KM_KEY_LEN] = {0};
  size_t got;
  const uint8_t *k = take(&r, sizeof key, &got);
  memcpy(key, k, got);
  uint32_t offs[MAX_PACKETS], lens[MAX_PACKETS], los[MAX_PACKETS], his[MAX_PACKETS];
  for (uint32_t i = 0; i < count; i++) {
    uint8_t form = take8(&r);
    offs[i] = form & 1 ? take16(&r) : take32(&r);
    lens[i] = form & 1 ? take16(&r) : take32(&r);
  }
  uint32_t hi = take32(&r), lo = take32(&r);

  /* the checks alone, also for buffers too large to allocate here (a Buffer may have 4 GiB) */
  static const size_t blens[] = {0x80000000u, 0xffffffffu, (size_t)1 << 33};
  for (int b = 0; b < 3; b++)
    for (uint32_t extra = 0; extra <= KM_TAG_LEN; extra += KM_TAG_LEN)
      if (km_aead_bad_slice(blens[b], offs, lens, count, extra) != naive_bad(blens[b], offs, lens, count, extra))
        FAIL("bounds of a %zu-byte buffer: the check and its naive twin disagree", blens[b]);
  int64_t bad = km_aead_bad_slice(blen, offs, lens, count, KM_TAG_LEN), want = naive_bad(blen, offs, lens, count, KM_TAG_LEN);
  if (bad != want) FAIL("seal bounds: packet %lld refused, naive twin says %lld", (long long)bad, (long long)want);
  if (bad >= 0) return 0;

  uint8_t *buf = malloc(blen ? blen : 1);
  for (size_t i = 0; i < blen; i++) buf[i] = (uint8_t)(i * 7 + 1);
  for (uint32_t i = 0; i < count; i++)
    if (__asan_region_is_poisoned(buf + offs[i], (size_t)lens[i] + KM_TAG_LEN)) FAIL("packet %u and its tag leave the buffer", i);
  uint8_t *plain = exact_copy(buf, blen);
  int disjoint = 1;
  for (uint32_t i = 0; i < count; i++)
    for (uint32_t j = i + 1; j < count; j++)
      if ((uint64_t)offs[i] < (uint64_t)offs[j] + lens[j] + KM_TAG_LEN && (uint64_t)offs[j] < (uint64_t)offs[i] + lens[i] + KM_TAG_LEN) disjoint = 0;

  if (km_aead_seal_batch(ctx, cipher, key, hi, lo, buf, offs, lens, count) != 0) FAIL("seal failed");
  uint32_t olens[MAX_PACKETS];
  for (uint32_t i = 0; i < count; i++) {
    olens[i] = lens[i] + KM_TAG_LEN;
    his[i] = hi + (lo + i < lo), los[i] = lo + i;
  }
  if (km_aead_bad_slice(blen, offs, olens, count, 0) >= 0) FAIL("a sealed packet is out of the open bounds");
  int flip = disjoint && count && blen ? (int)(take8(&r) % (count + 1)) - 1 : -1; /* -1: none */
  if (flip >= 0) buf[offs[flip] + take16(&r) % olens[flip]] ^= 1;
  uint8_t ok[MAX_PACKETS];
  if (km_aead_open_batch(ctx, cipher, key, his, los, buf, offs, olens, count, ok) != 0) FAIL("open: key setup failed");
  if (disjoint)
    for (uint32_t i = 0; i < count; i++) {
      if (ok[i] != ((int)i != flip)) FAIL("packet %u: ok %u after %s", i, ok[i], (int)i == flip ? "a flipped bit" : "sealing");
      if ((int)i != flip && memcmp(buf + offs[i], plain + offs[i], lens[i])) FAIL("packet %u: other plaintext", i);
    }
  free(plain), free(buf);
  return 0;
}
