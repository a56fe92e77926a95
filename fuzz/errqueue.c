/*
 * Target errqueue: the control messages of a MSG_ERRQUEUE receive, as drain_errqueue (keymesh.c)
 * reads them into ICMP reports: IP_RECVERR / IPV6_RECVERR, a sock_extended_err and the offender's
 * address after it. The kernel writes these, but from ICMP errors anyone on the path can send.
 *
 * Input: the destination sockaddr_in6 (28 bytes), the datagram's first bytes (a length, then
 * those), control messages (fuzz_control).
 */
#include "fuzz.h"
#include "packet.h"

#include <netinet/in.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {data, size};
  size_t got;
  uint8_t name[sizeof(struct sockaddr_in6)] = {0};
  const uint8_t *np = take(&r, sizeof name, &got);
  memcpy(name, np, got);
  struct sockaddr_in6 *dst = (struct sockaddr_in6 *)exact_copy(name, sizeof name);
  size_t dlen = take8(&r) % 65;
  const uint8_t *dp = take(&r, dlen, &dlen);
  uint8_t *payload = exact_copy(dp, dlen);
  static const cmsg_kind kinds[] = {{IPPROTO_IP, IP_RECVERR}, {IPPROTO_IPV6, IPV6_RECVERR}};
  size_t clen;
  uint8_t *ctrl = fuzz_control(&r, kinds, 2, &clen);

  struct msghdr h;
  memset(&h, 0, sizeof h);
  h.msg_name = dst;
  h.msg_namelen = sizeof *dst;
  h.msg_control = ctrl;
  h.msg_controllen = clen;
  km_icmp_report reps[KM_ICMP_PER_MSG];
  int n = km_icmp_parse(&h, payload, dlen, reps, KM_ICMP_PER_MSG);
  if (n < 0 || n > KM_ICMP_PER_MSG) FAIL("%d reports", n);
  for (int k = 0; k < n; k++) {
    if (reps[k].payload_len > 16 || reps[k].payload_len > dlen) FAIL("payload of %u bytes from %zu", reps[k].payload_len, dlen);
    if (memcmp(reps[k].payload, payload, reps[k].payload_len)) FAIL("payload is not the datagram's");
  }
  free(ctrl), free(payload), free(dst);
  return 0;
}
