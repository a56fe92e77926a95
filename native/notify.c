/*
 * One datagram to a Unix socket path: what systemd's sd_notify(3) does with $NOTIFY_SOCKET
 * ("READY=1", "STOPPING=1", …), which Node cannot do itself (node:net has no datagram Unix
 * sockets). A path starting with '@' names an abstract socket (the '@' becomes a NUL byte), as
 * sd_notify reads it. No state: the socket is opened, used once and closed.
 */
#include "common.h"
#include <stddef.h>
#include <sys/un.h>
#include <unistd.h>

static napi_value unix_datagram_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t plen = 0;
  size_t mlen = 0;
  const uint8_t *msg = argc >= 2 ? typed(env, argv[1], napi_uint8_array, &mlen) : NULL;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || !msg)
    return throw_code(env, "EINVAL", "unixDatagramSend(path, bytes)");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  /* a path that fills the buffer may have been cut short: refuse it rather than send elsewhere */
  if (plen < 2 || plen >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@'))
    return throw_code(env, "EINVAL", "unixDatagramSend: \"%s\" is not an absolute or abstract ('@') socket name", path);
  memcpy(sa.sun_path, path, plen);
  socklen_t salen = offsetof(struct sockaddr_un, sun_path) + plen; /* abstract: exactly the name, no NUL */
  if (path[0] == '@') sa.sun_path[0] = '\0';
  else salen += 1;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_code(env, errno_code(errno), "unixDatagramSend: socket: %s", strerror(errno));
  ssize_t n = sendto(fd, msg, mlen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  int e = errno;
  close(fd);
  if (n < 0) return throw_code(env, errno_code(e), "unixDatagramSend %s: %s", path, strerror(e));
  return make_int(env, n);
}

void km_register_notify(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"unixDatagramSend", NULL, unix_datagram_send, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
