// klua.admin and klua.lag: what admin.cpp shares with lag.cpp and embedded.cpp.
#pragma once
#include <librdkafka/rdkafka.h>

#include <string>

#include "host/runtime.hpp"

namespace klua {

// Creates a topic on the embedded mock cluster (bindings/embedded.cpp).
rd_kafka_resp_err_t embedded_create_topic(Runtime& rt, const std::string& name, int partitions, int rf);

}  // namespace klua
