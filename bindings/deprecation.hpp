// Moved to host/deprecation.hpp (the scheduler uses it too); this forwarder keeps the bindings'
// includes working.
#pragma once
#include "host/deprecation.hpp"
