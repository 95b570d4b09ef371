//! `Autodiff<B>`'s own ops for this crate's kernels.
//!
//! - The fused head: forward through the inner backend's (fused) op, backward from the kept
//!   inputs — the recompute op gives activations and GELU-input gradients, tuned matmuls give the
//!   weight gradients.
//! - The encoder's self-attention with dropout, linear layers and GELU, where the inner backend
//!   has a kernel for the op (its trait's `KERNEL`: Flex): one node whose forward and backward
//!   are the inner backend's methods (the CPU kernels), so that fine-tuning gets them too;
//!   dropout masks from the inner backend's mask op, as constants. Elsewhere the op's reference
//!   under Burn's own autodiff.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, Int, Tensor};

use crate::ops::adamw::AdamWOps;
use crate::ops::adapter_head::{AdapterHeadOps, reference};
use crate::ops::attention::{
    self, AttentionInput, AttentionMask, AttentionOps, AttentionResiduals, MaskLayout,
};
use crate::ops::dropout::DropoutOps;
use crate::ops::gelu::GeluOps;
use crate::ops::linear::{self, LinearOps};
use crate::ops::tensor::{float, primitive};

/// The four inputs, kept as they came (the features are the frozen encoder's output, alive for
/// the step anyway; the weights are small).
type Inputs<B> = [FloatTensor<B>; 4];

#[derive(Debug)]
struct AdapterHeadBackward;

impl<B: AdapterHeadOps> Backward<B, 4> for AdapterHeadBackward {
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
        for (node, grad) in [
            (node_features, grads_of.features.map(primitive)),
            (node_adapter, Some(primitive(grads_of.adapter_weight))),
            (node_bias, Some(primitive(grads_of.adapter_bias))),
            (node_head, Some(primitive(grads_of.head_weight))),
        ] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: AdapterHeadOps, C: CheckpointStrategy> AdapterHeadOps for Autodiff<B, C> {
    const KERNEL: bool = <B as AdapterHeadOps>::KERNEL;

    fn adapter_head(
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
        let out = |[f, w, b, h]: Inputs<B>| B::adapter_head(f, w, b, h);
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

impl<B: LinearOps, C: CheckpointStrategy> LinearOps for Autodiff<B, C> {
    fn encoder_linear(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 3> {
        // One node with the backend's backward (2-D matmuls over every token where the
        // backend has no kernel), not Burn's per-sequence weight gradient summed over the batch.
        match bias {
            Some(bias) => tracked_linear::<B, C>(x, weight, bias),
            None => linear::reference::linear(x, weight, None),
        }
    }
}

/// GELU is always one node with the backend's `encoder_gelu_backward`: the exact derivative
/// everywhere (Burn's own node would use the tanh approximation's on CubeCL and ndarray).
impl<B: GeluOps, C: CheckpointStrategy> GeluOps for Autodiff<B, C> {
    fn encoder_gelu(x: Tensor<Self, 3>) -> Tensor<Self, 3> {
        tracked_gelu::<B, C>(x)
    }
}

/// The optimizer updates the inner backend's tensors; this impl (the reference on tracked
/// tensors) only completes `KernelBackend`.
impl<B: AdamWOps, C: CheckpointStrategy> AdamWOps for Autodiff<B, C> {}

impl<B: DropoutOps, C: CheckpointStrategy> DropoutOps for Autodiff<B, C> {
    fn encoder_dropout_mask(
        rows: usize,
        row_len: usize,
        keep: f64,
        device: &Self::Device,
    ) -> Tensor<Self, 1> {
        // A constant: no gradient flows into the mask.
        Tensor::from_inner(B::encoder_dropout_mask(rows, row_len, keep, device))
    }
}

impl<B: AttentionOps, C: CheckpointStrategy> AttentionOps for Autodiff<B, C> {
    const MASK_LAYOUT: MaskLayout = B::MASK_LAYOUT;
    const FROZEN_KEY_BIAS: bool = B::FROZEN_KEY_BIAS;

    /// `B`'s mask where `B`'s kernel will read it (masks carry no gradient: Autodiff's bool
    /// tensors are the inner backend's, and a bias is a constant).
    fn encoder_attention_mask(
        attention_mask: Tensor<Self, 2, Int>,
        heads: usize,
        dtype: FloatDType,
        training: bool,
    ) -> AttentionMask<Self> {
        let inner = attention_mask.inner();
        match B::encoder_attention_mask(inner, heads, dtype, training) {
            AttentionMask::Bias(bias) => AttentionMask::Bias(Tensor::from_inner(bias)),
            AttentionMask::Padding(padding) => {
                AttentionMask::Padding(Tensor::from_primitive(padding.into_primitive()))
            }
        }
    }

    fn encoder_attention_train(input: AttentionInput<Self>, keep: f64) -> Tensor<Self, 3> {
        if !<B as AttentionOps>::KERNEL {
            return attention::reference::attention_train_forward(input, keep).0;
        }
        let AttentionInput {
            query,
            key,
            value,
            mask,
            heads,
        } = input;
        let [query, key, value] = [query, key, value].map(primitive);
        let nodes = [query.node.clone(), key.node.clone(), value.node.clone()];
        let inputs = [query, key, value].map(|t| t.primitive);
        let [q, k, v] = inputs.clone().map(float::<B, 3>);
        let mask = inner_mask(mask);
        let inner_input = AttentionInput {
            query: q,
            key: k,
            value: v,
            mask,
            heads,
        };
        let (out, residuals) = B::encoder_attention_train_forward(inner_input, keep);
        let prepared = AttentionBackward { heads }
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let out = match prepared {
            OpsKind::Tracked(prep) => prep.finish((inputs, residuals), primitive(out)),
            OpsKind::UnTracked(prep) => prep.finish(primitive(out)),
        };
        float(out)
    }
}

/// An autodiff mask as the inner backend's (it carries no gradient).
fn inner_mask<B: Backend, C: CheckpointStrategy>(
    mask: AttentionMask<Autodiff<B, C>>,
) -> AttentionMask<B> {
    match mask {
        AttentionMask::Bias(bias) => AttentionMask::Bias(bias.inner()),
        AttentionMask::Padding(padding) => {
            AttentionMask::Padding(Tensor::from_primitive(padding.into_primitive()))
        }
    }
}

/// The linear layer's input and weight, kept for the backward pass (as Burn's own linear keeps
/// them).
type LinearState<B> = (FloatTensor<B>, FloatTensor<B>);

#[derive(Debug)]
struct LinearBackward;

impl<B: LinearOps> Backward<B, 3> for LinearBackward {
    type State = LinearState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let [node_x, node_weight, node_bias] = ops.parents;
        let grads_of =
            B::encoder_linear_backward(float(x), float(weight), float(grad), node_x.is_some());
        if let (Some(node), Some(grad)) = (node_x, grads_of.input) {
            grads.register::<B>(node.id, primitive(grad));
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, primitive(grads_of.weight));
        }
        if let Some(node) = node_bias {
            grads.register::<B>(node.id, primitive(grads_of.bias));
        }
    }
}

fn tracked_linear<B: LinearOps, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 3>,
    weight: Tensor<Autodiff<B, C>, 2>,
    bias: Tensor<Autodiff<B, C>, 1>,
) -> Tensor<Autodiff<B, C>, 3> {
    let x = primitive(x);
    let weight = primitive(weight);
    let bias = primitive(bias);
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

impl<B: GeluOps> Backward<B, 1> for GeluBackward {
    /// GELU's input.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [node] = ops.parents;
        if let Some(node) = node {
            let grad = B::encoder_gelu_backward(float(ops.state), float(grad));
            grads.register::<B>(node.id, primitive(grad));
        }
    }
}

fn tracked_gelu<B: GeluOps, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 3>,
) -> Tensor<Autodiff<B, C>, 3> {
    let x = primitive(x);
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

impl<B: AttentionOps> Backward<B, 3> for AttentionBackward {
    /// The query, key and value, and the forward's residuals (probabilities, mask, dropout).
    type State = ([FloatTensor<B>; 3], AttentionResiduals<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ([query, key, value], residuals) = ops.state;
        let input = AttentionInput {
            query: float(query),
            key: float(key),
            value: float(value),
            mask: residuals.mask.clone(),
            heads: self.heads,
        };
        let grads_of = B::encoder_attention_train_backward(input, residuals, float(grad));
        for (node, grad) in ops.parents.into_iter().zip(grads_of) {
            if let Some(node) = node {
                grads.register::<B>(node.id, primitive(grad));
            }
        }
    }
}
