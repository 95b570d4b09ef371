//! Flex (Burn's pure-Rust CPU backend): the encoder's ops through this crate's CPU kernels
//! (`cpu/`), in f32. Each override hands the kernel Flex's buffers where they lie (contiguous
//! copies only where a tensor is a strided view the kernel cannot read) and wraps its output in
//! a tensor; inputs of another float type take the op's reference ([`kernel_or_reference`], the
//! one guard every override goes through). The fused AdapterPooler head is composed of the
//! same kernels (one shared adapter; one adapter per layer takes the reference).

use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData, TensorPrimitive};
use burn_flex::{FlexDevice, FlexTensor};

use crate::cpu::{self, AttentionShape, DropoutStream, MatrixView};
use crate::ops::adamw::{AdamWInputs, AdamWOps, AdamWScalars, Moments};
use crate::ops::adapter_head::{self, AdapterHeadOps};
use crate::ops::attention::{
    self, AttentionDropout, AttentionInput, AttentionMask, AttentionOps, AttentionResiduals,
    MaskLayout,
};
use crate::ops::dropout::{DropoutOps, StepKey};
use crate::ops::gelu::{self, GeluOps};
use crate::ops::linear::{self, LinearGrads, LinearOps};

/// What an op's inputs must be for the CPU kernels to take them: f32 tensors (the kernels are
/// f32 only), and for attention the key-padding mask and seed-based dropout the kernels make.
trait KernelInputs {
    fn kernel_ready(&self) -> bool;
}

impl<const D: usize> KernelInputs for Tensor<Flex, D> {
    fn kernel_ready(&self) -> bool {
        self.dtype() == DType::F32
    }
}

impl<T: KernelInputs> KernelInputs for Option<T> {
    fn kernel_ready(&self) -> bool {
        self.as_ref().is_none_or(T::kernel_ready)
    }
}

impl<A: KernelInputs, B: KernelInputs> KernelInputs for (A, B) {
    fn kernel_ready(&self) -> bool {
        self.0.kernel_ready() && self.1.kernel_ready()
    }
}

impl<A: KernelInputs, B: KernelInputs, C: KernelInputs> KernelInputs for (A, B, C) {
    fn kernel_ready(&self) -> bool {
        self.0.kernel_ready() && self.1.kernel_ready() && self.2.kernel_ready()
    }
}

impl KernelInputs for AdamWInputs<Flex> {
    fn kernel_ready(&self) -> bool {
        let moments = self.moments.as_ref().map(|m| (&m.first, &m.second));
        (&self.param, &self.grad, &self.grad_factor).kernel_ready() && moments.kernel_ready()
    }
}

impl KernelInputs for AttentionInput<Flex> {
    fn kernel_ready(&self) -> bool {
        matches!(self.mask, AttentionMask::Padding(_))
            && (&self.query, &self.key, &self.value).kernel_ready()
    }
}

impl<T: KernelInputs> KernelInputs for &T {
    fn kernel_ready(&self) -> bool {
        T::kernel_ready(self)
    }
}

impl KernelInputs for AttentionResiduals<Flex> {
    fn kernel_ready(&self) -> bool {
        matches!(self.mask, AttentionMask::Padding(_))
            && !matches!(self.dropout, AttentionDropout::Mask(_))
            && self.probs.kernel_ready()
    }
}

/// The kernel when `inputs` are [`KernelInputs::kernel_ready`], the op's reference otherwise.
fn kernel_or_reference<I: KernelInputs, T>(
    inputs: I,
    kernel: impl FnOnce(I) -> T,
    reference: impl FnOnce(I) -> T,
) -> T {
    if inputs.kernel_ready() {
        kernel(inputs)
    } else {
        reference(inputs)
    }
}

impl LinearOps for Flex {
    const KERNEL: bool = true;

    fn encoder_linear(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        bias: Option<Tensor<Self, 1>>,
    ) -> Tensor<Self, 3> {
        kernel_or_reference(
            (x, weight, bias),
            |(x, weight, bias)| linear_kernel(x, weight, bias),
            |(x, weight, bias)| linear::reference::linear(x, weight, bias),
        )
    }

    fn encoder_linear_backward(
        x: Tensor<Self, 3>,
        weight: Tensor<Self, 2>,
        grad: Tensor<Self, 3>,
        input_grad: bool,
    ) -> LinearGrads<Self> {
        kernel_or_reference(
            (x, weight, grad),
            |(x, weight, grad)| linear_backward_kernel(x, weight, grad, input_grad),
            |(x, weight, grad)| linear::reference::linear_backward(x, weight, grad, input_grad),
        )
    }
}

impl GeluOps for Flex {
    const KERNEL: bool = true;

    fn encoder_gelu(x: Tensor<Self, 3>) -> Tensor<Self, 3> {
        kernel_or_reference(x, gelu_kernel, gelu::reference::gelu)
    }

    fn encoder_gelu_backward(x: Tensor<Self, 3>, grad: Tensor<Self, 3>) -> Tensor<Self, 3> {
        kernel_or_reference(
            (x, grad),
            |(x, grad)| gelu_backward_kernel(x, grad),
            |(x, grad)| gelu::reference::gelu_backward(x, grad),
        )
    }
}

impl DropoutOps for Flex {
    /// [`cpu::dropout_mask`] from the thread's step key, else seeded by two draws from Flex's
    /// own generator (so `Backend::seed` makes runs repeatable, as with Burn's `Dropout`).
    fn encoder_dropout_mask(
        rows: usize,
        row_len: usize,
        keep: f64,
        device: &FlexDevice,
    ) -> Tensor<Self, 1> {
        let (seed, first) = dropout_seed(device, row_len);
        let len = rows * row_len;
        tensor(cpu::dropout_mask(len, keep, seed, first), [len])
    }
}

impl AttentionOps for Flex {
    const KERNEL: bool = true;
    const MASK_LAYOUT: MaskLayout = MaskLayout::SharedAcrossHeads;

    /// The key-padding mask for both paths: the kernels read it (shared by the heads, a
    /// broadcast view: nothing is copied per head).
    fn encoder_attention_mask(
        attention_mask: Tensor<Self, 2, Int>,
        heads: usize,
        _dtype: FloatDType,
        _training: bool,
    ) -> AttentionMask<Self> {
        AttentionMask::Padding(attention::key_padding_mask(
            attention_mask,
            heads,
            Self::MASK_LAYOUT,
        ))
    }

    fn encoder_attention(input: AttentionInput<Self>) -> Tensor<Self, 3> {
        kernel_or_reference(input, attention_kernel, attention::reference::attention)
    }

    fn encoder_attention_train_forward(
        input: AttentionInput<Self>,
        keep: f64,
    ) -> (Tensor<Self, 3>, AttentionResiduals<Self>) {
        kernel_or_reference(
            input,
            |input| attention_train_kernel(input, keep),
            |input| attention::reference::attention_train_forward(input, keep),
        )
    }

    fn encoder_attention_train_backward(
        input: AttentionInput<Self>,
        residuals: AttentionResiduals<Self>,
        grad: Tensor<Self, 3>,
    ) -> [Tensor<Self, 3>; 3] {
        kernel_or_reference(
            (input, residuals, grad),
            |(input, residuals, grad)| attention_backward_kernel(input, residuals, grad),
            |(input, residuals, grad)| {
                attention::reference::attention_train_backward(input, residuals, grad)
            },
        )
    }
}

/// The fused head composed of the CPU kernels for one shared f32 adapter: the adapter as one
/// gemm over every (token, layer) row with its bias as the start, the GELU kernel, then the
/// head's small product; the recompute with the GELU-backward kernel. One adapter per layer
/// (batched over layers) and other float types take the reference. Burn's `gelu` and the
/// reference's derivative run scalar `erff`/`expf`: ~25% of a fused head step's samples
/// (`results/cpu-2026-12-08b/README.md`).
impl AdapterHeadOps for Flex {
    const KERNEL: bool = true;

    fn adapter_head(
        features: FloatTensor<Self>,
        adapter_weight: FloatTensor<Self>,
        adapter_bias: FloatTensor<Self>,
        head_weight: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let inputs = HeadInputs::new(features, adapter_weight, adapter_bias, head_weight);
        let out = kernel_or_reference(
            inputs,
            |i| {
                let [tokens, layers, _] = i.features.dims();
                let activations = gelu_kernel(head_pre_activation(&i));
                let width = layers * i.adapter_weight.dims()[2];
                adapter_head::reference::head_product(
                    activations.reshape([tokens, width]),
                    i.head_weight,
                )
            },
            |i| {
                adapter_head::reference::forward(
                    i.features,
                    i.adapter_weight,
                    i.adapter_bias,
                    i.head_weight,
                )
            },
        );
        out.into_primitive().tensor()
    }

    fn adapter_head_recompute(
        features: FloatTensor<Self>,
        adapter_weight: FloatTensor<Self>,
        adapter_bias: FloatTensor<Self>,
        head_weight: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let inputs = HeadInputs::new(features, adapter_weight, adapter_bias, head_weight);
        let grad_out = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(grad_out));
        let (activations, grad_pre) = kernel_or_reference(
            (inputs, grad_out),
            |(i, grad_out)| {
                let shape = [
                    i.features.dims()[0],
                    i.features.dims()[1],
                    i.adapter_weight.dims()[2],
                ];
                let pre = head_pre_activation(&i);
                let grad_activations =
                    adapter_head::reference::head_product(grad_out, i.head_weight.swap_dims(1, 2));
                // The derivative first: then `pre` holds its buffer alone and GELU runs in place.
                let grad_pre =
                    gelu_backward_kernel(pre.clone(), grad_activations.reshape(pre.dims()));
                (gelu_kernel(pre).reshape(shape), grad_pre.reshape(shape))
            },
            |(i, grad_out)| {
                adapter_head::reference::recompute(
                    i.features,
                    i.adapter_weight,
                    i.adapter_bias,
                    i.head_weight,
                    grad_out,
                )
            },
        );
        (
            activations.into_primitive().tensor(),
            grad_pre.into_primitive().tensor(),
        )
    }
}

/// The fused head's inputs; the kernels take one shared adapter in f32.
struct HeadInputs {
    features: Tensor<Flex, 3>,
    adapter_weight: Tensor<Flex, 3>,
    adapter_bias: Tensor<Flex, 2>,
    head_weight: Tensor<Flex, 3>,
}

impl HeadInputs {
    fn new(
        features: FloatTensor<Flex>,
        adapter_weight: FloatTensor<Flex>,
        adapter_bias: FloatTensor<Flex>,
        head_weight: FloatTensor<Flex>,
    ) -> Self {
        let wrap = |t| TensorPrimitive::Float(t);
        HeadInputs {
            features: Tensor::from_primitive(wrap(features)),
            adapter_weight: Tensor::from_primitive(wrap(adapter_weight)),
            adapter_bias: Tensor::from_primitive(wrap(adapter_bias)),
            head_weight: Tensor::from_primitive(wrap(head_weight)),
        }
    }
}

impl KernelInputs for HeadInputs {
    fn kernel_ready(&self) -> bool {
        self.adapter_weight.dims()[0] == 1
            && (&self.features, &self.adapter_weight, &self.adapter_bias).kernel_ready()
            && self.head_weight.kernel_ready()
    }
}

/// The GELU's input `[1, tokens·layers, A]` for one shared adapter: [`linear_kernel`] over
/// every (token, layer) row.
fn head_pre_activation(inputs: &HeadInputs) -> Tensor<Flex, 3> {
    let [tokens, layers, hidden] = inputs.features.dims();
    let adapter = inputs.adapter_weight.dims()[2];
    linear_kernel(
        inputs
            .features
            .clone()
            .reshape([1, tokens * layers, hidden]),
        inputs.adapter_weight.clone().reshape([hidden, adapter]),
        Some(inputs.adapter_bias.clone().reshape([adapter])),
    )
}

impl AdamWOps for Flex {
    const KERNEL: bool = true;

    fn adamw_update(
        inputs: AdamWInputs<Self>,
        scalars: AdamWScalars,
    ) -> (Tensor<Self, 1>, Moments<Self>) {
        kernel_or_reference(
            inputs,
            |inputs| adamw_kernel(inputs, scalars),
            |inputs| crate::ops::adamw::reference::update(inputs, scalars),
        )
    }
}

/// A contiguous, offset-0 tensor whose storage is exactly its elements.
fn contiguous<const D: usize>(t: Tensor<Flex, D>) -> FlexTensor {
    t.into_primitive().tensor().to_contiguous()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(FlexTensor::from_data(
        TensorData::new(values, shape),
    )))
}

/// `[batch·seq]`, true where the key is padding, from a mask as `key_padding_mask` builds it
/// (`[batch, 1 or heads, seq, seq]`, the same for every query), of which only query 0 of head 0
/// is read.
fn key_padding(mask: &AttentionMask<Flex>) -> Vec<bool> {
    let AttentionMask::Padding(padding) = mask else {
        unreachable!("kernel_ready admits key-padding masks only")
    };
    let [batch, _, _, seq] = padding.dims();
    let rows = padding
        .clone()
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

/// A dropout site's seed and its mask's first element for rows of `row_len` elements: from the
/// thread's `StepKey` (the same masks on any number of data-parallel peers), else a fresh seed
/// from Flex's generator and the start.
fn dropout_seed(device: &FlexDevice, row_len: usize) -> (u64, u64) {
    match StepKey::next_site() {
        Some((key, site)) => (
            cpu::site_seed(key.seed, site),
            key.first_row * row_len as u64,
        ),
        None => (draw_seed(device), 0),
    }
}

/// A 62-bit seed from two draws of Flex's own generator (so `Backend::seed` makes runs
/// repeatable, as with Burn's `Dropout`), read from the primitive: no synchronous tensor read
/// (the browser app builds this crate for wasm).
fn draw_seed(device: &FlexDevice) -> u64 {
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

fn dropout_stream(dropout: &AttentionDropout<Flex>) -> Option<DropoutStream> {
    match dropout {
        AttentionDropout::Seed { seed, keep, first } => {
            Some(DropoutStream::new(*seed, *keep).starting_at(*first))
        }
        AttentionDropout::None => None,
        AttentionDropout::Mask(_) => unreachable!("kernel_ready admits seeds, not masks"),
    }
}

/// [`cpu::self_attention`].
fn attention_kernel(input: AttentionInput<Flex>) -> Tensor<Flex, 3> {
    let dims = input.query.dims();
    let shape = attention_shape(&input.query, input.heads);
    let key_padding = key_padding(&input.mask);
    let [q, k, v] = [input.query, input.key, input.value].map(contiguous);
    let out = cpu::self_attention(q.storage(), k.storage(), v.storage(), &key_padding, shape);
    tensor(out, dims)
}

/// [`cpu::attention_forward`]; dropout with keep probability `keep` (none at 1), its seed drawn
/// from Flex's generator and kept in the residuals.
fn attention_train_kernel(
    input: AttentionInput<Flex>,
    keep: f64,
) -> (Tensor<Flex, 3>, AttentionResiduals<Flex>) {
    let AttentionInput {
        query,
        key,
        value,
        mask,
        heads,
    } = input;
    let shape = attention_shape(&query, heads);
    let [_, seq, _] = query.dims();
    let dropout = if keep < 1.0 {
        let (seed, first) = dropout_seed(&query.device(), heads * seq * seq);
        AttentionDropout::Seed { seed, keep, first }
    } else {
        AttentionDropout::None
    };
    let key_padding = key_padding(&mask);
    let [batch, seq, hidden] = query.dims();
    let [q, k, v] = [query, key, value].map(contiguous);
    let (out, probs) = cpu::attention_forward(
        q.storage(),
        k.storage(),
        v.storage(),
        &key_padding,
        shape,
        dropout_stream(&dropout),
    );
    let residuals = AttentionResiduals {
        probs: tensor(probs, [batch, heads, seq, seq]),
        mask,
        dropout,
    };
    (tensor(out, [batch, seq, hidden]), residuals)
}

/// [`cpu::attention_backward`].
fn attention_backward_kernel(
    input: AttentionInput<Flex>,
    residuals: AttentionResiduals<Flex>,
    grad: Tensor<Flex, 3>,
) -> [Tensor<Flex, 3>; 3] {
    let shape = attention_shape(&input.query, input.heads);
    let dims = input.query.dims();
    let key_padding = key_padding(&residuals.mask);
    let probs = contiguous(residuals.probs.clone());
    let [q, k, v, g] = [input.query, input.key, input.value, grad].map(contiguous);
    let grads = cpu::attention_backward(
        q.storage(),
        k.storage(),
        v.storage(),
        probs.storage(),
        &key_padding,
        g.storage(),
        shape,
        dropout_stream(&residuals.dropout),
    );
    grads.map(|g| tensor(g, dims))
}

/// [`cpu::linear`]; `weight` `[in, out]` as Burn's `Linear` keeps it (often a transposed view
/// of a Hugging Face `[out, in]` tensor, read where it lies).
fn linear_kernel(
    x: Tensor<Flex, 3>,
    weight: Tensor<Flex, 2>,
    bias: Option<Tensor<Flex, 1>>,
) -> Tensor<Flex, 3> {
    let [batch, seq, _] = x.dims();
    let [_, outputs] = weight.dims();
    let x = contiguous(x);
    let weight = weight_view(weight);
    let bias = bias.map(contiguous);
    let out = cpu::linear(
        x.storage(),
        batch * seq,
        view_of(&weight),
        bias.as_ref().map(|b| b.storage()),
    );
    tensor(out, [batch, seq, outputs])
}

/// A `[in, out]` weight whose storage [`view_of`] can read where it lies (copied only if it has
/// negative strides).
fn weight_view(weight: Tensor<Flex, 2>) -> FlexTensor {
    let weight = weight.into_primitive().tensor();
    if weight.layout().strides().iter().any(|&s| s < 0) {
        weight.to_contiguous()
    } else {
        weight
    }
}

fn view_of(weight: &FlexTensor) -> MatrixView<'_> {
    let strides = weight.layout().strides();
    let [rows, cols] = [weight.layout().shape()[0], weight.layout().shape()[1]];
    MatrixView {
        data: weight.storage(),
        offset: weight.layout().start_offset(),
        rows,
        cols,
        row_stride: strides[0] as usize,
        col_stride: strides[1] as usize,
    }
}

/// The gradients of [`linear_kernel`] (with a bias) at its input (when `input_grad`), weight
/// and bias.
fn linear_backward_kernel(
    x: Tensor<Flex, 3>,
    weight: Tensor<Flex, 2>,
    grad: Tensor<Flex, 3>,
    input_grad: bool,
) -> LinearGrads<Flex> {
    let [batch, seq, inputs] = x.dims();
    let [_, outputs] = weight.dims();
    let rows = batch * seq;
    let grad = contiguous(grad);
    let weight = weight_view(weight);
    let input = input_grad.then(|| {
        let dx = cpu::linear_input_grad(grad.storage(), rows, view_of(&weight));
        tensor(dx, [batch, seq, inputs])
    });
    let x = contiguous(x);
    let weight_grad = cpu::linear_weight_grad(x.storage(), grad.storage(), rows, inputs, outputs);
    let bias_grad = cpu::linear_bias_grad(grad.storage(), outputs);
    LinearGrads {
        input,
        weight: tensor(weight_grad, [inputs, outputs]),
        bias: tensor(bias_grad, [outputs]),
    }
}

/// Exact GELU; in place when `x` holds its buffer alone.
fn gelu_kernel(x: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
    let mut x = contiguous(x);
    cpu::gelu_in_place(x.storage_mut::<f32>());
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

/// AdamW's update in place in the parameter's and moments' buffers where they hold them alone
/// (Flex copies a shared buffer first); on the first step the moments are new buffers.
fn adamw_kernel(
    inputs: AdamWInputs<Flex>,
    scalars: AdamWScalars,
) -> (Tensor<Flex, 1>, Moments<Flex>) {
    let n = inputs.param.dims()[0];
    let factor = inputs
        .grad_factor
        .map(|f| contiguous(f).storage::<f32>()[0]);
    let first_step = inputs.moments.is_none();
    let (mut first, mut second) = match inputs.moments {
        Some(m) => (contiguous(m.first), contiguous(m.second)),
        None => {
            let zeros = || contiguous(tensor(vec![0.0; n], [n]));
            (zeros(), zeros())
        }
    };
    let mut param = contiguous(inputs.param);
    let grad = contiguous(inputs.grad);
    cpu::adamw_update_in_place(
        param.storage_mut::<f32>(),
        grad.storage(),
        (first.storage_mut::<f32>(), second.storage_mut::<f32>()),
        factor,
        &scalars,
        first_step,
    );
    let wrap = |t: FlexTensor| Tensor::from_primitive(TensorPrimitive::Float(t));
    let moments = Moments {
        first: wrap(first),
        second: wrap(second),
    };
    (wrap(param), moments)
}

/// The exact GELU's backward, `grad·gelu'(x)`; in place in `grad`'s buffer when it holds it
/// alone.
fn gelu_backward_kernel(x: Tensor<Flex, 3>, grad: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
    let x = contiguous(x);
    let mut grad = contiguous(grad);
    cpu::gelu_grad_in_place(x.storage(), grad.storage_mut::<f32>());
    Tensor::from_primitive(TensorPrimitive::Float(grad))
}
