# Build options shared by every target.
option(TANDEM_BUILD_TESTS "Build the tests" ON)
option(TANDEM_BUILD_BENCH "Build the benchmarks" ON)
set(TANDEM_SANITIZE "" CACHE STRING
    "Sanitizers: empty, 'address' (address+undefined) or 'thread'")
set_property(CACHE TANDEM_SANITIZE PROPERTY STRINGS "" address thread)
# libFuzzer targets for the parsers of network and file input (tests/fuzz/, run by
# scripts/run_fuzzers.sh in its own build-fuzz/). Clang only: every library of such a tree is
# built with coverage instrumentation for libFuzzer plus AddressSanitizer and UBSan, so it is
# for fuzzing alone; the normal build (gcc, build/) never sets it.
option(TANDEM_FUZZ "Build the libFuzzer targets (tests/fuzz; clang, a build tree of its own)" OFF)

# Warnings apply to our own targets only (see tandem_target_defaults).
set(TANDEM_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)

if(TANDEM_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "TANDEM_FUZZ needs clang (configure with -DCMAKE_CXX_COMPILER=clang++ "
                        "-DCMAKE_C_COMPILER=clang; scripts/run_fuzzers.sh does)")
  endif()
  if(NOT TANDEM_SANITIZE STREQUAL "")
    message(FATAL_ERROR "TANDEM_FUZZ brings its own sanitizers; leave TANDEM_SANITIZE empty")
  endif()
  # Libraries get the coverage hooks without libFuzzer's main(); the fuzz targets link it
  # (-fsanitize=fuzzer, tests/fuzz/CMakeLists.txt). UB aborts, so that libFuzzer saves the input.
  # -O1 and line tables only, as OSS-Fuzz builds, and a unity build (a library's sources
  # compiled eight to a file): about half the build time on CI's two cores. Two files of one
  # library that give one name to different things (in anonymous namespaces) clash only here:
  # rename one, or turn UNITY_BUILD off for that library (tests/fuzz/CMakeLists.txt does for
  # tandem_api).
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined -O1 -gline-tables-only)
  set(CMAKE_UNITY_BUILD ON)
  add_link_options(-fsanitize=address,undefined)
elseif(TANDEM_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
elseif(TANDEM_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
elseif(NOT TANDEM_SANITIZE STREQUAL "")
  message(FATAL_ERROR "TANDEM_SANITIZE must be empty, 'address' or 'thread' (got '${TANDEM_SANITIZE}')")
endif()

# Release-grade optimisation for RelWithDebInfo too: the CPU kernels are the product.
string(REPLACE "-O2" "-O3" CMAKE_CXX_FLAGS_RELWITHDEBINFO "${CMAKE_CXX_FLAGS_RELWITHDEBINFO}")

function(tandem_target_defaults target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${TANDEM_WARNINGS}>)
  target_include_directories(${target} PUBLIC
      ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
endfunction()
