/* Two threads of one process in execve at once: the main thread's exec blocks on its filename
 * (a userfaultfd page nobody serves) while a second thread execs /bin/true, which kills the main
 * thread (de_thread) and makes its exec fail. Each exec must be reported with its own thread
 * and return code. Prints the second thread's tid before it execs. Needs CAP_SYS_PTRACE (or
 * vm.unprivileged_userfaultfd=1) for a userfaultfd that catches kernel-mode faults. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int uffd;

static void *second(void *unused) {
    (void)unused;
    struct pollfd p = {.fd = uffd, .events = POLLIN};
    struct uffd_msg msg;
    if (poll(&p, 1, 10000) != 1 || read(uffd, &msg, sizeof msg) != sizeof msg)
        _exit(20);
    /* The main thread is inside execve now, waiting for its filename's page. */
    printf("%d\n", (int)gettid());
    fflush(stdout);
    char *args[] = {"/bin/true", "from-thread", 0};
    execv(args[0], args);
    _exit(21);
}

int main(void) {
    uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0)
        return 2;
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(uffd, UFFDIO_API, &api))
        return 3;
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = {
        .range = {.start = (unsigned long)page, .len = 4096},
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (page == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg))
        return 4;
    pthread_t t;
    if (pthread_create(&t, NULL, second, NULL))
        return 5;
    char *args[] = {"never-run", 0};
    execv(page, args);
    return 6;
}
