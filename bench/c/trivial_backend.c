/*
 * trivial_backend: the back end for qmail-poppass benchmarks. It plays both
 * checkpassword and setpassword: it reads the fd-3 payload to EOF and exits
 * 0, so a benchmark measures the server and not a password database.
 *
 * One exception makes the failing-password mode possible against the same
 * server: when the second field of the payload (the old password) is
 * exactly "wrong", it exits 1 (rejected), as a checkpassword program does
 * for a bad password.
 *
 * Build: cc -O2 -o trivial_backend trivial_backend.c
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

int main(void) {
  char payload[1024];
  size_t used = 0;
  for (;;) {
    char chunk[512];
    ssize_t n = read(3, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 111; /* no fd 3: misuse by the caller */
    if (n == 0) break;
    size_t room = sizeof payload - used;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(payload + used, chunk, take);
    used += take;
  }
  const char *user_end = memchr(payload, 0, used);
  if (user_end) {
    const char *old = user_end + 1;
    size_t left = used - (size_t)(old - payload);
    if (left >= 6 && memcmp(old, "wrong", 6) == 0) return 1;
  }
  return 0;
}
