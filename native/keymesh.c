/*
 * keymesh_native: the thin native edge of keymesh (see native-notes/).
 *
 * It opens and configures file descriptors (a TUN device, a dual-stack UDP socket), moves
 * packets between them and JavaScript-owned buffers in batches (read() loops, recvmmsg,
 * sendmmsg), and wakes JavaScript when an fd becomes readable (uv_poll). All protocol state and
 * logic stays in JavaScript: nothing here parses or decides anything about a packet.
 */
#include "common.h"
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BATCH KM_MAX_BATCH
#define MAX_POLLS 64
#define MAX_SLOT KM_MAX_SLOT

static struct {
  double tun_write_errors;
} counters;
km_udp_counters_t km_udp_counters;

/* ───────────────────────── helpers ───────────────────────── */

/* ───────────────────────── TUN ───────────────────────── */

/*
 * tunOpen(name: string, options?: { offload?: boolean }) → { fd, name, offload }
 * With offload: IFF_VNET_HDR, then TUNSETVNETHDRSZ and TUNSETOFFLOAD (offload.c), reported as
 * offload = { vnetHdr, csum, tso4, tso6, ecn, uso }. Without: offload = null.
 */
static napi_value tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ + 1] = {0};
  size_t nlen = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &nlen) != napi_ok) {
    return throw_code(env, "EINVAL", "tunOpen: expected an interface name string");
  }
  if (nlen >= IFNAMSIZ) return throw_code(env, "EINVAL", "interface name \"%s\" is too long (15 characters at most)", name);
  bool want_offload = false;
  napi_valuetype ot;
  if (argc >= 2 && napi_typeof(env, argv[1], &ot) == napi_ok && ot == napi_object) {
    napi_value v;
    bool has = false;
    if (napi_has_named_property(env, argv[1], "offload", &has) == napi_ok && has && napi_get_named_property(env, argv[1], "offload", &v) == napi_ok)
      napi_get_value_bool(env, v, &want_offload);
  }
  if (nlen > 0 && if_nametoindex(name) != 0) {
    return throw_code(env, "EBUSY", "interface %s already exists and is in use", name);
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO)
      return throw_code(env, "ENOTUN", "/dev/net/tun does not exist (is the tun module loaded? in a container, pass --device /dev/net/tun)");
    if (e == EACCES || e == EPERM)
      return throw_code(env, "EPERM", "creating a TUN device needs root or CAP_NET_ADMIN");
    return throw_code(env, errno_code(e), "open /dev/net/tun: %s", strerror(e));
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (want_offload ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, nlen);
  int setiff = ioctl(fd, TUNSETIFF, &ifr);
  if (setiff < 0 && errno == EINVAL && want_offload) {
    /* a kernel without IFF_VNET_HDR for TUN: a plain device, offload reported as null */
    want_offload = false;
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    setiff = ioctl(fd, TUNSETIFF, &ifr);
  }
  if (setiff < 0) {
    int e = errno;
    close(fd);
    if (e == EPERM || e == EACCES)
      return throw_code(env, "EPERM", "creating a TUN device needs root or CAP_NET_ADMIN");
    if (e == EBUSY) return throw_code(env, "EBUSY", "interface %s already exists and is in use", name);
    if (e == EINVAL) return throw_code(env, "EINVAL", "cannot create TUN interface \"%s\": invalid name or an interface of another type has it", name);
    return throw_code(env, errno_code(e), "TUNSETIFF %s: %s", name, strerror(e));
  }
  napi_value obj, nm, off;
  CHECK(napi_create_object(env, &obj));
  set_prop(env, obj, "fd", make_int(env, fd));
  CHECK(napi_create_string_utf8(env, ifr.ifr_name, NAPI_AUTO_LENGTH, &nm));
  set_prop(env, obj, "name", nm);
  if (want_offload) {
    unsigned f = km_offload_tun_setup(fd);
    napi_value b;
    CHECK(napi_create_object(env, &off));
    static const struct { const char *key; unsigned bits; } names[] = {
        {"csum", TUN_F_CSUM}, {"tso4", TUN_F_TSO4}, {"tso6", TUN_F_TSO6}, {"ecn", TUN_F_TSO_ECN}, {"uso", 0x20 | 0x40},
    };
    napi_get_boolean(env, true, &b);
    set_prop(env, off, "vnetHdr", b);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      napi_get_boolean(env, (f & names[i].bits) == names[i].bits, &b);
      set_prop(env, off, names[i].key, b);
    }
  } else {
    napi_get_null(env, &off);
  }
  set_prop(env, obj, "offload", off);
  return obj;
}

/* tunReadBatch(fd, buf, slotSize, lengths: Uint32Array, max) → count */
static napi_value tun_read_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  km_recv_args args;
  if (!km_parse_slot_args(env, argv, argc, 4, "tunReadBatch", &args)) return NULL;
  const int64_t fd = args.fd, slot = args.slot, max = args.max;
  uint8_t *buf = args.buf;
  uint32_t *lens = args.lens;
  int64_t n = 0;
  while (n < max) {
    ssize_t r = read((int)fd, buf + n * slot, (size_t)slot);
    if (r < 0) {
      if (errno == EINTR) continue;
      break; /* EAGAIN: drained; other errors: report what we have */
    }
    if (r == 0) break;
    lens[n++] = (uint32_t)r;
  }
  return make_int(env, n);
}

/* tunWriteBatch(fd, buf, offsets, lengths, count) → written */
static napi_value tun_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  km_packet_args p;
  if (!km_parse_packet_args(env, argv, argc, 4, 0, "tunWriteBatch", &p)) return NULL;
  const int64_t fd = p.fd, count = p.count;
  uint8_t *buf = p.buf;
  uint32_t *offs = p.offs, *lens = p.lens;
  int64_t done = 0;
  for (int64_t i = 0; i < count; i++) {
    ssize_t r;
    do r = write((int)fd, buf + offs[i], lens[i]);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN) break;
      counters.tun_write_errors++; /* the kernel refused this packet (e.g. EINVAL): skip it */
      continue;
    }
    done++;
  }
  return make_int(env, done);
}

/* ───────────────────────── UDP ───────────────────────── */

static void set_bufsize(int fd, int force_opt, int opt, int size) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &size, sizeof size) == 0) return;
  setsockopt(fd, SOL_SOCKET, opt, &size, sizeof size);
}

/* Path MTU is keymesh's business (src/core/pmtu.ts), not the kernel's: IP_PMTUDISC_PROBE sets DF on
 * every IPv4 datagram and never fragments one locally (IPv6 likewise), and — unlike IP_PMTUDISC_DO —
 * ignores the route's cached path MTU, so a probe larger than what an ICMP message once claimed can
 * still go out. A datagram larger than the interface's MTU fails with EMSGSIZE. The kernel still
 * learns path MTUs from ICMP (routeMtu() reads them) and queues those reports for udpErrors(). */
static void set_pmtu_probe(int fd) {
  int probe4 = IP_PMTUDISC_PROBE, probe6 = IPV6_PMTUDISC_PROBE;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &probe4, sizeof probe4);
  setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &probe6, sizeof probe6);
}

/* One UDP socket bound to `port` (dual-stack [::] if IPv6 works, else IPv4), configured as every
 * keymesh socket is. Returns the fd, or -1 with *err set (an errno) and *where naming the bind. */
static int open_udp(int64_t port, bool loopback, bool reuseport, int *family, int *err, const char **where) {
  int on = 1;
  *family = 6;
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    /* Report each datagram's destination address and arrival interface (the path's local end):
     * IPV6_RECVPKTINFO for IPv6, IP_PKTINFO for IPv4(-mapped) datagrams on this dual-stack socket. */
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
    /* ICMP errors (time exceeded for the NAT openers' TTL, and the rest) are queued on the
     * socket's error queue, which udpErrors() drains; see there. */
    setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on);
    setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on);
    set_pmtu_probe(fd);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_any;
    if (loopback) sa.sin6_addr.s6_addr[10] = sa.sin6_addr.s6_addr[11] = 0xff, sa.sin6_addr.s6_addr[12] = 127, sa.sin6_addr.s6_addr[15] = 1;
    sa.sin6_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      int e = errno;
      close(fd);
      if (e != EADDRNOTAVAIL && e != EAFNOSUPPORT) {
        *err = e, *where = "[::]";
        return -1;
      }
      fd = -1; /* IPv6 present but unusable: fall back to IPv4 */
    }
  }
  if (fd < 0) {
    *family = 4;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *err = errno, *where = "socket";
      return -1;
    }
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
    setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on);
    set_pmtu_probe(fd);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
    sa.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      int e = errno;
      close(fd);
      *err = e, *where = "0.0.0.0";
      return -1;
    }
  }
  return fd;
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/*
 * Handshakes apart from data, in the kernel. Two sockets share the port (SO_REUSEPORT) and a
 * classic BPF program on the group steers each datagram by its first byte, the WireGuard message
 * type: transport data (4) to socket 0, everything else to socket 1. A flood of handshake
 * messages then fills only socket 1's receive buffer, which the kernel drops from when full, and
 * never the one data arrives on. (The program runs with the UDP payload at offset 0; an empty
 * payload, which cannot be loaded, ends the program with 0: the data socket, which drops it.)
 */
static bool steer_by_type(int fd) {
  struct sock_filter code[] = {
      {BPF_LD | BPF_B | BPF_ABS, 0, 0, 0},   /* A = payload[0] */
      {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 4},  /* transport data? */
      {BPF_RET | BPF_K, 0, 0, 0},            /* socket 0: data */
      {BPF_RET | BPF_K, 0, 0, 1},            /* socket 1: handshakes and the rest */
  };
  struct sock_fprog prog = {sizeof code / sizeof code[0], code};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) == 0;
}

/* udpOpen(port[, loopbackOnly[, splitHandshakes]]) → { fd, hsFd, port, family }. loopbackOnly
 * binds to 127.0.0.1 (as ::ffff:127.0.0.1 on the dual-stack socket) instead of every address: a
 * socket the start-up warm-up talks to itself through, unreachable from any network.
 * splitHandshakes opens the pair above: fd gets transport data, hsFd everything else (-1 when
 * the kernel cannot steer: then fd gets all). The port is first bound alone, so a port in use
 * is still refused (EADDRINUSE) rather than shared. */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t port;
  if (argc < 1 || !get_int(env, argv[0], &port) || port < 0 || port > 65535)
    return throw_code(env, "EINVAL", "udpOpen: port must be 0–65535");
  bool loopback = false, split = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &loopback);
  if (argc >= 3) napi_get_value_bool(env, argv[2], &split);
  int family, err = 0;
  const char *where = "";
  int fd = open_udp(port, loopback, false, &family, &err, &where);
  if (fd < 0) {
    if (err == EADDRINUSE) return throw_code(env, "EADDRINUSE", "UDP port %lld is already in use", (long long)port);
    return throw_code(env, errno_code(err), "bind %s:%lld: %s", where, (long long)port, strerror(err));
  }
  int real = bound_port(fd);
  int hs = -1;
  if (split) {
    /* the port is ours (nobody else bound it): now the pair, sharing it */
    close(fd);
    int fam2;
    fd = open_udp(real, loopback, true, &family, &err, &where);
    hs = fd >= 0 ? open_udp(real, loopback, true, &fam2, &err, &where) : -1;
    if (fd < 0 || hs < 0 || fam2 != family || !steer_by_type(fd)) {
      if (hs >= 0) close(hs);
      if (fd >= 0) close(fd);
      hs = -1;
      fd = open_udp(real, loopback, false, &family, &err, &where);
      if (fd < 0) return throw_code(env, errno_code(err), "bind %s:%d: %s", where, real, strerror(err));
    }
  }
  set_bufsize(fd, SO_RCVBUFFORCE, SO_RCVBUF, 4 << 20);
  set_bufsize(fd, SO_SNDBUFFORCE, SO_SNDBUF, 4 << 20);
  /* the handshake socket: ~2,700 initiations queued at most (a burst; a few ms of triage); under a
   * flood the kernel drops the rest — handshakes only */
  if (hs >= 0) set_bufsize(hs, SO_RCVBUFFORCE, SO_RCVBUF, 2 << 20);
  napi_value obj;
  CHECK(napi_create_object(env, &obj));
  set_prop(env, obj, "fd", make_int(env, fd));
  set_prop(env, obj, "hsFd", make_int(env, hs));
  set_prop(env, obj, "port", make_int(env, real));
  set_prop(env, obj, "family", make_int(env, family));
  return obj;
}

/* packetPair() → [fd, fd]: a connected pair of non-blocking AF_UNIX SOCK_SEQPACKET sockets. Each
 * write is one message and each read returns one, as on a TUN device, so the TUN batch functions
 * work on either end: the start-up warm-up stands one in for a TUN device and plays the kernel
 * on the other. */
static napi_value packet_pair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
    return throw_code(env, errno_code(errno), "socketpair: %s", strerror(errno));
  for (int i = 0; i < 2; i++) set_bufsize(sv[i], SO_SNDBUFFORCE, SO_SNDBUF, 1 << 20);
  napi_value arr;
  CHECK(napi_create_array_with_length(env, 2, &arr));
  napi_set_element(env, arr, 0, make_int(env, sv[0]));
  napi_set_element(env, arr, 1, make_int(env, sv[1]));
  return arr;
}

/* udpSetMark(fd, mark): SO_MARK on outgoing packets (wg's fwmark), for policy routing. */
static napi_value udp_set_mark(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd, mark;
  if (argc < 2 || !get_int(env, argv[0], &fd) || !get_int(env, argv[1], &mark) || mark < 0 || mark > 0xffffffffLL)
    return throw_code(env, "EINVAL", "udpSetMark(fd, mark): mark must be a 32-bit number");
  uint32_t m = (uint32_t)mark;
  if (setsockopt((int)fd, SOL_SOCKET, SO_MARK, &m, sizeof m) < 0) {
    int e = errno;
    return throw_code(env, errno_code(e), "setting fwmark 0x%x: %s", m, strerror(e));
  }
  return NULL;
}

/* routeMtu(addr16, local16?, ifindex?) → the MTU the kernel knows for the route to addr (the
 * outgoing interface's MTU, or less when an ICMP message taught it a smaller path MTU), or 0 when
 * there is no route. A connected throwaway UDP socket is asked (IP_MTU / IPV6_MTU, which need a
 * connected socket); nothing is sent. With local16 (not all zero) the socket is bound to that source
 * first, with ifindex to that interface, so the route is the one the path's datagrams take. */
static napi_value route_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t alen = 0, llen = 0;
  uint8_t *a = argc >= 1 ? typed(env, argv[0], napi_uint8_array, &alen) : NULL;
  if (!a || alen < 16) return throw_code(env, "EINVAL", "routeMtu(addr16, local16?, ifindex?): addr16 must be 16 bytes");
  uint8_t *l = argc >= 2 ? typed(env, argv[1], napi_uint8_array, &llen) : NULL;
  int64_t ifindex = 0;
  if (argc >= 3) get_int(env, argv[2], &ifindex);
  int v4 = 1;
  for (int i = 0; i < 10; i++) v4 &= a[i] == 0;
  v4 &= a[10] == 0xff && a[11] == 0xff;
  int has_local = 0;
  if (l && llen >= 16)
    for (int i = 0; i < 16; i++) has_local |= l[i] != 0;
  int fd = socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_int(env, 0);
  if (ifindex > 0) {
    int ix = (int)ifindex;
    setsockopt(fd, SOL_SOCKET, SO_BINDTOIFINDEX, &ix, sizeof ix);
  }
  int mtu = 0;
  socklen_t ml = sizeof mtu;
  if (v4) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(9)};
    if (has_local) {
      struct sockaddr_in la = {.sin_family = AF_INET};
      memcpy(&la.sin_addr, l + 12, 4);
      bind(fd, (struct sockaddr *)&la, sizeof la);
    }
    memcpy(&sa.sin_addr, a + 12, 4);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &ml) < 0) mtu = 0;
  } else {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(9)};
    if (has_local) {
      struct sockaddr_in6 la = {.sin6_family = AF_INET6};
      memcpy(&la.sin6_addr, l, 16);
      la.sin6_scope_id = (uint32_t)ifindex;
      bind(fd, (struct sockaddr *)&la, sizeof la);
    }
    memcpy(&sa.sin6_addr, a, 16);
    sa.sin6_scope_id = (uint32_t)ifindex;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &ml) < 0) mtu = 0;
  }
  close(fd);
  return make_int(env, mtu);
}

/* udpSetTtl(fd, ttl): the IPv4 TTL and IPv6 hop limit of what the socket sends from now on; -1
 * restores the system default. The NAT openers (src/core/punch.ts) go out with a small TTL: far
 * enough to open our own NAT's mapping, not far enough to reach the peer's NAT. */
static napi_value udp_set_ttl(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd, ttl;
  if (argc < 2 || !get_int(env, argv[0], &fd) || !get_int(env, argv[1], &ttl) || ttl < -1 || ttl == 0 || ttl > 255)
    return throw_code(env, "EINVAL", "udpSetTtl(fd, ttl): ttl must be 1–255, or -1 for the default");
  int v = (int)ttl;
  /* Both: a dual-stack socket sends IPv4(-mapped) datagrams with IP_TTL, IPv6 with the hop limit. */
  int r4 = setsockopt((int)fd, IPPROTO_IP, IP_TTL, &v, sizeof v);
  int r6 = setsockopt((int)fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &v, sizeof v);
  if (r4 < 0 && r6 < 0) {
    int e = errno;
    return throw_code(env, errno_code(e), "setting TTL %d: %s", v, strerror(e));
  }
  return NULL;
}

/*
 * ICMP errors about datagrams we sent (IP_RECVERR / IPV6_RECVERR). The kernel queues them on the
 * socket's error queue and epoll reports POLLERR until it is empty, so the poll callback drains it
 * at once into this ring (bounded: when full, the oldest report is overwritten and counted), and
 * JavaScript takes them with udpErrors(fd) when told "SOERROR". A caller that ignores them costs
 * nothing but the ring.
 */
#define ICMP_RING 256 /* of km_icmp_report (packet.h) */
static km_icmp_report g_icmp[ICMP_RING];
static unsigned g_icmp_head, g_icmp_count;
static uint64_t g_icmp_overwritten;

static void drain_errqueue(int fd) {
  for (int i = 0; i < 4 * ICMP_RING; i++) {
    struct sockaddr_in6 dst;
    uint8_t data[64];
    uint8_t ctrl[512];
    struct iovec iov = {data, sizeof data};
    struct msghdr h;
    memset(&h, 0, sizeof h);
    h.msg_name = &dst;
    h.msg_namelen = sizeof dst;
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = ctrl;
    h.msg_controllen = sizeof ctrl;
    memset(&dst, 0, sizeof dst);
    ssize_t r = recvmsg(fd, &h, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      return; /* EAGAIN: the queue is empty */
    }
    km_icmp_report got[KM_ICMP_PER_MSG];
    int n = km_icmp_parse(&h, data, (size_t)r, got, KM_ICMP_PER_MSG);
    for (int k = 0; k < n; k++) {
      km_icmp_report *rep;
      if (g_icmp_count == ICMP_RING) {
        rep = &g_icmp[g_icmp_head];
        g_icmp_head = (g_icmp_head + 1) % ICMP_RING;
        g_icmp_overwritten++;
      } else {
        rep = &g_icmp[(g_icmp_head + g_icmp_count) % ICMP_RING];
        g_icmp_count++;
      }
      *rep = got[k];
      rep->fd = fd;
    }
  }
}

/*
 * udpErrors(fd) → [{ addr, port, offender, origin, type, code, info }]: the ICMP reports for fd
 * (its error queue drained first). addr and port (16-byte IPv6 or v4-mapped, as elsewhere) are
 * the destination of the datagram reported on, offender the router that reported it (null when
 * not given), origin SO_EE_ORIGIN_* (2 ICMP, 3 ICMPv6), type and code the ICMP ones, info the
 * ICMP's extra field (a next-hop MTU for "fragmentation needed"), payload the first (up to 16)
 * bytes of the reported datagram's payload as far as the ICMP quoted it. At most 64 per call; call again
 * while it returns 64.
 */
static napi_value udp_errors(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return throw_code(env, "EINVAL", "udpErrors(fd)");
  drain_errqueue((int)fd);
  napi_value arr;
  CHECK(napi_create_array(env, &arr));
  uint32_t n = 0;
  unsigned kept = 0;
  km_icmp_report keep[ICMP_RING];
  for (unsigned i = 0; i < g_icmp_count; i++) {
    km_icmp_report *rep = &g_icmp[(g_icmp_head + i) % ICMP_RING];
    if (rep->fd != (int)fd || n >= 64) {
      keep[kept++] = *rep;
      continue;
    }
    napi_value o;
    CHECK(napi_create_object(env, &o));
    set_prop(env, o, "addr", make_bytes(env, rep->addr, 16));
    set_prop(env, o, "port", make_int(env, rep->port));
    napi_value off;
    if (rep->has_offender) off = make_bytes(env, rep->offender, 16);
    else napi_get_null(env, &off);
    set_prop(env, o, "offender", off);
    set_prop(env, o, "origin", make_int(env, rep->origin));
    set_prop(env, o, "type", make_int(env, rep->type));
    set_prop(env, o, "code", make_int(env, rep->code));
    set_prop(env, o, "info", make_int(env, (int64_t)rep->info));
    set_prop(env, o, "payload", make_bytes(env, rep->payload, rep->payload_len));
    napi_set_element(env, arr, n++, o);
  }
  for (unsigned i = 0; i < kept; i++) g_icmp[i] = keep[i];
  g_icmp_head = 0;
  g_icmp_count = kept;
  return arr;
}

static struct mmsghdr g_msgs[MAX_BATCH];
static struct iovec g_iov[MAX_BATCH];
static struct sockaddr_in6 g_sa[MAX_BATCH];

/* udpRecvBatch(fd, buf, slotSize, lengths, addrs, ports, max) → count */
#define CTRL_LEN 128 /* IPV6_PKTINFO (40) + IP_PKTINFO (32) both arrive for IPv4 on a dual-stack socket */
static uint8_t g_ctrl[MAX_BATCH][CTRL_LEN];

static napi_value udp_recv_batch(napi_env env, napi_callback_info info) {
  km_recv_args args;
  if (!km_parse_recv_args(env, info, "udpRecvBatch", &args)) return NULL;
  const int64_t fd = args.fd, slot = args.slot, max = args.max;
  uint8_t *buf = args.buf, *addrs = args.addrs, *locals = args.locals;
  uint32_t *lens = args.lens, *ifindexes = args.ifindexes;
  uint16_t *ports = args.ports;
  for (int64_t i = 0; i < max; i++) {
    g_iov[i].iov_base = buf + i * slot;
    g_iov[i].iov_len = (size_t)slot;
    memset(&g_msgs[i].msg_hdr, 0, sizeof g_msgs[i].msg_hdr);
    g_msgs[i].msg_hdr.msg_name = &g_sa[i];
    g_msgs[i].msg_hdr.msg_namelen = sizeof g_sa[i];
    g_msgs[i].msg_hdr.msg_iov = &g_iov[i];
    g_msgs[i].msg_hdr.msg_iovlen = 1;
    g_msgs[i].msg_hdr.msg_control = g_ctrl[i];
    g_msgs[i].msg_hdr.msg_controllen = CTRL_LEN;
  }
  int r, tries = 0;
  for (;;) {
    r = recvmmsg((int)fd, g_msgs, (unsigned)max, MSG_DONTWAIT, NULL);
    if (r >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_int(env, 0);
    /* A queued socket error (an ICMP report: ECONNREFUSED, EHOSTUNREACH, ...) is returned once
     * instead of data, and returning it cleared it. Count it and read again: datagrams may be
     * queued behind it, and answering 0 would make the caller stop draining. */
    km_udp_counters.udp_so_errors++;
    if (++tries >= 4) return make_int(env, 0);
  }
  int64_t n = 0;
  for (int i = 0; i < r; i++) {
    if (g_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
      km_udp_counters.udp_truncated++;
      continue;
    }
    if (n != i) memmove(buf + n * slot, buf + (int64_t)i * slot, g_msgs[i].msg_len);
    lens[n] = g_msgs[i].msg_len;
    if (locals) km_recv_cmsgs(&g_msgs[i].msg_hdr, NULL, locals + n * 16, ifindexes + n); /* IP[V6]_PKTINFO */
    km_addr16((struct sockaddr *)&g_sa[i], addrs + n * 16, &ports[n]);
    n++;
  }
  return make_int(env, n);
}

/* udpSendBatch(fd, buf, offsets, lengths, addrs, ports, count, locals?, ifindexes?) → sent: one
 * message per datagram through sendmmsg; the same code as udpSendBatchGso with grouping off. */
static napi_value udp_send_batch(napi_env env, napi_callback_info info) { return km_udp_send(env, info, 0, "udpSendBatch"); }

/* ───────────────────────── polling ───────────────────────── */

/*
 * One uv_poll per fd, on the Node event loop of the environment that asked. Poll ids carry a
 * generation above the slot number (id = generation * MAX_POLLS + slot), so a stale id that
 * JavaScript stops twice can never stop a newer poll that reused the slot.
 */
typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
  napi_async_cleanup_hook_handle teardown;
  int fd;
  int slot;
  int closing;
  int64_t id;
} poll_t;

static poll_t *g_polls[MAX_POLLS];
static int64_t g_generation[MAX_POLLS];

/*
 * Lifetimes. Every poll holds an async cleanup hook on its environment from pollStart until libuv
 * has finished closing the handle. Node waits for such hooks before tearing an environment down
 * (and, in a worker thread, before unloading this addon), so on_closed below — code in this
 * addon — always still exists when libuv calls it. A plain cleanup hook is not enough: a
 * terminated worker would dlclose the addon and then run the pending close callback (SIGSEGV).
 */
static void on_closed(uv_handle_t *h) {
  poll_t *p = h->data;
  napi_remove_async_cleanup_hook(p->teardown);
  free(p);
}

/* Stop watching, drop the JavaScript callback and close the handle (freed once libuv is done). */
static void release(poll_t *p) {
  if (p->closing) return;
  p->closing = 1;
  g_polls[p->slot] = NULL;
  uv_poll_stop(&p->handle);
  napi_delete_reference(p->env, p->callback);
  napi_async_destroy(p->env, p->context);
  uv_close((uv_handle_t *)&p->handle, on_closed);
}

/* Call the JavaScript callback, with an error code string or with no argument. */
static void call_js(poll_t *p, const char *code) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, arg, result;
  if (napi_get_reference_value(env, p->callback, &fn) == napi_ok && fn) {
    size_t argc = 0;
    if (code && napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &arg) == napi_ok) argc = 1;
    napi_get_global(env, &recv); /* napi_make_callback needs an object receiver */
    napi_status s = napi_make_callback(env, p->context, recv, fn, argc, argc ? &arg : NULL, &result);
    if (s == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

/* Environment teardown (process exit, worker termination): close what JavaScript left open. */
static void on_teardown(napi_async_cleanup_hook_handle handle, void *arg) { release(arg); }

static void poll_cb(uv_poll_t *h, int status, int events) {
  poll_t *p = h->data;
  if (!p || g_polls[p->slot] != p) return;
  if (status < 0) {
    /*
     * libuv has already stopped this handle: it does so whenever epoll reports POLLERR. On a UDP
     * socket that means an ICMP error (port unreachable, ...) left SO_ERROR set; reading SO_ERROR
     * clears it, so poll again and let JavaScript drain as usual: one bad peer must not silence
     * the socket. On anything that is not a socket (a TUN fd whose interface was deleted) the
     * condition cannot be cleared and polling again would spin; the poll stays stopped and
     * JavaScript is told once, with the code "EPOLLERR".
     */
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0) {
      km_udp_counters.udp_so_errors++;
      drain_errqueue(p->fd);
      uv_poll_start(&p->handle, UV_READABLE, poll_cb);
      /* "SOERROR": ICMP reports (IP_RECVERR) were moved from the error queue to the ring, for
       * JavaScript to take with udpErrors(). */
      call_js(p, "SOERROR");
    } else {
      call_js(p, "EPOLLERR");
    }
    return;
  }
  call_js(p, NULL);
}

/* pollStart(fd, onReadable) → id */
static napi_value poll_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd;
  napi_valuetype t;
  if (argc < 2 || !get_int(env, argv[0], &fd) || fd < 0 || fd > INT32_MAX || napi_typeof(env, argv[1], &t) != napi_ok ||
      t != napi_function)
    return throw_code(env, "EINVAL", "pollStart(fd, onReadable)");
  int slot = -1;
  for (int i = 0; i < MAX_POLLS; i++) {
    if (g_polls[i] && g_polls[i]->fd == fd) return throw_code(env, "EEXIST", "pollStart: fd %lld is already polled", (long long)fd);
    if (!g_polls[i] && slot < 0) slot = i;
  }
  if (slot < 0) return throw_code(env, "EMFILE", "pollStart: more than %d polled fds", MAX_POLLS);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  poll_t *p = calloc(1, sizeof *p);
  if (!p) return throw_code(env, "ENOMEM", "pollStart: out of memory");
  if (napi_add_async_cleanup_hook(env, on_teardown, p, &p->teardown) != napi_ok) {
    free(p);
    return throw_code(env, "ENOMEM", "pollStart: cannot register a cleanup hook");
  }
  int e = uv_poll_init(loop, &p->handle, (int)fd);
  if (e != 0) {
    napi_remove_async_cleanup_hook(p->teardown);
    free(p);
    return throw_code(env, "EBADF", "pollStart: fd %lld cannot be polled: %s", (long long)fd, uv_strerror(e));
  }
  p->env = env;
  p->fd = (int)fd;
  p->slot = slot;
  p->id = ++g_generation[slot] * MAX_POLLS + slot;
  p->handle.data = p;
  napi_value name;
  napi_create_string_utf8(env, "keymesh:poll", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &p->context);
  napi_create_reference(env, argv[1], 1, &p->callback);
  g_polls[slot] = p;
  uv_poll_start(&p->handle, UV_READABLE, poll_cb);
  return make_int(env, p->id);
}

/* pollStop(id): unknown or already stopped ids are ignored. */
static napi_value poll_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t id;
  if (argc < 1 || !get_int(env, argv[0], &id)) return throw_code(env, "EINVAL", "pollStop(id)");
  if (id < 0) return NULL;
  poll_t *p = g_polls[id % MAX_POLLS];
  if (p && p->id == id) release(p);
  return NULL;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd;
  if (argc < 1 || !get_int(env, argv[0], &fd)) return throw_code(env, "EINVAL", "closeFd(fd)");
  for (int i = 0; i < MAX_POLLS; i++)
    if (g_polls[i] && g_polls[i]->fd == fd) release(g_polls[i]); /* out of epoll before the number is reused */
  km_offload_forget((int)fd); /* and nothing pending for the old file is handed to the next one */
  close((int)fd);
  return NULL;
}

static napi_value get_counters(napi_env env, napi_callback_info info) {
  napi_value obj, v;
  CHECK(napi_create_object(env, &obj));
  napi_create_double(env, counters.tun_write_errors, &v);
  set_prop(env, obj, "tunWriteErrors", v);
  napi_create_double(env, km_udp_counters.udp_send_errors, &v);
  set_prop(env, obj, "udpSendErrors", v);
  napi_create_double(env, km_udp_counters.udp_truncated, &v);
  set_prop(env, obj, "udpTruncated", v);
  napi_create_double(env, km_udp_counters.udp_so_errors, &v);
  set_prop(env, obj, "udpSoErrors", v);
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tunOpen", NULL, tun_open, NULL, NULL, NULL, napi_default, NULL},
      {"tunReadBatch", NULL, tun_read_batch, NULL, NULL, NULL, napi_default, NULL},
      {"tunWriteBatch", NULL, tun_write_batch, NULL, NULL, NULL, napi_default, NULL},
      {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_default, NULL},
      {"udpSetMark", NULL, udp_set_mark, NULL, NULL, NULL, napi_default, NULL},
      {"udpSetTtl", NULL, udp_set_ttl, NULL, NULL, NULL, napi_default, NULL},
      {"routeMtu", NULL, route_mtu, NULL, NULL, NULL, napi_default, NULL},
      {"udpErrors", NULL, udp_errors, NULL, NULL, NULL, napi_default, NULL},
      {"udpRecvBatch", NULL, udp_recv_batch, NULL, NULL, NULL, napi_default, NULL},
      {"udpSendBatch", NULL, udp_send_batch, NULL, NULL, NULL, napi_default, NULL},
      {"pollStart", NULL, poll_start, NULL, NULL, NULL, napi_default, NULL},
      {"pollStop", NULL, poll_stop, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"packetPair", NULL, packet_pair, NULL, NULL, NULL, napi_default, NULL},
      {"counters", NULL, get_counters, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  km_register_aead(env, exports);
  km_register_offload(env, exports);
  km_register_hash(env, exports);
  km_register_notify(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
