//! Tokenisation with the `tokenizers` crate from a model's `tokenizer.json`.
//!
//! The file's own padding and truncation settings are discarded (all-MiniLM-L6-v2's pads and
//! truncates to 128): the task decides the maximum length. Offsets are in characters of the
//! input text, as Python's fast tokenizers return them, so SQuAD's `answer_start` maps directly.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bert::BertInput;
use crate::error::{Error, Result};

/// One encoded sequence (a text, a pair, or one window of a long pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Character offsets `(start, end)` into the text of the token's sequence; `(0, 0)` for specials.
    pub offsets: Vec<(usize, usize)>,
    /// `Some(0)` for the first text, `Some(1)` for the pair, `None` for special tokens.
    pub sequence_ids: Vec<Option<usize>>,
    pub tokens: Vec<String>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn from_encoding(e: &tokenizers::Encoding) -> Self {
        Encoded {
            ids: e.get_ids().to_vec(),
            type_ids: e.get_type_ids().to_vec(),
            offsets: e.get_offsets().to_vec(),
            sequence_ids: e.get_sequence_ids(),
            tokens: e.get_tokens().to_vec(),
        }
    }
}

/// A WordPiece tokenizer for one model.
#[derive(Clone)]
pub struct BertTokenizer {
    inner: Tokenizer,
    source: PathBuf,
    pad_id: u32,
}

impl std::fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertTokenizer")
            .field("source", &self.source)
            .finish()
    }
}

impl BertTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = crate::error::read_file(path)?;
        Self::from_bytes(path, &bytes)
    }

    /// Loads tokenizer JSON already in memory; `name` is used in error messages.
    pub fn from_bytes(name: &Path, bytes: &[u8]) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::invalid(name, format!("not a usable tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::invalid(name, format!("tokenizer truncation reset failed: {e}")))?;
        let pad_id = inner.token_to_id("[PAD]").ok_or_else(|| {
            Error::invalid(
                name,
                "vocabulary has no [PAD] token; not a BERT WordPiece tokenizer",
            )
        })?;
        for special in ["[CLS]", "[SEP]"] {
            if inner.token_to_id(special).is_none() {
                return Err(Error::invalid(
                    name,
                    format!("vocabulary has no {special} token"),
                ));
            }
        }
        Ok(BertTokenizer {
            inner,
            source: name.to_path_buf(),
            pad_id,
        })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn set_truncation(&mut self, params: Option<TruncationParams>) -> Result<()> {
        self.inner.with_truncation(params).map_err(|e| {
            Error::invalid(&self.source, format!("truncation settings rejected: {e}"))
        })?;
        Ok(())
    }

    /// Encodes a text or a pair with `[CLS] a [SEP] (b [SEP])`, truncating the longer sequence
    /// first down to `max_len` tokens (Hugging Face's `longest_first`) when a limit is given.
    pub fn encode(
        &mut self,
        text: &str,
        pair: Option<&str>,
        max_len: Option<usize>,
    ) -> Result<Encoded> {
        self.set_truncation(max_len.map(|max_length| TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))?;
        let encoding = match pair {
            None => self.inner.encode_char_offsets(text, true),
            Some(b) => self.inner.encode_char_offsets((text, b), true),
        }
        .map_err(|e| Error::invalid(&self.source, format!("tokenisation failed: {e}")))?;
        Ok(Encoded::from_encoding(&encoding))
    }

    /// Tokens of `text` alone, without special tokens (for measuring and cutting questions).
    pub fn tokens_of(&mut self, text: &str) -> Result<Encoded> {
        self.set_truncation(None)?;
        let encoding = self
            .inner
            .encode_char_offsets(text, false)
            .map_err(|e| Error::invalid(&self.source, format!("tokenisation failed: {e}")))?;
        Ok(Encoded::from_encoding(&encoding))
    }

    /// Encodes `first` with a long `second` as overlapping windows of at most `max_len` tokens,
    /// `[CLS] first [SEP] window [SEP]`; only `second` is cut, and consecutive windows share
    /// `stride` tokens of it (Hugging Face's `truncation="only_second",
    /// return_overflowing_tokens=True, stride=...`). The windows are built here from the two
    /// sequences' tokens because the tokenizers crate (0.23.2) drops part of a long second
    /// sequence when it overflows a pair; the Python binding does not, and we match it.
    pub fn encode_windows(
        &mut self,
        first: &str,
        second: &str,
        max_len: usize,
        stride: usize,
    ) -> Result<Vec<Encoded>> {
        let a = self.tokens_of(first)?;
        let b = self.tokens_of(second)?;
        let room = max_len.saturating_sub(a.len() + 3);
        if room <= stride {
            return Err(Error::usage(format!(
                "a window of {max_len} tokens leaves {room} for the context after a {}-token question, not more than the stride {stride}",
                a.len()
            )));
        }
        let cls = self.special_id("[CLS]")?;
        let sep = self.special_id("[SEP]")?;
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let stop = (start + room).min(b.len());
            let mut e = Encoded {
                ids: Vec::with_capacity(max_len),
                type_ids: Vec::with_capacity(max_len),
                offsets: Vec::with_capacity(max_len),
                sequence_ids: Vec::with_capacity(max_len),
                tokens: Vec::with_capacity(max_len),
            };
            let mut push =
                |id: u32, tt: u32, off: (usize, usize), seq: Option<usize>, tok: &str| {
                    e.ids.push(id);
                    e.type_ids.push(tt);
                    e.offsets.push(off);
                    e.sequence_ids.push(seq);
                    e.tokens.push(tok.to_string());
                };
            push(cls, 0, (0, 0), None, "[CLS]");
            for i in 0..a.len() {
                push(a.ids[i], 0, a.offsets[i], Some(0), &a.tokens[i]);
            }
            push(sep, 0, (0, 0), None, "[SEP]");
            for i in start..stop {
                push(b.ids[i], 1, b.offsets[i], Some(1), &b.tokens[i]);
            }
            push(sep, 1, (0, 0), None, "[SEP]");
            windows.push(e);
            if stop == b.len() {
                break;
            }
            start += room - stride;
        }
        Ok(windows)
    }

    fn special_id(&self, token: &str) -> Result<u32> {
        self.inner
            .token_to_id(token)
            .ok_or_else(|| Error::invalid(&self.source, format!("vocabulary has no {token} token")))
    }
}

/// A padded batch of encodings as flat row-major `[batch, seq]` arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub batch: usize,
    pub seq: usize,
}

impl TokenBatch {
    /// Pads every encoding with `pad_id` to the longest one, or to `pad_to` if that is longer.
    pub fn pad(encodings: &[&Encoded], pad_id: u32, pad_to: Option<usize>) -> Self {
        Self::pad_to_multiple(encodings, pad_id, pad_to, 1)
    }

    /// The length a batch whose longest sequence has `longest` tokens is padded to: rounded up
    /// to a multiple of `multiple`, and at least `pad_to`.
    pub fn padded_length(longest: usize, pad_to: Option<usize>, multiple: usize) -> usize {
        let rounded = longest.div_ceil(multiple.max(1)) * multiple.max(1);
        pad_to.map_or(rounded, |p| p.max(rounded))
    }

    /// As [`Self::pad`], rounding the length up to a multiple of `multiple` (GPUs compile a
    /// kernel per shape; a few bucketed lengths avoid hundreds of compilations).
    pub fn pad_to_multiple(
        encodings: &[&Encoded],
        pad_id: u32,
        pad_to: Option<usize>,
        multiple: usize,
    ) -> Self {
        let longest = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let seq = Self::padded_length(longest, pad_to, multiple);
        let batch = encodings.len();
        let mut input_ids = vec![pad_id as i64; batch * seq];
        let mut token_type_ids = vec![0; batch * seq];
        let mut attention_mask = vec![0; batch * seq];
        for (row, e) in encodings.iter().enumerate() {
            for (col, (&id, &tt)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                input_ids[row * seq + col] = id as i64;
                token_type_ids[row * seq + col] = tt as i64;
                attention_mask[row * seq + col] = 1;
            }
        }
        TokenBatch {
            input_ids,
            token_type_ids,
            attention_mask,
            batch,
            seq,
        }
    }

    /// The batch as Burn tensors on `device`.
    pub fn to_input<B: Backend>(&self, device: &B::Device) -> BertInput<B> {
        let shape = [self.batch, self.seq];
        let make = |v: &Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), shape), device)
        };
        BertInput {
            input_ids: make(&self.input_ids),
            token_type_ids: make(&self.token_type_ids),
            attention_mask: make(&self.attention_mask),
        }
    }
}
