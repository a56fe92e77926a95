/*
 * An experiment (KEYMESH_SEAL_THREAD=1): the sending direction's AEAD and sendmmsg on a native
 * worker thread, so the JS thread can read, route and assign counters for batch k+1 while this
 * thread seals and sends batch k. The engine still chooses peer, keypair and counters on the JS
 * thread; the runtime only hands over "seal these packets with this key copy from this counter,
 * then send this out-queue".
 *
 * Two units (one per TUN buffer set of the runtime, double buffering). A unit's state lives in a
 * JS-visible Int32Array (SharedArrayBuffer), state[set]: 1 from submit until this thread is done
 * with the set (sealed and sent), then 0 (a release store), so the JS thread checks it with
 * Atomics.load and calls sealThreadWait only when it must block. Units are handled in submit order.
 *
 *   sealThreadStart(state)                   one thread per process; state: Int32Array(≥ 2), shared
 *   sealThreadSubmit(set, fd, gso, buf, keys, his, los, jobCounts, jobs, sealOffs, sealLens,
 *                    offs, lens, addrs, ports, locals, ifindexes, count)
 *       job j: jobCounts[j] packets, whose (offset, padded length) are the next entries of
 *       sealOffs/sealLens, sealed in buf under keys[32j..] with counters from (his[j], los[j]);
 *       then datagrams buf[offs[i] .. +lens[i]] go to addrs/ports[i] (local end locals/ifindexes[i])
 *       as udpSendBatch(Gso) would send them. Everything is checked here, on the JS thread. The
 *       typed arrays must stay alive and untouched until state[set] is 0 again (the runtime keeps
 *       them preallocated for its lifetime).
 *   sealThreadWait(set)                      block until set (-1: every set) is idle
 *   sealThreadStop()                         finish what was submitted, join the thread
 *   sealThreadStats()                        { units, datagrams, sent, sealFailures, waits }
 *
 * Counters of the sends (errors, GSO) are kept here and folded into the addon's process-wide
 * counters by the JS thread (at submit, wait, stats and stop), so only one thread writes those.
 */
#include "common.h"

#include <pthread.h>
#include <stdlib.h>
#include <openssl/evp.h>

#define SETS 2
#define TAG_LEN 16

typedef struct {
  int fd;
  int *gso_off; /* NULL: plain sendmmsg */
  uint8_t *buf;
  uint8_t *keys;
  const uint32_t *his, *los, *jcounts, *soffs, *slens;
  uint32_t njobs;
  const uint32_t *offs, *lens, *ifx;
  const uint8_t *addrs, *locals;
  const uint16_t *ports;
  int count;
} unit_t;

static struct {
  int running;
  pthread_t tid;
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  int stop;
  int queue[SETS], qhead, qn;
  unit_t units[SETS];
  int32_t *state; /* JS-visible: state[set] */
  napi_ref state_ref;
  EVP_CIPHER_CTX *ctx;
  km_udp_scratch *scratch;
  km_udp_send_stats pending; /* not yet folded into the globals (under mu) */
  double units_done, datagrams, sent, seal_failures, waits;
  napi_env env;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void run_unit(unit_t *u, km_udp_send_stats *st, double *sent, double *fail) {
  uint32_t at = 0;
  for (uint32_t j = 0; j < u->njobs; j++) {
    if (!km_aead_seal(T.ctx, u->keys + 32 * j, u->his[j], u->los[j], u->buf, u->soffs + at, u->slens + at, u->jcounts[j])) {
      /* Never send a half-sealed batch: drop the whole unit (counted). */
      *fail += 1;
      memset(u->keys, 0, 32 * (size_t)u->njobs);
      return;
    }
    at += u->jcounts[j];
  }
  memset(u->keys, 0, 32 * (size_t)u->njobs); /* the key copies are not needed any more */
  if (u->count > 0)
    *sent += (double)km_udp_send_core(T.scratch, u->fd, u->gso_off, u->buf, u->offs, u->lens, u->addrs, u->ports, u->locals, u->ifx,
                                      u->count, st);
}

static void *thread_main(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&T.mu);
    while (T.qn == 0 && !T.stop) pthread_cond_wait(&T.work, &T.mu);
    if (T.qn == 0) { /* stop, and nothing left */
      pthread_mutex_unlock(&T.mu);
      return NULL;
    }
    int set = T.queue[T.qhead];
    T.qhead = (T.qhead + 1) % SETS, T.qn--;
    pthread_mutex_unlock(&T.mu);

    km_udp_send_stats st = {0};
    double sent = 0, fail = 0;
    run_unit(&T.units[set], &st, &sent, &fail);

    pthread_mutex_lock(&T.mu);
    T.pending.send_errors += st.send_errors, T.pending.gso_sends += st.gso_sends;
    T.pending.gso_segments += st.gso_segments, T.pending.gso_fallbacks += st.gso_fallbacks;
    T.units_done++, T.datagrams += T.units[set].count, T.sent += sent, T.seal_failures += fail;
    __atomic_store_n(&T.state[set], 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&T.done);
    pthread_mutex_unlock(&T.mu);
  }
}

/* JS thread, with mu held: move the thread's send counts into the process-wide counters. */
static void fold_locked(void) {
  km_udp_add_stats(&T.pending);
  memset(&T.pending, 0, sizeof T.pending);
}

static void stop_thread(void) {
  if (!T.running) return;
  pthread_mutex_lock(&T.mu);
  T.stop = 1;
  pthread_cond_signal(&T.work);
  pthread_mutex_unlock(&T.mu);
  pthread_join(T.tid, NULL);
  pthread_mutex_lock(&T.mu);
  fold_locked();
  pthread_mutex_unlock(&T.mu);
  T.running = 0;
  EVP_CIPHER_CTX_free(T.ctx);
  km_udp_scratch_free(T.scratch);
  T.ctx = NULL, T.scratch = NULL, T.state = NULL;
}

static void cleanup_hook(void *arg) {
  (void)arg;
  stop_thread(); /* the environment is going away: no N-API calls here */
  T.state_ref = NULL;
}

static napi_value seal_thread_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t n = 0;
  int32_t *state = argc >= 1 ? typed(env, argv[0], napi_int32_array, &n) : NULL;
  if (!state || n < SETS) return throw_code(env, "EINVAL", "sealThreadStart(state: Int32Array(>= %d))", SETS);
  if (T.running) return throw_code(env, "EBUSY", "sealThreadStart: the seal thread is already running");
  EVP_CIPHER_CTX *ctx = km_aead_thread_ctx(env);
  if (!ctx) return NULL; /* exception pending */
  km_udp_scratch *scratch = km_udp_scratch_new();
  if (!scratch) {
    EVP_CIPHER_CTX_free(ctx);
    return throw_code(env, "ENOMEM", "sealThreadStart: out of memory");
  }
  CHECK(napi_create_reference(env, argv[0], 1, &T.state_ref));
  for (int s = 0; s < SETS; s++) state[s] = 0;
  T.state = state, T.ctx = ctx, T.scratch = scratch, T.stop = 0, T.qhead = T.qn = 0, T.env = env;
  int e = pthread_create(&T.tid, NULL, thread_main, NULL);
  if (e) {
    EVP_CIPHER_CTX_free(ctx);
    km_udp_scratch_free(scratch);
    napi_delete_reference(env, T.state_ref);
    T.state_ref = NULL;
    return throw_code(env, errno_code(e), "sealThreadStart: pthread_create: %s", strerror(e));
  }
  pthread_setname_np(T.tid, "km-seal"); /* visible in top -H, perf and /proc/PID/task */
  T.running = 1;
  napi_add_env_cleanup_hook(env, cleanup_hook, NULL);
  return NULL;
}

static napi_value seal_thread_stop(napi_env env, napi_callback_info info) {
  if (!T.running) return NULL;
  stop_thread();
  napi_remove_env_cleanup_hook(env, cleanup_hook, NULL);
  if (T.state_ref) napi_delete_reference(env, T.state_ref);
  T.state_ref = NULL;
  return NULL;
}

#define U32(i, name)                                                        \
  uint32_t *name = typed(env, argv[i], napi_uint32_array, &len_##name);    \
  if (!name) return throw_code(env, "EINVAL", "sealThreadSubmit: " #name " must be a Uint32Array")

static napi_value seal_thread_submit(napi_env env, napi_callback_info info) {
  size_t argc = 18;
  napi_value argv[18];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t set, fd, gso, njobs, count;
  if (argc < 18 || !get_int(env, argv[0], &set) || !get_int(env, argv[1], &fd) || !get_int(env, argv[2], &gso) ||
      !get_int(env, argv[8], &njobs) || !get_int(env, argv[17], &count))
    return throw_code(env, "EINVAL", "sealThreadSubmit(set, fd, gso, buf, keys, his, los, jobCounts, jobs, sealOffs, sealLens, offs, lens, addrs, ports, locals, ifindexes, count)");
  if (!T.running) return throw_code(env, "EINVAL", "sealThreadSubmit: the seal thread is not running");
  if (set < 0 || set >= SETS) return throw_code(env, "EINVAL", "sealThreadSubmit: bad set");
  size_t blen = 0, klen = 0, alen = 0, loclen = 0, plen = 0;
  size_t len_his = 0, len_los = 0, len_jcounts = 0, len_soffs = 0, len_slens = 0, len_offs = 0, len_lens = 0, len_ifx = 0;
  uint8_t *buf = typed(env, argv[3], napi_uint8_array, &blen);
  uint8_t *keys = typed(env, argv[4], napi_uint8_array, &klen);
  U32(5, his);
  U32(6, los);
  U32(7, jcounts);
  U32(9, soffs);
  U32(10, slens);
  U32(11, offs);
  U32(12, lens);
  uint8_t *addrs = typed(env, argv[13], napi_uint8_array, &alen);
  uint16_t *ports = typed(env, argv[14], napi_uint16_array, &plen);
  uint8_t *locals = typed(env, argv[15], napi_uint8_array, &loclen);
  U32(16, ifx);
  if (!buf || !keys || !addrs || !ports || !locals || njobs < 0 || count < 0 || count > KM_MAX_BATCH || (size_t)njobs * 32 > klen ||
      (size_t)njobs > len_his || (size_t)njobs > len_los || (size_t)njobs > len_jcounts || (size_t)count > len_offs ||
      (size_t)count > len_lens || (size_t)count * 16 > alen || (size_t)count > plen || (size_t)count * 16 > loclen || (size_t)count > len_ifx)
    return throw_code(env, "EINVAL", "sealThreadSubmit: bad arguments");
  uint64_t total = 0;
  for (int64_t j = 0; j < njobs; j++) total += jcounts[j];
  if (total > len_soffs || total > len_slens) return throw_code(env, "EINVAL", "sealThreadSubmit: more sealed packets than sealOffs/sealLens hold");
  for (uint64_t i = 0; i < total; i++)
    if ((uint64_t)soffs[i] + slens[i] + TAG_LEN > blen) return throw_code(env, "EINVAL", "sealThreadSubmit: sealed packet %llu lies outside the buffer", (unsigned long long)i);
  for (int64_t i = 0; i < count; i++)
    if ((uint64_t)offs[i] + lens[i] > blen) return throw_code(env, "EINVAL", "sealThreadSubmit: datagram %lld lies outside the buffer", (long long)i);
  if (__atomic_load_n(&T.state[set], __ATOMIC_ACQUIRE) != 0) return throw_code(env, "EBUSY", "sealThreadSubmit: set %lld is still busy", (long long)set);
  unit_t *u = &T.units[set];
  *u = (unit_t){.fd = (int)fd, .gso_off = gso ? km_udp_gso_flag((int)fd) : NULL, .buf = buf, .keys = keys, .his = his, .los = los,
                .jcounts = jcounts, .soffs = soffs, .slens = slens, .njobs = (uint32_t)njobs, .offs = offs, .lens = lens, .ifx = ifx,
                .addrs = addrs, .locals = locals, .ports = ports, .count = (int)count};
  pthread_mutex_lock(&T.mu);
  fold_locked();
  __atomic_store_n(&T.state[set], 1, __ATOMIC_RELAXED);
  T.queue[(T.qhead + T.qn) % SETS] = (int)set, T.qn++;
  pthread_cond_signal(&T.work);
  pthread_mutex_unlock(&T.mu);
  return NULL;
}

static napi_value seal_thread_wait(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t set = -1;
  if (argc >= 1 && !get_int(env, argv[0], &set)) return throw_code(env, "EINVAL", "sealThreadWait(set)");
  if (!T.running) return NULL;
  pthread_mutex_lock(&T.mu);
  int blocked = 0;
  for (int s = 0; s < SETS; s++) {
    if (set >= 0 && s != set) continue;
    while (__atomic_load_n(&T.state[s], __ATOMIC_ACQUIRE) != 0) {
      blocked = 1;
      pthread_cond_wait(&T.done, &T.mu);
    }
  }
  T.waits += blocked;
  fold_locked();
  pthread_mutex_unlock(&T.mu);
  return NULL;
}

static napi_value seal_thread_stats(napi_env env, napi_callback_info info) {
  napi_value obj;
  CHECK(napi_create_object(env, &obj));
  pthread_mutex_lock(&T.mu);
  if (T.running) fold_locked();
  double v[5] = {T.units_done, T.datagrams, T.sent, T.seal_failures, T.waits};
  pthread_mutex_unlock(&T.mu);
  set_prop(env, obj, "running", make_int(env, T.running));
  set_prop(env, obj, "units", make_int(env, (int64_t)v[0]));
  set_prop(env, obj, "datagrams", make_int(env, (int64_t)v[1]));
  set_prop(env, obj, "sent", make_int(env, (int64_t)v[2]));
  set_prop(env, obj, "sealFailures", make_int(env, (int64_t)v[3]));
  set_prop(env, obj, "waits", make_int(env, (int64_t)v[4]));
  return obj;
}

void km_register_seal_thread(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sealThreadStart", NULL, seal_thread_start, NULL, NULL, NULL, napi_default, NULL},
      {"sealThreadSubmit", NULL, seal_thread_submit, NULL, NULL, NULL, napi_default, NULL},
      {"sealThreadWait", NULL, seal_thread_wait, NULL, NULL, NULL, napi_default, NULL},
      {"sealThreadStop", NULL, seal_thread_stop, NULL, NULL, NULL, napi_default, NULL},
      {"sealThreadStats", NULL, seal_thread_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
