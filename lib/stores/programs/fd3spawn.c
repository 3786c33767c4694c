/*
 * fd3spawn: a long-lived starter of checkpassword and setpassword programs
 * for qmail-poppass in listen mode (--fd3-spawner).
 *
 *   fd3spawn        (requests on fd 0, replies on fd 1, own errors on fd 2)
 *
 * The server starts it once and sends it one request per program run. For
 * each, fd3spawn vforks, and the child makes itself the leader of a new
 * session (so of a new process group), takes a pipe holding the payload as
 * fd 3, /dev/null as fd 0 and two capturing pipes as fd 1 and fd 2, and
 * execs the program. fd3spawn writes the payload, collects the first KEEP
 * octets of each output stream, kills the whole group after the program
 * exits (or at its deadline), and replies with how it ended.
 *
 * Why: a Deno server starts a program by posix_spawn from a big process on
 * its only event-loop thread, with three pipes, and fd 3 needs one more
 * exec (fd3exec.c or /bin/sh). Here a small process vforks and execs
 * once, like a C poppassd does, and the server only writes and reads one
 * pipe each.
 *
 * Frames, integers in host byte order (both ends run on the same machine);
 * lib/stores/programs/fd3spawn.ts has the same constants under the same
 * names:
 *
 *   request  u32 size (of what follows), u32 id, u32 timeout_ms,
 *            u32 drain_ms, u32 keep, u32 argc, u32 envc, u32 payload_len,
 *            argc then envc NUL-terminated strings, payload octets
 *            (REQUEST_HEADER octets of fields after the size; a payload
 *            over PAYLOAD_MAX octets is a malformed request);
 *            the envc "NAME=value" strings are added to fd3spawn's own
 *            environment for the program
 *   reply    u32 size, u32 id, i32 how, i32 value, u32 delivered,
 *            u32 out_kept, u32 err_kept, u32 out_total, u32 err_total,
 *            out_kept octets, err_kept octets, message text (the rest)
 *            (REPLY_HEADER octets of fields after the size)
 *
 *   how      HOW_EXITED (value = code), HOW_SIGNALED (value = the signal's
 *            number), HOW_TIMEOUT (deadline passed), HOW_SPAWN_FAILED
 *            (could not start; the message says why)
 *   delivered  1 when the program left nothing of the payload unread on
 *            fd 3 (fd3spawn keeps a read end and asks FIONREAD after the
 *            exit), else 0: an exit 0 then does not count
 *
 * A program that cannot be executed is reported as the shell would: exit
 * 127 (not found) or 126, with "fd3spawn: cannot run PATH: reason" on its
 * fd 2. At end of input, fd3spawn lets the programs still running finish
 * (each within its deadline) and exits 0. When the server is gone (a reply
 * cannot be written) it kills every group it started and exits 0; on a
 * malformed request it does the same and exits 111.
 *
 * Each program sees exactly fds 0 to 3 (every other descriptor is closed
 * before the exec) and gets SIGKILL when fd3spawn dies (a parent-death
 * signal, set before the exec; the kernel drops it for a set-user-ID
 * program). While fd3spawn vforks, every signal is blocked, so no handler
 * runs in the child that shares its memory; the child only makes system
 * calls and execs or _exits.
 *
 * Build: packaging/build-fd3spawn.sh OUTPUT (Linux: prctl, FIONREAD).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The largest request accepted: a payload is at most 512 octets, and the
 * server sends short argument and environment lists. */
#define REQUEST_MAX (256 * 1024)
#define KEEP_MAX (64 * 1024)
/* checkpassword programs refuse more; so does fd3spawn (limits.ts). */
#define PAYLOAD_MAX 512
/* Octets of fixed fields after a frame's u32 size. */
#define REQUEST_HEADER 28
#define REPLY_HEADER 32

/* How a run ended (a reply's "how"). */
enum how {
  HOW_EXITED = 0,
  HOW_SIGNALED = 1,
  HOW_TIMEOUT = 2,
  HOW_SPAWN_FAILED = 3
};

struct stream {
  int fd;            /* -1 once closed */
  uint32_t kept;
  uint32_t total;    /* octets read, up to UINT32_MAX */
  char *buf;
};

struct run {
  struct run *next;
  uint32_t id;
  pid_t pid;         /* 0 once reaped */
  int status;
  int timed_out;
  int written;       /* the payload went into the pipe */
  int delivered;     /* and the program left none of it unread */
  int fd3;           /* our read end of the payload pipe, -1 once closed */
  uint32_t keep;
  uint32_t drain_ms; /* after the exit, how long to wait for the pipes to close */
  int64_t deadline;  /* ms, monotonic: the program's, then the drain's */
  struct stream out, err;
};

static struct run *runs;
static int dev_null = -1;
static long open_max = 1024; /* for closing descriptors without close_range */
extern char **environ;
static int wake[2] = {-1, -1};

static void stop_all(int code);

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_child(int sig) {
  int saved = errno;
  (void)sig;
  (void)!write(wake[1], "", 1);
  errno = saved;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void put32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* One reply frame on fd 1; a failed write means the server is gone. */
static void reply(uint32_t id, int32_t how, int32_t value, int delivered,
                  const struct stream *out, const struct stream *err,
                  const char *message) {
  uint32_t ok = out ? out->kept : 0, ek = err ? err->kept : 0;
  size_t mlen = message ? strlen(message) : 0;
  size_t size = REPLY_HEADER + ok + ek + mlen;
  char *frame = malloc(4 + size);
  if (!frame) _exit(111);
  put32(frame, (uint32_t)size);
  put32(frame + 4, id);
  put32(frame + 8, (uint32_t)how);
  put32(frame + 12, (uint32_t)value);
  put32(frame + 16, (uint32_t)delivered);
  put32(frame + 20, ok);
  put32(frame + 24, ek);
  put32(frame + 28, out ? out->total : 0);
  put32(frame + 32, err ? err->total : 0);
  char *body = frame + 4 + REPLY_HEADER;
  if (ok) memcpy(body, out->buf, ok);
  if (ek) memcpy(body + ok, err->buf, ek);
  if (mlen) memcpy(body + ok + ek, message, mlen);
  int failed = write_all(1, frame, 4 + size);
  /* The kept output may hold what a program echoed of a password. */
  memset(frame, 0, 4 + size);
  free(frame);
  if (failed) stop_all(0); /* the server is gone */
}

/* strerror's words for what execve can say: strerror itself may take a
 * lock or allocate (its locale), which a vfork child must not. */
static const char *exec_error(int e) {
  switch (e) {
  case ENOENT: return "No such file or directory";
  case E2BIG: return "Argument list too long";
  case ENOEXEC: return "Exec format error";
  case ENOMEM: return "Cannot allocate memory";
  case EACCES: return "Permission denied";
  case ENOTDIR: return "Not a directory";
  case EISDIR: return "Is a directory";
  case EMFILE: return "Too many open files";
  case ETXTBSY: return "Text file busy";
  case ELOOP: return "Too many levels of symbolic links";
  case EPERM: return "Operation not permitted";
  default: return "Unexpected error";
  }
}

static void child_fail(const char *path, int e) {
  const char *why = exec_error(e);
  (void)!write(2, "fd3spawn: cannot run ", 21);
  (void)!write(2, path, strlen(path));
  (void)!write(2, ": ", 2);
  (void)!write(2, why, strlen(why));
  (void)!write(2, "\n", 1);
  _exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
}

static void close_pair(int fd[2]) {
  for (int i = 0; i < 2; i++)
    if (fd[i] >= 0) close(fd[i]);
}

static void free_run(struct run *r) {
  if (!r) return;
  free(r->out.buf);
  free(r->err.buf);
  free(r);
}

/* In the vfork child: set up fds 0 to 3 and the session, exec argv. */
static void child(pid_t parent, const sigset_t *mask, int in, int out,
                  int err, char **argv, char **envp) {
  /* Ignored signals stay ignored across exec, SIGPIPE must not; our
   * SIGCHLD handler goes too, before signals are let in again. */
  signal(SIGPIPE, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  sigprocmask(SIG_SETMASK, mask, 0);
  /* Die with fd3spawn; if it died already, do not start. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) _exit(111);
  if (setsid() < 0 || dup2(dev_null, 0) < 0 || dup2(out, 1) < 0 ||
      dup2(err, 2) < 0 || dup2(in, 3) < 0)
    _exit(111);
  /* Exactly fds 0 to 3: nothing the server inherited reaches the program. */
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 4U, ~0U, 0U) != 0)
#endif
    for (long fd = 4; fd < open_max; fd++) close((int)fd);
  execve(argv[0], argv, envp);
  child_fail(argv[0], errno);
}

/* Start one program; replies at once when it cannot be started. */
static void start(uint32_t id, uint32_t timeout_ms, uint32_t drain_ms,
                  uint32_t keep,
                  char **argv, char **envp, const char *payload,
                  uint32_t payload_len) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (keep > KEEP_MAX) keep = KEEP_MAX;
  struct run *r = calloc(1, sizeof *r);
  pid_t pid = -1;
  int why = ENOMEM;
  if (r && !pipe2(in, O_CLOEXEC) && !pipe2(out, O_CLOEXEC) &&
      !pipe2(err, O_CLOEXEC) && (r->out.buf = malloc(keep + 1)) &&
      (r->err.buf = malloc(keep + 1))) {
    /* No handler may run in the child, which shares our memory. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid = vfork();
    if (pid == 0) child(parent, &old, in[0], out[1], err[1], argv, envp);
    why = errno;
    sigprocmask(SIG_SETMASK, &old, 0);
  } else if (errno) {
    why = errno;
  }
  if (pid < 0) {
    close_pair(in);
    close_pair(out);
    close_pair(err);
    free_run(r);
    reply(id, HOW_SPAWN_FAILED, 0, 0, 0, 0, strerror(why));
    return;
  }
  close(out[1]);
  close(err[1]);
  /* At most PAYLOAD_MAX octets (request() checks): the pipe takes them
   * without blocking, and we keep a read end (in[0]), so the write cannot
   * fail for want of a reader. What the program left unread is counted
   * when it has exited (reap). */
  r->written = write_all(in[1], payload, payload_len) == 0;
  close(in[1]);
  r->fd3 = in[0];
  r->id = id;
  r->pid = pid;
  r->keep = keep;
  r->drain_ms = drain_ms;
  r->deadline = now_ms() + timeout_ms;
  r->out.fd = out[0];
  r->err.fd = err[0];
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  r->next = runs;
  runs = r;
}

/* The program's environment: the request's "NAME=value" strings, then
 * ours without the names they set. */
static char **with_environ(char **add) {
  size_t n = 0, m = 0;
  while (add[n]) n++;
  while (environ[m]) m++;
  char **all = calloc(n + m + 1, sizeof *all);
  if (!all) return 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) all[k++] = add[i];
  for (size_t j = 0; j < m; j++) {
    const char *eq = strchr(environ[j], '=');
    size_t name = eq ? (size_t)(eq - environ[j]) + 1 : strlen(environ[j]);
    int replaced = 0;
    for (size_t i = 0; i < n && !replaced; i++)
      replaced = strncmp(add[i], environ[j], name) == 0;
    if (!replaced) all[k++] = environ[j];
  }
  return all;
}

/* Parse one request frame (size octets at p); 0 when malformed. */
static int request(char *p, uint32_t size) {
  if (size < REQUEST_HEADER) return 0;
  uint32_t id = get32(p), timeout_ms = get32(p + 4), drain_ms = get32(p + 8);
  uint32_t keep = get32(p + 12), argc = get32(p + 16), envc = get32(p + 20);
  uint32_t plen = get32(p + 24);
  char *end = p + size, *s = p + REQUEST_HEADER;
  if (argc < 1 || argc > 1024 || envc > 4096 || plen > PAYLOAD_MAX) return 0;
  if ((size_t)(end - s) < plen) return 0;
  char *strings_end = end - plen;
  char **argv = calloc(argc + 1, sizeof *argv);
  char **envp = calloc(envc + 1, sizeof *envp);
  int ok = argv && envp;
  for (uint32_t i = 0; ok && i < argc + envc; i++) {
    char *nul = memchr(s, 0, (size_t)(strings_end - s));
    if (!nul) {
      ok = 0;
      break;
    }
    if (i < argc) argv[i] = s;
    else envp[i - argc] = s;
    s = nul + 1;
  }
  if (ok && s != strings_end) ok = 0;
  char **merged = ok ? with_environ(envp) : 0;
  if (merged) start(id, timeout_ms, drain_ms, keep, argv, merged, strings_end,
                     plen);
  else if (ok) reply(id, HOW_SPAWN_FAILED, 0, 0, 0, 0, strerror(ENOMEM));
  free(argv);
  free(envp);
  free(merged);
  return ok;
}

static void kill_group(pid_t pid) {
  if (kill(-pid, SIGKILL) < 0 && errno == ESRCH) kill(pid, SIGKILL);
}

/* Read what is there; close the stream at end of file. */
static void drain(struct run *r, struct stream *st) {
  char scratch[4096];
  for (;;) {
    ssize_t n = read(st->fd, scratch, sizeof scratch);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      close(st->fd);
      st->fd = -1;
      break;
    }
    uint32_t room = r->keep - st->kept;
    uint32_t take = (uint32_t)n < room ? (uint32_t)n : room;
    memcpy(st->buf + st->kept, scratch, take);
    st->kept += take;
    /* A flood of 4 GiB and more is reported as 4 GiB less one octet. */
    st->total = (uint32_t)n > UINT32_MAX - st->total ? UINT32_MAX
                                                     : st->total + (uint32_t)n;
  }
  memset(scratch, 0, sizeof scratch);
}

static void finish(struct run **link) {
  struct run *r = *link;
  for (struct stream *st = &r->out; st; st = st == &r->out ? &r->err : 0)
    if (st->fd >= 0) close(st->fd);
  int st = r->status;
  if (r->fd3 >= 0) close(r->fd3);
  if (r->timed_out) reply(r->id, HOW_TIMEOUT, 0, 0, &r->out, &r->err, 0);
  else if (WIFSIGNALED(st))
    reply(r->id, HOW_SIGNALED, WTERMSIG(st), 0, &r->out, &r->err, 0);
  else
    reply(r->id, HOW_EXITED, WEXITSTATUS(st), r->delivered, &r->out, &r->err,
          0);
  memset(r->out.buf, 0, r->keep);
  memset(r->err.buf, 0, r->keep);
  free(r->out.buf);
  free(r->err.buf);
  *link = r->next;
  free(r);
}

static void reap(void) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (struct run *r = runs; r; r = r->next) {
      if (r->pid != pid) continue;
      r->pid = 0;
      r->status = status;
      /* Read to the end: nothing of the payload is left in the pipe. */
      int unread = 0;
      if (ioctl(r->fd3, FIONREAD, &unread) < 0) unread = 1;
      r->delivered = r->written && unread == 0;
      close(r->fd3);
      r->fd3 = -1;
      /* Whatever it left behind in its group goes too. */
      kill(-pid, SIGKILL);
      r->deadline = now_ms() + r->drain_ms;
      break;
    }
  }
}

static void stop_all(int code) {
  for (struct run *r = runs; r; r = r->next)
    if (r->pid) kill_group(r->pid);
  _exit(code);
}

int main(void) {
  size_t cap = 64 * 1024, used = 0;
  char *in = malloc(cap);
  struct pollfd *fds = 0;
  size_t nfds_cap = 0;
  /* Keep fds 0 to 3 taken, so that no pipe made later is one of the
   * descriptors the children's are moved to. */
  int low = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (low >= 0) dev_null = fcntl(low, F_DUPFD_CLOEXEC, 4);
  if (!in || dev_null < 0 || pipe2(wake, O_CLOEXEC | O_NONBLOCK)) return 111;
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
    open_max = (long)lim.rlim_cur;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, 0);
  signal(SIGPIPE, SIG_IGN);
  int input_open = 1;
  for (;;) {
    size_t n = 0, need = 2;
    for (struct run *r = runs; r; r = r->next) need += 2;
    if (need > nfds_cap) {
      nfds_cap = need * 2;
      fds = realloc(fds, nfds_cap * sizeof *fds);
      if (!fds) stop_all(111);
    }
    fds[n++] = (struct pollfd){.fd = input_open ? 0 : -1, .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = wake[0], .events = POLLIN};
    int64_t now = now_ms(), soonest = -1;
    for (struct run *r = runs; r; r = r->next) {
      fds[n++] = (struct pollfd){.fd = r->out.fd, .events = POLLIN};
      fds[n++] = (struct pollfd){.fd = r->err.fd, .events = POLLIN};
      int64_t left = r->deadline > now ? r->deadline - now : 0;
      if (soonest < 0 || left < soonest) soonest = left;
    }
    if (poll(fds, n, soonest > INT32_MAX ? INT32_MAX : (int)soonest) < 0 &&
        errno != EINTR)
      stop_all(111);
    if (fds[1].revents) {
      char sink[64];
      while (read(wake[0], sink, sizeof sink) > 0) {
      }
      reap();
    }
    size_t i = 2;
    for (struct run *r = runs; r; r = r->next, i += 2) {
      if (r->out.fd >= 0 && fds[i].revents) drain(r, &r->out);
      if (r->err.fd >= 0 && fds[i + 1].revents) drain(r, &r->err);
    }
    now = now_ms();
    for (struct run **link = &runs; *link;) {
      struct run *r = *link;
      if (r->pid && now >= r->deadline) {
        r->timed_out = 1;
        kill_group(r->pid);
        /* reaped on SIGCHLD; the drain deadline starts then */
        r->deadline = now + r->drain_ms;
      }
      int drained = r->out.fd < 0 && r->err.fd < 0;
      if (!r->pid && (drained || now >= r->deadline)) finish(link);
      else link = &r->next;
    }
    if (input_open && fds[0].revents) {
      if (used == cap) stop_all(111);
      ssize_t got = read(0, in + used, cap - used);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        input_open = 0;
      } else {
        used += (size_t)got;
        for (;;) {
          if (used < 4) break;
          uint32_t size = get32(in);
          if (size > REQUEST_MAX) stop_all(111);
          if (4 + (size_t)size > cap) {
            cap = 4 + (size_t)size;
            in = realloc(in, cap);
            if (!in) stop_all(111);
          }
          if (used < 4 + (size_t)size) break;
          if (!request(in + 4, size)) stop_all(111);
          memset(in, 0, 4 + size);
          memmove(in, in + 4 + size, used - 4 - size);
          used -= 4 + size;
        }
      }
    }
    if (!input_open && !runs) return 0;
  }
}
