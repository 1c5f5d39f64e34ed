/* An execve that stays in flight until the test says so: its filename lives in a userfaultfd
 * page nobody serves yet. A second thread prints "blocked" once the exec waits on that page,
 * then reads stdin: "go" serves the page ("/bin/true"), so the exec succeeds; end of input
 * exits the process, so the exec fails. Lets a test attach or detach with an exec in flight.
 * Needs CAP_SYS_PTRACE (or vm.unprivileged_userfaultfd=1). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int uffd;
static char *page;

static void *second(void *unused) {
    (void)unused;
    struct pollfd p = {.fd = uffd, .events = POLLIN};
    struct uffd_msg msg;
    if (poll(&p, 1, 10000) != 1 || read(uffd, &msg, sizeof msg) != sizeof msg)
        _exit(20);
    printf("blocked\n");
    fflush(stdout);
    char line[16] = {0};
    if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0)
        _exit(3);
    static char src[4096] __attribute__((aligned(4096))) = "/bin/true";
    struct uffdio_copy copy = {
        .dst = (unsigned long)page, .src = (unsigned long)src, .len = 4096};
    if (ioctl(uffd, UFFDIO_COPY, &copy))
        _exit(21);
    pause();
    return NULL;
}

int main(void) {
    uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0)
        return 2;
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(uffd, UFFDIO_API, &api))
        return 3;
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = {
        .range = {.start = (unsigned long)page, .len = 4096},
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (page == MAP_FAILED || ioctl(uffd, UFFDIO_REGISTER, &reg))
        return 4;
    pthread_t t;
    if (pthread_create(&t, NULL, second, NULL))
        return 5;
    char *args[] = {"/bin/true", "blocked-exec", 0};
    execv(page, args);
    return 6;
}
