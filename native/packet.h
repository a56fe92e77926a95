/*
 * What the addon does to bytes it did not write itself, with no N-API and no syscalls, so that
 * the addon and the libFuzzer harnesses in fuzz/ run the same code (native-notes/fuzzing.md):
 *
 *   virtio_net_hdr + (super-)packet from the TUN device   km_vhdr_read, km_complete_csum, km_split
 *   a batch of packets for the TUN device (GRO plan)       km_coalesce
 *   recvmmsg control messages (IP[V6]_PKTINFO, UDP_GRO)    km_recv_cmsgs, km_gro_segment
 *   the error queue's IP[V6]_RECVERR reports               km_icmp_parse
 *
 * Bad input is data: these return "not usable" (-1 or 0) and never read or write outside the
 * lengths they are given.
 */
#ifndef KEYMESH_PACKET_H
#define KEYMESH_PACKET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* ───────────── TUN: virtio_net_hdr, TSO/USO split, GRO plan (offload.c's packet logic) ───────────── */

#define KM_VNET_LEN 10     /* sizeof(struct virtio_net_hdr): TUNSETVNETHDRSZ is set to this */
#define KM_MAX_COALESCE 64 /* segments per written super-packet */

typedef struct {
  uint8_t flags, gso_type;
  uint16_t hdr_len, gso_size, csum_start, csum_offset;
} km_vhdr;

void km_vhdr_read(const uint8_t *b, km_vhdr *h);
void km_vhdr_write(uint8_t *b, const km_vhdr *h);
/* NEEDS_CSUM of a single packet: 1 completed, 0 not asked for, -1 the header points outside it. */
int km_complete_csum(const km_vhdr *h, uint8_t *p, size_t len);
/* Segments `from`.. of a GSO super-packet into slots of `slot` bytes: how many written (≤ room),
 * *total = how many it makes in all; -1 when it cannot be split. */
int km_split(const km_vhdr *h, const uint8_t *p, size_t len, int from, uint8_t *out, size_t slot, uint32_t *lens, int room, int *total);

/* One write: iov[0] the virtio header, then the packet or a super-packet's headers and payloads.
 * idx: a coalesced write's packet indexes in the batch (NULL for a packet alone). -1 stops. */
typedef int (*km_emit_fn)(void *ctx, struct iovec *iov, int iovcnt, int packets, const int *idx);
/* Packet i is buf[offs[i] .. +lens[i]]; each goes to emit once, alone or inside a super-packet. */
int km_coalesce(const uint8_t *buf, const uint32_t *offs, const uint32_t *lens, int count, km_emit_fn emit, void *ctx);

/* ───────────── UDP: addresses and control messages ───────────── */

/* A socket address as 16 bytes (IPv4 as ::ffff:a.b.c.d) and a port in host order. */
void km_addr16(const struct sockaddr *sa, uint8_t a[16], uint16_t *port);
/* If c is an IPV6_PKTINFO or IP_PKTINFO control message of h, the local end it reports; 1 then. */
int km_pktinfo(const struct msghdr *h, const struct cmsghdr *c, uint8_t local16[16], uint32_t *ifindex);
/* The control messages of one receive: its local end (zero when none) and, when gro is not NULL,
 * the UDP_GRO segment size (0: one datagram). */
void km_recv_cmsgs(const struct msghdr *h, uint16_t *gro, uint8_t local16[16], uint32_t *ifindex);
/* The length of the datagram at offset off of a receive of len bytes cut every gso bytes (gso 0:
 * not coalesced); 0 when none is left. */
uint32_t km_gro_segment(uint32_t len, uint16_t gso, uint32_t off);

/* ───────────── UDP: ICMP reports from the error queue ───────────── */

typedef struct {
  int fd;
  uint8_t addr[16];
  uint16_t port;
  uint8_t offender[16];
  bool has_offender;
  uint8_t origin, type, code;
  uint32_t info;
  uint8_t payload[16]; /* the start of the reported datagram's payload, as the ICMP quoted it */
  uint8_t payload_len;
} km_icmp_report;

/* The IP_RECVERR / IPV6_RECVERR reports (fd 0) among the control messages of h, a receive with
 * MSG_ERRQUEUE (h->msg_name the destination reported on, data its first datalen bytes): at most
 * max, how many. */
#define KM_ICMP_PER_MSG 16 /* as many as a 512-byte control buffer can hold */
int km_icmp_parse(const struct msghdr *h, const uint8_t *data, size_t datalen, km_icmp_report *reps, int max);

#endif
