/*
 * A TCP echo server for the port-forward tests: every connection gets back
 * exactly the bytes it sent, and its write side is shut down once the
 * client's side ended (so a half-close travels both ways).  One child per
 * connection; busybox `nc -ll -e cat` resets connections under load.
 *
 *   echo-server [port]      (default 9000)
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void serve(int conn)
{
	char buf[65536];
	ssize_t n;
	while ((n = read(conn, buf, sizeof(buf))) > 0) {
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(conn, buf + done, n - done);
			if (w <= 0)
				_exit(1);
			done += w;
		}
	}
	shutdown(conn, SHUT_WR);
	_exit(0);
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 9000, one = 1, zero = 0;
	struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0)
		return 1;
	/* Children are reaped by the kernel: nobody waits for them. */
	signal(SIGCHLD, SIG_IGN);
	for (;;) {
		int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0)
			continue;
		pid_t pid = fork();
		if (pid == 0) {
			close(fd);
			serve(conn);
		}
		close(conn);
	}
}
