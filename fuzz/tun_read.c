/*
 * Target tun_read: what tunReadBatchVnet does with one read() from the TUN device — a virtio_net_hdr
 * and a packet, both chosen by whoever writes to the tunnel interface (any local process) or by
 * the kernel's GSO. Single packets get their NEEDS_CSUM checksum completed; TSO/USO super-packets
 * are split into slots, a few at a time, as a caller with few free slots would take them.
 *
 * Input: slot size (2 bytes), free slots per call (1), virtio header (10), packet (the rest).
 * Checked beyond memory safety: every segment fits its slot, is a well-formed packet whose
 * checksums verify (naive RFC 1071 twin), and the segments' payloads are the super-packet's.
 */
#include "fuzz.h"
#include "packet.h"

#include <linux/virtio_net.h>

#define STAGE (65536 + 256) /* offload.c: the TUN read buffer */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {data, size};
  size_t slot = 1 + take16(&r) % 65536;
  int room = 1 + take8(&r) % 16;
  size_t got;
  const uint8_t *hb = take(&r, KM_VNET_LEN, &got);
  if (got < KM_VNET_LEN || r.n == 0 || r.n + KM_VNET_LEN >= STAGE) return 0; /* tunReadBatchVnet drops these (tunBad) */
  km_vhdr h;
  km_vhdr_read(hb, &h);
  size_t len = r.n;
  uint8_t *p = exact_copy(r.p, len);

  if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
    km_complete_csum(&h, p, len);
    free(p);
    return 0;
  }

  /* the slots end where the array does, so the first byte past the last slot is in ASan's redzone
   * (a malloc of up to 1 MiB per input would cost more than the split) */
  static uint8_t slots[16 * 65536];
  uint8_t *out = slots + sizeof slots - slot * (size_t)room;
  uint32_t lens[16];
  int total = -1, done = 0;
  uint32_t iph0 = 0, payload_at = 0, hlen = 0;
  for (;;) {
    int t = 0;
    int w = km_split(&h, p, len, done, out, slot, lens, room, &t);
    if (w < 0) {
      if (done) FAIL("split refused a packet it had split before (segment %d)", done);
      break;
    }
    if (w > room) FAIL("split wrote %d segments into %d slots", w, room);
    if (total >= 0 && t != total) FAIL("segment count changed from %d to %d", total, t);
    total = t;
    for (int k = 0; k < w; k++) {
      const uint8_t *s = out + (size_t)k * slot;
      uint32_t iph;
      int proto;
      if (lens[k] > slot) FAIL("segment of %u bytes in a %zu-byte slot", lens[k], slot);
      if (!naive_packet_ok(s, lens[k], &iph, &proto)) FAIL("segment %d does not verify", done + k);
      uint32_t l4h = proto == 6 ? (uint32_t)(s[iph + 12] >> 4) * 4 : 8;
      if (done + k == 0) iph0 = iph, hlen = iph + l4h, payload_at = hlen;
      if (iph != iph0 || iph + l4h != hlen) FAIL("segment %d has other headers", done + k);
      if (lens[k] <= hlen || payload_at + (lens[k] - hlen) > len) FAIL("segment %d has a bad length %u", done + k, lens[k]);
      if (memcmp(s + hlen, p + payload_at, lens[k] - hlen)) FAIL("segment %d carries other bytes", done + k);
      payload_at += lens[k] - hlen;
    }
    done += w;
    if (done >= total || w == 0) break;
  }
  if (total > 0 && done == total && payload_at != len) FAIL("segments carried %u of %zu bytes", payload_at, len);
  free(p);
  return 0;
}
