//! A loaded checkpoint: config, encoder and tokenizer together.

use bertvision_shaders::KernelBackend;
use burn::tensor::backend::Backend;

use crate::bert::{Bert, BertConfig, BertOutput, WeightSource, load_bert};
use crate::error::{Error, Result};
use crate::models::ModelDir;
use crate::tokenize::{BertTokenizer, Encoded, TokenBatch};

pub struct Pretrained<B: Backend> {
    pub dir: ModelDir,
    pub config: BertConfig,
    pub bert: Bert<B>,
    pub tokenizer: BertTokenizer,
}

impl<B: Backend> Pretrained<B> {
    /// Loads config, weights and tokenizer of a Hugging Face BERT directory.
    pub fn load(dir: &ModelDir, device: &B::Device) -> Result<Self> {
        let config = BertConfig::from_file(&dir.config)?;
        let tokenizer = BertTokenizer::from_file(&dir.tokenizer)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::invalid(
                &dir.tokenizer,
                format!(
                    "vocabulary has {} tokens but config.json says vocab_size {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            ));
        }
        let bert = load_bert(&config, WeightSource::File(&dir.weights), device)?;
        Ok(Pretrained {
            dir: dir.clone(),
            config,
            bert,
            tokenizer,
        })
    }
}

impl<B: KernelBackend> Pretrained<B> {
    /// Tokenises one text (or pair) and runs the encoder on it, unpadded. Without `max_len` an
    /// input longer than the model's position table is an error, not a silent cut.
    pub fn encode_one(
        &mut self,
        text: &str,
        pair: Option<&str>,
        max_len: Option<usize>,
        device: &B::Device,
    ) -> Result<(Encoded, BertOutput<B>)> {
        let encoded = self.tokenizer.encode(text, pair, max_len)?;
        let limit = self.config.max_position_embeddings;
        if encoded.len() > limit {
            return Err(Error::usage(format!(
                "the input has {} tokens but {} accepts at most {limit} (max_position_embeddings); pass a maximum length to truncate",
                encoded.len(),
                self.dir.root.display()
            )));
        }
        let batch = TokenBatch::pad(&[&encoded], self.tokenizer.pad_id(), None);
        let output = self.bert.forward(batch.to_input(device));
        Ok((encoded, output))
    }
}
