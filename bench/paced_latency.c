/*
 * paced_latency: a librdkafka producer that sends at a fixed rate without occupying a core,
 * and records each message's produce-to-acknowledgement latency and, optionally, its
 * end-to-end latency (producer to a consumer in the same process).
 *
 * Why not rdkafka_performance -r: its pacer waits between messages by polling with a zero
 * timeout in a loop, so at any rate above 1000 msgs/s it spins one core at 100%. On a 2-core
 * machine that leaves the broker, librdkafka's own threads and the fsync thread one core to
 * share, and its latency figures measure that contention more than the broker. This pacer
 * sends in 1 ms ticks: each tick it produces every message due by then and then sleeps until
 * the next tick. Delivery reports are served by a thread of their own: at millions of
 * messages a second, producing and handling every delivery report on one thread saturates
 * it, and the latency then measures the pacer falling behind.
 *
 * Each tick's burst is produced in chunks of STAMP_REFRESH_MESSAGES messages, one
 * rd_kafka_produce_batch call each: the send time in the chunk's messages is read before the
 * call, so a latency is never under-stated, and over-stated by at most the few microseconds
 * the call takes. Per chunk rather than per message, librdkafka takes its queue lock and reads
 * its clocks once, not once per message.
 *
 * The probe reads the time twice per message (acknowledged, consumed). Where the kernel's
 * clocksource is the TSC, it reads the TSC directly, scaled by a rate calibrated against
 * CLOCK_MONOTONIC at start (about 11 ns a read here, against 28 ns for clock_gettime; at two
 * million messages a second those reads were a tenth of the probe's CPU time). A latency is a
 * difference of two such readings, so a calibration error of a few parts per million changes
 * it by a few parts per million. On other clocksources it uses clock_gettime.
 *
 * usage: paced_latency -b BOOTSTRAP -t TOPIC -r RATE -d SECONDS [-s BYTES] [-a ACKS]
 *                      [-X key=value]... [-C key=value]... [-A ack-latency-file]
 *                      [-E end-to-end-latency-file]
 *
 * -X sets a producer property, -C a consumer property (librdkafka's names for both).
 *
 * The files get one latency per line, in microseconds, in the order the messages were
 * acknowledged or consumed. The last line on stdout is a summary:
 *   sent N acknowledged N failed N consumed N seconds S
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "rdkafka.h"

/* One message's payload starts with this tag and its send time, so the consumer can tell
 * the messages of this run from anything else in the partition. */
#define STAMP_TAG 0x736b696666706c31ULL /* "skiffpl1" */
#define STAMP_BYTES 16
/* Upper bound on recorded samples per file: keeps memory bounded whatever the arguments. */
#define SAMPLES_MAX (64u * 1024u * 1024u)
/* Length of one pacing tick. */
#define TICK_NS 1000000LL
/* How long to wait for outstanding acknowledgements, and for the consumer to catch up. */
#define DRAIN_TIMEOUT_MS 30000
#define CONSUMER_CATCH_UP_NS (10LL * 1000000000LL)
#define CONFIG_ENTRIES_MAX 32
/* Messages sent with one reading of the clock as their send time. */
#define STAMP_REFRESH_MESSAGES 32
/* How long the delivery thread waits in rd_kafka_poll at a time. */
#define DELIVERY_POLL_MS 10

struct samples {
        uint32_t *values;
        uint64_t count;
};

static volatile sig_atomic_t interrupted = 0;
static struct samples ack_samples, e2e_samples;
static uint64_t acknowledged = 0, failed = 0;
static uint64_t consumed = 0; /* written by the consumer thread: atomics */
static int consumer_stop = 0; /* atomics */
static int deliveries_stop = 0; /* atomics */

static int64_t monotonic_ns(void) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* The latency clock: the TSC scaled to nanoseconds when the kernel trusts the TSC as its
 * clocksource (so it is invariant and synchronised across cores), CLOCK_MONOTONIC otherwise. */
static int tsc_clock         = 0;
static double tsc_ns_per_tick = 0;
static uint64_t tsc_base     = 0;
static int64_t tsc_base_ns   = 0;

#if defined(__x86_64__)
static int kernel_clocksource_is_tsc(void) {
        char name[32] = {0};
        FILE *file = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
        if (!file)
                return 0;
        int ok = fgets(name, sizeof(name), file) != NULL && strcmp(name, "tsc\n") == 0;
        fclose(file);
        return ok;
}

/* Pairs a TSC reading with a CLOCK_MONOTONIC one, keeping the pair read closest together of a
 * few tries (a pair split by preemption would skew the rate). */
static void tsc_pair(uint64_t *tsc, int64_t *ns) {
        uint64_t best_width = UINT64_MAX;
        for (int i = 0; i < 8; i++) {
                uint64_t before = __rdtsc();
                int64_t now     = monotonic_ns();
                uint64_t after  = __rdtsc();
                if (after - before < best_width) {
                        best_width = after - before;
                        *tsc       = before + (after - before) / 2;
                        *ns        = now;
                }
        }
}
#endif

#define TSC_CALIBRATION_NS 100000000LL

static void latency_clock_init(void) {
#if defined(__x86_64__)
        if (!kernel_clocksource_is_tsc())
                return;
        uint64_t tsc0, tsc1;
        int64_t ns0, ns1;
        tsc_pair(&tsc0, &ns0);
        struct timespec pause = {.tv_sec = 0, .tv_nsec = TSC_CALIBRATION_NS};
        nanosleep(&pause, NULL);
        tsc_pair(&tsc1, &ns1);
        if (tsc1 <= tsc0 || ns1 <= ns0)
                return;
        tsc_ns_per_tick = (double)(ns1 - ns0) / (double)(tsc1 - tsc0);
        tsc_base        = tsc1;
        tsc_base_ns     = ns1;
        tsc_clock       = 1;
#endif
}

static int64_t latency_clock_ns(void) {
#if defined(__x86_64__)
        if (tsc_clock)
                return tsc_base_ns + (int64_t)((double)(int64_t)(__rdtsc() - tsc_base) * tsc_ns_per_tick);
#endif
        return monotonic_ns();
}

static void die(const char *what, const char *detail) {
        fprintf(stderr, "paced_latency: %s: %s\n", what, detail);
        exit(1);
}

static void on_interrupt(int signal_number) {
        (void)signal_number;
        interrupted = 1;
}

static void samples_init(struct samples *samples, uint64_t expected) {
        uint64_t capacity = expected < SAMPLES_MAX ? expected : SAMPLES_MAX;
        samples->values   = calloc(capacity + 1, sizeof(uint32_t));
        samples->count    = 0;
        if (!samples->values)
                die("out of memory", "sample buffer");
}

static void samples_add(struct samples *samples, uint64_t capacity, int64_t latency_ns) {
        if (samples->count >= capacity)
                return;
        int64_t micros = latency_ns / 1000;
        samples->values[samples->count++] =
            micros < 0 ? 0 : (micros > UINT32_MAX ? UINT32_MAX : (uint32_t)micros);
}

static void samples_write(const struct samples *samples, const char *path) {
        FILE *file = fopen(path, "w");
        if (!file)
                die(path, strerror(errno));
        for (uint64_t i = 0; i < samples->count; i++)
                fprintf(file, "%" PRIu32 "\n", samples->values[i]);
        if (fclose(file) != 0)
                die(path, strerror(errno));
}

static uint64_t sample_capacity = 0;

/* Runs inside rd_kafka_poll on the delivery thread (in rd_kafka_flush on the main thread once
 * that has stopped): the opaque is the message's send time. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque) {
        (void)rk;
        (void)opaque;
        if (message->err) {
                failed++;
                return;
        }
        acknowledged++;
        samples_add(&ack_samples, sample_capacity,
                    latency_clock_ns() - (int64_t)(intptr_t)message->_private);
}

static void apply_config(rd_kafka_conf_t *conf, const char *key, const char *value) {
        char error[512];
        if (rd_kafka_conf_set(conf, key, value, error, sizeof(error)) != RD_KAFKA_CONF_OK)
                die(key, error);
}

/* key=value properties from the command line, for one client. */
struct settings {
        const char *keys[CONFIG_ENTRIES_MAX], *values[CONFIG_ENTRIES_MAX];
        int count;
};

/* Adds one `key=value` argument of option `flag` (the argument is split in place). */
static void add_setting(struct settings *settings, const char *flag, char *argument) {
        char *equals = strchr(argument, '=');
        if (!equals || settings->count == CONFIG_ENTRIES_MAX)
                die(flag, "expected key=value (at most 32 of them)");
        *equals                                = '\0';
        settings->keys[settings->count]     = argument;
        settings->values[settings->count++] = equals + 1;
}

static void apply_settings(rd_kafka_conf_t *conf, const struct settings *settings) {
        for (int i = 0; i < settings->count; i++)
                apply_config(conf, settings->keys[i], settings->values[i]);
}

struct consumer_args {
        rd_kafka_topic_t *topic;
};

/* Called for each consumed message: the payload holds the send time. */
static void on_message(rd_kafka_message_t *message, void *opaque) {
        (void)opaque;
        if (message->err || message->len < STAMP_BYTES)
                return;
        uint64_t tag;
        int64_t sent;
        memcpy(&tag, message->payload, sizeof(tag));
        memcpy(&sent, (char *)message->payload + sizeof(tag), sizeof(sent));
        if (tag != STAMP_TAG)
                return;
        samples_add(&e2e_samples, sample_capacity, latency_clock_ns() - sent);
        __atomic_add_fetch(&consumed, 1, __ATOMIC_RELEASE);
}

/* The consumer thread: librdkafka's simple (callback) consumer, its cheapest path per
 * message, so that the consumer keeps up with the producer on a small machine. */
static void *consume(void *raw) {
        struct consumer_args *args = raw;
        while (!__atomic_load_n(&consumer_stop, __ATOMIC_ACQUIRE))
                rd_kafka_consume_callback(args->topic, 0, 100, on_message, NULL);
        return NULL;
}

/* The delivery thread: runs on_delivery for every acknowledged message until told to stop.
 * It is the only thread that polls the producer until then. */
static void *serve_deliveries(void *producer) {
        while (!__atomic_load_n(&deliveries_stop, __ATOMIC_ACQUIRE))
                rd_kafka_poll((rd_kafka_t *)producer, DELIVERY_POLL_MS);
        return NULL;
}

static void sleep_until_ns(int64_t deadline_ns) {
        struct timespec until = {.tv_sec  = deadline_ns / 1000000000LL,
                                 .tv_nsec = deadline_ns % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR &&
               !interrupted)
                ;
}

int main(int argc, char **argv) {
        const char *bootstrap = NULL, *topic = NULL, *ack_path = NULL, *e2e_path = NULL;
        const char *acks = "-1";
        double rate = 0, seconds = 0;
        size_t size = 100;
        struct settings producer_settings = {0}, consumer_settings = {0};
        int option;
        char error[512];

        while ((option = getopt(argc, argv, "b:t:r:d:s:a:X:C:A:E:")) != -1) {
                switch (option) {
                case 'b': bootstrap = optarg; break;
                case 't': topic = optarg; break;
                case 'r': rate = strtod(optarg, NULL); break;
                case 'd': seconds = strtod(optarg, NULL); break;
                case 's': size = (size_t)strtoul(optarg, NULL, 10); break;
                case 'a': acks = optarg; break;
                case 'A': ack_path = optarg; break;
                case 'E': e2e_path = optarg; break;
                case 'X': add_setting(&producer_settings, "-X", optarg); break;
                case 'C': add_setting(&consumer_settings, "-C", optarg); break;
                default:
                        fprintf(stderr, "usage: %s -b BOOTSTRAP -t TOPIC -r RATE -d SECONDS "
                                        "[-s BYTES] [-a ACKS] [-X key=value]... [-C key=value]... [-A FILE] "
                                        "[-E FILE]\n",
                                argv[0]);
                        return 2;
                }
        }
        if (!bootstrap || !topic || rate <= 0 || seconds <= 0)
                die("arguments", "-b, -t, -r > 0 and -d > 0 are required");
        if (size < STAMP_BYTES)
                size = STAMP_BYTES;
        signal(SIGINT, on_interrupt);
        signal(SIGTERM, on_interrupt);
        latency_clock_init();

        sample_capacity = (uint64_t)(rate * seconds) + 1;
        if (sample_capacity > SAMPLES_MAX)
                sample_capacity = SAMPLES_MAX;
        samples_init(&ack_samples, sample_capacity);
        samples_init(&e2e_samples, sample_capacity);

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        apply_config(conf, "bootstrap.servers", bootstrap);
        apply_config(conf, "acks", acks);
        apply_settings(conf, &producer_settings);
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
        if (!producer)
                die("producer", error);

        /* The consumer starts at the partition's current end, read before anything is sent,
         * so it sees every message of this run. */
        rd_kafka_t *consumer = NULL;
        rd_kafka_topic_t *consumer_topic = NULL;
        pthread_t consumer_thread;
        struct consumer_args consumer_args;
        if (e2e_path) {
                rd_kafka_conf_t *cconf = rd_kafka_conf_new();
                apply_config(cconf, "bootstrap.servers", bootstrap);
                apply_settings(cconf, &consumer_settings);
                consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, error, sizeof(error));
                if (!consumer)
                        die("consumer", error);
                int64_t low, high;
                rd_kafka_resp_err_t err =
                    rd_kafka_query_watermark_offsets(consumer, topic, 0, &low, &high, 10000);
                if (err)
                        die("watermarks", rd_kafka_err2str(err));
                consumer_topic = rd_kafka_topic_new(consumer, topic, NULL);
                if (rd_kafka_consume_start(consumer_topic, 0, high) == -1)
                        die("consume start", rd_kafka_err2str(rd_kafka_last_error()));
                consumer_args.topic = consumer_topic;
                if (pthread_create(&consumer_thread, NULL, consume, &consumer_args) != 0)
                        die("consumer thread", strerror(errno));
        }

        char *payload = calloc(1, size);
        if (!payload)
                die("out of memory", "payload");
        uint64_t tag = STAMP_TAG;
        memcpy(payload, &tag, sizeof(tag));

        /* One message first, acknowledged before the clock starts: connection set-up and
         * metadata are not part of the measurement. */
        if (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                              RD_KAFKA_V_VALUE("warm-up", 7), RD_KAFKA_V_OPAQUE((void *)0),
                              RD_KAFKA_V_END))
                die("produce", "warm-up message refused");
        rd_kafka_flush(producer, DRAIN_TIMEOUT_MS);
        acknowledged = failed = 0;
        ack_samples.count = 0;

        pthread_t delivery_thread;
        if (pthread_create(&delivery_thread, NULL, serve_deliveries, producer) != 0)
                die("delivery thread", strerror(errno));

        rd_kafka_topic_t *producer_topic = rd_kafka_topic_new(producer, topic, NULL);
        if (!producer_topic)
                die("producer topic", rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_message_t chunk[STAMP_REFRESH_MESSAGES];
        uint64_t sent = 0, backpressure = 0;
        const int64_t start = monotonic_ns();
        const int64_t end   = start + (int64_t)(seconds * 1e9);
        int64_t now         = start;
        while (!interrupted && now < end) {
                uint64_t due = (uint64_t)((double)(now - start) * rate / 1e9) + 1;
                while (sent < due && !interrupted) {
                        int count = (int)(due - sent < STAMP_REFRESH_MESSAGES ? due - sent
                                                                              : STAMP_REFRESH_MESSAGES);
                        const int64_t stamp = latency_clock_ns();
                        memcpy(payload + sizeof(tag), &stamp, sizeof(stamp));
                        memset(chunk, 0, sizeof(chunk[0]) * (size_t)count);
                        for (int i = 0; i < count; i++) {
                                chunk[i].payload  = payload;
                                chunk[i].len      = size;
                                chunk[i]._private = (void *)(intptr_t)stamp;
                        }
                        int queued = rd_kafka_produce_batch(producer_topic, 0, RD_KAFKA_MSG_F_COPY,
                                                            chunk, count);
                        sent += (uint64_t)queued;
                        if (queued == count)
                                continue;
                        /* librdkafka fails every message after the first that fails. A full
                         * queue means the broker is not keeping up with this rate: wait for
                         * acknowledgements, then send the rest with a fresh send time. */
                        if (chunk[queued].err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                die("produce", rd_kafka_err2str(chunk[queued].err));
                        backpressure++;
                        sleep_until_ns(monotonic_ns() + TICK_NS);
                }
                now = monotonic_ns();
                sleep_until_ns(start + ((now - start) / TICK_NS + 1) * TICK_NS);
                now = monotonic_ns();
        }
        const double elapsed = (double)(monotonic_ns() - start) / 1e9;
        /* The rest of the delivery reports are served by flush, on this thread alone. */
        __atomic_store_n(&deliveries_stop, 1, __ATOMIC_RELEASE);
        pthread_join(delivery_thread, NULL);
        rd_kafka_flush(producer, DRAIN_TIMEOUT_MS);

        if (consumer) {
                const int64_t deadline = monotonic_ns() + CONSUMER_CATCH_UP_NS;
                while (__atomic_load_n(&consumed, __ATOMIC_ACQUIRE) < acknowledged && monotonic_ns() < deadline)
                        usleep(10000);
                __atomic_store_n(&consumer_stop, 1, __ATOMIC_RELEASE);
                pthread_join(consumer_thread, NULL);
                rd_kafka_consume_stop(consumer_topic, 0);
                rd_kafka_topic_destroy(consumer_topic);
                rd_kafka_destroy(consumer);
                samples_write(&e2e_samples, e2e_path);
        }
        if (ack_path)
                samples_write(&ack_samples, ack_path);
        rd_kafka_topic_destroy(producer_topic);
        rd_kafka_destroy(producer);
        if (tsc_clock)
                fprintf(stderr, "paced_latency: latency clock: TSC, %.1f us from CLOCK_MONOTONIC at the end\n",
                        (double)(latency_clock_ns() - monotonic_ns()) / 1e3);
        if (backpressure)
                fprintf(stderr, "paced_latency: the producer's queue was full %" PRIu64 " times\n",
                        backpressure);
        printf("sent %" PRIu64 " acknowledged %" PRIu64 " failed %" PRIu64 " consumed %" PRIu64
               " seconds %.3f\n",
               sent, acknowledged, failed, (uint64_t)consumed, elapsed);
        return failed ? 1 : 0;
}
