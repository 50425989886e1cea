// Raw librdkafka consume loop: the baseline that klua's bench/consume.lua is
// measured against. A consumer with klua's default consumer configuration
// (enable.auto.offset.store=false, enable.auto.commit=true, and the benchmark's
// auto.offset.reset=earliest, a fresh group id) subscribes to a topic and reads
// N messages with rd_kafka_consumer_poll, touching every key and value (their
// lengths are summed). Timed from the first message to the N-th. Prints one
// line of JSON:
//   {"msgs":N,"seconds":T,"msgs_per_s":R,"bytes":B,"size":S,"check":C}
// where B is the sum of key and value lengths of the N messages (C: a sum of one
// byte of each, so that the data is read).
//
// Without --brokers it sets up the same in-process mock cluster klua uses when
// no broker is configured (3 brokers, hosted by a dummy producer handle), creates
// a 32-partition topic and first produces the N messages into it (untimed, with
// klua's default producer configuration), since a mock cluster lives only in its
// process. With --brokers it reads an existing topic from the beginning.
//
// With --assign P it assigns partitions 0..P-1 from the beginning instead of
// subscribing (no group join: bench/run compares whole-process wall time with
// kcat -C, which has no group either).
//
// The loop is the fastest measured on librdkafka 2.15 (embedded, 1M x 100 B, 2 cores):
// rd_kafka_consume_batch_queue without waiting (--batch, default 1024), falling back to a
// blocking rd_kafka_consumer_poll when nothing is there: about 5M msgs/s, against 2.5-2.9M
// with one rd_kafka_consumer_poll per message (--batch 0) and 0.8M for a batch call that
// waits for a full batch. --fetch-queue-backoff-ms sets fetch.queue.backoff.ms (default 10,
// klua's default; librdkafka's own 1000 stalls a fast consumer: 191k msgs/s); the JSON line
// repeats both.
//
//   klua_bench_raw_consume [--brokers LIST] [--topic NAME] [--count N] [--size S] [--assign P]
//                          [--batch N] [--fetch-queue-backoff-ms MS]
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

const int PARTITIONS = 32;  // of the embedded topic

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "raw_consume: %s\n", what.c_str());
    std::exit(1);
}

void set(rd_kafka_conf_t* conf, const char* key, const char* value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        die(std::string("config ") + key + "=" + value + ": " + err);
}

long long parse_count(const char* flag, const char* s) {
    char* end = nullptr;
    long long v = std::strtoll(s, &end, 10);
    if (!end || *end || v < 0) die(std::string("bad value for ") + flag + ": " + s);
    return v;
}

struct Delivery {
    long long delivered = 0, errors = 0;
    std::string first_error;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* d = static_cast<Delivery*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) ++d->delivered;
    else if (d->errors++ == 0) d->first_error = rd_kafka_err2str(m->err);
}

// Fills the topic with `count` messages of `size` bytes (no key) with klua's default producer
// configuration, payload copied. Message i goes to partition i % partitions: the default
// partitioner's sticky batches spread keyless messages unevenly, and the mock cluster keeps
// only about 5 MiB per partition (it drops the oldest batches beyond that).
void fill(const std::string& bootstraps, const std::string& topic, int partitions, long long count, long long size) {
    char err[512];
    Delivery d;
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstraps.c_str());
    set(conf, "enable.idempotence", "true");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &d);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) die(std::string("producer: ") + err);
    std::string payload(static_cast<size_t>(size), 'x');
    for (long long i = 0; i < count; ++i) {
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(static_cast<int32_t>(i % partitions)),
                RD_KAFKA_V_VALUE(payload.data(), payload.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) die(std::string("produce: ") + rd_kafka_err2str(e));
            rd_kafka_poll(rk, 1);
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR) die("fill: flush timed out");
    if (d.errors || d.delivered != count)
        die("fill: " + std::to_string(d.delivered) + " of " + std::to_string(count) +
            " messages delivered; first error: " + d.first_error);
    rd_kafka_destroy(rk);
}

std::string fresh_group() {
    std::random_device rd;
    char buf[64];
    std::snprintf(buf, sizeof buf, "klua-bench-raw-%08x%08x", rd(), rd());
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    long long count = 1000000;
    long long size = 100;
    std::string topic = "bench";
    std::string brokers;
    int assign_partitions = 0;  // > 0: assign instead of subscribe
    double idle_timeout_s = 60;  // give up when no message arrives for this long
    std::string backoff = "10";  // fetch.queue.backoff.ms, as klua's default
    int batch = 1024;            // > 0: rd_kafka_consume_batch_queue with up to this many per call
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) die("missing value for " + a);
            return argv[++i];
        };
        if (a == "--count") count = parse_count("--count", next());
        else if (a == "--size") size = parse_count("--size", next());
        else if (a == "--topic") topic = next();
        else if (a == "--brokers" || a == "-b") brokers = next();
        else if (a == "--assign") assign_partitions = int(parse_count("--assign", next()));
        else if (a == "--fetch-queue-backoff-ms") backoff = std::to_string(parse_count(a.c_str(), next()));
        else if (a == "--batch") batch = int(parse_count("--batch", next()));
        else if (a == "--idle-timeout") idle_timeout_s = double(parse_count("--idle-timeout", next()));
        else if (a == "-h" || a == "--help") {
            std::puts("usage: klua_bench_raw_consume [--brokers LIST] [--topic NAME] [--count N] [--size S] [--assign P] "
                      "[--batch N] [--fetch-queue-backoff-ms MS]");
            return 0;
        } else die("unknown argument " + a);
    }
    if (count < 1) die("--count must be >= 1");

    char err[512];
    rd_kafka_t* mock_rk = nullptr;
    rd_kafka_mock_cluster_t* mc = nullptr;
    if (brokers.empty()) {
        // The mock cluster keeps only about 5 MiB per partition and drops older batches.
        if (double(count) * double(size + 20) / PARTITIONS > 4.5 * 1024 * 1024)
            die("count x size too large for the embedded cluster (about 5 MiB per partition, 32 partitions)");
        // In-process mock cluster, hosted by a dummy producer handle (as klua does).
        rd_kafka_conf_t* mconf = rd_kafka_conf_new();
        set(mconf, "log_level", "3");
        mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, err, sizeof err);
        if (!mock_rk) die(std::string("mock handle: ") + err);
        mc = rd_kafka_mock_cluster_new(mock_rk, 3);
        if (!mc) die("rd_kafka_mock_cluster_new failed");
        if (rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topic.c_str(), PARTITIONS, 1))
            die(std::string("mock topic create: ") + rd_kafka_err2str(e));
        brokers = rd_kafka_mock_cluster_bootstraps(mc);
        fill(brokers, topic, PARTITIONS, count, size);
    }

    // The consumer: klua's default consumer configuration.
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", brokers.c_str());
    set(conf, "group.id", fresh_group().c_str());
    set(conf, "enable.auto.offset.store", "false");
    set(conf, "enable.auto.commit", "true");
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "fetch.queue.backoff.ms", backoff.c_str());
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) die(std::string("consumer: ") + err);
    rd_kafka_poll_set_consumer(rk);
    if (assign_partitions > 0) {
        rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(assign_partitions);
        for (int p = 0; p < assign_partitions; ++p)
            rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        if (rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts)) die(std::string("assign: ") + rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(parts);
    } else {
        rd_kafka_topic_partition_list_t* subs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(subs, topic.c_str(), RD_KAFKA_PARTITION_UA);
        if (rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, subs))
            die(std::string("subscribe: ") + rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(subs);
    }

    long long n = 0, bytes = 0, check = 0;
    std::chrono::steady_clock::time_point t0, t1;
    int idle_polls = 0;  // consecutive empty 1 s polls
    auto handle = [&](rd_kafka_message_t* m) {
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                die(std::string("consume: ") + rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            return;
        }
        if (n >= count) {  // a batch may bring more than needed
            rd_kafka_message_destroy(m);
            return;
        }
        if (n == 0) t0 = std::chrono::steady_clock::now();
        // Touch the data: sum the lengths of key and value, and read a byte of each.
        if (m->key && m->key_len) {
            bytes += m->key_len;
            check += static_cast<const unsigned char*>(m->key)[m->key_len - 1];
        }
        if (m->payload && m->len) {
            bytes += m->len;
            check += static_cast<const unsigned char*>(m->payload)[m->len - 1];
        }
        rd_kafka_message_destroy(m);
        if (++n == count) t1 = std::chrono::steady_clock::now();
    };
    auto idle = [&] {
        if (++idle_polls > idle_timeout_s)
            die("no message for " + std::to_string(int(idle_timeout_s)) + " s after " + std::to_string(n) + " of " +
                std::to_string(count));
    };
    if (batch > 0) {
        // One lock of the queue per batch instead of per message.
        rd_kafka_queue_t* q = rd_kafka_queue_get_consumer(rk);
        std::vector<rd_kafka_message_t*> ms(static_cast<size_t>(batch));
        while (n < count) {
            // What is there now, without waiting for a full batch; else wait for one message.
            ssize_t got = rd_kafka_consume_batch_queue(q, 0, ms.data(), ms.size());
            if (got < 0) die(std::string("consume_batch_queue: ") + rd_kafka_err2str(rd_kafka_last_error()));
            if (got == 0) {
                if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 1000)) {
                    idle_polls = 0;
                    handle(m);
                } else {
                    idle();
                }
                continue;
            }
            idle_polls = 0;
            for (ssize_t i = 0; i < got; ++i) handle(ms[static_cast<size_t>(i)]);
        }
        rd_kafka_queue_destroy(q);
    } else {
        while (n < count) {
            rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 1000);
            if (!m) {
                idle();
                continue;
            }
            idle_polls = 0;
            handle(m);
        }
    }
    double secs = std::chrono::duration<double>(t1 - t0).count();

    std::printf("{\"msgs\":%lld,\"seconds\":%.6f,\"msgs_per_s\":%.1f,\"bytes\":%lld,\"size\":%lld,\"check\":%lld,"
                "\"fetch_queue_backoff_ms\":%s,\"batch\":%d}\n",
                n, secs, secs > 0 ? double(n) / secs : 0.0, bytes, size, check, backoff.c_str(), batch);
    std::fflush(stdout);

    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (mc) rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk) rd_kafka_destroy(mock_rk);
    return 0;
}
