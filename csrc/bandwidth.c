/* Memory read bandwidth (rwe_read_bandwidth): the roofline `rwkv-edge bench`
 * compares decode against. Decode streams every weight from DRAM once per
 * token, so its floor is bytes / read bandwidth; the figure must be measured in
 * the same run (a shared machine's bandwidth drifts), by code that ships with
 * the package rather than code compiled from the user's disk. The bench takes
 * turns with a numba read loop over the same buffer, so the roofline does not
 * hinge on one method. No model, pool or kernel is involved. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "internal.h"

#define BW_MAX_THREADS 256

static double bw_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Eight independent accumulators: enough loads in flight to be bound by
 * memory, not by the add chain; the compiler vectorises this at -O3. */
static uint64_t bw_sum(const uint64_t *p, size_t n) {
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
    volatile uint64_t sink; /* keeps the sum (and so the reads) alive */
    atomic_int *go;         /* 0: wait, 1: read, -1: give up */
    atomic_int *done;       /* helper threads finished */
} bw_slice;

/* Waits until every thread exists, so thread start-up is outside the timed span. */
static void *bw_slice_main(void *arg) {
    bw_slice *s = arg;
    int go;
    while ((go = atomic_load(s->go)) == 0) {
    }
    if (go > 0) s->sink = bw_sum(s->data, s->n);
    atomic_fetch_add(s->done, 1);
    return NULL;
}

/* The calling thread reads the first slice (a spinning timer would take a
 * core from the readers) and times the pass. */
rwe_status rwe_read_bandwidth(const uint64_t *words, size_t n_words, uint32_t n_threads,
                              double *out_gbps) {
    if (!words || !out_gbps || n_words == 0 || n_threads < 1 || n_threads > BW_MAX_THREADS)
        return rwe_fail(RWE_ERR_ARG, "rwe_read_bandwidth: need words, out_gbps and 1-%d threads",
                        BW_MAX_THREADS);
    bw_slice sl[BW_MAX_THREADS];
    pthread_t tid[BW_MAX_THREADS];
    atomic_int go = 0, done = 0;
    size_t per = n_words / n_threads;
    uint32_t started = 1; /* slice 0 is the caller's */
    for (uint32_t t = 0; t < n_threads; t++)
        sl[t] = (bw_slice){words + per * t, t == n_threads - 1 ? n_words - per * t : per, 0, &go,
                           &done};
    for (; started < n_threads; started++)
        if (pthread_create(&tid[started], NULL, bw_slice_main, &sl[started]) != 0) break;
    double t0 = bw_now();
    atomic_store(&go, started == n_threads ? 1 : -1);
    if (started == n_threads) sl[0].sink = bw_sum(sl[0].data, sl[0].n);
    while (atomic_load(&done) < (int)started - 1) {
    }
    double dt = bw_now() - t0;
    for (uint32_t t = 1; t < started; t++) pthread_join(tid[t], NULL);
    if (started != n_threads)
        return rwe_fail(RWE_ERR_NOMEM, "rwe_read_bandwidth: started %u of %u threads", started,
                        n_threads);
    *out_gbps = (double)(n_words * sizeof(uint64_t)) / dt / 1e9;
    return RWE_OK;
}
