#![no_main]
//! The KServeV1 adapter on arbitrary bytes, as a request body and as a response body.

use libfuzzer_sys::fuzz_target;
use sidelight_proxy::adapter_fuzzing::FuzzProtocol;

mod common;

fuzz_target!(|body: &[u8]| common::check(&FuzzProtocol::KServeV1, body));
