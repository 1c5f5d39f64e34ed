/*
 * Calls malloc through two distinct call paths, for the stack tests in tests/malloc.rs:
 * main -> path_small -> alloc_small -> malloc, A times with S bytes, and
 * main -> path_big -> alloc_big -> malloc, B times with BSIZE bytes.
 *
 * usage: malloc_stacks A S B BSIZE
 * Built with frame pointers and without inlining or sibling calls (-fno-omit-frame-pointer
 * -fno-inline -fno-optimize-sibling-calls), so each function keeps its own frame and the kernel
 * can walk the stack from malloc back to main.
 *
 * Protocol on stdin/stdout, one byte each way, as malloc.c: "r" when ready, then for each byte
 * received one window (path_small, then path_big) answered by "d"; EOF exits. Each block is
 * freed at once: free is not counted, and memory stays flat.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Through a volatile pointer so the compiler cannot elide, merge or move the calls. */
static void *(*volatile do_malloc)(size_t) = malloc;

void *alloc_small(size_t s) {
    void *p = do_malloc(s);
    if (!p) _exit(6);
    memset(p, 1, 1);
    return p;
}

void *alloc_big(size_t s) {
    void *p = do_malloc(s);
    if (!p) _exit(6);
    memset(p, 2, 1);
    return p;
}

void path_small(long n, size_t s) {
    for (long i = 0; i < n; i++) free(alloc_small(s));
}

void path_big(long n, size_t s) {
    for (long i = 0; i < n; i++) free(alloc_big(s));
}

int main(int argc, char **argv) {
    if (argc != 5) _exit(3);
    long a = atol(argv[1]), b = atol(argv[3]);
    size_t s = strtoul(argv[2], NULL, 10), bs = strtoul(argv[4], NULL, 10);
    if (write(1, "r", 1) != 1) _exit(4);
    for (;;) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        char c;
        poll(&p, 1, -1);
        if (read(0, &c, 1) != 1) break;
        path_small(a, s);
        path_big(b, bs);
        if (write(1, "d", 1) != 1) _exit(4);
    }
    return 0;
}
