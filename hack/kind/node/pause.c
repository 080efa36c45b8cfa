/*
 * pause: the Pod sandbox's first process. It holds the Pod's namespaces open, sleeps until told to
 * stop, and (as PID 1 of a Pod with shareProcessNamespace) reaps orphaned children so that no
 * zombie outlives its parent. Built from source here so the node image needs no image download:
 *   gcc -Os -static -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
	(void)sig;
	_exit(0);
}

static void on_child(int sig) {
	(void)sig;
	int saved = errno;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

int main(int argc, char **argv) {
	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		printf("pause (pnsflow, built from source)\n");
		return 0;
	}
	if (getpid() != 1) {
		/* Not an error: kubelet and tests may run it outside a sandbox. */
		fprintf(stderr, "pause: warning: not running as PID 1\n");
	}
	struct sigaction stop = {.sa_handler = on_stop};
	struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
	sigemptyset(&stop.sa_mask);
	sigemptyset(&child.sa_mask);
	if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
	    sigaction(SIGCHLD, &child, NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;) {
		pause();
	}
	return 42; /* not reached */
}
