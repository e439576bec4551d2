/*
 * Stand-in for the nginx web server in the offline test images.
 *
 * critest only needs what it can observe of nginx: a process named "nginx"
 * (pidof), a command line containing "master process" (/proc/1/cmdline),
 * /var/run/nginx.pid holding the master pid, HTTP 200 on the port, and a
 * clean exit on SIGTERM/SIGINT/SIGQUIT.  It may run as PID 1, so it also
 * reaps whatever gets reparented to it.
 *
 * Port: --port N / --port=N, else $NGINX_PORT, else 80.  Other arguments
 * (e.g. -g "daemon off;") are accepted and ignored.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TITLE "nginx: master process"
#define PIDFILE "/var/run/nginx.pid"

static volatile sig_atomic_t stopping;

static void on_stop(int sig) { (void)sig; stopping = 1; }

static const char body[] =
	"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
	"<body><h1>Welcome to nginx!</h1><p>ferrocri test stand-in.</p></body></html>\n";

/*
 * The title lives in argv[0] like real nginx's setproctitle.  Rather than
 * overwrite the argv area in place, re-exec ourselves once with the title as
 * argv[0]: the exec keeps our pid (PID 1 stays PID 1) and the path we exec
 * keeps comm = "nginx".
 */
static void set_title(int argc, char **argv)
{
	if (strncmp(argv[0], TITLE, strlen(TITLE)) == 0)
		return;
	size_t len = strlen(TITLE) + 1;
	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	char *title = malloc(len), self[PATH_MAX];
	if (!title)
		return;
	strcpy(title, TITLE);
	for (int i = 0; i < argc; i++) {
		strcat(title, " ");
		strcat(title, argv[i]);
	}
	char *nargv[] = {title, NULL};
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		execv(self, nargv);
	}
	execvp("nginx", nargv);
	free(title); /* no /proc and not on PATH: keep going without a title */
}

static int listen_on(int port)
{
	int one = 1, zero = 0;
	/* Dual-stack first; fall back to IPv4 where IPv6 is disabled. */
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0 && listen(fd, 511) == 0)
			return fd;
		close(fd);
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {htonl(INADDR_ANY)}};
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a4, sizeof(a4)) != 0 || listen(fd, 511) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One request per connection, then close: enough for curl and Go's client. */
static void serve(int c)
{
	char req[8192], line[256], hdr[512];
	size_t got = 0;
	/* A client that never finishes its request must not pin a process. */
	struct timeval tv = {.tv_sec = 10};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1) {
		ssize_t n = read(c, req + got, sizeof(req) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = '\0';
	int head = strncmp(req, "HEAD ", 5) == 0;
	int len = snprintf(hdr, sizeof(hdr),
			   "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
			   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			   sizeof(body) - 1);
	if (write(c, hdr, (size_t)len) == len && !head)
		(void)!write(c, body, sizeof(body) - 1);
	shutdown(c, SHUT_WR);
	/* Drain so close() does not turn unread request bytes into a reset. */
	while (read(c, line, sizeof(line)) > 0)
		;
	close(c);
	/* Access log line on stdout, like the image's nginx (which logs to /dev/stdout). */
	char *eol = strpbrk(req, "\r\n");
	if (eol)
		*eol = '\0';
	printf("\"%s\" 200 %zu\n", req, head ? 0 : sizeof(body) - 1);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int port = 80;
	const char *env = getenv("NGINX_PORT");
	if (env && *env)
		port = atoi(env);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (strncmp(argv[i], "--port=", 7) == 0)
			port = atoi(argv[i] + 7);
	}
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "nginx: bad port %d\n", port);
		return 1;
	}
	if (strncmp(argv[0], TITLE, strlen(TITLE)) != 0) {
		/* Carry the port across the re-exec, which drops our arguments. */
		char p[16];
		snprintf(p, sizeof(p), "%d", port);
		setenv("NGINX_PORT", p, 1);
		set_title(argc, argv);
	}
	prctl(PR_SET_NAME, "nginx", 0, 0, 0);

	struct sigaction sa = {0};
	sa.sa_handler = on_stop; /* no SA_RESTART: accept() must return EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	/* SIG_IGN on SIGCHLD makes the kernel reap our children and any orphans. */
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	int fd = listen_on(port);
	if (fd < 0) {
		fprintf(stderr, "nginx: cannot listen on port %d: %s\n", port, strerror(errno));
		return 1;
	}
	mkdir("/var/run", 0755);
	FILE *pf = fopen(PIDFILE, "w");
	if (pf) {
		fprintf(pf, "%d\n", (int)getpid());
		fclose(pf);
	} else {
		fprintf(stderr, "nginx: cannot write %s: %s\n", PIDFILE, strerror(errno));
	}
	fprintf(stderr, "nginx: listening on port %d\n", port);

	while (!stopping) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue; /* EINTR, ECONNABORTED (client reset), EMFILE...: keep serving */
		pid_t pid = fork();
		if (pid == 0) {
			close(fd);
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			serve(c);
			_exit(0);
		}
		if (pid < 0)
			serve(c); /* out of processes: serve inline rather than drop */
		else
			close(c);
	}
	close(fd);
	unlink(PIDFILE);
	return 0;
}
