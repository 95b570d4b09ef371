//! Any bytes as a safetensors file: the header reader returns a header or an error, never panics,
//! and an accepted header only describes data inside the file.
#![no_main]
use bertvision_formats::safetensors_header::SafetensorsHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) =
        SafetensorsHeader::from_bytes(std::path::Path::new("fuzz.safetensors"), data)
    {
        for info in header.tensors.values() {
            assert!(
                info.data_start <= info.data_end
                    && header.data_offset + info.data_end <= data.len(),
                "accepted a tensor past the end of the file"
            );
        }
    }
});
