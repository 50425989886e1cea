// The built-in client metrics' C++ parts (bindings/client_metrics.hpp): the histogram's bucket
// choice against a plain linear search, and the topic cap.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "bindings/client_metrics.hpp"

using namespace klua::client_metrics;

// The bucket Prometheus puts x in: the first bound >= x (le is inclusive), else the last (+Inf).
static int reference_bucket(double x) {
  for (int i = 0; i < kBucketCount; ++i)
    if (x <= kBuckets[i]) return i;
  return kBucketCount;
}

TEST_CASE("a histogram observation lands in the bucket of the first bound at or above it", "[client_metrics]") {
  std::vector<double> xs = {0, -1, 1e-9, 20, 1e300, std::numeric_limits<double>::infinity()};
  for (int i = 0; i < kBucketCount; ++i) {
    double b = kBuckets[i];
    xs.push_back(b);
    xs.push_back(std::nextafter(b, 0.0));
    xs.push_back(std::nextafter(b, 1e9));
  }
  for (double x = 1e-5; x < 30; x *= 1.01) xs.push_back(x);
  for (double x : xs) {
    Histogram h;
    h.observe(x);
    int want = reference_bucket(x);
    for (int i = 0; i <= kBucketCount; ++i) {
      INFO("x = " << x << ", bucket " << i);
      CHECK(h.counts[i] == (i == want ? 1u : 0u));
    }
  }
  Histogram h;
  h.observe(0.002);
  h.observe(0.003);
  CHECK(h.sum == Approx(0.005));
}

TEST_CASE("a client names 100 topics; the others share _other", "[client_metrics]") {
  TopicSlots slots;
  TopicCounters* first = slots.get("t0");
  for (int i = 1; i < 100; ++i) slots.get(("t" + std::to_string(i)).c_str());
  CHECK(slots.get("t0") == first);
  TopicCounters* other = slots.get("t100");
  CHECK(other->topic == "_other");
  CHECK(slots.get("t101") == other);
  CHECK(slots.get("t99")->topic == "t99");
  CHECK(slots.all().size() == 101);
}
