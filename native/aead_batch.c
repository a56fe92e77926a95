/*
 * The batch loops of the transport AEAD (aead_batch.h): ChaCha20-Poly1305 in place, one key set-up
 * per batch, the 12-byte nonce per packet (WireGuard's 64-bit little-endian counter in nonce
 * bytes 4..11, whitepaper §5.4.6).
 */
#include "aead_batch.h"

#include <limits.h>
#include <string.h>

int64_t km_aead_bad_slice(size_t blen, const uint32_t *offs, const uint32_t *lens, uint32_t count, uint32_t extra) {
  for (uint32_t i = 0; i < count; i++)
    if ((uint64_t)offs[i] + lens[i] + extra > blen || lens[i] > INT_MAX - KM_TAG_LEN) return i;
  return -1;
}

static inline void put_nonce(uint8_t nonce[12], uint32_t hi, uint32_t lo) {
  memset(nonce, 0, 4);
  nonce[4] = (uint8_t)lo, nonce[5] = (uint8_t)(lo >> 8), nonce[6] = (uint8_t)(lo >> 16), nonce[7] = (uint8_t)(lo >> 24);
  nonce[8] = (uint8_t)hi, nonce[9] = (uint8_t)(hi >> 8), nonce[10] = (uint8_t)(hi >> 16), nonce[11] = (uint8_t)(hi >> 24);
}

int km_aead_seal_batch(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const uint8_t key[KM_KEY_LEN], uint32_t hi, uint32_t lo,
                       uint8_t *buf, const uint32_t *offs, const uint32_t *lens, uint32_t count) {
  uint8_t nonce[12];
  if (!EVP_EncryptInit_ex2(ctx, cipher, key, NULL, NULL)) return -1;
  for (uint32_t i = 0; i < count; i++) {
    put_nonce(nonce, hi, lo);
    uint8_t *p = buf + offs[i];
    int n = 0, f = 0;
    if (!EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) || !EVP_EncryptUpdate(ctx, p, &n, p, (int)lens[i]) ||
        !EVP_EncryptFinal_ex(ctx, p + n, &f) || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, KM_TAG_LEN, p + lens[i]))
      return -2;
    if (++lo == 0) hi++;
  }
  return 0;
}

int km_aead_open_batch(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, const uint8_t key[KM_KEY_LEN], const uint32_t *his,
                       const uint32_t *los, uint8_t *buf, const uint32_t *offs, const uint32_t *lens, uint32_t count, uint8_t *ok) {
  uint8_t nonce[12];
  if (!EVP_DecryptInit_ex2(ctx, cipher, key, NULL, NULL)) return -1;
  for (uint32_t i = 0; i < count; i++) {
    ok[i] = 0;
    if (lens[i] < KM_TAG_LEN) continue;
    int clen = (int)(lens[i] - KM_TAG_LEN), n = 0, f = 0;
    uint8_t *p = buf + offs[i];
    put_nonce(nonce, his[i], los[i]);
    if (!EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, KM_TAG_LEN, p + clen) ||
        !EVP_DecryptUpdate(ctx, p, &n, p, clen))
      continue;
    ok[i] = EVP_DecryptFinal_ex(ctx, p + n, &f) > 0;
  }
  return 0;
}
