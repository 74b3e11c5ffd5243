"""Explicit-SIMD sums of squared differences for psal's numba kernels.

LLVM vectorises a loop whose trip count is only known at run time by blocks of
``lanes x unroll`` values (64 floats with AVX-512) and finishes with a *scalar* loop.
A patch row of a small-channel image (an RGB patch of 7 pixels: 21 floats) never
reaches the vector block, so the PatchMatch distance on photos ran entirely in scalar
code: ~80 ns for a 7x7x3 patch, against ~30 ns for a 3x3x64 one with 4x the values.
:func:`sqdiff` emits the vector code itself: blocks of 4 vectors with 4 accumulators,
single vectors, then one *masked* vector for the tail (``llvm.masked.load``: the lanes
past the end are not read, so nothing beyond the run is touched). The 7x7x3 distance
takes ~23 ns. Where the target has no masked loads LLVM lowers them to scalar code;
the results stay right.

Sums are in the floats' own precision and in a fixed order (the lanes, then the
accumulators, then a tree over the lanes), so a result depends on the input only, not
on the thread count.

:func:`sqdiff_rows_i8` is the exact integer version over the rows of a patch, for the
engine's 8-bit bound: differences in 16 bits, squares of neighbouring lanes summed in
32 (the pattern LLVM turns into ``vpmaddwd``, or ``vpdpwssd`` with AVX-512 VNNI), one
accumulator for all rows. A 3x3x64 patch takes ~16 ns in cache, against ~50 ns for the
float-against-int8 loop it replaced.

The functions are ``@intrinsic``: they are only callable from numba-compiled code.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Vectors summed per step of the main loop (one accumulator each).
UNROLL = 4
#: Fast-math flags of the float arithmetic: those of :data:`psal.utils.parallel.FASTMATH`
#: (reassociation for the tree reductions; no 'nnan'/'ninf', so inf and NaN propagate).
_FLAGS = ("reassoc", "contract", "nsz", "arcp")


def _emit(context, builder, dtype, pa, pb, n, rows=None):  # pragma: no cover (code generation)
    """LLVM IR of ``sum((pa[:n] - pb[:n]) ** 2)`` in ``dtype``; element pointers.

    ``rows``: None, or ``(count, a_stride, b_stride)``: the sum over ``count`` runs
    ``pa + r * a_stride`` (likewise ``pb``), in the same accumulators, reduced once.
    """
    elem = context.get_value_type(dtype)
    size = 4 if dtype == types.float32 else 8
    lanes = 64 // size  # one 512-bit vector: 16 floats or 8 doubles
    name = "f32" if dtype == types.float32 else "f64"
    vty = ir.VectorType(elem, lanes)
    i32, i64 = ir.IntType(32), ir.IntType(64)
    mty = ir.VectorType(ir.IntType(1), lanes)
    align = ir.Constant(i32, size)  # element alignment only: runs start anywhere
    zero = ir.Constant(vty, [ir.Constant(elem, 0.0)] * lanes)
    accs = [cgutils.alloca_once_value(builder, zero) for _ in range(UNROLL)]
    vptr = vty.as_pointer()
    # intrinsics are mangled on their pointer type: "p0" with opaque pointers, "p0v16f32"
    # with the typed pointers that llvmlite's IR builder emits (LLVM re-mangles the name)
    suffix = "p0" if getattr(vptr, "is_opaque", False) else f"p0v{lanes}{name}"
    fnty = ir.FunctionType(vty, [vptr, i32, mty, vty])
    load_name = f"llvm.masked.load.v{lanes}{name}.{suffix}"
    masked_load = cgutils.get_or_insert_function(builder.module, fnty, load_name)

    def add(a, b):
        return builder.fadd(a, b, flags=_FLAGS)

    def step(offset, acc, mask=None):
        ptrs = [builder.bitcast(builder.gep(x, [offset]), vptr) for x in (pa, pb)]
        if mask is None:
            va, vb = (builder.load(p, align=size) for p in ptrs)
        else:
            va, vb = (builder.call(masked_load, [p, align, mask, zero]) for p in ptrs)
        d = builder.fsub(va, vb, flags=_FLAGS)
        builder.store(add(builder.load(acc), builder.fmul(d, d, flags=_FLAGS)), acc)

    if rows is None:
        rows = (ir.Constant(i64, 1), ir.Constant(i64, 0), ir.Constant(i64, 0))
    count, a_stride, b_stride = rows
    a0, b0 = pa, pb
    with cgutils.for_range(builder, count) as row:
        pa = builder.gep(a0, [builder.mul(row.index, a_stride)])
        pb = builder.gep(b0, [builder.mul(row.index, b_stride)])
        block = ir.Constant(i64, UNROLL * lanes)
        nblocks = builder.udiv(n, block)
        with cgutils.for_range(builder, nblocks) as loop:
            base = builder.mul(loop.index, block)
            for h in range(UNROLL):
                step(builder.add(base, ir.Constant(i64, h * lanes)), accs[h])
        done = builder.mul(nblocks, block)
        nvec = builder.udiv(builder.sub(n, done), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, nvec) as loop:
            step(builder.add(done, builder.mul(loop.index, ir.Constant(i64, lanes))), accs[0])
        done = builder.add(done, builder.mul(nvec, ir.Constant(i64, lanes)))
        # the tail: lanes [0, n - done) of one more vector
        ivty = ir.VectorType(i64, lanes)
        left = builder.insert_element(ir.Constant(ivty, None), builder.sub(n, done), i32(0))
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        left = builder.shuffle_vector(left, ir.Constant(ivty, None), splat)
        lane = ir.Constant(ivty, [ir.Constant(i64, j) for j in range(lanes)])
        step(done, accs[UNROLL - 1], builder.icmp_signed("<", lane, left))
    total = builder.load(accs[0])
    for h in range(1, UNROLL):
        total = add(total, builder.load(accs[h]))
    fnty = ir.FunctionType(elem, [elem, vty])
    reduce = cgutils.get_or_insert_function(
        builder.module, fnty, f"llvm.vector.reduce.fadd.v{lanes}{name}"
    )
    return builder.call(reduce, [ir.Constant(elem, -0.0), total], fastmath=("reassoc",))


def _typed(a, a_offset, b, b_offset, n):
    """The common float dtype of the two runs, or None if the arguments do not fit."""
    floats = (types.float32, types.float64)
    ok = all(isinstance(x, types.Array) and x.layout == "C" and x.dtype in floats for x in (a, b))
    if not ok or a.dtype != b.dtype:
        return None
    if not all(isinstance(t, types.Integer) for t in (a_offset, b_offset, n)):
        return None
    return a.dtype


def _codegen(dtype):
    def codegen(context, builder, sig, args):  # pragma: no cover (code generation)
        arrays = [context.make_array(sig.args[i])(context, builder, args[i]) for i in (0, 2)]
        ao, bo, n = (context.cast(builder, args[i], sig.args[i], types.int64) for i in (1, 3, 4))
        pa = builder.gep(arrays[0].data, [ao])
        pb = builder.gep(arrays[1].data, [bo])
        return _emit(context, builder, dtype, pa, pb, n)

    return codegen


@intrinsic
def sqdiff(typingctx, a, a_offset, b, b_offset, n):
    """``sum((a.flat[a_offset:a_offset+n] - b.flat[b_offset:b_offset+n]) ** 2)``.

    ``a`` and ``b``: C-contiguous arrays of one float dtype (any number of dimensions;
    offsets count elements of the flattened array). The sum is in that dtype. No bounds
    checks: the caller guarantees both runs lie inside their arrays (``n >= 0``).
    """
    dtype = _typed(a, a_offset, b, b_offset, n)
    if dtype is None:
        return None
    return dtype(a, a_offset, b, b_offset, n), _codegen(dtype)


def _emit_i8_rows(builder, pa, a_stride, pb, b_stride, n, rows):  # pragma: no cover (codegen)
    """LLVM IR of the int8 sum of squared differences over ``rows`` runs of ``n``.

    Per 64 bytes: sign-extended to 16 bits, subtracted (|a - b| <= 255 fits), squared
    in 32 bits and the products of neighbouring lanes added: the pattern that x86's
    code generator turns into ``vpmaddwd`` (AVX-512BW, or AVX2 on 256-bit halves), 64
    values in a handful of instructions. One accumulator over all rows, reduced once.
    """
    i1, i8, i16, i32, i64 = (ir.IntType(w) for w in (1, 8, 16, 32, 64))
    lanes = 64
    vty = ir.VectorType(i8, lanes)
    aty = ir.VectorType(i32, 16)
    zero8 = ir.Constant(vty, [ir.Constant(i8, 0)] * lanes)
    zacc = ir.Constant(aty, [ir.Constant(i32, 0)] * 16)
    accs = [cgutils.alloca_once_value(builder, zacc) for _ in range(2)]
    vptr = vty.as_pointer()
    suffix = "p0" if getattr(vptr, "is_opaque", False) else "p0v64i8"
    mty = ir.VectorType(i1, lanes)
    fnty = ir.FunctionType(vty, [vptr, i32, mty, vty])
    masked_load = cgutils.get_or_insert_function(
        builder.module, fnty, f"llvm.masked.load.v64i8.{suffix}"
    )

    def lanes_of(v, start, count, step=1):
        idx = ir.Constant(ir.VectorType(i32, count), list(range(start, start + count * step, step)))
        return builder.shuffle_vector(v, v, idx)

    def step(qa, qb, acc, mask=None):
        ptrs = [builder.bitcast(x, vptr) for x in (qa, qb)]
        if mask is None:
            va, vb = (builder.load(p, align=1) for p in ptrs)
        else:
            one = ir.Constant(i32, 1)
            va, vb = (builder.call(masked_load, [p, one, mask, zero8]) for p in ptrs)
        wide = ir.VectorType(i16, lanes)
        d = builder.sext(builder.sub(builder.sext(va, wide), builder.sext(vb, wide)),
                         ir.VectorType(i32, lanes))  # fmt: skip
        sq = builder.mul(d, d)
        pairs = builder.add(lanes_of(sq, 0, 32, 2), lanes_of(sq, 1, 32, 2))
        s = builder.add(lanes_of(pairs, 0, 16), lanes_of(pairs, 16, 16))
        builder.store(builder.add(builder.load(acc), s), acc)

    nvec = builder.udiv(n, ir.Constant(i64, lanes))
    done = builder.mul(nvec, ir.Constant(i64, lanes))
    ivty = ir.VectorType(i64, lanes)
    left = builder.insert_element(ir.Constant(ivty, None), builder.sub(n, done), i32(0))
    splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
    left = builder.shuffle_vector(left, ir.Constant(ivty, None), splat)
    lane = ir.Constant(ivty, [ir.Constant(i64, j) for j in range(lanes)])
    mask = builder.icmp_signed("<", lane, left)
    has_tail = builder.icmp_unsigned("!=", done, n)
    with cgutils.for_range(builder, rows) as row:
        ra = builder.gep(pa, [builder.mul(row.index, a_stride)])
        rb = builder.gep(pb, [builder.mul(row.index, b_stride)])
        with cgutils.for_range(builder, nvec) as loop:
            o = builder.mul(loop.index, ir.Constant(i64, lanes))
            step(builder.gep(ra, [o]), builder.gep(rb, [o]), accs[0])
        with builder.if_then(has_tail):
            step(builder.gep(ra, [done]), builder.gep(rb, [done]), accs[1], mask)
    total = builder.sext(builder.add(builder.load(accs[0]), builder.load(accs[1])),
                         ir.VectorType(i64, 16))  # fmt: skip
    fnty = ir.FunctionType(i64, [ir.VectorType(i64, 16)])
    reduce = cgutils.get_or_insert_function(builder.module, fnty, "llvm.vector.reduce.add.v16i64")
    return builder.call(reduce, [total])


def _rows_codegen(emit):
    """Codegen of a ``(a, a_offset, a_stride, b, b_offset, b_stride, n, rows)`` intrinsic.

    Hands ``emit`` the two runs' first element pointers and the strides and counts as
    int64.
    """

    def codegen(context, builder, sig, args):  # pragma: no cover (code generation)
        arrays = [context.make_array(sig.args[i])(context, builder, args[i]) for i in (0, 3)]
        ao, sa, bo, sb, cnt, nrows = (context.cast(builder, args[i], sig.args[i], types.int64)
                                      for i in (1, 2, 4, 5, 6, 7))  # fmt: skip
        pa = builder.gep(arrays[0].data, [ao])
        pb = builder.gep(arrays[1].data, [bo])
        return emit(context, builder, pa, sa, pb, sb, cnt, nrows)

    return codegen


@intrinsic
def sqdiff_rows_i8(typingctx, a, a_offset, a_stride, b, b_offset, b_stride, n, rows):
    """``sum((a_run - b_run) ** 2)`` over ``rows`` runs of ``n`` int8 values, as int64.

    Run ``r`` of ``a`` is ``a.flat[a_offset + r * a_stride :][:n]`` (likewise ``b``):
    the rows of a patch in an image stored row by row. Exact integer arithmetic. Lane
    sums are 32-bit: at most ~500,000 values in all (``n * rows``). ``a`` and ``b``:
    C-contiguous int8 arrays; no bounds checks (the caller guarantees the runs lie
    inside the arrays).
    """
    ok = all(isinstance(x, types.Array) and x.layout == "C" and x.dtype == types.int8
             for x in (a, b))  # fmt: skip
    ints = (a_offset, a_stride, b_offset, b_stride, n, rows)
    if not ok or not all(isinstance(t, types.Integer) for t in ints):
        return None

    def emit(context, builder, pa, sa, pb, sb, cnt, nrows):  # pragma: no cover (codegen)
        return _emit_i8_rows(builder, pa, sa, pb, sb, cnt, nrows)

    sig = types.int64(a, a_offset, a_stride, b, b_offset, b_stride, n, rows)
    return sig, _rows_codegen(emit)


@intrinsic
def sqdiff_rows(typingctx, a, a_offset, a_stride, b, b_offset, b_stride, n, rows):
    """:func:`sqdiff` summed over ``rows`` runs of ``n``, reduced once.

    Run ``r`` of ``a`` starts at ``a.flat[a_offset + r * a_stride]`` (likewise ``b``):
    the rows of a patch stored row by row. One set of vector accumulators serves all
    the rows, so a short row (21 floats of an RGB patch) costs no horizontal sum.
    """
    dtype = _typed(a, a_offset, b, b_offset, n)
    if dtype is None or not all(isinstance(t, types.Integer) for t in (a_stride, b_stride, rows)):
        return None

    def emit(context, builder, pa, sa, pb, sb, cnt, nrows):  # pragma: no cover (codegen)
        return _emit(context, builder, dtype, pa, pb, cnt, (nrows, sa, sb))

    return dtype(a, a_offset, a_stride, b, b_offset, b_stride, n, rows), _rows_codegen(emit)
