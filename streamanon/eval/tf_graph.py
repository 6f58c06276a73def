"""A reader for frozen TensorFlow GraphDefs (protobuf wire format, parsed by hand).

Enough of ``tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto``
to read a frozen inference graph: node names, ops, inputs, and the attributes an inference
converter needs (ints, floats, strings, bools, int lists, shapes and constant tensors). No
TensorFlow, no generated protobuf code: OpenCV 5 dropped its TensorFlow importer, and the
graph is read once, at conversion time.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from streamanon.protowire import fields as _fields
from streamanon.protowire import varint

# tensorflow DataType enum -> numpy dtype (the ones a frozen CNN uses)
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}


class GraphError(ValueError):
    """The bytes are not a GraphDef this reader understands."""


def _varint(b: memoryview, i: int) -> tuple[int, int]:
    return varint(b, i, GraphError)


def fields(b: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one message: varints as int, the rest as bytes."""
    return _fields(b, GraphError)


def _packed_varints(v: int | memoryview) -> list[int]:
    if isinstance(v, int):
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x - (1 << 64) if x >= 1 << 63 else x)  # int64 two's complement
    return out


def _shape(b: memoryview) -> list[int]:
    dims = []
    for num, _, v in fields(b):
        if num == 2:  # Dim {int64 size = 1; string name = 2}
            size = 0
            for n2, _, v2 in fields(v):
                if n2 == 1:
                    size = _packed_varints(v2)[0]
            dims.append(size)
    return dims


def tensor(b: memoryview) -> np.ndarray:
    """A TensorProto as a numpy array (tensor_content, or the typed *_val fields)."""
    dtype, shape, content = 1, [], None
    floats: list[float] = []
    ints: list[int] = []
    for num, _, v in fields(b):
        if num == 1:
            dtype = v
        elif num == 2:
            shape = _shape(v)
        elif num == 4:
            content = bytes(v)
        elif num == 5:  # float_val, packed or not
            raw = bytes(v)
            floats += list(struct.unpack(f"<{len(raw) // 4}f", raw))
        elif num in (7, 10):  # int_val, int64_val
            ints += _packed_varints(v)
    if dtype not in DTYPES:
        raise GraphError(f"unsupported tensor dtype {dtype}")
    np_dtype = DTYPES[dtype]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype)
    else:
        vals = floats if np_dtype in (np.float32, np.float64) else ints
        if not vals:
            vals = [0]
        # TensorFlow repeats the last value when fewer values than elements are stored.
        arr = np.array(vals + [vals[-1]] * (count - len(vals)), np_dtype)
    if arr.size != count:
        raise GraphError(f"tensor has {arr.size} values for shape {shape}")
    return arr.reshape(shape)


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)  # data inputs, ":0" and control deps dropped
    attrs: dict[str, object] = field(default_factory=dict)


def _attr(b: memoryview) -> object:
    for num, _, v in fields(b):
        if num == 1:  # ListValue: ints (3) or strings (2)
            ints: list[int] = []
            strs: list[str] = []
            for n2, _, v2 in fields(v):
                if n2 == 3:
                    ints += _packed_varints(v2)
                elif n2 == 2:
                    strs.append(bytes(v2).decode())
            return ints or strs
        if num == 2:
            return bytes(v).decode()
        if num == 3:
            return _packed_varints(v)[0]
        if num == 4:
            return struct.unpack("<f", bytes(v))[0]
        if num == 5:
            return bool(v)
        if num == 6:
            return int(v)
        if num == 7:
            return _shape(v)
        if num == 8:
            return tensor(v)
    return None


def read_graph(data: bytes) -> list[Node]:
    """The nodes of a serialized GraphDef, in file order."""
    nodes = []
    for num, _, v in fields(memoryview(data)):
        if num != 1:
            continue  # versions, library: not needed for a frozen graph
        node = Node("", "")
        for n2, _, v2 in fields(v):
            if n2 == 1:
                node.name = bytes(v2).decode()
            elif n2 == 2:
                node.op = bytes(v2).decode()
            elif n2 == 3:
                name = bytes(v2).decode()
                if not name.startswith("^"):
                    node.inputs.append(name[:-2] if name.endswith(":0") else name)
            elif n2 == 5:  # map<string, AttrValue> entry
                key, val = "", None
                for n3, _, v3 in fields(v2):
                    if n3 == 1:
                        key = bytes(v3).decode()
                    elif n3 == 2:
                        val = _attr(v3)
                node.attrs[key] = val
        if not node.name or not node.op:
            raise GraphError("a node without name or op: not a GraphDef")
        nodes.append(node)
    if not nodes:
        raise GraphError("no nodes: not a GraphDef")
    return nodes


def topological(nodes: list[Node]) -> list[Node]:
    """The nodes ordered so each comes after its inputs (a frozen graph's file order need not
    be: an optimiser may write a node after its consumers)."""
    by_name = {n.name: n for n in nodes}
    done: set[str] = set()
    out: list[Node] = []
    for root in nodes:
        stack = [(root, False)]
        while stack:
            n, expanded = stack.pop()
            if n.name in done:
                continue
            if expanded:
                done.add(n.name)
                out.append(n)
                continue
            stack.append((n, True))
            for i in n.inputs:
                if i not in by_name:
                    raise GraphError(f"{n.name}: input {i} is not in the graph")
                if i not in done:
                    stack.append((by_name[i], False))
    return out
