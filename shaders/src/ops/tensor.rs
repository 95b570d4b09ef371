//! Float tensors and their primitives (Burn's op traits take primitives, the references take
//! tensors).

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// A float primitive as a tensor (Burn's op traits take primitives, the references take tensors).
pub(crate) fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// A float tensor's primitive.
pub(crate) fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// `t` in `dtype`: itself when it already is (no cast node under autodiff), else cast.
pub fn to_dtype<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    dtype: burn::tensor::FloatDType,
) -> Tensor<B, D> {
    if t.dtype() == burn::tensor::DType::from(dtype) {
        t
    } else {
        t.cast(dtype)
    }
}
