//! Burn's CubeCL backends (CUDA, wgpu): the fused AdapterPooler head and AdamW's update through
//! the kernels of `cube/` — `CubeBackend` launches them; `Fusion<B>` records them as custom
//! operations in its stream (so the tensors around them still fuse) and runs the inner
//! backend's version when the stream executes. The frozen encoder's attention is
//! `cube/attention.rs` on the key bias (Burn's `module::attention` needs a dense per-head mask:
//! CubeCL's flash kernels misread a broadcast one, `ops/attention.rs`); every other op is the
//! reference.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::InputScalar;
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::cube::adamw::{AdamWArgsLaunch, adamw_kernel};
use crate::cube::adapter_head::{adapter_head_forward_kernel, adapter_head_recompute_kernel};
use crate::cube::attention::attention_forward_kernel;
use crate::ops::adamw::{AdamWInputs, AdamWOps, AdamWScalars, Moments};
use crate::ops::adapter_head::AdapterHeadOps;
use crate::ops::attention::{self, AttentionInput, AttentionMask, AttentionOps, MaskLayout};
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

    impl<B: FusionBackend + AdamWOps> AdamWOps for Fusion<B> {
        const KERNEL: bool = B::KERNEL;

        /// Recorded as one custom operation: the inner backend's update when the stream runs.
        fn adamw_update(
            update: AdamWInputs<Self>,
            scalars: AdamWScalars,
        ) -> (Tensor<Self, 1>, Moments<Self>) {
            let (first_step, has_factor) = (update.moments.is_none(), update.grad_factor.is_some());
            let mut inputs = vec![update.param, update.grad];
            inputs.extend(update.moments.into_iter().flat_map(|m| [m.first, m.second]));
            inputs.extend(update.grad_factor);
            let inputs: Vec<_> = inputs
                .into_iter()
                .map(|t| t.into_primitive().tensor())
                .collect();
            let client = inputs[0].client.clone();
            let streams = OperationStreams::with_inputs(&inputs);
            let (shape, dtype) = (inputs[0].shape.clone(), inputs[0].dtype);
            let out = || TensorIr::uninit(client.create_empty_handle(), shape.clone(), dtype);
            let outputs = [out(), out(), out()];
            let inputs: Vec<_> = inputs.into_iter().map(|t| t.into_ir()).collect();
            let desc = CustomOpIr::new("bertvision_adamw", &inputs, &outputs);
            let op = AdamWOp::<B> {
                desc: desc.clone(),
                first_step,
                has_factor,
                scalars,
                _backend: core::marker::PhantomData,
            };
            let [param, first, second] = client
                .register(streams, OperationIr::Custom(desc), op)
                .try_into()
                .expect("three outputs");
            let tensor = |t| Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(t));
            let moments = Moments {
                first: tensor(first),
                second: tensor(second),
            };
            (tensor(param), moments)
        }
    }

    #[derive(Clone, Debug)]
    struct AdamWOp<B> {
        desc: CustomOpIr,
        first_step: bool,
        has_factor: bool,
        scalars: AdamWScalars,
        _backend: core::marker::PhantomData<B>,
    }

    impl<B: FusionBackend + AdamWOps> Operation<B::FusionRuntime> for AdamWOp<B> {
        fn execute(&self, handles: &mut Handles<B>) {
            let mut inputs = self.desc.inputs.iter().map(|t| {
                Tensor::<B, 1>::from_primitive(burn::tensor::TensorPrimitive::Float(
                    handles.get_float_tensor::<B>(t),
                ))
            });
            let (param, grad) = (inputs.next().expect("param"), inputs.next().expect("grad"));
            let moments = (!self.first_step).then(|| Moments {
                first: inputs.next().expect("first moment"),
                second: inputs.next().expect("second moment"),
            });
            let grad_factor = if self.has_factor { inputs.next() } else { None };
            let update = AdamWInputs {
                param,
                grad,
                moments,
                grad_factor,
            };
            let (param, moments) = B::adamw_update(update, self.scalars);
            let outputs = [param, moments.first, moments.second];
            for (ir, tensor) in self.desc.outputs.iter().zip(outputs) {
                handles.register_float_tensor::<B>(&ir.id, tensor.into_primitive().tensor());
            }
        }
    }

    impl<B: FusionBackend + AttentionOps> AttentionOps for Fusion<B> {
        const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
        const FROZEN_KEY_BIAS: bool = B::FROZEN_KEY_BIAS;

        /// Recorded as one custom operation: the inner backend's kernel when the stream runs.
        fn encoder_attention(input: AttentionInput<Self>) -> Tensor<Self, 3> {
            let ([query, key, value], bias, heads) = match attention_kernel_input(input) {
                Ok(taken) => taken,
                Err(input) => return attention::reference::explicit_attention(input),
            };
            let prim = |t: Tensor<Self, 3>| t.into_primitive().tensor();
            let inputs = [
                prim(query),
                prim(key),
                prim(value),
                bias.into_primitive().tensor(),
            ];
            let client = inputs[0].client.clone();
            let streams = OperationStreams::with_inputs(&inputs);
            let out = TensorIr::uninit(
                client.create_empty_handle(),
                inputs[0].shape.clone(),
                inputs[0].dtype,
            );
            let inputs: Vec<_> = inputs.into_iter().map(|t| t.into_ir()).collect();
            let desc = CustomOpIr::new("bertvision_attention", &inputs, &[out]);
            let op = AttentionOp::<B> {
                desc: desc.clone(),
                heads,
                _backend: core::marker::PhantomData,
            };
            let out = client
                .register(streams, OperationIr::Custom(desc), op)
                .output();
            Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(out))
        }
    }

    #[derive(Clone, Debug)]
    struct AttentionOp<B> {
        desc: CustomOpIr,
        heads: usize,
        _backend: core::marker::PhantomData<B>,
    }

    impl<B: FusionBackend + AttentionOps> Operation<B::FusionRuntime> for AttentionOp<B> {
        fn execute(&self, handles: &mut Handles<B>) {
            let [query, key, value, bias]: [_; 4] = self
                .desc
                .inputs
                .iter()
                .map(|t| handles.get_float_tensor::<B>(t))
                .collect::<Vec<_>>()
                .try_into()
                .expect("four inputs");
            let tensor3 =
                |t| Tensor::<B, 3>::from_primitive(burn::tensor::TensorPrimitive::Float(t));
            let input = AttentionInput {
                query: tensor3(query),
                key: tensor3(key),
                value: tensor3(value),
                mask: AttentionMask::Bias(Tensor::from_primitive(
                    burn::tensor::TensorPrimitive::Float(bias),
                )),
                heads: self.heads,
            };
            let out = B::encoder_attention(input).into_primitive().tensor();
            handles.register_float_tensor::<B>(&self.desc.outputs[0].id, out);
        }
    }
}

/// The frozen encoder's attention: `cube::attention`'s kernel on the key bias (no per-head
/// mask); Burn's `module::attention` on the dense per-head mask stays for Burn's own op (tests).
impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> AttentionOps
    for CubeBackend<R, F, I, BT>
{
    const MASK_LAYOUT: MaskLayout = MaskLayout::PerHead;
    const FROZEN_KEY_BIAS: bool = true;

    fn encoder_attention(input: AttentionInput<Self>) -> Tensor<Self, 3> {
        let ([query, key, value], bias, heads) = match attention_kernel_input(input) {
            Ok(taken) => taken,
            Err(input) => return attention::reference::explicit_attention(input),
        };
        let prim = |t: Tensor<Self, 3>| into_contiguous(t.into_primitive().tensor());
        let bias = into_contiguous(bias.into_primitive().tensor());
        let out = launch_attention(prim(query), prim(key), prim(value), bias, heads);
        Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(out))
    }
}

/// Query rows per cube of the attention kernel.
const ATTENTION_ROWS: usize = 64;
/// Shared memory for a tile of keys and values (WebGPU guarantees 16 KiB per workgroup).
const ATTENTION_TILE_BYTES: usize = 12 * 1024;
/// Head sizes whose query and output rows the kernel keeps in registers (BERT's: 32 to 128).
const ATTENTION_MAX_HEAD_DIM: usize = 128;

/// What `cube::attention` reads: the query, key and value projections, the key bias, the heads.
type KernelAttentionInput<B> = ([Tensor<B, 3>; 3], Tensor<B, 4>, usize);

/// The kernel's inputs when `cube::attention` takes these (the key bias `[batch, 1, 1, seq]`,
/// one float type, a head size it keeps in registers); else the inputs back, for the explicit
/// ops.
fn attention_kernel_input<B: burn::tensor::backend::Backend>(
    input: AttentionInput<B>,
) -> Result<KernelAttentionInput<B>, AttentionInput<B>> {
    let AttentionInput {
        query,
        key,
        value,
        mask,
        heads,
    } = input;
    let [batch, seq, hidden] = query.dims();
    let dtype = query.dtype();
    let fits = |bias: &Tensor<B, 4>| {
        heads > 0
            && hidden % heads == 0
            && hidden / heads <= ATTENTION_MAX_HEAD_DIM
            && bias.dims() == [batch, 1, 1, seq]
            && bias.dtype() == dtype
            && [&key, &value]
                .iter()
                .all(|t| t.dims() == [batch, seq, hidden] && t.dtype() == dtype)
    };
    match mask {
        AttentionMask::Bias(bias) if fits(&bias) => Ok(([query, key, value], bias, heads)),
        mask => Err(AttentionInput {
            query,
            key,
            value,
            mask,
            heads,
        }),
    }
}

/// One launch of `cube::attention` on contiguous `[batch, seq, hidden]` projections and the
/// `[batch, 1, 1, seq]` key bias: the context `[batch, seq, hidden]`.
fn launch_attention<R: CubeRuntime>(
    query: CubeTensor<R>,
    key: CubeTensor<R>,
    value: CubeTensor<R>,
    bias: CubeTensor<R>,
    heads: usize,
) -> CubeTensor<R> {
    let [batch, seq, hidden] = query.meta.shape().dims();
    let head_dim = hidden / heads;
    let tile = (ATTENTION_TILE_BYTES / (8 * head_dim)).clamp(1, ATTENTION_ROWS);
    let dtype = query.dtype;
    let output = empty_device_contiguous_dtype(
        query.client.clone(),
        query.device.clone(),
        Shape::new([batch, seq, hidden]),
        dtype,
    );
    attention_forward_kernel::launch::<R>(
        &query.client,
        CubeCount::Static(
            seq.div_ceil(ATTENTION_ROWS) as u32,
            heads as u32,
            batch as u32,
        ),
        CubeDim {
            x: ATTENTION_ROWS as u32,
            y: 1,
            z: 1,
        },
        query.clone().into_tensor_arg(),
        key.into_tensor_arg(),
        value.into_tensor_arg(),
        bias.into_tensor_arg(),
        output.clone().into_tensor_arg(),
        heads,
        head_dim,
        ATTENTION_ROWS,
        tile,
        dtype.into(),
    );
    output
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

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> AdamWOps
    for CubeBackend<R, F, I, BT>
{
    const KERNEL: bool = true;

    fn adamw_update(
        inputs: AdamWInputs<Self>,
        scalars: AdamWScalars,
    ) -> (Tensor<Self, 1>, Moments<Self>) {
        let dtype = inputs.param.dtype();
        let others = [Some(&inputs.grad), inputs.grad_factor.as_ref()];
        let moments = inputs
            .moments
            .iter()
            .flat_map(|m| [Some(&m.first), Some(&m.second)]);
        let same_type = others
            .into_iter()
            .chain(moments)
            .flatten()
            .all(|t| t.dtype() == dtype);
        if !same_type {
            return crate::ops::adamw::reference::update(inputs, scalars);
        }
        let prim = |t: Tensor<Self, 1>| into_contiguous(t.into_primitive().tensor());
        let moments = inputs.moments.map(|m| (prim(m.first), prim(m.second)));
        let [param, first, second] = launch_adamw(
            prim(inputs.param),
            prim(inputs.grad),
            moments,
            inputs.grad_factor.map(prim),
            scalars,
        );
        let tensor = |t| Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(t));
        let moments = Moments {
            first: tensor(first),
            second: tensor(second),
        };
        (tensor(param), moments)
    }
}

/// One launch of `cube::adamw`: the new parameter and moments, in new buffers.
fn launch_adamw<R: CubeRuntime>(
    param: CubeTensor<R>,
    grad: CubeTensor<R>,
    moments: Option<(CubeTensor<R>, CubeTensor<R>)>,
    factor: Option<CubeTensor<R>>,
    s: AdamWScalars,
) -> [CubeTensor<R>; 3] {
    let dtype = param.dtype;
    let n = param.meta.num_elements();
    let out = || {
        empty_device_contiguous_dtype(
            param.client.clone(),
            param.device.clone(),
            Shape::new([n]),
            dtype,
        )
    };
    let (param_out, first_out, second_out) = (out(), out(), out());
    // What is absent is never read (comptime flags): the gradient stands in for it.
    let (first_step, has_factor) = (moments.is_none(), factor.is_some());
    let (first, second) = moments.unwrap_or_else(|| (grad.clone(), grad.clone()));
    let factor = factor.unwrap_or_else(|| grad.clone());
    let scalar = |v: f32| InputScalar::new(v, dtype);
    let args = AdamWArgsLaunch::new(
        scalar(s.beta_1),
        scalar(s.beta_2),
        scalar(s.one_minus_beta_1),
        scalar(s.one_minus_beta_2),
        scalar(s.correction_1),
        scalar(s.correction_2),
        scalar(s.epsilon),
        scalar(s.decay.unwrap_or(1.0)),
        scalar(s.lr),
    );
    let cube_dim = CubeDim::new(&param.client, n);
    let cube_count = calculate_cube_count_elemwise(&param.client, n, cube_dim);
    adamw_kernel::launch::<R>(
        &param.client,
        cube_count,
        cube_dim,
        param.clone().into_tensor_arg(),
        grad.into_tensor_arg(),
        first.into_tensor_arg(),
        second.into_tensor_arg(),
        factor.into_tensor_arg(),
        param_out.clone().into_tensor_arg(),
        first_out.clone().into_tensor_arg(),
        second_out.clone().into_tensor_arg(),
        args,
        first_step,
        has_factor,
        s.decay.is_some(),
        dtype.into(),
    );
    [param_out, first_out, second_out]
}

mod fusion_encoder {
    use super::*;
    use burn_fusion::{Fusion, FusionBackend};

    impl<B: FusionBackend> LinearOps for Fusion<B> {}

    impl<B: FusionBackend> GeluOps for Fusion<B> {}

    impl<B: FusionBackend> DropoutOps for Fusion<B> {}
}
