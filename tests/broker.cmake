# tests/broker.cmake: one real Kafka broker for the whole ctest run.
#
#   include(${CMAKE_SOURCE_DIR}/tests/broker.cmake)
#   klua_add_broker_test(NAME <name> COMMAND <cmd> [args...]
#                        [WORKING_DIRECTORY <dir>] [TIMEOUT <s>]
#                        [ENVIRONMENT <VAR=value>...] [LABELS <label>...])
#
# The fixture "kafka_broker" runs `tools/kafka-broker start` once before the
# first test needing it (test kafka_broker_start) and `tools/kafka-broker stop`
# after the last one (test kafka_broker_stop). `ctest -R <name>` pulls both in
# automatically. Each broker test runs through tools/with-broker, which sets
# KLUA_BROKERS=127.0.0.1:PORT. Broker tests may run in parallel (ctest -j)
# against the same broker, so they should use their own topic / group names.
#
# If the first element of COMMAND is a CMake target, it is replaced by
# $<TARGET_FILE:...> (the wrapper is the real argv[0], so add_test would not
# do it for us).
#
# Broker state lives in ${KLUA_BROKER_STATE} (default <build>/kafka-broker),
# so separate build trees use separate brokers. The jar cache is shared:
# ${XDG_CACHE_HOME:-~/.cache}/klua/kafka-<version>/libs (first run downloads
# it with Maven; later runs need no network).

include_guard(GLOBAL)

option(KLUA_BROKER_TESTS "Add tests that need a real Kafka broker (Java 17, Maven, kcat)" ON)
set(KLUA_KAFKA_VERSION "4.1.1" CACHE STRING "Kafka version for the test broker")
set(KLUA_BROKER_STATE "${CMAKE_BINARY_DIR}/kafka-broker" CACHE PATH
    "State directory of the test broker (pid, address, log)")

get_filename_component(_klua_tools_dir "${CMAKE_CURRENT_LIST_DIR}/../tools" ABSOLUTE)
set(KLUA_KAFKA_BROKER "${_klua_tools_dir}/kafka-broker")
set(KLUA_WITH_BROKER "${_klua_tools_dir}/with-broker")

if(KLUA_BROKER_TESTS)
  add_test(NAME kafka_broker_start
           COMMAND "${KLUA_KAFKA_BROKER}" start --version "${KLUA_KAFKA_VERSION}")
  set_tests_properties(kafka_broker_start PROPERTIES
    FIXTURES_SETUP kafka_broker
    ENVIRONMENT "KLUA_BROKER_STATE=${KLUA_BROKER_STATE}"
    LABELS kafka
    # First run downloads ~45 MB of jars with Maven.
    TIMEOUT 600)

  add_test(NAME kafka_broker_stop COMMAND "${KLUA_KAFKA_BROKER}" stop)
  set_tests_properties(kafka_broker_stop PROPERTIES
    FIXTURES_CLEANUP kafka_broker
    ENVIRONMENT "KLUA_BROKER_STATE=${KLUA_BROKER_STATE}"
    LABELS kafka
    TIMEOUT 60)
endif()

function(klua_add_broker_test)
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "NAME;WORKING_DIRECTORY;TIMEOUT"
                        "COMMAND;ENVIRONMENT;LABELS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "klua_add_broker_test: unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_NAME OR NOT ARG_COMMAND)
    message(FATAL_ERROR "klua_add_broker_test: NAME and COMMAND are required")
  endif()
  if(NOT KLUA_BROKER_TESTS)
    return()
  endif()

  list(GET ARG_COMMAND 0 _exe)
  if(TARGET "${_exe}")
    list(REMOVE_AT ARG_COMMAND 0)
    list(PREPEND ARG_COMMAND "$<TARGET_FILE:${_exe}>")
  endif()

  set(_wd)
  if(ARG_WORKING_DIRECTORY)
    set(_wd WORKING_DIRECTORY "${ARG_WORKING_DIRECTORY}")
  endif()
  add_test(NAME "${ARG_NAME}" COMMAND "${KLUA_WITH_BROKER}" ${ARG_COMMAND} ${_wd})

  set(_env "KLUA_BROKER_STATE=${KLUA_BROKER_STATE}" ${ARG_ENVIRONMENT})
  set_tests_properties("${ARG_NAME}" PROPERTIES
    FIXTURES_REQUIRED kafka_broker
    ENVIRONMENT "${_env}"
    LABELS "kafka;${ARG_LABELS}")
  if(ARG_TIMEOUT)
    set_tests_properties("${ARG_NAME}" PROPERTIES TIMEOUT "${ARG_TIMEOUT}")
  endif()
endfunction()

# Smoke tests: the broker answers metadata, and librdkafka (kcat) can
# produce and consume one message through it.
klua_add_broker_test(NAME broker_smoke TIMEOUT 60
  COMMAND sh -c "kcat -b \"\$KLUA_BROKERS\" -L -m 10 | grep -q 'broker 1 at'")
klua_add_broker_test(NAME broker_roundtrip TIMEOUT 60
  COMMAND sh -c "t=klua_smoke_$$ && echo hello | kcat -b \"\$KLUA_BROKERS\" -P -t \$t && kcat -b \"\$KLUA_BROKERS\" -C -t \$t -c 1 -e -q | grep -qx hello")

# The secure broker (tools/kafka-broker --profile secure: TLS, mTLS, SASL_SSL with PLAIN and
# OAUTHBEARER, ACLs enforced), a fixture of its own beside the main broker, whose users stay
# unrestricted. Broker tests named broker_security_* (tests/integration/security_*_test.lua)
# require it; klua_require_secure_broker() marks them once they are added. Its state dir is
# ${KLUA_BROKER_STATE}-secure; the jar cache is shared with the main broker.
if(KLUA_BROKER_TESTS)
  add_test(NAME kafka_broker_secure_start
           COMMAND "${KLUA_KAFKA_BROKER}" start --profile secure --version "${KLUA_KAFKA_VERSION}")
  set_tests_properties(kafka_broker_secure_start PROPERTIES
    FIXTURES_SETUP kafka_broker_secure
    ENVIRONMENT "KLUA_BROKER_STATE=${KLUA_BROKER_STATE}"
    LABELS kafka
    TIMEOUT 600)
  add_test(NAME kafka_broker_secure_stop COMMAND "${KLUA_KAFKA_BROKER}" stop --profile secure)
  set_tests_properties(kafka_broker_secure_stop PROPERTIES
    FIXTURES_CLEANUP kafka_broker_secure
    ENVIRONMENT "KLUA_BROKER_STATE=${KLUA_BROKER_STATE}"
    LABELS kafka
    TIMEOUT 60)
endif()

function(klua_require_secure_broker)
  if(NOT KLUA_BROKER_TESTS)
    return()
  endif()
  get_property(_tests DIRECTORY PROPERTY TESTS)
  foreach(_t ${_tests})
    if(_t MATCHES "^broker_security_")
      set_property(TEST ${_t} APPEND PROPERTY FIXTURES_REQUIRED kafka_broker_secure)
      set_property(TEST ${_t} APPEND PROPERTY LABELS security)
    endif()
  endforeach()
endfunction()
