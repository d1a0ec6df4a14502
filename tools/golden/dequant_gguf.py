#!/usr/bin/env python3
"""Rewrite a quantized GGUF as F32: same metadata, every tensor dequantized.

llama.cpp multiplies quantized weights with activations it first rounds to 8 bits; on an F32
file it computes in float.  Golden logits from the F32 copy are therefore "exact math on the
quantized model's weights", the reference for an engine that dequantizes weights and keeps
activations in float.  Tensor names, shapes and row order are unchanged (llama Q/K stay in the
interleaved order of the source file).

Usage: dequant_gguf.py IN.gguf OUT.gguf
"""
import sys

import numpy as np


def dequantize_gguf(src, dst):
    import gguf
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, r.fields["general.architecture"].contents())
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type":
            w.add_uint32(key, int(gguf.LlamaFileType.ALL_F32))
        elif f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_array(key, f.contents())
        else:
            w.add_key_value(key, f.contents(), f.types[0])
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, a.reshape([int(x) for x in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dequantize_gguf(sys.argv[1], sys.argv[2])
