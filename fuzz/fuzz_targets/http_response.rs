//! Response bytes as the HTTP probe reads them: the first byte sets the size of each
//! read, the rest is what the server sent before closing.
#![no_main]

use censorprobe::probe::web::http::decode_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&read_size, response)) = data.split_first() else {
        return;
    };
    let read_size = usize::from(read_size) * 64 + 1;
    let reads: Vec<&[u8]> = response.chunks(read_size).collect();
    let decoded = decode_response(&reads, 4096, 1024);
    assert!(decoded.peak_buffered <= 64 * 1024 + 2 * read_size + 1024);
    if let Some(response) = decoded.response {
        assert!(response.body_length <= 4096);
        assert!(response.body_prefix.len() <= 1024);
    }
});
