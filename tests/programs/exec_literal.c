/* Execs with strings in file-backed pages no one has touched yet, as a binary's string literals
 * are until first use: the case where reading the caller's strings at syscall entry fails.
 *
 *   exec_literal ok       execv("/bin/true", {"/bin/true", "hello-literal"}): succeeds
 *   exec_literal missing  execv of a missing path, its argv strings untouched: ENOENT
 *   exec_literal efault   execv with an unreadable filename pointer: EFAULT
 *
 * Each string gets its own temporary file and mapping (its own VMA), so no fault-around from a
 * neighbouring page maps it early. Exit status 0 when the exec failed as intended. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *untouched(const char *s) {
    char path[] = "/tmp/mapscope-literal-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, s, strlen(s) + 1) < 0)
        exit(10);
    unlink(path);
    void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        exit(11);
    close(fd);
    return p;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ok";
    char *args[3] = {0};
    if (strcmp(mode, "ok") == 0) {
        args[0] = untouched("/bin/true");
        args[1] = untouched("hello-literal");
        execv(args[0], args);
        return 12;
    }
    if (strcmp(mode, "missing") == 0) {
        char *path = untouched("/nonexistent/mapscope-literal");
        args[0] = untouched("/nonexistent/mapscope-literal");
        args[1] = untouched("hello-literal");
        execv(path, args);
        return errno == ENOENT ? 0 : 13;
    }
    args[0] = untouched("never-read");
    const char *volatile bad = (const char *)8;
    execv(bad, args);
    return errno == EFAULT ? 0 : 14;
}
