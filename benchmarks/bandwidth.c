/*
 * bandwidth.c -- memory read bandwidth, plain C + pthreads.
 *
 * An independent cross-check of the figure rwkv_edge.bench measures with
 * numba: decode is bound by how fast weights stream from DRAM, so the
 * roofline every decode figure is compared against must not hinge on one
 * measuring method.
 *
 * Two ways to use it:
 *   - rwkv_edge.bench compiles it as a shared library (-DRWE_BW_LIBRARY) and
 *     calls rwe_bw_pass() on the very buffer its numba loop reads, the two
 *     methods taking turns pass by pass, so that both see the same pages and
 *     the same bursts of other load on a shared machine;
 *   - standalone:
 *       gcc -O3 -march=native -pthread bandwidth.c -o bandwidth
 *       ./bandwidth [MiB=1024] [threads=1] [reps=7]
 *     prints one JSON line: {"threads":T,"bytes":B,"reps":R,"best_gbps":X,"gbps":[...]}
 * (GB = 1e9 bytes). Each thread sums its own contiguous slice of one buffer
 * far larger than the caches.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 256
#define MAX_REPS 64

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Eight independent accumulators: enough parallel loads in flight to be bound
 * by memory, not by the add chain; gcc vectorises this at -O3. */
static uint64_t sum_words(const uint64_t *p, size_t n) {
    uint64_t a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += p[i + j];
    for (; i < n; i++) a[0] += p[i];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

typedef struct {
    const uint64_t *data;
    size_t n;
    uint64_t sink;
    atomic_int *go;          /* 0: wait, 1: read, -1: give up */
    atomic_int *done;        /* threads finished */
} slice;

/* Waits until every thread is up, sums its slice, reports: the timed span
 * starts once all threads exist, so thread start-up is not in it. */
static void *slice_main(void *arg) {
    slice *s = arg;
    int go;
    while ((go = atomic_load(s->go)) == 0) {
    }
    if (go > 0) s->sink = sum_words(s->data, s->n);
    atomic_fetch_add(s->done, 1);
    return NULL;
}

/* One timed pass over buf (words uint64) with nthreads threads: the calling
 * thread reads the first slice (a spinning timer would take a core from the
 * readers) and times the pass; GB/s, or -1 when the threads cannot start. */
double rwe_bw_pass(const uint64_t *buf, size_t words, int nthreads) {
    if (nthreads < 1 || nthreads > MAX_THREADS) return -1;
    slice sl[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    atomic_int go = 0, done = 0;
    size_t per = words / (size_t)nthreads;
    int started = 1; /* slice 0 is the caller's */
    for (int t = 0; t < nthreads; t++)
        sl[t] = (slice){buf + per * (size_t)t, t == nthreads - 1 ? words - per * (size_t)t : per, 0,
                        &go, &done};
    for (; started < nthreads; started++)
        if (pthread_create(&tid[started], NULL, slice_main, &sl[started]) != 0) break;
    double t0 = now_s();
    atomic_store(&go, started == nthreads ? 1 : -1);
    if (started == nthreads) sl[0].sink = sum_words(sl[0].data, sl[0].n);
    while (atomic_load(&done) < started - 1) {
    }
    double dt = now_s() - t0;
    for (int t = 1; t < started; t++) pthread_join(tid[t], NULL);
    return started == nthreads ? (double)(words * sizeof(uint64_t)) / dt / 1e9 : -1;
}

#ifndef RWE_BW_LIBRARY
static int parse_arg(int argc, char **argv, int i, long dflt, long lo, long hi, long *out) {
    *out = dflt;
    if (argc > i) {
        char *end;
        *out = strtol(argv[i], &end, 10);
        if (*end != '\0' || *out < lo || *out > hi) {
            fprintf(stderr, "argument %d (%s) must be an integer in [%ld, %ld]\n", i, argv[i], lo, hi);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    long mib, nthreads, reps;
    if (parse_arg(argc, argv, 1, 1024, 1, 1L << 20, &mib) || parse_arg(argc, argv, 2, 1, 1, MAX_THREADS, &nthreads) ||
        parse_arg(argc, argv, 3, 7, 1, MAX_REPS, &reps))
        return 2;

    size_t words = (size_t)mib * (1u << 20) / sizeof(uint64_t);
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, words * sizeof(uint64_t)) != 0) {
        fprintf(stderr, "cannot allocate %ld MiB\n", mib);
        return 1;
    }
    memset(buf, 1, words * sizeof(uint64_t)); /* fault every page in before timing */

    double gbps[MAX_REPS], best = 0.0;
    for (long r = 0; r < reps; r++) {
        gbps[r] = rwe_bw_pass(buf, words, (int)nthreads);
        if (gbps[r] < 0) {
            fprintf(stderr, "cannot start %ld threads\n", nthreads);
            return 1;
        }
        if (gbps[r] > best) best = gbps[r];
    }
    printf("{\"threads\":%ld,\"bytes\":%zu,\"reps\":%ld,\"best_gbps\":%.3f,\"gbps\":[", nthreads,
           words * sizeof(uint64_t), reps, best);
    for (long r = 0; r < reps; r++) printf("%s%.3f", r ? "," : "", gbps[r]);
    printf("]}\n");
    free(buf);
    return 0;
}
#endif /* RWE_BW_LIBRARY */
