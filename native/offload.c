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
 * The packet logic (split, checksum completion, coalescing plan) is pure, in packet.c, and is
 * exported for tests as offloadSplit / offloadCoalesce. Bad input is never trusted: it is counted
 * and dropped.
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
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define MAX_BATCH KM_MAX_BATCH
#define MAX_SLOT KM_MAX_SLOT
#define STAGE (65536 + 256)     /* one TUN read: the largest super-packet the kernel hands a TUN */
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


/* ───────────────────────── per-fd state ───────────────────────── */

typedef struct {
  int fd;
  /* TUN read: a super-packet whose later segments did not fit the last call's slots */
  uint8_t *tstage;
  uint32_t tlen;
  km_vhdr th;
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
  int sz = KM_VNET_LEN;
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
      int w = km_split(&st->th, st->tstage + KM_VNET_LEN, st->tlen, st->tnext, buf + (size_t)n * slot, (size_t)slot, lens + n, (int)max - n, &total);
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
    if (r < KM_VNET_LEN + 1 || r >= STAGE) {
      ctr.tun_bad++;
      continue;
    }
    km_vhdr h;
    km_vhdr_read(st->tstage, &h);
    uint8_t *p = st->tstage + KM_VNET_LEN;
    uint32_t len = (uint32_t)r - KM_VNET_LEN;
    if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
      int done = km_complete_csum(&h, p, len);
      if (done < 0) {
        ctr.tun_bad++;
        continue;
      }
      ctr.tun_csum_completed += done;
      if (len > slot) {
        ctr.tun_too_big++;
        continue;
      }
      memcpy(buf + (size_t)n * slot, p, len);
      lens[n++] = len;
      continue;
    }
    int total = 0;
    int w = km_split(&h, p, len, 0, buf + (size_t)n * slot, (size_t)slot, lens + n, (int)max - n, &total);
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
      static const uint8_t zero[KM_VNET_LEN];
      struct iovec one[2] = {{(void *)zero, KM_VNET_LEN}, {(void *)(w->buf + w->offs[idx[k]]), w->lens[idx[k]]}};
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
  km_coalesce(buf, offs, lens, (int)count, emit_write, &w);
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
      uint32_t seg = km_gro_segment(st->ulen[k], st->ugso[k], st->uoff);
      if (seg == 0) {
        st->ucur++, st->uoff = 0;
        continue;
      }
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
      km_recv_cmsgs(h, &st->ugso[k], st->uloc[k], &st->uif[k]); /* UDP_GRO, IP[V6]_PKTINFO */
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
  if (!hb || !pb || hl != KM_VNET_LEN || slot <= 0 || slot > 65536 || pl > STAGE)
    return throw_code(env, "EINVAL", "offloadSplit(vnetHeader: 10 bytes, packet, slotSize?)");
  km_vhdr h;
  km_vhdr_read(hb, &h);
  napi_value arr, null;
  napi_get_null(env, &null);
  uint8_t *copy = malloc(pl ? pl : 1);
  if (!copy) return throw_code(env, "ENOMEM", "offloadSplit: out of memory");
  memcpy(copy, pb, pl);
  if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
    int done = pl == 0 ? -1 : km_complete_csum(&h, copy, pl);
    if (done > 0) ctr.tun_csum_completed++;
    if (done < 0 || pl > (size_t)slot) {
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
    int w = km_split(&h, copy, pl, done, out, (size_t)slot, lens, 7, &total);
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
  napi_create_arraybuffer(cc->env, KM_VNET_LEN, &d, &ab);
  memcpy(d, iov[0].iov_base, KM_VNET_LEN);
  napi_create_typedarray(cc->env, napi_uint8_array, KM_VNET_LEN, ab, 0, &hv);
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
  km_coalesce(flat, offs, lens, (int)count, emit_collect, &cc);
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
