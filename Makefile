# Thin wrapper around scripts/install-deps.sh, CMake and ctest.
#
#   make build   install missing packages, configure, build both module variants
#   make test    build, then run every suite through ctest
#   make demo    build, then scripts/demo.sh
#   make deb     build libnginx-mod-http-aigw_<version>_<arch>.deb from
#                debian/ (dpkg-buildpackage, dh_nginx) into $(BUILD_DIR)/deb
#   make clean   remove the build folder and test servroots
#
# Knobs: BUILD_DIR=build  CMAKE_ARGS='-DNGINX_SRC=/path/to/nginx'
#        CTEST_ARGS='-j2'  (e.g. CTEST_ARGS='-j2 -R suite')
#
# (nginx's configure, which runs inside the build folder on a copy of the
# nginx tree, never writes a Makefile here.)

BUILD_DIR  ?= build
CMAKE_ARGS ?=
CTEST_ARGS ?= -j2

.PHONY: all deps configure build test demo deb clean

all: build

deps:
	@bash scripts/install-deps.sh

# Re-running cmake on an existing build folder is cheap, and picks up new
# test files (t/unit/test_sse.c, t/sdk/gateway.sh) and changed settings.
configure: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_ARGS)

# A build of its own, not a sub-make of this one (no jobserver, no
# "Entering directory" noise).
build: configure
	@env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build $(BUILD_DIR) -j2

test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure $(CTEST_ARGS)

demo: build
	@test -f scripts/demo.sh || { echo "scripts/demo.sh not written yet" >&2; exit 1; }
	@AIGW_MODULE=$(abspath $(BUILD_DIR))/ngx_http_aigw_module.so \
		bash scripts/demo.sh

deb: deps
	@bash scripts/build-deb.sh $(BUILD_DIR)/deb

clean:
	rm -rf $(BUILD_DIR) t/servroot*
