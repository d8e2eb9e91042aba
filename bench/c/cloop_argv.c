/*
 * cloop_argv: the C receive loop that names short-lived programs as early as anything can: it reads
 * /proc/PID/cmdline in its receive loop as each exec event arrives (the reference for how many execs of
 * short-lived programs a connector listener can name; see the `argv` benchmark).
 *
 * Like cloop.c: socket(AF_NETLINK, SOCK_DGRAM, NETLINK_CONNECTOR), bind to group 1, the legacy LISTEN, then one
 * recv() per datagram. On an exec it opens /proc/PID/cmdline at once and prints
 *   exec <pid> <argv joined by spaces>     (or `exec <pid>` when the process is already gone)
 * Other events are not printed. On start it prints "listening port=<port>" and flushes. SIGINT or SIGTERM ends
 * the loop: it sends PROC_CN_MCAST_IGNORE, flushes and exits 0.
 *
 * Build: cc -O2 -o cloop_argv bench/c/cloop_argv.c
 */
#include <errno.h>
#include <fcntl.h>

#include "proc_socket.h"

static void print_exec(int pid) {
    char path[64], argv[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, argv, sizeof(argv) - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0) {
        printf("exec %d\n", pid);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if (argv[i] == '\0' || argv[i] == '\n')
            argv[i] = ' ';
    argv[n] = '\0';
    printf("exec %d %s\n", pid, argv);
}

int main(void) {
    int fd = proc_listen();
    if (fd < 0)
        return 1;

    uint64_t buf[1024];
    while (!stop) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOBUFS) {
                puts("enobufs");
                continue;
            }
            perror("recv");
            break;
        }
        struct proc_event ev;
        if (!read_event(buf, n, &ev))
            continue;
        if (ev.what == PROC_EVENT_EXEC)
            print_exec(ev.event_data.exec.process_tgid);
    }
    send_op(fd, PROC_CN_MCAST_IGNORE);
    fflush(stdout);
    return 0;
}
