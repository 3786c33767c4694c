/*
 * fd3exec: the optional compiled form of the fd-3 shim in child.ts.
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
 * Two builds of the same logic (packaging/build-fd3exec.sh makes both):
 *
 *   libc    cc -O2 -o fd3exec fd3exec.c          (any POSIX system)
 *   nolibc  -DFD3EXEC_NOLIBC, a static PIE without a C library
 *           (Linux on x86_64 and aarch64)
 *
 * The nolibc build makes its system calls itself: nothing runs before
 * main. On virtual machines, starting glibc (its CPU and cache probing
 * traps to the hypervisor) costs more than everything else fd3exec does.
 * It keeps no pointers in static data, because nobody would relocate them.
 */

#ifdef FD3EXEC_NOLIBC

#if defined(__x86_64__)
#define NR_write 1
#define NR_close 3
#define NR_execve 59
#define NR_setsid 112
#define NR_exit_group 231
#define NR_openat 257
#define NR_dup3 292
static long sys3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall"
                   : "=a"(r)
                   : "a"(n), "D"(a), "S"(b), "d"(c)
                   : "rcx", "r11", "memory");
  return r;
}
/* The kernel's initial stack: argc, argv..., NULL, envp..., NULL. */
__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "\txor %ebp, %ebp\n"
        "\tmov %rsp, %rdi\n"
        "\tand $-16, %rsp\n"
        "\tcall fd3exec_start\n"
        "\thlt\n");
#elif defined(__aarch64__)
#define NR_dup3 24
#define NR_openat 56
#define NR_close 57
#define NR_write 64
#define NR_exit_group 94
#define NR_setsid 157
#define NR_execve 221
static long sys3(long n, long a, long b, long c) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
  return x0;
}
__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "\tmov x29, #0\n"
        "\tmov x30, #0\n"
        "\tmov x0, sp\n"
        "\tbl fd3exec_start\n"
        "\tbrk #0\n");
#else
#error "FD3EXEC_NOLIBC is for Linux on x86_64 and aarch64; build without it"
#endif

#define E_INTR 4
#define E_NOENT 2
#define E_NOTDIR 20
#define AT_FDCWD (-100)
/* Each returns the result, or -errno. */
static long os_move(int from, int to) { return sys3(NR_dup3, from, to, 0); }
static long os_open_null(void) {
  return sys3(NR_openat, AT_FDCWD, (long)"/dev/null", 0 /* O_RDONLY */);
}
static long os_close(int fd) { return sys3(NR_close, fd, 0, 0); }
static long os_setsid(void) { return sys3(NR_setsid, 0, 0, 0); }
static long os_exec(char **argv, char **envp) {
  return sys3(NR_execve, (long)argv[0], (long)argv, (long)envp);
}
static long os_write(int fd, const char *p, unsigned long n) {
  return sys3(NR_write, fd, (long)p, (long)n);
}

#else /* the C library */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
extern char **environ;

#define E_INTR EINTR
#define E_NOENT ENOENT
#define E_NOTDIR ENOTDIR

static long result(long r) { return r < 0 ? -errno : r; }
static long os_move(int from, int to) { return result(dup2(from, to)); }
static long os_open_null(void) { return result(open("/dev/null", O_RDONLY)); }
static long os_close(int fd) { return result(close(fd)); }
static long os_setsid(void) { return result(setsid()); }
static long os_exec(char **argv, char **envp) {
  return result(execve(argv[0], argv, envp));
}
static long os_write(int fd, const char *p, unsigned long n) {
  return result(write(fd, p, n));
}
static const char *describe(long error) { return strerror((int)error); }

#endif

#ifdef FD3EXEC_NOLIBC
/* strerror's words for what execve and friends can say (Linux numbers). */
static const char *describe(long error) {
  switch (error) {
  case 2: return "No such file or directory";
  case 7: return "Argument list too long";
  case 8: return "Exec format error";
  case 12: return "Cannot allocate memory";
  case 13: return "Permission denied";
  case 20: return "Not a directory";
  case 21: return "Is a directory";
  case 24: return "Too many open files";
  case 26: return "Text file busy";
  case 40: return "Too many levels of symbolic links";
  default: return "Unexpected error";
  }
}
#endif

/* Write a string to fd 2, as far as it goes. */
static void put(const char *p) {
  unsigned long left = 0;
  while (p[left] != '\0') left++;
  while (left > 0) {
    long n = os_write(2, p, left);
    if (n == -E_INTR) continue;
    if (n <= 0) return;
    p += n;
    left -= (unsigned long)n;
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

static int fail(const char *what, long error) {
  say(what, ": ", describe(-error), "");
  return 111;
}

/* Set up the descriptors and the session, then exec; returns an exit code. */
static int run(int argc, char **argv, char **envp) {
  if (argc < 2) {
    say("usage: fd3exec PROGRAM [ARG ...]", "", "", "");
    return 111;
  }
  long r = os_move(0, 3);
  if (r < 0) return fail("cannot move fd 0 to fd 3", r);
  long null = os_open_null();
  if (null < 0) return fail("cannot open /dev/null", null);
  if (null != 0) {
    r = os_move((int)null, 0);
    if (r < 0) return fail("cannot put /dev/null on fd 0", r);
    os_close((int)null);
  }
  r = os_setsid();
  if (r < 0) return fail("cannot start a new session", r);
  r = os_exec(argv + 1, envp);
  say("cannot run ", argv[1], ": ", describe(-r));
  return r == -E_NOENT || r == -E_NOTDIR ? 127 : 126;
}

#ifdef FD3EXEC_NOLIBC
__attribute__((noreturn, used)) void fd3exec_start(long *stack) {
  int argc = (int)stack[0];
  char **argv = (char **)(stack + 1);
  int code = run(argc, argv, argv + argc + 1);
  for (;;) sys3(NR_exit_group, code, 0, 0);
}
#else
int main(int argc, char **argv) { return run(argc, argv, environ); }
#endif
