/*
 * Target tun_write: the GRO plan of tunWriteBatchVnet (km_coalesce) over a batch of packets the
 * engine decrypted, i.e. whatever an authenticated peer chose to send into our tunnel. Runs of
 * same-flow TCP segments become one super-packet behind a GSO virtio header; the kernel trusts
 * that header, so a wrong one is worse than a crash.
 *
 * Input, per packet (at most 64): a control byte, then
 *   bit 1 clear: a length (2 bytes) and that many bytes;
 *   bit 1 set:   the next segment of the previous packet's flow: its headers, a payload length
 *                (2 bytes) and bytes, the IPv4 ID one up and the sequence number after it, PSH
 *                (bit 2) and CWR (bit 3) from the control byte;
 *   bit 0 set:   the checksums made right (else they stay as they are);
 *   bit 4 set:   the write that carries this packet fails with EAGAIN (emit returns -1), which
 *                must end the batch there.
 * Checked beyond memory safety: every packet is written exactly once, in order within its TCP
 * flow; a packet alone goes out unchanged behind a zero header; a super-packet, its checksum
 * completed as the kernel would, verifies, and segmenting it (km_split) gives back the very
 * packets it was made of (checksum fields aside: 0x0000 and 0xffff are the same sum).
 */
#include "fuzz.h"
#include "packet.h"

#include <linux/virtio_net.h>

#define MAX_PACKETS 64

typedef struct {
  const uint8_t *buf;
  const uint32_t *offs, *lens;
  int count;
  int written[MAX_PACKETS];
  int order[MAX_PACKETS], norder;
  const uint8_t *eagain; /* per packet: its write says EAGAIN */
  int stopped;
} check_ctx;

static void wrote(check_ctx *c, int i) {
  if (i < 0 || i >= c->count || c->written[i]++) FAIL("packet %d written twice (or out of range)", i);
  c->order[c->norder++] = i;
}

/* Equal but for the IPv4 header checksum and the TCP checksum. */
static int same_but_checksums(const uint8_t *a, const uint8_t *b, uint32_t len, uint32_t iph) {
  for (uint32_t k = 0; k < len; k++) {
    int csum = (iph == 20 && (k == 10 || k == 11)) || k == iph + 16 || k == iph + 17;
    if (!csum && a[k] != b[k]) return 0;
  }
  return 1;
}

static int emit(void *ctx, struct iovec *iov, int iovcnt, int packets, const int *idx) {
  check_ctx *c = ctx;
  static const uint8_t zero[KM_VNET_LEN];
  if (c->stopped) FAIL("a write after EAGAIN");
  if (iovcnt < 2 || iov[0].iov_len != KM_VNET_LEN) FAIL("a write of %d iovecs, header of %zu bytes", iovcnt, iov[0].iov_len);
  if (!idx) { /* a packet alone: one of the batch's, unchanged, behind a zero header */
    if (iovcnt != 2 || packets != 1 || memcmp(iov[0].iov_base, zero, KM_VNET_LEN)) FAIL("a single packet written oddly");
    int i = 0;
    while (i < c->count && (iov[1].iov_base != c->buf + c->offs[i] || iov[1].iov_len != c->lens[i] || c->written[i])) i++;
    wrote(c, i);
    return c->eagain[i] ? (c->stopped = 1, -1) : 0;
  }
  if (packets < 2 || iovcnt != 2 + packets || packets > KM_MAX_COALESCE) FAIL("%d packets in %d iovecs", packets, iovcnt);
  size_t total = 0;
  for (int k = 1; k < iovcnt; k++) total += iov[k].iov_len;
  if (total > 65535) FAIL("a super-packet of %zu bytes", total);
  uint8_t *super = malloc(total);
  size_t at = 0;
  for (int k = 1; k < iovcnt; k++) memcpy(super + at, iov[k].iov_base, iov[k].iov_len), at += iov[k].iov_len;
  km_vhdr h;
  km_vhdr_read(iov[0].iov_base, &h);
  int type = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (!(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || (type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_TCPV6))
    FAIL("super-packet header flags %u gso_type %u", h.flags, h.gso_type);
  if (h.hdr_len != iov[1].iov_len) FAIL("hdr_len %u for %zu bytes of headers", h.hdr_len, iov[1].iov_len);

  /* what the kernel will segment: check it splits back into exactly what went in */
  static uint8_t slots[KM_MAX_COALESCE * 65536]; /* ending where the array does, in ASan's redzone */
  uint8_t *segs = slots + sizeof slots - (size_t)packets * 65536;
  uint32_t lens[KM_MAX_COALESCE];
  int n = 0;
  int w = km_split(&h, super, total, 0, segs, 65536, lens, packets, &n);
  if (w != packets || n != packets) FAIL("a super-packet of %d splits into %d (%d)", packets, n, w);
  for (int k = 0; k < packets; k++) {
    wrote(c, idx[k]);
    const uint8_t *orig = c->buf + c->offs[idx[k]];
    uint32_t iph;
    int proto;
    if (lens[k] != c->lens[idx[k]]) FAIL("segment %d: %u bytes for %u", k, lens[k], c->lens[idx[k]]);
    if (!naive_packet_ok(orig, lens[k], &iph, &proto) || proto != 6) FAIL("coalesced packet %d does not verify", idx[k]);
    if (!same_but_checksums(segs + (size_t)k * 65536, orig, lens[k], iph)) FAIL("segment %d differs from packet %d", k, idx[k]);
  }
  /* what a receiver of the super-packet itself sees once the checksum is completed */
  uint32_t iph;
  int proto;
  if (km_complete_csum(&h, super, total) != 1 || !naive_packet_ok(super, total, &iph, &proto)) FAIL("the super-packet does not verify");
  free(super);
  for (int k = 0; k < packets; k++)
    if (c->eagain[idx[k]]) return c->stopped = 1, -1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {data, size};
  static uint8_t flat[MAX_PACKETS * 65536];
  uint32_t offs[MAX_PACKETS], lens[MAX_PACKETS];
  uint8_t eagain[MAX_PACKETS];
  int count = 0;
  size_t used = 0;
  while (r.n && count < MAX_PACKETS) {
    uint8_t ctl = take8(&r);
    uint8_t *p = flat + used;
    uint32_t len, iph, tcph;
    const uint8_t *prev = count ? flat + offs[count - 1] : NULL;
    if ((ctl & 2) && prev && naive_tcp(prev, lens[count - 1], &iph, &tcph)) {
      uint32_t hl = iph + tcph, plen = take16(&r) % 2048;
      size_t got;
      const uint8_t *b = take(&r, plen, &got);
      memcpy(p, prev, hl);
      memset(p + hl, 0, plen);
      memcpy(p + hl, b, got);
      len = hl + plen;
      if (iph == 40) {
        p[4] = (uint8_t)((len - 40) >> 8), p[5] = (uint8_t)(len - 40);
      } else {
        uint16_t id = (uint16_t)((prev[4] << 8 | prev[5]) + 1);
        p[2] = (uint8_t)(len >> 8), p[3] = (uint8_t)len, p[4] = (uint8_t)(id >> 8), p[5] = (uint8_t)id;
      }
      uint32_t seq = (uint32_t)prev[iph + 4] << 24 | (uint32_t)prev[iph + 5] << 16 | (uint32_t)prev[iph + 6] << 8 | prev[iph + 7];
      seq += lens[count - 1] - hl;
      p[iph + 4] = (uint8_t)(seq >> 24), p[iph + 5] = (uint8_t)(seq >> 16), p[iph + 6] = (uint8_t)(seq >> 8), p[iph + 7] = (uint8_t)seq;
      p[iph + 13] = (uint8_t)((p[iph + 13] & ~0x88) | (ctl & 4 ? 0x08 : 0) | (ctl & 8 ? 0x80 : 0));
    } else {
      size_t got;
      const uint8_t *b = take(&r, take16(&r), &got);
      memcpy(p, b, got);
      len = (uint32_t)got;
    }
    if (ctl & 1) naive_fix(p, len);
    offs[count] = (uint32_t)used, lens[count] = len, eagain[count] = (ctl >> 4) & 1;
    used += len, count++;
  }
  /* the batch in one allocation of its exact size, as tunWriteBatchVnet's caller's buffer */
  uint8_t *buf = exact_copy(flat, used);
  check_ctx c = {buf, offs, lens, count, {0}, {0}, 0, eagain, 0};
  int ret = km_coalesce(buf, offs, lens, count, emit, &c);
  if (ret != -c.stopped) FAIL("coalesce returned %d, %s", ret, c.stopped ? "stopped by EAGAIN" : "not stopped");
  for (int i = 0; i < count && !c.stopped; i++)
    if (!c.written[i]) FAIL("packet %d never written", i);
  /* order within each TCP flow (addresses and ports) is kept */
  for (int a = 0; a < c.norder; a++)
    for (int b = a + 1; b < c.norder; b++) {
      int i = c.order[a], j = c.order[b];
      uint32_t ih, th, jh, tj;
      const uint8_t *pi = buf + offs[i], *pj = buf + offs[j];
      if (i < j || !naive_tcp(pi, lens[i], &ih, &th) || !naive_tcp(pj, lens[j], &jh, &tj) || (pi[0] >> 4) != (pj[0] >> 4)) continue;
      int v6 = pi[0] >> 4 == 6;
      if (!memcmp(pi + (v6 ? 8 : 12), pj + (v6 ? 8 : 12), v6 ? 32 : 8) && !memcmp(pi + ih, pj + jh, 4))
        FAIL("packet %d of a flow written before packet %d", i, j);
    }
  free(buf);
  return 0;
}
