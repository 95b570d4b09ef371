//! Burn's CubeCL backends (CUDA, wgpu): the fused AdapterPooler head through the kernels of
//! `cube/adapter_head.rs` — `CubeBackend` launches them; `Fusion<B>` records them as custom
//! operations in its stream (so the tensors around them still fuse) and runs the inner
//! backend's version when the stream executes. Attention reads a dense per-head mask (CubeCL's
//! flash kernels misread a broadcast one, `ops/attention.rs`); every other op is the reference.

use burn::tensor::Shape;
use burn::tensor::ops::FloatTensor;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::cube::adapter_head::{adapter_head_forward_kernel, adapter_head_recompute_kernel};
use crate::ops::adapter_head::AdapterHeadOps;
use crate::ops::attention::{AttentionOps, MaskLayout};
use crate::ops::dropout::DropoutOps;
use crate::ops::gelu::GeluOps;
use crate::ops::linear::LinearOps;

/// Units per cube the forward kernel aims at (adapter size × tokens).
const FORWARD_UNITS_PER_CUBE: usize = 256;

fn contiguous<R: CubeRuntime>(tensors: [CubeTensor<R>; 4]) -> [CubeTensor<R>; 4] {
    let dtype = tensors[0].dtype;
    for t in &tensors[1..] {
        assert_eq!(
            t.dtype, dtype,
            "adapter head: every input must have the features' dtype"
        );
        tensors[0].assert_is_on_same_device(t);
    }
    tensors.map(into_contiguous)
}

impl<R, F, I, BT> AdapterHeadOps for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    const KERNEL: bool = true;

    fn adapter_head(
        features: FloatTensor<Self>,
        adapter_weight: FloatTensor<Self>,
        adapter_bias: FloatTensor<Self>,
        head_weight: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [features, adapter_weight, adapter_bias, head_weight] =
            contiguous([features, adapter_weight, adapter_bias, head_weight]);
        let tokens = features.meta.shape()[0];
        let adapter = adapter_weight.meta.shape()[2];
        let classes = head_weight.meta.shape()[2];
        let max_units = features.client.properties().hardware.max_units_per_cube as usize;
        if classes > adapter || adapter > max_units {
            // The cube reduction gives each class to one adapter unit; shapes outside it (never
            // BERTVision's: C ≤ 3, A ≥ 8) take the reference path.
            return crate::ops::adapter_head::reference::forward::<Self>(
                crate::ops::tensor::float(features),
                crate::ops::tensor::float(adapter_weight),
                crate::ops::tensor::float(adapter_bias),
                crate::ops::tensor::float(head_weight),
            )
            .into_primitive()
            .tensor();
        }
        let tokens_per_cube = (FORWARD_UNITS_PER_CUBE / adapter).clamp(1, max_units / adapter);
        let dtype = features.dtype;
        let output = empty_device_contiguous_dtype(
            features.client.clone(),
            features.device.clone(),
            Shape::new([tokens, classes]),
            dtype,
        );
        let cubes = tokens.div_ceil(tokens_per_cube) as u32;
        adapter_head_forward_kernel::launch::<R>(
            &features.client,
            CubeCount::Static(cubes, 1, 1),
            CubeDim {
                x: adapter as u32,
                y: tokens_per_cube as u32,
                z: 1,
            },
            features.clone().into_tensor_arg(),
            adapter_weight.into_tensor_arg(),
            adapter_bias.into_tensor_arg(),
            head_weight.into_tensor_arg(),
            output.clone().into_tensor_arg(),
            adapter,
            classes,
            tokens_per_cube,
            dtype.into(),
        );
        output
    }

    fn adapter_head_recompute(
        features: FloatTensor<Self>,
        adapter_weight: FloatTensor<Self>,
        adapter_bias: FloatTensor<Self>,
        head_weight: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [features, adapter_weight, adapter_bias, head_weight] =
            contiguous([features, adapter_weight, adapter_bias, head_weight]);
        let grad_out = into_contiguous(grad_out);
        let [tokens, layers, _] = features.meta.shape().dims();
        let adapter = adapter_weight.meta.shape()[2];
        let dtype = features.dtype;
        let shape = Shape::new([tokens, layers, adapter]);
        let empty = || {
            empty_device_contiguous_dtype(
                features.client.clone(),
                features.device.clone(),
                shape.clone(),
                dtype,
            )
        };
        let (activations, grad_pre) = (empty(), empty());
        let units = shape.num_elements();
        let cube_dim = CubeDim::new(&features.client, units);
        let cube_count = calculate_cube_count_elemwise(&features.client, units, cube_dim);
        adapter_head_recompute_kernel::launch::<R>(
            &features.client,
            cube_count,
            cube_dim,
            features.clone().into_tensor_arg(),
            adapter_weight.into_tensor_arg(),
            adapter_bias.into_tensor_arg(),
            head_weight.into_tensor_arg(),
            grad_out.into_tensor_arg(),
            activations.clone().into_tensor_arg(),
            grad_pre.clone().into_tensor_arg(),
            dtype.into(),
        );
        (activations, grad_pre)
    }
}

mod fusion {
    use super::*;
    use burn_fusion::stream::{Operation, OperationStreams};
    use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
    use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

    type Handles<B> =
        HandleContainer<<<B as FusionBackend>::FusionRuntime as FusionRuntime>::FusionHandle>;

    /// The two ops as recorded in the fusion stream; run by the inner backend when it executes.
    #[derive(Clone, Copy, Debug)]
    enum Kind {
        /// Inputs: features, adapter weight, adapter bias, head weight. Output: the per-token product.
        Forward,
        /// Inputs: the same and the output gradient. Outputs: activations, GELU-input gradient.
        Recompute,
    }

    #[derive(Clone, Debug)]
    struct HeadOp<B> {
        desc: CustomOpIr,
        kind: Kind,
        _backend: core::marker::PhantomData<B>,
    }

    impl<B: FusionBackend + AdapterHeadOps> Operation<B::FusionRuntime> for HeadOp<B> {
        fn execute(&self, handles: &mut Handles<B>) {
            let inputs: Vec<_> = self
                .desc
                .inputs
                .iter()
                .map(|t| handles.get_float_tensor::<B>(t))
                .collect();
            let outputs = match (self.kind, <[_; 5]>::try_from(inputs)) {
                (Kind::Recompute, Ok([f, w, b, h, g])) => {
                    let (activations, grad_pre) = B::adapter_head_recompute(f, w, b, h, g);
                    vec![activations, grad_pre]
                }
                (Kind::Forward, Err(inputs)) => {
                    let [f, w, b, h] = <[_; 4]>::try_from(inputs).expect("four inputs");
                    vec![B::adapter_head(f, w, b, h)]
                }
                _ => unreachable!("inputs recorded by this module"),
            };
            for (ir, tensor) in self.desc.outputs.iter().zip(outputs) {
                handles.register_float_tensor::<B>(&ir.id, tensor);
            }
        }
    }

    impl<B: FusionBackend + AdapterHeadOps> AdapterHeadOps for Fusion<B> {
        const KERNEL: bool = B::KERNEL;

        fn adapter_head(
            features: FloatTensor<Self>,
            adapter_weight: FloatTensor<Self>,
            adapter_bias: FloatTensor<Self>,
            head_weight: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            let client = features.client.clone();
            let streams = OperationStreams::with_inputs([
                &features,
                &adapter_weight,
                &adapter_bias,
                &head_weight,
            ]);
            let out = TensorIr::uninit(
                client.create_empty_handle(),
                Shape::new([features.shape[0], head_weight.shape[2]]),
                features.dtype,
            );
            let desc = CustomOpIr::new(
                "bertvision_adapter_head_forward",
                &[
                    features.into_ir(),
                    adapter_weight.into_ir(),
                    adapter_bias.into_ir(),
                    head_weight.into_ir(),
                ],
                &[out],
            );
            client
                .register(
                    streams,
                    OperationIr::Custom(desc.clone()),
                    HeadOp::<B> {
                        desc,
                        kind: Kind::Forward,
                        _backend: core::marker::PhantomData,
                    },
                )
                .output()
        }

        fn adapter_head_recompute(
            features: FloatTensor<Self>,
            adapter_weight: FloatTensor<Self>,
            adapter_bias: FloatTensor<Self>,
            head_weight: FloatTensor<Self>,
            grad_out: FloatTensor<Self>,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let client = features.client.clone();
            let streams = OperationStreams::with_inputs([
                &features,
                &adapter_weight,
                &adapter_bias,
                &head_weight,
                &grad_out,
            ]);
            let shape = Shape::new([
                features.shape[0],
                features.shape[1],
                adapter_weight.shape[2],
            ]);
            let dtype = features.dtype;
            let activations = TensorIr::uninit(client.create_empty_handle(), shape.clone(), dtype);
            let grad_pre = TensorIr::uninit(client.create_empty_handle(), shape, dtype);
            let desc = CustomOpIr::new(
                "bertvision_adapter_head_recompute",
                &[
                    features.into_ir(),
                    adapter_weight.into_ir(),
                    adapter_bias.into_ir(),
                    head_weight.into_ir(),
                    grad_out.into_ir(),
                ],
                &[activations, grad_pre],
            );
            let [activations, grad_pre] = client
                .register(
                    streams,
                    OperationIr::Custom(desc.clone()),
                    HeadOp::<B> {
                        desc,
                        kind: Kind::Recompute,
                        _backend: core::marker::PhantomData,
                    },
                )
                .try_into()
                .expect("two outputs");
            (activations, grad_pre)
        }
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> AttentionOps
    for CubeBackend<R, F, I, BT>
{
    const MASK_LAYOUT: MaskLayout = MaskLayout::PerHead;
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> LinearOps
    for CubeBackend<R, F, I, BT>
{
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> GeluOps
    for CubeBackend<R, F, I, BT>
{
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> DropoutOps
    for CubeBackend<R, F, I, BT>
{
}

mod fusion_encoder {
    use super::*;
    use burn_fusion::{Fusion, FusionBackend};

    impl<B: FusionBackend + AttentionOps> AttentionOps for Fusion<B> {
        const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
    }

    impl<B: FusionBackend> LinearOps for Fusion<B> {}

    impl<B: FusionBackend> GeluOps for Fusion<B> {}

    impl<B: FusionBackend> DropoutOps for Fusion<B> {}
}
