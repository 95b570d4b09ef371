//! burn-ndarray runs every op's reference (it has no attention kernel of its own: Burn's
//! separate-ops fallback, which reads a mask broadcast over heads). Implemented for the element
//! types this project uses.

use burn::backend::NdArray;

use crate::ops::adamw::AdamWOps;
use crate::ops::adapter_head::AdapterHeadOps;
use crate::ops::attention::AttentionOps;
use crate::ops::dropout::DropoutOps;
use crate::ops::gelu::GeluOps;
use crate::ops::linear::LinearOps;

macro_rules! reference_backend {
    ($($backend:ty),*) => {$(
        impl LinearOps for $backend {}
        impl GeluOps for $backend {}
        impl DropoutOps for $backend {}
        impl AttentionOps for $backend {}
        impl AdapterHeadOps for $backend {}
        impl AdamWOps for $backend {}
    )*};
}

reference_backend!(NdArray<f32>, NdArray<f32, i32>);
