/* exec workload for scripts/bench/exec.py and exec-cpu.py: after one byte on stdin, N
 * fork+execve of /bin/true (vfork: the cheapest fork), each waited for, then prints the elapsed
 * nanoseconds. usage: spawn N */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    long n = atol(argv[1]);
    char c;
    if (read(0, &c, 1) != 1) return 3;
    char *args[] = {"/bin/true", "bench-exec", NULL};
    char *envp[] = {NULL};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        pid_t p = vfork();
        if (p == 0) {
            execve(args[0], args, envp);
            _exit(127);
        }
        if (p < 0) return 4;
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 5;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
