"""Standard-only codecs of torch's row-wise quantized layout (spec QUANT-LAYOUT).

A packed row is ``ceil(D * bits / 8)`` bytes of codes followed by the row's scale and bias: two float32
(8 bits) or two float16 (4 and 2 bits), little-endian.  4- and 2-bit codes are packed low bits first
(element ``j`` is bits ``(j % k) * bits ...`` of byte ``j // k``, ``k = 8 / bits``).

The array API standard has no bit-cast and no float16, so the scale and bias are encoded and decoded
here with integer and exactly rounded float32 arithmetic only (powers of two, their products and
quotients, ``round`` half to even): the results are bit-exact on every namespace, traced JAX included.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .._typing import Array

#: bytes of scale + bias at the end of a row, per bit width
OVERHEAD = {8: 8, 4: 4, 2: 4}

_F16_MAX = 65504.0


def _pow2(k: Array, xp: Any) -> Array:
    """``2.0 ** k`` in float32, exactly, for an int32 array ``-126 <= k <= 127`` (a product of the exact
    powers ``2 ** (2 ** i)``; ``pow`` is not required to be exact)."""
    dev = _device(k)
    mag = xp.abs(k)
    p = xp.ones(k.shape, dtype=xp.float32, device=dev)
    for i in range(7):
        bit = xp.bitwise_and(xp.bitwise_right_shift(mag, i), 1) == 1
        p = xp.where(bit, p * (2.0 ** (2 ** i)), p)
    return xp.where(k < 0, 1.0 / p, p)


def _binade(a: Array, xp: Any) -> Array:
    """``floor(log2(a))`` as int32 for positive finite float32 ``a >= 2**-126``, exactly (``log2`` gives
    the estimate, one comparison with the exact power of two on each side corrects it)."""
    safe = xp.where(a > 0, a, xp.ones((), dtype=a.dtype, device=_device(a)))
    e = xp.astype(xp.clip(xp.floor(xp.log2(safe)), min=-126, max=127), xp.int32)
    e = xp.where(_pow2(e, xp) > safe, e - 1, e)
    return xp.where((e < 127) & (_pow2(xp.clip(e + 1, max=127), xp) <= safe), e + 1, e)


def _bytes(word: list[Array], xp: Any) -> Array:
    """Stack int32 byte values (little-endian order) into an (n, len(word)) uint8 array."""
    return xp.stack([xp.astype(b, xp.uint8) for b in word], axis=1)


def encode_float32(x: Array, xp: Any) -> Array:
    """The 4 little-endian IEEE-754 bytes (n, 4) uint8 of a float32 array ``x`` (n,); NaN as the quiet NaN."""
    finite = xp.isfinite(x)
    a = xp.where(finite, xp.abs(x), 0.0)
    normal = a >= 2.0 ** -126
    e = _binade(xp.where(normal, a, 1.0), xp)
    frac = xp.where(normal, a / _pow2(e, xp) - 1.0, xp.where(normal, 0.0, a) * (2.0 ** 126))  # subnormal: [0, 1)
    mant = xp.astype(frac * (2.0 ** 23), xp.int32)
    biased = xp.where(normal, e + 127, 0)
    biased = xp.where(finite, biased, 255)
    mant = xp.where(finite, mant, xp.astype(xp.isnan(x), xp.int32) * (1 << 22))
    sign = xp.astype(xp.signbit(x), xp.int32)
    return _bytes([
        xp.bitwise_and(mant, 0xFF),
        xp.bitwise_and(xp.bitwise_right_shift(mant, 8), 0xFF),
        xp.bitwise_or(xp.bitwise_right_shift(mant, 16), xp.bitwise_left_shift(xp.bitwise_and(biased, 1), 7)),
        xp.bitwise_or(xp.bitwise_right_shift(biased, 1), xp.bitwise_left_shift(sign, 7)),
    ], xp)


def _inf_or_nan(mant: Array, xp: Any) -> Array:
    """float32 inf where the mantissa bits are 0, NaN elsewhere (an all-ones exponent)."""
    dev = _device(mant)
    inf = xp.asarray(float("inf"), dtype=xp.float32, device=dev)
    return xp.where(mant == 0, inf, xp.asarray(float("nan"), dtype=xp.float32, device=dev))


def decode_float32(b: Array, xp: Any) -> Array:
    """float32 (n,) from its 4 little-endian bytes ``b`` (n, 4) uint8."""
    b0, b1, b2, b3 = (xp.astype(b[:, i], xp.int32) for i in range(4))
    sign = xp.bitwise_right_shift(b3, 7)
    biased = xp.bitwise_or(xp.bitwise_left_shift(xp.bitwise_and(b3, 0x7F), 1), xp.bitwise_right_shift(b2, 7))
    mant = xp.bitwise_or(xp.bitwise_or(xp.bitwise_left_shift(xp.bitwise_and(b2, 0x7F), 16),
                                       xp.bitwise_left_shift(b1, 8)), b0)
    frac = xp.astype(mant, xp.float32) * (2.0 ** -23)
    normal = (1.0 + frac) * _pow2(xp.clip(biased - 127, min=-126, max=127), xp)
    value = xp.where(biased == 0, frac * (2.0 ** -126), normal)
    value = xp.where(biased == 255, _inf_or_nan(mant, xp), value)
    return xp.where(sign == 1, -value, value)


def round_to_float16(x: Array, xp: Any) -> Array:
    """float32 ``x`` rounded to the nearest float16 value (half to even; overflow to inf), as float32."""
    a = xp.abs(x)
    e = xp.clip(_binade(xp.where(a >= 2.0 ** -14, a, 2.0 ** -14), xp), max=15)
    ulp = _pow2(e - 10, xp)
    r = xp.round(a / ulp) * ulp
    r = xp.where(r > _F16_MAX, float("inf"), r)
    r = xp.where(xp.isfinite(a), r, a)
    return xp.where(xp.signbit(x), -r, r)


def encode_float16(x: Array, xp: Any) -> Array:
    """The 2 little-endian float16 bytes (n, 2) uint8 of float32 values ``x`` (n,) already representable
    in float16 (:func:`round_to_float16`)."""
    finite = xp.isfinite(x)
    a = xp.where(finite, xp.abs(x), 0.0)
    normal = a >= 2.0 ** -14
    e = _binade(xp.where(normal, a, 1.0), xp)
    frac = xp.where(normal, a / _pow2(e, xp) - 1.0, a * (2.0 ** 14))
    mant = xp.astype(frac * 1024.0, xp.int32)
    biased = xp.where(finite, xp.where(normal, e + 15, 0), 31)
    mant = xp.where(finite, mant, xp.astype(xp.isnan(x), xp.int32) * (1 << 9))
    sign = xp.astype(xp.signbit(x), xp.int32)
    high = xp.bitwise_or(xp.bitwise_or(xp.bitwise_left_shift(sign, 7), xp.bitwise_left_shift(biased, 2)),
                         xp.bitwise_right_shift(mant, 8))
    return _bytes([xp.bitwise_and(mant, 0xFF), high], xp)


def decode_float16(b: Array, xp: Any) -> Array:
    """float32 (n,) from float16's 2 little-endian bytes ``b`` (n, 2) uint8 (every float16 is a float32)."""
    b0, b1 = xp.astype(b[:, 0], xp.int32), xp.astype(b[:, 1], xp.int32)
    sign = xp.bitwise_right_shift(b1, 7)
    biased = xp.bitwise_and(xp.bitwise_right_shift(b1, 2), 0x1F)
    mant = xp.bitwise_or(xp.bitwise_left_shift(xp.bitwise_and(b1, 3), 8), b0)
    frac = xp.astype(mant, xp.float32) * (2.0 ** -10)
    normal = (1.0 + frac) * _pow2(biased - 15, xp)
    value = xp.where(biased == 0, frac * (2.0 ** -14), normal)
    value = xp.where(biased == 31, _inf_or_nan(mant, xp), value)
    return xp.where(sign == 1, -value, value)


def packed_row_bytes(dim: int, bits: int) -> int:
    """Bytes of one packed row of ``dim`` values."""
    return (dim * bits + 7) // 8 + OVERHEAD[bits]


def pack_codes(codes: Array, bits: int, xp: Any) -> Array:
    """int32 codes (n, D) in ``[0, 2**bits)`` → (n, D * bits / 8) uint8, low bits first (D a multiple of
    ``8 / bits``)."""
    per = 8 // bits
    n, dim = codes.shape
    if per == 1:
        return xp.astype(codes, xp.uint8)
    grouped = xp.reshape(codes, (n, dim // per, per))
    shifts = xp.arange(per, dtype=xp.int32, device=_device(codes)) * bits
    return xp.astype(xp.sum(xp.bitwise_left_shift(grouped, shifts), axis=2, dtype=xp.int32), xp.uint8)


def unpack_codes(code_bytes: Array, bits: int, dim: int, xp: Any) -> Array:
    """The inverse of :func:`pack_codes`: (n, dim) codes as float32."""
    if bits == 8:
        return xp.astype(code_bytes[:, :dim], xp.float32)
    per = 8 // bits
    n = code_bytes.shape[0]
    wide = xp.astype(code_bytes, xp.int32)[:, :, None]
    shifts = xp.arange(per, dtype=xp.int32, device=_device(code_bytes)) * bits
    codes = xp.bitwise_and(xp.bitwise_right_shift(wide, shifts), (1 << bits) - 1)
    return xp.astype(xp.reshape(codes, (n, code_bytes.shape[1] * per))[:, :dim], xp.float32)


def scale_bias(rows: Array, bits: int, dim: int, xp: Any) -> tuple[Array, Array]:
    """The (n,) float32 scale and bias of packed rows (n, L)."""
    start = (dim * bits + 7) // 8
    if bits == 8:
        return decode_float32(rows[:, start:start + 4], xp), decode_float32(rows[:, start + 4:start + 8], xp)
    return decode_float16(rows[:, start:start + 2], xp), decode_float16(rows[:, start + 2:start + 4], xp)


def dequantize_rows(rows: Array, bits: int, dim: int, xp: Any) -> Array:
    """float32 (n, dim) values ``code * scale + bias`` of packed rows (n, L) uint8."""
    scale, bias = scale_bias(rows, bits, dim, xp)
    codes = unpack_codes(rows[:, :(dim * bits + 7) // 8], bits, dim, xp)
    return codes * scale[:, None] + bias[:, None]
