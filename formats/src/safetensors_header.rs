//! A strict reader for the safetensors header: the 8-byte length, the JSON table of tensors and
//! their byte ranges. It checks everything a corrupt or truncated file can get wrong before any
//! tensor data is touched, so a bad file costs one clear error naming the file and the tensor.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Headers larger than this are refused (the format's reference implementation uses 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Element types of the safetensors format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    I64,
    U64,
    F64,
}

impl Dtype {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "BOOL" => Dtype::Bool,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "I16" => Dtype::I16,
            "U16" => Dtype::U16,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I32" => Dtype::I32,
            "U32" => Dtype::U32,
            "F32" => Dtype::F32,
            "I64" => Dtype::I64,
            "U64" => Dtype::U64,
            "F64" => Dtype::F64,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }
}

/// One tensor's entry: dtype, shape and its byte range relative to the start of the data section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data_start: usize,
    pub data_end: usize,
}

/// The validated header of a safetensors file.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
    /// Offset of the data section in the file (8 + header length).
    pub data_offset: usize,
}

impl SafetensorsHeader {
    /// Reads and validates the header of the file at `path`, reading only the header bytes.
    pub fn read(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut len_bytes = [0u8; 8];
        if file_len < 8 {
            return Err(Error::invalid(
                path,
                format!(
                    "not a safetensors file: {file_len} bytes, shorter than the 8-byte header length"
                ),
            ));
        }
        file.read_exact(&mut len_bytes)
            .map_err(|e| Error::io(path, e))?;
        let header_len = check_header_len(path, u64::from_le_bytes(len_bytes), file_len)?;
        let mut header = vec![0u8; header_len];
        file.read_exact(&mut header)
            .map_err(|e| Error::io(path, e))?;
        Self::parse_header(path, &header, file_len)
    }

    /// Validates the header of a file held in memory (the browser fetches weights as bytes).
    pub fn from_bytes(name: &Path, bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 8 {
            return Err(Error::invalid(
                name,
                format!(
                    "not a safetensors file: {} bytes, shorter than the 8-byte header length",
                    bytes.len()
                ),
            ));
        }
        let file_len = bytes.len() as u64;
        let header_len = check_header_len(
            name,
            // Cannot fail: 8 bytes, the length checked above.
            u64::from_le_bytes(bytes[..8].try_into().unwrap()),
            file_len,
        )?;
        Self::parse_header(name, &bytes[8..8 + header_len], file_len)
    }

    fn parse_header(path: &Path, header: &[u8], file_len: u64) -> Result<Self> {
        let text = std::str::from_utf8(header).map_err(|_| {
            Error::invalid(
                path,
                "safetensors header is not valid UTF-8 (corrupt file?)",
            )
        })?;
        let table: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text.trim_end_matches(' ')).map_err(|e| {
                Error::invalid(
                    path,
                    format!("safetensors header is not a JSON object (corrupt file?): {e}"),
                )
            })?;
        let data_offset = 8 + header.len();
        let data_len = (file_len - data_offset as u64) as usize;
        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (name, entry) in table {
            if name == "__metadata__" {
                let map = entry.as_object().ok_or_else(|| {
                    Error::invalid(path, "safetensors __metadata__ is not an object")
                })?;
                for (k, v) in map {
                    let v = v.as_str().ok_or_else(|| {
                        Error::invalid(
                            path,
                            format!("safetensors __metadata__ value `{k}` is not a string"),
                        )
                    })?;
                    metadata.insert(k.clone(), v.to_string());
                }
                continue;
            }
            let info = parse_entry(&entry)
                .map_err(|what| Error::invalid(path, format!("tensor `{name}`: {what}")))?;
            if info.data_end > data_len {
                return Err(Error::invalid(
                    path,
                    format!(
                        "tensor `{name}`: data ends at byte {} but the file holds only {data_len} data bytes (truncated file?)",
                        info.data_end
                    ),
                ));
            }
            tensors.insert(name, info);
        }
        Ok(SafetensorsHeader {
            tensors,
            metadata,
            data_offset,
        })
    }
}

fn check_header_len(path: &Path, header_len: u64, file_len: u64) -> Result<usize> {
    if header_len > MAX_HEADER_BYTES {
        return Err(Error::invalid(
            path,
            format!(
                "safetensors header length {header_len} is implausible (corrupt file, or not safetensors?)"
            ),
        ));
    }
    if 8 + header_len > file_len {
        return Err(Error::invalid(
            path,
            format!(
                "safetensors header claims {header_len} bytes but the file has {file_len} (truncated file?)"
            ),
        ));
    }
    Ok(header_len as usize)
}

fn parse_entry(entry: &serde_json::Value) -> Result<TensorInfo, String> {
    let obj = entry.as_object().ok_or("entry is not an object")?;
    let dtype_name = obj
        .get("dtype")
        .and_then(|v| v.as_str())
        .ok_or("missing \"dtype\"")?;
    let dtype =
        Dtype::parse(dtype_name).ok_or_else(|| format!("unknown dtype \"{dtype_name}\""))?;
    let shape = obj
        .get("shape")
        .and_then(|v| v.as_array())
        .ok_or("missing \"shape\"")?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or("shape entries must be non-negative integers")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let offsets = obj
        .get("data_offsets")
        .and_then(|v| v.as_array())
        .filter(|a| a.len() == 2)
        .ok_or("missing \"data_offsets\" [start, end]")?;
    let start = offsets[0]
        .as_u64()
        .ok_or("data_offsets must be non-negative integers")? as usize;
    let end = offsets[1]
        .as_u64()
        .ok_or("data_offsets must be non-negative integers")? as usize;
    if end < start {
        return Err(format!(
            "data_offsets [{start}, {end}] end before they start"
        ));
    }
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("shape overflows")?;
    let expected = elements
        .checked_mul(dtype.size())
        .ok_or("shape overflows")?;
    if end - start != expected {
        return Err(format!(
            "data_offsets span {} bytes but shape {shape:?} of {dtype_name} needs {expected}",
            end - start
        ));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        data_start: start,
        data_end: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data_len));
        bytes
    }

    fn parse(bytes: &[u8]) -> Result<SafetensorsHeader> {
        SafetensorsHeader::from_bytes(Path::new("model.safetensors"), bytes)
    }

    #[test]
    fn valid_header() {
        let h = parse(&file(
            r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#,
            24,
        ))
        .unwrap();
        assert_eq!(h.tensors["a"].shape, vec![2, 3]);
        assert_eq!(h.metadata["format"], "pt");
    }

    #[test]
    fn corrupt_headers_are_named_errors() {
        let cases: [(Vec<u8>, &str); 6] = [
            (vec![1, 2, 3], "shorter than the 8-byte"),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                    4,
                ),
                "truncated file",
            ),
            (
                file(
                    r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#,
                    8,
                ),
                "unknown dtype \"Q4\"",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    8,
                ),
                "needs 12",
            ),
            (file("not json", 0), "not a JSON object"),
            (u64::MAX.to_le_bytes().to_vec(), "implausible"),
        ];
        for (bytes, expected) in cases {
            let e = parse(&bytes).unwrap_err().to_string();
            assert!(
                e.starts_with("model.safetensors: ") && e.contains(expected),
                "{e}"
            );
        }
    }
}
