#![no_main]
//! The OpenInferenceV2 adapter on arbitrary bytes, as a request body and as a response body.

use libfuzzer_sys::fuzz_target;
use sidelight_protocol::Protocol;

mod common;

fuzz_target!(|body: &[u8]| common::check(&Protocol::OpenInferenceV2, body));
