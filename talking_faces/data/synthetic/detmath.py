"""Elementwise exp, log, power, tanh, sin and cos that give the same bits on every x86-64 CPU.

numpy dispatches its transcendental ufuncs at run time (AVX-512 SVML-style kernels on X86_V4
CPUs, AVX2 ones on X86_V3, the C library's otherwise), and those kernels differ in the last bit:
``np.exp``, ``np.log``, ``np.power`` and ``np.tanh`` of float64 give other bits under
``NPY_DISABLE_CPU_FEATURES="X86_V4"`` or ``"X86_V3"``, and the C library's ``sin``/``cos`` have FMA
and SSE2 builds chosen by the CPU. The synthetic corpus must not depend on the CPU it was made
on, so the renderer, the motion and the speech compute these functions here, from numpy's
correctly rounded ``+ - * /``, ``rint``, ``frexp`` and ``ldexp`` only (IEEE 754 makes each of them
exact to the bit on every CPU and SIMD width), each a separate ufunc so nothing is fused into an
FMA. Accuracy is a few ulp (float64), far below anything the corpus can show or play.
"""

from __future__ import annotations

import numpy as np

_LN2_HI = 6.93147180369123816490e-01  # fdlibm's ln 2 split: k * _LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_PIO2_HI = 1.57079632673412561417e00  # pi/2 split: n * _PIO2_HI exact for |n| < 2^20
_PIO2_LO = 6.07710050650619224932e-11
_TWO_OVER_PI = 6.36619772367581382433e-01
_EXP = tuple(1.0 / float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(14))
_LOG = tuple(1.0 / (2 * n + 1) for n in range(12))
_SIN = (
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
)
_COS = (
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
)


def _horner(z: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    acc = np.full_like(z, coefficients[-1])
    for c in coefficients[-2::-1]:
        acc = acc * z + c
    return acc


def exp(x: np.ndarray | float) -> np.ndarray:
    """``e ** x`` (float64): 0 below -745, inf above 709.78."""
    x = np.asarray(x, dtype=np.float64)
    xc = np.clip(x, -745.0, 709.0)
    k = np.rint(xc * _INV_LN2)
    r = (xc - k * _LN2_HI) - k * _LN2_LO  # |r| <= 0.35
    p = _horner(r, _EXP)  # Taylor series to r^13
    out = np.ldexp(p, k.astype(np.int64))
    out = np.where(x < -745.0, 0.0, out)
    return np.where(x > 709.78, np.inf, out)


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm (float64) of ``x >= 0``; -inf at 0."""
    x = np.asarray(x, dtype=np.float64)
    safe = np.where(x > 0, x, 1.0)
    m, e = np.frexp(safe)  # safe = m * 2**e, m in [0.5, 1)
    small = m < 0.7071067811865476
    m = np.where(small, m * 2.0, m)
    e = np.where(small, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)  # |s| <= 0.172
    z = s * s
    series = _horner(z, _LOG)  # atanh series: log m = 2 (s + s^3/3 + ...)
    out = e * _LN2_HI + (2.0 * s * series + e * _LN2_LO)
    return np.where(x > 0, out, -np.inf)


def power(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """``x ** y`` for ``x >= 0`` and ``y > 0`` (float64); 0 ** y = 0."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, exp(np.asarray(y, dtype=np.float64) * log(x)), 0.0)


def tanh(x: np.ndarray | float) -> np.ndarray:
    """Hyperbolic tangent (float64), as ``1 - 2 / (e^(2|x|) + 1)`` with the sign of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), 20.0)
    t = 1.0 - 2.0 / (exp(2.0 * a) + 1.0)
    return np.where(x < 0, -t, t)


def _reduce(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x = n pi/2 + r`` with |r| <= pi/4: ``(r, n mod 4)``; for |x| < 1e6."""
    n = np.rint(x * _TWO_OVER_PI)
    r = (x - n * _PIO2_HI) - n * _PIO2_LO
    return r, np.mod(n, 4.0).astype(np.int64)


def _sin_cos_kernels(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = r * r
    s = r + (r * z) * _horner(z, _SIN)
    c = (1.0 - 0.5 * z) + (z * z) * _horner(z, _COS)
    return s, c


def sin(x: np.ndarray | float) -> np.ndarray:
    """Sine (float64) of ``|x| < 1e6`` radians."""
    r, q = _reduce(np.asarray(x, dtype=np.float64))
    s, c = _sin_cos_kernels(r)
    return np.choose(q, [s, c, -s, -c])


def cos(x: np.ndarray | float) -> np.ndarray:
    """Cosine (float64) of ``|x| < 1e6`` radians."""
    r, q = _reduce(np.asarray(x, dtype=np.float64))
    s, c = _sin_cos_kernels(r)
    return np.choose(q, [c, -s, -c, s])
