/*
 * Target udp_recv: one receive of udpRecvBatch / udpRecvBatchGro — its control messages
 * (IPV6_PKTINFO, IP_PKTINFO, UDP_GRO: km_recv_cmsgs) and, on a UDP_GRO socket, the cut-up of the
 * receive into datagrams of the gso_size the cmsg gives (km_gro_segment), over calls with few
 * free slots each, as udpRecvBatchGro hands them out. The datagrams are anyone's.
 *
 * Input: slot size (2 bytes), slots per call (1), GRO socket or not (1), control messages
 * (fuzz_control), then the receive's bytes (the rest, at most 64 KiB).
 * Checked beyond memory safety: the datagrams handed out are the receive, in order, each at most
 * gso_size bytes; one larger than a slot ends the receive (udpTruncated).
 */
#include "fuzz.h"
#include "packet.h"

#include <netinet/in.h>
#include <netinet/udp.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {data, size};
  size_t slot = 1 + take16(&r) % 4096;
  int max = 1 + take8(&r) % 64;
  int gro_socket = take8(&r) & 1;
  static const cmsg_kind kinds[] = {{IPPROTO_IPV6, IPV6_PKTINFO}, {IPPROTO_IP, IP_PKTINFO}, {SOL_UDP, UDP_GRO}};
  size_t clen;
  uint8_t *ctrl = fuzz_control(&r, kinds, 3, &clen);
  size_t len = r.n > 65536 ? 65536 : r.n;
  uint8_t *recv = exact_copy(r.p, len);

  struct msghdr h;
  memset(&h, 0, sizeof h);
  h.msg_control = ctrl;
  h.msg_controllen = clen;
  uint8_t local[16];
  uint32_t ifindex;
  uint16_t gso = 0;
  km_recv_cmsgs(&h, gro_socket ? &gso : NULL, local, &ifindex);

  /* the slots end where the array does: the byte past the last one is in ASan's redzone */
  static uint8_t slots[64 * 4096];
  uint8_t *out = slots + sizeof slots - slot * (size_t)max;
  uint32_t off = 0;
  for (int call = 0; call < 70000; call++) {
    int n = 0;
    uint32_t seg = 0;
    while (n < max && (seg = km_gro_segment((uint32_t)len, gso, off)) != 0 && seg <= slot) {
      if (gso && seg > gso) FAIL("a %u-byte datagram from a receive cut every %u", seg, gso);
      if (off + seg > len) FAIL("datagram at %u+%u past the receive's %zu bytes", off, seg, len);
      memcpy(out + (size_t)n * slot, recv + off, seg);
      off += seg, n++;
    }
    if (seg == 0 || seg > slot) break; /* all handed out, or the rest dropped as truncated */
  }
  if (km_gro_segment((uint32_t)len, gso, off) == 0 && off != len) FAIL("handed out %u of %zu bytes", off, len);
  free(recv), free(ctrl);
  return 0;
}
