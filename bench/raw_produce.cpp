// Raw librdkafka produce loop: the baseline that klua's bench/produce.lua is
// measured against. It sets up the same in-process mock cluster klua uses when
// no broker is configured (3 brokers, a 32-partition topic) and a producer with
// klua's default configuration (enable.idempotence=true, otherwise librdkafka
// defaults), then produces N messages of S bytes and waits for every delivery
// report. Prints one line of JSON. With --brokers it produces to an existing
// topic of that cluster instead (bench/run's shared mock cluster or a real
// broker), so that every contender hits the same cluster.
//
//   klua_bench_raw_produce [--brokers LIST] [--count N] [--size S] [--warmup W] [--topic NAME]
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Counters {
    long long delivered = 0;
    long long errors = 0;
    std::string first_error;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* c = static_cast<Counters*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++c->delivered;
    } else {
        if (c->errors++ == 0) c->first_error = rd_kafka_err2str(m->err);
    }
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "raw_produce: %s\n", what.c_str());
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

// Produces `count` messages of `payload`, waiting for all delivery reports.
// Returns the elapsed seconds from just before the first produce until the last
// delivery report has been served.
double produce_batch(rd_kafka_t* rk, const char* topic, const std::string& payload,
                     long long count, Counters& c) {
    const long long base = c.delivered + c.errors;
    auto t0 = std::chrono::steady_clock::now();
    for (long long i = 0; i < count; ++i) {
        for (;;) {
            rd_kafka_resp_err_t err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die(std::string("produce: ") + rd_kafka_err2str(err));
            rd_kafka_poll(rk, 1);  // serve delivery reports to make room
        }
        rd_kafka_poll(rk, 0);
    }
    while (c.delivered + c.errors - base < count) rd_kafka_poll(rk, 100);
    auto t1 = std::chrono::steady_clock::now();
    // Nothing should remain; flush is a cheap confirmation.
    rd_kafka_flush(rk, 10000);
    return std::chrono::duration<double>(t1 - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    long long count = 1000000;
    long long size = 100;
    long long warmup = 10000;
    std::string topic = "bench";
    std::string brokers;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> const char* {
            if (i + 1 >= argc) die("missing value for " + a);
            return argv[++i];
        };
        if (a == "--count") count = parse_count("--count", next());
        else if (a == "--size") size = parse_count("--size", next());
        else if (a == "--warmup") warmup = parse_count("--warmup", next());
        else if (a == "--topic") topic = next();
        else if (a == "--brokers" || a == "-b") brokers = next();
        else if (a == "-h" || a == "--help") {
            std::puts("usage: klua_bench_raw_produce [--brokers LIST] [--count N] [--size S] [--warmup W] [--topic NAME]");
            return 0;
        } else die("unknown argument " + a);
    }

    char err[512];

    rd_kafka_t* mock_rk = nullptr;
    rd_kafka_mock_cluster_t* mc = nullptr;
    std::string bootstraps = brokers;
    if (brokers.empty()) {
        // In-process mock cluster, hosted by a dummy producer handle (as klua does).
        rd_kafka_conf_t* mconf = rd_kafka_conf_new();
        set(mconf, "log_level", "3");
        mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, err, sizeof err);
        if (!mock_rk) die(std::string("mock handle: ") + err);
        mc = rd_kafka_mock_cluster_new(mock_rk, 3);
        if (!mc) die("rd_kafka_mock_cluster_new failed");
        if (rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topic.c_str(), 32, 1))
            die(std::string("mock topic create: ") + rd_kafka_err2str(e));
        bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    }

    // The producer: klua's default configuration.
    Counters c;
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstraps.c_str());
    set(conf, "enable.idempotence", "true");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &c);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) die(std::string("producer: ") + err);

    std::string payload(static_cast<size_t>(size), 'x');

    if (warmup > 0) produce_batch(rk, topic.c_str(), payload, warmup, c);
    const long long warm_delivered = c.delivered, warm_errors = c.errors;
    if (warm_errors) die("warm-up delivery failed: " + c.first_error);

    double secs = produce_batch(rk, topic.c_str(), payload, count, c);
    long long delivered = c.delivered - warm_delivered;
    long long errors = c.errors - warm_errors;

    std::printf("{\"msgs\":%lld,\"bytes\":%lld,\"seconds\":%.6f,\"msgs_per_s\":%.1f,"
                "\"delivered\":%lld,\"errors\":%lld}\n",
                count, size, secs, secs > 0 ? double(count) / secs : 0.0, delivered, errors);
    std::fflush(stdout);
    if (errors) std::fprintf(stderr, "raw_produce: first delivery error: %s\n", c.first_error.c_str());

    rd_kafka_destroy(rk);
    if (mc) rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk) rd_kafka_destroy(mock_rk);
    return errors ? 1 : 0;
}
