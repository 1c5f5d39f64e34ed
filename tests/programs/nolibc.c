/*
 * A program with no libc at all (built with -static -nostdlib), for the tests that
 * `mapscope malloc` refuses a binary (--bin) or a process (--pid) it cannot find a libc in.
 * It sleeps in pause(2) until killed.
 */
void _start(void) {
    for (;;) {
        /* pause() on x86_64 */
        __asm__ volatile("mov $34, %%eax\n\tsyscall" ::: "rax", "rcx", "r11", "memory");
    }
}
