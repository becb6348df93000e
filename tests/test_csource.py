"""The generated C++ compiles, holds the file's bytes 16-byte aligned, and names the right constants."""

import json
import shutil
import subprocess

import pytest

from mnist_opt.export import csource

MAIN = """#include <cstdint>
#include <cstdio>
#include "{name}.h"
namespace m = {ns};
int main(int, char** argv) {{
  if (reinterpret_cast<std::uintptr_t>(m::kModel) % 16 != 0) return 3;
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr || std::fwrite(m::kModel, 1, m::kModelLength, f) != m::kModelLength) return 4;
  std::fclose(f);
  std::printf("%zu %zu %d\\n", m::kTensorArenaSize, m::kArenaBytesMeasured, m::kInputZeroPoint);
  return 0;
}}
"""


@pytest.mark.parametrize("name", ["int8", "pruned_clustered_qat_int8"])
def test_the_generated_source_compiles_and_its_array_is_the_file(smoke_export, tmp_path, name):
    cxx = shutil.which("g++")
    assert cxx, "g++ is missing: `make test` installs Debian's g++"
    export_dir = smoke_export[0] / "export"
    entry = next(v for v in json.loads((export_dir / "manifest.json").read_text())["variants"] if v["name"] == name)
    main = tmp_path / "main.cc"
    main.write_text(MAIN.format(name=name, ns=csource.identifier(name)))
    binary = tmp_path / "dump"
    subprocess.run([cxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(export_dir / "micro"), str(main),
                    str(export_dir / "micro" / f"{name}.cc"), "-o", str(binary)], check=True)
    out = subprocess.run([str(binary), str(tmp_path / "array.bin")], check=True, capture_output=True, text=True)
    assert (tmp_path / "array.bin").read_bytes() == (export_dir / entry["micro"]["file"]).read_bytes()  # the flash form
    arena, measured, zero = (int(v) for v in out.stdout.split())
    assert measured == entry["micro"]["arena_bytes"] and arena == csource.arena_constant(measured) >= measured
    assert arena % 16 == 0 and zero == entry["input"]["zero_point"]


def test_resolver_calls_follow_tflite_micro_names():
    assert [csource.resolver_call(op) for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED",
                                                "MEAN", "SOFTMAX")] == [
        "AddConv2D()", "AddDepthwiseConv2D()", "AddMaxPool2D()", "AddFullyConnected()", "AddMean()", "AddSoftmax()"]


def test_a_variant_name_that_is_no_identifier_is_refused():
    with pytest.raises(ValueError, match="not a C identifier"):
        csource.identifier("int8; rm -rf")


def test_the_header_carries_the_input_shape_and_class_names_escaped(tmp_path):
    cxx = shutil.which("g++")
    assert cxx, "g++ is missing: `make test` installs Debian's g++"
    io = {"input": {"scale": 0.5, "zero_point": -128, "shape": [32, 24, 3]}, "output": {"scale": 0.25, "zero_point": 0}}
    names = ['say "hi"', "back\\slash", "??=trigraph", "café"]
    (tmp_path / "v.h").write_text(csource.header("v", "micro/v.tflite", "0" * 64, io, 1000, ["CONV_2D"], names))
    (tmp_path / "main.cc").write_text('#include <cstdio>\n#include "v.h"\nint main() {\n'
                                      '  namespace m = mnist_opt_v;\n'
                                      '  std::printf("%d %d %d %d\\n", m::kInputHeight, m::kInputWidth, m::kInputChannels,'
                                      ' m::kNumClasses);\n'
                                      '  for (const char* n : m::kClassNames) std::printf("%s\\n", n);\n}\n')
    subprocess.run([cxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path), str(tmp_path / "main.cc"),
                    "-o", str(tmp_path / "names")], check=True)
    out = subprocess.run([str(tmp_path / "names")], check=True, capture_output=True).stdout.decode()
    assert out.splitlines() == ["32 24 3 4", *names]
