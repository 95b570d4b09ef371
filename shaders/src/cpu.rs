//! CPU kernels for the BERT encoder on Burn's Flex backend: for the frozen encoder (evaluation,
//! extraction, the encoder that feeds the AdapterPooler) multi-head self-attention, the exact
//! GELU and the linear layers; for fine-tuning also the GELU's and linear layers' backward,
//! dropout masks and self-attention with dropout and its backward (`training.rs`), all through
//! `Autodiff<Flex>` (`autodiff.rs`).
//!
//! Why our own: a `perf` profile of Flex's encoder forward (README, "Speed") spent 20% of its
//! samples in `module::attention`'s loop, which runs every (sequence, head) one after the other
//! on one thread with a scalar softmax, 9% in the copies that split the projections into heads
//! and merge them back, and 11% in GELU through scalar `libm::erff`, also on one thread. Here:
//!
//! - attention reads the `[batch, seq, heads·head_dim]` projections where they lie (the gemm
//!   calls take strides, so nothing is split or merged), runs the (sequence, head) pairs in
//!   parallel, stops the key range at the last real key (right padding costs nothing), folds the
//!   1/√d scale into the score gemm, and uses a vectorisable `exp`;
//! - GELU runs in parallel chunks with a vectorisable rational approximation of `erf`;
//! - the linear layers run as one gemm over every token, with the bias as the starting value;
//!   their backward as one gemm each for the input and weight gradients;
//! - dropout masks come from a counter-based generator filled in parallel (Flex draws them one
//!   element at a time from a ChaCha generator behind a lock: 18% of a fine-tuning step's
//!   samples at 384 tokens).
//!
//! The element-wise loops are compiled three times on x86-64, for the baseline, AVX2+FMA and
//! AVX-512, picked at run time. The kernels are tested against Burn's own ops
//! (`shaders/tests/attention.rs`, `shaders/tests/cpu_kernels.rs`; `exp` and `erf` in `tests`
//! below), and the encoder built on them against Hugging Face transformers
//! (`tests/tests/parity.rs`).

use rayon::prelude::*;

/// Compiles `$body` as a baseline function and, on x86-64, twice more, with AVX-512 and with AVX2
/// and FMA enabled (so LLVM vectorises its loops 16 or 8 lanes wide), choosing at run time.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` was compiled for (AVX-512F
                    // implies AVX2 and FMA).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// Lanes of the manual accumulators below: float sums and maxima are not reassociated by the
/// compiler, so a reduction written as one running value runs one element at a time.
const LANES: usize = 16;

/// `e^x` for `x ≤ 88`, within 7.8e-8 relative of f64 `exp` on [−87, 0] (measured by the test
/// below; Cephes' `expf`: `2^n · e^r` with `n = round(x·log₂e)` and a degree-7 polynomial on
/// `|r| ≤ ln2/2`); exactly 0 below −87, so a masked score of −∞ gives a weight of 0.
/// Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a `round` call.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // ln 2 in two parts, so that n·ln2 is subtracted without losing r's low bits.
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * (r * r) + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { e * two_n }
}

/// `erf(x)` as a rational function of x (the minimax approximation XLA and Eigen use for f32),
/// evaluated in f64: the approximation is within 6.5e-8 of erf on [−4, 4], and f64 keeps the
/// evaluation from adding more (in f32 it reached 4.2e-7 near |x| = 3.6, where GELU's
/// `1 + erf` cancels). `|x| ≥ 4` gives ±1 to f32 precision.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = f64::from(x.clamp(-4.0, 4.0));
    let x2 = x * x;
    let numerator = ((((((-2.726_142_258_013_06e-10 * x2 + 2.770_681_424_959_02e-8) * x2
        - 2.101_024_020_825_08e-6)
        * x2
        - 5.692_506_394_623_46e-5)
        * x2
        - 7.349_906_303_268_55e-4)
        * x2
        - 2.954_599_808_540_25e-3)
        * x2
        - 1.609_603_332_624_15e-2)
        * x;
    let denominator = (((-1.456_607_184_649_96e-5 * x2 - 2.133_740_552_789_05e-4) * x2
        - 1.682_826_974_382_03e-3)
        * x2
        - 7.373_329_167_204_68e-3)
        * x2
        - 1.426_473_905_141_89e-2;
    (numerator / denominator) as f32
}

multiversion! {
    /// `x ← x·Φ(x) = x/2·(1 + erf(x/√2))`, BERT's exact GELU.
    fn gelu_chunk(values: &mut [f32]) {
        for v in values.iter_mut() {
            let x = *v;
            *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// Elements per parallel task of the element-wise kernels: large enough that a chunk outlasts
/// rayon's scheduling, small enough to spread over cores.
const CHUNK: usize = 1 << 14;

/// Exact (erf) GELU in place, in parallel chunks.
pub fn gelu_in_place(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(gelu_chunk);
}

multiversion! {
    /// `grad ← grad·gelu'(x)`, `gelu'(x) = Φ(x) + x·φ(x)` with φ the standard normal density.
    fn gelu_grad_chunk(x: &[f32], grad: &mut [f32]) {
        // 1/√(2π)
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for (g, &x) in grad.iter_mut().zip(x) {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp(-0.5 * x * x);
            *g *= cdf + x * pdf;
        }
    }
}

/// The exact GELU's backward in place: `grad ← grad·gelu'(x)`, in parallel chunks.
///
/// # Panics
/// If `x` and `grad` differ in length.
pub fn gelu_grad_in_place(x: &[f32], grad: &mut [f32]) {
    assert_eq!(
        x.len(),
        grad.len(),
        "gelu backward: input and gradient lengths"
    );
    grad.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(grad, x)| gelu_grad_chunk(x, grad));
}

multiversion! {
    /// `row ← softmax(row + bias)` over one query's scores, where `bias` is 0 for real keys and −∞
    /// for padding (whose weights come out exactly 0).
    fn softmax_row(row: &mut [f32], bias: &[f32]) {
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact_mut(LANES).zip(bias.chunks_exact(LANES));
        for (r, b) in &mut chunks {
            for i in 0..LANES {
                r[i] += b[i];
                max[i] = if r[i] > max[i] { r[i] } else { max[i] };
            }
        }
        let tail = row.len() - row.len() % LANES;
        for i in tail..row.len() {
            row[i] += bias[i];
            max[0] = if row[i] > max[0] { row[i] } else { max[0] };
        }
        let max = max.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        if max == f32::NEG_INFINITY {
            // Every key is padding: no weights (what Flex's own attention does).
            row.fill(0.0);
            return;
        }
        let mut sum = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for r in &mut chunks {
            for i in 0..LANES {
                r[i] = exp(r[i] - max);
                sum[i] += r[i];
            }
        }
        for r in chunks.into_remainder() {
            *r = exp(*r - max);
            sum[0] += *r;
        }
        let inv = 1.0 / sum.iter().sum::<f32>();
        for r in row.iter_mut() {
            *r *= inv;
        }
    }
}

/// `dst = scale·lhs·rhs` (or `dst += …` when `accumulate`) for `m × k` by `k × n`, each matrix
/// given by its first element and its (row, column) strides: the gemm crate's call with its
/// arguments in that order.
///
/// # Safety
/// Every element the strides and extents address must lie inside the allocation its pointer
/// points into, and no other thread may touch `dst`'s elements meanwhile.
unsafe fn gemm_strided(
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

/// Per sequence of `key_padding` (`[batch·seq]`, true for padding): the number of keys up to
/// the last real one (keys after it are never read), and their softmax bias (0 for real keys,
/// −∞ for padding).
fn key_ranges(key_padding: &[bool], seq: usize) -> Vec<(usize, Vec<f32>)> {
    key_padding
        .chunks(seq)
        .map(|padding| {
            let keys = padding.iter().rposition(|&p| !p).map_or(0, |last| last + 1);
            let bias = padding[..keys]
                .iter()
                .map(|&p| if p { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            (keys, bias)
        })
        .collect()
}

/// One (sequence, head)'s attention probabilities `softmax(q·kᵀ/√head_dim + bias)`, `seq` rows
/// of `bias.len()` keys, into `probs` with rows `row_stride` apart; the head's query and key
/// blocks start at `offset` of the `[batch, seq, hidden]` buffers.
///
/// # Panics
/// If a block lies outside its buffer or `probs` is too short.
fn head_probabilities(
    query: &[f32],
    key: &[f32],
    offset: usize,
    shape: AttentionShape,
    bias: &[f32],
    probs: &mut [f32],
    row_stride: usize,
) {
    let AttentionShape { seq, head_dim, .. } = shape;
    let (hidden, keys) = (shape.hidden(), bias.len());
    if seq == 0 || keys == 0 {
        return;
    }
    let block_end = offset + (seq - 1) * hidden + head_dim;
    assert!(
        block_end <= query.len() && block_end <= key.len(),
        "attention: head block"
    );
    assert!(
        keys <= row_stride && probs.len() >= (seq - 1) * row_stride + keys,
        "attention: probabilities"
    );
    let h = hidden as isize;
    // SAFETY: the asserts above keep every element the strides address inside the slices.
    unsafe {
        // probs[i, j] = scale · Σ_d q[i, d] · k[j, d]
        gemm_strided(
            [seq, keys, head_dim],
            (probs.as_mut_ptr(), row_stride as isize, 1),
            false,
            (query.as_ptr().add(offset), h, 1),
            (key.as_ptr().add(offset), 1, h),
            1.0 / (head_dim as f32).sqrt(),
            gemm::Parallelism::None,
        );
    }
    for row in probs.chunks_mut(row_stride).take(seq) {
        softmax_row(&mut row[..keys], bias);
    }
}

/// Panics, naming `kernel` and the buffer, unless every buffer holds `shape.len()` elements and
/// `key_padding` one flag per token.
fn check_lengths(
    kernel: &str,
    shape: AttentionShape,
    buffers: &[(&str, usize)],
    key_padding: &[bool],
) {
    for (name, len) in buffers {
        assert_eq!(*len, shape.len(), "{kernel}: {name} length for {shape:?}");
    }
    assert_eq!(
        key_padding.len(),
        shape.batch * shape.seq,
        "{kernel}: key padding length"
    );
}

/// Shapes of a self-attention call: `[batch, seq, heads·head_dim]` projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    pub fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn len(&self) -> usize {
        self.batch * self.seq * self.hidden()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The output buffer, written by many threads at disjoint (sequence, head) blocks.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own (sequence, head) block of rows × columns.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method, not a field read, so that closures capture the `Send` wrapper, not the pointer.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `softmax(q·kᵀ/√head_dim + padding)·v` for every sequence and head, with `query`, `key`,
/// `value` and the result laid out `[batch, seq, heads·head_dim]` (row-major), and
/// `key_padding[b·seq + j]` true where key `j` of sequence `b` is padding. No dropout.
///
/// # Panics
/// If a slice's length disagrees with `shape`.
pub fn self_attention(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    key_padding: &[bool],
    shape: AttentionShape,
) -> Vec<f32> {
    let AttentionShape {
        batch,
        seq,
        heads,
        head_dim,
    } = shape;
    let hidden = shape.hidden();
    check_lengths(
        "self_attention",
        shape,
        &[
            ("query", query.len()),
            ("key", key.len()),
            ("value", value.len()),
        ],
        key_padding,
    );
    let mut out = vec![0.0f32; shape.len()];
    if out.is_empty() {
        return out;
    }
    let key_ranges = key_ranges(key_padding, seq);
    let out_ptr = SharedOut(out.as_mut_ptr());
    (0..batch * heads)
        .into_par_iter()
        .for_each_init(Vec::<f32>::new, |scores, unit| {
            let (b, h) = (unit / heads, unit % heads);
            let (keys, bias) = (key_ranges[b].0, &key_ranges[b].1);
            // Where this (sequence, head) block starts in every [batch, seq, hidden] buffer.
            let offset = b * seq * hidden + h * head_dim;
            // SAFETY (both gemm calls): the pointers and strides address `seq × head_dim`
            // blocks (`keys × head_dim` for key and value) inside the checked slices, `scores` has
            // `seq × keys` elements, and no other task writes this block of `out`.
            if keys == 0 {
                return; // Every key is padding: rows stay 0.
            }
            let out_block = out_ptr.at(offset);
            // One head's scores at once: splitting the query rows into blocks of 64 (to keep
            // their scores in cache between the three steps) was not measurably faster here.
            scores.resize(seq * keys, 0.0);
            head_probabilities(query, key, offset, shape, bias, scores, keys);
            let h = hidden as isize;
            unsafe {
                // out[i, d] = Σ_j p[i, j] · v[j, d]
                gemm_strided(
                    [seq, head_dim, keys],
                    (out_block, h, 1),
                    false,
                    (scores.as_ptr(), keys as isize, 1),
                    (value.as_ptr().add(offset), h, 1),
                    1.0,
                    gemm::Parallelism::None,
                );
            }
        });
    out
}

/// SplitMix64's output function: a well-spread 64-bit value for each input, so that hashing a
/// counter gives independent-looking bits per element.
#[inline(always)]
fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A dropout mask as a function of the element's index: element `i` is `scale = 1/keep` with
/// probability `keep`, else 0. Element `i` depends on `(seed, i)` alone (SplitMix64 run `i + 1`
/// steps from `seed`), so any part of the mask can be made, or made again, on any thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutStream {
    seed: u64,
    /// Keep when the top 32 bits fall below `keep·2³²`.
    threshold: u64,
    scale: f32,
}

impl DropoutStream {
    /// # Panics
    /// If `keep` is not in `(0, 1]`.
    pub fn new(seed: u64, keep: f64) -> Self {
        assert!(
            keep > 0.0 && keep <= 1.0,
            "dropout: keep probability {keep}"
        );
        DropoutStream {
            seed,
            threshold: (keep * 4_294_967_296.0).round() as u64,
            scale: (1.0 / keep) as f32,
        }
    }

    /// The mask's element `index`: `1/keep` or 0.
    #[inline(always)]
    pub fn at(&self, index: u64) -> f32 {
        let state = self
            .seed
            .wrapping_add((index + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if mix64(state) >> 32 < self.threshold {
            self.scale
        } else {
            0.0
        }
    }
}

multiversion! {
    /// Elements `first..first + out.len()` of `stream`'s mask.
    fn dropout_mask_chunk(out: &mut [f32], first: u64, stream: DropoutStream) {
        for (i, v) in out.iter_mut().enumerate() {
            *v = stream.at(first + i as u64);
        }
    }
}

/// Dropout's keep mask, already scaled: element `i` is `1/keep` with probability `keep` and 0
/// otherwise, the values Burn's `Dropout` multiplies by (a Bernoulli draw, then `1/keep`);
/// [`DropoutStream`]'s elements `0..len`, filled in parallel chunks (the same whatever the
/// number of threads). Burn's Flex draws every element in turn from one ChaCha generator behind
/// a lock: under fine-tuning, the attention-probability masks (`[batch, heads, seq, seq]` per
/// layer) made that the largest single-threaded cost of a step (README, "Speed").
///
/// # Panics
/// If `keep` is not in `(0, 1]`.
pub fn dropout_mask(len: usize, keep: f64, seed: u64) -> Vec<f32> {
    let stream = DropoutStream::new(seed, keep);
    let mut out = vec![0.0f32; len];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| dropout_mask_chunk(chunk, (c * CHUNK) as u64, stream));
    out
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
    /// Whether every element the view addresses lies inside `data`.
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

    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `x·weight + bias` for `x` `[rows, weight.rows]` (row-major): one gemm over every token of the
/// batch, so the weight is packed once per call (Burn's `linear` on `[batch, seq, in]` runs one
/// gemm per sequence, each repacking it) and split over threads by gemm itself; the bias is the
/// output's starting value instead of a separate pass.
///
/// # Panics
/// If the shapes disagree or `weight` addresses memory outside its buffer.
pub fn linear(x: &[f32], rows: usize, weight: MatrixView<'_>, bias: Option<&[f32]>) -> Vec<f32> {
    let (inputs, outputs) = (weight.rows, weight.cols);
    assert_eq!(x.len(), rows * inputs, "linear: input length");
    assert!(weight.in_bounds(), "linear: weight view out of bounds");
    let mut out = match bias {
        Some(bias) => {
            assert_eq!(bias.len(), outputs, "linear: bias length");
            let mut out = Vec::with_capacity(rows * outputs);
            for _ in 0..rows {
                out.extend_from_slice(bias);
            }
            out
        }
        None => vec![0.0; rows * outputs],
    };
    if out.is_empty() || inputs == 0 {
        return out;
    }
    // SAFETY: `x` and `out` have the checked lengths; the weight view was checked in bounds.
    unsafe {
        gemm_strided(
            [rows, outputs, inputs],
            (out.as_mut_ptr(), outputs as isize, 1),
            bias.is_some(),
            (x.as_ptr(), inputs as isize, 1),
            (
                weight.data.as_ptr().add(weight.offset),
                weight.row_stride as isize,
                weight.col_stride as isize,
            ),
            1.0,
            gemm::Parallelism::Rayon(0),
        );
    }
    out
}

/// [`linear`]'s gradient at its input, `grad·weightᵀ` `[rows, weight.rows]`: the same one gemm
/// over every token, reading the weight transposed where it lies.
pub fn linear_input_grad(grad: &[f32], rows: usize, weight: MatrixView<'_>) -> Vec<f32> {
    linear(grad, rows, weight.transposed(), None)
}

/// [`linear`]'s gradient at its weight, `xᵀ·grad` `[inputs, outputs]` (row-major): one gemm whose
/// inner dimension is every token of the batch (Burn's default multiplies sequence by sequence
/// into a `[batch, inputs, outputs]` buffer and then sums it over the batch).
///
/// # Panics
/// If the lengths disagree with the shapes.
pub fn linear_weight_grad(
    x: &[f32],
    grad: &[f32],
    rows: usize,
    inputs: usize,
    outputs: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * inputs, "linear backward: input length");
    assert_eq!(
        grad.len(),
        rows * outputs,
        "linear backward: gradient length"
    );
    let mut out = vec![0.0; inputs * outputs];
    if out.is_empty() || rows == 0 {
        return out;
    }
    // SAFETY: every pointer, stride and extent below addresses the slices whose lengths were
    // checked above: lhs (i, r) = x[r·inputs + i], rhs (r, o) = grad[r·outputs + o],
    // dst (i, o) = out[i·outputs + o].
    unsafe {
        gemm_strided(
            [inputs, outputs, rows],
            (out.as_mut_ptr(), outputs as isize, 1),
            false,
            (x.as_ptr(), 1, inputs as isize),
            (grad.as_ptr(), outputs as isize, 1),
            1.0,
            gemm::Parallelism::Rayon(0),
        );
    }
    out
}

/// [`linear`]'s gradient at its bias: the column sums of `grad` `[rows, outputs]`.
pub fn linear_bias_grad(grad: &[f32], outputs: usize) -> Vec<f32> {
    let mut sums = vec![0.0f32; outputs];
    if outputs == 0 {
        return sums;
    }
    for row in grad.chunks_exact(outputs) {
        for (sum, g) in sums.iter_mut().zip(row) {
            *sum += g;
        }
    }
    sums
}

pub mod training;

/// The Flex side: Burn tensors in and out, f32 only (other dtypes take Burn's ops).
pub(crate) mod flex {
    use super::AttentionShape;
    use crate::attention::{AttentionDropout, AttentionResiduals};
    use burn::backend::Flex;
    use burn::tensor::{Bool, DType, Tensor, TensorData, TensorPrimitive};
    use burn_flex::FlexTensor;

    /// A contiguous, offset-0 tensor whose storage is exactly its elements.
    fn contiguous<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
        t.into_primitive().tensor().to_contiguous()
    }

    fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<Flex, D> {
        Tensor::from_primitive(TensorPrimitive::Float(FlexTensor::from_data(
            TensorData::new(values, shape),
        )))
    }

    pub fn is_f32<const D: usize>(t: &Tensor<Flex, D>) -> bool {
        t.dtype() == DType::F32
    }

    /// `[batch·seq]`, true where the key is padding, from a mask as
    /// `crate::attention::key_padding_mask` builds it (`[batch, 1 or heads, seq, seq]`, the same
    /// for every query), of which only query 0 of head 0 is read.
    fn key_padding(padding: Tensor<Flex, 4, Bool>) -> Vec<bool> {
        let [batch, _, _, seq] = padding.dims();
        let rows = padding
            .narrow(1, 0, 1)
            .narrow(2, 0, 1)
            .reshape([batch * seq]);
        let rows = rows.into_primitive().to_contiguous();
        rows.storage::<u8>().iter().map(|&p| p != 0).collect()
    }

    fn attention_shape(query: &Tensor<Flex, 3>, heads: usize) -> AttentionShape {
        let [batch, seq, hidden] = query.dims();
        AttentionShape {
            batch,
            seq,
            heads,
            head_dim: hidden / heads,
        }
    }

    /// A 62-bit seed from two draws of Flex's own generator (so `Backend::seed` makes runs
    /// repeatable, as with Burn's `Dropout`), read from the primitive: no synchronous tensor
    /// read (the browser app builds this crate for wasm).
    fn draw_seed(device: &burn_flex::FlexDevice) -> u64 {
        use burn::tensor::ops::IntTensorOps;
        use burn::tensor::{Distribution, IntDType, Shape};
        // 31-bit draws: the largest range every int dtype holds.
        let draws = Flex::int_random(
            Shape::new([2]),
            Distribution::Uniform(0.0, 2_147_483_648.0),
            device,
            IntDType::I64,
        );
        let draws = draws.storage::<i64>();
        ((draws[0] as u64) << 31) ^ draws[1] as u64
    }

    /// See [`super::training::attention_forward`]; dropout with keep probability `keep` (none
    /// at 1), its seed drawn from Flex's generator and kept in the residuals.
    pub fn attention_train_forward(
        query: Tensor<Flex, 3>,
        key: Tensor<Flex, 3>,
        value: Tensor<Flex, 3>,
        padding: Tensor<Flex, 4, Bool>,
        heads: usize,
        keep: f64,
    ) -> (Tensor<Flex, 3>, AttentionResiduals<Flex>) {
        let shape = attention_shape(&query, heads);
        let dropout = if keep < 1.0 {
            AttentionDropout::Seed {
                seed: draw_seed(&query.device()),
                keep,
            }
        } else {
            AttentionDropout::None
        };
        let key_padding = key_padding(padding.clone());
        let (q, k, v) = (
            contiguous(query.clone()),
            contiguous(key.clone()),
            contiguous(value.clone()),
        );
        let (out, probs) = super::training::attention_forward(
            q.storage(),
            k.storage(),
            v.storage(),
            &key_padding,
            shape,
            stream(&dropout),
        );
        let [batch, seq, hidden] = query.dims();
        let residuals = AttentionResiduals {
            probs: tensor(probs, [batch, heads, seq, seq]),
            padding,
            dropout,
        };
        (tensor(out, [batch, seq, hidden]), residuals)
    }

    fn stream(dropout: &AttentionDropout<Flex>) -> Option<super::DropoutStream> {
        match dropout {
            AttentionDropout::Seed { seed, keep } => Some(super::DropoutStream::new(*seed, *keep)),
            AttentionDropout::None => None,
            AttentionDropout::Mask(_) => unreachable!("the kernels keep seeds, not masks"),
        }
    }

    /// See [`super::training::attention_backward`]; `None` for residuals the kernels did not
    /// make (a dropout mask kept as a tensor), which the caller takes to Burn's ops.
    pub fn attention_train_backward(
        query: Tensor<Flex, 3>,
        key: Tensor<Flex, 3>,
        value: Tensor<Flex, 3>,
        residuals: &AttentionResiduals<Flex>,
        grad: Tensor<Flex, 3>,
        heads: usize,
    ) -> Option<[Tensor<Flex, 3>; 3]> {
        if matches!(residuals.dropout, AttentionDropout::Mask(_)) {
            return None;
        }
        let shape = attention_shape(&query, heads);
        let dims = query.dims();
        let key_padding = key_padding(residuals.padding.clone());
        let probs = contiguous(residuals.probs.clone());
        let (q, k, v, g) = (
            contiguous(query),
            contiguous(key),
            contiguous(value),
            contiguous(grad),
        );
        let grads = super::training::attention_backward(
            q.storage(),
            k.storage(),
            v.storage(),
            probs.storage(),
            &key_padding,
            g.storage(),
            shape,
            stream(&residuals.dropout),
        );
        Some(grads.map(|g| tensor(g, dims)))
    }

    /// See [`super::self_attention`]; `padding` as [`key_padding`] reads it.
    pub fn self_attention(
        query: Tensor<Flex, 3>,
        key: Tensor<Flex, 3>,
        value: Tensor<Flex, 3>,
        padding: Tensor<Flex, 4, Bool>,
        heads: usize,
    ) -> Tensor<Flex, 3> {
        let dims = query.dims();
        let shape = attention_shape(&query, heads);
        let key_padding = key_padding(padding);
        let (query, key, value) = (contiguous(query), contiguous(key), contiguous(value));
        let out = super::self_attention(
            query.storage(),
            key.storage(),
            value.storage(),
            &key_padding,
            shape,
        );
        tensor(out, dims)
    }

    /// See [`super::linear`]; `weight` `[in, out]` as Burn's `Linear` keeps it (often a transposed
    /// view of a Hugging Face `[out, in]` tensor, read where it lies).
    pub fn linear(
        x: Tensor<Flex, 3>,
        weight: Tensor<Flex, 2>,
        bias: Option<Tensor<Flex, 1>>,
    ) -> Tensor<Flex, 3> {
        let [batch, seq, _] = x.dims();
        let [_, outputs] = weight.dims();
        let x = contiguous(x);
        let weight = weight_view(weight);
        let bias = bias.map(contiguous);
        let out = super::linear(
            x.storage(),
            batch * seq,
            view_of(&weight),
            bias.as_ref().map(|b| b.storage()),
        );
        tensor(out, [batch, seq, outputs])
    }

    /// A `[in, out]` weight whose storage [`view_of`] can read where it lies (copied only if it
    /// has negative strides).
    fn weight_view(weight: Tensor<Flex, 2>) -> FlexTensor {
        let weight = weight.into_primitive().tensor();
        if weight.layout().strides().iter().any(|&s| s < 0) {
            weight.to_contiguous()
        } else {
            weight
        }
    }

    fn view_of(weight: &FlexTensor) -> super::MatrixView<'_> {
        let strides = weight.layout().strides();
        let [rows, cols] = [weight.layout().shape()[0], weight.layout().shape()[1]];
        super::MatrixView {
            data: weight.storage(),
            offset: weight.layout().start_offset(),
            rows,
            cols,
            row_stride: strides[0] as usize,
            col_stride: strides[1] as usize,
        }
    }

    /// The gradients of [`linear`] (with a bias) at its input (when `input_grad`), weight and
    /// bias.
    pub fn linear_backward(
        x: Tensor<Flex, 3>,
        weight: Tensor<Flex, 2>,
        grad: Tensor<Flex, 3>,
        input_grad: bool,
    ) -> crate::attention::LinearGrads<Flex> {
        let [batch, seq, inputs] = x.dims();
        let [_, outputs] = weight.dims();
        let rows = batch * seq;
        let grad = contiguous(grad);
        let weight = weight_view(weight);
        let input = input_grad.then(|| {
            let dx = super::linear_input_grad(grad.storage(), rows, view_of(&weight));
            tensor(dx, [batch, seq, inputs])
        });
        let x = contiguous(x);
        let weight_grad =
            super::linear_weight_grad(x.storage(), grad.storage(), rows, inputs, outputs);
        let bias_grad = super::linear_bias_grad(grad.storage(), outputs);
        crate::attention::LinearGrads {
            input,
            weight: tensor(weight_grad, [inputs, outputs]),
            bias: tensor(bias_grad, [outputs]),
        }
    }

    /// The exact GELU's backward, `grad·gelu'(x)`; in place in `grad`'s buffer when it holds it
    /// alone.
    pub fn gelu_backward<const D: usize>(
        x: Tensor<Flex, D>,
        grad: Tensor<Flex, D>,
    ) -> Tensor<Flex, D> {
        let x = contiguous(x);
        let mut grad = contiguous(grad);
        super::gelu_grad_in_place(x.storage(), grad.storage_mut::<f32>());
        Tensor::from_primitive(TensorPrimitive::Float(grad))
    }

    /// [`super::dropout_mask`] as a `[len]` tensor, seeded by two draws from Flex's own generator
    /// (so `Backend::seed` makes runs repeatable, as with Burn's `Dropout`).
    pub fn dropout_mask(len: usize, keep: f64, device: &burn_flex::FlexDevice) -> Tensor<Flex, 1> {
        tensor(super::dropout_mask(len, keep, draw_seed(device)), [len])
    }

    /// Exact GELU; in place when `x` holds its buffer alone.
    pub fn gelu<const D: usize>(x: Tensor<Flex, D>) -> Tensor<Flex, D> {
        let mut x = contiguous(x);
        super::gelu_in_place(x.storage_mut::<f32>());
        Tensor::from_primitive(TensorPrimitive::Float(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of the vectorisable `exp` over the range softmax uses (x − max ≤ 0).
    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 87.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        eprintln!("exp: worst relative error {worst:e}");
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    /// Absolute error of the rational `erf` against f64 erf (computed from its series/continued
    /// fraction through libm, which Flex's own GELU uses).
    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -6.0 + 12.0 * i as f32 / 200_000.0;
            let err = (erf(x) as f64 - libm::erf(x as f64)).abs();
            worst = worst.max(err);
        }
        eprintln!("erf: worst absolute error {worst:e}");
        assert!(worst < 2e-7, "worst absolute error {worst:e}");
    }

    /// The mask's values, its keep rate, independence of neighbouring elements, repeatability
    /// for a seed and a different mask for another seed.
    #[test]
    fn dropout_mask_keeps_the_asked_fraction() {
        let (len, keep) = (1_000_003, 0.9);
        let mask = dropout_mask(len, keep, 42);
        let scale = (1.0 / keep) as f32;
        assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
        let kept: Vec<bool> = mask.iter().map(|&m| m != 0.0).collect();
        let rate = kept.iter().filter(|&&k| k).count() as f64 / len as f64;
        // The standard deviation of the rate is √(0.09/10⁶) = 3e-4.
        assert!((rate - keep).abs() < 2e-3, "kept {rate}, asked {keep}");
        let pairs = kept.windows(2).filter(|w| w[0] && w[1]).count() as f64 / (len - 1) as f64;
        assert!(
            (pairs - keep * keep).abs() < 3e-3,
            "both of a pair kept: {pairs}"
        );
        assert_eq!(mask, dropout_mask(len, keep, 42));
        let other = dropout_mask(len, keep, 43);
        let same = mask.iter().zip(&other).filter(|(a, b)| a == b).count() as f64 / len as f64;
        // Independent masks agree where both keep or both drop: 0.81 + 0.01.
        assert!((same - 0.82).abs() < 3e-3, "two seeds agree on {same}");
    }

    #[test]
    fn softmax_row_masks_and_normalises() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let bias: Vec<f32> = (0..37)
            .map(|i| if i % 5 == 3 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let logits = row.clone();
        softmax_row(&mut row, &bias);
        let max = logits
            .iter()
            .zip(&bias)
            .filter(|(_, b)| b.is_finite())
            .map(|(l, _)| *l as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits
            .iter()
            .zip(&bias)
            .filter(|(_, b)| b.is_finite())
            .map(|(l, _)| (*l as f64 - max).exp())
            .sum();
        for ((p, l), b) in row.iter().zip(&logits).zip(&bias) {
            let want = if b.is_finite() {
                (*l as f64 - max).exp() / sum
            } else {
                0.0
            };
            assert!((*p as f64 - want).abs() < 1e-6, "{p} vs {want}");
        }
        let mut all_padding = vec![1.0f32; 5];
        softmax_row(&mut all_padding, &[f32::NEG_INFINITY; 5]);
        assert_eq!(all_padding, vec![0.0; 5]);
    }
}
