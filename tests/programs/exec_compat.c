/* A 32-bit (ia32 compat) program that execs argv[1] with "from-32-bit": the syscall
 * tracepoints never see a compat execve, sched_process_exec does. Built with -m32 -static. */
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    char *args[] = {argv[1], "from-32-bit", 0};
    execv(argv[1], args);
    return 3;
}
