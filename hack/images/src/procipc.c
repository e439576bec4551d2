/*
 * pgrep, pkill and ipcs for the offline test images (one static binary,
 * dispatched on argv[0] and installed as hard links).
 *
 * Debian's busybox is built without these applets, but critest calls
 * `pgrep sleep` (execSync timeout) and `ipcs -m` (HostIpc), so the images
 * need small, self-contained versions.  Output formats follow procps and
 * util-linux closely enough for scripts that grep them.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

static const char *prog;

/* ---------------------------------------------------------------- pgrep/pkill */

struct sig { const char *name; int num; };
static const struct sig sigs[] = {
	{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL},
	{"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"BUS", SIGBUS}, {"FPE", SIGFPE},
	{"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
	{"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"CHLD", SIGCHLD},
	{"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
	{"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
	{"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
	{"PWR", SIGPWR}, {"SYS", SIGSYS},
};

static int parse_signal(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (*s && !*end)
		return (n > 0 && n < NSIG) ? (int)n : -1;
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (strcasecmp(s, sigs[i].name) == 0)
			return sigs[i].num;
	return -1;
}

static void pgrep_usage(FILE *f, int is_kill)
{
	fprintf(f,
		"Usage: %s [OPTIONS] PATTERN\n\n"
		"%s processes whose name (or, with -f, command line) matches the\n"
		"extended regular expression PATTERN.\n\n"
		"  -f        match against the full command line\n"
		"  -x        match the whole name / command line\n"
		"  -i        ignore case\n"
		"  -v        invert the match\n"
		"  -n / -o   only the newest / oldest process\n"
		"  -P PPID   only children of PPID\n"
		"%s",
		prog, is_kill ? "Signal" : "List the pids of",
		is_kill ? "  -SIG, -s SIG, --signal SIG  signal to send (default TERM)\n"
			: "  -l        also list the process name\n"
			  "  -a        also list the full command line\n"
			  "  -c        print only the number of matches\n"
			  "  -d DELIM  output delimiter (default newline)\n");
}

/* Reads /proc/PID/cmdline with NULs turned into spaces; "" for kernel threads. */
static void read_cmdline(int pid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t n = fread(buf, 1, len - 1, f);
	fclose(f);
	while (n > 0 && buf[n - 1] == '\0')
		n--;
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
}

/* comm, ppid and start time from /proc/PID/stat (comm may contain spaces and parens). */
static int read_stat(int pid, char *comm, size_t len, int *ppid, unsigned long long *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *open = strchr(buf, '('), *close = strrchr(buf, ')');
	if (!open || !close || close < open)
		return -1;
	size_t clen = (size_t)(close - open - 1);
	if (clen >= len)
		clen = len - 1;
	memcpy(comm, open + 1, clen);
	comm[clen] = '\0';
	/* Fields after ")": state(3) ppid(4) ... starttime(22). */
	char *p = close + 2;
	int field = 3;
	*ppid = 0;
	*start = 0;
	while (*p && field <= 22) {
		if (field == 4)
			*ppid = atoi(p);
		if (field == 22)
			*start = strtoull(p, NULL, 10);
		while (*p && *p != ' ')
			p++;
		while (*p == ' ')
			p++;
		field++;
	}
	return 0;
}

static int pgrep_main(int argc, char **argv, int is_kill)
{
	int full = 0, exact = 0, icase = 0, invert = 0, newest = 0, oldest = 0;
	int list_name = 0, list_full = 0, count_only = 0, want_ppid = -1, sig = SIGTERM;
	const char *delim = "\n", *pattern = NULL;

	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			pgrep_usage(stdout, is_kill);
			return 0;
		}
		if (strcmp(a, "--") == 0) {
			if (i + 1 < argc)
				pattern = argv[++i];
			break;
		}
		if (is_kill && (strcmp(a, "--signal") == 0 || strcmp(a, "-s") == 0)) {
			if (++i >= argc || (sig = parse_signal(argv[i])) < 0)
				goto bad;
			continue;
		}
		if (a[0] != '-' || a[1] == '\0') {
			if (pattern)
				goto bad;
			pattern = a;
			continue;
		}
		/* pkill -9 / -KILL / -SIGKILL */
		if (is_kill && (isdigit((unsigned char)a[1]) || isupper((unsigned char)a[1]))) {
			if ((sig = parse_signal(a + 1)) < 0)
				goto bad;
			continue;
		}
		for (char *c = a + 1; *c; c++) {
			switch (*c) {
			case 'f': full = 1; break;
			case 'x': exact = 1; break;
			case 'i': icase = 1; break;
			case 'v': invert = 1; break;
			case 'n': newest = 1; break;
			case 'o': oldest = 1; break;
			case 'l': if (is_kill) goto bad; list_name = 1; break;
			case 'a': if (is_kill) goto bad; list_full = 1; break;
			case 'c': if (is_kill) goto bad; count_only = 1; break;
			case 'P':
			case 'd': {
				char opt = *c;
				char *val = c[1] ? c + 1 : (++i < argc ? argv[i] : NULL);
				if (!val)
					goto bad;
				if (opt == 'P')
					want_ppid = atoi(val);
				else if (!is_kill)
					delim = val;
				else
					goto bad;
				c = val + strlen(val) - 1;
				break;
			}
			default:
				goto bad;
			}
		}
	}
	if (!pattern)
		goto bad;

	regex_t re;
	char *expr = malloc(strlen(pattern) + 5);
	if (!expr)
		return 3;
	sprintf(expr, exact ? "^(%s)$" : "%s", pattern);
	int rc = regcomp(&re, expr, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0));
	free(expr);
	if (rc != 0) {
		fprintf(stderr, "%s: invalid pattern: %s\n", prog, pattern);
		return 2;
	}

	DIR *d = opendir("/proc");
	if (!d) {
		perror("/proc");
		return 3;
	}
	int self = getpid(), matches = 0, best_pid = -1;
	unsigned long long best_start = 0;
	struct dirent *e;
	int *pids = NULL;
	size_t npids = 0, cap = 0;
	while ((e = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		int pid = atoi(e->d_name), ppid;
		unsigned long long start;
		char comm[256], cmd[4096];
		if (pid == self || read_stat(pid, comm, sizeof(comm), &ppid, &start) != 0)
			continue;
		if (want_ppid >= 0 && ppid != want_ppid)
			continue;
		read_cmdline(pid, cmd, sizeof(cmd));
		const char *subject = (full && cmd[0]) ? cmd : comm;
		int hit = regexec(&re, subject, 0, NULL, 0) == 0;
		if (hit == invert)
			continue;
		if (newest || oldest) {
			if (best_pid < 0 || (newest ? start >= best_start : start < best_start)) {
				best_pid = pid;
				best_start = start;
			}
			continue;
		}
		if (npids == cap) {
			cap = cap ? cap * 2 : 64;
			pids = realloc(pids, cap * sizeof(int));
			if (!pids)
				return 3;
		}
		pids[npids++] = pid;
	}
	closedir(d);
	regfree(&re);
	if (best_pid >= 0) {
		pids = malloc(sizeof(int));
		if (!pids)
			return 3;
		pids[0] = best_pid;
		npids = 1;
	}

	/* /proc order is creation order in practice; sort to be sure. */
	for (size_t i = 1; i < npids; i++)
		for (size_t j = i; j > 0 && pids[j - 1] > pids[j]; j--) {
			int t = pids[j];
			pids[j] = pids[j - 1];
			pids[j - 1] = t;
		}

	for (size_t i = 0; i < npids; i++) {
		int pid = pids[i];
		if (is_kill) {
			if (kill(pid, sig) == 0)
				matches++;
			else if (errno != ESRCH)
				fprintf(stderr, "%s: killing pid %d failed: %s\n", prog, pid, strerror(errno));
			continue;
		}
		matches++;
		if (count_only)
			continue;
		if (list_full || list_name) {
			char comm[256], cmd[4096];
			int ppid;
			unsigned long long start;
			if (read_stat(pid, comm, sizeof(comm), &ppid, &start) != 0)
				comm[0] = '\0';
			read_cmdline(pid, cmd, sizeof(cmd));
			printf("%d %s%s", pid, (list_full && cmd[0]) ? cmd : comm, delim);
		} else {
			printf("%d%s", pid, delim);
		}
	}
	if (count_only)
		printf("%d\n", matches);
	else if (!is_kill && matches && strcmp(delim, "\n") != 0)
		putchar('\n');
	free(pids);
	return matches ? 0 : 1;
bad:
	pgrep_usage(stderr, is_kill);
	return 2;
}

/* ---------------------------------------------------------------- ipcs */

/* Owner names come from /etc/passwd directly: a static glibc cannot use NSS. */
static const char *user_name(unsigned uid, char *buf, size_t len)
{
	FILE *f = fopen("/etc/passwd", "r");
	char line[512];
	snprintf(buf, len, "%u", uid);
	if (!f)
		return buf;
	while (fgets(line, sizeof(line), f)) {
		char *name = strtok(line, ":");
		strtok(NULL, ":");
		char *id = strtok(NULL, ":");
		if (name && id && (unsigned)strtoul(id, NULL, 10) == uid) {
			snprintf(buf, len, "%s", name);
			break;
		}
	}
	fclose(f);
	return buf;
}

static void ipcs_shm(void)
{
	struct shm_info info;
	struct shmid_ds ds;
	char owner[64];
	printf("\n------ Shared Memory Segments --------\n");
	printf("%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n",
	       "key", "shmid", "owner", "perms", "bytes", "nattch", "status");
	int max = shmctl(0, SHM_INFO, (struct shmid_ds *)&info);
	for (int i = 0; i <= max; i++) {
		int id = shmctl(i, SHM_STAT, &ds);
		if (id < 0)
			continue;
		printf("0x%08x %-10d %-10s %-10o %-10lu %-10lu %s%s\n",
		       (unsigned)ds.shm_perm.__key, id,
		       user_name(ds.shm_perm.uid, owner, sizeof(owner)),
		       ds.shm_perm.mode & 0777, (unsigned long)ds.shm_segsz,
		       (unsigned long)ds.shm_nattch,
		       (ds.shm_perm.mode & SHM_DEST) ? "dest " : "",
		       (ds.shm_perm.mode & SHM_LOCKED) ? "locked" : "");
	}
	putchar('\n');
}

static void ipcs_msg(void)
{
	struct msginfo info;
	struct msqid_ds ds;
	char owner[64];
	printf("\n------ Message Queues --------\n");
	printf("%-10s %-10s %-10s %-10s %-12s %-12s\n",
	       "key", "msqid", "owner", "perms", "used-bytes", "messages");
	int max = msgctl(0, MSG_INFO, (struct msqid_ds *)&info);
	for (int i = 0; i <= max; i++) {
		int id = msgctl(i, MSG_STAT, &ds);
		if (id < 0)
			continue;
		printf("0x%08x %-10d %-10s %-10o %-12lu %-12lu\n",
		       (unsigned)ds.msg_perm.__key, id,
		       user_name(ds.msg_perm.uid, owner, sizeof(owner)),
		       ds.msg_perm.mode & 0777, (unsigned long)ds.__msg_cbytes,
		       (unsigned long)ds.msg_qnum);
	}
	putchar('\n');
}

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
	struct seminfo *__buf;
};

static void ipcs_sem(void)
{
	struct seminfo info;
	struct semid_ds ds;
	union semun arg;
	char owner[64];
	printf("\n------ Semaphore Arrays --------\n");
	printf("%-10s %-10s %-10s %-10s %-10s\n", "key", "semid", "owner", "perms", "nsems");
	arg.__buf = &info;
	int max = semctl(0, 0, SEM_INFO, arg);
	for (int i = 0; i <= max; i++) {
		arg.buf = &ds;
		int id = semctl(i, 0, SEM_STAT, arg);
		if (id < 0)
			continue;
		printf("0x%08x %-10d %-10s %-10o %-10lu\n",
		       (unsigned)ds.sem_perm.__key, id,
		       user_name(ds.sem_perm.uid, owner, sizeof(owner)),
		       ds.sem_perm.mode & 0777, (unsigned long)ds.sem_nsems);
	}
	putchar('\n');
}

static int ipcs_main(int argc, char **argv)
{
	int shm = 0, msg = 0, sem = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			printf("Usage: %s [-m] [-q] [-s] [-a]\n"
			       "Show System V IPC facilities of this IPC namespace.\n"
			       "  -m  shared memory segments\n  -q  message queues\n"
			       "  -s  semaphore arrays\n  -a  all (default)\n", prog);
			return 0;
		}
		if (a[0] != '-')
			goto bad;
		for (const char *c = a + 1; *c; c++) {
			switch (*c) {
			case 'm': shm = 1; break;
			case 'q': msg = 1; break;
			case 's': sem = 1; break;
			case 'a': shm = msg = sem = 1; break;
			default: goto bad;
			}
		}
	}
	if (!shm && !msg && !sem)
		shm = msg = sem = 1;
	if (msg)
		ipcs_msg();
	if (shm)
		ipcs_shm();
	if (sem)
		ipcs_sem();
	return 0;
bad:
	fprintf(stderr, "Usage: %s [-m] [-q] [-s] [-a]\n", prog);
	return 1;
}

int main(int argc, char **argv)
{
	const char *slash = strrchr(argv[0], '/');
	prog = slash ? slash + 1 : argv[0];
	if (strcmp(prog, "pgrep") == 0)
		return pgrep_main(argc, argv, 0);
	if (strcmp(prog, "pkill") == 0)
		return pgrep_main(argc, argv, 1);
	if (strcmp(prog, "ipcs") == 0)
		return ipcs_main(argc, argv);
	fprintf(stderr, "%s: run me as pgrep, pkill or ipcs\n", prog);
	return 2;
}
