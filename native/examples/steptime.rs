use bertvision_core::bert::{Bert, BertConfig};
use bertvision_core::task_model::{BertTaskModel, Targets, head_loss};
use bertvision_core::tokenize::Encoded;
use bertvision_core::tokenize::TokenBatch;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Int, Tensor};
use std::time::Instant;
type B = Autodiff<NdArray<f32>>;
fn main() {
    let dev = Default::default();
    let config = BertConfig::from_file(std::path::Path::new(
        "/root/.cache/bertvision/models/splade-tiny/config.json",
    ))
    .unwrap();
    let bert = Bert::<B>::init(&config, true, &dev);
    let model = BertTaskModel::new(bert, &config, 2, false, &dev);
    let seq = 200;
    let bs = 32;
    let e = Encoded {
        ids: vec![1000; seq],
        type_ids: vec![0; seq],
        offsets: vec![(0, 0); seq],
        sequence_ids: vec![None; seq],
        tokens: vec![String::new(); seq],
    };
    let refs: Vec<&Encoded> = (0..bs).map(|_| &e).collect();
    let batch = TokenBatch::pad(&refs, 0, None);
    for _ in 0..3 {
        let t = Instant::now();
        let input = batch.to_input::<B>(&dev);
        let (_, out) = model.forward(input);
        let loss = head_loss(out, &Targets::Class(Tensor::<B, 1, Int>::zeros([bs], &dev)));
        let _v: f32 = loss.clone().into_scalar();
        let t1 = t.elapsed();
        let g = loss.backward();
        let t2 = t.elapsed();
        drop(g);
        println!("forward {:?} backward {:?}", t1, t2 - t1);
    }
}
