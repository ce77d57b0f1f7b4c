# CMake toolchain file for cross-building llama.cpp (through llama-cpp-sys-2) for 64-bit ARM
# Linux with Debian's gcc-aarch64-linux-gnu; scripts/cross-aarch64 passes it to cargo.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# llama-cpp-sys-2 pins GGML_CPU_ARM_ARCH=armv8-a (no dot product, no fp16 arithmetic) for
# every non-native aarch64 build, after any value we could pass with -D. A toolchain file runs
# after the command line's cache entries, so forcing the cache entry here wins. The default
# fits both the Raspberry Pi 5 (Cortex-A76) and the Jetson Orin (Cortex-A78AE).
if(DEFINED ENV{RETROFORMER_ARM_ARCH})
  set(GGML_CPU_ARM_ARCH "$ENV{RETROFORMER_ARM_ARCH}" CACHE STRING "ARM -march for ggml" FORCE)
else()
  set(GGML_CPU_ARM_ARCH "armv8.2-a+dotprod+fp16" CACHE STRING "ARM -march for ggml" FORCE)
endif()
