"""The design card: a model's layers as a table, worked out before any training.

Whether a design keeps to its parameter budget, what it costs per image and whether
its last features can see the whole digit are questions about the architecture, not
about a run: they are answered here from the built model's layers and shapes alone,
so a design can be judged (and a run over budget refused) before data is read or a
step is taken.

Each layer gets its parameters (all, and the trainable ones that budgets count),
its multiply-accumulates per image, and the receptive field and jump of its output:
the side of the input patch one output pixel sees, and how far apart in input pixels
neighbouring output pixels are (r ← r + (k_eff − 1)·j, j ← j·stride, from r = j = 1
at the input). The arithmetic is followed only where it is exact: a layer this
module does not know that keeps a spatial output, or a model whose layers branch,
leaves the receptive field unknown ("?") from there on rather than guessed, since a
wrong "covers the digit" would be worse than none. Normalisation layers keep the
receptive field: the statistics they share across positions are not counted, as
with BatchNorm over a batch.
"""

from __future__ import annotations

import math

import keras
from keras import layers as kl

from kerasnets import errors

DIGIT = 28  # an MNIST digit is 28x28 pixels: the receptive field that sees all of it

UNKNOWN = "not accounted for: the receptive field is unknown from here"
AXES = "not accounted for: its two axes differ, so the receptive field is unknown from here"
SPACE_TO_DEPTH = "space-to-depth, with the next layers"
NOT_SPATIAL = "not spatial"
BRANCHES = "the model branches: receptive fields are followed along one chain of layers only"
MACS_UNCOUNTED = "its multiply-accumulates are not counted"
MACS_UNKNOWN = "its multiply-accumulates are unknown: an axis has no fixed size"

# Layers that slide a window: they grow the receptive field and multiply the jump.
_WINDOWS = (kl.Conv2D, kl.DepthwiseConv2D, kl.SeparableConv2D,
            kl.MaxPooling2D, kl.AveragePooling2D)
# Layers that keep every position where it is: the receptive field and jump pass through.
_KEEP = (kl.ReLU, kl.LeakyReLU, kl.PReLU, kl.ELU, kl.Activation, kl.Dropout,
         kl.SpatialDropout2D, kl.GaussianNoise, kl.GaussianDropout, kl.Rescaling,
         kl.Normalization, kl.LayerNormalization, kl.GroupNormalization,
         kl.ZeroPadding2D, kl.Cropping2D)
# Layers that end the spatial part (each output sees the whole map): no multiplications.
_ENDS = (kl.GlobalAveragePooling2D, kl.GlobalMaxPooling2D, kl.Flatten)
# Layers known to do no multiply-accumulate worth counting (parameters or not).
_NO_MACS = _KEEP + _ENDS + (kl.BatchNormalization, kl.MaxPooling2D, kl.AveragePooling2D,
                            kl.Reshape, kl.Permute, kl.Softmax)


class DesignCardError(errors.KerasnetsError, ValueError):
    """A model whose layers cannot be tabled: not built on an input (a Sequential model
    without keras.Input, a subclassed model)."""


def card(model: keras.Model) -> dict:
    """The design card of a built Sequential or functional `model`, as plain JSON values:
    its name, one row per layer (InputLayer left out) and the totals (see the module's
    docstring for what each column means)."""
    layer_list = [layer for layer in model.layers if not isinstance(layer, kl.InputLayer)]
    try:
        inputs, outputs = model.inputs, model.outputs
        shapes = [_shape(layer.output) for layer in layer_list]
        in_shapes = [_shape(layer.input) for layer in layer_list]
    except AttributeError:
        raise DesignCardError(
            f"model {model.name!r} has no defined input and output: build it on an input "
            "(start it with keras.Input((28, 28, 1))) before its design card is made") from None
    rows = []
    for layer, shape, in_shape in zip(layer_list, shapes, in_shapes):
        macs, macs_note = _macs(layer, in_shape, shape)
        rows.append({
            "name": layer.name,
            "kind": type(layer).__name__,
            "output_shape": shape,
            "params": int(layer.count_params()),
            "trainable_params": sum(_size(w) for w in layer.trainable_weights),
            "macs": macs,
            "receptive_field": None,
            "jump": None,
            "note": macs_note,
        })
    if _is_chain(layer_list, inputs, outputs):
        last = _receptive_fields(layer_list, in_shapes, shapes, rows,
                                 _shape(inputs[0]) if inputs else None)
    else:
        for row in rows:
            _add_note(row, BRANCHES)
        last = None
    receptive_field = last["receptive_field"] if last is not None else None
    all_macs = [row["macs"] for row in rows]
    return {
        "model": model.name,
        "layers": rows,
        "trainable_params": sum(_size(w) for w in model.trainable_weights),
        "params": int(model.count_params()),
        "macs": None if None in all_macs else sum(all_macs),
        "receptive_field": receptive_field,
        "covers_digit": None if receptive_field is None else receptive_field >= DIGIT,
    }


def format_card(card: dict) -> str:
    """`card` as an aligned text table, one line per layer ("?" where a value is unknown,
    "-" where it does not apply, "*" on a layer with a note, the notes beneath), then the
    totals."""
    header = ("layer", "kind", "output shape", "params", "trainable", "MACs", "RF", "jump")
    table, notes = [header], []
    for row in card["layers"]:
        marked = bool(row["note"]) and row["note"] != NOT_SPATIAL
        table.append((row["name"], row["kind"], _shape_text(row["output_shape"]),
                      _number(row["params"]), _number(row["trainable_params"]),
                      _number(row["macs"]), _field(row, "receptive_field"),
                      _field(row, "jump") + (" *" if marked else "  ")))
        if marked:
            notes.append(f"* {row['name']}: {row['note']}")
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i < 3 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(line, widths))).rstrip()
             for line in table]
    lines += notes
    lines.append("(RF: receptive field, jump: its step, both in input pixels; "
                 "- not spatial, ? unknown)")
    lines.append(f"{card['model']}: {card['trainable_params']:,} trainable parameters "
                 f"({card['params']:,} in all), {_number(card['macs'])} multiply-accumulates")
    lines.append(f"receptive field of the last spatial layer: {_coverage(card)}")
    return "\n".join(lines)


def budget_problem(card: dict, max_params: int) -> str | None:
    """One line when the card's trainable parameters exceed `max_params`, else None."""
    if card["trainable_params"] <= max_params:
        return None
    return (f"{card['model']} has {card['trainable_params']:,} trainable parameters, "
            f"over --max_params={max_params:,}")


# -- the parts of a row ---------------------------------------------------------------


def _shape(tensor) -> list:
    """A tensor's shape as a list (None for the batch axis); a list of them for several
    tensors (a merge layer's inputs)."""
    if isinstance(tensor, (list, tuple)):
        return [_shape(t) for t in tensor]
    return [None if d is None else int(d) for d in tensor.shape]


def _is_one_shape(shape: list) -> bool:
    return all(d is None or isinstance(d, int) for d in shape)


def _size(variable) -> int:
    return int(math.prod(variable.shape))


def _add_note(row: dict, note: str) -> None:
    row["note"] = f"{row['note']}; {note}" if row["note"] else note


def _spatial_and_channels(shape: list, data_format: str) -> tuple[list, int | None]:
    """(the spatial sizes, the channel count) of a batch shape."""
    if data_format == "channels_first":
        return shape[2:], shape[1]
    return shape[1:-1], shape[-1]


def _product(values: list) -> int | None:
    return None if any(v is None for v in values) else int(math.prod(values))


def _macs(layer, in_shape: list, out_shape: list) -> tuple[int | None, str | None]:
    """(multiply-accumulates per image, a note or None): what the layer's weights multiply."""
    kind = type(layer)
    if not (_is_one_shape(in_shape) and _is_one_shape(out_shape)):  # a merge: no weights
        return 0, (MACS_UNCOUNTED if layer.count_params() else None)
    if kind in (kl.Conv1D, kl.Conv2D, kl.Conv3D, kl.DepthwiseConv2D, kl.SeparableConv2D):
        out_spatial, out_c = _spatial_and_channels(out_shape, layer.data_format)
        _, in_c = _spatial_and_channels(in_shape, layer.data_format)
        positions, window = _product(out_spatial), math.prod(layer.kernel_size)
        if positions is None or in_c is None or out_c is None:
            return None, MACS_UNKNOWN
        if kind is kl.DepthwiseConv2D:
            return positions * in_c * layer.depth_multiplier * window, None
        if kind is kl.SeparableConv2D:
            depthwise = positions * in_c * layer.depth_multiplier * window
            return depthwise + positions * in_c * layer.depth_multiplier * out_c, None
        return positions * out_c * window * in_c // layer.groups, None
    if kind is kl.Dense:
        leading = _product(in_shape[1:-1])
        if leading is None or in_shape[-1] is None:
            return None, MACS_UNKNOWN
        return leading * in_shape[-1] * layer.units, None
    if layer.count_params() and not isinstance(layer, _NO_MACS):
        return 0, MACS_UNCOUNTED
    return 0, None


# -- the receptive field --------------------------------------------------------------


def _is_chain(layer_list: list, inputs: list, outputs: list) -> bool:
    """Whether each layer takes exactly the output of the one before it (the first one
    the model's only input) and the last one's output is the model's only output."""
    if len(inputs) != 1 or len(outputs) != 1 or not layer_list:
        return False
    previous = inputs[0]
    for layer in layer_list:
        if layer.input is not previous:
            return False
        previous = layer.output
    return previous is outputs[0]


def _keeps_positions(layer, in_shape: list) -> bool:
    """Whether every output pixel of `layer` depends on the same input pixel only."""
    channels_last = len(in_shape) == 4  # else (H, W) images: the last axis is a spatial one
    mixes_last_axis = (type(layer) is kl.Dense or type(layer) is kl.Softmax or (
        type(layer) is kl.Activation
        and layer.activation in (keras.activations.softmax, keras.activations.log_softmax)))
    if mixes_last_axis and not channels_last:
        return False
    if type(layer) is kl.Softmax:  # over the channels only: over positions it would mix them
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        return [a % len(in_shape) for a in axes] == [len(in_shape) - 1]
    if isinstance(layer, kl.BatchNormalization) or type(layer) in _KEEP:
        return True  # the normalisations' shared statistics are not counted (module docstring)
    if type(layer) is kl.Dense:  # on each pixel's channels alone, as a 1x1 convolution
        return True
    if type(layer) is kl.Reshape:  # (H, W) images given their channel axis
        return len(in_shape) == 3 and _shape_tail(layer.output) == in_shape[1:] + [1]
    return False


def _shape_tail(tensor) -> list:
    return _shape(tensor)[1:]


def _window(layer) -> tuple[int, int] | None:
    """(effective kernel size, stride) of a sliding-window layer, None where its two axes
    differ."""
    if isinstance(layer, (kl.MaxPooling2D, kl.AveragePooling2D)):
        sizes, strides, dilations = layer.pool_size, layer.strides, (1, 1)
    else:
        sizes, strides, dilations = layer.kernel_size, layer.strides, layer.dilation_rate
    effective = [d * (k - 1) + 1 for k, d in zip(sizes, dilations)]
    if len(set(effective)) != 1 or len(set(strides)) != 1:
        return None
    return effective[0], strides[0]


def _space_to_depth_block(three: list, in_shape: list) -> int | None:
    """The block size b when `three` layers are exactly Reshape((H/b, b, W/b, b[, C])),
    Permute((1, 3, 2, 4[, 5])), Reshape((H/b, W/b, C·b·b)) on an (H, W, C) input, else None."""
    if len(three) != 3 or [type(layer) for layer in three] != [kl.Reshape, kl.Permute, kl.Reshape]:
        return None
    if len(in_shape) != 4 or None in in_shape[1:]:
        return None
    height, width, channels = in_shape[1:]
    split, permuted, merged = (_shape_tail(layer.output) for layer in three)
    if len(split) == 4 and channels == 1:
        tail, dims = [], (1, 3, 2, 4)
    elif len(split) == 5 and split[4] == channels:
        tail, dims = [channels], (1, 3, 2, 4, 5)
    else:
        return None
    block = split[1]
    if (block is None or block < 1 or split[3] != block or split[0] is None or split[2] is None
            or split[0] * block != height or split[2] * block != width):
        return None
    rows, cols = split[0], split[2]
    if tuple(three[1].dims) != dims or permuted != [rows, cols, block, block, *tail]:
        return None
    if merged != [rows, cols, channels * block * block]:
        return None
    return block


def _receptive_fields(layer_list: list, in_shapes: list, shapes: list, rows: list,
                      input_shape: list | None) -> dict | None:
    """Fills each row's receptive field, jump and note along the chain; returns the last
    spatial layer's row (None when there is none)."""
    field, jump = 1, 1  # at the input; None once unknown
    ended = input_shape is None or len(input_shape) not in (3, 4)
    last = None
    index = 0
    while index < len(layer_list):
        layer, row, in_shape, shape = (layer_list[index], rows[index], in_shapes[index],
                                       shapes[index])
        block = None if ended or field is None else _space_to_depth_block(
            layer_list[index:index + 3], in_shape)
        if block is not None:
            for part in rows[index:index + 2]:
                _add_note(part, SPACE_TO_DEPTH)
            field, jump = field + (block - 1) * jump, jump * block
            last = rows[index + 2]
            last["receptive_field"], last["jump"] = field, jump
            index += 3
            continue
        # spatial: (batch, H, W, C) or more axes (which only a known pattern may pass), or
        # (H, W) images passed through as they came in
        spatial = _is_one_shape(shape) and (len(shape) >= 4 or (
            not ended and len(input_shape) == 3 and shape == in_shape))
        if not spatial:
            ended = True
            _add_note(row, NOT_SPATIAL)
        else:
            if ended and field is not None:  # spatial again after a non-spatial part
                field = jump = None
                _add_note(row, UNKNOWN)
            elif field is not None:
                if type(layer) in _WINDOWS:
                    window = _window(layer)
                    if window is None:
                        field = jump = None
                        _add_note(row, AXES)
                    else:
                        size, stride = window
                        field, jump = field + (size - 1) * jump, jump * stride
                elif not _keeps_positions(layer, in_shape):
                    field = jump = None
                    _add_note(row, UNKNOWN)
            row["receptive_field"], row["jump"] = field, jump
            last = row
        index += 1
    return last


# -- the text ---------------------------------------------------------------------------


def _number(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _shape_text(shape: list) -> str:
    if not _is_one_shape(shape):
        return ", ".join(_shape_text(one) for one in shape)
    return "x".join("?" if d is None else str(d) for d in shape[1:]) or "scalar"


def _says(row: dict, note: str) -> bool:
    return note in (row["note"] or "").split("; ")


def _field(row: dict, key: str) -> str:
    if row[key] is not None:
        return str(row[key])
    return "-" if _says(row, NOT_SPATIAL) or _says(row, SPACE_TO_DEPTH) else "?"


def _coverage(card: dict) -> str:
    field = card["receptive_field"]
    if field is not None:
        if card["covers_digit"]:
            return f"{field}x{field}, which covers the {DIGIT}x{DIGIT} digit"
        return (f"{field}x{field}, which does not cover the {DIGIT}x{DIGIT} digit "
                f"({field} < {DIGIT})")
    if all(_says(row, NOT_SPATIAL) for row in card["layers"]):
        return "none, as no layer is spatial"
    return (f"?, which is unknown (see the marked layers), and so is whether it covers "
            f"the {DIGIT}x{DIGIT} digit")
