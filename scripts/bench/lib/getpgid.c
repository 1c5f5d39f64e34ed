/* Syscall workload for scripts/bench/syscalls.py: after one byte on stdin, N getpgid(0) calls,
 * then prints the elapsed nanoseconds. usage: getpgid N */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    long n = atol(argv[1]);
    char c;
    if (read(0, &c, 1) != 1) return 3;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(SYS_getpgid, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
