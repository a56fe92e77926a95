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

static inline void set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
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
/* offload.c: after TUNSETIFF with IFF_VNET_HDR, the TUN_F_* offloads obtained (0: none). */
unsigned km_offload_tun_setup(int fd);
/* offload.c: drop what is pending for an fd number that is being closed. */
void km_offload_forget(int fd);

#endif
