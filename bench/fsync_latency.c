/*
 * fsync_latency: how long fdatasync takes on this machine's disk for the write pattern of a
 * log under the sync flush policy (a batch appended, then synced, about every millisecond),
 * for three ways of laying out the file:
 *
 *   grow    the file grows with each write, as skiff's segments do today: each fdatasync
 *           must also commit the new size (and the blocks allocated at writeback) to the
 *           filesystem's journal;
 *   zero    the file is first filled with zeros and synced, then written over: an
 *           fdatasync has only data to write;
 *   falloc  the file is first fallocate()d (unwritten extents), then written over.
 *
 * usage: fsync_latency MODE PATH [BYTES_PER_WRITE [SECONDS]]
 *        (defaults: 180000 bytes, about 1.8 M messages/s of 100 B in 1 ms steps, and 6 s)
 *
 * It prints one line: mode, syncs done, p50/p99/p999/max in ms, and MB written. The file is
 * removed at the end. It is a measuring tool, not a test; run it on the disk the broker uses,
 * idle and under load (for example with `stress` or busy loops on every core), to see how
 * much of a sync-policy acknowledgement is the filesystem's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The file never grows past this: one default segment (log.segment.bytes). */
#define FILE_BYTES_MAX (1LL << 30)
/* Zeros are written this much at a time when preparing a `zero` file. */
#define ZERO_CHUNK_BYTES (1 << 20)
/* Pause between two steps, as a broker taking batches about every millisecond. */
#define STEP_PAUSE_NS 1000000L
/* Upper bound on recorded samples. */
#define SAMPLES_MAX 1000000

static double now_ms(void) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6;
}

static int compare(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static void die(const char *what) {
        fprintf(stderr, "fsync_latency: %s: %s\n", what, strerror(errno));
        exit(1);
}

static void prepare(int fd, const char *mode) {
        if (strcmp(mode, "zero") == 0) {
                char *zeros = calloc(1, ZERO_CHUNK_BYTES);
                if (!zeros)
                        die("calloc");
                for (long long offset = 0; offset < FILE_BYTES_MAX; offset += ZERO_CHUNK_BYTES)
                        if (pwrite(fd, zeros, ZERO_CHUNK_BYTES, offset) != ZERO_CHUNK_BYTES)
                                die("pwrite zeros");
                free(zeros);
        } else if (strcmp(mode, "falloc") == 0) {
                if (fallocate(fd, 0, 0, FILE_BYTES_MAX) != 0)
                        die("fallocate");
        }
        if (fsync(fd) != 0)
                die("fsync");
}

int main(int argc, char **argv) {
        if (argc < 3) {
                fprintf(stderr, "usage: %s grow|zero|falloc PATH [BYTES_PER_WRITE [SECONDS]]\n", argv[0]);
                return 2;
        }
        const char *mode = argv[1], *path = argv[2];
        long write_bytes = argc > 3 ? atol(argv[3]) : 180000;
        double seconds = argc > 4 ? atof(argv[4]) : 6.0;
        if (write_bytes <= 0 || write_bytes > FILE_BYTES_MAX || seconds <= 0) {
                fprintf(stderr, "fsync_latency: bad size or duration\n");
                return 2;
        }
        if (strcmp(mode, "grow") != 0 && strcmp(mode, "zero") != 0 && strcmp(mode, "falloc") != 0) {
                fprintf(stderr, "fsync_latency: mode must be grow, zero or falloc\n");
                return 2;
        }
        int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
        if (fd < 0)
                die(path);
        prepare(fd, mode);

        char *data = malloc((size_t)write_bytes);
        double *samples = malloc(sizeof(double) * SAMPLES_MAX);
        if (!data || !samples)
                die("malloc");
        memset(data, 'x', (size_t)write_bytes);
        int count = 0;
        long long offset = 0;
        const double end = now_ms() + seconds * 1e3;
        const struct timespec pause = {.tv_sec = 0, .tv_nsec = STEP_PAUSE_NS};
        while (now_ms() < end && count < SAMPLES_MAX && offset + write_bytes <= FILE_BYTES_MAX) {
                if (pwrite(fd, data, (size_t)write_bytes, offset) != write_bytes)
                        die("pwrite");
                offset += write_bytes;
                const double started = now_ms();
                if (fdatasync(fd) != 0)
                        die("fdatasync");
                samples[count++] = now_ms() - started;
                nanosleep(&pause, NULL);
        }
        close(fd);
        unlink(path);
        if (count == 0)
                return 1;
        qsort(samples, (size_t)count, sizeof(double), compare);
        printf("%s syncs=%d p50=%.3f p99=%.3f p999=%.3f max=%.3f ms, %lld MB written\n", mode, count,
               samples[count / 2], samples[(long)count * 99 / 100], samples[(long)count * 999 / 1000],
               samples[count - 1], offset >> 20);
        return 0;
}
