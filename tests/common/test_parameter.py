from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedsilo.common import (
    Parameters,
    SerializationError,
    bytes_to_ndarray,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)

DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_, np.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4), (2, 3, 4)])
def test_round_trip_keeps_values_shape_and_dtype(dtype: type, shape: tuple[int, ...]) -> None:
    array = (np.arange(int(np.prod(shape))) % 7).reshape(shape).astype(dtype)
    decoded = bytes_to_ndarray(ndarray_to_bytes(array))
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_encoding_is_a_plain_npy_file_readable_by_numpy() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded = np.load(io.BytesIO(ndarray_to_bytes(array)), allow_pickle=False)
    np.testing.assert_array_equal(loaded, array)


def test_decodes_npy_written_by_numpy_including_fortran_order() -> None:
    array = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    np.testing.assert_array_equal(bytes_to_ndarray(buffer.getvalue()), array)


def test_headers_kept_between_messages_match_each_array_exactly() -> None:
    """Headers are kept by dtype and shape and read back by their text: arrays that differ
    only in byte order, dtype or shape, sent again and again, each get numpy's own bytes."""
    arrays = [np.arange(6, dtype=dtype).reshape(shape)
              for dtype in ("<f4", ">f4", "<i4", "<f8", "|u1", "<c8")
              for shape in ((6,), (2, 3), (3, 2), (1, 6, 1))]
    # Same kind, size and string form, different dtypes: fields named apart, datetime units.
    for fields in (["a", "b"], ["x", "y"]):
        pairs = np.zeros(6, dtype=[(fields[0], "<f4"), (fields[1], "<f4")])
        pairs[fields[0]] = np.arange(6)
        arrays.append(pairs.reshape(2, 3))
    arrays += [np.arange(6).astype(unit).reshape(2, 3) for unit in ("M8[s]", "M8[ms]")]
    for _ in range(3):
        for array in arrays:
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            encoded = ndarray_to_bytes(array)
            assert encoded == buffer.getvalue()
            decoded = bytes_to_ndarray(encoded)
            assert decoded.dtype.str == array.dtype.str and decoded.shape == array.shape
            np.testing.assert_array_equal(decoded, array)


def _npy_v2(header_text: bytes, data: bytes) -> bytes:
    return b"\x93NUMPY\x02\x00" + len(header_text).to_bytes(4, "little") + header_text + data


def test_a_long_header_from_a_peer_is_read_but_not_kept() -> None:
    from fedsilo.common import parameter

    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" + b" " * 8000 + b"\n"
    kept = parameter._parse_plain_header.cache_info().currsize
    for _ in range(3):
        decoded = bytes_to_ndarray(_npy_v2(text, np.arange(3, dtype="<f4").tobytes()))
        np.testing.assert_array_equal(decoded, np.arange(3, dtype=np.float32))
    assert parameter._parse_plain_header.cache_info().currsize == kept


def test_a_shape_too_long_for_int_is_a_serialization_error() -> None:
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + b"9" * 5000 + b",), }\n"
    with pytest.raises(SerializationError):
        bytes_to_ndarray(_npy_v2(text, b""))


def test_non_contiguous_input_is_encoded_by_value() -> None:
    array = np.arange(10.0)[::3]
    np.testing.assert_array_equal(bytes_to_ndarray(ndarray_to_bytes(array)), array)


def test_decoding_shares_memory_with_the_message_bytes() -> None:
    data = ndarray_to_bytes(np.arange(1000, dtype=np.float64))
    decoded = bytes_to_ndarray(data)
    assert np.shares_memory(decoded, np.frombuffer(data, dtype=np.uint8))
    assert not decoded.flags.writeable


def test_object_arrays_are_refused_when_encoding() -> None:
    with pytest.raises(SerializationError, match="object arrays need pickle"):
        ndarray_to_bytes(np.array([{"a": 1}, None], dtype=object))


def test_pickled_tensor_is_refused_without_unpickling() -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("this must never run",))

    buffer = io.BytesIO()
    np.save(buffer, np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(SerializationError, match="object arrays are pickled"):
        bytes_to_ndarray(buffer.getvalue())


@pytest.mark.parametrize("junk", [b"", b"hello", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x09\x00ab"])
def test_junk_bytes_raise_serialization_error(junk: bytes) -> None:
    with pytest.raises(SerializationError):
        bytes_to_ndarray(junk)


def test_truncated_data_is_refused() -> None:
    data = ndarray_to_bytes(np.arange(10, dtype=np.float64))
    with pytest.raises(SerializationError, match="data bytes"):
        bytes_to_ndarray(data[:-8])


def test_unknown_tensor_type_is_refused() -> None:
    with pytest.raises(SerializationError, match="tensor_type"):
        parameters_to_ndarrays(Parameters(tensors=[], tensor_type="torch.Tensor"))


def test_parameters_round_trip() -> None:
    arrays = [np.ones((2, 2), np.float32), np.zeros(3, np.int64)]
    params = ndarrays_to_parameters(arrays)
    assert params.tensor_type == "numpy.ndarray"
    for got, want in zip(parameters_to_ndarrays(params), arrays, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype


@given(hnp.arrays(dtype=hnp.scalar_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=3)))
def test_any_numeric_array_round_trips(array: np.ndarray) -> None:
    decoded = bytes_to_ndarray(ndarray_to_bytes(array))
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_serialization_error(data: bytes) -> None:
    try:
        bytes_to_ndarray(data)
    except SerializationError:
        pass


@given(array=hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(endianness="="), hnp.floating_dtypes(endianness="<"),
                    hnp.floating_dtypes(endianness=">"), hnp.complex_number_dtypes(),
                    hnp.boolean_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)),
    fortran=st.booleans(), version=st.sampled_from([(1, 0), (2, 0)]))
def test_headers_numpy_writes_are_read_directly_and_as_numpy_reads_them(
    array: np.ndarray, fortran: bool, version: tuple[int, int]
) -> None:
    from fedsilo.common import parameter

    array = np.asfortranarray(array) if fortran else array
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    view = memoryview(buffer.getvalue())
    direct = parameter._plain_header(view)
    assert direct is not None  # the fast path takes every header numpy writes
    assert direct == parameter._numpy_header(view)
    np.testing.assert_array_equal(bytes_to_ndarray(buffer.getvalue()), array)


@pytest.mark.parametrize("header", [
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1, }",
    b"{'fortran_order': False, 'descr': '<f4', 'shape': (3,), }",
    b"{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (3,), }",
    b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }",
])
def test_other_headers_go_to_numpys_parser(header: bytes) -> None:
    from fedsilo.common import parameter

    padded = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    data = b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded
    assert parameter._plain_header(memoryview(data + b"\0" * 12)) is None


# Replies encoded straight from the arrays --------------------------------------------------

ARRAYS_OF_EVERY_KIND = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.float64(2.5).reshape(()),  # 0-d
    np.zeros((0, 3), dtype=np.int64),  # empty
    np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),  # Fortran order: copied
    np.arange(20, dtype=np.float64)[::3],  # a strided view: copied
    np.arange(5, dtype=">i4"),  # big-endian
    np.array([True, False, True]),
]


def test_array_parameters_read_as_the_bytes_ndarrays_to_parameters_makes() -> None:
    from fedsilo.common.parameter import ArrayParameters

    lazy = ArrayParameters(ARRAYS_OF_EVERY_KIND)
    eager = ndarrays_to_parameters(ARRAYS_OF_EVERY_KIND)
    assert lazy.tensor_type == eager.tensor_type
    assert lazy.tensors == eager.tensors
    assert lazy == eager and eager == lazy
    assert lazy != ndarrays_to_parameters(ARRAYS_OF_EVERY_KIND[:-1])
    for got, want in zip(parameters_to_ndarrays(lazy), ARRAYS_OF_EVERY_KIND, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_array_parameters_write_the_arrays_memory_not_a_copy_until_tensors_are_read() -> None:
    from fedsilo.common.parameter import ArrayParameters, tensor_pieces

    array = np.arange(1000, dtype=np.float32)
    lazy = ArrayParameters([array])
    [[header, data]] = tensor_pieces(lazy)
    assert np.shares_memory(np.frombuffer(data, dtype=np.float32), array)
    assert b"".join([header, data]) == ndarray_to_bytes(array)
    assert f"[{len(ndarray_to_bytes(array))}]" in repr(lazy)  # the tensor's size...
    assert tensor_pieces(lazy)[0][1] is data  # ...without building the tensor
    tensors = lazy.tensors
    # once read, the pieces are the tensors and the array is no longer referred to
    assert tensor_pieces(lazy) == [[tensors[0]]] and isinstance(tensors[0], bytes)
    assert lazy.tensors is tensors  # made once


def test_a_change_to_the_tensors_once_read_is_what_gets_encoded() -> None:
    from fedsilo.common.parameter import ArrayParameters, tensor_pieces

    lazy = ArrayParameters([np.ones(4), np.ones(2)])
    replacement = ndarray_to_bytes(np.zeros(4))
    lazy.tensors[0] = replacement  # a client mod that rewrites a tensor in place
    assert tensor_pieces(lazy) == [[replacement], [ndarray_to_bytes(np.ones(2))]]
    assert lazy == ndarrays_to_parameters([np.zeros(4), np.ones(2)])
    assert "[" + str(len(replacement)) in repr(lazy)


def test_array_parameters_copy_and_pickle_as_plain_parameters() -> None:
    import copy
    import pickle

    from fedsilo.common.parameter import ArrayParameters

    lazy = ArrayParameters(ARRAYS_OF_EVERY_KIND)
    for other in (copy.deepcopy(lazy), copy.copy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert type(other) is Parameters
        assert other == ndarrays_to_parameters(ARRAYS_OF_EVERY_KIND)


def test_replacing_the_tensors_of_array_parameters_gives_those_tensors() -> None:
    import dataclasses

    from fedsilo.common.parameter import ArrayParameters, tensor_pieces

    other = ndarrays_to_parameters([np.zeros(4)])
    replaced = dataclasses.replace(ArrayParameters(ARRAYS_OF_EVERY_KIND), tensors=other.tensors)
    assert replaced == other and tensor_pieces(replaced) == [[other.tensors[0]]]
    retyped = dataclasses.replace(ArrayParameters(ARRAYS_OF_EVERY_KIND), tensor_type="x")
    assert retyped.tensor_type == "x"
    assert retyped.tensors == ndarrays_to_parameters(ARRAYS_OF_EVERY_KIND).tensors


def test_array_parameters_refuse_object_arrays_when_made() -> None:
    from fedsilo.common.parameter import ArrayParameters

    with pytest.raises(SerializationError, match="object arrays need pickle"):
        ArrayParameters([np.array([{"a": 1}], dtype=object)])


def test_reply_parameters_are_lazy_only_where_replies_are_encoded_at_once() -> None:
    import threading

    from fedsilo.common.parameter import (
        ArrayParameters,
        replies_encoded_at_once,
        reply_parameters,
    )

    arrays = [np.ones(3)]
    assert type(reply_parameters(arrays)) is Parameters
    seen_in_thread: list[type] = []
    with replies_encoded_at_once():
        assert type(reply_parameters(arrays)) is ArrayParameters
        # another thread (in-process simulation runs clients in one) keeps copies
        thread = threading.Thread(target=lambda: seen_in_thread.append(
            type(reply_parameters(arrays))))
        thread.start()
        thread.join()
    assert seen_in_thread == [Parameters]
    assert type(reply_parameters(arrays)) is Parameters
    with replies_encoded_at_once(), replies_encoded_at_once(enabled=False):
        assert type(reply_parameters(arrays)) is Parameters  # a block that changes nothing
