/* The pod sandbox's PID 1 for caracal's lab images (registry.k8s.io/pause): it holds the pod's
 * namespaces open, so it only waits. It reaps the zombies of processes reparented to it (a
 * container sharing the PID namespace) and exits 0 on SIGINT or SIGTERM, which kubelet sends
 * when the pod goes away. Built by `caracal lab image build` with `gcc -static`. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  /* write(2) is async-signal-safe; stdio is not. */
  static const char msg[] = "pause: stopping\n";
  (void)sig;
  (void)!write(2, msg, sizeof msg - 1);
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static int handle(int sig, void (*fn)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("pause (caracal lab)");
    return 0;
  }
  if (getpid() != 1)
    fputs("pause: warning: not PID 1, zombies elsewhere are not mine to reap\n", stderr);
  if (handle(SIGINT, on_stop, 0) || handle(SIGTERM, on_stop, 0) ||
      handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART)) {
    perror("pause: sigaction");
    return 1;
  }
  for (;;)
    pause();
}
