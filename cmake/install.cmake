# cmake --install: the klua binary, libklua.so and libklua.a, the public headers (include/klua/
# only: no internal header, nor librdkafka's), a CMake package (find_package(klua): klua::klua,
# klua::klua_static) and a pkg-config file (klua.pc). The Lua library needs no install: scripts/
# and bindings/lua/ are compiled into the library as bytecode.
#
# klua::klua_static needs the librdkafka klua was built with: the pinned static one is installed
# beside it as <libdir>/klua/librdkafka.a (Debian's own librdkafka is 2.0.2, too old), with the
# libraries it links recorded in the package (klua::rdkafka) and in klua.pc's Libs.private.
include(CMakePackageConfigHelpers)

install(TARGETS klua RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS klua_shared libklua EXPORT kluaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/klua DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")

set(KLUA_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/klua)
if(KLUA_SYSTEM_LIBRDKAFKA)
  set(KLUA_RDKAFKA_MODE system)
  set(KLUA_RDKAFKA_LINK_LIBS "")
  set(KLUA_PC_RDKAFKA "")
  set(KLUA_PC_REQUIRES_RDKAFKA "rdkafka")
else()
  set(KLUA_RDKAFKA_MODE static)
  install(FILES ${rdkafka_prefix}/lib/librdkafka.a DESTINATION ${CMAKE_INSTALL_LIBDIR}/klua)
  set(KLUA_RDKAFKA_LINK_LIBS "${rdkafka_libs}")
  list(JOIN rdkafka_libs " " rdkafka_libs_flat)
  set(KLUA_PC_RDKAFKA "\${libdir}/klua/librdkafka.a ${rdkafka_libs_flat}")
  set(KLUA_PC_REQUIRES_RDKAFKA "")
endif()

install(EXPORT kluaTargets NAMESPACE klua:: DESTINATION ${KLUA_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/kluaConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/kluaConfig.cmake INSTALL_DESTINATION ${KLUA_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/kluaConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/kluaConfig.cmake ${CMAKE_BINARY_DIR}/cmake/kluaConfigVersion.cmake
  DESTINATION ${KLUA_CMAKE_DIR})

# pkg-config: `pkg-config --cflags --libs klua` links libklua.so; --static links libklua.a and
# everything below it.
# The prefix is found from the .pc file's own place, so `cmake --install --prefix P` gives a right one.
file(RELATIVE_PATH KLUA_PC_PREFIX_REL /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
configure_file(${CMAKE_SOURCE_DIR}/cmake/klua.pc.in ${CMAKE_BINARY_DIR}/klua.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/klua.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# A .deb (cpack -G DEB in the build directory). Its Depends come from dpkg-shlibdeps (dpkg-dev):
# the Debian libraries the binary and libklua.so link (LuaJIT, libuv, OpenSSL, SASL, curl...).
set(CPACK_PACKAGE_NAME klua)
set(CPACK_PACKAGE_VENDOR "klua")
set(CPACK_PACKAGE_CONTACT "klua maintainers <klua@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Kafka automation as short Lua scripts (LuaJIT, librdkafka, libuv)")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# libklua.so is in the package itself: dpkg-shlibdeps must find it there, not ask for a package.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libsasl2-modules-gssapi-mit")
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
include(CPack)
