# Benchmark binaries of the C++ API (included at the end of benchmarks/cpp/CMakeLists.txt).
#
# bench_api_overhead: a plain C++ timer (no Google Benchmark) that the Python api_overhead suite
# runs to time an op through the C++ API; built whenever benchmarks are enabled.
# bench_matmul, bench_attention, bench_vector_add, bench_matrix_ops, bench_cnn_dnn,
# bench_transformer, bench_lstm_rnn, bench_vlm: Google Benchmark binaries (manual time: CUDA events around the op on the
# runtime's stream for CUDA rows, op + lc::synchronize() by steady_clock for CPU rows; CUDA rows
# skip themselves without a GPU). Run with --benchmark_format=json or
# --benchmark_out=FILE --benchmark_out_format=json.
# A target that benchmarks/cpp/CMakeLists.txt already created (its bench_*.cpp glob) is reused.
set(LC_GBENCH_NAMES bench_matmul bench_attention bench_vector_add bench_matrix_ops bench_cnn_dnn
                    bench_transformer bench_lstm_rnn bench_vlm)

if(NOT TARGET bench_api_overhead)
  add_executable(bench_api_overhead ${CMAKE_CURRENT_LIST_DIR}/bench_api_overhead.cpp)
  target_link_libraries(bench_api_overhead PRIVATE lightning_core_lib)
endif()

find_package(benchmark QUIET)
# A carried copy (scripts/prepare_gpu_deps.sh -> .deps/benchmark: headers + shared library) for
# machines without a Google Benchmark package, such as the GPU machine.
set(LC_BENCHMARK_ROOT "" CACHE PATH "Google Benchmark headers+library tree used when find_package fails")
if(NOT benchmark_FOUND AND LC_BENCHMARK_ROOT AND EXISTS "${LC_BENCHMARK_ROOT}/lib/libbenchmark.so")
  add_library(benchmark::benchmark SHARED IMPORTED)
  set_target_properties(benchmark::benchmark PROPERTIES
    IMPORTED_LOCATION "${LC_BENCHMARK_ROOT}/lib/libbenchmark.so"
    INTERFACE_INCLUDE_DIRECTORIES "${LC_BENCHMARK_ROOT}/include"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
  set(benchmark_FOUND ON)
  message(STATUS "lightning_core: Google Benchmark from ${LC_BENCHMARK_ROOT}")
endif()
if(NOT benchmark_FOUND)
  string(REPLACE ";" ", " _lc_gb_list "${LC_GBENCH_NAMES}")
  message(STATUS "lightning_core: Google Benchmark not found; ${_lc_gb_list} are not built "
                 "(install libbenchmark-dev); bench_api_overhead is")
  return()
endif()

foreach(name ${LC_GBENCH_NAMES})
  if(NOT TARGET ${name})
    add_executable(${name} ${CMAKE_CURRENT_LIST_DIR}/${name}.cpp)
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${name} PRIVATE lightning_core_lib benchmark::benchmark)
  endif()
endforeach()
