/*
 * fd3exec: the compiled form of the fd-3 shim of lib/stores/programs/command.ts.
 *
 *   fd3exec PROGRAM [ARG ...]
 *
 * qmail-poppass starts it with the payload pipe on fd 0. It moves that pipe
 * onto fd 3, puts /dev/null on fd 0, closes every descriptor above 3 (so
 * the program sees exactly fds 0 to 3, whatever the server inherited),
 * makes itself the leader of a new session (and so of a new process group,
 * which the server kills as a whole), and starts PROGRAM with its
 * arguments and the environment unchanged. fd 1 and fd 2 are left as they
 * are.
 *
 * Then it waits for PROGRAM and ends as it did: the same exit code, or
 * killed by the same signal. One exception: when PROGRAM exits 0 but left
 * part of the payload unread on fd 3, fd3exec says so on fd 2 and exits
 * 111 (temporary failure). A checkpassword program that accepts without
 * reading what it was asked to check must not count as a yes.
 *
 * Like the shell, it exits 127 when PROGRAM does not exist and 126 when it
 * cannot be executed; it exits 111 when it cannot set up the descriptors
 * or the session. Messages go to fd 2, which the server logs.
 *
 * Build: packaging/build-fd3exec.sh OUTPUT (cc -O2, any POSIX system;
 * FIONREAD and close_range are used where the system has them).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;

/* Write a string to fd 2, as far as it goes. */
static void put(const char *p) {
  size_t left = strlen(p);
  while (left > 0) {
    ssize_t n = write(2, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= (size_t)n;
  }
}

/* One line on fd 2: "fd3exec: " a b c d. */
static void say(const char *a, const char *b, const char *c, const char *d) {
  put("fd3exec: ");
  put(a);
  put(b);
  put(c);
  put(d);
  put("\n");
}

static int fail(const char *what, int error) {
  say(what, ": ", strerror(error), "");
  return 111;
}

/* Close every descriptor above 3. */
static void close_above_3(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 4U, ~0U, 0U) == 0) return;
#endif
  struct rlimit lim;
  long max = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY
                 ? (long)lim.rlim_cur
                 : 65536;
  for (long fd = 4; fd < max; fd++) close((int)fd);
}

/* End as a signal would have ended us; exit 111 if it does not. */
static int die_by(int sig) {
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none); /* no core file of fd3exec */
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, 0);
  raise(sig);
  return 111;
}

/* Set up the descriptors and the session, run PROGRAM; returns an exit code. */
static int run(int argc, char **argv) {
  if (argc < 2) {
    say("usage: fd3exec PROGRAM [ARG ...]", "", "", "");
    return 111;
  }
  if (dup2(0, 3) < 0) return fail("cannot move fd 0 to fd 3", errno);
  int null = open("/dev/null", O_RDONLY);
  if (null < 0) return fail("cannot open /dev/null", errno);
  if (null != 0) {
    if (dup2(null, 0) < 0) return fail("cannot put /dev/null on fd 0", errno);
    close(null);
  }
  close_above_3();
  if (setsid() < 0) return fail("cannot start a new session", errno);
  pid_t pid;
  int e = posix_spawn(&pid, argv[1], 0, 0, argv + 1, environ);
  if (e != 0) {
    say("cannot run ", argv[1], ": ", strerror(e));
    return e == ENOENT || e == ENOTDIR ? 127 : 126;
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail("cannot wait for the program", errno);
  }
  if (WIFSIGNALED(status)) return die_by(WTERMSIG(status));
  int code = WEXITSTATUS(status);
  if (code != 0) return code;
  int unread = 0;
#ifdef FIONREAD
  if (ioctl(3, FIONREAD, &unread) < 0) unread = 0;
#endif
  if (unread > 0) {
    say(argv[1], " exited 0 without reading fd 3 to its end", "", "");
    return 111;
  }
  return 0;
}

int main(int argc, char **argv) { return run(argc, argv); }
