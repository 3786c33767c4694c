/*
 * poppassd_min: the C baseline of the qmail-poppass benchmarks.
 *
 * A minimal poppassd written for this project: the wire protocol of
 * doc/protocol.md §3 and the programs of §4, one session on fd 0/1
 * as under tcpserver. It forks and execs the checkpassword chain and the
 * PASSWORD_COMMAND program with the payload on a pipe at fd 3, /dev/null on
 * fd 0, our fd 2 on fd 1 and 2, each child in its own process group, and
 * waits for it. It is the cost floor of the process-per-connection design,
 * not a server to deploy: no child deadline, no syslog, PASSWORD_COMMAND
 * split on white space only.
 *
 * Usage: PASSWORD_COMMAND="setprog" poppassd_min hostname checkprog [sub...]
 * POPPASS_FAIL_DELAY=S sets the failure delay (default 5 s).
 *
 * Build: cc -O2 -o poppassd_min poppassd_min.c
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 512
#define PAYLOAD_MAX 512
#define SESSION_SECONDS 180

enum outcome { OK, REJECTED, TEMPORARY };

static const char *hostname;
static char **check_argv;
static char *set_argv[64];
static double fail_delay = 5.0;

static char inbuf[MAX_LINE + 2];
static size_t in_used;

/* Write all of s; a client that left ends the session quietly. */
static void say(const char *s) {
  size_t len = strlen(s);
  while (len > 0) {
    ssize_t n = write(1, s, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    s += n;
    len -= (size_t)n;
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleep until the failure delay, counted from the line's arrival, is over. */
static void fail_wait(double arrived) {
  double left = fail_delay - (now() - arrived);
  if (left <= 0) return;
  struct timespec ts = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/*
 * Read one line into line[0..*len) (LF and one CR before it dropped).
 * Returns 1 for a line, 0 at EOF (a partial last line is discarded),
 * -1 when the line is longer than MAX_LINE.
 */
static int read_line(char *line, size_t *len, double *arrived) {
  for (;;) {
    char *lf = memchr(inbuf, '\n', in_used);
    if (lf) {
      size_t n = (size_t)(lf - inbuf);
      size_t keep = n > 0 && inbuf[n - 1] == '\r' ? n - 1 : n;
      if (keep > MAX_LINE) return -1;
      memcpy(line, inbuf, keep);
      *len = keep;
      in_used -= n + 1;
      memmove(inbuf, lf + 1, in_used);
      *arrived = now();
      return 1;
    }
    if (in_used > MAX_LINE + 1) return -1;
    ssize_t r = read(0, inbuf + in_used, sizeof inbuf - in_used);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    in_used += (size_t)r;
  }
}

/* Run argv with payload on fd 3 and map its end to an outcome. */
static enum outcome run(char **argv, const char *payload, size_t len) {
  int p[2];
  if (pipe(p) < 0) return TEMPORARY;
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return TEMPORARY;
  }
  if (pid == 0) {
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    close(p[1]); /* p[0] < p[1], and both are above 2 */
    if (p[0] != 3) {
      dup2(p[0], 3);
      close(p[0]);
    }
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0) _exit(111);
    if (null != 0) close(null);
    dup2(2, 1); /* nothing a child prints may reach the client */
    execv(argv[0], argv);
    _exit(111);
  }
  close(p[0]);
  while (len > 0) { /* EPIPE (SIGPIPE is ignored): the child did not read */
    ssize_t n = write(p[1], payload, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    payload += n;
    len -= (size_t)n;
  }
  close(p[1]);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return TEMPORARY;
  }
  kill(-pid, SIGKILL); /* no grandchild outlives the run */
  if (WIFSIGNALED(status)) return TEMPORARY;
  int code = WEXITSTATUS(status);
  return code == 0 ? OK : code == 111 ? TEMPORARY : REJECTED;
}

/* Octets 0x21..0x7e only, 1..255 of them. */
static int valid_user(const char *s, size_t n) {
  if (n < 1 || n > 255) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x21 || c == 0x7f) return 0;
  }
  return 1;
}

/* At least one octet, no NUL (CR and LF cannot occur inside a line). */
static int valid_pass(const char *s, size_t n) {
  return n >= 1 && memchr(s, 0, n) == NULL && memchr(s, '\r', n) == NULL;
}

/* Append s[0..n) and a NUL to buf at *at. */
static void put(char *buf, size_t *at, const char *s, size_t n) {
  memcpy(buf + *at, s, n);
  *at += n;
  buf[(*at)++] = 0;
}

static void split_command(char *command) {
  size_t n = 0;
  for (char *w = strtok(command, " \t\n"); w && n < 63; w = strtok(NULL, " \t\n")) {
    set_argv[n++] = w;
  }
  set_argv[n] = NULL;
}

/* One log line on fd 2: "<before> <user> <after>", as the C original writes. */
static void note(const char *before, const char *user, size_t n, const char *after) {
  fprintf(stderr, "poppassd_min[%ld]: %s %.*s%s\n", (long)getpid(), before, (int)n, user, after);
}

int main(int argc, char **argv) {
  char *command = getenv("PASSWORD_COMMAND");
  if (argc < 3 || !command) {
    fprintf(stderr, "usage: PASSWORD_COMMAND=prog poppassd_min hostname checkprog [sub...]\n");
    say("500 Server misconfigured.\r\n");
    return 100;
  }
  hostname = argv[1];
  check_argv = argv + 2;
  split_command(command);
  if (!set_argv[0]) return 100;
  const char *delay = getenv("POPPASS_FAIL_DELAY");
  if (delay) fail_delay = atof(delay);
  signal(SIGPIPE, SIG_IGN);
  alarm(SESSION_SECONDS);

  char line[MAX_LINE + 1], user[256], old[MAX_LINE];
  size_t user_len = 0, old_len = 0, len;
  char payload[3 * MAX_LINE + 8];
  enum { WANT_USER, WANT_PASS, WANT_NEWPASS, DONE } state = WANT_USER;
  double arrived;

  say("200 ");
  say(hostname);
  say(" hello, who are you?\r\n");
  for (;;) {
    int r = read_line(line, &len, &arrived);
    if (r == 0) return 0;
    if (r < 0) {
      say("500 Line too long.\r\n");
      return 0;
    }
    char *sp = memchr(line, ' ', len);
    size_t verb_len = sp ? (size_t)(sp - line) : len;
    const char *arg = sp ? sp + 1 : line + len;
    size_t arg_len = sp ? len - verb_len - 1 : 0;
#define VERB(w) (verb_len == sizeof(w) - 1 && strncasecmp(line, w, verb_len) == 0)
    if (VERB("quit")) {
      say("200 Bye.\r\n");
      return 0;
    }
    if (state == WANT_USER) {
      if (!VERB("user") || !sp || !valid_user(arg, arg_len)) {
        say("500 Username required.\r\n");
        return 0;
      }
      memcpy(user, arg, arg_len);
      user_len = arg_len;
      say("200 Your password please.\r\n");
      state = WANT_PASS;
    } else if (state == WANT_PASS) {
      if (!VERB("pass") || !sp || !valid_pass(arg, arg_len)) {
        say("500 Password required.\r\n");
        return 0;
      }
      enum outcome o = REJECTED;
      size_t at = 0;
      if (user_len + arg_len + 4 <= PAYLOAD_MAX) {
        put(payload, &at, user, user_len);
        put(payload, &at, arg, arg_len);
        put(payload, &at, "", 0);
        put(payload, &at, "", 0);
        o = run(check_argv, payload, at);
      }
      memset(payload, 0, sizeof payload);
      if (o != OK) {
        note("authentication failed for", user, user_len, "");
        fail_wait(arrived);
        say(o == REJECTED ? "500 Old password is incorrect or user not found.\r\n"
                          : "500 Temporary failure, please try again later.\r\n");
        return 0;
      }
      memcpy(old, arg, arg_len);
      old_len = arg_len;
      say("200 Your new password please.\r\n");
      state = WANT_NEWPASS;
    } else if (state == WANT_NEWPASS) {
      if (!VERB("newpass") || !sp || !valid_pass(arg, arg_len)) {
        say("500 New Password required.\r\n");
        return 0;
      }
      enum outcome o = REJECTED;
      size_t at = 0;
      if (user_len + old_len + arg_len + 4 <= PAYLOAD_MAX) {
        put(payload, &at, user, user_len);
        put(payload, &at, old, old_len);
        put(payload, &at, "", 0);
        put(payload, &at, arg, arg_len);
        o = run(set_argv, payload, at);
      }
      memset(payload, 0, sizeof payload);
      memset(old, 0, sizeof old);
      if (o != OK) {
        note("Password change for", user, user_len, " failed");
        fail_wait(arrived);
        say("500 Password change failed.\r\n");
        return 0;
      }
      note("Password change for", user, user_len, " succeeded");
      say("200 Password changed, thank-you.\r\n");
      state = DONE;
    } else {
      say("500 Quit required.\r\n");
      return 0;
    }
    memset(line, 0, sizeof line);
  }
}
