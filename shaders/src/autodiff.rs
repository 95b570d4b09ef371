//! The fused head under autodiff: forward through the inner backend's (fused) op, backward from
//! the kept inputs — the recompute op gives activations and GELU-input gradients, tuned matmuls
//! give the weight gradients.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::Tensor;
use burn::tensor::ops::FloatTensor;

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
