# CMake < 3.26 does not know nvcc's C++20 flag, so CUDA_STANDARD 20 fails to configure there
# (Debian 12 ships 3.25). Loaded through CMAKE_USER_MAKE_RULES_OVERRIDE_CUDA by CMakeLists.txt.
set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
