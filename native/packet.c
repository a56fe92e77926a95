/*
 * The packet logic of the addon, pure: bytes in, bytes and verdicts out (see packet.h). offload.c
 * and keymesh.c do the syscalls and the counting around it; fuzz/ feeds it hostile bytes.
 */
#define _GNU_SOURCE
#include "packet.h"

#include <linux/virtio_net.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <linux/errqueue.h>
#include <string.h>

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define MAX_BUCKETS 8 /* TCP flows coalesced at once within one write batch */

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

/* TUN speaks the legacy virtio header in the host's byte order unless TUNSETVNETBE/LE say otherwise. */
void km_vhdr_read(const uint8_t *b, km_vhdr *h) {
  h->flags = b[0], h->gso_type = b[1];
  memcpy(&h->hdr_len, b + 2, 2);
  memcpy(&h->gso_size, b + 4, 2);
  memcpy(&h->csum_start, b + 6, 2);
  memcpy(&h->csum_offset, b + 8, 2);
}

void km_vhdr_write(uint8_t *b, const km_vhdr *h) {
  b[0] = h->flags, b[1] = h->gso_type;
  memcpy(b + 2, &h->hdr_len, 2);
  memcpy(b + 4, &h->gso_size, 2);
  memcpy(b + 6, &h->csum_start, 2);
  memcpy(b + 8, &h->csum_offset, 2);
}

/*
 * Complete the checksum of a single packet the kernel handed over with NEEDS_CSUM: sum from
 * csum_start to the end (the field holds the pseudo-header sum) and store it at csum_offset.
 * 1: completed; 0: not asked for; -1: a header that points outside the packet.
 */
int km_complete_csum(const km_vhdr *h, uint8_t *p, size_t len) {
  if (!(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) return 0;
  size_t st = h->csum_start, at = st + h->csum_offset;
  if ((h->csum_offset & 1) || st >= len || at + 2 > len) return -1;
  uint16_t c = (uint16_t)~csum_fold(csum_add(p + st, len - st, 0));
  if (c == 0) c = 0xffff;
  memcpy(p + at, &c, 2);
  return 1;
}

/*
 * Split a GSO super-packet into segments from index `from` on, into slots of `slot` bytes.
 * Returns how many were written (≤ room); *total is the number of segments it makes in all.
 * -1: not a super-packet we can split (bad header, protocol mismatch, segment larger than a slot).
 */
int km_split(const km_vhdr *h, const uint8_t *p, size_t len, int from, uint8_t *out, size_t slot, uint32_t *lens, int room,
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
  int idx[KM_MAX_COALESCE];
  tcpseg first, last;
  uint32_t total, next_seq;
  int order;
} bucket;

static int can_append(const bucket *b, const tcpseg *q) {
  const tcpseg *f = &b->first, *l = &b->last;
  if (b->closed || b->n >= KM_MAX_COALESCE) return 0;
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
  if (ta[12] != tc[12]) return 0; /* data offset and the reserved/AE bits: segmentation copies the first's */
  if (tc[13] & 0x80) return 0;                                        /* CWR starts a new one */
  if ((ta[13] ^ tc[13]) & ~(0x80 | 0x08)) return 0;                  /* other flags equal */
  if (memcmp(ta + 14, tc + 14, 2)) return 0;                          /* same window */
  if (memcmp(ta + 18, tc + 18, 2)) return 0; /* same urgent pointer: meaningless without URG, but
                                                segmentation copies the first one's into all */
  if (memcmp(ta + 20, tc + 20, f->L.l4hlen - 20)) return 0;           /* same options */
  if (l->p[l->L.iphlen + 13] & 0x08) return 0;                        /* nothing after a PSH */
  if (q->seq != b->next_seq) return 0;                                /* contiguous */
  if (q->plen > f->plen || l->plen != f->plen) return 0;              /* gso_size; short one ends it */
  if (b->total + q->plen > 65535) return 0;
  return 1;
}

static int emit_single(const uint8_t *p, uint32_t len, km_emit_fn emit, void *ctx) {
  static const uint8_t zero[KM_VNET_LEN];
  struct iovec iov[2] = {{(void *)zero, KM_VNET_LEN}, {(void *)p, len}};
  return emit(ctx, iov, 2, 1, NULL);
}

/* A batch being coalesced: the packets (by index) and the open buckets. */
typedef struct {
  const uint8_t *buf;
  const uint32_t *offs, *lens;
  bucket b[MAX_BUCKETS];
  int order;
} plan;

static int flush_b(plan *pl, bucket *b, km_emit_fn emit, void *ctx) {
  if (!b->used) return 0;
  if (b->n == 1) {
    b->used = 0;
    return emit_single(b->first.p, b->first.len, emit, ctx);
  }
  b->used = 0;
  const tcpseg *f = &b->first;
  uint8_t vb[KM_VNET_LEN], hdr[120];
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
  km_vhdr h = {VIRTIO_NET_HDR_F_NEEDS_CSUM,
            (uint8_t)((f->L.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4) | (th[13] & 0x80 ? VIRTIO_NET_HDR_GSO_ECN : 0)),
            (uint16_t)hlen, (uint16_t)f->plen, (uint16_t)f->L.iphlen, 16};
  km_vhdr_write(vb, &h);
  struct iovec iov[2 + KM_MAX_COALESCE];
  iov[0] = (struct iovec){vb, KM_VNET_LEN};
  iov[1] = (struct iovec){hdr, hlen};
  for (int k = 0; k < b->n; k++) {
    const uint8_t *p = pl->buf + pl->offs[b->idx[k]];
    iov[2 + k] = (struct iovec){(void *)(p + hlen), pl->lens[b->idx[k]] - hlen};
  }
  return emit(ctx, iov, 2 + b->n, b->n, b->idx);
}

/* Oldest first, so flows keep roughly the order they arrived in. */
static int flush_all(plan *pl, km_emit_fn emit, void *ctx) {
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
int km_coalesce(const uint8_t *buf, const uint32_t *offs, const uint32_t *lens, int count, km_emit_fn emit, void *ctx) {
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

/* ───────────────────────── UDP control messages ───────────────────────── */

void km_addr16(const struct sockaddr *sa, uint8_t a[16], uint16_t *port) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    memcpy(a, &s6->sin6_addr, 16);
    *port = ntohs(s6->sin6_port);
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    memset(a, 0, 10);
    a[10] = a[11] = 0xff;
    memcpy(a + 12, &s4->sin_addr, 4);
    *port = ntohs(s4->sin_port);
  }
}

/*
 * How many bytes of c's data lie inside h's control buffer: what cmsg_len says, but never past
 * msg_controllen. The two differ for a message the kernel cut short (MSG_CTRUNC: cmsg_len is then
 * what fitted) and for a corrupt length (CMSG_FIRSTHDR does not look at cmsg_len); reading a
 * struct without this check would read past the buffer, or stale bytes of an earlier receive.
 */
static size_t cmsg_data_len(const struct msghdr *h, const struct cmsghdr *c) {
  size_t room = (size_t)((const uint8_t *)h->msg_control + h->msg_controllen - (const uint8_t *)c);
  size_t len = c->cmsg_len < room ? c->cmsg_len : room;
  return len > CMSG_LEN(0) ? len - CMSG_LEN(0) : 0;
}

int km_pktinfo(const struct msghdr *h, const struct cmsghdr *c, uint8_t local16[16], uint32_t *ifindex) {
  if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
    struct in6_pktinfo pi;
    if (cmsg_data_len(h, c) < sizeof pi) return 0;
    memcpy(&pi, CMSG_DATA(c), sizeof pi);
    memcpy(local16, &pi.ipi6_addr, 16);
    *ifindex = (uint32_t)pi.ipi6_ifindex;
    return 1;
  }
  if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
    struct in_pktinfo pi;
    if (cmsg_data_len(h, c) < sizeof pi) return 0;
    memcpy(&pi, CMSG_DATA(c), sizeof pi);
    memset(local16, 0, 10);
    local16[10] = local16[11] = 0xff;
    memcpy(local16 + 12, &pi.ipi_addr, 4);
    *ifindex = (uint32_t)pi.ipi_ifindex;
    return 1;
  }
  return 0;
}

void km_recv_cmsgs(const struct msghdr *h, uint16_t *gro, uint8_t local16[16], uint32_t *ifindex) {
  memset(local16, 0, 16);
  *ifindex = 0;
  if (gro) *gro = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
    if (gro && c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int g;
      if (cmsg_data_len(h, c) < sizeof g) continue;
      memcpy(&g, CMSG_DATA(c), sizeof g);
      *gro = g > 0 && g < 65536 ? (uint16_t)g : 0;
    } else {
      km_pktinfo(h, c, local16, ifindex);
    }
  }
}

uint32_t km_gro_segment(uint32_t len, uint16_t gso, uint32_t off) {
  uint32_t g = gso ? gso : len;
  if (off >= len) return 0;
  return len - off < g ? len - off : g;
}

/* ───────────────────────── ICMP reports (IP_RECVERR) ───────────────────────── */

/* One IP_RECVERR / IPV6_RECVERR control message into a report; 0 when c is none. */
static int icmp_report_of(const struct msghdr *h, const struct cmsghdr *c, const uint8_t *data, size_t datalen, km_icmp_report *rep) {
  bool v4 = c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR;
  bool v6 = c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR;
  if (!v4 && !v6) return 0;
  struct sock_extended_err ee;
  size_t have = cmsg_data_len(h, c);
  if (have < sizeof ee) return 0;
  memcpy(&ee, CMSG_DATA(c), sizeof ee);
  memset(rep, 0, sizeof *rep);
  km_addr16((const struct sockaddr *)h->msg_name, rep->addr, &rep->port);
  /* the offender address follows the sock_extended_err in the control message */
  const uint8_t *sa_at = CMSG_DATA(c) + sizeof ee;
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof sa);
  if (have > sizeof ee) memcpy(&sa, sa_at, have - sizeof ee < sizeof sa ? have - sizeof ee : sizeof sa);
  if ((sa.ss_family == AF_INET && have >= sizeof ee + sizeof(struct sockaddr_in)) ||
      (sa.ss_family == AF_INET6 && have >= sizeof ee + sizeof(struct sockaddr_in6))) {
    uint16_t op;
    km_addr16((struct sockaddr *)&sa, rep->offender, &op);
    rep->has_offender = true;
  }
  rep->origin = ee.ee_origin;
  rep->type = ee.ee_type;
  rep->code = ee.ee_code;
  rep->info = ee.ee_info;
  rep->payload_len = (uint8_t)(datalen < sizeof rep->payload ? datalen : sizeof rep->payload);
  memcpy(rep->payload, data, rep->payload_len);
  return 1;
}

int km_icmp_parse(const struct msghdr *h, const uint8_t *data, size_t datalen, km_icmp_report *reps, int max) {
  int n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c && n < max; c = CMSG_NXTHDR((struct msghdr *)h, c)) n += icmp_report_of(h, c, data, datalen, &reps[n]);
  return n;
}
