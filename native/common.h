/*
 * Shared helpers for the addon's C files (keymesh.c: fds and batched I/O; aead.c: transport
 * AEAD; offload.c: TUN/UDP segmentation offloads). Everything here is static inline so each
 * file stands alone.
 */
#ifndef KEYMESH_COMMON_H
#define KEYMESH_COMMON_H
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "packet.h"

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, "ENAPI", "internal N-API call failed: " #call); \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

static inline napi_value throw_code(napi_env env, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  napi_throw_error(env, code, msg);
  return NULL;
}

/* The errno's own name ("ENETUNREACH"), so JavaScript gets a stable `code` for any failure. */
static inline const char *errno_code(int e) {
  const char *name = strerrorname_np(e);
  return name ? name : "EIO";
}

static inline int get_int(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

/* Data pointer and byte length of a typed array (Buffer included), with an expected element type. */
static inline void *typed(napi_env env, napi_value v, napi_typedarray_type want, size_t *count) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  napi_typedarray_type t;
  size_t len;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, &len, &data, &ab, &off) != napi_ok) return NULL;
  if (t != want && !(want == napi_uint8_array && t == napi_uint8_clamped_array)) return NULL;
  *count = len;
  return data;
}

static inline napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

/* A Uint8Array (a Buffer) holding a copy of len bytes. */
static inline napi_value make_bytes(napi_env env, const uint8_t *p, size_t len) {
  napi_value v;
  void *data;
  if (napi_create_buffer_copy(env, len, p, &data, &v) != napi_ok) return NULL;
  return v;
}

static inline void set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}


/*
 * The (fd, buf, offsets, lengths, count) arguments of the batched writers: packet i is
 * buf[offsets[i] .. +lengths[i]]. Every slice is checked before anything is written, so a misuse
 * error never leaves half a batch done. On misuse throws EINVAL naming `name` and returns 0.
 */
typedef struct {
  int64_t fd, count;
  uint8_t *buf;
  uint32_t *offs, *lens;
} km_packet_args;

static inline int km_parse_packet_args(napi_env env, napi_value *argv, size_t argc, int count_at, int64_t max_count, const char *name, km_packet_args *a) {
  size_t blen = 0, olen = 0, llen = 0;
  if ((int)argc <= count_at || !get_int(env, argv[0], &a->fd) || !get_int(env, argv[count_at], &a->count)) {
    throw_code(env, "EINVAL", "%s(fd, buf, offsets, lengths, …, count): missing or non-numeric arguments", name);
    return 0;
  }
  a->buf = typed(env, argv[1], napi_uint8_array, &blen);
  a->offs = typed(env, argv[2], napi_uint32_array, &olen);
  a->lens = typed(env, argv[3], napi_uint32_array, &llen);
  if (!a->buf || !a->offs || !a->lens || a->count < 0 || (max_count && a->count > max_count) || (size_t)a->count > olen || (size_t)a->count > llen) {
    throw_code(env, "EINVAL", "%s: bad arguments", name);
    return 0;
  }
  for (int64_t i = 0; i < a->count; i++)
    if ((size_t)a->offs[i] + a->lens[i] > blen) {
      throw_code(env, "EINVAL", "%s: packet %lld lies outside the buffer", name, (long long)i);
      return 0;
    }
  return 1;
}

/* ───────────── shared by the UDP receivers (udpRecvBatch, udpRecvBatchGro) ───────────── */

#define KM_MAX_BATCH 1024
#define KM_MAX_SLOT (1 << 20) /* bytes per packet slot: far above any MTU or 64 KiB GSO packet */

/*
 * The slot arguments of the batched readers (tunReadBatch[Vnet]: fd, buf, slotSize, lengths, max;
 * udpRecvBatch[Gro]: … addrs, ports, max, locals?, ifindexes?): packet i lands at buf[i * slot],
 * its length in lengths[i]. On misuse throws EINVAL naming `name` and returns 0.
 */
typedef struct {
  int64_t fd, slot, max;
  uint8_t *buf, *addrs, *locals;
  uint32_t *lens, *ifindexes;
  uint16_t *ports;
} km_recv_args;

static inline int km_parse_slot_args(napi_env env, napi_value *argv, size_t argc, int max_at, const char *name, km_recv_args *a) {
  size_t blen = 0, llen = 0;
  if ((int)argc <= max_at || !get_int(env, argv[0], &a->fd) || !get_int(env, argv[2], &a->slot) || !get_int(env, argv[max_at], &a->max)) {
    throw_code(env, "EINVAL", "%s(fd, buf, slotSize, lengths, …, maxPackets): missing or non-numeric arguments", name);
    return 0;
  }
  a->buf = typed(env, argv[1], napi_uint8_array, &blen);
  a->lens = typed(env, argv[3], napi_uint32_array, &llen);
  if (!a->buf || !a->lens || a->slot <= 0 || a->slot > KM_MAX_SLOT || a->max < 0 || a->max > KM_MAX_BATCH || (size_t)a->max > llen ||
      (size_t)(a->slot * a->max) > blen) {
    throw_code(env, "EINVAL", "%s: buffers too small for slotSize × maxPackets", name);
    return 0;
  }
  return 1;
}

/* The UDP receivers' arguments: the slots, then addrs/ports (and optionally where each arrived). */
static inline int km_parse_recv_args(napi_env env, napi_callback_info info, const char *name, km_recv_args *a) {
  size_t argc = 9;
  napi_value argv[9];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (!km_parse_slot_args(env, argv, argc, 6, name, a)) return 0;
  size_t alen = 0, plen = 0, loclen = 0, iflen = 0;
  a->addrs = typed(env, argv[4], napi_uint8_array, &alen);
  a->ports = typed(env, argv[5], napi_uint16_array, &plen);
  if (!a->addrs || !a->ports || (size_t)a->max > plen || (size_t)a->max * 16 > alen) {
    throw_code(env, "EINVAL", "%s: buffers too small for slotSize × maxPackets", name);
    return 0;
  }
  /* Optional: where each datagram arrived (local address, 16 bytes, and interface index). */
  a->locals = argc >= 9 ? typed(env, argv[7], napi_uint8_array, &loclen) : NULL;
  a->ifindexes = argc >= 9 ? typed(env, argv[8], napi_uint32_array, &iflen) : NULL;
  if (a->locals && a->ifindexes && ((size_t)a->max * 16 > loclen || (size_t)a->max > iflen)) {
    throw_code(env, "EINVAL", "%s: locals/ifindexes too small for maxPackets", name);
    return 0;
  }
  if (!a->locals || !a->ifindexes) a->locals = NULL, a->ifindexes = NULL;
  return 1;
}

/* UDP drop counters, one set for the plain and the offloaded paths (defined in keymesh.c). */
typedef struct {
  double udp_send_errors; /* datagrams the kernel refused (skipped) */
  double udp_truncated;   /* datagrams longer than the caller's slot (dropped) */
  double udp_so_errors;   /* queued socket errors (ICMP reports) consumed */
} km_udp_counters_t;
extern km_udp_counters_t km_udp_counters;

/*
 * The datagram sender behind udpSendBatch (gso = 0: one datagram per message, sendmmsg) and
 * udpSendBatchGso (gso = 1: runs to one destination as UDP_SEGMENT messages); offload.c.
 */
napi_value km_udp_send(napi_env env, napi_callback_info info, int gso, const char *name);

/* Each C file adds its functions to the addon's exports. */
void km_register_aead(napi_env env, napi_value exports);
void km_register_offload(napi_env env, napi_value exports);
void km_register_hash(napi_env env, napi_value exports);
void km_register_notify(napi_env env, napi_value exports);
/* offload.c: after TUNSETIFF with IFF_VNET_HDR, the TUN_F_* offloads obtained (0: none). */
unsigned km_offload_tun_setup(int fd);
/* offload.c: drop what is pending for an fd number that is being closed. */
void km_offload_forget(int fd);

#endif
