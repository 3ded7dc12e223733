# Finds every third-party dependency and gathers them into one interface target,
# qtrain_deps. All of them come from Debian/Ubuntu packages (scripts/install-deps.sh);
# on the GPU machine LibTorch/NCCL come from PyTorch's wheel (../shared/device/setup.sh).
find_package(Torch REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(ZLIB REQUIRED)  # gzip-compressed corpus files (data/corpus_input.cpp)
# No fmt/spdlog: PyTorch's wheel ships fmt 12 headers inside LibTorch's include folder,
# which shadow Debian's fmt 9 headers while Debian's libfmt.so.9 is linked.

# Tokenizers (data/): PCRE2 runs the pre-tokenizer regexes, SentencePiece loads
# tokenizer.model, utf8proc does NFC, xxHash (header-only) hashes fingerprints.
# pkg-config gives hints where it knows a package; find_path/find_library also search
# CMAKE_PREFIX_PATH, which is how the GPU machine's /opt/devdeps/usr is found
# (scripts/fetch-device-debs.sh): the .pc files unpacked there still say prefix=/usr.
find_package(PkgConfig QUIET)
function(qtrain_find_library target pc_module header library deb)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(PC_${target} QUIET ${pc_module})
  endif()
  find_path(${target}_INCLUDE_DIR ${header} HINTS ${PC_${target}_INCLUDE_DIRS})
  if(NOT ${target}_INCLUDE_DIR)
    message(FATAL_ERROR "qtrain: ${header} not found: install ${deb} (scripts/install-deps.sh; "
                        "on the GPU machine scripts/fetch-device-debs.sh)")
  endif()
  add_library(qtrain::${target} INTERFACE IMPORTED)
  set_target_properties(qtrain::${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${${target}_INCLUDE_DIR}")
  if(library)
    find_library(${target}_LIBRARY NAMES ${library} HINTS ${PC_${target}_LIBRARY_DIRS})
    if(NOT ${target}_LIBRARY)
      message(FATAL_ERROR "qtrain: lib${library} not found: install ${deb}")
    endif()
    set_target_properties(qtrain::${target} PROPERTIES INTERFACE_LINK_LIBRARIES "${${target}_LIBRARY}")
  endif()
  message(STATUS "qtrain: ${target}: ${${target}_INCLUDE_DIR} ${${target}_LIBRARY}")
endfunction()
qtrain_find_library(pcre2 libpcre2-8 pcre2.h pcre2-8 libpcre2-dev)
qtrain_find_library(sentencepiece sentencepiece sentencepiece_processor.h sentencepiece libsentencepiece-dev)
qtrain_find_library(utf8proc libutf8proc utf8proc.h utf8proc libutf8proc-dev)
qtrain_find_library(xxhash libxxhash xxhash.h "" libxxhash-dev)
# libsentencepiece is only reached through this module, which qtrain opens with dlopen:
# Debian's build exports the protobuf it bundles, which clashes with LibTorch's libprotobuf
# (data/sentencepiece/backend.h). Its path is compiled into the one file that opens it.
add_library(qtrain_sentencepiece MODULE ${CMAKE_CURRENT_LIST_DIR}/../data/sentencepiece/backend.cpp)
target_include_directories(qtrain_sentencepiece PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(qtrain_sentencepiece PRIVATE qtrain::sentencepiece)
set_target_properties(qtrain_sentencepiece PROPERTIES CXX_VISIBILITY_PRESET hidden
                      LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/../data/sentencepiece_tokenizer.cpp PROPERTIES
  COMPILE_DEFINITIONS "QTRAIN_SENTENCEPIECE_MODULE=\"$<TARGET_FILE:qtrain_sentencepiece>\"")

add_library(qtrain_deps INTERFACE)
# yaml-cpp 0.7 (Debian 12) exports `yaml-cpp`, 0.8 (Ubuntu 24.04) `yaml-cpp::yaml-cpp`.
if(TARGET yaml-cpp::yaml-cpp)
  set(QTRAIN_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(QTRAIN_YAML_TARGET yaml-cpp)
endif()
target_link_libraries(qtrain_deps INTERFACE
  ${TORCH_LIBRARIES} MPI::MPI_C ${HDF5_C_LIBRARIES} Boost::program_options
  ${QTRAIN_YAML_TARGET} nlohmann_json::nlohmann_json
  ZLIB::ZLIB qtrain::pcre2 qtrain::utf8proc qtrain::xxhash ${CMAKE_DL_LIBS})
target_include_directories(qtrain_deps SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS})
target_compile_definitions(qtrain_deps INTERFACE ${HDF5_C_DEFINITIONS} OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
target_compile_options(qtrain_deps INTERFACE ${TORCH_CXX_FLAGS})
add_dependencies(qtrain_deps qtrain_sentencepiece)  # followed to every consumer (CMake >= 3.19)

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
