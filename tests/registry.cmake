# tests/registry.cmake: one real schema registry (Apicurio, tools/schema-registry) for the whole ctest run.
#
#   include(${CMAKE_SOURCE_DIR}/tests/registry.cmake)   (after broker.cmake)
#   klua_add_registry_test(NAME <name> COMMAND <cmd> [args...] [BROKER]
#                          [WORKING_DIRECTORY <dir>] [TIMEOUT <s>]
#                          [ENVIRONMENT <VAR=value>...] [LABELS <label>...])
#
# The fixture "schema_registry" runs `tools/schema-registry start` once before the first test needing
# it (test schema_registry_start) and `tools/schema-registry stop` after the last (schema_registry_stop);
# `ctest -R <name>` pulls both in. Each test runs through tools/with-registry, which sets
# KLUA_SCHEMA_REGISTRY=http://127.0.0.1:PORT/apis/ccompat/v7. Name tests registry_*; with BROKER the
# test also requires the kafka_broker fixture, gets KLUA_BROKERS (tools/with-broker) and should be
# named broker_registry_*. Tests may run in parallel against the same registry: use subjects of your own.
#
# If the first element of COMMAND is a CMake target, it is replaced by $<TARGET_FILE:...>.
#
# The registry's state lives in ${KLUA_REGISTRY_STATE} (default <build>/schema-registry). Its storage is
# in memory. The distribution is cached in ${XDG_CACHE_HOME:-~/.cache}/klua/apicurio-registry-<version>
# (the first run downloads ~170 MB with Maven); it needs Java 21+ (see tools/schema-registry).

include_guard(GLOBAL)

option(KLUA_REGISTRY_TESTS "Add tests that need a real schema registry (Apicurio: Java 21+, Maven)" ON)
set(KLUA_REGISTRY_STATE "${CMAKE_BINARY_DIR}/schema-registry" CACHE PATH
    "State directory of the test schema registry (pid, address, log)")

get_filename_component(_klua_tools_dir "${CMAKE_CURRENT_LIST_DIR}/../tools" ABSOLUTE)
set(KLUA_SCHEMA_REGISTRY_TOOL "${_klua_tools_dir}/schema-registry")
set(KLUA_WITH_REGISTRY "${_klua_tools_dir}/with-registry")

if(KLUA_REGISTRY_TESTS)
  add_test(NAME schema_registry_start COMMAND "${KLUA_SCHEMA_REGISTRY_TOOL}" start)
  set_tests_properties(schema_registry_start PROPERTIES
    FIXTURES_SETUP schema_registry
    ENVIRONMENT "KLUA_REGISTRY_STATE=${KLUA_REGISTRY_STATE}"
    LABELS registry
    # The first run downloads the distribution with Maven.
    TIMEOUT 600)
  add_test(NAME schema_registry_stop COMMAND "${KLUA_SCHEMA_REGISTRY_TOOL}" stop)
  set_tests_properties(schema_registry_stop PROPERTIES
    FIXTURES_CLEANUP schema_registry
    ENVIRONMENT "KLUA_REGISTRY_STATE=${KLUA_REGISTRY_STATE}"
    LABELS registry
    TIMEOUT 60)
endif()

function(klua_add_registry_test)
  cmake_parse_arguments(PARSE_ARGV 0 ARG "BROKER" "NAME;WORKING_DIRECTORY;TIMEOUT"
                        "COMMAND;ENVIRONMENT;LABELS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "klua_add_registry_test: unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_NAME OR NOT ARG_COMMAND)
    message(FATAL_ERROR "klua_add_registry_test: NAME and COMMAND are required")
  endif()
  if(NOT KLUA_REGISTRY_TESTS OR (ARG_BROKER AND NOT KLUA_BROKER_TESTS))
    return()
  endif()

  list(GET ARG_COMMAND 0 _exe)
  if(TARGET "${_exe}")
    list(REMOVE_AT ARG_COMMAND 0)
    list(PREPEND ARG_COMMAND "$<TARGET_FILE:${_exe}>")
  endif()
  set(_wrap "${KLUA_WITH_REGISTRY}")
  set(_fixtures schema_registry)
  set(_env "KLUA_REGISTRY_STATE=${KLUA_REGISTRY_STATE}" ${ARG_ENVIRONMENT})
  set(_labels registry)
  if(ARG_BROKER)
    list(APPEND _wrap "${KLUA_WITH_BROKER}")
    list(APPEND _fixtures kafka_broker)
    list(APPEND _env "KLUA_BROKER_STATE=${KLUA_BROKER_STATE}")
    list(APPEND _labels kafka)
  endif()

  set(_wd)
  if(ARG_WORKING_DIRECTORY)
    set(_wd WORKING_DIRECTORY "${ARG_WORKING_DIRECTORY}")
  endif()
  add_test(NAME "${ARG_NAME}" COMMAND ${_wrap} ${ARG_COMMAND} ${_wd})
  set_tests_properties("${ARG_NAME}" PROPERTIES
    FIXTURES_REQUIRED "${_fixtures}"
    ENVIRONMENT "${_env}"
    LABELS "${_labels};${ARG_LABELS}")
  if(ARG_TIMEOUT)
    set_tests_properties("${ARG_NAME}" PROPERTIES TIMEOUT "${ARG_TIMEOUT}")
  endif()
endfunction()

# Smoke test: the registry answers its Confluent API.
klua_add_registry_test(NAME registry_smoke TIMEOUT 60
  COMMAND sh -c "curl -fsS \"\$KLUA_SCHEMA_REGISTRY/subjects\" | grep -q '^\\['")

# tests/registry/*_test.lua: Lua suites against the registry (registry_<file>), run by `klua test`.
file(GLOB KLUA_REGISTRY_LUA_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/registry/*_test.lua)
foreach(t ${KLUA_REGISTRY_LUA_TESTS})
  get_filename_component(name ${t} NAME_WE)
  klua_add_registry_test(NAME registry_${name} COMMAND klua test ${t} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
                         TIMEOUT 300 ENVIRONMENT "KLUA_BIN=$<TARGET_FILE:klua>;KLUA_TEST_SCRATCH=${CMAKE_BINARY_DIR}/registry-test")
endforeach()

# The BROKER form: both fixtures, both variables.
klua_add_registry_test(NAME broker_registry_smoke BROKER TIMEOUT 60
  COMMAND sh -c "test -n \"\$KLUA_BROKERS\" && kcat -b \"\$KLUA_BROKERS\" -L -m 10 | grep -q 'broker 1 at' && curl -fsS \"\$KLUA_SCHEMA_REGISTRY/subjects\" | grep -q '^\\['")
