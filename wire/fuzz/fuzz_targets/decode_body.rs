//! Arbitrary bytes as a frame body and as a whole frame: decoding returns Ok or an error,
//! never panics, and whatever decodes re-encodes to a frame that decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Control {
    Hello { node: String, version: u16 },
    Step { step: u64, q: f64, datasets: Vec<String> },
    Shard { ids: Vec<u64> },
    Abort(Option<String>),
    Blob(Vec<u8>),
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = bastion_wire::decode_body::<Control>(data) {
        let frame = bastion_wire::encode_frame(&msg, bastion_wire::DEFAULT_MAX_FRAME).unwrap();
        bastion_wire::decode_frame::<Control>(&frame, bastion_wire::DEFAULT_MAX_FRAME).unwrap();
    }
    let _ = bastion_wire::decode_frame::<Control>(data, 4096);
});
