/*
 * TUN and UDP segmentation offloads (issue 5; see native-notes/ "Offloads").
 *
 * Same batch contracts as keymesh.c's tunReadBatch / tunWriteBatch / udpRecvBatch /
 * udpSendBatch, with more packets per syscall:
 *
 *   tunReadBatchVnet   read() virtio_net_hdr + (super-)packet; TSO/USO super-packets are split
 *                      here into gso_size segments with every header field and checksum fixed;
 *                      NEEDS_CSUM checksums of single packets are completed. Segments that do not
 *                      fit stay pending (per fd) for the next call.
 *   tunWriteBatchVnet  coalesces runs of same-flow TCP segments into one super-packet with a
 *                      GSO virtio_net_hdr (GRO), one writev() each; everything else goes out
 *                      alone behind a zero header.
 *   udpSendBatchGso    sendmmsg of groups: consecutive datagrams to the same destination and
 *                      local end, of equal length (the last may be shorter), go as one message
 *                      with a UDP_SEGMENT cmsg. If the kernel refuses, the group is resent one
 *                      datagram at a time and, on EIO/EOPNOTSUPP, GSO stays off for that socket.
 *   udpRecvBatchGro    recvmmsg on a UDP_GRO socket; a coalesced receive is cut back into its
 *                      datagrams by the gso_size in its cmsg; leftovers stay pending (per fd).
 *
 * The packet logic (split, checksum completion, coalescing plan) is pure and is exported for
 * tests as offloadSplit / offloadCoalesce. Bad input is never trusted: it is counted and dropped.
 */
#include "common.h"

#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define VNET_LEN 10             /* sizeof(struct virtio_net_hdr): TUNSETVNETHDRSZ is set to this */
#define MAX_BATCH KM_MAX_BATCH
#define MAX_SLOT KM_MAX_SLOT
#define STAGE (65536 + 256)     /* one TUN read: the largest super-packet the kernel hands a TUN */
#define MAX_COALESCE 64         /* segments per written super-packet */
#define MAX_BUCKETS 8           /* TCP flows coalesced at once within one write batch */
#define UDP_MAX_GSO_SEGS 64     /* UDP_SEGMENT: at most 64 segments per send (older kernels' limit) */
#define UDP_MAX_GSO_BYTES 65507 /* and at most this many payload bytes (IPv4's UDP payload limit) */
#define URX_N 16                /* coalesced receives per recvmmsg */
#define URX_SIZE 65536          /* bytes per coalesced receive */
#define MAX_FDS 64

static struct {
  double tun_super_read;     /* GSO super-packets read from the TUN device and split */
  double tun_segments_read;  /* segments they became */
  double tun_csum_completed; /* single packets whose NEEDS_CSUM checksum was completed */
  double tun_bad;            /* unusable virtio header / packet combinations, dropped */
  double tun_too_big;        /* packets or segments larger than the caller's slot, dropped */
  double tun_super_written;  /* coalesced super-packets written */
  double tun_segments_written; /* segments they carried */
  double tun_write_errors;   /* writes the kernel refused (skipped) */
  double udp_gso_sends;      /* messages sent with UDP_SEGMENT */
  double udp_gso_segments;   /* datagrams they carried */
  double udp_gso_fallbacks;  /* groups resent one by one after the kernel refused UDP_SEGMENT */
  double udp_gro_receives;   /* receives that carried more than one datagram */
  double udp_gro_segments;   /* datagrams they carried */
} ctr;

/* ───────────────────────── checksums (RFC 1071) ───────────────────────── */

/*
 * One's complement sum of memory-order 16-bit words, accumulated 64 bits at a time with the
 * end-around carry. Folded and stored back in memory order, it is the Internet checksum whatever
 * the host's byte order. Only the last chunk of a summed region may have an odd length.
 */
static uint64_t csum_add(const uint8_t *p, size_t n, uint64_t sum) {
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    sum += w;
    sum += sum < w;
    p += 8, n -= 8;
  }
  if (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    sum += w;
    sum += sum < w;
    p += 4, n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    sum += w;
    sum += sum < w;
    p += 2, n -= 2;
  }
  if (n) {
    uint16_t w = 0;
    memcpy(&w, p, 1);
    sum += w;
    sum += sum < w;
  }
  return sum;
}

static uint16_t csum_fold(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = v >> 8, p[1] = v & 0xff; }
static inline void wr32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }

/* Where the headers are. */
typedef struct {
  int v6;
  uint32_t iphlen; /* IP header */
  int proto;       /* 6 TCP, 17 UDP, else other */
  uint32_t l4hlen; /* TCP header with options, or 8 for UDP; 0 for other protocols */
} layout;

static int parse_layout(const uint8_t *p, size_t len, layout *L) {
  if (len < 20) return -1;
  int ver = p[0] >> 4;
  if (ver == 4) {
    uint32_t ihl = (uint32_t)(p[0] & 15) * 4;
    if (ihl < 20 || ihl > len) return -1;
    L->v6 = 0, L->iphlen = ihl, L->proto = p[9];
  } else if (ver == 6) {
    if (len < 40) return -1;
    L->v6 = 1, L->iphlen = 40, L->proto = p[6]; /* extension headers: "other" */
  } else {
    return -1;
  }
  L->l4hlen = 0;
  if (L->proto == 6) {
    if (len < L->iphlen + 20) return -1;
    uint32_t doff = (uint32_t)(p[L->iphlen + 12] >> 4) * 4;
    if (doff < 20 || L->iphlen + doff > len) return -1;
    L->l4hlen = doff;
  } else if (L->proto == 17) {
    if (len < L->iphlen + 8) return -1;
    L->l4hlen = 8;
  }
  return 0;
}

/* The pseudo-header sum for an L4 segment of l4len bytes. */
static uint64_t pseudo_sum(const uint8_t *p, const layout *L, uint32_t l4len) {
  uint64_t s = L->v6 ? csum_add(p + 8, 32, 0) : csum_add(p + 12, 8, 0);
  uint8_t tail[4] = {0, (uint8_t)L->proto, (uint8_t)(l4len >> 8), (uint8_t)l4len};
  if (l4len > 0xffff) { /* IPv6 jumbo lengths never reach here (≤ 64 KiB), but stay correct */
    uint8_t t6[8] = {(uint8_t)(l4len >> 24), (uint8_t)(l4len >> 16), (uint8_t)(l4len >> 8), (uint8_t)l4len, 0, 0, 0, (uint8_t)L->proto};
    return csum_add(t6, 8, s);
  }
  return csum_add(tail, 4, s);
}

static void ipv4_header_checksum(uint8_t *p, uint32_t ihl) {
  p[10] = p[11] = 0;
  uint16_t c = (uint16_t)~csum_fold(csum_add(p, ihl, 0));
  memcpy(p + 10, &c, 2);
}

/* Full TCP/UDP checksum of a packet whose headers are described by L. */
static void l4_checksum(uint8_t *p, const layout *L, uint32_t len) {
  uint32_t l4len = len - L->iphlen;
  uint32_t at = L->iphlen + (L->proto == 6 ? 16 : 6);
  p[at] = p[at + 1] = 0;
  uint16_t c = (uint16_t)~csum_fold(csum_add(p + L->iphlen, l4len, pseudo_sum(p, L, l4len)));
  if (L->proto == 17 && c == 0) c = 0xffff; /* 0 would mean "no checksum" */
  memcpy(p + at, &c, 2);
}

static int l4_checksum_ok(const uint8_t *p, const layout *L, uint32_t len) {
  uint32_t l4len = len - L->iphlen;
  return csum_fold(csum_add(p + L->iphlen, l4len, pseudo_sum(p, L, l4len))) == 0xffff;
}

/* ───────────────────────── virtio_net_hdr ───────────────────────── */

typedef struct {
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset;
} vhdr;

/* TUN speaks the legacy virtio header in the host's byte order unless TUNSETVNETBE/LE say otherwise. */
static void vhdr_read(const uint8_t *b, vhdr *h) {
  h->flags = b[0], h->gso_type = b[1];
  memcpy(&h->hdr_len, b + 2, 2);
  memcpy(&h->gso_size, b + 4, 2);
  memcpy(&h->csum_start, b + 6, 2);
  memcpy(&h->csum_offset, b + 8, 2);
}

static void vhdr_write(uint8_t *b, const vhdr *h) {
  b[0] = h->flags, b[1] = h->gso_type;
  memcpy(b + 2, &h->hdr_len, 2);
  memcpy(b + 4, &h->gso_size, 2);
  memcpy(b + 6, &h->csum_start, 2);
  memcpy(b + 8, &h->csum_offset, 2);
}

/*
 * Complete the checksum of a single packet the kernel handed over with NEEDS_CSUM: sum from
 * csum_start to the end (the field holds the pseudo-header sum) and store it at csum_offset.
 */
static int complete_csum(const vhdr *h, uint8_t *p, size_t len) {
  if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) return 0;
  size_t st = h->csum_start, at = st + h->csum_offset;
  if ((h->csum_offset & 1) || st >= len || at + 2 > len) return -1;
  uint16_t c = (uint16_t)~csum_fold(csum_add(p + st, len - st, 0));
  if (c == 0) c = 0xffff;
  memcpy(p + at, &c, 2);
  ctr.tun_csum_completed++;
  return 0;
}

/*
 * Split a GSO super-packet into segments from index `from` on, into slots of `slot` bytes.
 * Returns how many were written (≤ room); *total is the number of segments it makes in all.
 * -1: not a super-packet we can split (bad header, protocol mismatch, segment larger than a slot).
 */
static int split(const vhdr *h, const uint8_t *p, size_t len, int from, uint8_t *out, size_t slot, uint32_t *lens, int room,
                 int *total) {
  layout L;
  if (parse_layout(p, len, &L) < 0) return -1;
  int type = h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (type == VIRTIO_NET_HDR_GSO_TCPV4) {
    if (L.v6 || L.proto != 6) return -1;
  } else if (type == VIRTIO_NET_HDR_GSO_TCPV6) {
    if (!L.v6 || L.proto != 6) return -1;
  } else if (type == VIRTIO_NET_HDR_GSO_UDP_L4) {
    if (L.proto != 17) return -1;
  } else {
    return -1; /* UFO (IP fragmentation) was never enabled; anything else is unknown */
  }
  if (!L.v6 && (rd16(p + 6) & 0x3fff)) return -1; /* a fragment cannot be a super-packet */
  uint32_t hlen = L.iphlen + L.l4hlen, gso = h->gso_size;
  if (gso == 0 || len <= hlen || hlen + gso > slot) return -1;
  uint32_t payload = (uint32_t)len - hlen;
  int n = (int)((payload + gso - 1) / gso);
  *total = n;
  int w = 0;
  uint16_t id = L.v6 ? 0 : rd16(p + 4);
  uint32_t seq = L.proto == 6 ? rd32(p + L.iphlen + 4) : 0;
  for (int i = from; i < n && w < room; i++, w++) {
    uint32_t off = (uint32_t)i * gso, plen = payload - off < gso ? payload - off : gso, seglen = hlen + plen;
    uint8_t *s = out + (size_t)w * slot;
    memcpy(s, p, hlen);
    memcpy(s + hlen, p + hlen + off, plen);
    if (L.v6) {
      wr16(s + 4, (uint16_t)(seglen - 40));
    } else {
      wr16(s + 2, (uint16_t)seglen);
      wr16(s + 4, (uint16_t)(id + i));
      ipv4_header_checksum(s, L.iphlen);
    }
    uint8_t *l4 = s + L.iphlen;
    if (L.proto == 6) {
      wr32(l4 + 4, seq + off);
      if (i != 0) l4[13] &= (uint8_t)~0x80;          /* CWR only on the first segment */
      if (i != n - 1) l4[13] &= (uint8_t)~(0x01 | 0x08); /* FIN and PSH only on the last */
    } else {
      wr16(l4 + 4, (uint16_t)(8 + plen));
    }
    l4_checksum(s, &L, seglen);
    lens[w] = seglen;
  }
  return w;
}

/* ───────────────────────── GRO plan (TCP coalescing) ───────────────────────── */

typedef struct {
  const uint8_t *p;
  uint32_t len, plen, seq;
  layout L;
} tcpseg;

/* A TCP segment that may be coalesced: plain IPv4 (no options, not a fragment, valid header
 * checksum) or IPv6 without
 * extension headers, exact lengths, payload, ACK and no SYN/RST/URG/FIN, and a valid checksum (a
 * coalesced super-packet's checksum is trusted by the receiving stack, so a bad one must not
 * hide inside it). */
static int tcp_candidate(const uint8_t *p, uint32_t len, tcpseg *t) {
  if (parse_layout(p, len, &t->L) < 0 || t->L.proto != 6) return 0;
  if (t->L.v6) {
    if ((uint32_t)rd16(p + 4) + 40 != len) return 0;
  } else {
    if (t->L.iphlen != 20 || rd16(p + 2) != len || (rd16(p + 6) & 0x3fff)) return 0;
    if (csum_fold(csum_add(p, 20, 0)) != 0xffff) return 0; /* a bad header must not be "fixed" by merging */
  }
  uint32_t hlen = t->L.iphlen + t->L.l4hlen;
  if (len <= hlen) return 0;
  uint8_t fl = p[t->L.iphlen + 13];
  if (!(fl & 0x10) || (fl & (0x01 | 0x02 | 0x04 | 0x20))) return 0;
  if (!l4_checksum_ok(p, &t->L, len)) return 0;
  t->p = p, t->len = len, t->plen = len - hlen, t->seq = rd32(p + t->L.iphlen + 4);
  return 1;
}

/* Any TCP packet's flow (addresses and ports), for ordering within a flow. */
static int same_flow(const uint8_t *a, const layout *La, const uint8_t *b, const layout *Lb) {
  if (La->v6 != Lb->v6) return 0;
  if (La->v6 ? memcmp(a + 8, b + 8, 32) : memcmp(a + 12, b + 12, 8)) return 0;
  return memcmp(a + La->iphlen, b + Lb->iphlen, 4) == 0;
}

typedef struct {
  int used, closed, n;
  int idx[MAX_COALESCE];
  tcpseg first, last;
  uint32_t total, next_seq;
  int order;
} bucket;

static int can_append(const bucket *b, const tcpseg *q) {
  const tcpseg *f = &b->first, *l = &b->last;
  if (b->closed || b->n >= MAX_COALESCE) return 0;
  if (!same_flow(f->p, &f->L, q->p, &q->L)) return 0;
  const uint8_t *a = f->p, *c = q->p;
  if (f->L.v6) {
    if (memcmp(a, c, 4) || a[7] != c[7]) return 0; /* traffic class, flow label, hop limit */
  } else {
    if (a[1] != c[1] || a[6] != c[6] || a[8] != c[8]) return 0; /* TOS, DF, TTL */
    if (rd16(c + 4) != (uint16_t)(rd16(a + 4) + b->n)) return 0;  /* IDs count up, as segmentation will make them */
  }
  if (f->L.l4hlen != q->L.l4hlen) return 0;
  const uint8_t *ta = a + f->L.iphlen, *tc = c + q->L.iphlen;
  if (memcmp(ta + 8, tc + 8, 4)) return 0;                          /* same ACK */
  if (tc[13] & 0x80) return 0;                                        /* CWR starts a new one */
  if ((ta[13] ^ tc[13]) & ~(0x80 | 0x08)) return 0;                  /* other flags equal */
  if (memcmp(ta + 14, tc + 14, 2)) return 0;                          /* same window */
  if (memcmp(ta + 20, tc + 20, f->L.l4hlen - 20)) return 0;           /* same options */
  if (l->p[l->L.iphlen + 13] & 0x08) return 0;                        /* nothing after a PSH */
  if (q->seq != b->next_seq) return 0;                                /* contiguous */
  if (q->plen > f->plen || l->plen != f->plen) return 0;              /* gso_size; short one ends it */
  if (b->total + q->plen > 65535) return 0;
  return 1;
}

/*
 * Emission: the iovec of one write — the virtio header, then the packet (alone), or the
 * rewritten headers of the first segment followed by every segment's payload (coalesced).
 * Returns -1 to stop the batch (EAGAIN).
 */
/* idx: for a coalesced write, the indexes of its segments in the batch (else NULL). */
typedef int (*emit_fn)(void *ctx, struct iovec *iov, int iovcnt, int packets, const int *idx);

static int emit_single(const uint8_t *p, uint32_t len, emit_fn emit, void *ctx) {
  static const uint8_t zero[VNET_LEN];
  struct iovec iov[2] = {{(void *)zero, VNET_LEN}, {(void *)p, len}};
  return emit(ctx, iov, 2, 1, NULL);
}

/* A batch being coalesced: the packets (by index) and the open buckets. */
typedef struct {
  const uint8_t *buf;
  const uint32_t *offs, *lens;
  bucket b[MAX_BUCKETS];
  int order;
} plan;

static int flush_b(plan *pl, bucket *b, emit_fn emit, void *ctx) {
  if (!b->used) return 0;
  if (b->n == 1) {
    b->used = 0;
    return emit_single(b->first.p, b->first.len, emit, ctx);
  }
  b->used = 0;
  const tcpseg *f = &b->first;
  uint8_t vb[VNET_LEN], hdr[120];
  uint32_t hlen = f->L.iphlen + f->L.l4hlen;
  memcpy(hdr, f->p, hlen);
  if (f->L.v6) {
    wr16(hdr + 4, (uint16_t)(b->total - 40));
  } else {
    wr16(hdr + 2, (uint16_t)b->total);
    ipv4_header_checksum(hdr, 20);
  }
  uint8_t *th = hdr + f->L.iphlen;
  th[13] |= b->last.p[b->last.L.iphlen + 13] & 0x08;
  uint16_t ps = csum_fold(pseudo_sum(hdr, &f->L, b->total - f->L.iphlen));
  memcpy(th + 16, &ps, 2);
  vhdr h = {VIRTIO_NET_HDR_F_NEEDS_CSUM,
            (uint8_t)((f->L.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4) | (th[13] & 0x80 ? VIRTIO_NET_HDR_GSO_ECN : 0)),
            (uint16_t)hlen, (uint16_t)f->plen, (uint16_t)f->L.iphlen, 16};
  vhdr_write(vb, &h);
  struct iovec iov[2 + MAX_COALESCE];
  iov[0] = (struct iovec){vb, VNET_LEN};
  iov[1] = (struct iovec){hdr, hlen};
  for (int k = 0; k < b->n; k++) {
    const uint8_t *p = pl->buf + pl->offs[b->idx[k]];
    iov[2 + k] = (struct iovec){(void *)(p + hlen), pl->lens[b->idx[k]] - hlen};
  }
  return emit(ctx, iov, 2 + b->n, b->n, b->idx);
}

/* Oldest first, so flows keep roughly the order they arrived in. */
static int flush_all(plan *pl, emit_fn emit, void *ctx) {
  for (;;) {
    bucket *o = NULL;
    for (int i = 0; i < MAX_BUCKETS; i++)
      if (pl->b[i].used && (!o || pl->b[i].order < o->order)) o = &pl->b[i];
    if (!o) return 0;
    if (flush_b(pl, o, emit, ctx) < 0) return -1;
  }
}

/*
 * Walk a batch: TCP segments of one flow that can be coalesced gather in a bucket; a packet of
 * that flow that cannot join flushes the bucket first (order within a flow is kept); other
 * packets go out as they come. Returns -1 when emit asked to stop (EAGAIN).
 */
static int coalesce(const uint8_t *buf, const uint32_t *offs, const uint32_t *lens, int count, emit_fn emit, void *ctx) {
  plan pl;
  memset(&pl, 0, sizeof pl);
  pl.buf = buf, pl.offs = offs, pl.lens = lens;
  for (int i = 0; i < count; i++) {
    const uint8_t *p = buf + offs[i];
    uint32_t len = lens[i];
    tcpseg q;
    int cand = tcp_candidate(p, len, &q);
    layout Lq;
    int is_tcp = cand ? (Lq = q.L, 1) : (parse_layout(p, len, &Lq) == 0 && Lq.proto == 6);
    bucket *b = NULL;
    if (is_tcp)
      for (int k = 0; k < MAX_BUCKETS; k++)
        if (pl.b[k].used && same_flow(pl.b[k].first.p, &pl.b[k].first.L, p, &Lq)) b = &pl.b[k];
    if (cand) {
      if (b && can_append(b, &q)) {
        b->idx[b->n++] = i;
        b->last = q;
        b->total += q.plen;
        b->next_seq = q.seq + q.plen;
        if (q.plen < b->first.plen || (p[q.L.iphlen + 13] & 0x08)) b->closed = 1;
        continue;
      }
      if (b && flush_b(&pl, b, emit, ctx) < 0) return -1;
      b = NULL;
      for (int k = 0; k < MAX_BUCKETS && !b; k++)
        if (!pl.b[k].used) b = &pl.b[k];
      if (!b) { /* all in use: the oldest goes out */
        for (int k = 0; k < MAX_BUCKETS; k++)
          if (!b || pl.b[k].order < b->order) b = &pl.b[k];
        if (flush_b(&pl, b, emit, ctx) < 0) return -1;
      }
      memset(b, 0, sizeof *b);
      b->used = 1, b->n = 1, b->idx[0] = i, b->first = b->last = q, b->order = pl.order++;
      b->total = q.len, b->next_seq = q.seq + q.plen;
      if (p[q.L.iphlen + 13] & 0x08) b->closed = 1;
      continue;
    }
    if (b && flush_b(&pl, b, emit, ctx) < 0) return -1;
    if (emit_single(p, len, emit, ctx) < 0) return -1;
  }
  return flush_all(&pl, emit, ctx);
}

/* ───────────────────────── per-fd state ───────────────────────── */

typedef struct {
  int fd;
  /* TUN read: a super-packet whose later segments did not fit the last call's slots */
  uint8_t *tstage;
  uint32_t tlen;
  vhdr th;
  int tnext, ttotal;
  /* UDP GRO receive: coalesced receives not yet handed out */
  uint8_t *ustage;
  int un, ucur;
  uint32_t uoff;
  uint32_t ulen[URX_N];
  uint16_t ugso[URX_N];
  uint8_t uaddr[URX_N][16], uloc[URX_N][16];
  uint16_t uport[URX_N];
  uint32_t uif[URX_N];
  /* UDP GSO send: the kernel refused UDP_SEGMENT on this socket */
  int gso_off;
  /* UDP send: the socket's address family, learnt once (0: not yet) */
  int family;
} fdstate;

static fdstate *g_fds[MAX_FDS];

static fdstate *state_for(int fd) {
  fdstate *freeslot = NULL;
  for (int i = 0; i < MAX_FDS; i++) {
    if (g_fds[i] && g_fds[i]->fd == fd) return g_fds[i];
  }
  for (int i = 0; i < MAX_FDS && !freeslot; i++) {
    if (!g_fds[i]) {
      g_fds[i] = calloc(1, sizeof(fdstate));
      if (!g_fds[i]) return NULL;
      g_fds[i]->fd = fd;
      freeslot = g_fds[i];
    }
  }
  return freeslot;
}

/* closeFd: whatever was pending on this fd number belongs to the closed file. */
void km_offload_forget(int fd) {
  for (int i = 0; i < MAX_FDS; i++) {
    if (g_fds[i] && g_fds[i]->fd == fd) {
      free(g_fds[i]->tstage);
      free(g_fds[i]->ustage);
      free(g_fds[i]);
      g_fds[i] = NULL;
    }
  }
}

/* ───────────────────────── TUN setup ───────────────────────── */

/*
 * After TUNSETIFF with IFF_VNET_HDR: fix the header size and ask for offloads, dropping the
 * ones the kernel refuses step by step. Returns the TUN_F_* flags in effect (0: none, the
 * virtio header is still there and every packet is then a plain one).
 */
unsigned km_offload_tun_setup(int fd) {
  int sz = VNET_LEN;
  if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) return 0;
  static const unsigned tries[] = {
      TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6,
      TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
      TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
      TUN_F_CSUM,
  };
  for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++)
    if (ioctl(fd, TUNSETOFFLOAD, tries[i]) == 0) return tries[i];
  return 0;
}

/* ───────────────────────── TUN read / write ───────────────────────── */

/* tunReadBatchVnet(fd, buf, slotSize, lengths, max) → count */
static napi_value tun_read_vnet(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  km_recv_args args;
  if (!km_parse_slot_args(env, argv, argc, 4, "tunReadBatchVnet", &args)) return NULL;
  const int64_t fd = args.fd, slot = args.slot, max = args.max;
  uint8_t *buf = args.buf;
  uint32_t *lens = args.lens;
  fdstate *st = state_for((int)fd);
  if (!st) return throw_code(env, "ENOMEM", "tunReadBatchVnet: out of memory");
  if (!st->tstage && !(st->tstage = malloc(STAGE))) return throw_code(env, "ENOMEM", "tunReadBatchVnet: out of memory");
  int n = 0;
  while (n < max) {
    if (st->tnext < st->ttotal) { /* segments left over from the last call first */
      int total = 0;
      int w = split(&st->th, st->tstage + VNET_LEN, st->tlen, st->tnext, buf + (size_t)n * slot, (size_t)slot, lens + n, (int)max - n, &total);
      if (w < 0) { /* cannot happen: it split before; drop the rest */
        st->tnext = st->ttotal = 0;
        continue;
      }
      n += w, st->tnext += w, ctr.tun_segments_read += w;
      if (st->tnext >= st->ttotal) st->tnext = st->ttotal = 0;
      continue;
    }
    ssize_t r = read((int)fd, st->tstage, STAGE);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (r == 0) break;
    if (r < VNET_LEN + 1 || r >= STAGE) {
      ctr.tun_bad++;
      continue;
    }
    vhdr h;
    vhdr_read(st->tstage, &h);
    uint8_t *p = st->tstage + VNET_LEN;
    uint32_t len = (uint32_t)r - VNET_LEN;
    if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
      if (complete_csum(&h, p, len) < 0) {
        ctr.tun_bad++;
        continue;
      }
      if (len > slot) {
        ctr.tun_too_big++;
        continue;
      }
      memcpy(buf + (size_t)n * slot, p, len);
      lens[n++] = len;
      continue;
    }
    int total = 0;
    int w = split(&h, p, len, 0, buf + (size_t)n * slot, (size_t)slot, lens + n, (int)max - n, &total);
    if (w < 0) {
      ctr.tun_bad++;
      continue;
    }
    ctr.tun_super_read++, ctr.tun_segments_read += w;
    n += w;
    if (w < total) st->th = h, st->tlen = len, st->tnext = w, st->ttotal = total;
  }
  return make_int(env, n);
}

typedef struct {
  int fd;
  int64_t done;
  int stop;
  const uint8_t *buf;
  const uint32_t *offs, *lens;
} write_ctx;

static int emit_write(void *c, struct iovec *iov, int iovcnt, int packets, const int *idx) {
  write_ctx *w = c;
  if (w->stop) return -1;
  ssize_t r;
  do r = writev(w->fd, iov, iovcnt);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN) {
      w->stop = 1;
      return -1;
    }
    ctr.tun_write_errors++;
    if (!idx) return 0;
    /* The kernel refused the super-packet: its segments are still good packets, one by one. */
    for (int k = 0; k < packets; k++) {
      static const uint8_t zero[VNET_LEN];
      struct iovec one[2] = {{(void *)zero, VNET_LEN}, {(void *)(w->buf + w->offs[idx[k]]), w->lens[idx[k]]}};
      do r = writev(w->fd, one, 2);
      while (r < 0 && errno == EINTR);
      if (r >= 0) w->done++;
      else if (errno == EAGAIN) return w->stop = 1, -1;
      else ctr.tun_write_errors++;
    }
    return 0;
  }
  w->done += packets;
  if (idx) ctr.tun_super_written++, ctr.tun_segments_written += packets;
  return 0;
}

/* tunWriteBatchVnet(fd, buf, offsets, lengths, count) → packets written */
static napi_value tun_write_vnet(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  km_packet_args p;
  if (!km_parse_packet_args(env, argv, argc, 4, 0, "tunWriteBatchVnet", &p)) return NULL;
  const int64_t fd = p.fd, count = p.count;
  uint8_t *buf = p.buf;
  uint32_t *offs = p.offs, *lens = p.lens;
  write_ctx w = {(int)fd, 0, 0, buf, offs, lens};
  coalesce(buf, offs, lens, (int)count, emit_write, &w);
  return make_int(env, w.done);
}

/* ───────────────────────── UDP ───────────────────────── */

/* udpOffload(fd) → { gso, gro }: UDP_SEGMENT known to the kernel; UDP_GRO turned on. */
static napi_value udp_offload(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return throw_code(env, "EINVAL", "udpOffload(fd)");
  int zero = 0, one = 1;
  /* A per-socket default segment size of 0 means "off": this only asks whether the option exists. */
  bool gso = setsockopt((int)fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  bool gro = setsockopt((int)fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  fdstate *st = state_for((int)fd);
  if (st) st->gso_off = !gso;
  napi_value obj, v;
  CHECK(napi_create_object(env, &obj));
  napi_get_boolean(env, gso, &v);
  set_prop(env, obj, "gso", v);
  napi_get_boolean(env, gro, &v);
  set_prop(env, obj, "gro", v);
  return obj;
}

static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

typedef union {
  struct sockaddr sa;
  struct sockaddr_in s4;
  struct sockaddr_in6 s6;
} addr_u;

#define CTRL_LEN 160

static struct mmsghdr o_msgs[MAX_BATCH];
static struct iovec o_iov[MAX_BATCH];
static addr_u o_sa[MAX_BATCH];
static uint8_t o_ctrl[MAX_BATCH][CTRL_LEN];
static int o_first[MAX_BATCH], o_n[MAX_BATCH];

/* Destination (and the local end, if any) of datagram i into a msghdr; 0 when unsendable here. */
static int fill_dest(struct msghdr *h, addr_u *sa, uint8_t *ctrl, int v6, const uint8_t *a, uint16_t port, const uint8_t *l,
                     uint32_t ifindex) {
  memset(h, 0, sizeof *h);
  memset(sa, 0, sizeof *sa);
  if (v6) {
    sa->s6.sin6_family = AF_INET6;
    memcpy(&sa->s6.sin6_addr, a, 16);
    sa->s6.sin6_port = htons(port);
    h->msg_namelen = sizeof sa->s6;
  } else {
    if (memcmp(a, mapped_prefix, 12) != 0) return 0;
    sa->s4.sin_family = AF_INET;
    memcpy(&sa->s4.sin_addr, a + 12, 4);
    sa->s4.sin_port = htons(port);
    h->msg_namelen = sizeof sa->s4;
  }
  h->msg_name = sa;
  h->msg_control = ctrl;
  h->msg_controllen = 0;
  if (!l) return 1;
  int any = ifindex != 0;
  for (int k = 0; k < 16 && !any; k++) any = l[k] != 0;
  if (!any) return 1;
  memset(ctrl, 0, CTRL_LEN);
  h->msg_controllen = CTRL_LEN; /* for CMSG_FIRSTHDR; trimmed below */
  struct cmsghdr *c = CMSG_FIRSTHDR(h);
  if (v6) {
    c->cmsg_level = IPPROTO_IPV6, c->cmsg_type = IPV6_PKTINFO, c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
    struct in6_pktinfo pi;
    memset(&pi, 0, sizeof pi);
    memcpy(&pi.ipi6_addr, l, 16);
    pi.ipi6_ifindex = (int)ifindex;
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    h->msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
  } else {
    c->cmsg_level = IPPROTO_IP, c->cmsg_type = IP_PKTINFO, c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi;
    memset(&pi, 0, sizeof pi);
    memcpy(&pi.ipi_spec_dst, l + 12, 4);
    pi.ipi_ifindex = (int)ifindex;
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    h->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
  }
  return 1;
}

static void add_segment_cmsg(struct msghdr *h, uint16_t gso) {
  size_t used = h->msg_controllen;
  struct cmsghdr *c = (struct cmsghdr *)((uint8_t *)h->msg_control + used);
  memset(c, 0, CMSG_SPACE(sizeof(uint16_t)));
  c->cmsg_level = SOL_UDP, c->cmsg_type = UDP_SEGMENT, c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  memcpy(CMSG_DATA(c), &gso, sizeof gso);
  h->msg_controllen = used + CMSG_SPACE(sizeof(uint16_t));
}

static int same_dest(int i, int j, const uint8_t *addrs, const uint16_t *ports, const uint8_t *locals, const uint32_t *ifx) {
  if (ports[i] != ports[j] || memcmp(addrs + i * 16, addrs + j * 16, 16)) return 0;
  if (!locals) return 1;
  return ifx[i] == ifx[j] && memcmp(locals + i * 16, locals + j * 16, 16) == 0;
}

/* udpSendBatchGso(fd, buf, offsets, lengths, addrs, ports, count, locals?, ifindexes?) → sent */
static napi_value udp_send_gso(napi_env env, napi_callback_info info) { return km_udp_send(env, info, 1, "udpSendBatchGso"); }

napi_value km_udp_send(napi_env env, napi_callback_info info, int gso, const char *name) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  km_packet_args p;
  if (!km_parse_packet_args(env, argv, argc, 6, MAX_BATCH, name, &p)) return NULL;
  const int64_t fd = p.fd, count = p.count;
  uint8_t *buf = p.buf;
  uint32_t *offs = p.offs, *lens = p.lens;
  size_t alen = 0, plen = 0;
  uint8_t *addrs = typed(env, argv[4], napi_uint8_array, &alen);
  uint16_t *ports = typed(env, argv[5], napi_uint16_array, &plen);
  if (!addrs || !ports || (size_t)count > plen || (size_t)count * 16 > alen) return throw_code(env, "EINVAL", "%s: bad arguments", name);
  size_t loclen = 0, iflen = 0;
  uint8_t *locals = argc >= 9 ? typed(env, argv[7], napi_uint8_array, &loclen) : NULL;
  uint32_t *ifx = argc >= 9 ? typed(env, argv[8], napi_uint32_array, &iflen) : NULL;
  if (locals && ifx && ((size_t)count * 16 > loclen || (size_t)count > iflen))
    return throw_code(env, "EINVAL", "%s: locals/ifindexes too small for count", name);
  if (!locals || !ifx) locals = NULL, ifx = NULL;
  fdstate *st = state_for((int)fd); /* per-socket memory: its family, a refused UDP_SEGMENT */
  int gso_ok = gso && st && !st->gso_off;
  /* The socket's family decides how destinations are written (IPv4-mapped on a dual-stack
   * socket). It cannot change while the fd is open, so ask the kernel once, not per batch. */
  int family = st ? st->family : 0;
  if (!family) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname((int)fd, (struct sockaddr *)&ss, &sl) == 0) family = ss.ss_family;
    if (st) st->family = family;
  }
  int v6 = family == AF_INET6;

  /* Groups: consecutive, same destination and local end, equal lengths (last may be shorter). */
  int m = 0;
  for (int i = 0; i < count;) {
    int n = 1;
    uint32_t total = lens[i];
    if (gso_ok) {
      while (i + n < count && n < UDP_MAX_GSO_SEGS && lens[i + n - 1] == lens[i] && lens[i + n] <= lens[i] &&
             total + lens[i + n] <= UDP_MAX_GSO_BYTES && same_dest(i, i + n, addrs, ports, locals, ifx))
        total += lens[i + n++];
    }
    struct msghdr *h = &o_msgs[m].msg_hdr;
    if (!fill_dest(h, &o_sa[m], o_ctrl[m], v6, addrs + i * 16, ports[i], locals ? locals + i * 16 : NULL, ifx ? ifx[i] : 0)) {
      km_udp_counters.udp_send_errors += n; /* IPv6 destination on an IPv4-only socket */
      i += n;
      continue;
    }
    for (int k = 0; k < n; k++) o_iov[i + k] = (struct iovec){buf + offs[i + k], lens[i + k]};
    h->msg_iov = &o_iov[i];
    h->msg_iovlen = (size_t)n;
    if (n > 1) add_segment_cmsg(h, (uint16_t)lens[i]);
    if (h->msg_controllen == 0) h->msg_control = NULL;
    o_first[m] = i, o_n[m] = n;
    m++;
    i += n;
  }
  int start = 0, retried = -1;
  int64_t sent = 0;
  while (start < m) {
    int r = sendmmsg((int)fd, o_msgs + start, (unsigned)(m - start), 0);
    if (r > 0) {
      for (int k = start; k < start + r; k++) {
        sent += o_n[k];
        if (o_n[k] > 1) ctr.udp_gso_sends++, ctr.udp_gso_segments += o_n[k];
      }
      start += r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 || errno == EAGAIN || errno == ENOBUFS) break;
    int e = errno;
    /* With IP_RECVERR an ICMP error about an earlier datagram (to anyone) is also left pending on
     * the socket, and the next send returns it instead of sending, which cleared it: send this
     * message once more before counting it as failed. */
    if (retried != start && (e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN || e == EPROTO || e == EMSGSIZE)) {
      retried = start;
      continue;
    }
    if (o_n[start] == 1) {
      km_udp_counters.udp_send_errors++;
      start++;
      continue;
    }
    /* The kernel refused this UDP_SEGMENT message: send its datagrams one by one. EIO (no checksum
     * offload on the route's device, xfrm) and EOPNOTSUPP will not change: GSO stays off here. */
    ctr.udp_gso_fallbacks++;
    if (st && (e == EIO || e == EOPNOTSUPP || e == ENOPROTOOPT)) st->gso_off = 1;
    int first = o_first[start];
    int stopped = 0;
    for (int k = 0; k < o_n[start] && !stopped; k++) {
      struct msghdr one;
      addr_u sa1;
      uint8_t c1[CTRL_LEN];
      fill_dest(&one, &sa1, c1, v6, addrs + (first + k) * 16, ports[first + k], locals ? locals + (first + k) * 16 : NULL,
                ifx ? ifx[first + k] : 0);
      if (one.msg_controllen == 0) one.msg_control = NULL;
      one.msg_iov = &o_iov[first + k];
      one.msg_iovlen = 1;
      ssize_t s;
      do s = sendmsg((int)fd, &one, 0);
      while (s < 0 && errno == EINTR);
      if (s >= 0) sent++;
      else if (errno == EAGAIN || errno == ENOBUFS) stopped = 1;
      else km_udp_counters.udp_send_errors++;
    }
    if (stopped) break;
    start++;
  }
  return make_int(env, sent);
}

static struct mmsghdr i_msgs[URX_N];
static struct iovec i_iov[URX_N];
static addr_u i_sa[URX_N];
static uint8_t i_ctrl[URX_N][CTRL_LEN];

/* udpRecvBatchGro(fd, buf, slotSize, lengths, addrs, ports, max, locals?, ifindexes?) → count */
static napi_value udp_recv_gro(napi_env env, napi_callback_info info) {
  km_recv_args args;
  if (!km_parse_recv_args(env, info, "udpRecvBatchGro", &args)) return NULL;
  const int64_t fd = args.fd, slot = args.slot, max = args.max;
  uint8_t *buf = args.buf, *addrs = args.addrs, *locals = args.locals;
  uint32_t *lens = args.lens, *ifx = args.ifindexes;
  uint16_t *ports = args.ports;
  fdstate *st = state_for((int)fd);
  if (!st) return throw_code(env, "ENOMEM", "udpRecvBatchGro: out of memory");
  if (!st->ustage && !(st->ustage = malloc((size_t)URX_N * URX_SIZE))) return throw_code(env, "ENOMEM", "udpRecvBatchGro: out of memory");
  int n = 0, drained = 0, tries = 0;
  while (n < max) {
    /* hand out what is pending */
    while (n < max && st->ucur < st->un) {
      int k = st->ucur;
      uint32_t len = st->ulen[k], gso = st->ugso[k] ? st->ugso[k] : len;
      if (st->uoff >= len) {
        st->ucur++, st->uoff = 0;
        continue;
      }
      uint32_t seg = len - st->uoff < gso ? len - st->uoff : gso;
      if (seg > (uint32_t)slot) {
        km_udp_counters.udp_truncated++;
        st->ucur++, st->uoff = 0;
        continue;
      }
      memcpy(buf + (size_t)n * slot, st->ustage + (size_t)k * URX_SIZE + st->uoff, seg);
      lens[n] = seg;
      memcpy(addrs + n * 16, st->uaddr[k], 16);
      ports[n] = st->uport[k];
      if (locals) memcpy(locals + n * 16, st->uloc[k], 16), ifx[n] = st->uif[k];
      st->uoff += seg;
      n++;
    }
    if (n >= max || drained) break;
    /* receive more: no more messages than there are free slots (each is at least one datagram) */
    int want = (int)max - n < URX_N ? (int)max - n : URX_N;
    for (int k = 0; k < want; k++) {
      memset(&i_msgs[k].msg_hdr, 0, sizeof i_msgs[k].msg_hdr);
      i_iov[k] = (struct iovec){st->ustage + (size_t)k * URX_SIZE, URX_SIZE};
      i_msgs[k].msg_hdr.msg_iov = &i_iov[k];
      i_msgs[k].msg_hdr.msg_iovlen = 1;
      i_msgs[k].msg_hdr.msg_name = &i_sa[k];
      i_msgs[k].msg_hdr.msg_namelen = sizeof i_sa[k];
      i_msgs[k].msg_hdr.msg_control = i_ctrl[k];
      i_msgs[k].msg_hdr.msg_controllen = CTRL_LEN;
    }
    int r = recvmmsg((int)fd, i_msgs, (unsigned)want, MSG_DONTWAIT, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      km_udp_counters.udp_so_errors++; /* a queued ICMP error, cleared by reading it: datagrams may follow */
      if (++tries >= 4) break;
      continue;
    }
    if (r == 0) break;
    if (r < want) drained = 1;
    st->un = r, st->ucur = 0, st->uoff = 0;
    for (int k = 0; k < r; k++) {
      struct msghdr *h = &i_msgs[k].msg_hdr;
      st->ulen[k] = (h->msg_flags & MSG_TRUNC) ? 0 : i_msgs[k].msg_len;
      if (h->msg_flags & MSG_TRUNC) km_udp_counters.udp_truncated++;
      st->ugso[k] = 0;
      memset(st->uloc[k], 0, 16);
      st->uif[k] = 0;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int g;
          memcpy(&g, CMSG_DATA(c), sizeof g);
          st->ugso[k] = g > 0 && g < 65536 ? (uint16_t)g : 0;
        } else {
          km_pktinfo(c, st->uloc[k], &st->uif[k]);
        }
      }
      if (st->ugso[k] && st->ulen[k] > st->ugso[k]) ctr.udp_gro_receives++, ctr.udp_gro_segments += (st->ulen[k] + st->ugso[k] - 1) / st->ugso[k];
      km_addr16(&i_sa[k].sa, st->uaddr[k], &st->uport[k]);
    }
  }
  return make_int(env, n);
}

/* ───────────────────────── pure functions for tests ───────────────────────── */

/* typed() for inputs that may be empty (N-API may report no data pointer for those). */
static uint8_t *bytes_of(napi_env env, napi_value v, size_t *len) {
  static uint8_t empty[1];
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  uint8_t *p = typed(env, v, napi_uint8_array, len);
  if (!p) {
    napi_typedarray_type t;
    size_t n = 1;
    if (napi_get_typedarray_info(env, v, &t, &n, NULL, NULL, NULL) != napi_ok || t != napi_uint8_array || n != 0) return NULL;
    *len = 0;
    return empty;
  }
  return p;
}

/* offloadSplit(vnetHeader(10), packet, slotSize?) → Uint8Array[] | null (null: dropped, counted) */
static napi_value offload_split(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t hl = 0, pl = 0;
  uint8_t *hb = argc >= 2 ? bytes_of(env, argv[0], &hl) : NULL;
  uint8_t *pb = argc >= 2 ? bytes_of(env, argv[1], &pl) : NULL;
  int64_t slot = 2048;
  if (argc >= 3 && !get_int(env, argv[2], &slot)) slot = 2048;
  if (!hb || !pb || hl != VNET_LEN || slot <= 0 || slot > 65536 || pl > STAGE)
    return throw_code(env, "EINVAL", "offloadSplit(vnetHeader: 10 bytes, packet, slotSize?)");
  vhdr h;
  vhdr_read(hb, &h);
  napi_value arr, null;
  napi_get_null(env, &null);
  uint8_t *copy = malloc(pl ? pl : 1);
  if (!copy) return throw_code(env, "ENOMEM", "offloadSplit: out of memory");
  memcpy(copy, pb, pl);
  if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
    if (pl == 0 || complete_csum(&h, copy, pl) < 0 || pl > (size_t)slot) {
      ctr.tun_bad++;
      free(copy);
      return null;
    }
    void *d;
    napi_value ab, u8;
    napi_create_array_with_length(env, 1, &arr);
    napi_create_arraybuffer(env, pl, &d, &ab);
    memcpy(d, copy, pl);
    napi_create_typedarray(env, napi_uint8_array, pl, ab, 0, &u8);
    napi_set_element(env, arr, 0, u8);
    free(copy);
    return arr;
  }
  /* split in chunks of 7 slots, as a caller with few free slots would see it */
  int total = 0, done = 0;
  uint8_t *out = malloc((size_t)slot * 7);
  uint32_t lens[7];
  napi_create_array(env, &arr);
  if (!out) {
    free(copy);
    return throw_code(env, "ENOMEM", "offloadSplit: out of memory");
  }
  for (;;) {
    int w = split(&h, copy, pl, done, out, (size_t)slot, lens, 7, &total);
    if (w < 0) {
      ctr.tun_bad++;
      free(out), free(copy);
      return null;
    }
    for (int k = 0; k < w; k++) {
      void *d;
      napi_value ab, u8;
      napi_create_arraybuffer(env, lens[k], &d, &ab);
      memcpy(d, out + (size_t)k * slot, lens[k]);
      napi_create_typedarray(env, napi_uint8_array, lens[k], ab, 0, &u8);
      napi_set_element(env, arr, (uint32_t)(done + k), u8);
    }
    done += w;
    if (done >= total || w == 0) break;
  }
  free(out), free(copy);
  return arr;
}

typedef struct {
  napi_env env;
  napi_value arr;
  uint32_t n;
} collect_ctx;

static int emit_collect(void *c, struct iovec *iov, int iovcnt, int packets, const int *idx) {
  collect_ctx *cc = c;
  size_t total = 0;
  for (int i = 1; i < iovcnt; i++) total += iov[i].iov_len;
  napi_value obj, hv, pv, cnt;
  void *d;
  napi_value ab;
  napi_create_object(cc->env, &obj);
  napi_create_arraybuffer(cc->env, VNET_LEN, &d, &ab);
  memcpy(d, iov[0].iov_base, VNET_LEN);
  napi_create_typedarray(cc->env, napi_uint8_array, VNET_LEN, ab, 0, &hv);
  napi_create_arraybuffer(cc->env, total, &d, &ab);
  uint8_t *o = d;
  for (int i = 1; i < iovcnt; i++) memcpy(o, iov[i].iov_base, iov[i].iov_len), o += iov[i].iov_len;
  napi_create_typedarray(cc->env, napi_uint8_array, total, ab, 0, &pv);
  napi_create_uint32(cc->env, (uint32_t)packets, &cnt);
  set_prop(cc->env, obj, "vnet", hv);
  set_prop(cc->env, obj, "packet", pv);
  set_prop(cc->env, obj, "segments", cnt);
  napi_set_element(cc->env, cc->arr, cc->n++, obj);
  (void)idx;
  return 0;
}

/* offloadCoalesce(packets: Uint8Array[]) → { vnet, packet, segments }[] (what tunWriteBatchVnet would write) */
static napi_value offload_coalesce(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool isarr = false;
  if (argc < 1 || napi_is_array(env, argv[0], &isarr) != napi_ok || !isarr) return throw_code(env, "EINVAL", "offloadCoalesce(packets: Uint8Array[])");
  uint32_t count;
  napi_get_array_length(env, argv[0], &count);
  if (count > MAX_BATCH) return throw_code(env, "EINVAL", "offloadCoalesce: at most %d packets", MAX_BATCH);
  size_t total = 0;
  uint8_t *ptrs[MAX_BATCH];
  uint32_t lens[MAX_BATCH], offs[MAX_BATCH];
  for (uint32_t i = 0; i < count; i++) {
    napi_value e;
    size_t l = 0;
    napi_get_element(env, argv[0], i, &e);
    ptrs[i] = bytes_of(env, e, &l);
    if (!ptrs[i] || l > 65535) return throw_code(env, "EINVAL", "offloadCoalesce: packet %u is not a Uint8Array of at most 65535 bytes", i);
    lens[i] = (uint32_t)l;
    offs[i] = (uint32_t)total;
    total += l;
  }
  uint8_t *flat = malloc(total ? total : 1);
  if (!flat) return throw_code(env, "ENOMEM", "offloadCoalesce: out of memory");
  for (uint32_t i = 0; i < count; i++) memcpy(flat + offs[i], ptrs[i], lens[i]);
  collect_ctx cc = {env, NULL, 0};
  napi_create_array(env, &cc.arr);
  coalesce(flat, offs, lens, (int)count, emit_collect, &cc);
  free(flat);
  return cc.arr;
}

static napi_value offload_counters(napi_env env, napi_callback_info info) {
  napi_value obj, v;
  CHECK(napi_create_object(env, &obj));
#define C(name, field)                  \
  napi_create_double(env, ctr.field, &v); \
  set_prop(env, obj, name, v);
  C("tunSuperRead", tun_super_read);
  C("tunSegmentsRead", tun_segments_read);
  C("tunCsumCompleted", tun_csum_completed);
  C("tunBad", tun_bad);
  C("tunTooBig", tun_too_big);
  C("tunSuperWritten", tun_super_written);
  C("tunSegmentsWritten", tun_segments_written);
  C("tunWriteErrors", tun_write_errors);
  C("udpGsoSends", udp_gso_sends);
  C("udpGsoSegments", udp_gso_segments);
  C("udpGsoFallbacks", udp_gso_fallbacks);
  C("udpGroReceives", udp_gro_receives);
  C("udpGroSegments", udp_gro_segments);
#undef C
  return obj;
}

void km_register_offload(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tunReadBatchVnet", NULL, tun_read_vnet, NULL, NULL, NULL, napi_default, NULL},
      {"tunWriteBatchVnet", NULL, tun_write_vnet, NULL, NULL, NULL, napi_default, NULL},
      {"udpOffload", NULL, udp_offload, NULL, NULL, NULL, napi_default, NULL},
      {"udpSendBatchGso", NULL, udp_send_gso, NULL, NULL, NULL, napi_default, NULL},
      {"udpRecvBatchGro", NULL, udp_recv_gro, NULL, NULL, NULL, napi_default, NULL},
      {"offloadSplit", NULL, offload_split, NULL, NULL, NULL, napi_default, NULL},
      {"offloadCoalesce", NULL, offload_coalesce, NULL, NULL, NULL, napi_default, NULL},
      {"offloadCounters", NULL, offload_counters, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
