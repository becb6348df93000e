"""A full-integer file's flash form (`export.flash`) as C++ source for firmware: `RUN/export/micro/<variant>.h/.cc`.

The header declares the model array and its length and gives, as constants, what the firmware
needs around it: the input's scale and zero point (pixels in [0, 1] -> int8), the output's, and
the tensor arena size. The .cc holds the bytes, aligned to 16 (TFLite Micro reads the flatbuffer
in place). `readme` writes the few lines of TFLite Micro code that run one of them.
"""

from __future__ import annotations

import re

ARENA_MARGIN = 1.25  # kTensorArenaSize: the host-measured arena plus a quarter, for optimized kernels' scratch
BYTES_PER_LINE = 12


def identifier(variant: str) -> str:
    """The C++ namespace of a variant: `mnist_opt_<variant>`."""
    if not re.fullmatch(r"[a-z0-9_]+", variant):
        raise ValueError(f"variant name {variant!r} is not a C identifier")
    return f"mnist_opt_{variant}"


def arena_constant(arena_bytes: int) -> int:
    """The arena the header asks for: the measured one with a margin, rounded up to 16 bytes."""
    return -(-int(arena_bytes * ARENA_MARGIN) // 16) * 16


def c_string(text: str) -> str:
    """`text` as a C string literal: quotes, backslashes and anything outside printable ASCII escaped."""
    out = "".join(c if 32 <= ord(c) < 127 and c not in '"\\?' else
                  "".join(f"\\{b:03o}" for b in c.encode()) for c in text)
    return f'"{out}"'


def header(variant: str, source_file: str, sha256: str, io: dict, arena_bytes: int, ops: list[str],
           class_names: list[str]) -> str:
    ns = identifier(variant)
    guard = f"{ns.upper()}_H_"
    h, w, c = io["input"].get("shape", (28, 28, 1))
    names = ", ".join(c_string(n) for n in class_names)
    return f"""// {variant}: {source_file} (sha256 {sha256}) as a C++ array, written by mnist-opt export.
// Input: {h}x{w}x{c} int8 (row by row, {"RGB interleaved" if c == 3 else "grey"}), q = round(pixel / 255 / kInputScale) + kInputZeroPoint.
// Output: {len(class_names)} int8 scores, p = (q - kOutputZeroPoint) * kOutputScale; the class is the largest (kClassNames).
// Ops (register these in a MicroMutableOpResolver): {", ".join(ops)}.
#ifndef {guard}
#define {guard}

#include <cstddef>
#include <cstdint>

namespace {ns} {{

extern const unsigned char kModel[];
extern const unsigned int kModelLength;

constexpr int kInputHeight = {h};
constexpr int kInputWidth = {w};
constexpr int kInputChannels = {c};
constexpr int kNumClasses = {len(class_names)};
constexpr const char* kClassNames[kNumClasses] = {{{names}}};

constexpr float kInputScale = {io["input"]["scale"]!r}f;
constexpr int kInputZeroPoint = {io["input"]["zero_point"]};
constexpr float kOutputScale = {io["output"]["scale"]!r}f;
constexpr int kOutputZeroPoint = {io["output"]["zero_point"]};

// Measured with TFLite Micro's host build and reference kernels: {arena_bytes} bytes; this is that plus 25%.
constexpr size_t kArenaBytesMeasured = {arena_bytes};
constexpr size_t kTensorArenaSize = {arena_constant(arena_bytes)};

}}  // namespace {ns}

#endif  // {guard}
"""


def source(variant: str, model: bytes) -> str:
    ns = identifier(variant)
    lines = [", ".join(f"0x{b:02x}" for b in model[i:i + BYTES_PER_LINE])
             for i in range(0, len(model), BYTES_PER_LINE)]
    body = ",\n    ".join(lines)
    return f"""// {variant}.tflite as a C++ array, written by mnist-opt export. Do not edit.
#include "{variant}.h"

namespace {ns} {{

alignas(16) const unsigned char kModel[] = {{
    {body}
}};
const unsigned int kModelLength = {len(model)};

}}  // namespace {ns}
"""


# Custom ops of the flash form: how to register them depends on the TFLite Micro tree (its resolver's API for
# custom kernels has changed between versions), so the README says which kernel, not a call that may not compile.
CUSTOM_OPS = {"TFLM_DECODE": "TFLite Micro's DECODE kernel (tensorflow/lite/micro/kernels/decode*.cc), registered "
                             "under the custom name TFLM_DECODE"}


def resolver_call(op: str) -> str:
    """MicroMutableOpResolver's method for a builtin op: CONV_2D -> AddConv2D(), MAX_POOL_2D -> AddMaxPool2D()."""
    return "Add" + "".join(part if part[:1].isdigit() and part.upper() == part else part.capitalize()
                           for part in op.split("_")) + "()"


def twin(variant: dict) -> str:
    """The uncompressed twin's flash and arena bytes, or '-' where the flash form is not compressed."""
    u = variant.get("uncompressed")
    return f"`{u['file'].split('/')[-1]}`: {u['bytes']:,} / {u['arena_bytes']:,}" if u else "-"


def pixels_note(class_names: list[str], digits: bool) -> str:
    stored = "MNIST: 28x28 grey levels, 0 = background, 255 = ink" if digits else "as in your data's files"
    return f"{stored}; {len(class_names)} classes, {', '.join(class_names[:5])}{', ...' if len(class_names) > 5 else ''}"


def readme(variants: list[dict], class_names: list[str], digits: bool = False) -> str:
    """RUN/export/micro/README.md: the files, their figures, and the code that runs one."""
    rows = "\n".join(f"| `{v['name']}.h` / `.cc` | {v['bytes']:,} | {v['arena_bytes']:,} | "
                     f"{arena_constant(v['arena_bytes']):,} | {', '.join(v['ops'])} | {twin(v)} |" for v in variants)
    first = variants[0]
    ns, ops = identifier(first["name"]), first["ops"]
    adds = "\n".join(f"    // {op}: {CUSTOM_OPS[op]}" if op in CUSTOM_OPS else f"    resolver.{resolver_call(op)};"
                     for op in ops)
    return f"""# TFLite Micro sources

Each full-integer model of this run as C++ for firmware: `<variant>.h` declares the array
(`kModel`, `kModelLength`) and the constants, `<variant>.cc` holds the bytes (16-byte aligned).
Add one `.cc` to the firmware's sources and its header to the include path.

The arrays hold each model's flash form, `<variant>.tflite` here: the int8 file without what TFLite
Micro does not read, and, where a kernel has few distinct values (clustered), with its weights as
1-7-bit indices that DECODE ops expand into the arena at run time (less flash, more RAM).
`<variant>.uncompressed.tflite`, where listed, is the same model without that compression: more
flash, less RAM. Both are for TFLite Micro; desktop LiteRT may refuse them.

| files | flash bytes | arena measured | kTensorArenaSize | ops | uncompressed twin (flash / arena) |
|---|---|---|---|---|---|
{rows}

The arena was measured with TFLite Micro's host build (64-bit, reference kernels): the smallest
arena in which the interpreter allocates the model. `kTensorArenaSize` adds 25% for optimized
kernels (CMSIS-NN) that ask for scratch buffers; `interpreter.arena_used_bytes()` after
`AllocateTensors()` on the board tells what it really needs.

Running `{first['name']}` (TFLite Micro from https://github.com/tensorflow/tflite-micro):

```cpp
#include <cmath>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "{first['name']}.h"

alignas(16) static uint8_t tensor_arena[{ns}::kTensorArenaSize];

// pixels: kInputHeight x kInputWidth x kInputChannels values 0..255, stored as the training images were
// ({pixels_note(class_names, digits)}). Returns the class (an index into kClassNames), or -1.
int classify(const uint8_t* pixels) {{
  static tflite::MicroMutableOpResolver<{len(ops)}> resolver;
  static bool registered = false;
  if (!registered) {{
{adds}
    registered = true;
  }}
  static tflite::MicroInterpreter interpreter(tflite::GetModel({ns}::kModel), resolver,
                                              tensor_arena, sizeof(tensor_arena));
  static bool allocated = interpreter.AllocateTensors() == kTfLiteOk;
  if (!allocated) return -1;

  TfLiteTensor* input = interpreter.input(0);
  for (int i = 0; i < {ns}::kInputHeight * {ns}::kInputWidth * {ns}::kInputChannels; ++i) {{
    int q = static_cast<int>(std::lround(pixels[i] / 255.0f / {ns}::kInputScale)) + {ns}::kInputZeroPoint;
    input->data.int8[i] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));
  }}
  if (interpreter.Invoke() != kTfLiteOk) return -1;

  const int8_t* scores = interpreter.output(0)->data.int8;
  int best = 0;
  for (int k = 1; k < {ns}::kNumClasses; ++k) if (scores[k] > scores[best]) best = k;
  return best;
}}
```

The other variants differ only in the header and namespace (`mnist_opt_<variant>`) and, where
the table says so, in the ops to register.
"""
