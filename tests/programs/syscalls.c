/*
 * Makes an exact, known set of syscalls on command, for tests/syscalls.rs.
 *
 * usage: syscalls COMM OP:N...
 *   COMM  the command name to take (prctl PR_SET_NAME), so tests can filter on it.
 *   OP    personality  N x personality(0xffffffff) (a query: changes nothing)
 *         tuxcall      N x syscall(SYS_tuxcall) (unimplemented: nobody else calls it; x86_64 only)
 *         timers       N x timer_create, then per timer 1 settime, 2 gettime, 3 getoverrun,
 *                      then N x timer_delete
 *         rw           1 open(/dev/zero), 1 openat(/dev/null, O_CREAT), N x read 64 bytes,
 *                      N x write 100 bytes, 2 close
 *
 * Protocol on stdin/stdout, one byte each way:
 *   after startup the program writes "r" (ready); from then on it is idle in poll() between
 *   windows, so a baseline taken after "r" sees none of the loader's startup syscalls.
 *   The program waits in poll() (never counted by the tests) until a byte arrives, reads it
 *   (1 read of 1 byte), then:
 *     'g'  runs every OP once in order and writes "d" (1 write of 1 byte);
 *     'e'  execve("/bin/true") (1 execve);
 *     EOF  exits.
 * So a window opened with 'g' makes exactly the OPs' syscalls plus one read and one write.
 * Also built as a 32-bit static program (cc -m32 -static) for the compat-syscall tests, where
 * every syscall it makes has its i386 number.
 * No stdio: printf would add syscalls of its own.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_TIMERS 256

static void die(const char *msg) {
    (void)!write(2, msg, strlen(msg));
    _exit(3);
}

static void run_op(const char *op) {
    const char *colon = strchr(op, ':');
    if (!colon) die("op needs :N\n");
    size_t len = (size_t)(colon - op);
    long n = atol(colon + 1);
    if (len == 11 && !strncmp(op, "personality", len)) {
        for (long i = 0; i < n; i++) personality(0xffffffff);
    } else if (len == 7 && !strncmp(op, "tuxcall", len)) {
#ifdef SYS_tuxcall
        for (long i = 0; i < n; i++) syscall(SYS_tuxcall);
#else
        die("tuxcall is x86_64 only\n");
#endif
    } else if (len == 6 && !strncmp(op, "timers", len)) {
        static timer_t timers[MAX_TIMERS];
        struct sigevent sev = {.sigev_notify = SIGEV_NONE};
        struct itimerspec its = {.it_value = {.tv_sec = 100}};
        if (n > MAX_TIMERS) die("too many timers\n");
        for (long i = 0; i < n; i++)
            if (timer_create(CLOCK_MONOTONIC, &sev, &timers[i])) die("timer_create\n");
        for (long i = 0; i < n; i++) {
            struct itimerspec cur;
            timer_settime(timers[i], 0, &its, NULL);
            for (int k = 0; k < 2; k++) timer_gettime(timers[i], &cur);
            for (int k = 0; k < 3; k++) timer_getoverrun(timers[i]);
        }
        for (long i = 0; i < n; i++) timer_delete(timers[i]);
    } else if (len == 2 && !strncmp(op, "rw", len)) {
        static char buf[128];
        /* Raw syscalls: glibc's open() is really openat(). */
        int in = (int)syscall(SYS_open, "/dev/zero", O_RDONLY);
        int out = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY | O_CREAT, 0644);
        if (in < 0 || out < 0) die("open\n");
        for (long i = 0; i < n; i++) (void)!read(in, buf, 64);
        for (long i = 0; i < n; i++) (void)!write(out, buf, 100);
        close(in);
        close(out);
    } else {
        die("unknown op\n");
    }
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: syscalls COMM OP:N...\n");
    prctl(PR_SET_NAME, argv[1], 0, 0, 0);
    if (write(1, "r", 1) != 1) _exit(4);
    for (;;) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        char c;
        poll(&p, 1, -1);
        if (read(0, &c, 1) != 1) _exit(0);
        if (c == 'e') {
            char *args[] = {"true", NULL};
            execve("/bin/true", args, environ);
            die("execve\n");
        }
        for (int i = 2; i < argc; i++) run_op(argv[i]);
        if (write(1, "d", 1) != 1) _exit(4);
    }
}
