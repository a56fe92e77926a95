/*
 * The in-place transport AEAD of aeadSealBatch / aeadOpenBatch (aead.c), without N-API, so that
 * fuzz/ drives the same bounds checks and loops with hostile offsets and lengths.
 */
#ifndef KEYMESH_AEAD_BATCH_H
#define KEYMESH_AEAD_BATCH_H
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#define KM_KEY_LEN 32
#define KM_TAG_LEN 16

/*
 * The first packet i of count whose bytes buf[offs[i] .. +lens[i] + extra] do not lie inside blen
 * bytes, or whose length with its tag is no int (OpenSSL's lengths are; a negative one would
 * point the tag before the packet); -1 when every packet is usable.
 * extra: KM_TAG_LEN for sealing (the tag is written after the plaintext), 0 for opening.
 */
int64_t km_aead_bad_slice(size_t blen, const uint32_t *offs, const uint32_t *lens, uint32_t count, uint32_t extra);

/* Seal packet i in place, its tag after it, with counters consecutive from (hi, lo); the slices
 * must have passed km_aead_bad_slice(…, KM_TAG_LEN). 0; -1 when the key setup failed, -2 a packet. */
int km_aead_seal_batch(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const uint8_t key[KM_KEY_LEN], uint32_t hi, uint32_t lo,
                       uint8_t *buf, const uint32_t *offs, const uint32_t *lens, uint32_t count);

/* Open packet i (ciphertext + tag) in place with counter (his[i], los[i]): ok[i] = 1 when the tag
 * verified. The slices must have passed km_aead_bad_slice(…, 0). 0, or -1 when the key setup failed. */
int km_aead_open_batch(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const uint8_t key[KM_KEY_LEN], const uint32_t *his,
                       const uint32_t *los, uint8_t *buf, const uint32_t *offs, const uint32_t *lens, uint32_t count, uint8_t *ok);

#endif
