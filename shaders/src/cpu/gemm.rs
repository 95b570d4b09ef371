//! The gemm crate's call with (row, column) strides, strided views of matrices, and the
//! output pointer that parallel tasks share.

/// `dst = scale·lhs·rhs` (or `dst += …` when `accumulate`) for `m × k` by `k × n`, each matrix
/// given by its first element and its (row, column) strides: the gemm crate's call with its
/// arguments in that order.
///
/// # Safety
/// Every element the strides and extents address must lie inside the allocation its pointer
/// points into, and no other thread may touch `dst`'s elements meanwhile.
pub unsafe fn gemm_strided(
    [m, n, k]: [usize; 3],
    dst: (*mut f32, isize, isize),
    accumulate: bool,
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    scale: f32,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded to the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2,
            dst.1,
            accumulate,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A row-major or transposed matrix in someone else's buffer: element `(r, c)` at
/// `data[offset + r·row_stride + c·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatrixView<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixView<'_> {
    /// The same matrix transposed (no copy: the strides swap).
    pub fn transposed(self) -> Self {
        MatrixView {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element the view addresses lies inside `data`.
    pub fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// The output buffer, written by many threads at disjoint (sequence, head) blocks.
#[derive(Clone, Copy)]
pub struct SharedOut(pub *mut f32);
// SAFETY: every task writes only its own (sequence, head) block of rows × columns.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method, not a field read, so that closures capture the `Send` wrapper, not the pointer.
    pub fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}
