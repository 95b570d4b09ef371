//! Each backend's implementation of the op traits (`crate::ops`): the overrides that run this
//! crate's kernels, and the empty impls of backends that run every op's reference.

#[cfg(feature = "autodiff")]
mod autodiff;
#[cfg(feature = "cubecl")]
mod cube;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "ndarray")]
mod ndarray;
