/* The cost of the readiness hooks on poll(2): docs/adopt.md "Cost".
 *   cc -O2 -o pollbench preload/bench/pollbench.c
 *   ./pollbench; LD_PRELOAD=$PWD/target/release/libhawkey_preload.so ./pollbench
 *   LD_PRELOAD=... HAWKEY_READY_PROBE=1 NOTIFY_SOCKET=/tmp/none ./pollbench */
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    int p[2]; pipe(p);
    struct pollfd f = { .fd = p[0], .events = POLLIN };
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 2000000; i++) poll(&f, 1, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.1f ns/poll\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 2e6);
    return 0;
}
