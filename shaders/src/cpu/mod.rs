//! CPU kernels for the BERT encoder and its optimizer: plain `f32` slices in and out, no tensors
//! and nothing from the rest of this crate but plain numbers (`ops::adamw::AdamWScalars`);
//! `backend/flex.rs` is the glue that hands them Flex's buffers.
//!
//! | file | kernels | used for |
//! |---|---|---|
//! | `attention.rs` | multi-head self-attention, no dropout | the frozen encoder (evaluation, extraction, the encoder feeding the AdapterPooler) |
//! | `attention_train.rs` | self-attention with dropout, and its backward | fine-tuning |
//! | `linear.rs` | one gemm over every token, and the input / weight / bias gradients | both |
//! | `gelu.rs` | exact GELU and its derivative | both |
//! | `dropout.rs` | counter-based dropout masks | fine-tuning |
//! | `adamw.rs` | AdamW's update in one pass | fine-tuning, head training |
//! | `math.rs`, `gemm.rs` | vectorisable `exp`/`erf`, masked softmax; strided gemm calls | the kernels above |
//!
//! Why our own: a `perf` profile of Flex's encoder forward (`docs/performance.md`) spent 20% of
//! its samples in `module::attention`'s loop, which runs every (sequence, head) one after the
//! other on one thread with a scalar softmax, 9% in the copies that split the projections into
//! heads and merge them back, and 11% in GELU through scalar `libm::erff`, also on one thread.
//! Here:
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
//! AVX-512, picked at run time. The kernels are tested against their plain-Burn references
//! (`shaders/tests/attention.rs`, `shaders/tests/cpu_kernels.rs`; `exp`, `erf` and the softmax
//! in `math.rs`), and the encoder built on them against Hugging Face transformers
//! (`tests/tests/parity.rs`).

#[macro_use]
mod simd;

mod adamw;
mod attention;
mod attention_train;
mod dropout;
mod gelu;
mod gemm;
mod linear;
mod math;

pub use adamw::adamw_update_in_place;
pub use attention::{AttentionShape, self_attention};
pub use attention_train::{attention_backward, attention_forward};
pub use dropout::{DropoutStream, dropout_mask, site_seed};
pub use gelu::{gelu_grad_in_place, gelu_in_place};
pub use gemm::MatrixView;
pub use linear::{linear, linear_bias_grad, linear_input_grad, linear_weight_grad};
pub use math::{erf, exp};
