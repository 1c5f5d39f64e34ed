/*
 * Workload for scripts/bench/malloc-stacks.sh: after one byte on stdin, N malloc+free pairs
 * through two call paths (like tests/programs/malloc_stacks.c), then prints the elapsed
 * nanoseconds. Built with frame pointers so stack walkers see real stacks.
 * usage: malloc-stacks-workload N
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void *(*volatile do_malloc)(size_t) = malloc;

__attribute__((noinline)) void *alloc_small(void) { return do_malloc(24); }
__attribute__((noinline)) void *alloc_big(void) { return do_malloc(3000); }
__attribute__((noinline)) void path_small(void) { free(alloc_small()); }
__attribute__((noinline)) void path_big(void) { free(alloc_big()); }

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    long n = atol(argv[1]);
    char c;
    if (read(0, &c, 1) != 1) return 3;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        if (i & 7) path_small();
        else path_big();
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
