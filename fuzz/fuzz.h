/*
 * Shared by the libFuzzer harnesses in this folder (native-notes/fuzzing.md): reading a fuzz input as
 * fields, copying bytes into allocations of exactly their size (so AddressSanitizer sees the first
 * byte past the end), control-message buffers, and a naive RFC 1071 checker to hold the fast
 * checksum code to. A harness that finds its contract broken calls FAIL, which aborts: libFuzzer
 * then saves the input as a crash.
 */
#ifndef KEYMESH_FUZZ_H
#define KEYMESH_FUZZ_H
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define FAIL(...)                                          \
  do {                                                     \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);        \
    fprintf(stderr, __VA_ARGS__);                          \
    fputc('\n', stderr);                                   \
    abort();                                               \
  } while (0)

/* The input, taken field by field; past its end every field reads as zero. */
typedef struct {
  const uint8_t *p;
  size_t n;
} reader;

static inline uint8_t take8(reader *r) {
  if (!r->n) return 0;
  r->n--;
  return *r->p++;
}
static inline uint16_t take16(reader *r) { return (uint16_t)(take8(r) << 8 | take8(r)); }
static inline uint32_t take32(reader *r) { return (uint32_t)take16(r) << 16 | take16(r); }
/* Up to n bytes (fewer at the end of the input); *got says how many. */
static inline const uint8_t *take(reader *r, size_t n, size_t *got) {
  const uint8_t *p = r->p;
  *got = n < r->n ? n : r->n;
  r->p += *got, r->n -= *got;
  return p;
}

/* A heap copy of exactly n bytes (malloc(0) aside: one byte then, never read). */
static inline uint8_t *exact_copy(const uint8_t *p, size_t n) {
  uint8_t *c = malloc(n ? n : 1);
  if (!c) abort();
  if (n) memcpy(c, p, n);
  return c;
}

/*
 * Control messages for a msghdr, in a buffer of exactly their length. Raw (mode bit 0 clear):
 * the next bytes as they are, any cmsg_len at all. Built (bit set): up to 4 messages, each a
 * level/type chosen from `kinds` (or any), then a data length and that many bytes, laid out with
 * CMSG_SPACE as the kernel does; a message may be cut short, as put_cmsg does under MSG_CTRUNC.
 */
typedef struct {
  int level, type;
} cmsg_kind;

static inline uint8_t *fuzz_control(reader *r, const cmsg_kind *kinds, int nkinds, size_t *len) {
  uint8_t mode = take8(r);
  if (!(mode & 1)) {
    size_t n = take8(r) % 200, got;
    const uint8_t *p = take(r, n, &got);
    *len = got;
    return exact_copy(p, got);
  }
  uint8_t tmp[1024];
  size_t at = 0;
  int count = 1 + (mode >> 1) % 4;
  for (int i = 0; i < count; i++) {
    uint8_t pick = take8(r);
    int level, type;
    if (pick % (nkinds + 1) < nkinds) level = kinds[pick % (nkinds + 1)].level, type = kinds[pick % (nkinds + 1)].type;
    else level = take8(r), type = take8(r);
    size_t dlen = take8(r) % 96, got;
    const uint8_t *d = take(r, dlen, &got);
    if (at + CMSG_SPACE(dlen) > sizeof tmp) break;
    struct cmsghdr c;
    memset(&c, 0, sizeof c);
    c.cmsg_level = level, c.cmsg_type = type, c.cmsg_len = CMSG_LEN(dlen);
    memset(tmp + at, 0, CMSG_SPACE(dlen));
    memcpy(tmp + at, &c, sizeof c);
    memcpy(tmp + at + CMSG_LEN(0), d, got);
    at += CMSG_SPACE(dlen);
  }
  if (mode & 0x80) at -= take8(r) % (at + 1); /* cut: the last cmsg_len says more than there is */
  *len = at;
  return exact_copy(tmp, at);
}

/* ───────────── naive checksums (RFC 1071 §4.1, word by word) ───────────── */

static inline uint32_t naive_sum(const uint8_t *p, size_t n, uint32_t s) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}

/* Is this a plain IPv4/IPv6 TCP or UDP packet whose header checksum (IPv4) and TCP/UDP checksum
 * verify? *iphlen and *l4hlen are set when it parses. */
static inline int naive_packet_ok(const uint8_t *p, size_t len, uint32_t *iphlen, int *proto) {
  if (len < 20) return 0;
  uint32_t ih, l4len;
  uint32_t s = 0;
  if (p[0] >> 4 == 4) {
    ih = (uint32_t)(p[0] & 15) * 4;
    if (ih < 20 || ih > len || naive_sum(p, ih, 0) != 0xffff) return 0;
    *proto = p[9];
    s = naive_sum(p + 12, 8, 0);
  } else if (p[0] >> 4 == 6) {
    ih = 40;
    if (len < 40) return 0;
    *proto = p[6];
    s = naive_sum(p + 8, 32, 0);
  } else {
    return 0;
  }
  l4len = (uint32_t)len - ih;
  s += (uint32_t)*proto + (l4len >> 16) + (l4len & 0xffff);
  *iphlen = ih;
  if (*proto != 6 && *proto != 17) return 0;
  return naive_sum(p + ih, l4len, s) == 0xffff;
}

/* Where the TCP header is (and its length) if the addon takes p for TCP: IPv4 (any IHL) or IPv6
 * without extension headers, a whole TCP header; 0 otherwise. */
static inline int naive_tcp(const uint8_t *p, size_t len, uint32_t *iph, uint32_t *tcph) {
  if (len < 20) return 0;
  int v6 = p[0] >> 4 == 6;
  if (p[0] >> 4 == 4) *iph = (uint32_t)(p[0] & 15) * 4;
  else if (v6 && len >= 40) *iph = 40;
  else return 0;
  if (*iph < 20 || *iph > len || p[v6 ? 6 : 9] != 6 || len < *iph + 20) return 0;
  *tcph = (uint32_t)(p[*iph + 12] >> 4) * 4;
  return *tcph >= 20 && *iph + *tcph <= len;
}

/* Make the IPv4 header checksum and the TCP/UDP checksum of p right, where its headers are whole. */
static inline void naive_fix(uint8_t *p, size_t len) {
  if (len < 20) return;
  uint32_t ih, s;
  int proto;
  if (p[0] >> 4 == 4) {
    ih = (uint32_t)(p[0] & 15) * 4;
    if (ih < 20 || ih > len) return;
    p[10] = p[11] = 0;
    uint16_t c = (uint16_t)~naive_sum(p, ih, 0);
    p[10] = (uint8_t)(c >> 8), p[11] = (uint8_t)c;
    proto = p[9];
    s = naive_sum(p + 12, 8, 0);
  } else if (p[0] >> 4 == 6 && len >= 40) {
    ih = 40, proto = p[6];
    s = naive_sum(p + 8, 32, 0);
  } else {
    return;
  }
  uint32_t at = ih + (proto == 6 ? 16 : 6), l4len = (uint32_t)len - ih;
  if ((proto != 6 && proto != 17) || at + 2 > len) return;
  p[at] = p[at + 1] = 0;
  uint16_t c = (uint16_t)~naive_sum(p + ih, l4len, s + (uint32_t)proto + (l4len >> 16) + (l4len & 0xffff));
  p[at] = (uint8_t)(c >> 8), p[at + 1] = (uint8_t)c;
}

#endif
