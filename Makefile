# Thin wrapper over CMake and tools/setup.sh.
BUILD ?= build

.PHONY: all build run test bench format clean

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$$(nproc)

run:
	tools/setup.sh run

test:
	tools/setup.sh test

bench: build
	$(BUILD)/strait bench engine --json

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-fuzz
