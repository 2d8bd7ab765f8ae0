/* The pod sandbox's "pause" process for hack/images (registry.k8s.io is not reachable here):
 * hold the pod's namespaces, reap orphaned children, exit 0 on SIGINT/SIGTERM.
 * Built with `gcc -static -Os`, so the image needs nothing but this binary. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void down(int signo) { (void)signo; _exit(0); }

static void reap(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int main(void) {
  struct sigaction stop = {.sa_handler = down}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &stop, NULL) || sigaction(SIGTERM, &stop, NULL) || sigaction(SIGCHLD, &child, NULL))
    return 1;
  for (;;) pause();
}
