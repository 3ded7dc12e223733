# Finds every third-party dependency and gathers them into one interface target,
# qtrain_deps. All of them come from Debian/Ubuntu packages (scripts/install-deps.sh);
# on the GPU machine LibTorch/NCCL come from PyTorch's wheel (../shared/device/setup.sh).
find_package(Torch REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)

add_library(qtrain_deps INTERFACE)
# yaml-cpp 0.7 (Debian 12) exports `yaml-cpp`, 0.8 (Ubuntu 24.04) `yaml-cpp::yaml-cpp`.
if(TARGET yaml-cpp::yaml-cpp)
  set(QTRAIN_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(QTRAIN_YAML_TARGET yaml-cpp)
endif()
target_link_libraries(qtrain_deps INTERFACE
  ${TORCH_LIBRARIES} MPI::MPI_C ${HDF5_C_LIBRARIES} Boost::program_options
  ${QTRAIN_YAML_TARGET} nlohmann_json::nlohmann_json fmt::fmt spdlog::spdlog)
target_include_directories(qtrain_deps SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(qtrain_deps INTERFACE ${HDF5_C_DEFINITIONS} SPDLOG_FMT_EXTERNAL
  OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
target_compile_options(qtrain_deps INTERFACE ${TORCH_CXX_FLAGS})

# CUDA and NCCL: on when, and only when, LibTorch was built with CUDA.
set(QTRAIN_WITH_CUDA OFF)
if(TORCH_CUDA_LIBRARIES)
  set(QTRAIN_WITH_CUDA ON)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS $ENV{NCCL_ROOT} PATH_SUFFIXES include REQUIRED)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS $ENV{NCCL_ROOT} PATH_SUFFIXES lib lib64 REQUIRED)
  target_include_directories(qtrain_deps SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(qtrain_deps INTERFACE ${NCCL_LIBRARY})
  target_compile_definitions(qtrain_deps INTERFACE QTRAIN_WITH_CUDA=1 QTRAIN_WITH_NCCL=1)
  message(STATUS "qtrain: LibTorch has CUDA -> CUDA + NCCL on (${NCCL_LIBRARY})")
else()
  message(STATUS "qtrain: LibTorch is CPU-only -> CUDA/NCCL off")
endif()
