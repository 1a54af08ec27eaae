#![no_main]
//! The generic JSON adapter. An input is the rows pointer, a newline, the outputs
//! pointer, a newline, then the body; so the pointers are fuzzed with the body.

use libfuzzer_sys::fuzz_target;
use sidelight_protocol::{Protocol, pointer_is_valid};

mod common;

fuzz_target!(|input: &[u8]| {
    let mut parts = input.splitn(3, |b| *b == b'\n');
    let (Some(rows), Some(outputs), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(rows), Ok(outputs)) = (std::str::from_utf8(rows), std::str::from_utf8(outputs)) else {
        return;
    };
    // Configuration refuses invalid pointers at start-up; only valid ones reach requests.
    if !pointer_is_valid(rows) || !pointer_is_valid(outputs) {
        return;
    }
    let protocol = Protocol::Pointer {
        rows: rows.to_owned(),
        outputs: outputs.to_owned(),
    };
    common::check(&protocol, body);
});
