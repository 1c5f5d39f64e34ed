/*
 * Calls malloc an exact, known number of times with known sizes, for tests/malloc.rs.
 *
 * usage: malloc SIZE...
 * Protocol on stdin/stdout, one byte each way: after startup the program writes "r" (ready)
 * and from then on waits in poll() until a byte
 * arrives and reads it. A digit k pins the program to CPU k (sched_setaffinity) and then calls
 * malloc once for every SIZE, in order; then it writes "d". EOF frees everything and exits.
 * No stdio and no other libc calls that allocate, so the window holds exactly those mallocs.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_KEEP 4096

/* Through a volatile pointer so the compiler cannot elide or merge the calls. */
static void *(*volatile do_malloc)(size_t) = malloc;
static void *keep[MAX_KEEP];
static size_t kept;

int main(int argc, char **argv) {
    static size_t sizes[256];
    int nsizes = argc - 1;
    if (nsizes < 1 || nsizes > 256) _exit(3);
    for (int i = 0; i < nsizes; i++) sizes[i] = strtoul(argv[i + 1], NULL, 10);
    if (write(1, "r", 1) != 1) _exit(4);
    for (;;) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        char c;
        poll(&p, 1, -1);
        if (read(0, &c, 1) != 1) break;
        if (c >= '0' && c <= '9') {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(c - '0', &set);
            if (sched_setaffinity(0, sizeof(set), &set)) _exit(5);
        }
        for (int i = 0; i < nsizes; i++) {
            void *m = do_malloc(sizes[i]);
            if (!m) _exit(6);
            memset(m, 1, 1);
            if (kept < MAX_KEEP) keep[kept++] = m;
        }
        if (write(1, "d", 1) != 1) _exit(4);
    }
    for (size_t i = 0; i < kept; i++) free(keep[i]);
    return 0;
}
