# Build options shared by every target.
option(TANDEM_BUILD_TESTS "Build the tests" ON)
option(TANDEM_BUILD_BENCH "Build the benchmarks" ON)
set(TANDEM_SANITIZE "" CACHE STRING
    "Sanitizers: empty, 'address' (address+undefined) or 'thread'")
set_property(CACHE TANDEM_SANITIZE PROPERTY STRINGS "" address thread)

# Warnings apply to our own targets only (see tandem_target_defaults).
set(TANDEM_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)

if(TANDEM_SANITIZE STREQUAL "address")
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
