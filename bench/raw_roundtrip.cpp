// Raw librdkafka round-trip latency program: the baseline of bench/roundtrip.lua.
// A producer thread sends at a fixed rate (the messages due in each millisecond
// are sent together, then it sleeps until the next tick) while the main thread
// consumes the same topic (partitions 0..P-1 assigned at their end, no group
// join), blocked in rd_kafka_consumer_poll. Each value starts with its sequence
// number and send time (steady clock, ms); latency is receive time minus send
// time; messages sent during the warm-up are not counted (nor required: the
// first ones may precede the consumer's end offsets). Producer and consumer
// use klua's default configurations, plus fetch.wait.max.ms when --fetch-wait-ms
// is given (the mock cluster answers a fetch only after that wait). Prints one line of JSON:
//   {"sent":N,"received":N,"measured":M,"rate":R,"p50_ms":..,"p99_ms":..,"p999_ms":..,"max_ms":..}
//
//   klua_bench_raw_roundtrip --brokers B --topic T --partitions P [--rate 10000]
//       [--seconds 5] [--warmup-seconds 1] [--size 100] [--fetch-wait-ms N]
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "raw_roundtrip: %s\n", what.c_str());
    std::exit(1);
}

void set(rd_kafka_conf_t* conf, const char* key, const char* value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        die(std::string("config ") + key + "=" + value + ": " + err);
}

double number(const std::string& flag, const char* s) {
    char* end = nullptr;
    double v = std::strtod(s, &end);
    if (!end || *end || v < 0) die("bad value for " + flag + ": " + s);
    return v;
}

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err) die(std::string("delivery failed: ") + rd_kafka_err2str(m->err));
}

}  // namespace

int main(int argc, char** argv) {
    std::string brokers, topic, fetch_wait;
    int partitions = 0;
    double rate = 10000, seconds = 5, warmup = 1, size = 100;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 >= argc) die("missing value for " + a);
        const char* v = argv[++i];
        if (a == "--brokers" || a == "-b") brokers = v;
        else if (a == "--topic") topic = v;
        else if (a == "--partitions") partitions = int(number(a, v));
        else if (a == "--rate") rate = number(a, v);
        else if (a == "--seconds") seconds = number(a, v);
        else if (a == "--warmup-seconds") warmup = number(a, v);
        else if (a == "--size") size = number(a, v);
        else if (a == "--fetch-wait-ms") fetch_wait = std::to_string((long long)number(a, v));
        else die("unknown argument " + a);
    }
    if (brokers.empty() || topic.empty() || partitions < 1) die("--brokers, --topic and --partitions are required");
    if (size < 20) die("--size must be >= 20 (the value carries a timestamp)");
    const long long total = (long long)std::floor((warmup + seconds) * rate);
    const long long warm_count = (long long)std::floor(warmup * rate);
    char err[512];

    rd_kafka_conf_t* pconf = rd_kafka_conf_new();
    set(pconf, "bootstrap.servers", brokers.c_str());
    set(pconf, "enable.idempotence", "true");
    rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
    rd_kafka_t* prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
    if (!prod) die(std::string("producer: ") + err);

    std::random_device rd;
    std::string group = "klua-bench-rt-raw-" + std::to_string(rd()) + std::to_string(rd());
    rd_kafka_conf_t* cconf = rd_kafka_conf_new();
    set(cconf, "bootstrap.servers", brokers.c_str());
    set(cconf, "group.id", group.c_str());
    set(cconf, "enable.auto.offset.store", "false");
    set(cconf, "enable.auto.commit", "true");
    if (!fetch_wait.empty()) set(cconf, "fetch.wait.max.ms", fetch_wait.c_str());
    rd_kafka_t* cons = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof err);
    if (!cons) die(std::string("consumer: ") + err);
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p)
        rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_END;
    if (rd_kafka_resp_err_t e = rd_kafka_assign(cons, parts)) die(std::string("assign: ") + rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(parts);

    std::vector<double> lat;
    lat.reserve(size_t(total));
    long long received = 0, sent = 0;  // sent: the producer thread's only
    std::string pad(size_t(size) - 20, 'x');
    char value[4096];

    auto consume = [&](int timeout_ms) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(cons, timeout_ms);
        if (!m) return;
        double t = now_ms();
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) die(std::string("consume: ") + rd_kafka_message_errstr(m));
        } else if (m->len >= 20) {
            const char* v = static_cast<const char*>(m->payload);
            long long seq = std::strtoll(std::string(v, 9).c_str(), nullptr, 10);
            double ts = std::strtod(std::string(v + 9, 11).c_str(), nullptr);
            double d = std::fmod(t, 1e7) - ts;  // the stamp is the clock modulo 1e7 ms (it fits 11 characters)
            if (seq >= warm_count) lat.push_back(d < 0 ? d + 1e7 : d);
            ++received;
        }
        rd_kafka_message_destroy(m);
    };

    // Give the consumer's fetchers a moment to start at the end offsets (as the klua side does).
    for (double until = now_ms() + 500; now_ms() < until;) consume(10);

    // The producer runs on a thread of its own that sleeps until each millisecond tick, so that
    // neither side spins; the main thread blocks in rd_kafka_consumer_poll.
    std::thread producer([&] {
        const auto start = std::chrono::steady_clock::now();
        const double t0 = now_ms();
        for (long long tick = 1; sent < total; ++tick) {
            long long due = std::min(total, (long long)std::floor((now_ms() - t0) * rate / 1000) + 1);
            for (; sent < due; ++sent) {
                int n = std::snprintf(value, sizeof value, "%09lld%011.3f", sent, std::fmod(now_ms(), 1e7));
                std::copy(pad.begin(), pad.end(), value + n);
                for (;;) {
                    rd_kafka_resp_err_t e = rd_kafka_producev(
                        prod, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(int32_t(sent % partitions)),
                        RD_KAFKA_V_VALUE(value, size_t(n) + pad.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_END);
                    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
                    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) die(std::string("produce: ") + rd_kafka_err2str(e));
                    rd_kafka_poll(prod, 1);
                }
            }
            rd_kafka_poll(prod, 0);  // delivery reports
            std::this_thread::sleep_until(start + std::chrono::milliseconds(tick));
        }
        rd_kafka_flush(prod, 30000);
    });

    const size_t measured = size_t(total - warm_count);
    for (double deadline = now_ms() + (warmup + seconds) * 1000 + 60000; lat.size() < measured && now_ms() < deadline;)
        consume(100);
    producer.join();
    if (lat.size() < measured)
        die("received " + std::to_string(lat.size()) + " of the " + std::to_string(measured) + " measured messages");

    std::sort(lat.begin(), lat.end());
    auto pct = [&](double q) { return lat[size_t(std::max(1.0, std::ceil(q * double(lat.size())))) - 1]; };
    std::printf("{\"sent\":%lld,\"received\":%lld,\"measured\":%zu,\"rate\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                "\"p999_ms\":%.3f,\"max_ms\":%.3f}\n",
                sent, received, lat.size(), rate, pct(0.5), pct(0.99), pct(0.999), lat.back());
    std::fflush(stdout);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(prod);
    return 0;
}
