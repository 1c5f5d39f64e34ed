/*
 * A program with no libc at all (built with -static -nostdlib), for the test that
 * `mapscope malloc --bin` refuses a binary it cannot find a libc for.
 */
void _start(void) {
    /* exit(0) on x86_64 */
    __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall");
    for (;;) {
    }
}
