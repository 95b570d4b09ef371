//! `Autodiff<B>`'s own ops for this crate's kernels.
//!
//! - The fused head: forward through the inner backend's (fused) op, backward from the kept
//!   inputs — the recompute op gives activations and GELU-input gradients, tuned matmuls give the
//!   weight gradients.
//! - The encoder's self-attention with dropout, linear layers and GELU, where the inner backend
//!   has CPU kernels (Flex): forward and backward through the kernels (`cpu.rs`,
//!   `cpu/training.rs`), so that fine-tuning gets them too; dropout masks from the inner
//!   backend's mask kernel, as constants. Elsewhere Burn's own autodiff ops, as before (core's
//!   encoder calls the attention node only where `HAS_TRAINING_ATTENTION`).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Bool, Tensor};

use crate::attention::{AttentionResiduals, EncoderBackend, MaskLayout};
use crate::{AdapterHeadBackend, float, reference};

/// The four inputs, kept as they came (the features are the frozen encoder's output, alive for
/// the step anyway; the weights are small).
type Inputs<B> = [FloatTensor<B>; 4];

#[derive(Debug)]
struct AdapterHeadBackward;

impl<B: AdapterHeadBackend> Backward<B, 4> for AdapterHeadBackward {
    type State = Inputs<B>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let [features, adapter_weight, adapter_bias, head_weight] = ops.state;
        let positions = float::<B, 3>(head_weight.clone()).dims()[0];
        let (activations, grad_pre) = B::adapter_head_recompute(
            features.clone(),
            adapter_weight.clone(),
            adapter_bias,
            head_weight,
            grad_out.clone(),
        );
        let grad_pre = float::<B, 3>(grad_pre);
        let [node_features, node_adapter, node_bias, node_head] = ops.parents;
        let grads_of = reference::gradients(
            float(features),
            float(adapter_weight),
            float(activations),
            grad_pre,
            float(grad_out),
            positions,
            // The features come from a frozen encoder in BERTVision: no gradient unless asked.
            node_features.is_some(),
        );
        // Only the parents that require a gradient get one.
        let primitive = |t: Tensor<B, 3>| t.into_primitive().tensor();
        for (node, grad) in [
            (node_features, grads_of.features.map(primitive)),
            (node_adapter, Some(primitive(grads_of.adapter_weight))),
            (
                node_bias,
                Some(grads_of.adapter_bias.into_primitive().tensor()),
            ),
            (node_head, Some(primitive(grads_of.head_weight))),
        ] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: AdapterHeadBackend, C: CheckpointStrategy> AdapterHeadBackend for Autodiff<B, C> {
    const HAS_KERNEL: bool = B::HAS_KERNEL;

    fn adapter_head_forward(
        features: FloatTensor<Self>,
        adapter_weight: FloatTensor<Self>,
        adapter_bias: FloatTensor<Self>,
        head_weight: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [
            features.node.clone(),
            adapter_weight.node.clone(),
            adapter_bias.node.clone(),
            head_weight.node.clone(),
        ];
        let inputs = [
            features.primitive,
            adapter_weight.primitive,
            adapter_bias.primitive,
            head_weight.primitive,
        ];
        let out = |[f, w, b, h]: Inputs<B>| B::adapter_head_forward(f, w, b, h);
        match AdapterHeadBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(inputs.clone(), out(inputs)),
            OpsKind::UnTracked(prep) => prep.finish(out(inputs)),
        }
    }
}

impl<B: EncoderBackend, C: CheckpointStrategy> EncoderBackend for Autodiff<B, C> {
    const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
    const HAS_TRAINING_ATTENTION: bool = B::HAS_CPU_KERNELS;

    fn training_self_attention(
        query: Tensor<Self, 3>,
        key: Tensor<Self, 3>,
        value: Tensor<Self, 3>,
        padding: Tensor<Self, 4, Bool>,
        heads: usize,
        keep: f64,
    ) -> Tensor<Self, 3> {
        let [query, key, value] = [query, key, value].map(|t| t.into_primitive().tensor());
        let nodes = [query.node.clone(), key.node.clone(), value.node.clone()];
        // The mask carries no gradient: Autodiff's bool tensors are the inner backend's.
        let padding = Tensor::<B, 4, Bool>::from_primitive(padding.into_primitive());
        let inputs = [query, key, value].map(|t| t.primitive);
        let [q, k, v] = inputs.clone().map(float::<B, 3>);
        let (out, residuals) = B::attention_train_forward(q, k, v, padding, heads, keep);
        let out = out.into_primitive().tensor();
        let prepared = AttentionBackward { heads }
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let out = match prepared {
            OpsKind::Tracked(prep) => prep.finish((inputs, residuals), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        float(out)
    }

    fn encoder_linear(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 3> {
        match bias {
            Some(bias) if B::HAS_CPU_KERNELS => tracked_linear::<B, C>(x, weight, bias),
            bias => burn::tensor::module::linear(x, weight, bias),
        }
    }

    fn encoder_dropout_mask(len: usize, keep: f64, device: &Self::Device) -> Tensor<Self, 1> {
        // A constant: no gradient flows into the mask.
        Tensor::from_inner(B::encoder_dropout_mask(len, keep, device))
    }

    fn encoder_gelu(x: Tensor<Self, 3>) -> Tensor<Self, 3> {
        if B::HAS_CPU_KERNELS {
            tracked_gelu::<B, C>(x)
        } else {
            burn::tensor::activation::gelu(x)
        }
    }
}

/// The linear layer's input and weight, kept for the backward pass (as Burn's own linear keeps
/// them).
type LinearState<B> = (FloatTensor<B>, FloatTensor<B>);

#[derive(Debug)]
struct LinearBackward;

impl<B: EncoderBackend> Backward<B, 3> for LinearBackward {
    type State = LinearState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let [node_x, node_weight, node_bias] = ops.parents;
        let grads_of =
            B::encoder_linear_backward(float(x), float(weight), float(grad), node_x.is_some());
        if let (Some(node), Some(grad)) = (node_x, grads_of.input) {
            grads.register::<B>(node.id, grad.into_primitive().tensor());
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, grads_of.weight.into_primitive().tensor());
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, grads_of.bias.into_primitive().tensor());
        }
    }
}

fn tracked_linear<B: EncoderBackend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 3>,
    weight: Tensor<Autodiff<B, C>, 2>,
    bias: Tensor<Autodiff<B, C>, 1>,
) -> Tensor<Autodiff<B, C>, 3> {
    let x = x.into_primitive().tensor();
    let weight = weight.into_primitive().tensor();
    let bias = bias.into_primitive().tensor();
    let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
    let out = B::encoder_linear(
        float(x.primitive.clone()),
        float(weight.primitive.clone()),
        Some(float(bias.primitive)),
    )
    .into_primitive()
    .tensor();
    let out = match LinearBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, weight.primitive), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    float(out)
}

#[derive(Debug)]
struct GeluBackward;

impl<B: EncoderBackend> Backward<B, 1> for GeluBackward {
    /// GELU's input.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [node] = ops.parents;
        if let Some(node) = node {
            let grad = B::encoder_gelu_backward(float(ops.state), float(grad));
            grads.register::<B>(node.id, grad.into_primitive().tensor());
        }
    }
}

fn tracked_gelu<B: EncoderBackend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 3>,
) -> Tensor<Autodiff<B, C>, 3> {
    let x = x.into_primitive().tensor();
    let out = B::encoder_gelu(float(x.primitive.clone()))
        .into_primitive()
        .tensor();
    let out = match GeluBackward
        .prepare::<C>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(x.primitive, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    float(out)
}

#[derive(Debug)]
struct AttentionBackward {
    heads: usize,
}

impl<B: EncoderBackend> Backward<B, 3> for AttentionBackward {
    /// The query, key and value, and the forward's residuals (probabilities, padding, dropout).
    type State = ([FloatTensor<B>; 3], AttentionResiduals<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([query, key, value], residuals) = ops.state;
        let grads_of = B::attention_train_backward(
            float(query),
            float(key),
            float(value),
            residuals,
            float(grad),
            self.heads,
        );
        for (node, grad) in ops.parents.into_iter().zip(grads_of) {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad.into_primitive().tensor());
            }
        }
    }
}
