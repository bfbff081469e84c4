/*
 * bandwidth.c -- memory read bandwidth, plain C + pthreads.
 *
 * An independent cross-check of the figure rwkv_edge.bench measures with
 * numba: decode is bound by how fast weights stream from DRAM, so the
 * roofline every decode figure is compared against must not hinge on one
 * measuring method. rwkv_edge.bench compiles this file and runs it in the
 * same run.
 *
 *   gcc -O3 -march=native -pthread bandwidth.c -o bandwidth
 *   ./bandwidth [MiB=1024] [threads=1] [reps=7]
 *
 * Prints one JSON line: {"threads":T,"bytes":B,"reps":R,"best_gbps":X,"gbps":[...]}
 * (GB = 1e9 bytes). Each thread sums its own contiguous slice of one buffer
 * far larger than the caches; the best repetition is reported, as noise on a
 * shared machine only ever makes a run slower.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 256
#define MAX_REPS 64

typedef struct worker {
    const uint64_t *data;    /* this thread's slice */
    size_t n;                /* uint64 words in the slice */
    uint64_t sink;           /* the sum, published so the loads are not dead code */
    pthread_barrier_t *start, *stop;
    int reps;
} worker;

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

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int r = 0; r < w->reps; r++) {
        pthread_barrier_wait(w->start);
        w->sink += sum_words(w->data, w->n);
        pthread_barrier_wait(w->stop);
    }
    return NULL;
}

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

    pthread_barrier_t start, stop;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&stop, NULL, (unsigned)nthreads + 1);
    worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    size_t per = words / (size_t)nthreads;
    for (long t = 0; t < nthreads; t++) {
        size_t n = (t == nthreads - 1) ? words - per * (size_t)t : per;
        w[t] = (worker){buf + per * (size_t)t, n, 0, &start, &stop, (int)reps};
        pthread_create(&tid[t], NULL, worker_main, &w[t]);
    }

    double gbps[MAX_REPS], best = 0.0;
    for (long r = 0; r < reps; r++) {
        pthread_barrier_wait(&start);
        double t0 = now_s();
        pthread_barrier_wait(&stop);
        gbps[r] = (double)(words * sizeof(uint64_t)) / (now_s() - t0) / 1e9;
        if (gbps[r] > best) best = gbps[r];
    }
    uint64_t sink = 0;
    for (long t = 0; t < nthreads; t++) {
        pthread_join(tid[t], NULL);
        sink += w[t].sink;
    }

    printf("{\"threads\":%ld,\"bytes\":%zu,\"reps\":%ld,\"best_gbps\":%.3f,\"gbps\":[", nthreads,
           words * sizeof(uint64_t), reps, best);
    for (long r = 0; r < reps; r++) printf("%s%.3f", r ? "," : "", gbps[r]);
    printf("],\"checksum\":%llu}\n", (unsigned long long)(sink & 0xFFFF));
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&stop);
    free(buf);
    return 0;
}
