/*
 * fd3exec: the optional compiled form of the fd-3 shim in lib/child.ts.
 *
 *   fd3exec PROGRAM [ARG ...]
 *
 * qmail-poppass starts it with the payload pipe on fd 0. It moves that pipe
 * onto fd 3, puts /dev/null on fd 0, makes itself the leader of a new
 * session (and so of a new process group, which the server kills as a
 * whole), then execs PROGRAM with its arguments and the environment
 * unchanged. fd 1 and fd 2 are left as they are.
 *
 * That is exactly what `/bin/sh -c 'exec 3<&0 </dev/null; exec "$@"'`
 * followed by util-linux setsid does, in one exec instead of three. Like
 * the shell, it exits 127 when PROGRAM does not exist and 126 when it
 * cannot be executed; it exits 111 (temporary failure) when it cannot set
 * up the descriptors or the session. Messages go to fd 2, which the server
 * logs.
 *
 * Build: cc -O2 -o fd3exec lib/fd3exec.c   (deno task helper)
 * Use:   qmail-poppass --fd3-helper /path/to/fd3exec ...
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Write "fd3exec: a b c d" and a newline to fd 2, as far as it goes. */
static void say(const char *a, const char *b, const char *c, const char *d) {
  const char *parts[] = {"fd3exec: ", a, b, c, d, "\n"};
  for (unsigned i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t left = strlen(parts[i]);
    const char *p = parts[i];
    while (left > 0) {
      ssize_t n = write(2, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      p += n;
      left -= (size_t)n;
    }
  }
}

static int fail(const char *what) {
  say(what, ": ", strerror(errno), "");
  return 111;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    say("usage: fd3exec PROGRAM [ARG ...]", "", "", "");
    return 111;
  }
  if (dup2(0, 3) != 3) return fail("cannot move fd 0 to fd 3");
  int null = open("/dev/null", O_RDONLY);
  if (null < 0) return fail("cannot open /dev/null");
  if (null != 0) {
    if (dup2(null, 0) != 0) return fail("cannot put /dev/null on fd 0");
    close(null);
  }
  if (setsid() < 0) return fail("cannot start a new session");
  execv(argv[1], argv + 1);
  int error = errno;
  say("cannot run ", argv[1], ": ", strerror(error));
  return error == ENOENT || error == ENOTDIR ? 127 : 126;
}
